"""A deliberately simple per-query loop, written from the SPEC's words, that the
vectorised evaluator is checked against. Slow on purpose: clarity over speed."""

import numpy as np


def reference_ranking(distmat, q_ids, g_ids, q_cams, g_cams, protocol, max_rank=20,
                      remove_same_camera=False):
  """Returns (cmc [max_rank], mAP, mINP, num_queries, num_skipped)."""
  cmcs, aps, inps, skipped = [], [], [], 0
  for q in range(distmat.shape[0]):
    order = list(np.argsort(distmat[q], kind="stable"))  # ties: gallery order
    if protocol == "sysu" and q_cams[q] == 3:
      order = [g for g in order if g_cams[g] != 2]  # cam-3 queries never see cam 2
    if protocol == "llcm" or remove_same_camera:  # the query's id in the query's camera
      order = [g for g in order if not (g_ids[g] == q_ids[q] and g_cams[g] == q_cams[q])]
    matches = [g_ids[g] == q_ids[q] for g in order]
    if not any(matches):
      skipped += 1
      continue
    hit_ranks = [i + 1 for i, m in enumerate(matches) if m]
    aps.append(np.mean([(k + 1) / r for k, r in enumerate(hit_ranks)]))
    inps.append(len(hit_ranks) / hit_ranks[-1])
    if protocol in ("sysu", "llcm"):
      distinct = []
      for g in order:
        if g_ids[g] not in distinct:
          distinct.append(g_ids[g])
      rank = distinct.index(q_ids[q]) + 1
    else:
      rank = hit_ranks[0]
    cmcs.append([1.0 if rank <= r else 0.0 for r in range(1, max_rank + 1)])
  if not cmcs:
    return None, None, None, 0, skipped
  return (np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)),
          len(cmcs), skipped)
