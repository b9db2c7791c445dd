"""The SYSU-MM01 and RegDB test protocols on a features file.

SYSU-MM01: queries are all IR images (cams 3, 6); the gallery takes, per identity and
RGB camera (all-search: 1, 2, 4, 5; indoor: 1, 2), the first 1 (single-shot) or 10
(multi-shot) images of a random order. Ten trials: trial t (0..9) uses row t of the
official `rand_perm_cam.mat` when given (1-based indices into the sorted images of
(cam, id)), else `numpy.random.default_rng(t)`. Groups with fewer images than shots
give all their images.

RegDB: per trained model (one per trial), visible->thermal (`v2t`: visible queries,
thermal gallery) or thermal->visible (`t2v`), every test image, no camera filter.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import io as scipy_io

from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import ranking

# The official split files, shipped with the package (see that folder's README).
OFFICIAL_SPLIT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "sysu_mm01_eval")
SYSU_MODES = ("all", "indoor")
SYSU_SHOTS = (1, 10)
SYSU_TRIALS = 10
REGDB_DIRECTIONS = {"v2t": (layouts.RGB, layouts.IR), "t2v": (layouts.IR, layouts.RGB)}


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
  query = np.flatnonzero((feats.modality == layouts.IR) &
                         np.isin(feats.cams, layouts.SYSU_QUERY_CAMERAS))
  candidates = np.flatnonzero((feats.modality == layouts.RGB) &
                              np.isin(feats.cams, layouts.SYSU_GALLERY_CAMERAS[mode]))
  if not len(query):
    raise errors.DataError("no SYSU-MM01 queries: the features hold no IR images of "
                           "cams 3 or 6")
  if not len(candidates):
    raise errors.DataError(f"the {mode}-search gallery is empty: the features hold no "
                           f"RGB images of cams {layouts.SYSU_GALLERY_CAMERAS[mode]}")
  return query, candidates


def sysu_galleries(feats: features_lib.FeatureSet, candidates: np.ndarray, shots: int,
                   num_trials: int = SYSU_TRIALS,
                   perm: Optional[PermFile] = None) -> List[np.ndarray]:
  """Per trial, the sorted positions (into `candidates`) of that trial's gallery."""
  if shots not in SYSU_SHOTS:
    raise errors.DataError(f"unknown number of shots {shots}; expected 1 or 10")
  cams, pids, frames = (feats.cams[candidates], feats.ids[candidates],
                        feats.frames[candidates])
  order = np.lexsort((frames, pids, cams))  # groups (cam, pid), frames ascending
  key = cams[order] * (np.int64(1) << 32) + pids[order]
  starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
  ends = np.r_[starts[1:], len(order)]
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

  chosen = [[] for _ in range(num_trials)]
  for start, end in zip(starts, ends):
    cam, pid = int(cams[order[start]]), int(pids[order[start]])
    matrix = perm.get(cam, pid)
    where = f"perm file {perm.path} does not fit the features: cam {cam} id {pid}"
    if matrix is None:
      raise errors.DataError(f"{where} has no permutation in the file")
    group_frames = frames[order[start:end]]
    n = matrix.shape[1]
    if not np.array_equal(group_frames, np.arange(n)):
      raise errors.DataError(f"{where} has {n} images in the file but the features "
                             f"hold frames {group_frames[:12].tolist()}"
                             f"{'...' if len(group_frames) > 12 else ''} (expected "
                             f"frames 0..{n - 1})")
    if matrix.shape[0] < num_trials or matrix.min() < 1 or matrix.max() > n:
      raise errors.DataError(f"{where}: the matrix {matrix.shape} is not {num_trials} "
                             f"rows of 1-based indices into {n} images")
    for trial in range(num_trials):
      chosen[trial].append(order[start + matrix[trial, :shots] - 1])
  return [np.sort(np.concatenate(c)) for c in chosen]


def evaluate_sysu(feats: features_lib.FeatureSet, modes: Sequence[str] = SYSU_MODES,
                  shots: Sequence[int] = SYSU_SHOTS, perm: Optional[PermFile] = None,
                  distance: str = "cosine", num_trials: int = SYSU_TRIALS,
                  max_rank: int = 20) -> Dict[Tuple[str, int], List[ranking.RankingResult]]:
  """Per (mode, shots) setting, the per-trial results.

  Distances and each query's ranking of the candidates are computed once per mode and
  shared by the trials and shot settings.
  """
  results = {}
  for mode in modes:
    query, candidates = sysu_split(feats, mode)
    distmat = features_lib.distance_matrix(feats.features[query],
                                           feats.features[candidates], distance)
    ranked = ranking.RankedCandidates(distmat, feats.ids[query], feats.ids[candidates],
                                      feats.cams[query], feats.cams[candidates], "sysu")
    for n in shots:
      galleries = sysu_galleries(feats, candidates, n, num_trials, perm)
      results[(mode, n)] = ranking.metrics_of_galleries(ranked, galleries, max_rank)
  return results


def evaluate_regdb(feats: features_lib.FeatureSet, direction: str,
                   distance: str = "cosine", max_rank: int = 20) -> ranking.RankingResult:
  """One RegDB model's result in `direction` ("v2t" or "t2v")."""
  if direction not in REGDB_DIRECTIONS:
    raise errors.DataError(f"unknown RegDB direction {direction!r}; expected v2t or t2v")
  query_modality, gallery_modality = REGDB_DIRECTIONS[direction]
  query = np.flatnonzero(feats.modality == query_modality)
  gallery = np.flatnonzero(feats.modality == gallery_modality)
  if not len(query) or not len(gallery):
    raise errors.DataError(f"RegDB {direction} needs both visible and thermal images; "
                           f"the features hold {len(query)} query and {len(gallery)} "
                           f"gallery images")
  distmat = features_lib.distance_matrix(feats.features[query], feats.features[gallery],
                                         distance)
  return ranking.evaluate_ranking(distmat, feats.ids[query], feats.ids[gallery],
                                  feats.cams[query], feats.cams[gallery], "regdb",
                                  max_rank)
