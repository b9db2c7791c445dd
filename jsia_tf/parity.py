"""The numbers of tools/check_parity.py: differences between jsia_tf's tensors and
the authors' (numpy only; the torch side lives in the tool).

Both sides run every comparison twice: in float64, where rounding is about 1e-16
and any difference above TOLERANCE (1e-8) is a real one (the pass/fail column), and
in float32, as users train (informational: float32's rounding, amplified by a
ResNet-50's backward and by Adam's first steps, reaches 1e-2 on some gradients).
A third column, `floor`, is their own float32 result against their float64 one:
what float32 costs their code.

A tensor row: max |ours - theirs| / max |theirs| (an element-wise ratio is
meaningless where theirs crosses zero). A group row (a parameter group's
gradients or weights, a group of BN statistics): ||ours - theirs|| / ||theirs||
over the group's concatenated tensors. A loss or learning-rate row: |ours -
theirs| / |theirs|.
"""

import dataclasses
import math
import os
import pickle
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

TOLERANCE = 1e-8  # float64, relative
FEATURE_TOLERANCE_32 = 1e-5  # float32 test-time features (informational elsewhere)


@dataclasses.dataclass
class Row:
  """One line of the parity table: `rel` (float64, judged against `tolerance`),
  `rel32` and `floor` (float32, informational), `scale` (max |theirs| or
  ||theirs|| in float64)."""

  section: str  # "step", "trajectory", "warm-up", "lr", ...
  kind: str  # "output", "loss", "gradient", "weights", "BN", "lr"
  name: str
  rel: float
  scale: float
  rel32: float = math.nan
  floor: float = math.nan
  tolerance: float = TOLERANCE
  note: str = ""

  @property
  def ok(self) -> bool:
    """Within the tolerance (NaN is not)."""
    return bool(self.rel <= self.tolerance)

  @property
  def status(self) -> str:
    """"yes" or "NO"; "-" for an informational row (an infinite tolerance)."""
    if math.isinf(self.tolerance):
      return "-"
    return "yes" if self.ok else "NO"


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
  """A PyTorch image batch [B, C, H, W] in TensorFlow's layout [B, H, W, C]; other
  ranks unchanged ([B, C, 1, 1] style codes become [B, C])."""
  x = np.asarray(x)
  if x.ndim == 4 and x.shape[2:] == (1, 1):
    return x[:, :, 0, 0]
  return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def tensor_rel(ours, theirs) -> float:
  """max |ours - theirs| / max |theirs| (the difference itself where theirs is 0)."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  if ours.shape != theirs.shape:
    raise ValueError(f"jsia_tf's shape {ours.shape} != the authors' {theirs.shape}")
  if not ours.size:
    return 0.0
  diff, scale = float(np.max(np.abs(ours - theirs))), float(np.max(np.abs(theirs)))
  return diff / scale if scale else diff


def _flat(tensors: Sequence[np.ndarray]) -> np.ndarray:
  if not len(tensors):
    return np.zeros([0])
  return np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in tensors])


def group_rel(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> float:
  """||ours - theirs|| / ||theirs|| over the concatenated tensors of a group."""
  a, b = _flat(ours), _flat(theirs)
  if a.shape != b.shape:
    raise ValueError(f"jsia_tf's group has {a.size} numbers, the authors' {b.size}")
  norm, diff = float(np.linalg.norm(b)), float(np.linalg.norm(a - b))
  return diff / norm if norm else diff


def _columns(rel, name, ours64, theirs64, ours32, theirs32):
  """(float64 rel, float32 rel, their float32-vs-float64 floor) by the measure
  `rel`; a shape mismatch is a ValueError naming the row."""
  try:
    return (rel(ours64, theirs64),
            math.nan if ours32 is None else rel(ours32, theirs32),
            math.nan if theirs32 is None else rel(theirs32, theirs64))
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None


def tensor_row(section: str, kind: str, name: str, ours64, theirs64, ours32=None,
               theirs32=None, note: str = "", tolerance: float = TOLERANCE) -> Row:
  """The row of one tensor (or scalar) on both sides, float64 and float32."""
  rel, rel32, floor = _columns(tensor_rel, name, ours64, theirs64, ours32, theirs32)
  scale = float(np.max(np.abs(np.asarray(theirs64, np.float64)))) if np.size(theirs64) else 0.0
  return Row(section, kind, name, rel, scale, rel32, floor, tolerance, note)


def group_row(section: str, kind: str, name: str, ours64, theirs64, ours32=None,
              theirs32=None, note: str = "") -> Row:
  """The row of a group of tensors on both sides, float64 and float32."""
  rel, rel32, floor = _columns(group_rel, name, ours64, theirs64, ours32, theirs32)
  return Row(section, kind, name, rel, float(np.linalg.norm(_flat(theirs64))), rel32,
             floor, note=note)


def format_table(rows: List[Row]) -> str:
  """The table the tool prints, section by section, and a verdict."""
  lines = []
  section = None
  for r in rows:
    if r.section != section:
      section = r.section
      lines += ["", f"== {section}",
                f"{'kind':<9}{'name':<40}{'fp64 rel':>11}{'scale':>11}{'fp32 rel':>11}"
                f"{'fp32 floor':>11}  ok", "-" * 97]
    lines.append(f"{r.kind:<9}{r.name:<40}{r.rel:>11.2e}{r.scale:>11.2e}{r.rel32:>11.2e}"
                 f"{r.floor:>11.2e}  {r.status}{'  ' + r.note if r.note else ''}")
  bad = [f"{r.section}: {r.name}" for r in rows if not r.ok]
  lines.append("")
  lines.append(f"{len(rows) - len(bad)} of {len(rows)} rows within their tolerance "
               f"(float64: {TOLERANCE:g} relative)")
  if bad:
    lines.append(f"{len(bad)} rows FAIL: {'; '.join(bad)}")
  return "\n".join(lines)


def to_json(rows: List[Row], extra: Dict) -> Dict:
  """The JSON record of a run: its settings (`extra`) and every row."""
  return {**extra, "tolerance": TOLERANCE, "all_ok": all(r.ok for r in rows),
          "rows": [dict(dataclasses.asdict(r), status=r.status) for r in rows]}


def worst(names: Sequence[str], ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]
          ) -> Optional[str]:
  """The name whose tensor differs most (relative), for a group row's note."""
  if not names:
    return None
  rels = [tensor_rel(a, b) for a, b in zip(ours, theirs)]
  i = int(np.argmax(rels))
  return f"worst {names[i]} {rels[i]:.1e}"


