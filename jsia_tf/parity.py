"""The numbers of tools/check_parity.py: differences between jsia_tf's tensors and
the authors' (numpy only; the torch side lives in the tool).

A tensor row: the max absolute difference and the max relative difference, taken
as max |ours - theirs| / max |theirs| (an element-wise ratio is meaningless where
theirs crosses zero). A gradient row (a parameter group): ||ours - theirs|| /
||theirs|| over the group's concatenated gradients.
"""

import dataclasses
from typing import Dict, List, Sequence

import numpy as np

TOLERANCE = 1e-4


@dataclasses.dataclass
class Row:
  """One line of the parity table."""

  kind: str  # "output", "loss" or "gradient"
  name: str
  max_abs: float
  rel: float
  scale: float  # max |theirs| (tensors) or ||theirs|| (gradients)
  note: str = ""

  @property
  def ok(self) -> bool:
    return bool(self.rel <= TOLERANCE)


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
  """A PyTorch image batch [B, C, H, W] in TensorFlow's layout [B, H, W, C]; other
  ranks unchanged ([B, C, 1, 1] style codes become [B, C])."""
  x = np.asarray(x)
  if x.ndim == 4 and x.shape[2:] == (1, 1):
    return x[:, :, 0, 0]
  return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def tensor_row(kind: str, name: str, ours, theirs, note: str = "") -> Row:
  """The row of two tensors of the same shape (theirs already in our layout)."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  if ours.shape != theirs.shape:
    raise ValueError(f"{name}: jsia_tf's shape {ours.shape} != the authors' {theirs.shape}")
  max_abs = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
  scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
  return Row(kind, name, max_abs, max_abs / scale if scale else max_abs, scale, note)


def gradient_row(name: str, ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray],
                 worst: str = "") -> Row:
  """The row of a parameter group: relative norm of the difference."""
  a = np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in ours])
  b = np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in theirs])
  norm = float(np.linalg.norm(b))
  diff = float(np.linalg.norm(a - b))
  return Row("gradient", name, float(np.max(np.abs(a - b))), diff / norm if norm else diff,
             norm, worst)


def format_table(rows: List[Row]) -> str:
  """The table the tool prints: one line per row, and a verdict."""
  lines = [f"{'kind':<9}{'name':<34}{'max |diff|':>12}{'relative':>12}{'scale':>12}  ok",
           "-" * 83]
  for r in rows:
    lines.append(f"{r.kind:<9}{r.name:<34}{r.max_abs:>12.3e}{r.rel:>12.3e}{r.scale:>12.3e}"
                 f"  {'yes' if r.ok else 'NO'}{'  ' + r.note if r.note else ''}")
  bad = [r.name for r in rows if not r.ok]
  lines.append("")
  lines.append(f"all {len(rows)} rows within {TOLERANCE:g} relative" if not bad else
               f"{len(bad)} of {len(rows)} rows above {TOLERANCE:g}: {', '.join(bad)}")
  return "\n".join(lines)


def to_json(rows: List[Row], extra: Dict) -> Dict:
  """The JSON record of a run: its settings (`extra`) and every row."""
  return {**extra, "tolerance": TOLERANCE, "all_ok": all(r.ok for r in rows),
          "rows": [dict(dataclasses.asdict(r), ok=r.ok) for r in rows]}
