"""Feature extraction: every test image through a model once, into a `FeatureSet`.

The SYSU-MM01 trials only redraw the gallery, so the test set is embedded once and
the trials are evaluated on the stored features. This is the one TensorFlow-using
module of `jsia_tf.evaluation`; the protocols themselves are pure numpy.
"""

import time
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from jsia_tf import config as config_lib
from jsia_tf.data import pipeline
from jsia_tf.data import tfrecords
from jsia_tf.data import table as table_lib
from jsia_tf.evaluation import features as features_lib

Embed = Callable[[tf.Tensor], tf.Tensor]


def extract_features(embed: Embed, table: table_lib.ImageTable,
                     data_cfg: config_lib.DataConfig, batch_size: int = 128,
                     flip_average: bool = False,
                     log_every_seconds: float = 10.0) -> features_lib.FeatureSet:
  """Embeds every image of `table` once, in table order.

  `embed` maps float32 images [b, H, W, 3] in [-1, 1] to embeddings [b, D]. With
  `flip_average` the embedding is the mean of the image's and its mirror's.
  """
  chunks, done, start, last_log = [], 0, time.time(), time.time()
  for batch in pipeline.make_eval_dataset(table, data_cfg, batch_size):
    x = batch["x"]
    out = embed(x)
    if flip_average:
      out = (out + embed(tf.image.flip_left_right(x))) / 2.0
    chunks.append(np.asarray(out, np.float32))
    done += int(x.shape[0])
    if time.time() - last_log >= log_every_seconds or done == len(table):
      rate = done / max(time.time() - start, 1e-9)
      logging.info("features: %d/%d images (%.0f images/s, ETA %.0f s)", done,
                   len(table), rate, (len(table) - done) / max(rate, 1e-9))
      last_log = time.time()
  return features_lib.FeatureSet(
      features=np.concatenate(chunks), ids=table.pid, cams=table.camera,
      frames=table.frame, modality=table.modality, paths=table.path.astype(str))


def extract_test_features(embed: Embed, data_cfg: config_lib.DataConfig,
                          **kwargs) -> features_lib.FeatureSet:
  """Embeds the test split of `data_cfg`'s data set (RegDB: its trial), read from
  its TFRecords when `data_cfg.tfrecord_dir` is set, else from the image files."""
  return extract_features(embed, tfrecords.load_split(data_cfg, "test"), data_cfg,
                          **kwargs)
