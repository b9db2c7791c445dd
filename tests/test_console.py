"""Quiet by default: TensorFlow's own log lines stay off the console of every entry
point; --verbosity brings them back."""

import pathlib
import subprocess
import sys

from jsia_tf import console

from conftest import REPO, run_python

CPP = b"I0000 00:00:1795599652.197379   23944 port.cc:153] oneDNN custom operations are on."
PYTHON = (b"I1125 09:24:05.345517 139998777428864 functional_saver.py:440] Sharding "
          b"callback duration: 323 microseconds")
REMAPPER = (b"E1125 09:24:05.345517   23944 meta_optimizer.cc:967] remapper failed: "
            b"INVALID_ARGUMENT: fanout exist for missing node")


def test_tensorflow_lines_are_recognised_and_ours_are_not():
  ours = frozenset({b"extract.py"})
  for line in (CPP, PYTHON, REMAPPER,
               b"INFO:tensorflow:Collective all_reduce tensors: 1 all_reduces",
               b"WARNING: All log messages before absl::InitializeLog() is called are "
               b"written to STDERR"):
    assert console.is_tensorflow_line(line, ours), line
  for line in (b"I1125 09:24:05.345517 1399 extract.py:45] features: 10/20 images",
               b"error: --workdir=/x does not exist", b"Traceback (most recent call last):",
               b"[joint] step 20/600  total 1.0"):
    assert not console.is_tensorflow_line(line, ours), line
  assert b"console.py" in console.our_sources()


_SCRIPT = r"""
import os, sys, time
from jsia_tf import console
console.quiet()
os.write(2, %r + b"\n")
os.write(2, b"warning: ours, after a line of theirs\n")
os.write(2, %r + b"\nTo enable the following instructions: AVX2, rebuild\n")
time.sleep(0.3)  # the filter has read that record: the next write is a new one
os.write(2, b"FATAL Flags parsing error: flag --x=1: ours\n")
os.write(2, b"error: ours, after a record of theirs\n")
sys.stderr.write("a Python warning of ours\n")
import time
for _ in range(100):  # the filter thread reads the pipe asynchronously
  if len(console.kept_lines()) >= 3:
    break
  time.sleep(0.05)
print(len(console.kept_lines()), flush=True)
if sys.argv[1:] == ["show"]:
  time.sleep(0.3)  # the lines above are through the filter
  console.show_tensorflow_logs()
  os.write(2, %r + b"\n")
""" % (CPP, REMAPPER, PYTHON)


def _script(*args):
  return subprocess.run([sys.executable, "-c", _SCRIPT, *args], cwd=REPO,
                        capture_output=True, text=True, timeout=60)


def test_the_filter_keeps_tensorflow_lines_and_passes_ours():
  quiet = _script()
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stderr.splitlines() == ["warning: ours, after a line of theirs",
                                       "FATAL Flags parsing error: flag --x=1: ours",
                                       "error: ours, after a record of theirs",
                                       "a Python warning of ours"]
  assert quiet.stdout.split() == ["3"]  # the two log lines and the continuation
  shown = _script("show")
  lines = shown.stderr.splitlines()
  # What was kept is printed when the filter opens, then everything passes.
  assert lines[:4] == ["warning: ours, after a line of theirs",
                       "FATAL Flags parsing error: flag --x=1: ours",
                       "error: ours, after a record of theirs", "a Python warning of ours"]
  assert lines[4:] == [CPP.decode(), REMAPPER.decode(),
                       "To enable the following instructions: AVX2, rebuild",
                       PYTHON.decode()]


def test_an_error_is_the_only_line_and_verbosity_shows_tensorflow():
  result = run_python("-m", "jsia_tf.export", "--workdir=/nonexistent/run")
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      "error: --workdir=/nonexistent/run does not exist: expected a training workdir "
      "or a checkpoint prefix such as WORKDIR/checkpoints/ckpt-500 (the file "
      "ckpt-500.index)"]
  verbose = run_python("-m", "jsia_tf.export", "--workdir=/nonexistent/run",
                       "--verbosity=0")
  lines = verbose.stderr.splitlines()
  assert any(console.is_tensorflow_line(line.encode()) for line in lines), lines
  assert lines[-1].startswith("error: --workdir=/nonexistent/run does not exist")


_FAILED_COLLECTIVE = r"""
import multiprocessing.pool
import tensorflow as tf
from jsia_tf import cli, errors

def all_reduce():
  # What TensorFlow's eager all-reduce does: a thread pool, and a collective that
  # fails inside its map, which leaves the pool in this frame.
  pool = multiprocessing.pool.ThreadPool(2)
  def reduce(_):
    raise tf.errors.UnavailableError(None, None, "Collective ops is aborted")
  pool.map(reduce, [0, 1])
  pool.close()

def main(argv):
  try:
    all_reduce()
  except tf.errors.UnavailableError:
    raise errors.TrainingError("step 2: the workers' collective failed") from None

cli.run(main)
"""


def test_an_error_from_a_failed_collective_is_the_last_line():
  """The error line ends stderr: what the failed call held is finalised before the
  process exits, not in the interpreter's teardown (where a thread pool's pipe is
  closed and it prints a traceback)."""
  result = subprocess.run([sys.executable, "-c", _FAILED_COLLECTIVE], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  # This script keeps TensorFlow's log lines (no console.quiet) to show its stderr.
  assert result.stderr.splitlines()[-1] == "error: step 2: the workers' collective failed"
  assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def _entry_points():
  """Every entry point (a file that ends in `cli.run(main)`), as python arguments."""
  root, found = pathlib.Path(REPO), []
  for path in sorted(root.glob("jsia_tf/**/*.py")) + sorted(root.glob("tools/*.py")):
    if "cli.run(main)" in path.read_text():
      rel = path.relative_to(root)
      found.append(("-m", ".".join(rel.with_suffix("").parts))
                   if rel.parts[0] == "jsia_tf" else (str(rel),))
  return found


def test_a_bad_flag_is_answered_before_tensorflow_loads():
  """Every entry point parses its flags and builds its config without TensorFlow,
  so a bad flag costs a user no wait for it to load (`-X importtime` lists every
  module a process imports)."""
  entries = _entry_points()
  assert len(entries) >= 10 and ("-m", "jsia_tf.train") in entries
  for args in entries:
    result = run_python("-X", "importtime", *args, "--no_such_flag=1")
    assert result.returncode != 0 and "no_such_flag" in result.stderr, (args, result.stderr[-500:])
    loaded = [line for line in result.stderr.splitlines()
              if line.startswith("import time:") and line.split("|")[-1].strip() in
              ("tensorflow", "keras")]
    assert not loaded, (args, loaded)
