"""The SYSU-MM01 and RegDB test protocols on a features file.

SYSU-MM01: queries are all IR images (cams 3, 6); the gallery takes, per identity and
RGB camera (all-search: 1, 2, 4, 5; indoor: 1, 2), the first 1 (single-shot) or 10
(multi-shot) images of a random order. Ten trials: trial t (0..9) uses row t of an
official-format `rand_perm_cam.mat` (1-based indices into the sorted images of
(cam, id)), or `numpy.random.default_rng(t)` (seeded draws). Groups with fewer images
than shots give all their images.

RegDB: per trained model (one per trial), visible->thermal (`v2t`: visible queries,
thermal gallery) or thermal->visible (`t2v`), every test image, no camera filter.

LLCM, as its authors' code (`DEEN/test.py`, `data_manager.py`, `eval_metrics.py`):
every test image of the query modality is a query (`t2v`: infrared queries, their
default; `v2t`: visible queries); the gallery is one image per (identity, camera) of
the other modality, drawn per trial t = 0..9 by Python's `random.Random(t)` in their
order (identities ascending, then cameras ascending, `choice` among the sorted
images), so a data set gives the very galleries their code draws; gallery images of
the query's identity and camera are removed; the CMC counts each identity once.

Order. Ranking breaks exact distance ties by gallery order, so the gallery is put in
one order whatever the file's row order: the official code's, cameras ascending, then
identities ascending, then the images of a (camera, identity). Within a (camera,
identity) the order cannot move a metric (the tied images share identity and
camera), so frames ascending serve for the official code's permutation order.
Queries are put in the same order, so that even the rounding of the means over
queries does not depend on the file.

Identities. The official code evaluates only the identities of `test_id.mat`;
`keep_ids` leaves out every row of another identity and counts what it left out.
"""

import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import io as scipy_io

from jsia_tf import errors
from jsia_tf import files
from jsia_tf.data import layouts
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import ranking
from jsia_tf.evaluation import rerank as rerank_lib

# The official split files, shipped with the package (see that folder's README).
OFFICIAL_SPLIT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "sysu_mm01_eval")
SYSU_MODES = ("all", "indoor")
SYSU_SHOTS = (1, 10)
SYSU_TRIALS = 10
OFFICIAL_PERM_FILE = os.path.join(OFFICIAL_SPLIT_DIR, "rand_perm_cam.mat")
OFFICIAL_TEST_IDS = os.path.join(OFFICIAL_SPLIT_DIR, "test_id.mat")
# k-reciprocal re-ranking's (k1, k2, lambda).
RerankParams = Tuple[int, int, float]
REGDB_DIRECTIONS = {"v2t": (layouts.RGB, layouts.IR), "t2v": (layouts.IR, layouts.RGB)}


def gallery_order(feats: features_lib.FeatureSet, rows: np.ndarray) -> np.ndarray:
  """`rows` in the official gallery order: camera, then identity, then frame. Queries
  take it too, so that means over queries add up in one order (bit for bit the same
  result for any row order of the file)."""
  rows = np.asarray(rows, np.int64)
  return rows[np.lexsort((feats.frames[rows], feats.ids[rows], feats.cams[rows]))]


def read_ids(path: str) -> np.ndarray:
  """The person ids of an id list: the official `test_id.mat` (variable `id`), a
  SYSU-MM01 `exp/test_id.txt` (ids separated by commas, spaces or lines), or a RegDB
  index file (`Visible/<id>/<file> <label>` lines: the folder ids)."""
  if not os.path.isfile(path):
    raise errors.DataError(f"id list {path} does not exist (expected test_id.mat, "
                           f"exp/test_id.txt or a RegDB idx/test_*_<trial>.txt)")
  if path.endswith(".mat"):
    try:
      return np.unique(scipy_io.loadmat(path)["id"].ravel().astype(np.int64))
    except (OSError, ValueError, KeyError, scipy_io.matlab.MatReadError) as e:
      raise errors.DataError(f"id list {path} is not a .mat file with a variable 'id' "
                             f"({e})") from None
  ids = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      parts = line.split()
      if len(parts) == 2 and "/" in parts[0].replace("\\", "/"):  # RegDB idx line
        folder = parts[0].replace("\\", "/").split("/")[-2]
        tokens = [folder]
      else:
        tokens = [t for t in line.replace(",", " ").split() if t]
      for token in tokens:
        if not token.isdigit():
          raise errors.DataError(f"id list {path} line {number}: {token!r} is not a "
                                 f"person id (expected non-negative integers)")
        ids.append(int(token))
  if not ids:
    raise errors.DataError(f"id list {path} holds no person ids")
  return np.unique(np.array(ids, np.int64))