def perturbed_state(states: Sequence[Dict[str, np.ndarray]], rel: float,
                    rng: np.random.Generator) -> List[Dict[str, np.ndarray]]:
  """`states` ([{name: tensor}], as a model's files) with every floating tensor moved
  in a random direction by exactly `rel` of its norm: w + rel * ||w|| * d / ||d||,
  d = w * n with n standard normal (so a weight moves in proportion to its size
  and zeros stay zero). Integer tensors (counters) are kept. The test-time rows use
  it to measure how far a network carries a weight difference of a given size."""
  out = []
  for state in states:
    out.append({})
    for name, w in state.items():
      w = np.asarray(w)
      if not np.issubdtype(w.dtype, np.floating):
        out[-1][name] = w
        continue
      d = w * rng.standard_normal(w.shape)
      norm_d, norm_w = float(np.linalg.norm(d)), float(np.linalg.norm(w))
      out[-1][name] = (w + (rel * norm_w / norm_d) * d).astype(w.dtype) if norm_d else w
  return out


class Snapshots:
  """Values kept on disk under `directory` (a temporary one) until asked for: the
  trajectory's weights after every step of both sides in both dtypes would not fit
  in memory with the models themselves."""

  def __init__(self, directory: str):
    self.directory = directory
    self._count = 0
    self._paths: Dict[Any, str] = {}

  def put(self, key, value) -> None:
    """Stores `value` (numpy arrays, dicts, lists, numbers) under `key`."""
    path = os.path.join(self.directory, f"{self._count}.pkl")
    self._count += 1
    with open(path, "wb") as f:
      pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    self._paths[key] = path

  def get(self, key):
    """The value stored under `key`; KeyError for a key never stored."""
    with open(self._paths[key], "rb") as f:
      return pickle.load(f)
