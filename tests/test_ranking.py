"""The vectorised ranking metrics against a per-query loop reference and by hand."""

import numpy as np
import pytest

from jsia_tf import errors
from jsia_tf.evaluation import ranking

from ranking_reference import reference_ranking


def _random_case(rng, ties):
  q, g, n_ids = rng.integers(1, 40), rng.integers(1, 80), rng.integers(1, 10)
  q_ids, g_ids = rng.integers(0, n_ids, q), rng.integers(0, n_ids, g)
  q_cams, g_cams = rng.choice([3, 6], q), rng.choice([1, 2, 4, 5], g)
  distmat = (rng.integers(0, 4, (q, g)).astype(float) if ties else rng.random((q, g)))
  return distmat, q_ids, g_ids, q_cams, g_cams


def _assert_same(got, ref):
  cmc, m_ap, m_inp, num_queries, num_skipped = ref
  np.testing.assert_allclose(got.cmc, cmc, rtol=0, atol=1e-9)
  assert abs(got.mAP - m_ap) < 1e-9 and abs(got.mINP - m_inp) < 1e-9
  assert (got.num_queries, got.num_skipped) == (num_queries, num_skipped)


@pytest.mark.parametrize("protocol", ["sysu", "regdb"])
@pytest.mark.parametrize("ties", [False, True])
def test_agrees_with_loop_reference(protocol, ties):
  rng = np.random.default_rng(1 + ties)
  checked = 0
  for _ in range(150):
    case = _random_case(rng, ties)
    ref = reference_ranking(*case, protocol)
    if ref[3] == 0:  # no query has a match: the evaluator refuses
      with pytest.raises(errors.DataError, match="no query has a true match"):
        ranking.evaluate_ranking(*case, protocol)
      continue
    _assert_same(ranking.evaluate_ranking(*case, protocol), ref)
    checked += 1
  assert checked > 100


def test_gallery_subsets_agree_with_ranking_the_subset_from_scratch():
  """RankedCandidates.metrics(g) (the multi-trial path) == evaluating g alone."""
  rng = np.random.default_rng(5)
  for ties in (False, True):
    distmat, q_ids, g_ids, q_cams, g_cams = _random_case(rng, ties)
    distmat = np.tile(distmat, (1, 3))  # equal distances across copies: many ties
    g_ids, g_cams = np.tile(g_ids, 3), np.tile(g_cams, 3)
    q_ids[:] = g_ids[0]  # every query has matches
    ranked = ranking.RankedCandidates(distmat, q_ids, g_ids, q_cams, g_cams, "sysu")
    for _ in range(10):
      gallery = np.sort(rng.choice(distmat.shape[1], rng.integers(1, distmat.shape[1]),
                                   replace=False))
      if not (g_ids[gallery] == g_ids[0]).any():
        continue
      if not ((g_ids[gallery] == g_ids[0]) & ((g_cams[gallery] != 2) |
                                               (q_cams[0] != 3))).any():
        continue
      ref = reference_ranking(distmat[:, gallery], q_ids, g_ids[gallery], q_cams,
                              g_cams[gallery], "sysu")
      _assert_same(ranked.metrics(gallery), ref)


def test_hand_built_example():
  # One query (id 7, cam 3); gallery in ranked order after ties by index:
  #   col: 0      1      2      3      4      5
  #   id : 7      5      7      5      9      7
  #   cam: 2      1      4      4      1      5
  #   d  : 0.1    0.2    0.3    0.3    0.4    0.5
  # SYSU: col 0 (cam 2) is removed for a cam-3 query. Filtered list: 5, 7, 5, 9, 7.
  #   dedup ids: 5, 7, 9 -> rank 2. Matches at ranks 2 and 5:
  #   AP = (1/2 + 2/5) / 2 = 0.45; INP = 2/5 = 0.4.
  # RegDB (no filter): list 7, 5, 7, 5, 9, 7: matches at 1, 3, 6:
  #   rank 1; AP = (1 + 2/3 + 3/6) / 3 = 13/18; INP = 3/6.
  d = np.array([[0.1, 0.2, 0.3, 0.3, 0.4, 0.5]])
  args = (d, [7], [7, 5, 7, 5, 9, 7], [3], [2, 1, 4, 4, 1, 5])
  sysu = ranking.evaluate_ranking(*args, "sysu", max_rank=20)
  np.testing.assert_array_equal(sysu.cmc[:3], [0, 1, 1])
  assert sysu.cmc.shape == (20,) and sysu.cmc[-1] == 1
  assert sysu.mAP == pytest.approx(0.45) and sysu.mINP == pytest.approx(0.4)
  regdb = ranking.evaluate_ranking(*args, "regdb")
  assert regdb.cmc[0] == 1
  assert regdb.mAP == pytest.approx(13 / 18) and regdb.mINP == pytest.approx(0.5)
  assert sysu.as_dict()["R1"] == 0.0 and sysu.as_dict()["R5"] == 1.0


def test_ties_are_broken_by_gallery_order():
  # All distances equal: the ranking is the gallery order.
  d = np.zeros((1, 4))
  first = ranking.evaluate_ranking(d, [1], [1, 2, 2, 2], [6], [1, 1, 1, 1], "regdb")
  last = ranking.evaluate_ranking(d, [1], [2, 2, 2, 1], [6], [1, 1, 1, 1], "regdb")
  assert first.mAP == 1.0 and last.mAP == 0.25
  ranks = ranking.stable_ranks(np.array([[0.5, 0.1, 0.5, 0.1]]))
  np.testing.assert_array_equal(ranks, [[2, 0, 3, 1]])


def test_queries_without_matches_are_skipped_and_counted():
  d = np.array([[0.1, 0.2], [0.1, 0.2], [0.3, 0.1]])
  # Query 1 (id 9) has no match; query 2 (cam 3) sees only its match in cam 2: removed.
  result = ranking.evaluate_ranking(d, [1, 9, 2], [1, 2], [6, 6, 3], [1, 2], "sysu")
  assert (result.num_queries, result.num_skipped) == (1, 2)
  assert result.cmc[0] == 1.0 and result.mAP == 1.0


@pytest.mark.parametrize("kwargs,message", [
    (dict(q_ids=[1, 2, 3]), r"q_ids has shape \(3,\) but distmat \(2, 3\) needs \(2,\)"),
    (dict(g_cams=[1, 2]), r"g_cams has shape \(2,\) but distmat \(2, 3\) needs \(3,\)"),
    (dict(distmat=np.zeros((2, 0)), g_ids=[], g_cams=[]), "the gallery is empty"),
    (dict(distmat=np.zeros((0, 3)), q_ids=[], q_cams=[]), "there are no queries"),
    (dict(protocol="market"), "unknown protocol 'market'; expected one of sysu, regdb"),
    (dict(distmat=np.full((2, 3), np.nan)), "NaN or Inf"),
    (dict(distmat=np.zeros(3)), "must be 2-D"),
])
def test_bad_input(kwargs, message):
  args = dict(distmat=np.zeros((2, 3)), q_ids=[1, 2], g_ids=[1, 2, 3], q_cams=[3, 6],
              g_cams=[1, 2, 4], protocol="sysu")
  args.update(kwargs)
  with pytest.raises(errors.DataError, match=message):
    ranking.evaluate_ranking(**args)