def keep_ids(feats: features_lib.FeatureSet, ids: np.ndarray
             ) -> Tuple[features_lib.FeatureSet, Dict[str, int]]:
  """The rows of `feats` whose identity is in `ids`, and counts of what was left out
  (`left_out_rows`, `left_out_ids`) and kept (`kept_rows`, `kept_ids`)."""
  keep = np.isin(feats.ids, ids)
  counts = {"kept_rows": int(keep.sum()), "kept_ids": int(len(np.unique(feats.ids[keep]))),
            "left_out_rows": int((~keep).sum()),
            "left_out_ids": int(len(np.unique(feats.ids[~keep])))}
  return (feats if keep.all() else feats.select(keep)), counts


class PermFile:
  """The official `rand_perm_cam.mat`: `rand_perm_cam{cam}{pid}` is a [trials, n]
  matrix of 1-based indices into the n sorted images of (cam, pid)."""

  def __init__(self, path: str):
    self.path = path
    if not os.path.isfile(path):
      raise errors.DataError(f"perm file {path} does not exist")
    try:
      mat = scipy_io.loadmat(path)
    except (OSError, ValueError, scipy_io.matlab.MatReadError) as e:
      raise errors.DataError(f"perm file {path} is not a readable .mat file ({e})") from None
    cells = mat.get("rand_perm_cam")
    if cells is None or cells.dtype != object or cells.shape[0] != 6:
      raise errors.DataError(f"perm file {path} has no 6-camera cell array "
                             f"'rand_perm_cam' (expected the official SYSU-MM01 "
                             f"rand_perm_cam.mat)")
    self._cells = cells

  def get(self, cam: int, pid: int) -> Optional[np.ndarray]:
    """The [trials, n] int matrix of (cam, pid), or None if the file has none."""
    per_pid = self._cells[cam - 1, 0]
    if pid < 1 or pid > per_pid.shape[0]:
      return None
    entry = np.asarray(per_pid[pid - 1, 0])
    return entry.astype(np.int64) if entry.size else None


def make_perm_cells(counts: Dict[Tuple[int, int], int], num_trials: int = SYSU_TRIALS,
                    seed: int = 0) -> np.ndarray:
  """`rand_perm_cam` of the official file for a data set whose (camera, pid) folders
  hold `counts` images: a 6 x 1 cell array; cell c is a [max pid of camera c, 1] cell
  array whose entry pid is a [num_trials, n] matrix of 1-based permutations of the n
  images (uint8 as the official file, uint16 above 255 images), and an empty
  [num_trials, 0] matrix where the camera has no such identity. Drawn with
  `numpy.random.default_rng(seed)`, camera by camera, pid by pid."""
  rng = np.random.default_rng(seed)
  cells = np.empty((len(layouts.SYSU_CAMERAS), 1), dtype=object)
  for c, cam in enumerate(layouts.SYSU_CAMERAS):
    pids = [pid for (cc, pid) in counts if cc == cam]
    per_pid = np.empty((max(pids, default=0), 1), dtype=object)
    for pid in range(1, len(per_pid) + 1):
      n = counts.get((cam, pid), 0)
      dtype = np.uint8 if n <= np.iinfo(np.uint8).max else np.uint16
      per_pid[pid - 1, 0] = np.array([rng.permutation(n) + 1 for _ in range(num_trials)],
                                     dtype).reshape(num_trials, n)
    cells[c, 0] = per_pid
  return cells


def write_perm_file(path: str, cells: np.ndarray) -> None:
  """Writes `cells` as `rand_perm_cam` in a MATLAB 5 .mat file (the official file's
  format), atomically."""
  files.atomic_write(path, lambda f: scipy_io.savemat(f, {"rand_perm_cam": cells},
                                                      format="5"), binary=True)


def feature_cam_cells(feats: features_lib.FeatureSet, cam: int,
                      num_ids: int) -> np.ndarray:
  """The features of camera `cam` as the SYSU-MM01 authors' evaluation code reads
  them from `feature_cam{cam}.mat` (variable `feature`): a [num_ids, 1] cell array
  whose entry pid - 1 holds the [n, D] features of (cam, pid) in frame order, the
  order the official perm file indexes; [0, 0] where the camera has no such
  identity."""
  cells = np.empty((num_ids, 1), dtype=object)
  for pid in range(1, num_ids + 1):
    rows = np.flatnonzero((feats.cams == cam) & (feats.ids == pid))
    rows = rows[np.argsort(feats.frames[rows], kind="stable")]
    cells[pid - 1, 0] = (np.asarray(feats.features[rows], np.float64) if len(rows)
                         else np.zeros((0, 0)))
  return cells


