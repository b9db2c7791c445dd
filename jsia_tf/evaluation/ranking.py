"""CMC, mAP and mINP of a distance matrix under the SYSU-MM01 or the standard protocol.

Definitions (those of the official SYSU-MM01 code and of the usual RGB-IR re-id code):
- Each query ranks the gallery by ascending distance; ties are broken by gallery order
  (a stable sort), as the official MATLAB code does.
- `protocol="sysu"`: for a cam-3 query every cam-2 gallery image is removed (same
  location), whatever its identity. The CMC counts each identity once: the query's
  rank is its identity's position in the filtered list de-duplicated by identity (first
  occurrence). mAP and mINP use the filtered, non-deduplicated list.
- `protocol="regdb"`: no camera filter; the standard CMC (rank of the first true match).
- `protocol="custom"`: the standard CMC; with `remove_same_camera`, gallery images
  of the query's identity taken by the query's camera are removed (Market-1501's
  rule).
- `protocol="llcm"`: gallery images of the query's identity seen by the query's
  camera (the same camera in its other mode) are removed; the CMC counts each
  identity once, as for SYSU-MM01 (the LLCM authors' `eval_llcm`).
- AP = mean over the n true matches of (k / rank of the k-th); INP = n / rank of the
  last true match. Queries with no true match in the filtered gallery are skipped (and
  counted). CMC[r] = fraction of evaluated queries whose rank is <= r + 1, so it always
  has `max_rank` entries.

Speed: SYSU evaluates 10 random galleries drawn from one candidate set, so the
expensive part, each query's stable ranking of all candidates, is done once
(`RankedCandidates`). A trial then needs the candidates' int16 rank positions of its
gallery columns, a radix sort of them, and vectorised binary searches for the ranks
of the true matches: no Python loop over queries anywhere.
"""

import concurrent.futures
import dataclasses
import os
from typing import Dict, Optional

import numpy as np

from jsia_tf import errors
from jsia_tf.data import layouts

PROTOCOLS = ("sysu", "regdb", "llcm", "custom")
# Protocols whose CMC counts each identity once (first occurrence).
_DEDUPLICATED_CMC = ("sysu", "llcm")
REPORTED_RANKS = (1, 5, 10, 20)


@dataclasses.dataclass(frozen=True)
class RankingResult:
  """Metrics of one evaluation (one trial)."""

  cmc: np.ndarray  # [max_rank] float64, cmc[r] = rank-(r+1) accuracy
  mAP: float  # pylint: disable=invalid-name
  mINP: float  # pylint: disable=invalid-name
  num_queries: int  # queries evaluated
  num_skipped: int  # queries without a true match in the (filtered) gallery
  gallery_size: int

  def as_dict(self) -> Dict[str, float]:
    """R1, R5, R10, R20 (those within max_rank), mAP, mINP as fractions in [0, 1]."""
    out = {f"R{r}": float(self.cmc[r - 1]) for r in REPORTED_RANKS if r <= len(self.cmc)}
    out.update(mAP=self.mAP, mINP=self.mINP)
    return out


def _threads() -> int:
  return max(1, min(8, os.cpu_count() or 1))


def _row_blocks(num_rows: int, block: int = 256):
  return [slice(i, min(num_rows, i + block)) for i in range(0, num_rows, block)]


def stable_ranks(distmat: np.ndarray) -> np.ndarray:
  """ranks[q, g] = position (0-based) of gallery item g in query q's ranking, by
  ascending distance with ties broken by gallery index. int16 where it fits.

  numpy's stable sort of floats is about 3x slower than its default one, so rows are
  sorted with the default sort and only rows that contain equal distances are sorted
  again stably. Row blocks run in parallel threads (numpy releases the GIL).
  """
  num_q, num_g = distmat.shape
  dtype = np.int16 if num_g < np.iinfo(np.int16).max else np.int32
  ranks = np.empty((num_q, num_g), dtype)
  positions = np.arange(num_g, dtype=dtype)

  def block(rows):
    d = distmat[rows]
    order = np.argsort(d, axis=1)
    ordered = np.take_along_axis(d, order, axis=1)
    tied = np.any(ordered[:, 1:] == ordered[:, :-1], axis=1)
    if tied.any():
      order[tied] = np.argsort(d[tied], axis=1, kind="stable")
    np.put_along_axis(ranks[rows], order, np.broadcast_to(positions, order.shape), 1)

  with concurrent.futures.ThreadPoolExecutor(_threads()) as pool:
    list(pool.map(block, _row_blocks(num_q)))
  return ranks


