"""Table 2 on RegDB: one model per trial (1..10), each trained on its trial's
training ids and evaluated on that trial's test ids only (evaluating a model on
another trial's test set would test it on images it trained on), then mean +- std
over the trials for visible->thermal and thermal->visible."""

import os
from typing import Callable, Dict, List

from jsia_tf import config as config_lib
from jsia_tf.data import readers
from jsia_tf.experiments import runner
from jsia_tf.experiments import stats

DIRECTIONS = {"visible->thermal": "v2t", "thermal->visible": "t2v"}
TABLE_FILE, JSON_FILE = "regdb.md", "regdb.json"


def check_trials(cfg: config_lib.RegdbExperimentConfig) -> None:
  """Every trial's index files are there and readable, before anything trains."""
  readers.check_regdb_layout(cfg.data_dir)
  for trial in cfg.trials:
    for split in ("train", "test"):
      readers.read_regdb(cfg.data_dir, split, trial)


def specs(cfg: config_lib.RegdbExperimentConfig) -> List[runner.RunSpec]:
  """One run per trial."""
  common = ["--dataset=regdb", f"--seed={cfg.seed}"] + runner.common_flags(cfg)
  return [runner.RunSpec(f"trial{trial}", tuple(common + [f"--trial={trial}"]),
                         {"trial": trial, "seed": cfg.seed}) for trial in cfg.trials]


def regdb_metrics(report: Dict) -> Dict[str, float]:
  """A RegDB run's HParams metrics: both directions' columns, as v2t/R1, ..."""
  return {f"{short}/{k}": v for name, short in DIRECTIONS.items()
          for k, v in runner.final_metrics(report, name).items()}


def run(cfg: config_lib.RegdbExperimentConfig, log: Callable[[str], None] = print) -> Dict:
  """Trains (or reuses) the model of every trial; writes OUTPUT_DIR/regdb.md and
  regdb.json (per direction: mean +- std over trials of each column, and every
  trial's numbers). Returns regdb.json's content."""
  check_trials(cfg)
  run_specs = specs(cfg)
  reports = runner.run_all(run_specs, cfg.output_dir, log, metrics=regdb_metrics,
                           metric_names=[f"{s}/{k}" for s in DIRECTIONS.values()
                                         for k in runner.COLUMNS])
  per_trial = {s.hparams["trial"]: regdb_metrics(reports[s.name]) for s in run_specs}
  table = {name: {k: stats.summarize([m[f"{short}/{k}"] for m in per_trial.values()])
                  for k in runner.COLUMNS} for name, short in DIRECTIONS.items()}
  lines = [f"Table 2 on {cfg.data_dir}: one model per trial ({len(cfg.trials)} trials: "
           f"{', '.join(map(str, cfg.trials))}), each evaluated on its own trial's test "
           "ids; mean +- std over trials, %", "",
           "| direction | " + " | ".join(runner.COLUMNS) + " |",
           "| --- | " + " | ".join("---" for _ in runner.COLUMNS) + " |"]
  for name in DIRECTIONS:
    lines.append(f"| {name} | " + " | ".join(runner.cell(table[name][k])
                                             for k in runner.COLUMNS) + " |")
  text = "\n".join(lines) + "\n"
  result = {"config": config_lib.to_dict(cfg), "directions": table,
            "trials": {str(t): m for t, m in per_trial.items()}}
  runner.write_results(cfg.output_dir, TABLE_FILE, text, JSON_FILE, result, log)
  return result
