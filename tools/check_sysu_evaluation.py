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
settings, which must agree to TOLERANCE (exit status 1 otherwise). Needs numpy and
scipy only (no torch).
"""

import contextlib
import importlib.util
import json
import os
import sys
import tempfile

from absl import flags
from scipy import io as scipy_io

from jsia_tf import cli
from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import files
from jsia_tf.data import layouts
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import report

FLAGS = flags.FLAGS
EVALUATOR = "tools/evaluation/sysu_mm01_python/evaluate_sysymm01.py"
SPLIT_DIR = "tools/evaluation/sysu_mm01_python/data_split"
# Their AP divides float32 ranks: about 1e-7 of rounding per query.
TOLERANCE = 1e-6
RANKS = (1, 10, 20)


def define_flags():
  """The tool's flags."""
  flags.DEFINE_string("authors_repo", None, "A clone of github.com/wangguanan/JSIA-ReID.")
  flags.DEFINE_string("features", None, "A features file (.npz) of a set in the real "
                      "SYSU-MM01 test set's shape.")
  flags.DEFINE_string("output_json", "", "Also write the table here as JSON.")
  flags.mark_flags_as_required(["authors_repo", "features"])


def load_evaluator(repo: str):
  """Their `evaluate_sysymm01` module, imported from `repo`."""
  missing = [p for p in (EVALUATOR, SPLIT_DIR) if not os.path.exists(os.path.join(repo, p))]
  if missing:
    raise errors.ConfigError(
        f"--authors_repo={repo}: not a clone of github.com/wangguanan/JSIA-ReID "
        f"(missing {missing[0]})")
  spec = importlib.util.spec_from_file_location("evaluate_sysymm01",
                                                os.path.join(repo, EVALUATOR))
  module = importlib.util.module_from_spec(spec)
  # Registered under its name: their multiprocessing pool pickles its functions.
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


@contextlib.contextmanager
def _cwd(path: str):
  """Their evaluator finds `data_split/` from the working directory."""
  before = os.getcwd()
  os.chdir(path)
  try:
    yield
  finally:
    os.chdir(before)


def theirs(evaluator, repo: str, feats: features_lib.FeatureSet):
  """{setting: {R1, R10, R20, mAP}} of their evaluation of `feats`."""
  perm_cells = scipy_io.loadmat(os.path.join(repo, SPLIT_DIR, "rand_perm_cam.mat"))[
      "rand_perm_cam"]
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for c, cam in enumerate(layouts.SYSU_CAMERAS):
      num_ids = max(perm_cells[c, 0].shape[0], int(feats.ids.max(initial=0)))
      scipy_io.savemat(os.path.join(tmp, f"feature_cam{cam}.mat"),
                       {"feature": protocols.feature_cam_cells(feats, cam, num_ids)})
    with _cwd(repo):
      for mode in protocols.SYSU_MODES:
        for shots in protocols.SYSU_SHOTS:
          cmc, mean_ap = evaluator.evaluate_sysymm01(tmp, mode, report.shot_name(shots))
          results[report.sysu_setting(mode, shots)] = {
              **{f"R{k}": float(cmc[k - 1]) for k in RANKS}, "mAP": float(mean_ap)}
  return results


def ours(path: str, feats: features_lib.FeatureSet):
  """{setting: {R1, R10, R20, mAP}} of `python -m jsia_tf.evaluate
  --features=PATH --perm_file=official` (`feats`: the file, loaded)."""
  settings = report.evaluate_features(
      [feats], config_lib.EvalConfig(features=(path,), perm_file="official"))["settings"]
  return {name: {m: s["mean"][m] for m in [f"R{k}" for k in RANKS] + ["mAP"]}
          for name, s in settings.items()}


def compare(repo: str, path: str):
  """Rows (setting, metric, ours, theirs, |difference|, ok) of both evaluations of
  the features file `path`."""
  evaluator = load_evaluator(repo)
  feats = features_lib.load(path)
  ours_by_setting = ours(path, feats)  # first: it names a file that does not fit
  theirs_by_setting = theirs(evaluator, os.path.abspath(repo), feats)
  rows = []
  for setting, metrics in theirs_by_setting.items():
    for metric, value in metrics.items():
      mine = ours_by_setting[setting][metric]
      diff = abs(mine - value)
      rows.append((setting, metric, mine, value, diff, bool(diff <= TOLERANCE)))
  return rows


def main(argv):
  """Entry point: flags -> both evaluations -> table (and JSON); exit 1 if a row is
  off."""
  del argv
  rows = compare(FLAGS.authors_repo, FLAGS.features)
  print(f"{'setting':28s}{'metric':>7s}{'jsia_tf':>12s}{'authors':>12s}{'|diff|':>10s}")
  for setting, metric, mine, value, diff, ok in rows:
    print(f"{setting:28s}{metric:>7s}{100 * mine:12.6f}{100 * value:12.6f}"
          f"{diff:10.1e}{'' if ok else '  OFF'}")
  print(f"(%, their official gallery draws; tolerance {TOLERANCE:g} absolute)")
  if FLAGS.output_json:
    record = json.dumps({"features": os.path.abspath(FLAGS.features),
                         "tolerance": TOLERANCE,
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
