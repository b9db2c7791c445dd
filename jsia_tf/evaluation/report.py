"""Evaluation runs over features files, their summaries, and the console table."""

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from jsia_tf import config as config_lib
from jsia_tf import errors
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


IdList = Tuple[Optional[np.ndarray], str]  # (ids, or None for every one; its source)


def id_lists(cfg: config_lib.EvalConfig, num_sets: int,
             split_ids: Optional[np.ndarray] = None) -> List[IdList]:
  """Per feature set, the identities `cfg.test_ids` keeps. With no list given:
  `split_ids` (a model's own test split) when given, else SYSU-MM01's official
  `test_id.mat`, else (RegDB, whose test ids change with the trial) every one."""
  if cfg.test_ids == ("all",):
    return [(None, "every identity (--test_ids=all)")] * num_sets
  if cfg.test_ids:
    lists = [(protocols.read_ids(p), p) for p in cfg.test_ids]
    return lists * num_sets if len(lists) == 1 else lists
  if split_ids is not None:
    return [(np.asarray(split_ids), "the model's test split")] * num_sets
  if cfg.protocol == "sysu":
    return [(protocols.read_ids(protocols.OFFICIAL_TEST_IDS),
             "the official test_id.mat")] * num_sets
  hint = {"regdb": "RegDB: --test_ids=idx/test_visible_<trial>.txt keeps one trial's",
          "llcm": "LLCM: --test_ids=DIR/idx/test_id.txt keeps the test split's",
          "custom": "the list file's query and gallery rows"}
  return [(None, f"every identity of the file ({hint[cfg.protocol]})")] * num_sets


def keep_test_ids(feats: features_lib.FeatureSet, ids: IdList, name: str
                  ) -> Tuple[features_lib.FeatureSet, Dict]:
  """`feats` without the rows of identities outside `ids`, and what that left out."""
  id_array, source = ids
  kept, counts = protocols.keep_ids(feats, np.unique(feats.ids) if id_array is None
                                    else id_array)
  if not counts["kept_rows"]:
    raise errors.DataError(
        f"{name}: none of its {len(np.unique(feats.ids))} identities is in {source} "
        f"({len(id_array)} ids); for another data set pass --test_ids=DIR/exp/"
        f"test_id.txt (or --test_ids=all)")
  return kept, {"source": source, **counts}


def gallery_draws(choice: str, feats: features_lib.FeatureSet, num_trials: int
                  ) -> Tuple[Optional[protocols.PermFile], str]:
  """The perm file of `--perm_file=choice` (None: seeded draws) and its description.

  `auto` takes the official file where it fits the features (the real test set, or
  a generated set made in its shape) and seeded draws elsewhere, saying why."""
  seeded = "seeded: numpy default_rng(trial)"
  if choice == "seeded":
    return None, seeded
  path = protocols.OFFICIAL_PERM_FILE if choice in ("auto", "official") else choice
  perm = protocols.PermFile(path)
  _, candidates = protocols.sysu_split(feats, "all")  # indoor's are among them
  misfit = protocols.perm_misfit(feats, candidates, perm, num_trials)
  if misfit and choice == "auto":
    return None, f"{seeded} (the official perm file does not fit: {misfit})"
  if misfit:
    raise errors.DataError(f"{misfit}; --perm_file=seeded draws galleries for any set, "
                           f"and tools/make_perm_file.py writes a perm file for a "
                           f"SYSU-layout data set")
  return perm, ("official rand_perm_cam.mat" if path == protocols.OFFICIAL_PERM_FILE
                else f"perm file {path}")


def shot_name(shots: int) -> str:
  """"single" or "multi": the SYSU-MM01 name of a gallery of `shots` per (cam, id)."""
  return "single" if shots == 1 else "multi"


def sysu_setting(mode: str, shots: int) -> str:
  """The report's name of a SYSU-MM01 setting ("all-search single-shot", ...)."""
  return f"{mode}-search {shot_name(shots)}-shot"


