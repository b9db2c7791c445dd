"""Training survives interruption: SIGTERM / SIGINT finish the step, checkpoint and
exit 0; SIGKILL at any moment (checkpoints every step, so likely during a save)
loses nothing but the steps after the last complete checkpoint, and the resumed
run continues with the losses of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from jsia_tf.training import loop

from conftest import REPO, user_env

_FLAGS = ("--preset=tiny", "--batch_p=4", "--batch_k=2", "--gen_ids=2", "--log_every=1",
          "--warmup_steps=2", "--joint_steps=400", "--image_every=0", "--eval_every=0",
          "--deterministic")


def _start(sysu_dir, workdir, *extra):
  # One intra-op thread: with two, under the load of a parallel test run, one
  # process in about twenty drifted by 1e-7 (relative) from its twins at one step,
  # and the drift grew to 3e-5 by step 13. The same checkpoints and
  # resumes were bit-exact in 16 other processes: the drift is a reduction order,
  # not a resume error, and resume is what these tests check.
  return subprocess.Popen([sys.executable, "-m", "jsia_tf.train", *_FLAGS,
                           f"--data_dir={sysu_dir}", f"--workdir={workdir}", *extra],
                          cwd=REPO, env=user_env(TF_NUM_INTRAOP_THREADS="1"),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _rows(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def _wait_for_rows(proc, workdir, n, timeout=180):
  deadline = time.time() + timeout
  while len(_rows(workdir)) < n:
    assert proc.poll() is None, proc.communicate()
    assert time.time() < deadline, f"no {n} steps in {timeout} s"
    time.sleep(0.05)


def _finish(proc, timeout=120):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def test_stop_request_turns_sigint_and_sigterm_into_a_flag_once():
  """The first signal is a request (the loop checks it after its step); the second
  gets the previous handler (Ctrl-C twice interrupts at once)."""
  for sig in (signal.SIGINT, signal.SIGTERM):
    before = signal.getsignal(sig)
    with loop.StopRequest() as stop:
      assert not stop and signal.getsignal(sig) == stop._handle  # pylint: disable=protected-access
      os.kill(os.getpid(), sig)
      assert stop.signal_name == sig.name and stop
      assert signal.getsignal(sig) == before  # a second signal: the old handler
    assert signal.getsignal(sig) == before


def test_preemption_stop_runs_the_agreed_step_saves_once_then_returns_none(tmp_path):
  """multi_worker's stop is TensorFlow's PreemptionCheckpointHandler (here in its
  one-process mode): after SIGTERM the workers agree on the next step, run it,
  call `save` once and leave with None instead of TensorFlow's sys.exit(42); the
  previous SIGTERM handler comes back."""
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                                       str(tmp_path), max_to_keep=1)
  steps, saves = [], []
  step_fn = lambda: steps.append(len(steps)) or {"total": float(len(steps))}
  before = signal.getsignal(signal.SIGTERM)
  with loop.PreemptionStop(tf.distribute.get_strategy(), manager,
                           lambda: saves.append(len(steps))) as stop:
    assert signal.getsignal(signal.SIGTERM) != before  # TensorFlow's watcher
    assert [stop.run(step_fn) for _ in range(2)] == [{"total": 1.0}, {"total": 2.0}]
    assert not stop
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)  # Python runs the handler between bytecodes of the main thread
    assert stop.run(step_fn) == {"total": 3.0}  # the agreed step: the next one
    assert stop.run(step_fn) is None and stop and stop.signal_name == "SIGTERM"
  assert steps == [0, 1, 2] and saves == [3]
  assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_checkpoints_the_current_step_and_exits_0(sysu_dir, tmp_path):
  sig = signal.SIGTERM
  workdir = str(tmp_path / "run")
  proc = _start(sysu_dir, workdir, "--checkpoint_every=1000")
  _wait_for_rows(proc, workdir, 3)
  proc.send_signal(sig)
  code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  step = len(_rows(workdir))  # every finished step is logged (--log_every=1)
  assert f"stopped by {sig.name} at step {step} of 402" in out
  assert f"rerun the same command (--workdir={workdir}) to resume" in out
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(
      f"ckpt-{step}")
  assert not os.path.exists(os.path.join(workdir, "run.lock"))  # released


def test_sigkill_then_resume_gives_the_uninterrupted_losses(sysu_dir, tmp_path):
  stop = 14
  reference = str(tmp_path / "reference")
  code, _, err = _finish(_start(sysu_dir, reference, f"--stop_at_step={stop}"), 300)
  assert code == 0, err[-2000:]
  want = {r["step"]: r for r in _rows(reference)}

  workdir = str(tmp_path / "killed")
  proc = _start(sysu_dir, workdir, "--checkpoint_every=1")
  _wait_for_rows(proc, workdir, 6)
  proc.kill()  # SIGKILL: no handler runs, the lock stays behind
  proc.wait()
  killed_at = len(_rows(workdir))
  code, out, err = _finish(_start(sysu_dir, workdir, "--checkpoint_every=1",
                                  f"--stop_at_step={stop}"), 300)
  assert code == 0, err[-2000:]
  assert "warning: taking over" in out  # the killed run's lock
  resumed_from = int(out.split("resumed from ")[1].split(" at step ")[1].split()[0])
  assert 1 <= resumed_from <= killed_at
  rows = _rows(workdir)
  assert [r["step"] for r in rows] == list(range(1, stop + 1))  # no step twice
  for r in rows[resumed_from:]:
    for k, v in want[r["step"]].items():
      if k not in ("stage", "images_per_second"):
        assert r[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (r["step"], k)
