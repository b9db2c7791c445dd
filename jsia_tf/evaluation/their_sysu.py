"""The SYSU-MM01 evaluation of the authors' code beside jsia_tf's, for the parity
tools.

Their `core/test.py` scores a model with
`tools/evaluation/sysu_mm01_python/evaluate_sysymm01.py` of their repository (written
by the SYSU-MM01 author): per camera a `feature_cam{c}.mat` cell array of each
identity's features, their `data_split/` (the official `test_id.mat`,
`test_id_indoor.mat`, `rand_perm_cam.mat`), cosine similarity, ten gallery draws.
`theirs` runs it from their clone, nothing copied; `ours` is `python -m
jsia_tf.evaluate --perm_file=official` on features in memory. Both give {setting:
{R1, R10, R20, mAP}} as fractions, for the four settings. Needs numpy and scipy,
not torch.
"""

import contextlib
import importlib.util
import os
import sys
import tempfile
from typing import Dict, List, Tuple

from scipy import io as scipy_io

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import report

EVALUATOR = "tools/evaluation/sysu_mm01_python/evaluate_sysymm01.py"
SPLIT_DIR = "tools/evaluation/sysu_mm01_python/data_split"
# Their AP divides float32 ranks: about 1e-7 of rounding per query.
TOLERANCE = 1e-6
RANKS = (1, 10, 20)
METRICS = tuple(f"R{k}" for k in RANKS) + ("mAP",)

Results = Dict[str, Dict[str, float]]


def load_evaluator(repo: str):
  """Their `evaluate_sysymm01` module, imported from their clone `repo`; a clone
  without it is a ConfigError naming the missing file."""
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


def theirs(evaluator, repo: str, feats: features_lib.FeatureSet) -> Results:
  """Their evaluation (`load_evaluator`) of `feats`, written per camera as their
  code reads it, in all four settings."""
  repo = os.path.abspath(repo)
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


def ours(feats: features_lib.FeatureSet, name: str) -> Results:
  """`python -m jsia_tf.evaluate --features=NAME --perm_file=official` on `feats`
  (the file `name`, already loaded, or features in memory that `name` describes),
  in all four settings."""
  settings = report.evaluate_features(
      [feats], config_lib.EvalConfig(features=(name,), perm_file="official"))["settings"]
  return {setting: {m: s["mean"][m] for m in METRICS} for setting, s in settings.items()}


def differences(mine: Results, their: Results) -> List[Tuple[str, str, float, float, float]]:
  """(setting, metric, ours, theirs, |ours - theirs|) of every number of `their`."""
  return [(setting, metric, mine[setting][metric], value, abs(mine[setting][metric] - value))
          for setting, metrics in their.items() for metric, value in metrics.items()]


def require_fit(feats: features_lib.FeatureSet, source: str) -> None:
  """A DataError naming `source` unless the official perm file fits `feats` (ids,
  cameras and per-(camera, id) image counts of the real test set): both
  evaluations draw their galleries from it."""
  try:
    report.gallery_draws("official", feats, protocols.SYSU_TRIALS)
  except errors.DataError as e:
    raise errors.DataError(f"{source}: {e}") from None
