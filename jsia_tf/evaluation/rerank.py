"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), in numpy and scipy.sparse, memory-bounded.

The published algorithm, on the N = Q + G images of the queries and the gallery:
- d(p, g): the original distance, squared-Euclidean-like as in the authors' code
  (cosine distance 1 - cos as it is, which is half the squared Euclidean distance of
  unit features; Euclidean distances squared), each row divided by its maximum over
  all N images.
- N(p, k): the k + 1 nearest of p by d, p itself included (the authors' code), ties
  broken by index (a stable sort).
- R(p, k) = {g in N(p, k) : p in N(g, k)} (Eq. 4).
- R*(p, k) = R(p, k) united with every R(c, k/2), c in R(p, k), that shares more
  than 2/3 of its members with R(p, k) (Eq. 6); R(c, k/2) takes the k // 2 + 1
  nearest (the authors' MATLAB `round((k + 1) / 2)`; their Python port differs for
  odd k).
- V(p, g) = exp(-d(p, g)) over R*(p, k1), normalised to sum 1 (Eq. 7, as their code).
- Local query expansion: V(p) = mean of V(g) over g in N(p, k2 - 1), the k2 nearest
  (Eq. 11; k2 = 1 leaves V as it is).
- d_J(p, g) = 1 - sum_j min(V(p, j), V(g, j)) / sum_j max(V(p, j), V(g, j)) (Eq. 10),
  computed as 1 - m / (2 - m), m = sum_j min, which equals it because each V row sums
  to 1 (their code's inverted-index form).
- d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g) (Eq. 12).

Their code holds V as a dense N x N float32 matrix and loops over images in Python.
Here V is sparse (each row has at most a few hundred non-zeros), float64, and the
neighbour sets, the expansion and the Jaccard sums are vectorised over blocks of
rows, so memory is the N x N distance matrix plus blocks of bounded size.
"""

from typing import Optional, Tuple

import numpy as np
from scipy import sparse

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.evaluation import features as features_lib

# Pairs (query non-zero x gallery non-zero) summed at once in the Jaccard step.
_PAIRS_PER_BLOCK = 8_000_000
_ROWS_PER_BLOCK = 512


def original_distance(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray,
                      distance: str) -> np.ndarray:
  """The [N, N] matrix d of the module docstring: the three blocks joined, squared
  for `euclidean`, each row divided by its maximum."""
  full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
  if distance == "euclidean":
    full **= 2
  elif distance != "cosine":
    raise errors.DataError(f"unknown distance {distance!r}; expected cosine or euclidean")
  full = np.maximum(full, 0.0)  # 1 - cos of a vector with itself may round below 0
  row_max = full.max(axis=1, keepdims=True)
  full /= np.where(row_max > 0, row_max, 1.0)
  return full


def nearest(dist: np.ndarray, count: int) -> np.ndarray:
  """[N, count] indices of each row's `count` smallest entries, in ascending order,
  ties by index: the first `count` of a stable argsort, without sorting whole rows
  where the `count` smallest are unambiguous."""
  n = dist.shape[1]
  count = min(count, n)
  out = np.empty((dist.shape[0], count), np.int64)
  for start in range(0, dist.shape[0], _ROWS_PER_BLOCK):
    d = dist[start:start + _ROWS_PER_BLOCK]
    if count == n:
      out[start:start + len(d)] = np.argsort(d, axis=1, kind="stable")
      continue
    part = np.argpartition(d, count - 1, axis=1)[:, :count]
    values = np.take_along_axis(d, part, axis=1)
    bound = values.max(axis=1, keepdims=True)
    # Unambiguous rows: exactly `count` entries are <= the largest chosen value.
    clear = (d <= bound).sum(axis=1) == count
    order = np.lexsort((part, values), axis=1)
    block = np.take_along_axis(part, order, axis=1)
    for row in np.flatnonzero(~clear):  # a tie across the boundary
      block[row] = np.argsort(d[row], kind="stable")[:count]
    out[start:start + len(d)] = block
  return out


def _reciprocal(ranks: np.ndarray, k: int) -> np.ndarray:
  """[N, k + 1] mask over N(p, k) = ranks[p, :k + 1]: which members g have p in
  N(g, k), i.e. R(p, k) (Eq. 4)."""
  forward = ranks[:, :k + 1]
  mask = np.empty(forward.shape, bool)
  for start in range(0, len(forward), _ROWS_PER_BLOCK):
    rows = np.arange(start, min(start + _ROWS_PER_BLOCK, len(forward)))
    backward = ranks[forward[rows], :k + 1]  # [B, k + 1, k + 1]
    mask[rows] = (backward == rows[:, None, None]).any(axis=2)
  return mask


def encode(dist: np.ndarray, ranks: np.ndarray, k1: int) -> sparse.csr_matrix:
  """V of Eq. 7 over R*(p, k1) (Eq. 6), every row normalised to sum 1."""
  n = len(dist)
  half = k1 // 2
  r_full = np.where(_reciprocal(ranks, k1), ranks[:, :k1 + 1], -1)  # R(p, k1), -1 pads
  r_half = np.where(_reciprocal(ranks, half), ranks[:, :half + 1], -1)  # R(c, k1/2)
  half_size = (r_half >= 0).sum(axis=1)
  rows, cols = [], []
  for start in range(0, n, _ROWS_PER_BLOCK):
    p = np.arange(start, min(start + _ROWS_PER_BLOCK, n))
    members = r_full[p]  # [B, k1 + 1]
    candidates = np.where(members >= 0, members, 0)
    their = r_half[candidates]  # [B, k1 + 1, half + 1]
    # |R(c, k1/2) & R(p, k1)|, counting only real members on both sides.
    shared = ((their[:, :, :, None] == members[:, None, None, :]) &
              (their[:, :, :, None] >= 0)).any(axis=3).sum(axis=2)
    accept = (members >= 0) & (shared > 2.0 / 3.0 * half_size[candidates])
    added = np.where(accept[:, :, None], their, -1).reshape(len(p), -1)
    joined = np.concatenate([members, added], axis=1)
    keep = joined >= 0
    rows.append(np.repeat(p, keep.sum(axis=1)))
    cols.append(joined[keep])
  rows, cols = np.concatenate(rows), np.concatenate(cols)
  pairs = np.unique(rows * n + cols)  # R*(p, k1) as a set
  rows, cols = pairs // n, pairs % n
  weight = np.exp(-dist[rows, cols])
  weight /= np.bincount(rows, weights=weight, minlength=n)[rows]
  return sparse.csr_matrix((weight, (rows, cols)), shape=(n, n))


def expand(v: sparse.csr_matrix, ranks: np.ndarray, k2: int) -> sparse.csr_matrix:
  """Local query expansion (Eq. 11): row p becomes the mean of the rows of its k2
  nearest (p included)."""
  if k2 == 1:
    return v
  n = v.shape[0]
  mean = sparse.csr_matrix((np.full(n * k2, 1.0 / k2),
                            (np.repeat(np.arange(n), k2), ranks[:, :k2].ravel())),
                           shape=(n, n))
  return (mean @ v).tocsr()


def jaccard(v: sparse.csr_matrix, num_query: int) -> np.ndarray:
  """[Q, G] Jaccard distances (Eq. 10) between the first `num_query` rows of `v` and
  the rest, by an inverted index: for each non-zero (p, j), the gallery rows with a
  non-zero in column j."""
  gallery = v[num_query:].tocsc()
  num_g = gallery.shape[0]
  col_start, col_len = gallery.indptr[:-1], np.diff(gallery.indptr)
  queries = v[:num_query]
  entry_rows = np.repeat(np.arange(num_query), np.diff(queries.indptr))
  pairs_of_row = np.bincount(entry_rows, weights=col_len[queries.indices],
                             minlength=num_query)
  out = np.empty((num_query, num_g))
  start = 0
  while start < num_query:
    # As many rows as keep the pairs under the block budget (at least one row).
    cum = np.cumsum(pairs_of_row[start:])
    stop = start + max(1, int(np.searchsorted(cum, _PAIRS_PER_BLOCK, side="right")))
    lo, hi = queries.indptr[start], queries.indptr[stop]
    entry_row = np.repeat(np.arange(stop - start), np.diff(queries.indptr[start:stop + 1]))
    entry_col, entry_val = queries.indices[lo:hi], queries.data[lo:hi]
    counts = col_len[entry_col]
    total = int(counts.sum())
    first = np.repeat(col_start[entry_col] - (np.cumsum(counts) - counts), counts)
    position = np.arange(total) + first
    mins = np.minimum(np.repeat(entry_val, counts), gallery.data[position])
    index = np.repeat(entry_row, counts) * num_g + gallery.indices[position]
    shared = np.bincount(index, weights=mins, minlength=(stop - start) * num_g)
    shared = shared.reshape(stop - start, num_g)
    out[start:stop] = 1.0 - shared / (2.0 - shared)
    start = stop
  return out


def re_rank(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20,
            k2: int = 6, lambda_value: float = 0.3,
            distance: str = "cosine") -> np.ndarray:
  """The [Q, G] re-ranked distance d* of the module docstring, from the query-gallery
  [Q, G], query-query [Q, Q] and gallery-gallery [G, G] distances."""
  config_lib.RerankOptions(True, k1, k2, lambda_value).check_rerank()
  q_g, q_q, g_g = (np.asarray(a, np.float64) for a in (q_g, q_q, g_g))
  num_q, num_g = q_g.shape
  if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
    raise errors.DataError(f"re-ranking needs [Q, Q] and [G, G] distances beside the "
                           f"[Q, G] {q_g.shape}; got {q_q.shape} and {g_g.shape}")
  dist = original_distance(q_g, q_q, g_g, distance)
  ranks = nearest(dist, max(k1 + 1, k2))
  v = expand(encode(dist, ranks, k1), ranks, k2)
  return (1.0 - lambda_value) * jaccard(v, num_q) + lambda_value * dist[:num_q, num_q:]


def distances(query: np.ndarray, gallery: np.ndarray, distance: str,
              params: Optional[Tuple[int, int, float]] = None) -> np.ndarray:
  """[Q, G] distances of two feature sets: plain, or re-ranked with `params` (k1, k2,
  lambda) when given."""
  q_g = features_lib.distance_matrix(query, gallery, distance)
  if params is None:
    return q_g
  q_q = features_lib.distance_matrix(query, query, distance)
  g_g = features_lib.distance_matrix(gallery, gallery, distance)
  return re_rank(q_g, q_q, g_g, *params, distance=distance)