def official_test_layout(split_dir: str) -> Tuple[PermFile, np.ndarray]:
  """The official perm file of `split_dir` and the (id, cam, frame) rows [N, 3] of
  the real SYSU-MM01 test set as `test_id.mat` and `rand_perm_cam.mat` describe it
  (every image of every test id, in camera, id, frame order)."""
  perm = PermFile(f"{split_dir}/rand_perm_cam.mat")
  path = f"{split_dir}/test_id.mat"
  try:
    test_ids = scipy_io.loadmat(path)["id"].ravel().astype(np.int64)
  except (OSError, ValueError, KeyError, scipy_io.matlab.MatReadError) as e:
    raise errors.DataError(f"{path} is not the official test_id.mat ({e})") from None
  rows = [(pid, cam, frame) for cam in layouts.SYSU_CAMERAS for pid in test_ids.tolist()
          if perm.get(cam, pid) is not None
          for frame in range(perm.get(cam, pid).shape[1])]
  return perm, np.array(rows, np.int64)


def sysu_split(feats: features_lib.FeatureSet, mode: str) -> Tuple[np.ndarray, np.ndarray]:
  """(query rows, candidate gallery rows) of `feats` for search `mode`."""
  if mode not in SYSU_MODES:
    raise errors.DataError(f"unknown SYSU-MM01 mode {mode!r}; expected all or indoor")
  query = gallery_order(feats, np.flatnonzero(
      (feats.modality == layouts.IR) & np.isin(feats.cams, layouts.SYSU_QUERY_CAMERAS)))
  candidates = gallery_order(feats, np.flatnonzero(
      (feats.modality == layouts.RGB) &
      np.isin(feats.cams, layouts.SYSU_GALLERY_CAMERAS[mode])))
  if not len(query):
    raise errors.DataError("no SYSU-MM01 queries: the features hold no IR images of "
                           "cams 3 or 6")
  if not len(candidates):
    raise errors.DataError(f"the {mode}-search gallery is empty: the features hold no "
                           f"RGB images of cams {layouts.SYSU_GALLERY_CAMERAS[mode]}")
  return query, candidates


def _groups(feats: features_lib.FeatureSet, candidates: np.ndarray,
            id_major: bool = False):
  """(order, starts, ends): `order` sorts `candidates` by (cam, pid, frame), or by
  (pid, cam, frame) with `id_major`; each [start, end) of it is one (cam, pid)
  group."""
  cams, pids, frames = (feats.cams[candidates], feats.ids[candidates],
                        feats.frames[candidates])
  major, minor = (pids, cams) if id_major else (cams, pids)
  order = np.lexsort((frames, minor, major))
  key = major[order] * (np.int64(1) << 32) + minor[order]
  starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
  return order, starts, np.r_[starts[1:], len(order)]


def perm_misfit(feats: features_lib.FeatureSet, candidates: np.ndarray, perm: PermFile,
                num_trials: int = SYSU_TRIALS) -> Optional[str]:
  """Why `perm` cannot draw galleries from `candidates` (a (cam, id) it lacks, other
  frames, too few trials), or None when it fits."""
  order, starts, ends = _groups(feats, candidates)
  for start, end in zip(starts, ends):
    row = candidates[order[start]]
    cam, pid = int(feats.cams[row]), int(feats.ids[row])
    where = f"perm file {perm.path} does not fit the features: cam {cam} id {pid}"
    matrix = perm.get(cam, pid)
    if matrix is None:
      return f"{where} has no permutation in the file"
    group_frames = feats.frames[candidates[order[start:end]]]
    n = matrix.shape[1]
    if not np.array_equal(group_frames, np.arange(n)):
      return (f"{where} has {n} images in the file but the features hold frames "
              f"{group_frames[:12].tolist()}{'...' if len(group_frames) > 12 else ''} "
              f"(expected frames 0..{n - 1})")
    if matrix.shape[0] < num_trials or matrix.min() < 1 or matrix.max() > n:
      return (f"{where}: the matrix {matrix.shape} is not {num_trials} rows of 1-based "
              f"indices into {n} images")
  return None


