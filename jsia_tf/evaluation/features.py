"""The features file: embeddings of a test set and what identifies each image.

A `.npz` with arrays of equal length N:
  features  float [N, D]  embeddings (any scale; distances normalise as configured)
  ids       int   [N]     the data set's person ids (not relabelled)
  cams      int   [N]     camera numbers (SYSU-MM01 1..6; RegDB 1 visible, 2 thermal)
  frames    int   [N]     index within the sorted images of its (camera, id): the
                          index the official rand_perm_cam.mat uses (there 1-based)
  modality  int   [N]     0 RGB / visible, 1 IR / thermal
and optionally `paths` (str [N]) and `role` (int [N]: 1 query, 2 gallery, 0 neither;
what a custom list file names, `--protocol=custom`). Written by feature extraction,
read by
`python -m jsia_tf.evaluate`, so results can be recomputed without a model.
"""

import dataclasses
import os
import zipfile
from typing import Optional

import numpy as np

from jsia_tf import errors
from jsia_tf import files

REQUIRED = ("features", "ids", "cams", "frames", "modality")
OPTIONAL = ("paths", "role")


@dataclasses.dataclass
class FeatureSet:
  """Embeddings and labels of a set of images (see the module docstring)."""

  features: np.ndarray
  ids: np.ndarray
  cams: np.ndarray
  frames: np.ndarray
  modality: np.ndarray
  paths: Optional[np.ndarray] = None
  role: Optional[np.ndarray] = None

  def __post_init__(self):
    self.features = np.asarray(self.features)
    if self.features.dtype.kind not in "fiu":
      raise errors.DataError(f"features must be a real number matrix [N, D], got dtype "
                             f"{self.features.dtype}")
    for name in REQUIRED[1:]:
      setattr(self, name, _integers(name, getattr(self, name)))
    if self.features.ndim != 2 or self.features.shape[1] < 1:
      raise errors.DataError(f"features must be 2-D [N, D] with D >= 1, got shape "
                             f"{self.features.shape}")
    if self.role is not None:
      self.role = _integers("role", self.role)
    n = len(self.features)
    for name in REQUIRED[1:] + tuple(name for name in OPTIONAL
                                     if getattr(self, name) is not None):
      shape = np.shape(getattr(self, name))
      if shape != (n,):
        raise errors.DataError(f"{name} has shape {shape} but features has {n} rows: "
                               f"every array must have one entry per image")
    if not np.all(np.isfinite(self.features)):
      raise errors.DataError("features contain NaN or Inf")

  def select(self, mask) -> "FeatureSet":
    """The rows `mask` (boolean or indices) as a new set."""
    return FeatureSet(**{f.name: (None if getattr(self, f.name) is None else
                                  getattr(self, f.name)[mask])
                         for f in dataclasses.fields(self)})


def _integers(name: str, values) -> np.ndarray:
  """`values` as int64, if every one is a whole number; else a DataError naming the
  field (a float column of ids is accepted only when it holds whole numbers)."""
  values = np.asarray(values)
  if values.dtype.kind in "iu":
    return values.astype(np.int64)
  if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(
      values == np.round(values)):
    return values.astype(np.int64)
  bad = values.ravel()[:1]
  if values.dtype.kind == "f":
    bad = values[~(np.isfinite(values) & (values == np.round(values)))].ravel()[:1]
  raise errors.DataError(f"{name} must hold integers, got dtype {values.dtype}"
                         + (f" with the value {bad[0].item()!r}" if bad.size else ""))


def save(path: str, feature_set: FeatureSet) -> None:
  """Writes `feature_set` to `path` (.npz), atomically."""
  arrays = {name: getattr(feature_set, name) for name in REQUIRED}
  if feature_set.paths is not None:
    arrays["paths"] = np.asarray(feature_set.paths, str)
  if feature_set.role is not None:
    arrays["role"] = np.asarray(feature_set.role, np.int64)
  files.atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def load(path: str) -> FeatureSet:
  """Reads and validates a features file; `DataError` names the file and the fault."""
  if not os.path.isfile(path):
    raise errors.DataError(f"features file {path} does not exist")
  with open(path, "rb") as f:
    head = f.read(6)
  # Neither zip nor .npy: numpy would try it as a pickle and say so, which misleads.
  if not (head.startswith(b"PK") or head == b"\x93NUMPY"):
    raise errors.DataError(
        f"features file {path} is not a readable .npz ("
        + (f"it starts with {head!r}, not a zip archive's b'PK'" if head else "empty")
        + ")")
  try:
    data = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise errors.DataError(f"features file {path} is not a readable .npz "
                           f"({e or type(e).__name__})") from None
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise errors.DataError(f"features file {path} is a single array (.npy), not an .npz "
                           f"of arrays {', '.join(REQUIRED)}")
  try:
    with data:
      arrays = {k: data[k] for k in data.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise errors.DataError(f"features file {path} is not a readable .npz ({e})") from None
  missing = [k for k in REQUIRED if k not in arrays]
  if missing:
    raise errors.DataError(f"features file {path} lacks {', '.join(missing)} (expected "
                           f"arrays {', '.join(REQUIRED)}[, paths])")
  try:
    return FeatureSet(**{k: arrays[k] for k in REQUIRED},
                      **{k: arrays.get(k) for k in OPTIONAL})
  except errors.DataError as e:
    raise errors.DataError(f"features file {path}: {e}") from None


def l2_normalize(features: np.ndarray) -> np.ndarray:
  """Rows of features [N, D] scaled to unit L2 norm, in float64 (zero rows stay
  zero)."""
  features = np.asarray(features, np.float64)
  return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def distance_matrix(query: np.ndarray, gallery: np.ndarray, distance: str) -> np.ndarray:
  """[Q, G] float64 distances: "cosine" (1 - cosine similarity of L2-normalised
  features, Eq. 17) or "euclidean"."""
  q = np.asarray(query, np.float64)
  g = np.asarray(gallery, np.float64)
  if distance == "cosine":
    return 1.0 - l2_normalize(q) @ l2_normalize(g).T
  if distance == "euclidean":
    squared = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * q @ g.T
    return np.sqrt(np.maximum(squared, 0.0))
  raise errors.DataError(f"unknown distance {distance!r}; expected cosine or euclidean")
