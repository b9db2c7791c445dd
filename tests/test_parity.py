"""The parity table's numbers (jsia_tf.parity), checked by hand, and the parity
tool's errors where torch is not installed (CI)."""

import importlib.util
import math

import numpy as np
import pytest

from jsia_tf import errors
from jsia_tf import parity
from jsia_tf.data import layouts
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import their_sysu

from conftest import run_python


def test_tensor_row_by_hand():
  row = parity.tensor_row("step", "output", "x", [[1.0, 2.0]], [[1.0, 2.5]],
                          ours32=[[1.0, 2.0]], theirs32=[[1.0, 3.0]])
  assert (row.rel, row.scale) == (0.2, 2.5)  # |2 - 2.5| / 2.5
  assert row.rel32 == pytest.approx(1.0 / 3.0)
  assert row.floor == pytest.approx(0.2)  # their float32 against their float64
  assert row.status == "NO"
  with pytest.raises(ValueError, match="x: jsia_tf's shape \\(2,\\) != the authors' \\(3,\\)"):
    parity.tensor_row("step", "output", "x", [1.0, 2.0], [1.0, 2.0, 3.0])


def test_group_row_is_the_relative_norm_of_the_group():
  ours = [np.array([3.0, 0.0]), np.array([[0.0]])]
  theirs = [np.array([3.0, 4.0]), np.array([[0.0]])]
  row = parity.group_row("step", "gradient", "G", ours, theirs, theirs, theirs)
  assert row.rel == pytest.approx(4.0 / 5.0) and row.scale == 5.0
  assert row.rel32 == 0.0 and row.floor == 0.0
  with pytest.raises(ValueError, match="G: jsia_tf's group has 2 numbers, the authors' 3"):
    parity.group_row("step", "gradient", "G", [np.zeros(2)], [np.zeros(3)])
  assert parity.worst(["a", "b"], [np.ones(2), np.zeros(1)],
                      [np.ones(2), np.ones(1)]) == "worst b 1.0e+00"


@pytest.mark.parametrize("rel,rel32,status", [
    (5e-9, 3e-2, "yes"),  # float32 is informational
    (2e-8, 0.0, "NO"),  # float64 is the verdict
    (math.nan, 0.0, "NO"),  # a NaN never passes
])
def test_status(rel, rel32, status):
  row = parity.Row("step", "gradient", "r", rel, 1.0, rel32)
  assert row.status == status
  assert row.ok == (status == "yes")


def test_an_informational_row_has_no_verdict():
  row = parity.Row("their code against itself", "weights", "E_il", 3e-3, 1.0,
                   tolerance=math.inf)
  assert row.ok and row.status == "-"
  assert not parity.Row("s", "weights", "E_il", math.nan, 1.0, tolerance=math.inf).ok


def test_table_and_json_name_every_row_that_is_off():
  rows = [parity.Row("one joint step", "loss", "CE", 1e-12, 1.0, 1e-7, 1e-7),
          parity.Row("one joint step", "gradient", "E_sl", 1e-10, 5.0, 2e-2, 9e-3),
          parity.Row("joint trajectory, after step 2", "loss", "triplet", 1e-3, 5.0)]
  table = parity.format_table(rows)
  assert "== one joint step" in table and "== joint trajectory, after step 2" in table
  assert "2 of 3 rows within their tolerance (float64: 1e-08 relative)" in table
  assert "1 rows FAIL: joint trajectory, after step 2: triplet" in table
  record = parity.to_json(rows, {"authors_commit": "abc"})
  assert record["all_ok"] is False and record["authors_commit"] == "abc"
  assert [r["status"] for r in record["rows"]] == ["yes", "yes", "NO"]


def test_nchw_to_nhwc():
  x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
  np.testing.assert_array_equal(parity.nchw_to_nhwc(x)[1, 2, 3], x[1, :, 2, 3])
  assert parity.nchw_to_nhwc(np.zeros((2, 7, 1, 1))).shape == (2, 7)


def test_tool_errors(tmp_path):
  result = run_python("tools/check_parity.py", f"--authors_repo={tmp_path}")
  assert result.returncode == 2
  assert (f"error: --authors_repo={tmp_path}: not a clone of "
          f"github.com/wangguanan/JSIA-ReID (missing core/networks.py") in result.stderr
  for name in ("core/networks.py", "core/base.py", "core/train.py", "tools/__init__.py",
               "tools/transforms2.py", "tools/loss.py"):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text("")
  if importlib.util.find_spec("torch") is None:  # CI: the extra is not installed
    result = run_python("tools/check_parity.py", f"--authors_repo={tmp_path}")
    assert result.returncode == 2
    assert "needs torch: pip install -e .[parity]" in result.stderr
  result = run_python("tools/check_parity.py", f"--authors_repo={tmp_path}",
                      f"--weights={tmp_path / 'nope.pth'}")
  assert result.returncode == 2 and "nope.pth: file not found" in result.stderr
  result = run_python("tools/check_parity.py", f"--authors_repo={tmp_path}",
                      f"--sysu_dir={tmp_path / 'nowhere'}")
  assert result.returncode == 2 and (f"error: --sysu_dir={tmp_path / 'nowhere'}: no such "
                                     f"directory" in result.stderr)
  result = run_python("tools/check_parity.py", f"--authors_repo={tmp_path}", "--gen_rows=3")
  assert result.returncode == 2 and ("error: --gen_rows=3: expected whole identities of "
                                     "the re-id batch, a multiple of --batch_k=2 up to 8"
                                     in result.stderr)


