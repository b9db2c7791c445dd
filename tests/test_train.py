"""Training: the tiny preset end to end, resume, replicas, schedules and bad input."""

import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import console
from jsia_tf import errors
from jsia_tf.evaluation import extract
from jsia_tf.evaluation import features as features_lib
from jsia_tf.serving import extractor as extractor_lib
from jsia_tf.training import checkpoints
from jsia_tf.training import experiment
from jsia_tf.training import loop
from jsia_tf.training import trainer as trainer_lib

from conftest import REPO
from conftest import built_once
from conftest import run_python
from conftest import train_config_from_argv
from conftest import user_env


def _cfg(data_dir, workdir, **train):
  """The tiny preset on the tiny SYSU set: P=4 identities x K=2 images."""
  model = config_lib.model_config("tiny")
  data = config_lib.DataConfig(data_dir=data_dir, image_height=model.image_height,
                               image_width=model.image_width, batch_p=4, batch_k=2)
  defaults = dict(workdir=str(workdir), warmup_steps=2, joint_steps=2, gen_ids=2,
                  log_every=1, image_every=0, eval_every=0)
  return experiment.ExperimentConfig(data, model, config_lib.LossWeights(),
                                     config_lib.TrainConfig(**{**defaults, **train}))


def _metrics(workdir):
  with open(os.path.join(workdir, loop.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def test_unseen_partners_pair_different_identities():
  partner = trainer_lib.unseen_partners(4, 2)
  np.testing.assert_array_equal(partner, [2, 3, 0, 1, 6, 7, 4, 5])
  # Odd: the last identity mixes with the first.
  np.testing.assert_array_equal(trainer_lib.unseen_partners(3, 1), [1, 0, 0])


def test_schedule_stages_and_lr_decay():
  t = config_lib.TrainConfig(warmup_steps=10, joint_steps=100)
  assert [t.stage(s) for s in (0, 9, 10)] == ["warmup", "warmup", "joint"]
  assert t.lr_factor(69) == 1.0 and t.lr_factor(70) == pytest.approx(0.1)


def test_tiny_end_to_end(sysu_dir, tmp_path):
  """Data -> train (both stages) -> checkpoint -> TensorBoard -> evaluation."""
  workdir = tmp_path / "run"
  # A higher F lr than the paper's, so that 24 tiny joint steps show learning.
  cfg = _cfg(sysu_dir, workdir, warmup_steps=8, joint_steps=24, image_every=32,
             eval_every=16, checkpoint_every=16, lr_f=2e-3)
  result = loop.run(cfg, log=lambda _: None)
  assert result["step"] == 32
  rows = _metrics(workdir)
  assert [r["step"] for r in rows] == list(range(1, 33))
  assert [r["stage"] for r in rows] == ["warmup"] * 8 + ["joint"] * 24
  assert all(np.isfinite(v) for r in rows for k, v in r.items() if k != "stage")
  assert "id" not in rows[0] and "id" in rows[8]  # re-id terms in the joint stage only
  # A fixed-seed run learns: reconstruction and cycle fall over the run; the re-id
  # term and the total (which gains the re-id terms at the stage switch) fall over
  # the joint stage.
  mean = lambda part, term: np.mean([r[term] for r in part])
  for term in ("recon", "cycle"):
    assert mean(rows[-4:], term) < mean(rows[:4], term), term
  for term in ("id", "total"):
    assert mean(rows[-8:], term) < mean(rows[8:16], term), term
  # The lr decays after 60% of the joint stage.
  assert rows[-1]["lr_F"] == pytest.approx(0.1 * rows[8]["lr_F"])
  # Checkpoints, the saved config and the final evaluation.
  assert tf.train.latest_checkpoint(workdir / "checkpoints").endswith("ckpt-32")
  assert config_lib.load(experiment.ExperimentConfig, workdir / "config.json") == cfg
  report = json.load(open(workdir / "eval" / "report.json"))
  assert set(report["settings"]) == {"all-search single-shot", "all-search multi-shot",
                                     "indoor-search single-shot",
                                     "indoor-search multi-shot"}
  assert report["experiment"]["train"]["workdir"] == str(workdir)
  assert os.path.isfile(workdir / "eval" / "features.npz")
  # TensorBoard: losses, lrs, images/s, image grids, the interpolation strip, eval.
  tags = set()
  for event_file in (workdir / "tensorboard").iterdir():
    for event in tf.compat.v1.train.summary_iterator(str(event_file)):
      tags.update(v.tag for v in event.summary.value)
  for tag in ("loss/total", "loss/recon", "loss/id", "lr/F", "lr/G", "lr/Dis",
              "images_per_second", "V/interpolation alpha 0 -> 1", "eval/R1", "eval/mAP",
              "eval/mINP",
              # L_id's parts, the stripe CE, training accuracy, each discriminator
              "loss/id_ce_rgb", "loss/id_ce_ir", "loss/id_triplet", "loss/id_stripe_ce",
              "accuracy/rgb", "accuracy/ir", "loss/dis_rgb", "loss/dis_ir"):
    assert tag in tags, tag
  # metrics.jsonl holds the same numbers; training accuracy rises in the joint stage.
  assert {"id_ce_rgb", "id_triplet", "acc_rgb", "acc_ir", "dis_rgb"} <= set(rows[-1])
  assert mean(rows[-8:], "acc_rgb") > mean(rows[8:16], "acc_rgb")
  assert any(t.startswith("G/rgb") for t in tags) and any(t.startswith("G/ir") for t in tags)


def test_resume_continues_exactly(sysu_dir, tmp_path):
  """4 steps at once == 2 steps, stop, resume to 4 (deterministic ops): the same
  losses and the same weights; the step counter and optimizer state continue."""
  whole = _cfg(sysu_dir, tmp_path / "whole", deterministic=True)
  loop.run(whole, log=lambda _: None)
  split = _cfg(sysu_dir, tmp_path / "split", deterministic=True, stop_at_step=2)
  first = loop.run(split, log=lambda _: None)
  assert first["step"] == 2 and first["report"] is None
  lines = []
  second = loop.run(dataclasses.replace(split, train=dataclasses.replace(
      split.train, stop_at_step=0)), log=lines.append)
  assert second["step"] == 4
  assert any("resumed from" in line and "at step 2" in line for line in lines)
  a, b = _metrics(tmp_path / "whole"), _metrics(tmp_path / "split")
  assert [r["step"] for r in b] == [1, 2, 3, 4]
  for ra, rb in zip(a, b):
    for k in ra:
      if k not in ("stage", "images_per_second"):
        assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-6), (ra["step"], k)
  readers = [tf.train.load_checkpoint(str(tmp_path / name / "checkpoints"))
             for name in ("whole", "split")]
  names = [n for n, _ in tf.train.list_variables(str(tmp_path / "whole" / "checkpoints"))
           if "OPTIMIZER_SLOT" in n or "optimizer_F" in n or "model" in n]
  assert len(names) > 50
  for name in names:
    np.testing.assert_allclose(readers[1].get_tensor(name), readers[0].get_tensor(name),
                               rtol=1e-5, atol=1e-6, err_msg=name)


# Two joint steps with G on every identity (--gen_ids = P): then each replica's share
# of the batch is exactly a slice of the single replica's, and the losses must agree.
_REPLICA_RUN = dict(warmup_steps=0, joint_steps=2, gen_ids=4)
_TERMS = ("total", "dis", "gan", "recon", "cycle", "code", "v", "id", "il", "lr", "ui")


@pytest.fixture(scope="module")
def one_replica(sysu_dir, tmp_path_factory):
  """The metrics of the reference run on a single replica, and its config."""
  def config(workdir):
    return _cfg(sysu_dir, workdir, **_REPLICA_RUN)
  workdir = built_once(tmp_path_factory, "one_replica",
                       lambda path: loop.run(config(path), log=lambda _: None))
  return _metrics(workdir), config(workdir)


def _assert_same_losses(got, want):
  for step in range(2):
    for k in _TERMS:
      assert got[step][k] == pytest.approx(want[step][k], rel=1e-4, abs=1e-6), (step, k)


def _assert_half_precision_losses(got, want):
  """The first step's losses of a half-precision run are float32's to 2 %."""
  for k in _TERMS:
    assert got[0][k] == pytest.approx(want[0][k], rel=2e-2, abs=1e-3), k


def test_mirrored_two_cpus_agrees_with_one_replica(sysu_dir, tmp_path, one_replica):
  """Steps 1-2 of the joint stage on 2 logical CPUs (sync BN, gathered triplet
  mining, sliced random draws) give the single replica's losses."""
  cfg = _cfg(sysu_dir, tmp_path / "two", strategy="mirrored", num_cpu_devices=2,
             **_REPLICA_RUN)
  loop.run(cfg, log=lambda _: None)
  _assert_same_losses(_metrics(tmp_path / "two"), one_replica[0])


def test_jit_compile_gives_the_uncompiled_losses(sysu_dir, tmp_path, one_replica):
  """--jit_compile (XLA) is a speed switch only: the random draws are made outside
  the compiled step, so steps 1-2 give the uncompiled run's losses; it runs with
  bfloat16 too. In a fresh process: op determinism, once enabled by another test,
  stays on, and XLA has no deterministic kernels for some gradients (refused, see
  test_cli_bad_inputs)."""
  want, ref_cfg = one_replica
  runs = {}
  for policy in ("", "bfloat16"):
    workdir = tmp_path / f"jit{policy}"
    result = _train_cli(f"--data_dir={sysu_dir}", "--batch_p=4", "--batch_k=2",
                        "--warmup_steps=0", "--joint_steps=2", "--gen_ids=4",
                        "--image_every=0", "--eval_every=0", "--jit_compile",
                        f"--mixed_precision={policy}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    # Quiet by default: none of TensorFlow's own lines (XLA, grappler, the
    # checkpoint writer's INFO) reach the console.
    noise = [line for line in result.stderr.splitlines()
             if console.is_tensorflow_line(line.encode(), console.our_sources())]
    assert not noise, noise[:5]
    saved = config_lib.load(experiment.ExperimentConfig, workdir / "config.json")
    assert saved == dataclasses.replace(ref_cfg, train=dataclasses.replace(
        ref_cfg.train, workdir=str(workdir), jit_compile=True, mixed_precision=policy))
    runs[policy] = _metrics(workdir)
  _assert_same_losses(runs[""], want)
  # XLA with half precision too (the resizes' gradients must agree in dtype).
  _assert_half_precision_losses(runs["bfloat16"], want)


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_mixed_precision_matches_float32_and_keeps_float32_weights(
    sysu_dir, tmp_path, one_replica, policy):
  """--mixed_precision: half-precision compute, float32 weights and losses. The first
  step's losses are float32's to half precision, training stays finite, float16
  reports each optimizer's loss scale, and the checkpoint (float32) evaluates in
  float32 to the run's own half-precision features."""
  cfg = _cfg(sysu_dir, tmp_path / "run", mixed_precision=policy, **_REPLICA_RUN)
  result = loop.run(cfg, log=lambda _: None)
  assert keras.mixed_precision.global_policy().name == "float32"  # restored
  got, want = _metrics(cfg.train.workdir), one_replica[0]
  _assert_half_precision_losses(got, want)
  for k in _TERMS:
    assert np.isfinite(got[-1][k]), k
  # Not float32 in disguise: half precision moves the losses.
  assert got[0]["total"] != pytest.approx(want[0]["total"], rel=1e-6)
  scales = {k: v for k, v in got[-1].items() if k.startswith("loss_scale_")}
  if policy == "float16":
    assert set(scales) == {"loss_scale_G", "loss_scale_Dis", "loss_scale_F"}
    assert all(v >= 1 and np.log2(v) == int(np.log2(v)) for v in scales.values())
  else:
    assert not scales
  reader = tf.train.load_checkpoint(trainer_lib.checkpoint_dir(cfg.train.workdir))
  model_dtypes = {name: dtype for name, dtype in reader.get_variable_to_dtype_map().items()
                  if name.startswith("model/") and dtype.is_floating}
  assert model_dtypes and set(model_dtypes.values()) == {tf.float32}
  trained = features_lib.load(os.path.join(cfg.train.workdir, "eval", "features.npz"))
  feats = extract.extract_test_features(
      extractor_lib.restore(cfg.train.workdir).extractor.embed, cfg.data)
  cosine = np.sum(feats.features * trained.features, axis=1)
  assert cosine.min() > 0.99 and result["report"] is not None


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


_MULTI_WORKER_FLAGS = ("--preset=tiny", "--batch_p=4", "--batch_k=2", "--warmup_steps=0",
                       "--gen_ids=4", "--strategy=multi_worker", "--log_every=1",
                       "--image_every=0", "--eval_every=0")


class _Workers:
  """Two `jsia_tf.train` worker processes on 127.0.0.1 (TF_CONFIG), each with
  its stdout and stderr in files (a worker blocked on a full pipe would stall the
  collectives)."""

  def __init__(self, tmp_path, tag, *flags):
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    self.procs, self._files = [], []
    for index in range(2):
      env = user_env(TF_CONFIG=json.dumps({"cluster": {"worker": hosts},
                                           "task": {"type": "worker", "index": index}}))
      files = (open(tmp_path / f"{tag}.out{index}", "w+"),
               open(tmp_path / f"{tag}.err{index}", "w+"))
      self._files.append(files)
      self.procs.append(subprocess.Popen(
          [sys.executable, "-m", "jsia_tf.train", *_MULTI_WORKER_FLAGS, *flags], cwd=REPO,
          env=env, text=True, stdout=files[0], stderr=files[1]))

  def wait(self, timeout):
    """Waits up to `timeout` s for each, then kills what is left (return code -9).
    Returns [(returncode, stdout, stderr)]."""
    for p in self.procs:
      try:
        p.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        pass
    for p in self.procs:
      p.kill()
      p.wait()
    results = []
    for p, files in zip(self.procs, self._files):
      for f in files:
        f.seek(0)
      results.append((p.returncode, files[0].read(), files[1].read()))
    return results


def test_multi_worker_two_processes_agree_with_one_replica(sysu_dir, tmp_path,
                                                           one_replica):
  """Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy, one CPU each)
  train the same two steps as one replica, with the same losses; only the chief
  keeps checkpoints and evaluates."""
  want, ref_cfg = one_replica
  workdir = tmp_path / "mw"
  outputs = _Workers(tmp_path, "run", f"--data_dir={sysu_dir}", "--joint_steps=2",
                     f"--workdir={workdir}").wait(timeout=400)
  for code, _, err in outputs:
    assert code == 0, err[-3000:]
  assert "2 replica(s) (multi_worker)" in outputs[0][1]
  saved = config_lib.load(experiment.ExperimentConfig, workdir / "config.json")
  assert saved == dataclasses.replace(ref_cfg, train=dataclasses.replace(
      ref_cfg.train, workdir=str(workdir), strategy="multi_worker")), \
      "the CLI run must be the reference's experiment"
  _assert_same_losses(_metrics(workdir), want)
  assert "final evaluation" in outputs[0][1] and "final evaluation" not in outputs[1][1]
  assert tf.train.latest_checkpoint(workdir / "checkpoints").endswith("ckpt-2")
  assert not [n for n in os.listdir(workdir) if n.startswith(".worker")]


# Seconds without heartbeat before a worker counts as dead, in the tests below. A
# killed worker is seen from 7 s (a collective's connection fails) to this timeout
# (it was not in one); a hung one only after it, give or take the polling.
_WORKER_TIMEOUT = 15


def _wait_for_rows(workdir, workers, rows, timeout=300):
  """Waits until metrics.jsonl has `rows` complete rows (worker 0 must live)."""
  deadline = time.time() + timeout
  path = workdir / loop.METRICS_FILE
  while not (path.exists() and path.read_text().count("\n") >= rows):
    assert time.time() < deadline and workers.procs[0].poll() is None, f"no {rows} rows"
    time.sleep(0.1)


def _assert_dead_worker_error(stderr: str):
  """One error line naming task worker:1 ends stderr, and no TensorFlow line."""
  lines = stderr.splitlines()
  assert lines[-1].startswith("error: step ") and "task worker:1 of TF_CONFIG" in lines[-1]
  assert not [line for line in lines
              if console.is_tensorflow_line(line.encode(), console.our_sources())]


# One xdist worker runs the two tests that time a worker's death (each starts two
# training processes): side by side they would load the machine past their bounds.
@pytest.mark.xdist_group("worker_timeout")
def test_sigterm_to_one_worker_checkpoints_all_and_both_resume(sysu_dir, tmp_path):
  """multi_worker: SIGTERM to worker 1 after its first step; TensorFlow's preemption
  handler has both workers finish an agreed step and save it; both exit 0 saying
  how to resume; the same command on both resumes at that step (worker 1 too, from
  the chief's checkpoint). Then worker 1 is killed: worker 0 stops within a bound
  set by --worker_timeout, with an error naming it."""
  workdir = tmp_path / "mw"
  flags = (f"--data_dir={sysu_dir}", "--joint_steps=300", f"--workdir={workdir}",
           f"--worker_timeout={_WORKER_TIMEOUT}")
  workers = _Workers(tmp_path, "first", *flags)
  _wait_for_rows(workdir, workers, 1)
  workers.procs[1].send_signal(signal.SIGTERM)
  outputs = workers.wait(timeout=120)
  for code, _, err in outputs:
    assert code == 0, err[-3000:]
  stopped = [re.search(r"stopped by SIGTERM at step (\d+) of 300", out)
             for _, out, _ in outputs]
  assert all(stopped), [out[-500:] for _, out, _ in outputs]
  step = int(stopped[0].group(1))
  assert int(stopped[1].group(1)) == step
  assert "rerun the same command on every worker" in outputs[0][1]
  assert tf.train.latest_checkpoint(workdir / "checkpoints").endswith(f"ckpt-{step}")
  assert [row["step"] for row in _metrics(workdir)] == list(range(1, step + 1))

  workers = _Workers(tmp_path, "again", *flags)
  try:
    _wait_for_rows(workdir, workers, step + 2)
    workers.procs[1].kill()
    killed = time.time()
    workers.procs[0].wait(timeout=150)
    waited = time.time() - killed
  finally:
    outputs = workers.wait(timeout=1)
  for _, out, _ in outputs:
    assert f"at step {step} (joint stage)" in out  # both resumed there
  assert _metrics(workdir)[step]["step"] == step + 1
  assert outputs[0][0] == 2 and waited < 3 * _WORKER_TIMEOUT + 60, (
      waited, outputs[0][2][-500:])
  _assert_dead_worker_error(outputs[0][2])


@pytest.mark.xdist_group("worker_timeout")
def test_a_hung_worker_stops_the_others_with_an_error_naming_it(sysu_dir, tmp_path):
  """multi_worker: worker 1 is stopped (SIGSTOP: it hangs with its connections open,
  so only its missing heartbeats tell) after step 1; worker 0 does not wait for
  ever: it stops within a bound set by --worker_timeout, and not long before it,
  with one error line that names task worker:1."""
  workdir = tmp_path / "mw"
  timeout = _WORKER_TIMEOUT
  workers = _Workers(tmp_path, "run", f"--data_dir={sysu_dir}", "--joint_steps=300",
                     f"--workdir={workdir}", f"--worker_timeout={timeout}")
  try:
    _wait_for_rows(workdir, workers, 1)
    workers.procs[1].send_signal(signal.SIGSTOP)
    sent = time.time()
    workers.procs[0].wait(timeout=150)
    waited = time.time() - sent
  finally:
    outputs = workers.wait(timeout=1)
  # Heartbeats are checked periodically, and a loaded machine answers late:
  # measured 15-63 s (timeouts of 15-60 s).
  assert outputs[0][0] == 2 and timeout / 2 < waited < 3 * timeout + 60, (
      waited, outputs[0][2][-500:])
  _assert_dead_worker_error(outputs[0][2])


def test_check_finite_names_term_step_and_no_checkpoint(tmp_path):
  with pytest.raises(errors.TrainingError, match=r"loss term 'recon' is nan at step 7: "
                                                 r".* is none \(none was written yet\)"):
    loop._check_finite({"total": 1.0, "recon": float("nan")}, 7, str(tmp_path))


def test_weights_gone_non_finite_are_never_saved(sysu_dir, tmp_path, monkeypatch):
  """The losses of step 2 are finite but its update leaves NaN in a weight: the
  checkpoint of step 2 is not written, and the error names ckpt-1, checked finite."""
  original = trainer_lib.Trainer.train_step

  def poisoned_step(self, batch, step):
    values = original(self, batch, step)
    if step == 1:  # the second step
      weight = self.model.F.trainable_variables[0]
      weight.assign(tf.fill(weight.shape, float("nan")))
    return values

  monkeypatch.setattr(trainer_lib.Trainer, "train_step", poisoned_step)
  cfg = _cfg(sysu_dir, tmp_path / "w", checkpoint_every=1)
  ckpt_1 = os.path.join(str(tmp_path / "w"), "checkpoints", "ckpt-1")
  with pytest.raises(errors.TrainingError,
                     match=r"1 weight\(s\) hold NaN or Inf \(.*\) at step 2: training "
                           r"stopped.*with finite weights \(checked\) is "
                           + re.escape(ckpt_1)):
    loop.run(cfg, log=lambda _: None)
  assert not glob.glob(os.path.join(str(tmp_path / "w"), "checkpoints", "ckpt-2*"))


def test_a_checkpoint_holding_nan_is_not_loadable(tmp_path):
  tf.train.Checkpoint(v=tf.Variable([1.0, float("inf")])).write(str(tmp_path / "ckpt-4"))
  assert "holds NaN or Inf" in checkpoints.unreadable_reason(str(tmp_path / "ckpt-4"))
  with pytest.raises(errors.CheckpointError, match="ckpt-4: v/.* holds NaN or Inf"):
    checkpoints.newest_loadable(str(tmp_path), lambda _: None)


def test_optimizer_settings_may_change_on_resume_with_a_warning(sysu_dir, tmp_path):
  cfg = _cfg(sysu_dir, tmp_path / "w")
  experiment.prepare_workdir(cfg)
  lower = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr_f=1e-5))
  lines = []
  experiment.prepare_workdir(lower, lines.append)
  assert lines == [f"warning: resuming {cfg.train.workdir} with other optimizer settings "
                   f"(--lr_f: 0.00045 in the saved config, 1e-05 now); "
                   f"{cfg.train.workdir}/config.json records the new ones"]
  saved = config_lib.load(experiment.ExperimentConfig,
                          os.path.join(cfg.train.workdir, "config.json"))
  assert saved.train.lr_f == 1e-5


