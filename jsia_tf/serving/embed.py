"""Batch embedding of many images with an export, into a features file.

The images: a folder (searched recursively; ids, cameras and modalities from the
SYSU-MM01 / LLCM / RegDB folder names where they follow them, `search.labels`), a
text file of image paths (one a line, relative to the file), or a custom CSV list
file (`--dataset=custom`'s: its ids, cameras, modalities and query / gallery roles).
The output is the features file `python -m jsia_tf.evaluate --features` and
`search` read, written atomically.
"""

import os
from typing import List

import numpy as np

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import readers
from jsia_tf.evaluation import features as features_lib
from jsia_tf.serving import saved_model
from jsia_tf.serving import search


def _listed_paths(path: str) -> List[str]:
  """The image paths of a text list file, relative to its folder; `DataError`
  naming the line of a path that is not an image file."""
  folder, paths = os.path.dirname(os.path.abspath(path)), []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      name = line.strip()
      if not name:
        continue
      full = os.path.join(folder, name)
      if not os.path.isfile(full):
        raise errors.DataError(f"image list {path} line {number}: {full} does not exist")
      paths.append(full)
  if not paths:
    raise errors.DataError(f"image list {path} lists no images")
  return paths


def image_paths(images: str) -> List[str]:
  """The image files of --images: a folder (recursive), one image, or a text file
  of paths."""
  if os.path.isfile(images) and not images.lower().endswith(layouts.IMAGE_EXTENSIONS):
    return _listed_paths(images)
  return search.list_images(images, "images")


def embed(cfg: config_lib.EmbedConfig, log=print) -> features_lib.FeatureSet:
  """Embeds the images of `cfg` and writes `cfg.output`; returns the features."""
  served = saved_model.open_model(cfg.model, "model")
  if cfg.images.endswith(".csv"):
    records = readers.read_custom(cfg.images, "train") + readers.read_custom(
        cfg.images, "test")
    kept, embeddings = search.embed_paths(served, [r.path for r in records],
                                          cfg.batch_size, "images", log)
    by_path = {r.path: r for r in records}
    chosen = [by_path[p] for p in kept]
    feats = features_lib.FeatureSet(
        features=embeddings, ids=[r.pid for r in chosen], cams=[r.camera for r in chosen],
        frames=[r.frame for r in chosen], modality=[r.modality for r in chosen],
        paths=np.asarray(kept, str), role=[r.role for r in chosen])
  else:
    feats = search.embed_files(served, image_paths(cfg.images), cfg.batch_size,
                               "images", log)
  features_lib.save(cfg.output, feats)
  log(f"wrote {cfg.output}: {len(feats.features)} embeddings of dimension "
      f"{feats.features.shape[1]} from {served.directory}")
  return feats
