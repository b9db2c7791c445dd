"""One run per workdir: workdir/run.lock, refused while its run lives, taken over
when its process is gone."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest

from jsia_tf import errors
from jsia_tf.training import experiment

from conftest import run_python


def _write_lock(workdir, **record):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, experiment.LOCK_FILE), "w") as f:
    json.dump({"host": socket.gethostname(), "started": "2026-11-25T09:00:00+00:00",
               "command": "python -m jsia_tf.train", **record}, f)


def _dead_pid():
  proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  return int(proc.stdout)


def test_a_second_run_is_refused_and_the_lock_goes_with_the_run(tmp_path):
  workdir = str(tmp_path / "run")
  with experiment.workdir_lock(workdir) as path:
    with open(path) as f:
      held = json.load(f)
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    with pytest.raises(errors.ConfigError,
                       match=f"in use by another run \\(pid {os.getpid()} on "):
      with experiment.workdir_lock(workdir):
        pass
  assert not os.path.exists(path)


@pytest.mark.parametrize("record,refused", [
    ({"pid": "dead"}, False),  # its process is gone: taken over
    ({"pid": 1, "host": "another-host"}, True),  # cannot be checked from here
])
def test_stale_and_foreign_locks(tmp_path, record, refused):
  workdir = str(tmp_path / "run")
  if record["pid"] == "dead":
    record = dict(record, pid=_dead_pid())
  _write_lock(workdir, **record)
  lines = []
  if refused:
    with pytest.raises(errors.ConfigError, match="another-host"):
      with experiment.workdir_lock(workdir, log=lines.append):
        pass
    return
  with experiment.workdir_lock(workdir, log=lines.append) as path:
    with open(path) as f:
      assert json.load(f)["pid"] == os.getpid()
  assert lines and lines[0].startswith(f"warning: taking over {path} from a run that is "
                                       f"gone (pid {record['pid']}")


def test_a_half_written_lock_is_taken_over(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / experiment.LOCK_FILE).write_text('{"pid": 12')
  lines = []
  with experiment.workdir_lock(str(workdir), log=lines.append):
    pass
  assert "taking over" in lines[0]


def test_an_unwritable_workdir_is_named(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(errors.ConfigError, match=f"--workdir={blocker}/run: cannot be created"):
    with experiment.workdir_lock(str(blocker / "run")):
      pass


def test_cli_refuses_a_workdir_in_use(sysu_dir, tmp_path):
  workdir = str(tmp_path / "busy")
  _write_lock(workdir, pid=os.getpid())  # this test's process: alive
  result = run_python("-m", "jsia_tf.train", "--preset=tiny", f"--data_dir={sysu_dir}",
                      f"--workdir={workdir}")
  assert result.returncode == 2
  assert result.stderr.splitlines()[-1].startswith(
      f"error: --workdir={workdir} is in use by another run (pid {os.getpid()} on ")
  assert not os.path.exists(os.path.join(workdir, "config.json"))


def _contend(workdir, rounds, barrier, results):
  """One of N processes: each round, take the round's lock at the same instant as
  the others, then hold it until every process has tried."""
  for r in range(rounds):
    barrier.wait()
    try:
      with experiment.workdir_lock(os.path.join(workdir, f"round{r}"), log=lambda m: None):
        results.put((r, "held"))
        barrier.wait()
    except errors.ConfigError:
      results.put((r, "refused"))
      barrier.wait()
    except Exception as e:  # pylint: disable=broad-except
      results.put((r, f"crashed: {e!r}"))
      barrier.wait()


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_processes_started_together_get_exactly_one_holder(tmp_path, stale):
  """N processes released by a barrier, many rounds, on a fresh workdir or on one
  with a dead run's lock: exactly one holds the lock every round, none crashes."""
  n, rounds = 4, 60
  workdir = str(tmp_path)
  if stale:
    dead = _dead_pid()
    for r in range(rounds):
      _write_lock(os.path.join(workdir, f"round{r}"), pid=dead)
  ctx = multiprocessing.get_context("spawn")
  barrier, results = ctx.Barrier(n), ctx.Queue()
  procs = [ctx.Process(target=_contend, args=(workdir, rounds, barrier, results))
           for _ in range(n)]
  for p in procs:
    p.start()
  outcomes = [results.get(timeout=300) for _ in range(n * rounds)]
  for p in procs:
    p.join(timeout=60)
    assert p.exitcode == 0
  per_round = {}
  for r, outcome in outcomes:
    per_round.setdefault(r, []).append(outcome)
  for r in range(rounds):
    assert sorted(per_round[r]) == ["held"] + ["refused"] * (n - 1), (r, per_round[r])
    assert not os.path.exists(os.path.join(workdir, f"round{r}", experiment.LOCK_FILE))
