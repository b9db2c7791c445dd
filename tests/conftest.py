"""Shared fixtures: tiny generated data sets and runs, made once per test run."""

import fcntl
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from jsia_tf.data import synthetic

# Two logical CPU devices, so MirroredStrategy has two replicas on a CPU-only machine.
# This must run before TensorFlow initialises its devices, hence at import time.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_env(**extra):
  """The environment of a user's shell (no TF_CPP_MIN_LOG_LEVEL: the entry points
  keep TensorFlow's log lines off stderr themselves, `jsia_tf.console`), plus
  `extra`."""
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(extra)
  return env


def run_python(*args, timeout=300, cwd=REPO):
  """Runs `python ARGS...` from the repository root (or `cwd`), as a user would."""
  env = user_env()
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True,
                        text=True, env=env, timeout=timeout)


def train_config_from_argv(*argv):
  """The ExperimentConfig that `python -m jsia_tf.train ARGV...` would run."""
  from flags import train_flags  # pylint: disable=import-outside-toplevel
  return train_flags.experiment_config_from_argv(argv)


def built_once(tmp_path_factory, name, build):
  """The folder `name`, made by `build(path)` once per test run and read-only.

  Under pytest-xdist each worker process has its own session and module fixtures,
  so an expensive one (a training run) would be built once per worker, the two
  builds competing for the same cores. Here the first worker to ask builds it in
  the run's shared temporary folder while holding a lock; the others wait for it
  and use the same folder. A build that fails leaves no mark: the next asker builds
  again."""
  base = tmp_path_factory.getbasetemp()
  # Under xdist each worker's folder is one of the run's; their parent is the run's.
  root = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "built_once"
  root.mkdir(exist_ok=True)
  path, done = root / name, root / f"{name}.done"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not done.exists():
      shutil.rmtree(path, ignore_errors=True)
      build(path)
      done.touch()
  return path


def _generate(tmp_path_factory, name, **kwargs):
  def build(path):
    cfg = synthetic.SyntheticConfig(output_dir=str(path), num_workers=1, **kwargs)
    synthetic.generate(cfg, log=lambda _: None)
  return str(built_once(tmp_path_factory, name, build))


@pytest.fixture(scope="session")
def sysu_dir(tmp_path_factory):
  """A read-only tiny SYSU-layout set: 12 ids, 2-5 images per (camera, id)."""
  return _generate(tmp_path_factory, "sysu", layout="sysu", num_ids=12, min_images=2,
                   max_images=5, image_height=64, seed=3)


@pytest.fixture(scope="session")
def regdb_dir(tmp_path_factory):
  """A read-only tiny RegDB-layout set: 6 ids, 10 images per modality."""
  return _generate(tmp_path_factory, "regdb", layout="regdb", num_ids=6, seed=4)


@pytest.fixture(scope="session")
def llcm_dir(tmp_path_factory):
  """A read-only tiny LLCM-layout set: 12 ids (4 test), 2-4 images per camera mode."""
  return _generate(tmp_path_factory, "llcm", layout="llcm", num_ids=12, min_images=2,
                   max_images=4, image_height=64, seed=5)


@pytest.fixture
def sysu_copy(sysu_dir, tmp_path):
  """A private copy of the tiny SYSU set that a test may damage."""
  return shutil.copytree(sysu_dir, tmp_path / "sysu")


@pytest.fixture
def regdb_copy(regdb_dir, tmp_path):
  """A private copy of the tiny RegDB set that a test may damage."""
  return shutil.copytree(regdb_dir, tmp_path / "regdb")


@pytest.fixture(scope="session")
def tiny_run(sysu_dir, tmp_path_factory):
  """The workdir of a finished tiny training run (2 + 2 steps) on the tiny SYSU set,
  with its checkpoint, config.json and final evaluation. Read-only."""
  # Imported here: the training stack is heavy and most tests do not need it.
  from jsia_tf import config as config_lib
  from jsia_tf.training import experiment
  from jsia_tf.training import loop

  def build(path):
    model = config_lib.model_config("tiny")
    data = config_lib.DataConfig(data_dir=sysu_dir, image_height=model.image_height,
                                 image_width=model.image_width, batch_p=4, batch_k=2)
    train = config_lib.TrainConfig(workdir=str(path / "tiny"), warmup_steps=2,
                                   joint_steps=2, gen_ids=2, log_every=4, image_every=0,
                                   eval_every=0)
    loop.run(experiment.ExperimentConfig(data, model, config_lib.LossWeights(), train),
             log=lambda _: None)
  # The workdir's name is the run's name in the analysis' tables.
  return str(built_once(tmp_path_factory, "tiny_run", build) / "tiny")
