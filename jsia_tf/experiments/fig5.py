"""Fig. 5 of the paper: R1 against one parameter (lambda_il, lambda_lr, lambda_ui,
num_stripes), several seeds per value, each value's runs resumable."""

import os
from typing import Callable, Dict, List

import numpy as np

from jsia_tf import config as config_lib
from jsia_tf.analysis import figures
from jsia_tf.experiments import runner

TABLE_FILE, JSON_FILE, PLOT_FILE = "sweep.md", "sweep.json", "sweep.png"


def output_dir(cfg: config_lib.SweepConfig) -> str:
  """The sweep's directory: `cfg.output_dir`, or runs/sweep_<param>."""
  return cfg.output_dir or os.path.join("runs", f"sweep_{cfg.param}")


def _value_flag(cfg: config_lib.SweepConfig, value: float) -> str:
  return f"--{cfg.param}={int(value) if cfg.param == 'num_stripes' else value:g}"


def specs(cfg: config_lib.SweepConfig) -> List[runner.RunSpec]:
  """One run per (value, seed), values in the order given, of the paper's model:
  SL on (`--sl_mode=shared`; the demo preset's default is not SL), which
  `--train_flags` may override."""
  common = ["--sl_mode=shared"] + runner.common_flags(cfg)
  return [runner.RunSpec(f"{cfg.param}_{value:g}_seed{seed}",
                         tuple(common + [_value_flag(cfg, value), f"--seed={seed}"]),
                         {cfg.param: float(value), "seed": seed})
          for value in cfg.values for seed in range(cfg.seeds)]


def default_value(cfg: config_lib.SweepConfig) -> float:
  """The value `cfg.param` takes when a run does not set it: the loss weight's
  default, or the preset's stripe count."""
  if cfg.param == "num_stripes":
    return float(config_lib.PRESETS[cfg.preset]["num_stripes"])
  return getattr(config_lib.LossWeights(), cfg.param)


def plot(cfg: config_lib.SweepConfig, table: List[Dict], path: str) -> None:
  """R1 (mean, and +- std with 2+ seeds) against the value; a log axis for the
  loss weights (symmetric-log, so that 0 shows)."""
  # pylint: disable=import-outside-toplevel
  import matplotlib
  matplotlib.use("Agg")  # files only
  import matplotlib.pyplot as plt
  x = np.array([float(r["row"]) for r in table])
  y = np.array([r["R1"]["mean"] for r in table])
  err = np.array([r["R1"]["std"] or 0.0 for r in table])
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  ax.errorbar(x, y, yerr=err if cfg.seeds > 1 else None, marker="o", capsize=3)
  if cfg.param != "num_stripes":
    positive = x[x > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
  ax.set_xlabel(cfg.param)
  ax.set_ylabel(f"R1, % ({runner.SYSU_SETTING})")
  ax.set_title(f"Fig. 5: {cfg.param} ({cfg.seeds} seed{'s' if cfg.seeds > 1 else ''} "
               "per value)", fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  figures.save_figure(fig, path)


def run(cfg: config_lib.SweepConfig, log: Callable[[str], None] = print) -> Dict:
  """Trains (or reuses) every run; writes sweep.md, sweep.json and sweep.png (R1
  against the value). Returns sweep.json's content."""
  out_dir = output_dir(cfg)
  run_specs = specs(cfg)
  reports = runner.run_all(run_specs, out_dir, log)
  groups = {f"{value:g}": [runner.final_metrics(reports[s.name]) for s in run_specs
                           if s.hparams[cfg.param] == float(value)] for value in cfg.values}
  # Each value against the default, seed by seed: pairing the runs of one seed takes
  # out what the seed alone moves (initial weights, data order).
  default = f"{default_value(cfg):g}"
  baseline = default if default in groups and len(groups) > 1 else None
  table = runner.rows_table(groups, baseline)
  labels = {"header": f"{cfg.param} | seeds",
            **{name: f"{name} | {cfg.seeds}" for name in groups}}
  label = f"{cfg.param} {default}"
  text = (f"Fig. 5: {cfg.param} ({runner.SYSU_SETTING}, mean over the 10 gallery "
          f"trials, %; mean +- std over seeds"
          + (f"; R1 - {label} (the default): the mean paired difference over seeds "
             "and its 95% t interval, * where the interval excludes 0" if baseline else "")
          + ")\n\n" + runner.format_table(table, labels, baseline, label)
          + f"\n\n![R1]({PLOT_FILE})\n")
  plot(cfg, table, os.path.join(out_dir, PLOT_FILE))
  result = {"config": config_lib.to_dict(cfg), "rows": table,
            "runs": {s.name: {"hparams": s.hparams,
                              "metrics": runner.final_metrics(reports[s.name])}
                     for s in run_specs}}
  runner.write_results(out_dir, TABLE_FILE, text, JSON_FILE, result, log)
  return result
