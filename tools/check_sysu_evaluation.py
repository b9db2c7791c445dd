"""jsia_tf's SYSU-MM01 evaluation against the authors' own, on the same features.

  python tools/check_sysu_evaluation.py --authors_repo=DIR --features=F.npz \
      [--output_json=FILE]

DIR is a clone of github.com/wangguanan/JSIA-ReID; its
`tools/evaluation/sysu_mm01_python/evaluate_sysymm01.py` (the evaluation their
`core/test.py` runs, written by the SYSU-MM01 author) and its `data_split/` are
used from there, nothing is copied. F.npz is a features file of `python -m
jsia_tf.evaluate --output_features` (or a training run's `eval/features.npz`) of a
set in the real SYSU-MM01 test set's shape: the real one, or one made by `python -m
jsia_tf.generate --layout=sysu --like_sysu_test`, so that their perm file fits it.
The features are written per camera as their code reads them (`feature_cam1.mat`
... `feature_cam6.mat`); their `evaluate_sysymm01(dir, mode, shot)` and `python -m
jsia_tf.evaluate --perm_file=official` give R1, R10, R20 and mAP in all four
settings, which must agree to 1e-6 (exit status 1 otherwise). Needs numpy and
scipy only (no torch).
"""

import json
import os
import sys

from absl import flags

from jsia_tf import cli
from jsia_tf import files
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import their_sysu

FLAGS = flags.FLAGS


def define_flags():
  """The tool's flags."""
  flags.DEFINE_string("authors_repo", None, "A clone of github.com/wangguanan/JSIA-ReID.")
  flags.DEFINE_string("features", None, "A features file (.npz) of a set in the real "
                      "SYSU-MM01 test set's shape.")
  flags.DEFINE_string("output_json", "", "Also write the table here as JSON.")
  flags.mark_flags_as_required(["authors_repo", "features"])


def compare(repo: str, path: str):
  """Rows (setting, metric, ours, theirs, |difference|, ok) of both evaluations of
  the features file `path`."""
  evaluator = their_sysu.load_evaluator(repo)
  feats = features_lib.load(path)
  mine = their_sysu.ours(feats, path)  # first: it names a file that does not fit
  return [row + (bool(row[-1] <= their_sysu.TOLERANCE),)
          for row in their_sysu.differences(mine, their_sysu.theirs(evaluator, repo, feats))]


def main(argv):
  """Entry point: flags -> both evaluations -> table (and JSON); exit 1 if a row is
  off."""
  del argv
  rows = compare(FLAGS.authors_repo, FLAGS.features)
  print(f"{'setting':28s}{'metric':>7s}{'jsia_tf':>12s}{'authors':>12s}{'|diff|':>10s}")
  for setting, metric, mine, value, diff, ok in rows:
    print(f"{setting:28s}{metric:>7s}{100 * mine:12.6f}{100 * value:12.6f}"
          f"{diff:10.1e}{'' if ok else '  OFF'}")
  print(f"(%, their official gallery draws; tolerance {their_sysu.TOLERANCE:g} "
        f"absolute)")
  if FLAGS.output_json:
    record = json.dumps({"features": os.path.abspath(FLAGS.features),
                         "tolerance": their_sysu.TOLERANCE,
                         "rows": [dict(zip(("setting", "metric", "jsia_tf", "authors",
                                            "difference", "ok"), r)) for r in rows]},
                        indent=2)
    files.atomic_write(FLAGS.output_json, lambda f: f.write(record))
    print(f"wrote {FLAGS.output_json}")
  if not all(r[-1] for r in rows):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
