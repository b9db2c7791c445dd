"""Table 3 of the paper: which alignment parts help, one row per switch setting,
several seeds per row, each row's paired difference to row 1 with a 95% interval.

Rows (SL, IL, LR, UI), as the paper's switches: SL = E_sl shared with E_i
(`--sl_mode=shared`, named, since a preset may default to another mode;
`--sl_mode=separate` when off), IL / LR / UI = `--lambda_il`, `--lambda_lr`,
`--lambda_ui` (0 when off). A part can also be DEGRADED, as in the paper's rows 7-8:
SL without disentanglement, a feature-level modality GAN on E_sl as in cmGAN
(`--sl_mode=adversarial`, row 7), and LR on unpaired real images
(`--lr_pairs=unpaired`, row 8).
"""

import os
from typing import Callable, Dict, List

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.experiments import runner

OFF, ON, DEGRADED = "off", "on", "degraded"
ROWS = {1: (OFF, OFF, OFF, OFF), 2: (ON, OFF, OFF, OFF), 3: (OFF, ON, OFF, OFF),
        4: (ON, ON, OFF, OFF), 5: (ON, ON, ON, OFF), 6: (ON, ON, ON, ON),
        7: (DEGRADED, ON, ON, ON), 8: (ON, ON, DEGRADED, ON)}
MARKS = {OFF: "-", ON: "x", DEGRADED: "d"}
PARTS = ("SL", "IL", "LR", "UI")
TABLE_FILE, JSON_FILE = "ablation.md", "ablation.json"


def row_flags(row: int) -> List[str]:
  """The train flags of `row`'s parts: SL's mode always (the demo preset's default
  is not SL), the loss weights of the parts switched off (the rest keep defaults)."""
  sl, il, lr, ui = ROWS[row]
  out = [{ON: "--sl_mode=shared", OFF: "--sl_mode=separate",
          DEGRADED: "--sl_mode=adversarial"}[sl]]
  for part, name in ((il, "lambda_il"), (lr, "lambda_lr"), (ui, "lambda_ui")):
    if part == OFF:
      out.append(f"--{name}=0")
  if lr == DEGRADED:
    out.append("--lr_pairs=unpaired")
  return out


def specs(cfg: config_lib.AblationConfig) -> List[runner.RunSpec]:
  """One run per (row, seed), rows in the order given, seeds 0 .. seeds-1."""
  unknown = [r for r in cfg.rows if r not in ROWS]
  if unknown:
    raise errors.ConfigError(
        f"--rows={','.join(map(str, cfg.rows))}: unknown row(s) {unknown}; expected "
        f"rows {', '.join(map(str, sorted(ROWS)))} of Table 3")
  common = runner.common_flags(cfg)
  return [runner.RunSpec(f"row{row}_seed{seed}",
                         tuple(common + row_flags(row) + [f"--seed={seed}"]),
                         {"row": row, "seed": seed, **dict(zip(PARTS, ROWS[row]))})
          for row in cfg.rows for seed in range(cfg.seeds)]


def run(cfg: config_lib.AblationConfig, log: Callable[[str], None] = print) -> Dict:
  """Trains (or reuses) every run, then writes OUTPUT_DIR/ablation.md and
  ablation.json: per row mean +- std over seeds, and the paired difference to row 1
  (when row 1 is run). Returns ablation.json's content."""
  run_specs = specs(cfg)
  reports = runner.run_all(run_specs, cfg.output_dir, log)
  groups = {str(row): [runner.final_metrics(reports[s.name]) for s in run_specs
                       if s.hparams["row"] == row] for row in cfg.rows}
  baseline = "1" if 1 in cfg.rows and len(cfg.rows) > 1 else None
  table = runner.rows_table(groups, baseline)
  labels = {"header": "row | SL | IL | LR | UI | seeds",
            **{str(r): f"{r} | " + " | ".join(MARKS[p] for p in ROWS[r]) +
               f" | {cfg.seeds}" for r in cfg.rows}}
  first = reports[run_specs[0].name]
  data_dir = first["experiment"]["data"]["data_dir"]
  text = (f"Table 3 on {data_dir} ({runner.SYSU_SETTING}, mean over the 10 gallery "
          f"trials, %; mean +- std over seeds {', '.join(map(str, range(cfg.seeds)))}"
          + "; x on, - off, d degraded"
          + ("; row - row 1: the mean paired difference over seeds and its 95% t "
             "interval, * where the interval excludes 0" if baseline else "") + ")\n\n"
          + runner.format_table(table, labels, baseline) + "\n")
  result = {"config": config_lib.to_dict(cfg), "data_dir": data_dir,
            "setting": runner.SYSU_SETTING, "rows": table,
            "runs": {s.name: {"hparams": s.hparams,
                              "metrics": runner.final_metrics(reports[s.name])}
                     for s in run_specs}}
  runner.write_results(cfg.output_dir, TABLE_FILE, text, JSON_FILE, result, log)
  return result