@pytest.mark.parametrize("flag, expected", [
    ("--lr_f=1e30", "a learning rate in (0, 1]"), ("--lr_g=inf", "a learning rate in (0, 1]"),
    ("--lr_dis=nan", "a learning rate in (0, 1]"), ("--lr_f=0", "a learning rate in (0, 1]"),
    ("--lambda_recon=1e38", "a weight in [0, 1000]"), ("--lambda_il=inf", "a weight in [0, 1000]"),
    ("--lambda_gan=-1", "a weight in [0, 1000]"), ("--weight_decay_f=-0.1", "a float in [0, 1]"),
])
def test_absurd_optimizer_and_weight_flags_are_refused(flag, expected):
  name = flag.split("=")[0]
  with pytest.raises(errors.ConfigError, match=re.escape(name) + ".* is invalid: expected "
                                                 + re.escape(expected)):
    train_config_from_argv(flag)


def test_conflicting_workdir_config_is_refused(sysu_dir, tmp_path):
  cfg = _cfg(sysu_dir, tmp_path / "w")
  experiment.prepare_workdir(cfg)
  # Runtime settings may change on resume...
  experiment.prepare_workdir(dataclasses.replace(
      cfg, train=dataclasses.replace(cfg.train, log_every=5, stop_at_step=1)))
  # ...weight-shaping ones may not.
  other = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, lambda_il=0.0))
  with pytest.raises(errors.ConfigError, match=r"--lambda_il: 0\.01 in the saved config, "
                                               r"0\.0 now"):
    experiment.prepare_workdir(other)
  # A flag that sets a field of two groups is named once.
  taller = dataclasses.replace(
      cfg, data=dataclasses.replace(cfg.data, image_height=2 * cfg.data.image_height),
      model=dataclasses.replace(cfg.model, image_height=2 * cfg.model.image_height))
  with pytest.raises(errors.ConfigError) as refused:
    experiment.prepare_workdir(taller)
  assert str(refused.value).count("--image_height:") == 1, str(refused.value)


