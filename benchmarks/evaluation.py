"""Vectorised evaluator vs the per-query loop reference, SYSU-MM01 sized (JSON).

The features have the exact shape of the SYSU-MM01 test set, read from the official
split files: 3,803 IR queries; the all-search multi-shot gallery of the 10 official
trials (about 3,010 images each) drawn from 6,775 RGB candidates. Features are random
(the timing does not depend on their values).

Two comparisons:
- in process, all-search multi-shot: the vectorised ranking of 10 trials against the
  per-query loop (distances given to both);
- the whole CLI call, `python -m jsia_tf.evaluate --features=F --perm_file=...`
  (process start, file load, distances, all four settings x 10 trials), against
  the per-query loop over the same four settings x 10 trials (with its distances).

And k-reciprocal re-ranking (`--rerank`, k1 20, k2 6, lambda 0.3): one re-ranking at
the single-shot and the multi-shot all-search sizes, and the whole CLI call with
`--rerank` (40 re-rankings, one per setting and trial) with its peak memory.

  python benchmarks/evaluation.py [--split_dir=jsia_tf/evaluation/sysu_mm01_eval]
      [--dim=2048] [--loop_trials=10] [--sections=ranking,cli,rerank]
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import ranking
from jsia_tf.evaluation import rerank

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests"))
from ranking_reference import reference_ranking  # pylint: disable=g-import-not-at-top,wrong-import-position

_SPLIT_DIR = flags.DEFINE_string(
    "split_dir", protocols.OFFICIAL_SPLIT_DIR,
    "Directory with the official rand_perm_cam.mat and test_id.mat.")
_DIM = flags.DEFINE_integer("dim", 2048, "Feature dimension (ResNet-50: 2048).")
_LOOP_TRIALS = flags.DEFINE_integer("loop_trials", 10,
                                    "Trials to run through the slow loop reference.")
_SECTIONS = flags.DEFINE_multi_enum(
    "sections", ["ranking", "cli", "rerank"], ["ranking", "cli", "rerank"],
    "What to measure: the vectorised ranking against the loop, the CLI call, "
    "k-reciprocal re-ranking.")


def sysu_shaped_features(split_dir, dim, seed=0):
  """Random features laid out exactly like the SYSU-MM01 test set."""
  perm, rows = protocols.official_test_layout(split_dir)
  rng = np.random.default_rng(seed)
  return perm, features_lib.FeatureSet(
      features=rng.standard_normal((len(rows), dim)).astype(np.float32),
      ids=rows[:, 0], cams=rows[:, 1], frames=rows[:, 2],
      modality=np.isin(rows[:, 1], (3, 6)).astype(np.int64))


def _loop_all_settings(feats, perm, loop_trials):
  """The per-query loop over all four settings (each mode's distances once):
  the total seconds, distances included, and per (mode, shots) the seconds of its
  loop alone and its results (cmc, AP, INP) per trial."""
  start, per_setting = time.perf_counter(), {}
  for mode in protocols.SYSU_MODES:
    query, candidates = protocols.sysu_split(feats, mode)
    distmat = features_lib.distance_matrix(feats.features[query],
                                           feats.features[candidates], "cosine")
    for shots in protocols.SYSU_SHOTS:
      loop_start, results = time.perf_counter(), []
      for g in protocols.sysu_galleries(feats, candidates, shots, perm=perm)[:loop_trials]:
        results.append(reference_ranking(
            distmat[:, g], feats.ids[query], feats.ids[candidates][g], feats.cams[query],
            feats.cams[candidates][g], "sysu"))
      per_setting[(mode, shots)] = (time.perf_counter() - loop_start, results)
  return time.perf_counter() - start, per_setting


def _cli_all_settings(feats, *extra):
  """(wall seconds, peak resident MB, stdout) of `python -m jsia_tf.evaluate` on
  `feats` (all settings, the official perm file, `extra` flags), process start
  included."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "sysu_test.npz")
    features_lib.save(path, feats)
    perm_file = os.path.join(_SPLIT_DIR.value, "rand_perm_cam.mat")
    argv = ["evaluate", f"--features={path}", f"--perm_file={perm_file}", *extra]
    # The child reports its own peak resident memory (kB on Linux) on its last line.
    script = ("import resource, runpy, sys\n"
              f"sys.argv = {argv!r}\n"
              "try:\n  runpy.run_module('jsia_tf.evaluate', run_name='__main__')\n"
              "except SystemExit as e:\n  assert not e.code, e.code\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"python -m jsia_tf.evaluate failed:\n{proc.stderr[-3000:]}")
  *table, peak_kb = proc.stdout.strip().splitlines()
  return seconds, int(peak_kb) / 1024, "\n".join(table)


def _ranking(feats, perm, out):
  """The vectorised ranking of all-search multi-shot against the per-query loop."""
  query, candidates = protocols.sysu_split(feats, "all")
  galleries = protocols.sysu_galleries(feats, candidates, 10, perm=perm)
  start = time.perf_counter()
  distmat = features_lib.distance_matrix(feats.features[query],
                                         feats.features[candidates], "cosine")
  t_distance = time.perf_counter() - start
  args = (feats.ids[query], feats.ids[candidates], feats.cams[query],
          feats.cams[candidates])
  start = time.perf_counter()
  ranked = ranking.RankedCandidates(distmat, *args, "sysu")
  vectorised = ranking.metrics_of_galleries(ranked, galleries)
  t_vectorised = time.perf_counter() - start
  t_loop_all, per_setting = _loop_all_settings(feats, perm, _LOOP_TRIALS.value)
  t_loop, loop = per_setting[("all", 10)]  # this setting's own loop
  worst = max(max(np.abs(v.cmc - l[0]).max(), abs(v.mAP - l[1]), abs(v.mINP - l[2]))
              for v, l in zip(vectorised, loop))
  loop_all_trials = sum(len(results) for _, results in per_setting.values())
  out.update({
      "setting": "SYSU-MM01 all-search multi-shot, official perm file, 10 trials",
      "queries": len(query), "candidates": len(candidates),
      "gallery_sizes": sorted({len(g) for g in galleries}),
      "seconds_cosine_distances_once": round(t_distance, 3),
      "seconds_vectorised_10_trials": round(t_vectorised, 3),
      "seconds_loop_reference": round(t_loop, 2),
      "loop_reference_trials": len(loop),
      "speedup_per_trial": round((t_loop / len(loop)) / (t_vectorised / 10), 1),
      "max_abs_difference": float(worst),
      # Scaled to 10 trials per setting when --loop_trials < 10 (the loop is linear).
      "seconds_loop_all_four_settings_10_trials": round(
          t_loop_all * 40 / loop_all_trials, 1),
      "loop_all_settings_trials_run": loop_all_trials,
  })


def _rerank(feats, perm, out):
  """One re-ranking at the single- and multi-shot all-search sizes; the CLI with
  --rerank (all four settings x 10 trials) and its peak memory."""
  query, candidates = protocols.sysu_split(feats, "all")
  for shots in protocols.SYSU_SHOTS:
    gallery = candidates[protocols.sysu_galleries(feats, candidates, shots, 1, perm)[0]]
    start = time.perf_counter()
    rerank.distances(feats.features[query], feats.features[gallery], "cosine",
                     (20, 6, 0.3))
    out[f"seconds_rerank_once_all_search_{shots}_shot"] = round(
        time.perf_counter() - start, 2)
    out[f"rerank_images_all_search_{shots}_shot"] = len(query) + len(gallery)
  t_cli, peak_mb, table = _cli_all_settings(feats, "--rerank")
  out["seconds_cli_rerank_all_four_settings_10_trials"] = round(t_cli, 1)
  out["peak_mb_cli_rerank"] = round(peak_mb)
  out["cli_rerank_table"] = table.splitlines()[:6]


def main(argv):
  del argv
  perm, feats = sysu_shaped_features(_SPLIT_DIR.value, _DIM.value)
  out = {"benchmark": "evaluation", "feature_dim": _DIM.value}
  if "ranking" in _SECTIONS.value:
    _ranking(feats, perm, out)
  if "cli" in _SECTIONS.value:
    t_cli, peak_mb, table = _cli_all_settings(feats)
    out["seconds_cli_all_four_settings_10_trials"] = round(t_cli, 2)
    out["peak_mb_cli"] = round(peak_mb)
    out["cli_settings"] = [line.split("  ")[0] for line in table.splitlines()[1:5]]
    if "seconds_loop_all_four_settings_10_trials" in out:
      out["cli_speedup"] = round(out["seconds_loop_all_four_settings_10_trials"] / t_cli, 1)
  if "rerank" in _SECTIONS.value:
    _rerank(feats, perm, out)
  out.update({"cpu_cores": os.cpu_count(), "machine": platform.machine(),
              "cpu": _cpu_model(), "numpy": np.__version__})
  print(json.dumps(out, indent=2))


def _cpu_model() -> str:
  """The CPU's model name (`lscpu`'s), as the docs quote figures with it."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


if __name__ == "__main__":
  app.run(main)
