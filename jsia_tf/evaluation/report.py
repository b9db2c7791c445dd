"""Evaluation runs over features files, their summaries, and the console table."""

import json
import os
from typing import Dict, List

import numpy as np

from jsia_tf import config as config_lib
from jsia_tf import files
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import ranking

METRICS = ("R1", "R5", "R10", "R20", "mAP", "mINP")


def summarize(results: List[ranking.RankingResult]) -> Dict:
  """Mean and (population) std over trials of every metric, plus the trials."""
  per_trial = [r.as_dict() for r in results]
  return {
      "mean": {m: float(np.mean([t[m] for t in per_trial])) for m in METRICS},
      "std": {m: float(np.std([t[m] for t in per_trial])) for m in METRICS},
      "num_trials": len(results),
      "trials": per_trial,
      "num_queries": [r.num_queries for r in results],
      "num_skipped_queries": [r.num_skipped for r in results],
      "gallery_size": [r.gallery_size for r in results],
  }


def evaluate(cfg: config_lib.EvalConfig) -> Dict:
  """Runs the evaluation of `cfg` on its features files; returns the JSON-ready
  report."""
  return evaluate_features([features_lib.load(path) for path in cfg.features], cfg)


def evaluate_features(feature_sets: List[features_lib.FeatureSet],
                      cfg: config_lib.EvalConfig) -> Dict:
  """The report of `evaluate` for feature sets already in memory, one per file of
  `cfg.features` (whose names the report records)."""
  settings = {}
  if cfg.protocol == "sysu":
    feats = feature_sets[0]
    perm = protocols.PermFile(cfg.perm_file) if cfg.perm_file else None
    results = protocols.evaluate_sysu(
        feats, modes=[cfg.mode] if cfg.mode else protocols.SYSU_MODES,
        shots=[cfg.shots] if cfg.shots else protocols.SYSU_SHOTS, perm=perm,
        distance=cfg.distance, num_trials=cfg.num_trials, max_rank=cfg.max_rank)
    for (mode, shots), trials in results.items():
      name = f"{mode}-search {'single' if shots == 1 else 'multi'}-shot"
      settings[name] = dict(summarize(trials), mode=mode, shots=shots)
  else:
    feats = feature_sets
    for direction in [cfg.direction] if cfg.direction else list(
        protocols.REGDB_DIRECTIONS):
      trials = [protocols.evaluate_regdb(f, direction, cfg.distance, cfg.max_rank)
                for f in feats]
      name = {"v2t": "visible->thermal", "t2v": "thermal->visible"}[direction]
      settings[name] = dict(summarize(trials), direction=direction)
  return {
      "protocol": cfg.protocol,
      "distance": cfg.distance,
      "gallery_draws": ("official perm file" if cfg.perm_file else
                        "numpy default_rng(trial)") if cfg.protocol == "sysu" else None,
      "features": [os.path.abspath(f) for f in cfg.features],
      "settings": settings,
      "config": config_lib.to_dict(cfg),
  }


def save(report: Dict, path: str) -> None:
  """Writes `report` as indented JSON to `path`, atomically."""
  files.atomic_write(path, lambda f: json.dump(report, f, indent=2))


def format_table(report: Dict) -> str:
  """The report as a table like the paper's: percentages, mean +- std over trials."""
  names = list(report["settings"])
  width = max(len(n) for n in names + ["setting"])
  lines = [f"{'setting':<{width}}  " + "  ".join(f"{m:>12}" for m in METRICS)]
  for name in names:
    s = report["settings"][name]
    cells = [f"{100 * s['mean'][m]:6.2f}+-{100 * s['std'][m]:4.2f}" for m in METRICS]
    lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
  trials = {s["num_trials"] for s in report["settings"].values()}
  lines.append(f"({report['protocol']} protocol, {report['distance']} distance, "
               f"mean +- std over {'/'.join(map(str, sorted(trials)))} trial(s), %)")
  return "\n".join(lines)