def sysu_galleries(feats: features_lib.FeatureSet, candidates: np.ndarray, shots: int,
                   num_trials: int = SYSU_TRIALS,
                   perm: Optional[PermFile] = None) -> List[np.ndarray]:
  """Per trial, the sorted positions (into `candidates`) of that trial's gallery."""
  if shots not in SYSU_SHOTS:
    raise errors.DataError(f"unknown number of shots {shots}; expected 1 or 10")
  order, starts, ends = _groups(feats, candidates)
  group = np.repeat(np.arange(len(starts)), ends - starts)
  rank_in_group = np.arange(len(order)) - starts[group]
  galleries = []
  if perm is None:
    for trial in range(num_trials):
      # A random order within each group: sort by (group, random key).
      random_key = np.random.default_rng(trial).random(len(order))
      shuffled = np.lexsort((random_key, group))
      picked = np.zeros(len(order), bool)
      picked[shuffled[rank_in_group < shots]] = True
      galleries.append(np.sort(order[picked]))
    return galleries

  misfit = perm_misfit(feats, candidates, perm, num_trials)
  if misfit:
    raise errors.DataError(misfit)
  chosen = [[] for _ in range(num_trials)]
  for start in starts:
    row = candidates[order[start]]
    matrix = perm.get(int(feats.cams[row]), int(feats.ids[row]))
    for trial in range(num_trials):
      chosen[trial].append(order[start + matrix[trial, :shots] - 1])
  return [np.sort(np.concatenate(c)) for c in chosen]


def evaluate_sysu(feats: features_lib.FeatureSet, modes: Sequence[str] = SYSU_MODES,
                  shots: Sequence[int] = SYSU_SHOTS, perm: Optional[PermFile] = None,
                  distance: str = "cosine", num_trials: int = SYSU_TRIALS,
                  max_rank: int = 20, rerank: Optional[RerankParams] = None
                  ) -> Dict[Tuple[str, int], List[ranking.RankingResult]]:
  """Per (mode, shots) setting, the per-trial results.

  Distances and each query's ranking of the candidates are computed once per mode and
  shared by the trials and shot settings. With `rerank` (k1, k2, lambda), each
  trial's query-gallery distances are re-ranked with that trial's gallery
  (`rerank.re_rank`), so every trial is ranked on its own.
  """
  results = {}
  for mode in modes:
    query, candidates = sysu_split(feats, mode)
    distmat = features_lib.distance_matrix(feats.features[query],
                                           feats.features[candidates], distance)
    args = (feats.ids[query], feats.ids[candidates], feats.cams[query],
            feats.cams[candidates], "sysu")
    if rerank is None:
      ranked = ranking.RankedCandidates(distmat, *args)
      for n in shots:
        galleries = sysu_galleries(feats, candidates, n, num_trials, perm)
        results[(mode, n)] = ranking.metrics_of_galleries(ranked, galleries, max_rank)
      continue
    q_q = features_lib.distance_matrix(feats.features[query], feats.features[query],
                                       distance)
    c_c = features_lib.distance_matrix(feats.features[candidates],
                                       feats.features[candidates], distance)
    for n in shots:
      results[(mode, n)] = []
      for gallery in sysu_galleries(feats, candidates, n, num_trials, perm):
        reranked = rerank_lib.re_rank(distmat[:, gallery], q_q,
                                      c_c[np.ix_(gallery, gallery)], *rerank,
                                      distance=distance)
        rows = candidates[gallery]
        results[(mode, n)].append(ranking.evaluate_ranking(
            reranked, feats.ids[query], feats.ids[rows], feats.cams[query],
            feats.cams[rows], "sysu", max_rank))
  return results


def llcm_galleries(feats: features_lib.FeatureSet, rows: np.ndarray,
                   num_trials: int = SYSU_TRIALS) -> List[np.ndarray]:
  """Per trial t, the gallery: one of `rows` per (identity, camera), drawn as the
  LLCM authors' code draws it (`random.Random(t)`, identities then cameras
  ascending, `choice` among the frames), in the gallery order."""
  rows = np.asarray(rows, np.int64)
  order, starts, ends = _groups(feats, rows, id_major=True)
  galleries = []
  for trial in range(num_trials):
    rng = random.Random(trial)
    picked = [rows[order[start + rng.choice(range(end - start))]]
              for start, end in zip(starts, ends)]
    galleries.append(gallery_order(feats, np.array(picked, np.int64)))
  return galleries


