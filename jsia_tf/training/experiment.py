"""The one frozen config of a training run, and the workdir that keeps it.

`ExperimentConfig` nests the data, model, loss-weight and training configs. It is
saved as `workdir/config.json` beside the checkpoints; a rerun with the same workdir
resumes only if the settings that shape the trained weights are unchanged.
"""

import dataclasses
import os
from typing import List

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import losses

CONFIG_FILE = "config.json"

# Fields a resume may change: where things are, how the run is distributed and how
# often it reports. Every other field shapes the trained weights.
RUNTIME_FIELDS = {
    "data": {"data_dir", "tfrecord_dir"},
    "train": {"workdir", "strategy", "num_cpu_devices", "jit_compile", "deterministic",
              "log_every", "image_every", "eval_every", "checkpoint_every",
              "keep_checkpoints", "stop_at_step", "flip_average"},
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything a training run depends on."""

  data: config_lib.DataConfig
  model: config_lib.ModelConfig
  loss: losses.LossWeights
  train: config_lib.TrainConfig

  def __post_init__(self):
    config_lib.require(
        self.data.image_size == self.model.image_size, "image_height",
        self.data.image_height, f"the model's image size {self.model.image_size} "
        f"(data {self.data.image_size})")


def conflicts(saved: ExperimentConfig, wanted: ExperimentConfig) -> List[str]:
  """`--flag: saved value -> wanted value` for each weight-shaping field that
  differs."""
  out = []
  for group in ("data", "model", "loss", "train"):
    a, b = getattr(saved, group), getattr(wanted, group)
    for field in dataclasses.fields(a):
      if field.name in RUNTIME_FIELDS.get(group, ()):
        continue
      old, new = getattr(a, field.name), getattr(b, field.name)
      if old != new:
        out.append(f"--{field.name}: {old!r} in the saved config, {new!r} now")
  return out


def prepare_workdir(cfg: ExperimentConfig) -> None:
  """Creates the workdir and writes `config.json`; for an existing workdir, refuses
  a config whose weight-shaping fields differ from the saved one, then records the
  current (runtime) settings."""
  path = os.path.join(cfg.train.workdir, CONFIG_FILE)
  if os.path.exists(path):
    saved = config_lib.load(ExperimentConfig, path)
    diff = conflicts(saved, cfg)
    if diff:
      raise errors.ConfigError(
          f"--workdir={cfg.train.workdir} holds a run with another configuration "
          f"({path}); resuming it with these flags would mix two experiments. "
          f"Differences: {'; '.join(diff)}. Use a new --workdir, or the saved flags.")
  os.makedirs(cfg.train.workdir, exist_ok=True)
  config_lib.save(cfg, path)
