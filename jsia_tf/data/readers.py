"""Readers of the real SYSU-MM01, RegDB and LLCM layouts into lists of `ImageRecord`.

A record's `frame` is its index among the images of its (camera, identity) folder in
sorted file-name order; this is what the official `rand_perm_cam.mat` indexes (there
1-based). Every problem with the data on disk raises `DataError` naming the path and
what was expected; files that are not images are ignored and counted in the log.
"""

import csv
import dataclasses
import os
from typing import Dict, List, Sequence, Tuple

from absl import logging

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import layouts


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One image on disk and what the layout says about it."""

  path: str  # absolute path
  pid: int  # the data set's own person id (folder name)
  camera: int
  modality: int  # layouts.RGB or layouts.IR
  frame: int  # 0-based index within the sorted images of (camera, pid)
  role: int = layouts.ROLE_NONE  # a custom list's query / gallery image


def _require_dir(path: str, what: str) -> None:
  if not os.path.exists(path):
    raise errors.DataError(f"{what} {path} does not exist")
  if not os.path.isdir(path):
    raise errors.DataError(f"{what} {path} is not a directory")


def list_images(folder: str) -> List[str]:
  """Sorted image file names in `folder`; other files are counted and logged."""
  names = sorted(os.listdir(folder))
  images = [n for n in names if n.lower().endswith(layouts.IMAGE_EXTENSIONS)]
  others = len(names) - len(images)
  if others:
    logging.warning("ignored %d non-image file(s) in %s (expected only %s files)",
                    others, folder, "/".join(layouts.IMAGE_EXTENSIONS))
  return images


def relabel(pids: Sequence[int]) -> Dict[int, int]:
  """Maps the distinct ids of `pids`, sorted, to 0..n-1."""
  return {pid: label for label, pid in enumerate(sorted(set(pids)))}


# ---------------------------------------------------------------------------------
# SYSU-MM01


def read_sysu_split_file(root: str, split: str) -> List[int]:
  """The ids of `exp/{split}_id.txt`: one line of comma-separated integers."""
  return _read_id_line(layouts.sysu_split_path(root, split), "SYSU-MM01 split file")


def _read_id_line(path: str, what: str) -> List[int]:
  """The ids of a file of one line of comma-separated ids (SYSU-MM01's split files,
  LLCM's test id file), in file order; `DataError` naming the file (`what`) when it
  is missing, empty, malformed or lists an id twice."""
  if not os.path.isfile(path):
    raise errors.DataError(
        f"{what} {path} is missing (expected one line of comma-separated person ids)")
  with open(path) as f:
    text = f.read()
  tokens = [t.strip() for t in text.replace("\n", ",").split(",")]
  tokens = [t for t in tokens if t]
  if not tokens:
    raise errors.DataError(f"{what} {path} is empty (expected one line of "
                           f"comma-separated person ids)")
  ids = []
  for token in tokens:
    if not token.isdigit():
      raise errors.DataError(
          f"{what} {path} is malformed: {token!r} is not a person id "
          f"(expected one line of comma-separated non-negative integers)")
    ids.append(int(token))
  if len(set(ids)) != len(ids):
    dup = sorted({i for i in ids if ids.count(i) > 1})
    raise errors.DataError(f"{what} {path} lists ids more than once: {dup[:10]}")
  return ids


def _require_layout(root: str, folders: Sequence[str], name: str, expected: str) -> None:
  """Raises `DataError` unless `root` is a directory holding `folders`, naming the
  missing ones and the `expected` layout of data set `name`."""
  _require_dir(root, "data_dir")
  missing = [d for d in folders if not os.path.isdir(os.path.join(root, d))]
  if missing:
    raise errors.DataError(f"data_dir {root} is not the {name} layout: missing "
                           f"{', '.join(missing)} (expected {expected})")


def check_sysu_layout(root: str) -> None:
  """Raises `DataError` unless `root` looks like SYSU-MM01 (cam1..cam6/, exp/)."""
  _require_layout(root, [f"cam{c}" for c in layouts.SYSU_CAMERAS] + ["exp"], "SYSU-MM01",
                  "cam1/ .. cam6/ with <pid:04d>/<n:04d>.jpg and "
                  "exp/{train,val,test}_id.txt")


SYSU_SPLITS = {"train": ("train", "val"), "test": ("test",), "val": ("val",)}


def sysu_image_counts(root: str) -> Dict[Tuple[int, int], int]:
  """{(camera, pid): number of images} of every identity folder of every camera of a
  SYSU-MM01-layout `root`, whatever its split (the official perm file covers all)."""
  root = os.path.abspath(root)
  check_sysu_layout(root)
  counts = {}
  for camera in layouts.SYSU_CAMERAS:
    cam_dir = os.path.join(root, f"cam{camera}")
    for name in sorted(os.listdir(cam_dir)):
      folder = os.path.join(cam_dir, name)
      if not os.path.isdir(folder):
        continue
      if not name.isdigit():
        raise errors.DataError(f"{folder} is not an identity folder (expected "
                               f"{cam_dir}/<pid:04d>/)")
      n = len(list_images(folder))
      if n:
        counts[(camera, int(name))] = n
  if not counts:
    raise errors.DataError(f"data_dir {root} holds no images in cam1..cam6/<pid>/")
  return counts


def read_sysu(root: str, split: str) -> List[ImageRecord]:
  """Records of the SYSU-MM01 `split`: "train" (train + val ids, the usual 395),
  "test" (96 ids) or "val"; all six cameras, sorted by (camera, pid, frame)."""
  if split not in SYSU_SPLITS:
    raise errors.DataError(f"unknown SYSU-MM01 split {split!r}; expected one of "
                           f"{sorted(SYSU_SPLITS)}")
  root = os.path.abspath(root)
  check_sysu_layout(root)
  ids = []
  for name in SYSU_SPLITS[split]:
    ids.extend((pid, name) for pid in read_sysu_split_file(root, name))
  records = []
  for pid, split_file in ids:
    found = 0
    for camera in layouts.SYSU_CAMERAS:
      folder = os.path.join(root, f"cam{camera}", f"{pid:04d}")
      if not os.path.isdir(folder):
        continue  # not every person is seen by every camera
      for frame, name in enumerate(list_images(folder)):
        records.append(ImageRecord(os.path.join(folder, name), pid, camera,
                                   layouts.sysu_modality(camera), frame))
        found += 1
    if not found:
      raise errors.DataError(
          f"person id {pid} is listed in {layouts.sysu_split_path(root, split_file)} "
          f"but has no images in any of {root}/cam1..cam6/{pid:04d}/")
  records.sort(key=lambda r: (r.camera, r.pid, r.frame))
  return records


# ---------------------------------------------------------------------------------
# RegDB


def check_regdb_layout(root: str) -> None:
  """Raises `DataError` unless `root` looks like RegDB (Visible/, Thermal/, idx/)."""
  _require_layout(root, list(layouts.REGDB_FOLDERS.values()) + ["idx"], "RegDB",
                  "Visible/<id>/*.bmp, Thermal/<id>/*.bmp and "
                  "idx/{train,test}_{visible,thermal}_<trial>.txt")


def read_regdb(root: str, split: str, trial: int) -> List[ImageRecord]:
  """Records listed by RegDB's `idx/{split}_{visible,thermal}_{trial}.txt`.

  `pid` is the identity folder's name; the labels of the index file must map
  one-to-one onto folders (checked). Visible images are camera 1, thermal camera 2.
  """
  if split not in ("train", "test"):
    raise errors.DataError(f"unknown RegDB split {split!r}; expected train or test")
  if trial not in range(1, layouts.REGDB_NUM_TRIALS + 1):
    raise errors.DataError(f"RegDB trial {trial} does not exist; expected 1..10")
  root = os.path.abspath(root)
  check_regdb_layout(root)
  cameras = {layouts.RGB: layouts.REGDB_VISIBLE_CAMERA,
             layouts.IR: layouts.REGDB_THERMAL_CAMERA}
  records = []
  label_of_pid, pid_of_label = {}, {}
  frames = _Frames()
  for modality, folder_name in layouts.REGDB_FOLDERS.items():
    path = layouts.regdb_idx_path(root, split, modality, trial)
    for where, line in _index_lines(path, "RegDB index file",
                                    f"'{folder_name}/<id>/<file> <label>'"):
      parts = line.split()
      if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        raise errors.DataError(f"{where} is malformed: {line!r} (expected "
                               f"'{folder_name}/<id>/<file> <integer label>')")
      rel, label = parts[0], int(parts[1])
      rel_parts = rel.replace("\\", "/").split("/")
      if len(rel_parts) != 3 or rel_parts[0] != folder_name or not rel_parts[1].isdigit():
        raise errors.DataError(f"{where}: path {rel!r} is not of the form "
                               f"'{folder_name}/<numeric id>/<file>'")
      pid = int(rel_parts[1])
      if label_of_pid.setdefault(pid, label) != label or (
          pid_of_label.setdefault(label, pid) != pid):
        raise errors.DataError(
            f"{where}: label {label} for identity folder {pid} contradicts an earlier "
            f"line (expected one label per identity)")
      image = os.path.join(root, folder_name, rel_parts[1], rel_parts[2])
      records.append(ImageRecord(image, pid, cameras[modality], modality,
                                 frames.of(image, where)))
  return records


def _index_lines(path: str, what: str, expected: str):
  """(where, line) of each non-empty line of an index file of `path label` lines,
  `where` naming the file and line; `DataError` when the file is missing or
  empty."""
  if not os.path.isfile(path):
    raise errors.DataError(f"{what} {path} is missing (expected lines {expected})")
  with open(path) as f:
    lines = [(f"{what} {path} line {n}", line.strip()) for n, line in enumerate(f, 1)
             if line.strip()]
  if not lines:
    raise errors.DataError(f"{what} {path} lists no images")
  return lines


class _Frames:
  """Frame numbers of listed images: the index among the sorted images of their
  folder, each folder listed once."""

  def __init__(self):
    self._folders = {}

  def of(self, image: str, where: str) -> int:
    """The frame of `image`; `DataError` (naming `where`) if it is not an image."""
    if not os.path.isfile(image):
      raise errors.DataError(f"{where}: image {image} does not exist")
    folder, name = os.path.split(image)
    if folder not in self._folders:
      self._folders[folder] = {n: i for i, n in enumerate(list_images(folder))}
    frame = self._folders[folder].get(name)
    if frame is None:
      raise errors.DataError(f"{where}: {image} does not have an image extension "
                             f"({'/'.join(layouts.IMAGE_EXTENSIONS)})")
    return frame


# ---------------------------------------------------------------------------------
# LLCM


def check_llcm_layout(root: str) -> None:
  """Raises `DataError` unless `root` looks like LLCM (idx/, test_vis/, test_nir/)."""
  _require_layout(root, ["idx"] + list(layouts.LLCM_TEST_FOLDERS.values()), "LLCM",
                  "idx/train_vis.txt, idx/train_nir.txt, idx/test_id.txt, "
                  "test_vis/cam<C>/<pid:04d>/ and test_nir/cam<C>/<pid:04d>/")


def _camera_of(rel: str) -> int:
  """The camera of an LLCM path: its `cam<C>` folder; 0 when it has none."""
  for part in rel.replace("\\", "/").split("/"):
    if part.startswith("cam") and part[3:].isdigit():
      return int(part[3:])
  return 0


def read_llcm_test_ids(root: str) -> List[int]:
  """The ids of LLCM's `idx/test_id.txt` (comma-separated, as its authors' code)."""
  return sorted(_read_id_line(os.path.join(root, layouts.LLCM_TEST_IDS),
                              "LLCM test id file"))


def read_llcm(root: str, split: str) -> List[ImageRecord]:
  """Records of LLCM's `split`. "train": the images of `idx/train_vis.txt` and
  `idx/train_nir.txt`, whose label is the person id and whose `cam<C>` folder (if
  any) the camera; "test": every image of `test_vis/` and `test_nir/` of the ids of
  `idx/test_id.txt`. Sorted by (modality, camera, pid, frame)."""
  if split not in ("train", "test"):
    raise errors.DataError(f"unknown LLCM split {split!r}; expected train or test")
  root = os.path.abspath(root)
  check_llcm_layout(root)
  records = []
  if split == "test":
    ids = read_llcm_test_ids(root)
    for modality, folder_name in layouts.LLCM_TEST_FOLDERS.items():
      for camera in layouts.LLCM_CAMERAS:
        for pid in ids:
          folder = os.path.join(root, folder_name, f"cam{camera}", f"{pid:04d}")
          if os.path.isdir(folder):
            records += [ImageRecord(os.path.join(folder, name), pid, camera, modality,
                                    frame)
                        for frame, name in enumerate(list_images(folder))]
    found = {r.pid for r in records}
    if not found:
      raise errors.DataError(f"no LLCM test images of the ids of "
                             f"{root}/{layouts.LLCM_TEST_IDS} in {root}/test_vis or "
                             f"{root}/test_nir (expected cam<C>/<pid:04d>/ folders)")
  else:
    frames = _Frames()
    for modality, list_name in layouts.LLCM_TRAIN_LISTS.items():
      for where, line in _index_lines(os.path.join(root, list_name), "LLCM list file",
                                      "'<relative/path> <label>'"):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
          raise errors.DataError(f"{where} is malformed: {line!r} (expected "
                                 f"'<relative/path> <non-negative integer label>')")
        image = os.path.join(root, parts[0])
        records.append(ImageRecord(image, int(parts[1]), _camera_of(parts[0]), modality,
                                   frames.of(image, where)))
  records.sort(key=lambda r: (r.modality, r.camera, r.pid, r.frame))
  return records


# ---------------------------------------------------------------------------------
# Your own data: a CSV list file


def custom_list_path(root: str) -> str:
  """The list file of `--data_dir=root`: the file itself, or `root/list.csv`."""
  path = os.path.abspath(root)
  if os.path.isdir(path):
    path = os.path.join(path, layouts.CUSTOM_LIST)
  if not os.path.isfile(path):
    raise errors.DataError(f"list file {path} does not exist (--dataset=custom: "
                           f"--data_dir is a CSV list file with the header "
                           f"{','.join(layouts.CUSTOM_COLUMNS)}, or the folder that "
                           f"holds it as {layouts.CUSTOM_LIST})")
  return path


def _custom_rows(path: str) -> List[Tuple[int, Dict[str, str]]]:
  """(line number, row) of every data row of the list file; the header checked."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in layouts.CUSTOM_COLUMNS if c not in header]
    extra = [c for c in header if c not in layouts.CUSTOM_COLUMNS]
    if missing or extra:
      raise errors.DataError(
          f"list file {path} line 1: the header is {','.join(header) or 'empty'}; "
          f"expected the columns {','.join(layouts.CUSTOM_COLUMNS)}"
          + (f" (missing {', '.join(missing)})" if missing else "")
          + (f" (unknown {', '.join(extra)})" if extra else ""))
    reader.fieldnames = header
    rows = []
    for row in reader:
      if None in row or any(v is None for v in row.values()):
        raise errors.DataError(f"list file {path} line {reader.line_num}: expected "
                               f"{len(header)} comma-separated values")
      rows.append((reader.line_num, {k: v.strip() for k, v in row.items()}))
  if not rows:
    raise errors.DataError(f"list file {path} lists no images")
  return rows