def evaluate_features(feature_sets: List[features_lib.FeatureSet],
                      cfg: config_lib.EvalConfig,
                      split_ids: Optional[np.ndarray] = None) -> Dict:
  """The report of `evaluate` for feature sets already in memory, one per file of
  `cfg.features` (whose names the report records). `split_ids`: the identities of
  the test split the features were extracted from (model sources)."""
  settings, kept_sets, test_ids = {}, [], []
  names = list(cfg.features) or ["the features"]
  for feats, ids, name in zip(feature_sets, id_lists(cfg, len(feature_sets), split_ids),
                              names * len(feature_sets)):
    kept, counts = keep_test_ids(feats, ids, name)
    kept_sets.append(kept)
    test_ids.append(counts)
  draws = None
  if cfg.protocol == "sysu":
    feats = kept_sets[0]
    perm, draws = gallery_draws(cfg.perm_file, feats, cfg.num_trials)
    results = protocols.evaluate_sysu(
        feats, modes=[cfg.mode] if cfg.mode else protocols.SYSU_MODES,
        shots=[cfg.shots] if cfg.shots else protocols.SYSU_SHOTS, perm=perm,
        distance=cfg.distance, num_trials=cfg.num_trials, max_rank=cfg.max_rank,
        rerank=cfg.rerank_params)
    for (mode, shots), trials in results.items():
      settings[sysu_setting(mode, shots)] = dict(summarize(trials), mode=mode,
                                                 shots=shots)
  elif cfg.protocol == "custom":
    result = protocols.evaluate_custom(kept_sets[0], cfg.distance, cfg.max_rank,
                                       cfg.remove_same_camera, cfg.rerank_params)
    settings["query->gallery"] = dict(summarize([result]),
                                      remove_same_camera=cfg.remove_same_camera)
  elif cfg.protocol == "llcm":
    # The authors' default direction (infrared queries) first.
    for direction in [cfg.direction] if cfg.direction else ["t2v", "v2t"]:
      trials = protocols.evaluate_llcm(kept_sets[0], direction, cfg.distance,
                                       cfg.num_trials, cfg.max_rank, cfg.rerank_params)
      name = {"v2t": "visible->infrared", "t2v": "infrared->visible"}[direction]
      settings[name] = dict(summarize(trials), direction=direction)
  else:
    for direction in [cfg.direction] if cfg.direction else list(
        protocols.REGDB_DIRECTIONS):
      trials = [protocols.evaluate_regdb(f, direction, cfg.distance, cfg.max_rank,
                                         cfg.rerank_params) for f in kept_sets]
      name = {"v2t": "visible->thermal", "t2v": "thermal->visible"}[direction]
      settings[name] = dict(summarize(trials), direction=direction)
  return {
      "protocol": cfg.protocol,
      "distance": cfg.distance,
      "rerank": cfg.rerank_summary,
      "gallery_draws": draws,
      "test_ids": test_ids,
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
  rerank = report.get("rerank")
  lines.append(f"({report['protocol']} protocol, {report['distance']} distance, "
               + (f"k-reciprocal re-ranking k1={rerank['k1']} k2={rerank['k2']} "
                  f"lambda={rerank['lambda']:g}, " if rerank else "") +
               f"mean +- std over {'/'.join(map(str, sorted(trials)))} trial(s), %)")
  return "\n".join(lines + notes(report))


def notes(report: Dict) -> List[str]:
  """The report's gallery draws and the identities kept and left out, in words."""
  out = [f"gallery draws: {report['gallery_draws']}"] if report.get("gallery_draws") else []
  for i, t in enumerate(report.get("test_ids", [])):
    which = f" (file {i + 1})" if len(report["test_ids"]) > 1 else ""
    line = (f"test identities{which}: {t['source']}: {t['kept_ids']} identities, "
            f"{t['kept_rows']} images")
    if t["left_out_rows"]:
      line += (f"; left out {t['left_out_rows']} images of {t['left_out_ids']} other "
               f"identities")
    out.append(line)
  return out
