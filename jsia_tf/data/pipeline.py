"""tf.data pipelines: identity-aligned P x K cross-modality training batches.

Every training batch holds P identities and, for each, K RGB and K IR images; row j
of `x_rgb` and row j of `x_ir` show the same identity, which is what lets the
generation module exchange styles within a person (paper Eq. 3).

Sampling is a pure function of (seed, batch index): resuming at batch b reproduces
the stream exactly, so the only pipeline state a checkpoint needs is the step.
Under a distribution strategy the P identities of a global batch are split into
whole identities per replica: replica r gets identities [r P/R, (r+1) P/R).
"""

from typing import Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import table as table_lib


class PKSampler:
  """Draws P identities and K images per identity in each modality.

  Identities seen in only one modality cannot be paired across modalities; they are
  left out, and their number is logged. Within an identity, images are drawn without
  replacement when it has at least K of them in that modality, else with
  replacement (as in the usual re-id samplers).
  """

  def __init__(self, labels: np.ndarray, modality: np.ndarray, p: int, k: int,
               seed: int):
    self.p, self.k, self.seed = p, k, seed
    by_modality = {}
    for m in (layouts.RGB, layouts.IR):
      idx = np.flatnonzero(modality == m)
      by_modality[m] = {int(lab): idx[labels[idx] == lab]
                        for lab in np.unique(labels[idx])}
    both = sorted(set(by_modality[layouts.RGB]) & set(by_modality[layouts.IR]))
    one_only = len(set(by_modality[layouts.RGB]) | set(by_modality[layouts.IR])) - len(both)
    if one_only:
      logging.warning("left out %d identities seen in only one modality: a P x K "
                      "cross-modality batch needs both", one_only)
    if len(both) < p:
      raise errors.ConfigError(
          f"--batch_p={p} is larger than the {len(both)} identities that have both "
          f"RGB and IR images; lower --batch_p")
    self.labels = np.asarray(both, np.int64)
    self.rgb = [by_modality[layouts.RGB][lab] for lab in both]
    self.ir = [by_modality[layouts.IR][lab] for lab in both]

  @property
  def num_ids(self) -> int:
    """Number of identities the sampler draws from."""
    return len(self.labels)

  def sample(self, batch: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row indices (rgb [P*K], ir [P*K]) of batch number `batch`, identity-major."""
    rng = np.random.default_rng([self.seed, batch])
    chosen = rng.choice(self.num_ids, size=self.p, replace=False)
    rgb, ir = [], []
    for i in chosen:
      for pool, out in ((self.rgb[i], rgb), (self.ir[i], ir)):
        out.append(rng.choice(pool, size=self.k, replace=len(pool) < self.k))
    return np.concatenate(rgb), np.concatenate(ir)


def _replicas(input_context: Optional[tf.distribute.InputContext], p: int):
  """(this pipeline's first replica, its replica count, total replicas)."""
  if input_context is None:
    return 0, 1, 1
  total = input_context.num_replicas_in_sync
  config_lib.require(p % total == 0, "batch_p", p,
                     f"a multiple of the number of replicas ({total}) so that "
                     f"identities are kept whole per replica")
  per_pipeline = total // input_context.num_input_pipelines
  return input_context.input_pipeline_id * per_pipeline, per_pipeline, total


def decode(encoded: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
  """Encoded JPEG/PNG/BMP bytes -> float32 [H, W, 3] in [0, 255] at `size`."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return resize(image, size)


def resize(image: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
  """Images [..., h, w, 3] of any size in [0, 255] -> float32 at `size`, in [0, 255]:
  the one resizing of training, evaluation and the exported model."""
  image = tf.image.resize(image, size, method="bilinear", antialias=True)
  # The antialiasing filter's float arithmetic can land a hair outside [0, 255].
  return tf.clip_by_value(image, 0.0, 255.0)


def to_model_range(image: tf.Tensor) -> tf.Tensor:
  """[0, 255] -> [-1, 1], the range of the decoders' tanh."""
  return image / 127.5 - 1.0


def from_model_range(image: tf.Tensor) -> tf.Tensor:
  """[-1, 1] -> [0, 255]: the inverse of `to_model_range` (tensors or arrays)."""
  return (image + 1.0) * 127.5


def augment(image: tf.Tensor, seed: tf.Tensor, cfg: config_lib.DataConfig) -> tf.Tensor:
  """Random flip / pad-and-crop / erasing of one [H, W, 3] image, from a stateless
  `seed` [2] so that the stream is a function of the config seed and batch index."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  h, w = cfg.image_size
  if cfg.flip:
    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
  if cfg.pad_crop:
    padded = tf.pad(image, [[cfg.pad_crop] * 2, [cfg.pad_crop] * 2, [0, 0]])
    image = tf.image.stateless_random_crop(padded, [h, w, 3], seeds[1])
  if cfg.random_erasing:
    image = _random_erasing(image, seeds[2], cfg.random_erasing)
  return image


def _random_erasing(image, seed, probability):
  """Random erasing (Zhong et al.): a box of 2-40% of the area, aspect 0.3-3.3,
  filled with uniform noise in [0, 255]."""
  h, w = image.shape[0], image.shape[1]
  s = tf.random.experimental.stateless_split(seed, 6)
  area = tf.random.stateless_uniform([], s[0], 0.02, 0.4) * h * w
  aspect = tf.exp(tf.random.stateless_uniform([], s[1], np.log(0.3), np.log(1 / 0.3)))
  eh = tf.clip_by_value(tf.cast(tf.sqrt(area * aspect), tf.int32), 1, h)
  ew = tf.clip_by_value(tf.cast(tf.sqrt(area / aspect), tf.int32), 1, w)
  y0 = tf.random.stateless_uniform([], s[2], 0, h - eh + 1, tf.int32)
  x0 = tf.random.stateless_uniform([], s[3], 0, w - ew + 1, tf.int32)
  yy = tf.range(h)[:, None]
  xx = tf.range(w)[None, :]
  box = (yy >= y0) & (yy < y0 + eh) & (xx >= x0) & (xx < x0 + ew)
  noise = tf.random.stateless_uniform(image.shape, s[4], 0.0, 255.0)
  erase = tf.random.stateless_uniform([], s[5]) < probability
  return tf.where(erase & box[..., None], noise, image)


def make_train_dataset(table: table_lib.ImageTable, cfg: config_lib.DataConfig,
                       input_context: Optional[tf.distribute.InputContext] = None,
                       start_batch: int = 0) -> tf.data.Dataset:
  """The infinite stream of per-replica training batches, from batch `start_batch`.

  Each element is a dict: `x_rgb`, `x_ir` float32 [n, H, W, 3] in [-1, 1];
  `label_rgb`, `label_ir`, `cam_rgb`, `cam_ir` int32 [n]; n = (P / replicas) * K and
  `label_rgb == label_ir` row by row. Use directly, or through
  `strategy.distribute_datasets_from_function`, which passes `input_context`.
  """
  sampler = PKSampler(table.label, table.modality, cfg.batch_p, cfg.batch_k, cfg.seed)
  first, count, total = _replicas(input_context, cfg.batch_p)
  ids_per_replica = cfg.batch_p // total
  n = ids_per_replica * cfg.batch_k  # images per modality per replica
  global_images = 2 * cfg.batch_p * cfg.batch_k

  def generator() -> Iterator:
    batch = start_batch
    while True:
      rgb, ir = sampler.sample(batch)
      for replica in range(first, first + count):
        rows = slice(replica * n, (replica + 1) * n)
        index = np.concatenate([rgb[rows], ir[rows]])
        # A distinct stateless seed per image of the global batch.
        slot = np.concatenate([np.arange(replica * n, (replica + 1) * n),
                               global_images // 2 + np.arange(replica * n,
                                                              (replica + 1) * n)])
        yield (table.encoded[index].tolist(), table.label[index], table.camera[index],
               batch * global_images + slot)
      batch += 1

  signature = (tf.TensorSpec([2 * n], tf.string), tf.TensorSpec([2 * n], tf.int64),
               tf.TensorSpec([2 * n], tf.int64), tf.TensorSpec([2 * n], tf.int64))
  size = cfg.image_size

  def load(encoded, label, camera, counter):
    image = decode(encoded, size)
    seed = tf.stack([tf.constant(cfg.seed, tf.int64), counter])
    return to_model_range(augment(image, seed, cfg)), label, camera

  def split(images, labels, cameras):
    images.set_shape([2 * n, size[0], size[1], 3])
    labels = tf.cast(labels, tf.int32)
    cameras = tf.cast(cameras, tf.int32)
    return {"x_rgb": images[:n], "x_ir": images[n:],
            "label_rgb": labels[:n], "label_ir": labels[n:],
            "cam_rgb": cameras[:n], "cam_ir": cameras[n:]}

  dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
  dataset = dataset.unbatch().map(load, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(2 * n, drop_remainder=True).map(split)
  # Without autotune's model thread: with it, deleting an iterator of this stream
  # (at the end of every run) waits for that thread's next wake-up, up to a minute
  # on TensorFlow 2.21 (28-58 s in about half the runs measured). The map then runs
  # on every core and prefetch keeps its own buffer tuning, at about 10 % fewer
  # images/s, far above what a step takes (docs/performance.md "Input pipeline").
  options = tf.data.Options()
  options.autotune.enabled = False
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def make_eval_dataset(table: table_lib.ImageTable, cfg: config_lib.DataConfig,
                      batch_size: int = 128) -> tf.data.Dataset:
  """Every image of `table` once, in table order, without augmentation: dicts with
  `x` float32 [b, H, W, 3] in [-1, 1] and `index` int64 [b] (row in the table)."""
  size = cfg.image_size
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.constant(table.encoded.tolist(), tf.string), np.arange(len(table))))
  dataset = dataset.map(lambda e, i: {"x": to_model_range(decode(e, size)), "index": i},
                        num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

