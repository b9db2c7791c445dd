"""`ImageTable`: the encoded images of a split and their labels, held in memory.

The training pipeline samples P x K batches by index, which needs random access;
encoded JPEG/BMP bytes are small (SYSU-MM01's training split is a few hundred MB), so
the whole split is held as bytes and decoded on the fly. A table is built from image
files (`load_images`) or from TFRecords (`tfrecords.load_table`): one representation
for both, so the pipeline has one input path.
"""

import concurrent.futures
import dataclasses
import io
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import logging
from PIL import Image

from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import readers

INT_FIELDS = ("label", "pid", "camera", "modality", "frame", "role")


@dataclasses.dataclass
class ImageTable:
  """Column arrays of one split; row i describes image i."""

  encoded: np.ndarray  # object array of bytes
  path: np.ndarray  # object array of str
  label: np.ndarray  # int64, relabelled 0..num_ids-1 within the split
  pid: np.ndarray  # int64, the data set's own id
  camera: np.ndarray  # int64
  modality: np.ndarray  # int64, layouts.RGB or layouts.IR
  frame: np.ndarray  # int64, index within the sorted images of (camera, pid)
  role: np.ndarray  # int64, layouts.ROLE_* (a custom list's query / gallery)

  def __len__(self):
    return len(self.encoded)

  def select(self, index) -> "ImageTable":
    """The rows `index` (a boolean mask or integer indices) as a new table."""
    return ImageTable(**{f.name: getattr(self, f.name)[index]
                         for f in dataclasses.fields(self)})


def make_table(encoded: Sequence[bytes], path: Sequence[str],
               **columns: Sequence[int]) -> ImageTable:
  """Builds an `ImageTable`, converting columns to their array types."""
  enc = np.empty(len(encoded), object)
  enc[:] = list(encoded)
  paths = np.empty(len(path), object)
  paths[:] = list(path)
  return ImageTable(encoded=enc, path=paths,
                    **{k: np.asarray(columns[k], np.int64).reshape(-1)
                       for k in INT_FIELDS})


# The formats TensorFlow's decode_image reads (training, evaluation and the exported
# model all decode with it), by the bytes they start with.
TF_FORMATS = {"JPEG": (b"\xff\xd8\xff",), "PNG": (b"\x89PNG\r\n\x1a\n",),
              "BMP": (b"BM",), "GIF": (b"GIF87a", b"GIF89a")}


def decode_error(data: bytes) -> Optional[str]:
  """None if `data` decodes fully as an image in a format TensorFlow reads, else
  the complaint. PIL reads more formats (TIFF, WebP, ...) than TensorFlow: a TIFF
  named .jpg would pass PIL and then fail inside training, naming no file."""
  if not any(data.startswith(magic) for magics in TF_FORMATS.values() for magic in magics):
    try:
      with Image.open(io.BytesIO(data)) as image:
        found = f"{image.format} data"
    except Exception:  # pylint: disable=broad-except  (PIL raises many types)
      found = "no image format known"
    return (f"{found}, not one TensorFlow decodes ({'/'.join(TF_FORMATS)}), whatever "
            f"the file's name")
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # a full decode: truncated JPEGs fail here, not in open()
    return None
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many types)
    return f"{type(e).__name__}: {e}"


def load_images(records: List[readers.ImageRecord], label_map: Dict[int, int],
                skip_corrupt: bool = False, num_threads: int = 8) -> ImageTable:
  """Reads and checks the image files of `records` into a table.

  Every image is fully decoded once so that a corrupt file is found here, named,
  rather than deep inside training. A corrupt or unreadable file raises `DataError`,
  or with `skip_corrupt` is left out and counted in the log.
  """

  def read(record):
    try:
      with open(record.path, "rb") as f:
        data = f.read()
    except OSError as e:
      return None, f"cannot be read ({e.strerror})"
    problem = decode_error(data)
    return (None, f"is not a decodable image ({problem})") if problem else (data, None)

  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    results = list(pool.map(read, records))
  kept, encoded, skipped = [], [], []
  for record, (data, problem) in zip(records, results):
    if problem is None:
      kept.append(record)
      encoded.append(data)
      continue
    if not skip_corrupt:
      raise errors.DataError(f"image {record.path} {problem}; fix or remove it, or "
                             f"pass --skip_corrupt to leave such images out")
    skipped.append(record.path)
  if skipped:
    logging.warning("skipped %d corrupt image(s) (--skip_corrupt), first: %s",
                    len(skipped), ", ".join(skipped[:5]))
  if not kept:
    raise errors.DataError("no readable images left: all %d were corrupt" % len(records))
  missing_labels = {r.pid for r in kept} - set(label_map)
  if missing_labels:
    raise ValueError(f"label_map has no label for ids {sorted(missing_labels)[:10]}")
  return make_table(
      encoded, [r.path for r in kept], label=[label_map[r.pid] for r in kept],
      pid=[r.pid for r in kept], camera=[r.camera for r in kept],
      modality=[r.modality for r in kept], frame=[r.frame for r in kept],
      role=[r.role for r in kept])


def summary(table: ImageTable) -> Dict[str, Dict[str, int]]:
  """Per modality name: number of images and of distinct ids."""
  out = {}
  for modality, name in layouts.MODALITY_NAMES.items():
    mask = table.modality == modality
    out[name] = {"num_images": int(mask.sum()),
                 "num_ids": int(len(np.unique(table.pid[mask])))}
  return out

