"""Frozen configuration dataclasses, their validation, and their JSON form.

Flags are parsed once (in `flags/`) into these dataclasses; library code receives a
config object and never reads global flags. Field names equal flag names, so a
validation error can name the flag to fix.
"""

import dataclasses
import json
import os
from typing import Any, Mapping, Tuple

from jsia_tf import errors

DATASETS = ("sysu", "regdb")
SYNTHETIC_LAYOUTS = DATASETS
REGDB_TRIALS = tuple(range(1, 11))


def require(ok: bool, flag: str, value: Any, expected: str) -> None:
  """Raises `ConfigError` naming `--flag`, its bad `value` and what was `expected`."""
  if not ok:
    raise errors.ConfigError(f"--{flag}={value!r} is invalid: expected {expected}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the training data lives and how P x K cross-modality batches are made.

  Images leave the pipeline as float32 in [-1, 1] (the range of the decoders' tanh);
  networks that want another normalisation convert inside the model.
  """

  dataset: str = "sysu"
  data_dir: str = ""
  # When set, training reads the TFRecords of tools/build_tfrecords.py from here
  # instead of decoding the image files of data_dir.
  tfrecord_dir: str = ""
  trial: int = 1
  image_height: int = 256
  image_width: int = 128
  batch_p: int = 16
  batch_k: int = 4
  flip: bool = True
  # Zero-pad by this many pixels, then randomly crop back (0 switches it off).
  pad_crop: int = 0
  # Probability of random erasing per image (0 switches it off).
  random_erasing: float = 0.0
  seed: int = 0

  def __post_init__(self):
    require(self.dataset in DATASETS, "dataset", self.dataset,
            f"one of {', '.join(DATASETS)}")
    require(self.trial in REGDB_TRIALS, "trial", self.trial, "an integer in 1..10")
    for name in ("image_height", "image_width", "batch_p", "batch_k"):
      value = getattr(self, name)
      require(isinstance(value, int) and value > 0, name, value, "a positive integer")
    require(self.pad_crop >= 0, "pad_crop", self.pad_crop, "an integer >= 0")
    require(0.0 <= self.random_erasing <= 1.0, "random_erasing", self.random_erasing,
            "a probability in [0, 1]")

  @property
  def image_size(self):
    """(height, width) of the images the pipeline yields."""
    return (self.image_height, self.image_width)


def to_dict(config) -> dict:
  """The JSON-ready dict of a (possibly nested) config dataclass."""
  return dataclasses.asdict(config)


def from_dict(cls, values: Mapping[str, Any], source: str = "config"):
  """Builds `cls` from a dict, refusing keys that `cls` does not have.

  Nested dataclass fields are built recursively. `source` names the origin (a file)
  in error messages.
  """
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise errors.ConfigError(
        f"{source}: unknown field(s) {unknown} for {cls.__name__}; "
        f"expected a subset of {sorted(fields)}")
  kwargs = {}
  for name, value in values.items():
    field_type = fields[name].type
    if dataclasses.is_dataclass(field_type) and isinstance(value, Mapping):
      value = from_dict(field_type, value, source)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


def save(config, path: str) -> None:
  """Writes `config` as indented JSON, atomically (write to a temp file, rename)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(to_dict(config), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def load(cls, path: str):
  """Reads a config of class `cls` written by `save`."""
  try:
    with open(path) as f:
      values = json.load(f)
  except FileNotFoundError:
    raise errors.ConfigError(f"config file {path} does not exist") from None
  except json.JSONDecodeError as e:
    raise errors.ConfigError(f"config file {path} is not valid JSON: {e}") from None
  return from_dict(cls, values, source=path)


EVAL_PROTOCOLS = ("sysu", "regdb")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What `python -m jsia_tf.evaluate` evaluates and how.

  Empty `mode` / `direction` and `shots=0` mean "every setting".
  """

  features: Tuple[str, ...] = ()
  protocol: str = "sysu"
  mode: str = ""
  shots: int = 0
  perm_file: str = ""
  distance: str = "cosine"
  direction: str = ""
  num_trials: int = 10
  max_rank: int = 20
  output_json: str = ""

  def __post_init__(self):
    require(len(self.features) >= 1, "features", ",".join(self.features),
            "one or more .npz features files")
    require(self.protocol in EVAL_PROTOCOLS, "protocol", self.protocol, "sysu or regdb")
    require(self.mode in ("", "all", "indoor"), "mode", self.mode, "all or indoor")
    require(self.shots in (0, 1, 10), "shots", self.shots, "1 or 10")
    require(self.distance in ("cosine", "euclidean"), "distance", self.distance,
            "cosine or euclidean")
    require(self.direction in ("", "v2t", "t2v"), "direction", self.direction,
            "v2t or t2v")
    require(1 <= self.num_trials <= 10, "num_trials", self.num_trials,
            "an integer in 1..10")
    require(self.max_rank >= 20, "max_rank", self.max_rank,
            "an integer >= 20 (R20 is reported)")
    if self.protocol == "sysu":
      require(len(self.features) == 1, "features", ",".join(self.features),
              "one file for SYSU-MM01 (its 10 trials are gallery draws); several "
              "files, one per trained trial, are for RegDB")
      require(not self.direction, "direction", self.direction,
              "no --direction with --protocol=sysu")
    else:
      require(not (self.mode or self.shots or self.perm_file), "mode", self.mode,
              "no --mode, --shots or --perm_file with --protocol=regdb")
