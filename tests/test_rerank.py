"""k-reciprocal re-ranking: a case by hand, and the fast path against a dense
transcription of the paper's equations."""

import re

import numpy as np
import pytest

from jsia_tf import errors
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import ranking
from jsia_tf.evaluation import rerank


def dense_re_rank(q_g, q_q, g_g, k1, k2, lambda_value, distance):
  """Eqs. 4-12 of Zhong et al. written out with sets and loops, slow on purpose:
  N(p, k) the k + 1 nearest (p included), R(p, k) = {g in N(p, k): p in N(g, k)},
  R* = R(p, k1) with every R(c, k1 // 2) sharing more than 2/3 of its members,
  V = exp(-d) over R* normalised, V(p) = mean of V over the k2 nearest, d_J = 1 -
  sum min / sum max, d* = (1 - lambda) d_J + lambda d."""
  d = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
  if distance == "euclidean":
    d = d ** 2
  d = np.maximum(d, 0.0)
  d = d / d.max(axis=1, keepdims=True)
  n, num_q = len(d), len(q_g)
  order = [list(np.argsort(d[p], kind="stable")) for p in range(n)]

  def neighbours(p, k):
    return order[p][:k + 1]

  def reciprocal(p, k):
    return {g for g in neighbours(p, k) if p in neighbours(g, k)}

  v = np.zeros((n, n))
  for p in range(n):
    r_p = reciprocal(p, k1)
    r_star = set(r_p)
    for c in r_p:
      r_c = reciprocal(c, k1 // 2)
      if len(r_c & r_p) > 2.0 / 3.0 * len(r_c):
        r_star |= r_c
    for g in r_star:
      v[p, g] = np.exp(-d[p, g])
    if r_star:  # empty when more than k1 exact duplicates come before p: V(p) = 0
      v[p] /= v[p].sum()
  if k2 > 1:
    v = np.array([v[order[p][:k2]].mean(axis=0) for p in range(n)])
  out = np.zeros(q_g.shape)
  for i in range(num_q):
    for j in range(q_g.shape[1]):
      g = num_q + j
      d_j = 1.0 - np.minimum(v[i], v[g]).sum() / np.maximum(v[i], v[g]).sum()
      out[i, j] = (1.0 - lambda_value) * d_j + lambda_value * d[i, g]
  return out


def test_a_case_by_hand():
  """Points 0 (query), 1 and 3 on a line, Euclidean, k1 = 1, k2 = 1: squared and
  row-normalised, d(q) = [0, 1/9, 1], d(g1) = [1/4, 0, 1]; R(q) = {q, g1}, R(g1) =
  {g1, q}, R(g2) = {g2}; V(q) = (1, e^-1/9) / (1 + e^-1/9), V(g1) = (e^-1/4, 1) /
  (1 + e^-1/4) over (q, g1); g2 shares nothing with q."""
  x = np.array([[0.0], [1.0], [3.0]])
  q, g = x[:1], x[1:]
  args = [features_lib.distance_matrix(a, b, "euclidean")
          for a, b in ((q, g), (q, q), (g, g))]
  got = rerank.re_rank(*args, k1=1, k2=1, lambda_value=0.3, distance="euclidean")
  a, b = np.exp(-1 / 9), np.exp(-1 / 4)
  v_q = np.array([1, a]) / (1 + a)
  v_g1 = np.array([b, 1]) / (1 + b)
  d_j = 1 - np.minimum(v_q, v_g1).sum() / np.maximum(v_q, v_g1).sum()
  np.testing.assert_allclose(got, [[0.7 * d_j + 0.3 / 9, 0.7 * 1 + 0.3 * 1]], rtol=1e-13)
  assert 0.16 < d_j < 0.17  # 1 - 0.9100 / 1.0900


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("k1, k2, quantised", [(20, 6, False), (5, 3, False),
                                               (7, 1, True), (4, 2, True)])
def test_fast_path_is_the_dense_transcription(distance, k1, k2, quantised):
  rng = np.random.default_rng(k1 * 10 + k2)
  centres = rng.standard_normal((6, 5))
  ids = rng.integers(0, 6, 48)
  x = centres[ids] + 0.7 * rng.standard_normal((48, 5))
  if quantised:  # many exact ties: the stable order decides
    x = np.round(x)
  q, g = x[:13], x[13:]
  args = [features_lib.distance_matrix(a, b, distance) for a, b in ((q, g), (q, q), (g, g))]
  fast = rerank.re_rank(*args, k1=k1, k2=k2, lambda_value=0.3, distance=distance)
  dense = dense_re_rank(*args, k1=k1, k2=k2, lambda_value=0.3, distance=distance)
  np.testing.assert_allclose(fast, dense, atol=1e-12)
  assert not np.allclose(fast, args[0])  # it does re-rank


def test_blocks_do_not_change_the_result(monkeypatch):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((90, 8))
  args = [features_lib.distance_matrix(a, b, "cosine")
          for a, b in ((x[:30], x[30:]), (x[:30], x[:30]), (x[30:], x[30:]))]
  whole = rerank.re_rank(*args)
  monkeypatch.setattr(rerank, "_PAIRS_PER_BLOCK", 50)
  monkeypatch.setattr(rerank, "_ROWS_PER_BLOCK", 7)
  np.testing.assert_array_equal(rerank.re_rank(*args), whole)


@pytest.mark.parametrize("kwargs, message", [
    (dict(k1=0), "--rerank_k1=0 is invalid"),
    (dict(k2=30), "--rerank_k2=30 is invalid: expected an integer in 1..k1 + 1 (21)"),
    (dict(lambda_value=1.5), "--rerank_lambda=1.5 is invalid"),
])
def test_bad_parameters(kwargs, message):
  d = np.zeros((2, 3))
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    rerank.re_rank(d, np.zeros((2, 2)), np.zeros((3, 3)), **kwargs)


def test_each_sysu_trial_is_re_ranked_with_its_own_gallery():
  rng = np.random.default_rng(4)
  rows = np.array([(pid, cam, f) for cam in (1, 2, 3, 4, 6) for pid in range(1, 9)
                   for f in range(3)])
  centres = rng.standard_normal((9, 6))
  feats = features_lib.FeatureSet(
      features=centres[rows[:, 0]] + rng.standard_normal((len(rows), 6)),
      ids=rows[:, 0], cams=rows[:, 1], frames=rows[:, 2],
      modality=np.isin(rows[:, 1], (3, 6)).astype(int))
  params = (5, 2, 0.3)
  got = protocols.evaluate_sysu(feats, modes=["all"], shots=[1, 10], num_trials=3,
                                rerank=params)
  plain = protocols.evaluate_sysu(feats, modes=["all"], shots=[1, 10], num_trials=3)
  query, candidates = protocols.sysu_split(feats, "all")
  for shots in (1, 10):
    for trial, gallery in enumerate(protocols.sysu_galleries(feats, candidates, shots,
                                                             num_trials=3)):
      g = candidates[gallery]
      d = rerank.distances(feats.features[query], feats.features[g], "cosine", params)
      expected = ranking.evaluate_ranking(d, feats.ids[query], feats.ids[g],
                                          feats.cams[query], feats.cams[g], "sysu")
      assert got[("all", shots)][trial].as_dict() == expected.as_dict()
  assert [r.as_dict() for r in got[("all", 10)]] != [r.as_dict() for r in plain[("all", 10)]]
