"""Progress lines of long work that is not a training step loop (which has its own,
`training.loop`): embedding, rendering, generating."""

import time
from typing import Callable


class Progress:
  """Logs `what: done/total unit (rate unit/s, ETA s)` at most once per `every`
  seconds, and always when the work is done."""

  def __init__(self, total: int, what: str, log: Callable[[str], None],
               unit: str = "images", every: float = 10.0):
    self.total, self.what, self.log, self.unit, self.every = total, what, log, unit, every
    self.start = self.last = time.time()

  def update(self, done: int) -> None:
    """Reports `done` of the total (logged when due)."""
    now = time.time()
    if now - self.last < self.every and done < self.total:
      return
    rate = done / max(now - self.start, 1e-9)
    self.log(f"{self.what}: {done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s, "
             f"ETA {(self.total - done) / max(rate, 1e-9):.0f} s)")
    self.last = now