def evaluate_llcm(feats: features_lib.FeatureSet, direction: str,
                  distance: str = "cosine", num_trials: int = SYSU_TRIALS,
                  max_rank: int = 20, rerank: Optional[RerankParams] = None
                  ) -> List[ranking.RankingResult]:
  """LLCM's per-trial results in `direction` ("t2v": infrared queries against a
  visible gallery; "v2t": the reverse)."""
  query, candidates = _direction_rows(feats, direction, "LLCM", "infrared")
  results = []
  # Every candidate's distances once; a trial takes its gallery's columns.
  all_distances = None if rerank else _distances(feats, query, candidates, distance, None)
  column = np.empty(len(feats.ids), np.int64)
  column[candidates] = np.arange(len(candidates))
  for gallery in llcm_galleries(feats, candidates, num_trials):
    distmat = (all_distances[:, column[gallery]] if rerank is None
               else _distances(feats, query, gallery, distance, rerank))
    results.append(ranking.evaluate_ranking(
        distmat, feats.ids[query], feats.ids[gallery], feats.cams[query],
        feats.cams[gallery], "llcm", max_rank))
  return results


def evaluate_custom(feats: features_lib.FeatureSet, distance: str = "cosine",
                    max_rank: int = 20, remove_same_camera: bool = False,
                    rerank: Optional[RerankParams] = None) -> ranking.RankingResult:
  """A custom list's queries against its gallery (`role`), every image, no
  sampling; with `remove_same_camera`, the query's identity in the query's camera
  is left out of its gallery."""
  if feats.role is None:
    raise errors.DataError("--protocol=custom needs the features' role array (1 query, "
                           "2 gallery), which features of a custom list file carry")
  query, gallery = _query_and_gallery(feats, feats.role == layouts.ROLE_QUERY,
                                      feats.role == layouts.ROLE_GALLERY,
                                      "the custom protocol needs queries and a gallery")
  return ranking.evaluate_ranking(
      _distances(feats, query, gallery, distance, rerank), feats.ids[query],
      feats.ids[gallery], feats.cams[query], feats.cams[gallery], "custom", max_rank,
      remove_same_camera)


def _query_and_gallery(feats: features_lib.FeatureSet, query_mask: np.ndarray,
                       gallery_mask: np.ndarray, need: str) -> Tuple[np.ndarray, np.ndarray]:
  """The rows of the two masks in the gallery order; `DataError` saying `need` when
  either is empty."""
  query = gallery_order(feats, np.flatnonzero(query_mask))
  gallery = gallery_order(feats, np.flatnonzero(gallery_mask))
  if not len(query) or not len(gallery):
    raise errors.DataError(f"{need}; the features hold {len(query)} query and "
                           f"{len(gallery)} gallery images")
  return query, gallery


def _direction_rows(feats: features_lib.FeatureSet, direction: str, data_set: str,
                    other: str) -> Tuple[np.ndarray, np.ndarray]:
  """(query rows, gallery rows) of a cross-modality `direction` ("v2t": visible
  queries; "t2v": the `other` modality's), naming `data_set` in its errors."""
  if direction not in REGDB_DIRECTIONS:
    raise errors.DataError(f"unknown {data_set} direction {direction!r}; expected v2t "
                           f"or t2v")
  query_modality, gallery_modality = REGDB_DIRECTIONS[direction]
  return _query_and_gallery(feats, feats.modality == query_modality,
                            feats.modality == gallery_modality,
                            f"{data_set} {direction} needs both visible and {other} "
                            f"images")


def _distances(feats: features_lib.FeatureSet, query: np.ndarray, gallery: np.ndarray,
               distance: str, rerank: Optional[RerankParams]) -> np.ndarray:
  """[Q, G] distances of the rows `query` to the rows `gallery`, re-ranked with
  `rerank` (k1, k2, lambda) when given."""
  return rerank_lib.distances(feats.features[query], feats.features[gallery], distance,
                              rerank)


def evaluate_regdb(feats: features_lib.FeatureSet, direction: str,
                   distance: str = "cosine", max_rank: int = 20,
                   rerank: Optional[RerankParams] = None) -> ranking.RankingResult:
  """One RegDB model's result in `direction` ("v2t" or "t2v"), re-ranked with
  `rerank` (k1, k2, lambda) when given."""
  query, gallery = _direction_rows(feats, direction, "RegDB", "thermal")
  return ranking.evaluate_ranking(
      _distances(feats, query, gallery, distance, rerank), feats.ids[query],
      feats.ids[gallery], feats.cams[query], feats.cams[gallery], "regdb", max_rank)