def _count_less(sorted_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
  """counts[q, j] = number of entries of sorted_rows[q] that are < values[q, j]
  (a lower-bound binary search, vectorised over all (q, j))."""
  num_q, width = sorted_rows.shape
  flat = sorted_rows.ravel()
  base = (np.arange(num_q, dtype=np.int64) * width)[:, None]
  lo = np.zeros(values.shape, np.int64)
  hi = np.full(values.shape, width, np.int64)
  for _ in range(int(width).bit_length()):
    active = lo < hi
    mid = (lo + hi) // 2
    less = flat[base + np.minimum(mid, width - 1)] < values
    lo, hi = (np.where(active & less, mid + 1, lo), np.where(active & ~less, mid, hi))
  return lo


def check_inputs(distmat, q_ids, g_ids, q_cams, g_cams, protocol):
  """Validates shapes and values; raises `DataError` naming the offending argument."""
  if protocol not in PROTOCOLS:
    raise errors.DataError(f"unknown protocol {protocol!r}; expected one of "
                           f"{', '.join(PROTOCOLS)}")
  distmat = np.asarray(distmat)
  if distmat.ndim != 2:
    raise errors.DataError(f"distmat must be 2-D [queries, gallery], got shape "
                           f"{distmat.shape}")
  num_q, num_g = distmat.shape
  if num_q == 0:
    raise errors.DataError("there are no queries (distmat has 0 rows)")
  if num_g == 0:
    raise errors.DataError("the gallery is empty (distmat has 0 columns)")
  for name, array, n in (("q_ids", q_ids, num_q), ("q_cams", q_cams, num_q),
                         ("g_ids", g_ids, num_g), ("g_cams", g_cams, num_g)):
    if np.asarray(array).shape != (n,):
      raise errors.DataError(f"{name} has shape {np.asarray(array).shape} but distmat "
                             f"{distmat.shape} needs ({n},)")
  if not np.all(np.isfinite(distmat)):
    raise errors.DataError("distmat contains NaN or Inf distances")


class RankedCandidates:
  """The queries' stable rankings of a candidate gallery, ready for many trials.

  Built once per (queries, candidates); `metrics(gallery)` then evaluates any subset
  of candidate columns as the gallery, with exactly the result of ranking that subset
  from scratch (a stable ranking restricted to a subset is that subset's stable
  ranking).
  """

  def __init__(self, distmat, q_ids, g_ids, q_cams, g_cams, protocol: str,
               remove_same_camera: bool = False):
    check_inputs(distmat, q_ids, g_ids, q_cams, g_cams, protocol)
    self.protocol = protocol
    self.q_ids = np.asarray(q_ids, np.int64)
    self.g_ids = np.asarray(g_ids, np.int64)
    self.ranks = stable_ranks(np.asarray(distmat, np.float64))
    # Removed pairs get the sentinel rank num_g: after every kept item, never counted.
    self.removed = self.ranks.shape[1]
    if protocol == "sysu":
      q_cam, g_cam = layouts.SYSU_EXCLUDED_PAIR
      rows = np.flatnonzero(np.asarray(q_cams) == q_cam)
      cols = np.flatnonzero(np.asarray(g_cams) == g_cam)
      if len(rows) and len(cols):
        self.ranks[np.ix_(rows, cols)] = self.removed
    elif protocol == "llcm" or remove_same_camera:
      same = ((self.q_ids[:, None] == self.g_ids[None, :]) &
              (np.asarray(q_cams)[:, None] == np.asarray(g_cams)[None, :]))
      self.ranks[same] = self.removed

  def metrics(self, gallery: Optional[np.ndarray] = None,
              max_rank: int = 20) -> RankingResult:
    """Metrics with the candidate columns `gallery` (default: all) as the gallery."""
    if gallery is None:
      gallery = np.arange(len(self.g_ids))
    gallery = np.asarray(gallery, np.int64)
    if gallery.size == 0:
      raise errors.DataError("the gallery is empty")
    # Group the gallery columns by identity: the true matches of a query are then one
    # contiguous segment, and per-identity minima are one reduceat.
    by_id = gallery[np.argsort(self.g_ids[gallery], kind="stable")]
    ids = self.g_ids[by_id]
    seg_ids, seg_start, seg_len = np.unique(ids, return_index=True, return_counts=True)
    ranks = np.take(self.ranks, by_id, axis=1)  # C order: fast sort and ravel

    seg = np.minimum(np.searchsorted(seg_ids, self.q_ids), len(seg_ids) - 1)
    has_id = seg_ids[seg] == self.q_ids
    width = int(seg_len.max())
    offset = np.arange(width)
    is_match = has_id[:, None] & (offset[None, :] < seg_len[seg][:, None])
    column = np.where(is_match, seg_start[seg][:, None] + offset[None, :], 0)
    match_rank = np.take_along_axis(ranks, column, axis=1)
    is_match &= match_rank < self.removed

    # 1-based rank of each true match among the kept gallery items.
    sorted_ranks = np.sort(ranks, axis=1, kind="stable")
    position = _count_less(sorted_ranks, match_rank.astype(np.int64)) + 1
    position = np.sort(np.where(is_match, position, np.iinfo(np.int64).max), axis=1)
    num_matches = is_match.sum(axis=1)
    valid = num_matches > 0
    if not valid.any():
      raise errors.DataError("no query has a true match in the gallery: the query and "
                             "gallery identities do not overlap")
    position, num_matches = position[valid], num_matches[valid]
    k = np.arange(1, width + 1)
    precision = np.where(k[None, :] <= num_matches[:, None], k / position, 0.0)
    ap = precision.sum(axis=1) / num_matches
    inp = num_matches / np.take_along_axis(position, (num_matches - 1)[:, None], 1)[:, 0]

    if self.protocol in _DEDUPLICATED_CMC:
      # De-duplicated by identity: 1 + identities whose first kept item comes before
      # the query identity's first kept item.
      first = np.minimum.reduceat(ranks, seg_start, axis=1)[valid]
      own = np.take_along_axis(first, seg[valid][:, None], axis=1)
      cmc_rank = 1 + (first < own).sum(axis=1)
    else:
      cmc_rank = position[:, 0]
    cmc = (cmc_rank[None, :] <= np.arange(1, max_rank + 1)[:, None]).mean(axis=1)
    return RankingResult(cmc=cmc, mAP=float(ap.mean()), mINP=float(inp.mean()),
                         num_queries=int(valid.sum()),
                         num_skipped=int((~valid).sum()), gallery_size=len(gallery))


def metrics_of_galleries(ranked: RankedCandidates, galleries, max_rank: int = 20):
  """`ranked.metrics(g)` for every gallery of `galleries`, in parallel threads."""
  with concurrent.futures.ThreadPoolExecutor(_threads()) as pool:
    return list(pool.map(lambda g: ranked.metrics(g, max_rank), galleries))


def evaluate_ranking(distmat, q_ids, g_ids, q_cams, g_cams, protocol: str,
                     max_rank: int = 20, remove_same_camera: bool = False
                     ) -> RankingResult:
  """CMC [max_rank], mAP and mINP of `distmat` [num_query, num_gallery] (smaller is
  closer) under `protocol` (one of `PROTOCOLS`); see the module docstring."""
  return RankedCandidates(distmat, q_ids, g_ids, q_cams, g_cams, protocol,
                          remove_same_camera).metrics(max_rank=max_rank)
