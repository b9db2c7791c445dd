"""The one frozen config of a training run, and the workdir that keeps it.

`ExperimentConfig` nests the data, model, loss-weight and training configs. It is
saved as `workdir/config.json` beside the checkpoints; a rerun with the same workdir
resumes only if the settings that shape the trained weights are unchanged. One run
at a time holds a workdir (`workdir_lock`).
"""

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Callable, Iterator, List

from jsia_tf import config as config_lib
from jsia_tf import errors

CONFIG_FILE = "config.json"
LOCK_FILE = "run.lock"

# Fields a resume may change: where things are, how the run is distributed and how
# often it reports. Every other field shapes the trained weights.
RUNTIME_FIELDS = {
    "data": {"data_dir", "tfrecord_dir"},
    "train": {"workdir", "strategy", "num_cpu_devices", "worker_timeout",
              "jit_compile", "deterministic", "log_every", "image_every", "eval_every",
              "checkpoint_every", "keep_checkpoints", "stop_at_step", "flip_average"},
}


# The optimizer settings: a resume may change them (with a warning), so that a run
# stopped by a non-finite value goes on from its last checkpoint with a lower lr.
OPTIMIZER_FIELDS = {"lr_g", "lr_dis", "lr_f", "lr_decay", "lr_decay_at", "beta1_g",
                    "beta1_f", "beta2", "weight_decay_g", "weight_decay_f"}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything a training run depends on."""

  data: config_lib.DataConfig
  model: config_lib.ModelConfig
  loss: config_lib.LossWeights
  train: config_lib.TrainConfig

  def __post_init__(self):
    config_lib.require(
        self.data.image_size == self.model.image_size, "image_height",
        self.data.image_height, f"the model's image size {self.model.image_size} "
        f"(data {self.data.image_size})")


def run_data(data: config_lib.DataConfig, data_dir: str, source: str,
             why: str = "") -> config_lib.DataConfig:
  """The data set of a finished run (`data`, from its CONFIG_FILE), read from
  `data_dir` when given (its TFRecords then no longer apply); ConfigError naming
  --data_dir when the run's own path is not there from the working directory.
  `why`: what the data set is needed for, leading the message."""
  if data_dir:
    return dataclasses.replace(data, data_dir=data_dir, tfrecord_dir="")
  # A custom data set's data_dir may be its list file rather than a folder.
  if not os.path.exists(data.tfrecord_dir or data.data_dir):
    raise errors.ConfigError(
        f"{why}the data set of {source} ({CONFIG_FILE}: "
        f"{'tfrecord_dir' if data.tfrecord_dir else 'data_dir'}="
        f"{data.tfrecord_dir or data.data_dir}) is not there from {os.getcwd()}: pass "
        "--data_dir=where it is now")
  return data


def _differences(saved: ExperimentConfig, wanted: ExperimentConfig,
                 kept: Callable[[str, str], bool]) -> List[str]:
  out = []
  for group in ("data", "model", "loss", "train"):
    a, b = getattr(saved, group), getattr(wanted, group)
    for field in dataclasses.fields(a):
      old, new = getattr(a, field.name), getattr(b, field.name)
      line = f"--{field.name}: {old!r} in the saved config, {new!r} now"
      # One flag may set fields of two groups (--image_height: data and model).
      if kept(group, field.name) and old != new and line not in out:
        out.append(line)
  return out


def conflicts(saved: ExperimentConfig, wanted: ExperimentConfig) -> List[str]:
  """`--flag: saved value -> wanted value` for each weight-shaping field that
  differs (neither a runtime field nor an optimizer setting)."""
  return _differences(saved, wanted, lambda group, name: not (
      name in RUNTIME_FIELDS.get(group, ()) or (group == "train" and name in
                                                 OPTIMIZER_FIELDS)))


def optimizer_changes(saved: ExperimentConfig, wanted: ExperimentConfig) -> List[str]:
  """The same for the optimizer settings, which a resume may change."""
  return _differences(saved, wanted,
                      lambda group, name: group == "train" and name in OPTIMIZER_FIELDS)


def prepare_workdir(cfg: ExperimentConfig, log: Callable[[str], None] = print) -> None:
  """Creates the workdir and writes `config.json`; for an existing workdir, refuses
  a config whose weight-shaping fields differ from the saved one, warns of changed
  optimizer settings, then records the current settings."""
  path = os.path.join(cfg.train.workdir, CONFIG_FILE)
  if os.path.exists(path):
    saved = config_lib.load(ExperimentConfig, path)
    diff = conflicts(saved, cfg)
    if diff:
      raise errors.ConfigError(
          f"--workdir={cfg.train.workdir} holds a run with another configuration "
          f"({path}); resuming it with these flags would mix two experiments. "
          f"Differences: {'; '.join(diff)}. Use a new --workdir, or the saved flags.")
    changed = optimizer_changes(saved, cfg)
    if changed:
      log(f"warning: resuming {cfg.train.workdir} with other optimizer settings "
          f"({'; '.join(changed)}); {path} records the new ones")
  os.makedirs(cfg.train.workdir, exist_ok=True)
  config_lib.save(cfg, path)


def _alive(pid: int) -> bool:
  """Whether process `pid` exists on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, under another user
    return True
  return True


