"""Table 3 of the paper on the demo data: which alignment parts help.

  python benchmarks/ablation_demo.py [--output_dir=runs/ablation] [--rows=1,2,3,4,5,6]
      [--warmup_steps=N --joint_steps=N] [--data_dir=DIR]

Each row is one `python -m jsia_tf.train` run (demo preset, generated data unless
--data_dir) in OUTPUT_DIR/row<i>, with the paper's switches as flags:
SL = --share_sl (E_i is E_sl), IL = --lambda_il, LR = --lambda_lr, UI = --lambda_ui.
Rows 7-8 of the paper (variants of the disentanglement) have no switch here. A row
whose report exists is not retrained. Writes OUTPUT_DIR/ablation.md (all-search
single-shot R1/R10/mAP per row, and random ranking) and prints it with a JSON list.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_string("output_dir", "runs/ablation", "Where the rows' workdirs and the "
                    "table go.")
flags.DEFINE_list("rows", ["1", "2", "3", "4", "5", "6"], "Rows of Table 3 to run.")
flags.DEFINE_integer("warmup_steps", 0, "Warm-up steps per row; 0: the preset's.")
flags.DEFINE_integer("joint_steps", 0, "Joint steps per row; 0: the preset's.")
flags.DEFINE_string("data_dir", "", "A SYSU-MM01-layout set; empty: the demo set.")
FLAGS = flags.FLAGS

# Row -> (SL, IL, LR, UI), Table 3 rows 1-6.
ROWS = {1: (False, False, False, False), 2: (True, False, False, False),
        3: (False, True, False, False), 4: (True, True, False, False),
        5: (True, True, True, False), 6: (True, True, True, True)}
SETTING = "all-search single-shot"


def row_flags(row: int):
  """The train flags that switch the parts of `row` off (the rest keep defaults)."""
  sl, il, lr, ui = ROWS[row]
  out = [] if sl else ["--noshare_sl"]
  for on, name in ((il, "lambda_il"), (lr, "lambda_lr"), (ui, "lambda_ui")):
    if not on:
      out.append(f"--{name}=0")
  return out


def run_row(row: int) -> dict:
  """Trains and evaluates `row` (unless its report exists); returns its report."""
  workdir = os.path.join(FLAGS.output_dir, f"row{row}")
  report_path = os.path.join(workdir, "eval", "report.json")
  if not os.path.isfile(report_path):
    args = [sys.executable, "-m", "jsia_tf.train", f"--workdir={workdir}",
            "--image_every=0", "--eval_every=0"] + row_flags(row)
    if FLAGS.data_dir:
      args += [f"--data_dir={FLAGS.data_dir}", "--preset=demo"]
    for name in ("warmup_steps", "joint_steps"):
      if FLAGS[name].value:
        args.append(f"--{name}={FLAGS[name].value}")
    print(f"row {row}: {' '.join(args[1:])}", flush=True)
    start = time.time()
    subprocess.run(args, check=True)
    print(f"row {row}: {time.time() - start:.0f} s", flush=True)
  with open(report_path) as f:
    return json.load(f)


def table(results) -> str:
  """The markdown table of `results` [(row, report)]."""
  mark = lambda on: "x" if on else "-"
  lines = ["| index | SL | IL | LR | UI | R1 | R10 | mAP |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for row, report in results:
    mean = report["settings"][SETTING]["mean"]
    lines.append(f"| {row} | " + " | ".join(mark(on) for on in ROWS[row]) +
                 f" | {100 * mean['R1']:.2f} | {100 * mean['R10']:.2f} | "
                 f"{100 * mean['mAP']:.2f} |")
  rand = results[0][1]["random_baseline"][SETTING]["mean"]
  lines.append(f"| random ranking | | | | | {100 * rand['R1']:.2f} | "
               f"{100 * rand['R10']:.2f} | {100 * rand['mAP']:.2f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  rows = [int(r) for r in FLAGS.rows]
  unknown = [r for r in rows if r not in ROWS]
  if unknown:
    raise app.UsageError(f"--rows: unknown row(s) {unknown}; expected 1..6")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  results = [(row, run_row(row)) for row in rows]
  text = (f"Table 3 rows on {results[0][1]['experiment']['data']['data_dir']} "
          f"({SETTING}, mean over trials, %):\n\n{table(results)}\n")
  with open(os.path.join(FLAGS.output_dir, "ablation.md"), "w") as f:
    f.write(text)
  print(text)
  print(json.dumps([{"row": row, "SL": ROWS[row][0], "IL": ROWS[row][1],
                     "LR": ROWS[row][2], "UI": ROWS[row][3],
                     **report["settings"][SETTING]["mean"]} for row, report in results]))


if __name__ == "__main__":
  app.run(main)
