"""Speed, compute and memory of the joint-stage train step per preset.

  python benchmarks/train_step.py [--presets=tiny,demo,paper] [--steps=5]
      [--mixed_precision=float16|bfloat16] [--jit_compile] [--reference_steps=3]
      [--passes] [--profile_top=25]

Each preset runs in a fresh process (so that its peak RSS is its own) on a generated
SYSU-layout set, with the preset's batch (P x K per modality) and G sub-batch, one
replica. Per preset:
- seconds per step and images/s (mean of --steps after a compiling step);
- the MACs of one step, counted on the traced step graph (`jsia_tf.training.macs`:
  convolutions, their backward ops, matrix products), per network and forward /
  backward (and, with --passes, per network call with its images and resolution),
  and the achieved MAC rate;
- the machine's reference rate, measured in the same process: a plain Keras
  ResNet-50 training step (ImageNet layout, random init, one dense classifier,
  Adam) on a batch of the same size and resolution, its MACs counted the same way;
- with --profile_top=N, where the time goes: one more step under the TF profiler,
  its trace read back from the XSpace file, the N op types with the most time
  (summed over the executor's threads, so with 2 cores about twice the step's wall
  time).
Prints one JSON object per preset, then a JSON list of all of them.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import collections
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_list("presets", ["tiny", "demo", "paper"], "Presets to measure.")
flags.DEFINE_integer("steps", 5, "Timed joint steps (after one untimed, compiling).")
flags.DEFINE_enum("mixed_precision", "", ["", "float16", "bfloat16"],
                  "The step's compute dtype; empty: float32.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the step.")
flags.DEFINE_integer("reference_steps", 3,
                     "Timed steps of the ResNet-50 reference (0: skip it).")
flags.DEFINE_bool("passes", False, "Also list the MACs of every network call.")
flags.DEFINE_integer("profile_top", 0, "Also profile one step and list this many op "
                     "types by time (0: no profile).")
flags.DEFINE_string("one", "", "Internal: measure this preset in this process.")
flags.DEFINE_string("data_dir", "", "Internal: the generated data set.")
FLAGS = flags.FLAGS


def _gmacs(value: int) -> float:
  return round(value / 1e9, 2)


def op_times(xspace_path: str):
  """({op type: picoseconds}, {op type: count}) over the op events of an XSpace
  file's host plane."""
  # pylint: disable-next=import-outside-toplevel
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  space = xplane_pb2.XSpace()
  with open(xspace_path, "rb") as f:
    space.ParseFromString(f.read())
  totals, counts = collections.Counter(), collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        # Op events are "name:Type" (oneDNN's rewrites: "_MklNativeConv2D", ...);
        # the executor's own spans ("ExecutorState::Process", ...) contain "::".
        if ":" not in name or "::" in name or name.startswith("tf_function"):
          continue
        op_type = name.rsplit(":", 1)[1]
        if not op_type or not (op_type[0].isupper() or op_type.startswith("_")):
          continue
        totals[op_type] += event.duration_ps
        counts[op_type] += 1
  return totals, counts


def profile(run_step, top: int) -> dict:
  """Op time of one `run_step()` under the TF profiler, by op type: the `top`."""
  # pylint: disable-next=import-outside-toplevel
  import tensorflow as tf
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    start = time.time()
    run_step()
    seconds = time.time() - start
    tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
      raise SystemExit(f"the profiler wrote no .xplane.pb under {logdir}")
    totals, counts = op_times(sorted(paths)[-1])
  all_ps = sum(totals.values())
  return {"wall_seconds": round(seconds, 2),
          "op_seconds_summed_over_threads": round(all_ps / 1e12, 2),
          "op_types": [{"type": t, "seconds": round(ps / 1e12, 3),
                        "share": round(ps / max(all_ps, 1), 4), "count": counts[t]}
                       for t, ps in totals.most_common(top)]}


def reference_resnet50(images: int, height: int, width: int, num_classes: int,
                       steps: int) -> dict:
  """Seconds per step, MACs and MAC rate of a plain Keras ResNet-50 training step
  on `images` random images of height x width (the current precision policy)."""
  # pylint: disable=import-outside-toplevel
  import keras
  import numpy as np
  import tensorflow as tf
  from jsia_tf.training import macs
  backbone = keras.applications.ResNet50(weights=None, include_top=False,
                                         input_shape=(height, width, 3), pooling="avg")
  head = keras.layers.Dense(num_classes)
  optimizer = keras.optimizers.Adam(1e-4)

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      logits = tf.cast(head(backbone(x, training=True)), tf.float32)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    weights = backbone.trainable_variables + head.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
    return loss

  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(-1, 1, (images, height, width, 3)).astype(np.float32))
  y = tf.constant(rng.integers(0, num_classes, images).astype(np.int32))
  float(step(x, y))  # compiles
  start = time.time()
  for _ in range(steps):
    float(step(x, y))
  seconds = (time.time() - start) / steps
  total = sum(op.macs for op in macs.count(step.get_concrete_function(x, y).graph))
  return {"images": images, "resolution": f"{height}x{width}",
          "seconds_per_step": round(seconds, 3), "gmacs_per_step": _gmacs(total),
          "gmacs_per_second": round(total / seconds / 1e9, 1)}