def test_sysu_evaluation_tool_errors(tmp_path):
  result = run_python("tools/check_sysu_evaluation.py", f"--authors_repo={tmp_path}",
                      f"--features={tmp_path / 'f.npz'}")
  assert result.returncode == 2
  assert (f"error: --authors_repo={tmp_path}: not a clone of github.com/wangguanan/"
          f"JSIA-ReID (missing tools/evaluation/sysu_mm01_python/evaluate_sysymm01.py)"
          in result.stderr), result.stderr
  evaluator = tmp_path / "tools/evaluation/sysu_mm01_python"
  (evaluator / "data_split").mkdir(parents=True)
  (evaluator / "evaluate_sysymm01.py").write_text("")
  # Two images of one test identity: the official perm file's galleries do not fit.
  pid = int(protocols.read_ids(protocols.OFFICIAL_TEST_IDS)[0])
  features_lib.save(str(tmp_path / "f.npz"), features_lib.FeatureSet(
      np.eye(2, dtype=np.float32), ids=[pid, pid], cams=[1, 3], frames=[0, 0],
      modality=[0, 1]))
  result = run_python("tools/check_sysu_evaluation.py", f"--authors_repo={tmp_path}",
                      f"--features={tmp_path / 'f.npz'}")
  assert result.returncode == 2 and "error: " in result.stderr
  assert f"rand_perm_cam.mat does not fit the features: cam 1 id {pid} has" in \
      result.stderr, result.stderr


def test_our_side_of_their_evaluation_scores_identity_features_perfectly():
  """Features that are each identity's one-hot vector rank every true match first:
  R1, R10, R20 and mAP are 1 in all four settings."""
  _, rows = protocols.official_test_layout(protocols.OFFICIAL_SPLIT_DIR)
  ids = np.unique(rows[:, 0])
  feats = features_lib.FeatureSet(
      np.eye(len(ids))[np.searchsorted(ids, rows[:, 0])], ids=rows[:, 0], cams=rows[:, 1],
      frames=rows[:, 2], modality=np.isin(rows[:, 1], layouts.SYSU_IR_CAMERAS).astype(int))
  results = their_sysu.ours(feats, "one-hot features")
  assert sorted(results) == sorted(["all-search single-shot", "all-search multi-shot",
                                    "indoor-search single-shot", "indoor-search multi-shot"])
  for metrics in results.values():
    assert metrics == pytest.approx({"R1": 1.0, "R10": 1.0, "R20": 1.0, "mAP": 1.0})


def test_an_evaluation_set_the_official_perm_file_does_not_fit_is_named():
  pid = int(protocols.read_ids(protocols.OFFICIAL_TEST_IDS)[0])
  feats = features_lib.FeatureSet(np.eye(2), ids=[pid, pid], cams=[1, 3], frames=[0, 0],
                                  modality=[0, 1])
  with pytest.raises(errors.DataError, match=r"^--sysu_dir=D: .*rand_perm_cam.mat does "
                                             rf"not fit the features: cam 1 id {pid} has"):
    their_sysu.require_fit(feats, "--sysu_dir=D")


def test_a_perturbed_state_moves_every_float_tensor_by_the_relative_norm_asked():
  state = [{"w": np.array([[3.0, -4.0], [0.0, 12.0]]), "zero": np.zeros(3),
            "count": np.array(7, np.int64)}, {"b": np.array([2.0], np.float32)}]
  moved = parity.perturbed_state(state, 1e-3, np.random.default_rng(0))
  w = state[0]["w"]
  assert np.linalg.norm(moved[0]["w"] - w) / np.linalg.norm(w) == pytest.approx(1e-3,
                                                                                rel=1e-9)
  assert moved[0]["w"][1, 0] == 0.0  # a weight moves in proportion to its size
  np.testing.assert_array_equal(moved[0]["zero"], np.zeros(3))
  assert moved[0]["count"] == 7 and moved[0]["count"].dtype == np.int64
  assert moved[1]["b"].dtype == np.float32
  assert abs(float(moved[1]["b"][0]) / 2.0 - 1.0) == pytest.approx(1e-3, rel=1e-4)
  assert state[0]["w"][0, 0] == 3.0  # the input is not changed


def test_snapshots_give_back_what_was_put(tmp_path):
  store = parity.Snapshots(str(tmp_path))
  store.put(("joint", "ours", 0), ({"il": 1.5}, [{"w": np.arange(3.0)}]))
  store.put(("joint", "ours", 1), "second")
  report, state = store.get(("joint", "ours", 0))
  assert report == {"il": 1.5}
  np.testing.assert_array_equal(state[0]["w"], [0.0, 1.0, 2.0])
  assert store.get(("joint", "ours", 1)) == "second"
  with pytest.raises(KeyError):
    store.get(("joint", "theirs", 0))
