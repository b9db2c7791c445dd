"""FID's reference feature network, loaded from a local file: the Inception graph
of `inception-2015-12-05` (`classify_image_graph_def.pb`), read at its pool_3
layer (2048-d), as the reference FID implementation (TTUR) reads it.

Images go in as float RGB [N, H, W, 3] in 0..255 at the graph's `ExpandDims:0`, so
the graph's own resize and normalisation (its `ResizeBilinear` to 299 x 299, its
`Sub` / `Mul`) run exactly as in the reference. Keras' InceptionV3 weights are
another network and give other FIDs; they are not offered. Nothing is downloaded.
"""

import os
from typing import Callable

import numpy as np
import tensorflow as tf
from google.protobuf import message

from jsia_tf import errors
from jsia_tf import progress as progress_lib

REFERENCE_FILE = "classify_image_graph_def.pb"
REFERENCE_ARCHIVE = ("http://download.tensorflow.org/models/image/imagenet/"
                     "inception-2015-12-05.tgz")
INPUT_TENSOR = "ExpandDims:0"
OUTPUT_TENSOR = "pool_3:0"


class InceptionFeatures:
  """pool_3 features of the graph in `path`: `features(images)` -> [N, 2048]."""

  def __init__(self, path: str, flag: str = "inception"):
    if not os.path.isfile(path):
      raise errors.ConfigError(
          f"--{flag}={path}: no such file. FID's reference network is {REFERENCE_FILE} "
          f"from {REFERENCE_ARCHIVE} (unpack the archive and pass the .pb file); "
          "jsia_tf never downloads it")
    graph_def = tf.compat.v1.GraphDef()
    try:
      with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    except message.DecodeError as e:
      raise errors.ConfigError(f"--{flag}={path} is not a TensorFlow GraphDef file "
                               f"(expected {REFERENCE_FILE}): {e}") from None
    names = {node.name for node in graph_def.node}
    missing = [t for t in (INPUT_TENSOR, OUTPUT_TENSOR) if t.split(":")[0] not in names]
    if missing:
      raise errors.ConfigError(f"--{flag}={path} has no tensor {', '.join(missing)}: "
                               f"it is not the FID Inception graph {REFERENCE_FILE}")
    self.path = os.path.abspath(path)

    def imported(images):
      (pool,) = tf.compat.v1.import_graph_def(graph_def, input_map={INPUT_TENSOR: images},
                                              return_elements=[OUTPUT_TENSOR], name="")
      return pool

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    wrapped = tf.compat.v1.wrap_function(imported, [spec])
    # Only the path from the input to pool_3 runs: the graph's JPEG decoder and its
    # classifier stay out.
    self._run = wrapped.prune(wrapped.inputs[0], wrapped.outputs[0])

  def features(self, images: np.ndarray, batch_size: int = 50,
               log: Callable[[str], None] = print, what: str = "images",
               log_every_seconds: float = 10.0) -> np.ndarray:
    """pool_3 features [N, D] of float RGB `images` [N, H, W, 3] in 0..255."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"need RGB images [N, H, W, 3], got shape {images.shape}")
    chunks = []
    progress = progress_lib.Progress(len(images), f"Inception features of {what}", log,
                                     every=log_every_seconds)
    for i in range(0, len(images), batch_size):
      chunks.append(np.asarray(self._run(tf.constant(images[i:i + batch_size]))))
      progress.update(min(i + batch_size, len(images)))
    return np.concatenate(chunks).reshape(len(images), -1)