def measure(preset: str, data_dir: str, steps: int, mixed_precision: str,
            jit_compile: bool, reference_steps: int, with_passes: bool,
            profile_top: int) -> dict:
  """Times `steps` joint steps of `preset` after a compiling one, counts their
  MACs, measures the ResNet-50 reference rate, and (profile_top > 0) profiles one
  more step."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf import config as config_lib
  from jsia_tf.data import pipeline
  from jsia_tf.data import tfrecords
  from jsia_tf.training import distribute
  from jsia_tf.training import experiment
  from jsia_tf.training import macs
  from jsia_tf.training import trainer as trainer_lib

  model = config_lib.model_config(preset)
  defaults = config_lib.TRAIN_PRESETS[preset]
  data = config_lib.DataConfig(data_dir=data_dir, image_height=model.image_height,
                               image_width=model.image_width,
                               batch_p=defaults["batch_p"], batch_k=defaults["batch_k"])
  train = config_lib.TrainConfig(workdir=tempfile.mkdtemp(), warmup_steps=0,
                                 joint_steps=steps + 2, gen_ids=defaults["gen_ids"],
                                 mixed_precision=mixed_precision,
                                 jit_compile=jit_compile)
  distribute.set_numerics(train)
  cfg = experiment.ExperimentConfig(data, model, config_lib.LossWeights(), train)
  strategy = tf.distribute.get_strategy()
  table = tfrecords.load_split(data, "train")
  trainer = trainer_lib.Trainer(cfg, strategy, int(table.label.max()) + 1)
  batches = iter(pipeline.make_train_dataset(table, data))
  start = time.time()
  first = next(batches)
  trainer.train_step(first, 0)
  compile_seconds = time.time() - start
  start = time.time()
  for step in range(1, steps + 1):
    trainer.train_step(next(batches), step)
  seconds = (time.time() - start) / steps
  images = 2 * data.batch_p * data.batch_k
  counted = macs.count(trainer.step_graph(first, 1))
  total = sum(op.macs for op in counted)
  compute = {
      "gmacs_per_step": _gmacs(total),
      "gmacs_forward": _gmacs(sum(op.macs for op in counted if op.direction == "forward")),
      "gmacs_backward": _gmacs(sum(op.macs for op in counted
                                   if op.direction == "backward")),
      "gmacs_per_second": round(total / seconds / 1e9, 1),
      "gmacs_by_dtype": {k: _gmacs(v) for k, v in macs.by_dtype(counted).items()},
      "by_network": {name: {"calls": row["calls"], "gmacs_forward": _gmacs(row["forward_macs"]),
                            "gmacs_backward": _gmacs(row["backward_macs"])}
                     for name, row in macs.by_network(counted).items()},
  }
  if with_passes:
    compute["passes"] = [dict(row, forward_macs=_gmacs(row["forward_macs"]),
                              backward_macs=_gmacs(row["backward_macs"]))
                         for row in macs.passes(counted)]
  if profile_top:
    batch = next(batches)
    compute["profile"] = profile(lambda: trainer.train_step(batch, steps + 1), profile_top)
  if reference_steps:
    reference = reference_resnet50(images, model.image_height, model.image_width,
                                   trainer.num_classes, reference_steps)
    compute["reference_resnet50"] = reference
    compute["rate_vs_reference"] = round(
        compute["gmacs_per_second"] / reference["gmacs_per_second"], 2)
  return {"preset": preset, "image_size": list(model.image_size),
          "batch": f"P={data.batch_p} x K={data.batch_k} x 2 modalities",
          "gen_ids": train.gen_ids, "mixed_precision": mixed_precision or "float32",
          "jit_compile": jit_compile,
          "seconds_per_step": round(seconds, 3),
          "images_per_second": round(images / seconds, 1),
          "first_step_seconds": round(compile_seconds, 1), **compute,
          "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
          "cpus": os.cpu_count(), "tensorflow": tf.__version__}


def main(argv):
  del argv
  if FLAGS.one:
    print(json.dumps(measure(FLAGS.one, FLAGS.data_dir, FLAGS.steps,
                             FLAGS.mixed_precision, FLAGS.jit_compile,
                             FLAGS.reference_steps, FLAGS.passes, FLAGS.profile_top)))
    return
  from jsia_tf.data import synthetic  # pylint: disable=import-outside-toplevel
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = os.path.join(tmp, "sysu")
    synthetic.generate(synthetic.SyntheticConfig(output_dir=data_dir, num_ids=40),
                       log=lambda _: None)
    for preset in FLAGS.presets:
      proc = subprocess.run(
          [sys.executable, __file__, f"--one={preset}", f"--data_dir={data_dir}",
           f"--steps={FLAGS.steps}", f"--mixed_precision={FLAGS.mixed_precision}",
           f"--jit_compile={FLAGS.jit_compile}",
           f"--reference_steps={FLAGS.reference_steps}", f"--passes={FLAGS.passes}",
           f"--profile_top={FLAGS.profile_top}"],
          capture_output=True, text=True,
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
      if proc.returncode:
        raise SystemExit(f"preset {preset} failed:\n{proc.stderr[-3000:]}")
      result = json.loads(proc.stdout.strip().splitlines()[-1])
      print(json.dumps(result), flush=True)
      results.append(result)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
