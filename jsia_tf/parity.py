"""The numbers of tools/check_parity.py: differences between jsia_tf's tensors and
the authors' (numpy only; the torch side lives in the tool).

A tensor row: the max absolute difference and the max relative difference, taken
as max |ours - theirs| / max |theirs| (an element-wise ratio is meaningless where
theirs crosses zero). A gradient row (a parameter group): ||ours - theirs|| /
||theirs|| over the group's concatenated gradients.

Each row also carries float32's own limit: the same relative measure between their
float32 result and their step run in float64 (`floor`), and between ours and that
float64 result (`to_float64`). A row above the tolerance cannot match when their
own float32 result is farther than the tolerance from the float64 one: it is
"float32" if ours is within FLOAT32_FACTOR times that distance of the float64
result too (float32 errors of two correct implementations differ by small factors:
PyTorch's CPU BatchNorm accumulates its sums in double, TensorFlow in float32). Any
other row above the tolerance, and any loss row above it, is a failure.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

TOLERANCE = 1e-4
FLOAT32_FACTOR = 10.0


@dataclasses.dataclass
class Row:
  """One line of the parity table."""

  kind: str  # "output", "loss" or "gradient"
  name: str
  max_abs: float
  rel: float
  scale: float  # max |theirs| (tensors) or ||theirs|| (gradients)
  floor: float = float("nan")  # theirs (float32) against theirs in float64
  to_float64: float = float("nan")  # ours against theirs in float64
  note: str = ""

  @property
  def status(self) -> str:
    """"yes" within the tolerance; "float32" above it where float32 itself is
    (their float32 step is farther than the tolerance from its float64 run, and
    ours within FLOAT32_FACTOR times that); else "NO". A loss is "yes" or "NO"."""
    if self.rel <= TOLERANCE:
      return "yes"
    if (self.kind != "loss" and self.floor > TOLERANCE and
        self.to_float64 <= FLOAT32_FACTOR * self.floor):
      return "float32"
    return "NO"

  @property
  def ok(self) -> bool:
    return self.status != "NO"


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
  """A PyTorch image batch [B, C, H, W] in TensorFlow's layout [B, H, W, C]; other
  ranks unchanged ([B, C, 1, 1] style codes become [B, C])."""
  x = np.asarray(x)
  if x.ndim == 4 and x.shape[2:] == (1, 1):
    return x[:, :, 0, 0]
  return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _max_rel(a: np.ndarray, b: np.ndarray) -> Tuple[float, float, float]:
  """(max |a - b|, that over max |b|, max |b|)."""
  max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
  scale = float(np.max(np.abs(b))) if b.size else 0.0
  return max_abs, (max_abs / scale if scale else max_abs), scale


def tensor_row(kind: str, name: str, ours, theirs, reference=None, note: str = "") -> Row:
  """The row of two tensors of the same shape (theirs already in our layout);
  `reference`: their float64 result."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  if ours.shape != theirs.shape:
    raise ValueError(f"{name}: jsia_tf's shape {ours.shape} != the authors' {theirs.shape}")
  max_abs, rel, scale = _max_rel(ours, theirs)
  row = Row(kind, name, max_abs, rel, scale, note=note)
  if reference is not None:
    reference = np.asarray(reference, np.float64)
    row.floor, row.to_float64 = _max_rel(theirs, reference)[1], _max_rel(ours, reference)[1]
  return row


def _rel_norm(a: np.ndarray, b: np.ndarray) -> float:
  norm = float(np.linalg.norm(b))
  diff = float(np.linalg.norm(a - b))
  return diff / norm if norm else diff


def _flat(tensors: Sequence[np.ndarray]) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in tensors])


def gradient_row(name: str, ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray],
                 reference: Optional[Sequence[np.ndarray]] = None, note: str = "") -> Row:
  """The row of a parameter group: relative norm of the difference."""
  a, b = _flat(ours), _flat(theirs)
  row = Row("gradient", name, float(np.max(np.abs(a - b))), _rel_norm(a, b),
            float(np.linalg.norm(b)), note=note)
  if reference is not None:
    c = _flat(reference)
    row.floor, row.to_float64 = _rel_norm(b, c), _rel_norm(a, c)
  return row


def format_table(rows: List[Row]) -> str:
  """The table the tool prints: one line per row, and a verdict."""
  lines = [f"{'kind':<9}{'name':<30}{'max |diff|':>11}{'relative':>11}{'scale':>11}"
           f"{'fp32 floor':>11}{'to fp64':>11}  ok", "-" * 99]
  for r in rows:
    lines.append(f"{r.kind:<9}{r.name:<30}{r.max_abs:>11.2e}{r.rel:>11.2e}{r.scale:>11.2e}"
                 f"{r.floor:>11.2e}{r.to_float64:>11.2e}  {r.status}"
                 f"{'  ' + r.note if r.note else ''}")
  bad = [r.name for r in rows if not r.ok]
  limited = [r.name for r in rows if r.status == "float32"]
  lines.append("")
  lines.append(f"{len(rows) - len(bad) - len(limited)} of {len(rows)} rows within "
               f"{TOLERANCE:g} relative")
  if limited:
    lines.append(f"{len(limited)} rows above it where float32 cannot match (their own "
                 f"float32 step is farther than {TOLERANCE:g} from its float64 run): "
                 f"{', '.join(limited)}")
  if bad:
    lines.append(f"{len(bad)} rows FAIL: {', '.join(bad)}")
  return "\n".join(lines)


def to_json(rows: List[Row], extra: Dict) -> Dict:
  """The JSON record of a run: its settings (`extra`) and every row."""
  return {**extra, "tolerance": TOLERANCE, "all_ok": all(r.ok for r in rows),
          "rows": [dict(dataclasses.asdict(r), status=r.status) for r in rows]}
