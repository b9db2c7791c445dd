"""A quiet console for the command-line entry points: TensorFlow's own log lines
(its C++ start-up notices, "failed call to cuInit", grappler's "remapper failed",
the Python INFO lines of its checkpoint writer) stay off stderr, so a run shows
our lines only and an `error:` line is the last thing printed.

TensorFlow 2.21 logs through absl's C++ logging before anything can configure it:
TF_CPP_MIN_LOG_LEVEL no longer silences those lines. So `quiet()` (called by an
entry point before TensorFlow is imported) puts a filter on file descriptor 2: a
thread passes every line through but those in the log formats of absl/TensorFlow,
which it keeps. `--verbosity` (absl's flag) on the command line turns the filter
into a pass-through and prints what it kept (`cli.run` calls `show_tensorflow_logs`).
"""

import atexit
import importlib.util
import os
import re
import sys
import threading
from typing import List, Optional

# "I0000 00:00:1795599652.197379   23944 port.cc:153] ..." (C++, absl) and
# "I1125 09:24:05.345517 139998777428864 functional_saver.py:440] ..." (Python, absl).
# Our own absl lines (progress, skipped files) name one of our source files and
# pass.
TF_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ (?P<source>[\w.\-/]+):\d+\] |"
    rb"(?:DEBUG|INFO|WARNING|ERROR):tensorflow:|"  # its Python logger, unformatted
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


# A TensorFlow log record can span lines (cpu_feature_guard's notice, a collective
# error listing tasks), written at once: the lines that follow a kept one in the
# same read of the pipe are kept too, up to the next log line or a line that starts
# like ours (our errors and warnings, absl's flag errors, a traceback).
_OURS = (b"error:", b"warning:", b"FATAL", b"Traceback", b"[warmup]", b"[joint]")


def our_sources() -> frozenset:
  """Basenames of this project's Python files (jsia_tf, flags, the running script's
  directory): the absl lines they log are ours."""
  dirs = [os.path.dirname(os.path.abspath(__file__))]
  spec = importlib.util.find_spec("flags")
  if spec and spec.submodule_search_locations:
    dirs += list(spec.submodule_search_locations)
  if sys.argv and sys.argv[0].endswith(".py"):
    dirs.append(os.path.dirname(os.path.abspath(sys.argv[0])))
  names = set()
  for d in dirs:
    for _, _, files in os.walk(d):
      names.update(f.encode() for f in files if f.endswith(".py"))
  return frozenset(names)


def _theirs(match: Optional["re.Match"], ours: frozenset) -> bool:
  """Whether a TF_LOG_LINE match is a line of TensorFlow's (or absl's) own."""
  if not match:
    return False
  source = match.group("source")
  return source is None or os.path.basename(source) not in ours


def is_tensorflow_line(line: bytes, ours: frozenset = frozenset()) -> bool:
  """A log line of TensorFlow's (or absl's) own, not one of ours."""
  return _theirs(TF_LOG_LINE.match(line), ours)


class _Filter:
  """The thread between fd 2 and the real stderr."""

  def __init__(self):
    self.ours = our_sources()
    self.kept: List[bytes] = []
    self.last_kept = False
    self.passthrough = False
    self.lock = threading.Lock()
    self.stderr = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    self.read = read
    self.thread = threading.Thread(target=self._run, name="console-filter", daemon=True)
    self.thread.start()

  def _emit(self, line: bytes) -> None:
    with self.lock:
      match = TF_LOG_LINE.match(line)
      tensorflow = _theirs(match, self.ours) or (
          self.last_kept and not match and not line.startswith(_OURS))
      self.last_kept = False
      if tensorflow and not self.passthrough:
        self.kept.append(line)
        self.last_kept = True
      else:
        os.write(self.stderr, line)

  def _run(self) -> None:
    pending = b""
    while True:
      chunk = os.read(self.read, 65536)
      if not chunk:
        break
      pending += chunk
      *lines, pending = pending.split(b"\n")
      with self.lock:
        self.last_kept = False  # a new read: a new write, not a continuation
      for line in lines:
        self._emit(line + b"\n")
    if pending:
      self._emit(pending)
    os.close(self.read)

  def show(self) -> None:
    """Pass everything from now on, after what was kept."""
    with self.lock:
      self.passthrough = True
      for line in self.kept:
        os.write(self.stderr, line)
      self.kept.clear()

  def close(self) -> None:
    """Restores fd 2 and drains the pipe (at exit: nothing is lost)."""
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(self.stderr, 2)  # closes the pipe's only writer: the thread sees EOF
    self.thread.join(timeout=5)


_FILTER: Optional[_Filter] = None


def quiet() -> None:
  """Keeps TensorFlow's log lines off stderr from now on (call before importing
  TensorFlow). Also lowers TensorFlow's C++ and Python log levels for the builds
  that honour them. Idempotent; a no-op where fd 2 cannot be redirected."""
  global _FILTER
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if _FILTER is not None:
    return
  try:
    _FILTER = _Filter()
  except OSError:
    return
  atexit.register(_FILTER.close)


def show_tensorflow_logs() -> None:
  """Lets TensorFlow's lines through (and prints those kept so far)."""
  if _FILTER is not None:
    _FILTER.show()


def kept_lines() -> List[str]:
  """TensorFlow's lines kept off the console so far (for tests and reports)."""
  if _FILTER is None:
    return []
  with _FILTER.lock:
    return [line.decode(errors="replace").rstrip("\n") for line in _FILTER.kept]
