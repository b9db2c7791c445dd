"""The test-time extractor of a trained run: F's path E_sl -> E_il -> pooling ->
BN-neck -> L2-normalised embedding (Eq. 17), with evaluation's preprocessing in the
graph, restored from a training checkpoint without G, V or the classifiers.

The same object embeds the test set for `python -m jsia_tf.evaluate --checkpoint`
and is what `python -m jsia_tf.export` saves for TF Serving.
"""

import dataclasses
import gc
import os
from typing import Tuple

import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import pipeline
from jsia_tf.models import feature
from jsia_tf.training import checkpoints
from jsia_tf.training import experiment
from jsia_tf.training import trainer as trainer_lib

# The step counter's key in a training checkpoint (Trainer.checkpoint's `step`).
_STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


class Extractor(tf.Module):
  """Raw images -> embeddings [B, D] float32, for the run of `cfg`.

  `embed` takes images already in the model's range and size (evaluation's
  pipeline); `serve_images` takes float32 RGB [B, H, W, 3] in 0..255 of any H, W;
  `serve_image_bytes` takes encoded JPEG/PNG/BMP strings [B]. Both resize exactly
  as training and evaluation do (`pipeline.resize`). `serve_fixed_size` takes
  float32 RGB in 0..255 already at the model's size: the function the ONNX, LiteRT
  and OpenVINO converters take (their runtimes lack the antialiased resize's op,
  so the caller resizes with `pipeline.resize`).
  """

  def __init__(self, cfg: experiment.ExperimentConfig, name: str = "extractor"):
    super().__init__(name=name)
    # The weights come from the checkpoint: no ImageNet file is needed here.
    model_cfg = dataclasses.replace(cfg.model, backbone_weights="")
    trunk = feature.build_trunk(model_cfg)
    self.F = feature.FeatureModule(model_cfg, None, trunk["E_sl"], trunk["E_il"],
                                   name="F")
    self.image_size = tuple(cfg.model.image_size)
    self.flip_average = cfg.train.flip_average
    self.F(tf.zeros((1,) + self.image_size + (3,)))  # creates the variables
    self.serve_fixed_size = tf.function(
        self._fixed_size, input_signature=[tf.TensorSpec(
            (None,) + self.image_size + (3,), tf.float32, name="images")])

  @property
  def embedding_dim(self) -> int:
    """D, the length of an embedding."""
    return int(self.F.bn_neck.moving_mean.shape[0])

  def embed(self, x: tf.Tensor) -> tf.Tensor:
    """Images [B, H, W, 3] in [-1, 1] at the model's size -> embeddings [B, D]; an
    empty batch gives [0, D] (oneDNN's BatchNorm kernel fails on zero images)."""
    return tf.cond(
        tf.shape(x)[0] > 0,
        lambda: tf.cast(self.F.embed(x, flip_average=self.flip_average), tf.float32),
        lambda: tf.zeros([0, self.embedding_dim], tf.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                              name="images")])
  def serve_images(self, images):
    """RGB float32 [B, H, W, 3] in 0..255, any H, W -> {"embedding": [B, D]}."""
    x = pipeline.to_model_range(pipeline.resize(images, self.image_size))
    return {"embedding": self.embed(x)}

  def _fixed_size(self, images):
    """RGB float32 [B, H, W, 3] in 0..255 at the model's size -> {"embedding":
    [B, D]}; no resize, no empty-batch branch (converters take neither)."""
    x = pipeline.to_model_range(images)
    return {"embedding": tf.cast(self.F.embed(x, flip_average=self.flip_average),
                                 tf.float32)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
  def serve_image_bytes(self, image_bytes):
    """Encoded JPEG/PNG/BMP strings [B] -> {"embedding": [B, D]}."""
    images = tf.map_fn(lambda e: pipeline.decode(e, self.image_size), image_bytes,
                       fn_output_signature=tf.TensorSpec(self.image_size + (3,),
                                                         tf.float32))
    return {"embedding": self.embed(pipeline.to_model_range(images))}


def find_checkpoint(path: str, flag: str = "workdir") -> Tuple[str, str]:
  """(workdir, checkpoint prefix) of `path`: a training workdir (its newest
  checkpoint) or one checkpoint prefix such as `WORKDIR/checkpoints/ckpt-500`."""
  if os.path.isdir(path):
    if not os.path.isfile(os.path.join(path, experiment.CONFIG_FILE)):
      raise errors.ConfigError(
          f"--{flag}={path} is not a training workdir: it has no "
          f"{experiment.CONFIG_FILE} (expected the --workdir of python -m jsia_tf.train)")
    prefix = checkpoints.newest_loadable(trainer_lib.checkpoint_dir(path))
    if not prefix:
      raise errors.ConfigError(
          f"--{flag}={path} has no checkpoint in {trainer_lib.checkpoint_dir(path)}: "
          f"train first (python -m jsia_tf.train --workdir={path})")
    return path, prefix
  if os.path.isfile(path + ".index"):
    reason = checkpoints.unreadable_reason(path)
    if reason:
      raise errors.CheckpointError(
          f"--{flag}={path}: the checkpoint cannot be read ({reason}); name an older "
          f"one, or its workdir to take the newest that loads")
    return os.path.dirname(os.path.dirname(os.path.abspath(path))), path
  raise errors.ConfigError(
      f"--{flag}={path} does not exist: expected a training workdir or a checkpoint "
      f"prefix such as WORKDIR/checkpoints/ckpt-500 (the file ckpt-500.index)")


@dataclasses.dataclass
class Restored:
  """A trained run's extractor and where it came from."""

  extractor: Extractor
  config: experiment.ExperimentConfig
  workdir: str
  checkpoint: str  # the prefix restored
  step: int


def load_run(path: str, flag: str = "workdir"
             ) -> Tuple[str, str, experiment.ExperimentConfig, int]:
  """(workdir, checkpoint prefix, the run's config, the checkpoint's step) of the
  run at `path` (see `find_checkpoint`)."""
  workdir, prefix = find_checkpoint(path, flag)
  cfg = config_lib.load(experiment.ExperimentConfig,
                        os.path.join(workdir, experiment.CONFIG_FILE))
  step = int(tf.train.load_checkpoint(prefix).get_tensor(_STEP_KEY))
  return workdir, prefix, cfg, step


def collect_quietly() -> None:
  """Collects garbage with TensorFlow's warnings off. A restore that failed midway
  never got expect_partial(): when the objects that hold it are collected, it logs a
  warning per unused checkpoint value (hundreds, after our error message)."""
  level = tf.get_logger().level
  tf.get_logger().setLevel("ERROR")
  try:
    gc.collect()
  finally:
    tf.get_logger().setLevel(level)


def restore_into(root: tf.train.Checkpoint, prefix: str, workdir: str) -> None:
  """Restores the objects `root` holds (named as in the training checkpoint, which
  may hold more) from `prefix`; a checkpoint that does not fit them is a
  ConfigError naming both. On that error the caller drops its references to the
  restored objects and calls `collect_quietly`."""
  problem, status = None, None
  try:
    status = root.restore(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    problem = str(e).splitlines()[0]
  if problem:
    del root, status
    collect_quietly()
    if not os.path.isfile(prefix + ".index"):
      raise errors.CheckpointError(
          f"checkpoint {prefix} was removed while it was read (a training run on "
          f"{workdir} keeps only its newest --keep_checkpoints); rerun to take the "
          f"newest")
    raise errors.ConfigError(f"checkpoint {prefix} does not fit the model of {workdir}/"
                             f"{experiment.CONFIG_FILE}: {problem}")


def restore(path: str, flag: str = "workdir") -> Restored:
  """The extractor of the run at `path` (see `find_checkpoint`) with its trained
  weights."""
  workdir, prefix, cfg, step = load_run(path, flag)
  extractor = Extractor(cfg)
  try:
    # The training checkpoint nests F as model/F: restore that branch only.
    restore_into(tf.train.Checkpoint(model=tf.train.Checkpoint(F=extractor.F)), prefix,
                 workdir)
  except errors.ConfigError:
    del extractor
    collect_quietly()
    raise
  return Restored(extractor, cfg, workdir, prefix, step)