def _read_holder(fd: int) -> dict:
  """The record in an open lock file; {} while it is empty or half-written."""
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    holder = json.loads(os.read(fd, 1 << 16).decode("utf-8"))
    return holder if isinstance(holder, dict) else {}
  except (OSError, ValueError):
    return {}


def _in_use(workdir: str, path: str, holder: dict) -> errors.ConfigError:
  return errors.ConfigError(
      f"--workdir={workdir} is in use by another run (pid {holder.get('pid', '?')} on "
      f"{holder.get('host', '?')}, started {holder.get('started', '?')}: "
      f"{holder.get('command', '?')}); wait for it, or use another --workdir. If that "
      f"run is gone, delete {path}")


@contextlib.contextmanager
def workdir_lock(workdir: str, log: Callable[[str], None] = print) -> Iterator[str]:
  """Holds `workdir/run.lock` (pid, host, start time, command) while the block runs.

  The lock is an exclusive `flock` on the open file, which the kernel drops when the
  process ends however it ends, so taking it is atomic and a dead run's lock is free.
  A second run on the same workdir is refused with a ConfigError naming the holder.
  A free lock file left by a process that is gone (same host) is taken over with a
  warning; one naming another host is not (a file system that does not share locks
  between hosts would make that run look gone), nor one naming a live process of
  this host. An unwritable workdir fails naming the path.
  """
  path = os.path.join(workdir, LOCK_FILE)
  host = socket.gethostname()
  record = {"pid": os.getpid(), "host": host,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.ConfigError(f"--workdir={workdir}: cannot be created ({e.strerror})") from None
  fd = None
  for _ in range(100):
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise errors.ConfigError(f"--workdir={workdir}: cannot write {path} "
                               f"({e.strerror})") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise _in_use(workdir, path, holder) from None
    try:
      same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same_file = False
    if same_file:
      break
    # The holder removed the file between our open and our lock: try the new one.
    os.close(fd)
    fd = None
  if fd is None:
    raise errors.ConfigError(f"--workdir={workdir}: could not take {path}")
  try:
    holder = _read_holder(fd)
    if holder:
      pid, holder_host = holder.get("pid"), holder.get("host")
      if holder_host != host or (isinstance(pid, int) and pid != os.getpid()
                                 and _alive(pid)):
        raise _in_use(workdir, path, holder)
    if os.fstat(fd).st_size:
      log(f"warning: taking over {path} from a run that is gone (pid "
          f"{holder.get('pid')}, started {holder.get('started', '?')})")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode("utf-8"))
  except OSError as e:
    os.close(fd)
    raise errors.ConfigError(f"--workdir={workdir}: cannot write {path} "
                             f"({e.strerror})") from None
  except BaseException:
    os.close(fd)
    raise
  try:
    yield path
  finally:
    # Removed while still locked: a run that opened this file meanwhile sees, once it
    # has the lock, that the path no longer names it, and tries again.
    try:
      os.remove(path)
    except OSError:
      pass
    os.close(fd)
