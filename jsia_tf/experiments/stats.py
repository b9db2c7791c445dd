"""Statistics over seeds: mean +- std per row and paired differences with a
t interval. Pure numpy / scipy."""

from typing import Dict, Optional, Sequence

import numpy as np
import scipy.stats


def summarize(values: Sequence[float]) -> Dict[str, Optional[float]]:
  """{"mean", "std", "n"} of `values`; std is the sample standard deviation
  (n - 1 in the denominator), None for one value."""
  x = np.asarray(values, np.float64)
  if x.size == 0:
    raise ValueError("no values to summarise")
  return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else None,
          "n": int(x.size)}


def paired_difference(a: Sequence[float], b: Sequence[float],
                      confidence: float = 0.95) -> Dict[str, Optional[float]]:
  """The mean of a_i - b_i over pairs i (the same seed in two rows) and its
  two-sided Student-t interval at `confidence`: {"mean", "low", "high", "n"};
  low / high are None for fewer than two pairs."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"paired differences need two equal-length lists, got {a.shape} "
                     f"and {b.shape}")
  d = a - b
  out = {"mean": float(d.mean()), "low": None, "high": None, "n": int(d.size)}
  if d.size > 1:
    half = scipy.stats.t.ppf(0.5 + confidence / 2.0, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    out["low"], out["high"] = float(d.mean() - half), float(d.mean() + half)
  return out


def excludes_zero(difference: Dict[str, Optional[float]]) -> bool:
  """Whether an interval of `paired_difference` lies wholly on one side of 0: the
  difference is larger than the run-to-run noise at that confidence."""
  low, high = difference["low"], difference["high"]
  return low is not None and (low > 0.0 or high < 0.0)