def read_custom(root: str, split: str) -> List[ImageRecord]:
  """Records of a custom list file (`--dataset=custom`): "train" (the rows of
  split train) or "test" (query rows, role ROLE_QUERY, and gallery rows,
  ROLE_GALLERY). The whole file is checked whatever the split: every bad row is an
  error naming its line (a missing file, an unknown modality or split, a training
  identity seen in one modality only, a query identity absent from the gallery)."""
  if split not in ("train", "test"):
    raise errors.DataError(f"unknown split {split!r}; expected train or test")
  path = custom_list_path(root)
  folder = os.path.dirname(path)
  records, lines, seen = [], [], {}
  for line, row in _custom_rows(path):
    where = f"list file {path} line {line}"
    image = os.path.join(folder, row["path"]) if row["path"] else ""
    if not image or not os.path.isfile(image):
      raise errors.DataError(f"{where}: image {image or '(empty path)'} does not exist")
    if not image.lower().endswith(layouts.IMAGE_EXTENSIONS):
      raise errors.DataError(f"{where}: {image} does not have an image extension "
                             f"({'/'.join(layouts.IMAGE_EXTENSIONS)})")
    if image in seen:
      raise errors.DataError(f"{where}: {row['path']} is listed again (first on line "
                             f"{seen[image]})")
    seen[image] = line
    for name in ("pid", "camera"):
      if not row[name].isdigit():
        raise errors.DataError(f"{where}: {name} {row[name]!r} is not a non-negative "
                               f"integer")
    modality = layouts.CUSTOM_MODALITIES.get(row["modality"].lower())
    if modality is None:
      raise errors.DataError(f"{where}: modality {row['modality']!r} is not one of "
                             f"{', '.join(layouts.CUSTOM_MODALITIES)}")
    role = layouts.CUSTOM_SPLITS.get(row["split"].lower())
    if role is None:
      raise errors.DataError(f"{where}: split {row['split']!r} is not one of "
                             f"{', '.join(layouts.CUSTOM_SPLITS)}")
    records.append(ImageRecord(image, int(row["pid"]), int(row["camera"]), modality, 0,
                               role))
    lines.append(line)
  _check_custom(path, records, lines)
  # frame: the index among the sorted paths of its (camera, pid, modality).
  groups = {}
  for r in records:
    groups.setdefault((r.camera, r.pid, r.modality), []).append(r.path)
  index = {p: i for paths in groups.values() for i, p in enumerate(sorted(paths))}
  records = [dataclasses.replace(r, frame=index[r.path]) for r in records]
  wanted = ((layouts.ROLE_NONE,) if split == "train" else
            (layouts.ROLE_QUERY, layouts.ROLE_GALLERY))
  out = [r for r in records if r.role in wanted]
  out.sort(key=lambda r: (r.role, r.camera, r.pid, r.frame))
  return out