def _train_cli(*args):
  return run_python("-m", "jsia_tf.train", "--preset=tiny", "--log_every=1", *args)


def test_cli_bad_inputs(sysu_dir, tmp_path):
  cases = [
      (["--dataset=market"], "market", "sysu"),
      ([f"--data_dir={sysu_dir}", "--batch_p=3", "--strategy=mirrored",
        "--num_cpu_devices=2", f"--workdir={tmp_path}/a"],
       "--batch_p=3", "multiple of the number of replicas (2)"),
      ([f"--data_dir={sysu_dir}", "--jit_compile", "--strategy=mirrored",
        "--num_cpu_devices=2", f"--workdir={tmp_path}/b"],
       "--jit_compile", "single replica"),
      ([f"--data_dir={sysu_dir}", "--preset=paper", "--backbone=keras_resnet50",
        "--backbone_weights=/nope/w.h5", f"--workdir={tmp_path}/c"], "/nope/w.h5",
       "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
      ([f"--data_dir={sysu_dir}", "--preset=paper",
        "--backbone_weights=/nope/resnet50-19c8e357.pth", f"--workdir={tmp_path}/i"],
       "/nope/resnet50-19c8e357.pth", "file not found"),
      ([f"--data_dir={sysu_dir}", "--preset=paper", f"--workdir={tmp_path}/j"],
       "error: --backbone_weights is not given", "resnet50-19c8e357.pth or "
       "resnet50-0676ba61.pth", "--backbone_weights=none to start from random weights"),
      ([f"--data_dir={sysu_dir}", "--strategy=multi_worker", f"--workdir={tmp_path}/d"],
       "TF_CONFIG", "cluster"),
      ([f"--data_dir={tmp_path}/missing", f"--workdir={tmp_path}/e"], "missing", ""),
      ([f"--data_dir={sysu_dir}", "--jit_compile", "--deterministic",
        f"--workdir={tmp_path}/h"], "--deterministic", "XLA has no deterministic kernels"),
      ([f"--data_dir={sysu_dir}", "--mixed_precision=float8", f"--workdir={tmp_path}/g"],
       "--mixed_precision='float8'", "float16 or bfloat16"),
  ]
  for args, *needles in cases:
    proc = _train_cli(*args)
    assert proc.returncode != 0, args
    assert "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
    for needle in needles:
      assert needle in proc.stderr, (args, needle, proc.stderr[-2000:])
  # A workdir holding another experiment.
  cfg = _cfg(sysu_dir, tmp_path / "f")
  experiment.prepare_workdir(cfg)
  proc = _train_cli(f"--data_dir={sysu_dir}", f"--workdir={tmp_path}/f", "--lambda_ui=0")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "--lambda_ui: 0.01 in the saved config, 0.0 now" in proc.stderr


def test_the_demo_data_set_is_generated_again_when_its_recipe_differs(tmp_path,
                                                                     monkeypatch):
  from jsia_tf.data import synthetic  # pylint: disable=import-outside-toplevel
  root = str(tmp_path / "regdb_demo")
  demo = synthetic.SyntheticConfig(layout="regdb", output_dir=root, num_ids=4,
                                   num_workers=1)
  monkeypatch.setitem(loop.DEMO_DATA, "regdb", demo)
  data = config_lib.DataConfig(dataset="regdb")
  lines = []
  assert loop.with_demo_data(data, lines.append).data_dir == root
  assert "generating the demo regdb data set" in lines[0]
  assert synthetic.read_recipe(root) == synthetic.recipe(demo)
  lines.clear()
  loop.with_demo_data(data, lines.append)
  assert "using the demo regdb data set" in lines[0]
  # A set of the demo's name made with other settings is replaced.
  synthetic.generate(dataclasses.replace(demo, num_ids=6, overwrite=True),
                     log=lambda *a: None)
  lines.clear()
  loop.with_demo_data(data, lines.append)
  assert "is not the demo regdb data set" in lines[0] and "generating it again" in lines[0]
  assert synthetic.read_recipe(root) == synthetic.recipe(demo)
  assert len(os.listdir(os.path.join(root, "Visible"))) == 4
  # Anything else in its place (no generator record) is never replaced.
  os.remove(os.path.join(root, synthetic.RECIPE_FILE))
  with open(os.path.join(root, "mine.txt"), "w") as f:
    f.write("someone's data")
  with pytest.raises(errors.ConfigError, match=f"{root} .*holds something else: it has "
                                               f"no readable {synthetic.RECIPE_FILE}"):
    loop.with_demo_data(data, lines.append)
  with open(os.path.join(root, "mine.txt")) as f:
    assert f.read() == "someone's data"


def test_a_resnet50_trunk_from_random_weights_on_purpose_trains(sysu_dir, tmp_path):
  """--backbone_weights=none: the refusal of a ResNet-50 without ImageNet weights
  is lifted, and the run trains (a ResNet-50 trunk on the tiny preset's sizes)."""
  proc = _train_cli(f"--data_dir={sysu_dir}", "--backbone=torchvision_resnet50",
                    "--backbone_weights=none", "--warmup_steps=0", "--joint_steps=1",
                    "--eval_every=0", "--image_every=0", f"--workdir={tmp_path}/w")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "[joint] step 1/1" in proc.stdout


def test_llcm_trains_evaluates_exports_and_searches(llcm_dir, tmp_path):
  """--dataset=llcm end to end, as a user runs it: train, export, evaluate the
  export (the training run's own numbers), search with the export."""
  run = str(tmp_path / "run")
  trained = _train_cli("--dataset=llcm", f"--data_dir={llcm_dir}", f"--workdir={run}",
                       "--batch_p=4", "--batch_k=2", "--warmup_steps=1", "--joint_steps=2",
                       "--image_every=0", "--eval_every=0")
  assert trained.returncode == 0, trained.stderr
  assert "infrared->visible" in trained.stdout and "visible->infrared" in trained.stdout
  with open(os.path.join(run, "eval", "report.json")) as f:
    report = json.load(f)
  assert report["protocol"] == "llcm"
  assert report["settings"]["infrared->visible"]["num_trials"] == 10
  table = lambda out: [l for l in out.splitlines() if "->" in l]  # pylint: disable=unnecessary-lambda-assignment
  exported = run_python("-m", "jsia_tf.export", f"--workdir={run}")
  assert exported.returncode == 0, exported.stderr
  served = run_python("-m", "jsia_tf.evaluate", f"--saved_model={run}/export",
                      "--protocol=llcm")
  assert served.returncode == 0, served.stderr
  assert table(served.stdout) == table(trained.stdout.split("random ranking")[0])
  searched = run_python("-m", "jsia_tf.search", f"--saved_model={run}/export",
                        f"--query={llcm_dir}/test_nir", f"--gallery={llcm_dir}/test_vis",
                        f"--output={tmp_path}/search", "--top_k=3")
  assert searched.returncode == 0, searched.stderr
  with open(tmp_path / "search" / "rankings.json") as f:
    rankings = json.load(f)
  assert all(q["id"] > 0 and len(q["results"]) == 3 for q in rankings["queries"])


def _docs_example(marker):
  """The code block that follows `<!-- marker -->` in docs/data.md."""
  with open(os.path.join(REPO, "docs", "data.md")) as f:
    text = f.read()
  after = text.split(f"<!-- {marker} -->", 1)[1]
  return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_custom_list_trains_evaluates_exports_and_searches(sysu_copy, tmp_path):
  """--dataset=custom end to end on the docs' worked example: its script writes the
  list file of a generated set; train, export, evaluate the export (the training
  run's own numbers), search."""
  script = tmp_path / "make_list.py"
  script.write_text(_docs_example("custom-list-example"))
  made = run_python(str(script), str(sysu_copy))
  assert made.returncode == 0, made.stderr
  list_file = os.path.join(sysu_copy, "list.csv")
  run = str(tmp_path / "run")
  trained = _train_cli("--dataset=custom", f"--data_dir={list_file}", f"--workdir={run}",
                       "--batch_p=4", "--batch_k=2", "--warmup_steps=1", "--joint_steps=2",
                       "--image_every=0", "--eval_every=0")
  assert trained.returncode == 0, trained.stderr
  assert "query->gallery" in trained.stdout
  with open(os.path.join(run, "eval", "report.json")) as f:
    report = json.load(f)
  setting = report["settings"]["query->gallery"]
  with open(list_file) as f:
    rows = f.read().splitlines()[1:]
  assert setting["num_queries"] == [sum(r.endswith(",query") for r in rows)]
  assert setting["gallery_size"] == [sum(r.endswith(",gallery") for r in rows)]
  features = features_lib.load(os.path.join(run, "eval", "features.npz"))
  assert set(features.role.tolist()) == {1, 2}
  exported = run_python("-m", "jsia_tf.export", f"--workdir={run}")
  assert exported.returncode == 0, exported.stderr
  served = run_python("-m", "jsia_tf.evaluate", f"--saved_model={run}/export",
                      "--protocol=custom", "--output_json", f"{tmp_path}/served.json")
  assert served.returncode == 0, served.stderr
  with open(tmp_path / "served.json") as f:
    assert json.load(f)["settings"]["query->gallery"]["mean"] == pytest.approx(
        setting["mean"], abs=1e-6)
  searched = run_python("-m", "jsia_tf.search", f"--saved_model={run}/export",
                        f"--query={sysu_copy}/cam3", f"--gallery={sysu_copy}/cam1",
                        f"--output={tmp_path}/search", "--top_k=2")
  assert searched.returncode == 0, searched.stderr


def test_a_finished_runs_data_set_may_be_a_list_file(tmp_path):
  """A custom run's data_dir is its list file: found where it is, and named with
  --data_dir when it has moved."""
  listed = tmp_path / "list.csv"
  listed.write_text("path,pid,camera,modality,split\n")
  data = config_lib.DataConfig(dataset="custom", data_dir=str(listed))
  assert experiment.run_data(data, "", "run R") is data
  gone = dataclasses.replace(data, data_dir=str(tmp_path / "gone.csv"))
  with pytest.raises(errors.ConfigError, match=r"gone.csv\) is not there from .*pass "
                                               r"--data_dir=where it is now"):
    experiment.run_data(gone, "", "run R")
