"""The parity table's numbers (jsia_tf.parity), checked by hand, and the parity
tool's errors where torch is not installed (CI)."""

import importlib.util
import math

import numpy as np
import pytest

from jsia_tf import parity

from conftest import run_python


def test_tensor_row_by_hand():
  row = parity.tensor_row("output", "x", [[1.0, 2.0]], [[1.0, 2.5]],
                          reference=[[1.0, 2.0]])
  assert (row.max_abs, row.rel, row.scale) == (0.5, 0.2, 2.5)
  assert row.floor == pytest.approx(0.25)  # |2.5 - 2| / 2
  assert row.to_float64 == 0.0
  with pytest.raises(ValueError, match="x: jsia_tf's shape \\(2,\\) != the authors' \\(3,\\)"):
    parity.tensor_row("output", "x", [1.0, 2.0], [1.0, 2.0, 3.0])


def test_gradient_row_is_the_relative_norm_of_the_group():
  ours = [np.array([3.0, 0.0]), np.array([[0.0]])]
  theirs = [np.array([3.0, 4.0]), np.array([[0.0]])]
  row = parity.gradient_row("G", ours, theirs, reference=theirs)
  assert row.rel == pytest.approx(4.0 / 5.0)
  assert row.max_abs == 4.0 and row.scale == 5.0
  assert row.floor == 0.0 and row.to_float64 == pytest.approx(0.8)


@pytest.mark.parametrize("kind,rel,floor,to64,status", [
    ("output", 5e-5, math.nan, math.nan, "yes"),
    ("gradient", 2e-2, 9e-3, 3e-2, "float32"),  # float32 itself is off by 9e-3
    ("gradient", 2e-2, 9e-3, 0.2, "NO"),  # ours is far from the float64 result
    ("output", 3e-4, 5e-5, 3e-4, "NO"),  # their float32 is within the tolerance
    ("loss", 2e-2, 9e-3, 3e-2, "NO"),  # a loss term must match
])
def test_status(kind, rel, floor, to64, status):
  row = parity.Row(kind, "r", 0.0, rel, 1.0, floor, to64)
  assert row.status == status
  assert row.ok == (status != "NO")


def test_table_and_json_name_every_row_that_is_off():
  rows = [parity.Row("loss", "CE", 0.0, 1e-6, 1.0, 1e-7, 1e-7),
          parity.Row("gradient", "E_sl", 0.1, 2e-2, 5.0, 9e-3, 3e-2),
          parity.Row("loss", "triplet", 0.1, 1e-3, 5.0, 1e-7, 1e-3)]
  table = parity.format_table(rows)
  assert "1 of 3 rows within 0.0001 relative" in table
  assert "where float32 cannot match" in table and "E_sl" in table
  assert "1 rows FAIL: triplet" in table
  record = parity.to_json(rows, {"authors_commit": "abc"})
  assert record["all_ok"] is False and record["authors_commit"] == "abc"
  assert [r["status"] for r in record["rows"]] == ["yes", "float32", "NO"]


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