def _check_custom(path: str, records: List[ImageRecord], lines: List[int]) -> None:
  """The checks across rows of `read_custom`, each naming a line."""
  first = {}
  for r, line in zip(records, lines):
    first.setdefault((r.role, r.pid), line)
  train = [r for r in records if r.role == layouts.ROLE_NONE]
  if not train:
    raise errors.DataError(f"list file {path} has no rows of split train")
  modalities = {}
  for r in train:
    modalities.setdefault(r.pid, set()).add(r.modality)
  for pid, seen in sorted(modalities.items()):
    if len(seen) < 2:
      name = layouts.MODALITY_NAMES[next(iter(seen))]
      raise errors.DataError(
          f"list file {path} line {first[(layouts.ROLE_NONE, pid)]}: training identity "
          f"{pid} has {name} images only (JSIA trains on identities seen in both "
          f"modalities: add the other modality's images or remove its rows)")
  gallery = {r.pid for r in records if r.role == layouts.ROLE_GALLERY}
  queries = sorted({r.pid for r in records if r.role == layouts.ROLE_QUERY})
  if not queries or not gallery:
    raise errors.DataError(f"list file {path} needs rows of split query and of split "
                           f"gallery (it has {len(queries)} query and {len(gallery)} "
                           f"gallery identities)")
  for pid in queries:
    if pid not in gallery:
      raise errors.DataError(
          f"list file {path} line {first[(layouts.ROLE_QUERY, pid)]}: query identity "
          f"{pid} has no image in the gallery (every query needs a true match)")


def read_dataset(dataset: str, root: str, split: str, trial: int = 1):
  """Records of `split` of `dataset` (one of `config.DATASETS`; `trial` for
  RegDB)."""
  # os.path.abspath("") is the working directory: refuse it rather than read it.
  config_lib.require(bool(root), "data_dir", root, "the data set's root directory")
  if dataset == "sysu":
    return read_sysu(root, split)
  if dataset == "regdb":
    return read_regdb(root, split, trial)
  if dataset == "llcm":
    return read_llcm(root, split)
  if dataset == "custom":
    return read_custom(root, split)
  raise errors.DataError(f"unknown dataset {dataset!r}; expected one of "
                         f"{', '.join(config_lib.DATASETS)}")
