"""Many training runs as one experiment: each run is `python -m jsia_tf.train` with
its own flags and workdir, trained in this process, resumable (a finished run is
reused, an unfinished one resumes from its checkpoint), with HParams summaries so
that TensorBoard's HParams dashboard lists every run with its switches and final
metrics."""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from flags import train_flags
from jsia_tf import errors
from jsia_tf import files
from jsia_tf.experiments import stats
from jsia_tf.training import loop

# The paper's columns (Tables 2 and 3).
COLUMNS = ("R1", "R10", "R20", "mAP", "mINP")
SYSU_SETTING = "all-search single-shot"
HPARAMS_DIR = "hparams"


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One training run: `name` (its workdir under the experiment's directory), the
  train flags `argv` (without --workdir) and the `hparams` the dashboard shows."""

  name: str
  argv: Tuple[str, ...]
  hparams: Dict[str, Any]


def common_flags(cfg) -> List[str]:
  """The train flags every run of an experiment config shares: its preset, data
  set, schedule (0: the preset's) and `train_flags`; no per-step images or
  evaluations (each run is evaluated once, at its end)."""
  out = [f"--preset={cfg.preset}", "--image_every=0", "--eval_every=0"]
  if cfg.data_dir:
    out.append(f"--data_dir={cfg.data_dir}")
  for name in ("warmup_steps", "joint_steps"):
    if getattr(cfg, name):
      out.append(f"--{name}={getattr(cfg, name)}")
  return out + list(cfg.train_flags)


def report_path(workdir: str) -> str:
  """Where a finished run's final evaluation is (`training.loop`)."""
  return os.path.join(workdir, "eval", "report.json")


def final_metrics(report: Dict, setting: str = SYSU_SETTING) -> Dict[str, float]:
  """The paper's columns of `setting` (mean over trials), in %."""
  mean = report["settings"][setting]["mean"]
  return {k: 100.0 * float(mean[k]) for k in COLUMNS}


def sysu_metrics(report: Dict) -> Dict[str, float]:
  """A SYSU-MM01 run's HParams metrics: Table 3's setting."""
  return final_metrics(report, SYSU_SETTING)


def write_hparams(workdir: str, spec: RunSpec, metrics: Dict[str, float]) -> str:
  """The run's HParams summary and its final metrics, in WORKDIR/hparams."""
  logdir = os.path.join(workdir, HPARAMS_DIR)
  with tf.summary.create_file_writer(logdir).as_default():
    hp.hparams(spec.hparams, trial_id=spec.name)
    for k, v in metrics.items():
      tf.summary.scalar(f"final/{k}", v, step=0)
  return logdir


def write_hparams_config(output_dir: str, specs: Sequence[RunSpec],
                         metric_names: Sequence[str]) -> None:
  """The experiment's HParams config (every switch and metric), at its root."""
  names = sorted({k for s in specs for k in s.hparams})
  with tf.summary.create_file_writer(output_dir).as_default():
    hp.hparams_config(hparams=[hp.HParam(n) for n in names],
                      metrics=[hp.Metric(f"final/{k}", display_name=k) for k in metric_names])


def run_all(specs: Sequence[RunSpec], output_dir: str, log: Callable[[str], None] = print,
            metrics: Callable[[Dict], Dict[str, float]] = sysu_metrics,
            metric_names: Sequence[str] = COLUMNS) -> Dict[str, Dict]:
  """Trains every run of `specs` that has no final report yet (resuming any that
  has a checkpoint), in order; returns {name: its final report}. `metrics` maps a
  report to the HParams metrics `metric_names`."""
  if len({s.name for s in specs}) != len(specs):
    raise ValueError(f"run names repeat: {[s.name for s in specs]}")
  os.makedirs(output_dir, exist_ok=True)
  write_hparams_config(output_dir, specs, metric_names)
  reports, trained_seconds, trained = {}, 0.0, 0
  for i, spec in enumerate(specs):
    workdir = os.path.join(output_dir, spec.name)
    if os.path.isfile(report_path(workdir)):
      log(f"run {i + 1}/{len(specs)} {spec.name}: finished before, reusing "
          f"{report_path(workdir)}")
    else:
      left = len(specs) - i
      eta = (f", ETA of the {left} left {trained_seconds / trained * left / 60:.0f} min"
             if trained else "")
      log(f"run {i + 1}/{len(specs)} {spec.name}: {' '.join(spec.argv)}{eta}")
      cfg = train_flags.experiment_config_from_argv([*spec.argv, f"--workdir={workdir}"])
      cfg = dataclasses.replace(cfg, data=loop.with_demo_data(cfg.data, log))
      start = time.time()
      result = loop.run(cfg, log=lambda line, name=spec.name: log(f"  [{name}] {line}"))
      if result.get("stopped_by"):
        # The signal stops the experiment: later runs wait for the rerun.
        raise errors.JsiaError(
            f"stopped by {result['stopped_by']} during run {i + 1}/{len(specs)} "
            f"{spec.name} (its checkpoint is saved): rerun the same command to resume "
            f"it and go on with the {len(specs) - i - 1} after it")
      trained_seconds, trained = trained_seconds + time.time() - start, trained + 1
      keras.backend.clear_session()  # the next run builds its own networks
    with open(report_path(workdir)) as f:
      reports[spec.name] = json.load(f)
    write_hparams(workdir, spec, metrics(reports[spec.name]))
  return reports


def write_results(output_dir: str, table_file: str, text: str, json_file: str,
                  result: Dict, log: Callable[[str], None]) -> None:
  """Writes an experiment's markdown table and JSON result and logs the table.
  The JSON is encoded before either file is replaced, so a result that cannot be
  encoded leaves both earlier files as they were."""
  encoded = json.dumps(result, indent=1)
  files.atomic_write(os.path.join(output_dir, json_file), lambda f: f.write(encoded))
  files.atomic_write(os.path.join(output_dir, table_file), lambda f: f.write(text))
  log(text)


def rows_table(groups: Dict[str, List[Dict[str, float]]], baseline: str = None
               ) -> List[Dict]:
  """Per group (a table row: its runs' final metrics, one per seed in seed order):
  mean +- std of every column, and with `baseline` (a group name) the paired
  difference to it over seeds with its 95% interval."""
  table = []
  for name, runs in groups.items():
    row = {"row": name, "seeds": len(runs),
           **{k: stats.summarize([r[k] for r in runs]) for k in COLUMNS}}
    if baseline is not None and name != baseline:
      base = groups[baseline]
      n = min(len(base), len(runs))
      row["vs_" + baseline] = {k: stats.paired_difference([r[k] for r in runs[:n]],
                                                          [r[k] for r in base[:n]])
                               for k in COLUMNS}
    table.append(row)
  return table


def cell(s: Dict) -> str:
  """A table cell of `stats.summarize`'s result: mean (+- std with 2+ values)."""
  return f"{s['mean']:.2f}" + ("" if s["std"] is None else f" +- {s['std']:.2f}")


def _interval(d: Dict) -> str:
  if d["low"] is None:
    return f"{d['mean']:+.2f}"
  mark = " *" if stats.excludes_zero(d) else ""
  return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]{mark}"


def format_table(table: List[Dict], labels: Dict[str, str], baseline: str = None,
                 baseline_label: str = None) -> str:
  """Markdown: one line per row (`labels` maps a row to its leading cells, with a
  header under the key "header"), mean +- std per column, then the paired
  difference to `baseline` for R1 and mAP (headed "R1 - `baseline_label`", by
  default "row `baseline`")."""
  header = f"| {labels['header']} | " + " | ".join(COLUMNS)
  align = "| " + " | ".join("---" for _ in labels["header"].split("|")) + " | " + \
      " | ".join("---" for _ in COLUMNS)
  if baseline is not None:
    name = baseline_label or f"row {baseline}"
    header += f" | R1 - {name} | mAP - {name}"
    align += " | --- | ---"
  lines = [header + " |", align + " |"]
  for row in table:
    cells = [labels[row["row"]]] + [cell(row[k]) for k in COLUMNS]
    if baseline is not None:
      diff = row.get("vs_" + baseline)
      cells += ["-", "-"] if diff is None else [_interval(diff["R1"]), _interval(diff["mAP"])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)
