"""Distribution strategies, numeric policy and determinism of a training run."""

import json
import os
from typing import Dict, List

import keras
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors

_POLICIES = {"": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def _cpu_devices(count: int):
  """`count` logical CPU devices (made now, or already there). Listing logical
  devices initialises TensorFlow, so the configuration is tried first."""
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError:
    existing = tf.config.list_logical_devices("CPU")
    if len(existing) != count:
      raise errors.ConfigError(
          f"--num_cpu_devices={count} cannot be set up: TensorFlow's devices were "
          f"initialised already with {len(existing)} CPU device(s)") from None
  return [d.name for d in tf.config.list_logical_devices("CPU")[:count]]


def _configure_coordination(cluster: Dict[str, List[str]], timeout_seconds: int) -> None:
  """TensorFlow's coordination service as MultiWorkerMirroredStrategy would set it
  up (it keeps a configuration made before it), with `timeout_seconds` as the
  heartbeat timeout: a worker silent that long (dead, hung, cut off) fails every
  other worker's pending collectives, so nobody waits for ever.

  Not CommunicationOptions(timeout_seconds=...): TensorFlow arms that timeout with
  a new sleeping thread per collective op, thousands per step here, and a run
  dies of thread exhaustion ("Resource temporarily unavailable") within minutes.
  No public API sets the heartbeat; this is the call ParameterServerStrategy
  makes for the same purpose."""
  from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  if context.context().coordination_service is not None:
    return  # configured by an earlier strategy of this process
  leader = "chief" if "chief" in cluster else "worker"
  context.context().configure_coordination_service(
      service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0",
      heartbeat_timeout_in_ms=int(timeout_seconds * 1000),
      coordinated_jobs=[
          coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
          for job in ("chief", "worker") if job in cluster])


def make_strategy(cfg: config_lib.TrainConfig) -> tf.distribute.Strategy:
  """The strategy of `cfg.strategy`: the default one (one device); Mirrored over all
  local GPUs, or over `num_cpu_devices` logical CPUs, or the CPU; MultiWorkerMirrored
  from the TF_CONFIG environment variable (one process per worker)."""
  if cfg.strategy == "default":
    config_lib.require(cfg.num_cpu_devices <= 1, "num_cpu_devices", cfg.num_cpu_devices,
                       "0 or 1 with --strategy=default (use --strategy=mirrored)")
    strategy = tf.distribute.get_strategy()
  elif cfg.strategy == "mirrored":
    if cfg.num_cpu_devices:
      devices = _cpu_devices(cfg.num_cpu_devices)
    elif tf.config.list_physical_devices("GPU"):
      devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    else:
      devices = ["/cpu:0"]
    strategy = tf.distribute.MirroredStrategy(devices)
  else:
    tf_config = os.environ.get("TF_CONFIG", "")
    try:
      cluster = json.loads(tf_config)["cluster"]
      if not cluster.get("worker"):
        raise KeyError("worker")
    except (ValueError, KeyError, TypeError):
      raise errors.ConfigError(
          f"--strategy=multi_worker needs the TF_CONFIG environment variable with a "
          f"cluster of workers and this process's task, e.g. "
          f'{{"cluster": {{"worker": ["host1:port", "host2:port"]}}, "task": '
          f'{{"type": "worker", "index": 0}}}}; got {tf_config!r}') from None
    _configure_coordination(cluster, cfg.worker_timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING))
  if cfg.jit_compile and strategy.num_replicas_in_sync > 1:
    raise errors.ConfigError(
        f"--jit_compile needs a single replica; --strategy={cfg.strategy} has "
        f"{strategy.num_replicas_in_sync} (XLA compilation of the cross-replica "
        f"step is not supported here)")
  return strategy


def own_task() -> str:
  """This process's task in TF_CONFIG as "type:index" ("" without TF_CONFIG)."""
  try:
    task = json.loads(os.environ.get("TF_CONFIG", ""))["task"]
    return f"{task['type']}:{task['index']}"
  except (ValueError, KeyError, TypeError):
    return ""


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes summaries, evaluations and the real checkpoints."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  return resolver.task_type in ("chief", None) or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())


def task_id(strategy: tf.distribute.Strategy) -> int:
  """This worker's index (0 when single-process)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(resolver.task_id or 0) if resolver is not None else 0


def set_numerics(cfg: config_lib.TrainConfig) -> str:
  """Applies the mixed-precision policy and op determinism of `cfg`; returns the
  previous global policy name (so that in-process callers can restore it)."""
  previous = keras.mixed_precision.global_policy().name
  keras.mixed_precision.set_global_policy(_POLICIES[cfg.mixed_precision])
  if cfg.deterministic:
    tf.config.experimental.enable_op_determinism()
  return previous
