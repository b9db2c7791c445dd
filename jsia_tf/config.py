"""Frozen configuration dataclasses, their validation, and their JSON form.

Flags are parsed once (in `flags/`) into these dataclasses; library code receives a
config object and never reads global flags. Field names equal flag names, so a
validation error can name the flag to fix.
"""

import dataclasses
import json
import os
import typing
from typing import Any, Dict, Mapping, Tuple

from jsia_tf import errors
from jsia_tf import files

DATASETS = ("sysu", "regdb", "llcm", "custom")
SYNTHETIC_LAYOUTS = DATASETS
REGDB_TRIALS = tuple(range(1, 11))
LR_PAIRS = ("generated", "unpaired")


def require(ok: bool, flag: str, value: Any, expected: str) -> None:
  """Raises `ConfigError` naming `--flag`, its bad `value` and what was `expected`."""
  if not ok:
    raise errors.ConfigError(f"--{flag}={value!r} is invalid: expected {expected}")


def within(path: str, folder: str) -> bool:
  """Whether `path` is `folder` or lies under it (symbolic links resolved)."""
  p, f = os.path.realpath(path), os.path.realpath(folder)
  return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


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
  in error messages. A class may define `upgrade_fields(values) -> values` to read
  the fields of configs written by an older jsia_tf.
  """
  if not isinstance(values, Mapping):
    raise errors.ConfigError(f"{source}: {cls.__name__} must be a JSON object, got "
                             f"{json.dumps(values)}")
  if hasattr(cls, "upgrade_fields"):
    values = cls.upgrade_fields(dict(values))
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise errors.ConfigError(
        f"{source}: unknown field(s) {unknown} for {cls.__name__}; "
        f"expected a subset of {sorted(fields)}")
  missing = sorted(name for name, f in fields.items() if name not in values
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING)
  if missing:
    raise errors.ConfigError(f"{source}: {cls.__name__} lacks the field(s) {missing}")
  kwargs = {}
  for name, value in values.items():
    field_type = fields[name].type
    if dataclasses.is_dataclass(field_type):
      value = from_dict(field_type, value, source)
    else:
      if not _has_type(value, field_type):
        raise errors.ConfigError(
            f"{source}: field {name!r} is {json.dumps(value)}; expected "
            f"{_type_name(field_type)}")
      if isinstance(value, list):
        value = tuple(value)
    kwargs[name] = value
  try:
    return cls(**kwargs)
  except errors.ConfigError as e:
    if source == "config":
      raise
    raise errors.ConfigError(f"{source}: {e}") from None


def _has_type(value: Any, field_type) -> bool:
  """Whether a JSON value fits a config field's type (bool is not a number, an int
  is a float, a list fits Tuple[X, ...])."""
  if field_type is bool:
    return isinstance(value, bool)
  if field_type is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if field_type is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if field_type is str:
    return isinstance(value, str)
  if typing.get_origin(field_type) is tuple:
    item = typing.get_args(field_type)[0]
    return isinstance(value, (list, tuple)) and all(_has_type(v, item) for v in value)
  return True


def _type_name(field_type) -> str:
  if typing.get_origin(field_type) is tuple:
    item = typing.get_args(field_type)[0]
    return "a list of " + {bool: "booleans", int: "integers", float: "numbers",
                           str: "strings"}.get(item, str(item))
  return {bool: "true or false", int: "an integer", float: "a number",
          str: "a string"}.get(field_type, str(field_type))


def save(config, path: str) -> None:
  """Writes `config` as indented JSON, atomically (`files.atomic_write`)."""
  files.atomic_write(path, lambda f: f.write(
      json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n"))


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


EVAL_PROTOCOLS = DATASETS


@dataclasses.dataclass(frozen=True)
class RerankOptions:
  """k-reciprocal re-ranking (Zhong et al., CVPR 2017) of `evaluate` and `search`:
  off, or on with its k1, k2 and lambda (the paper's 20, 6, 0.3 by default)."""

  rerank: bool = False
  rerank_k1: int = 20
  rerank_k2: int = 6
  rerank_lambda: float = 0.3

  def check_rerank(self):
    """Raises `ConfigError` naming the flag of a parameter out of range."""
    require(self.rerank_k1 >= 1, "rerank_k1", self.rerank_k1, "an integer >= 1")
    require(1 <= self.rerank_k2 <= self.rerank_k1 + 1, "rerank_k2", self.rerank_k2,
            f"an integer in 1..k1 + 1 ({self.rerank_k1 + 1})")
    require(0.0 <= self.rerank_lambda <= 1.0, "rerank_lambda", self.rerank_lambda,
            "a number in [0, 1]")

  @property
  def rerank_params(self):
    """(k1, k2, lambda), or None without `rerank`."""
    return (self.rerank_k1, self.rerank_k2, self.rerank_lambda) if self.rerank else None

  @property
  def rerank_summary(self):
    """{"k1", "k2", "lambda"} for reports, or None without `rerank`."""
    return dict(zip(("k1", "k2", "lambda"), self.rerank_params)) if self.rerank else None


@dataclasses.dataclass(frozen=True)
class EvalConfig(RerankOptions):
  """What `python -m jsia_tf.evaluate` evaluates and how.

  Empty `mode` / `direction` and `shots=0` mean "every setting". The features come
  from exactly one source: `features` files, a training run (`checkpoint`: its
  workdir or one checkpoint prefix) or an export (`saved_model`); a model source
  embeds the test split of its run's data set (`data_dir` overrides where it is)
  once, and `output_features` keeps those features.
  """

  features: Tuple[str, ...] = ()
  checkpoint: str = ""
  saved_model: str = ""
  data_dir: str = ""
  output_features: str = ""
  protocol: str = "sysu"
  mode: str = ""
  shots: int = 0
  perm_file: str = "auto"
  test_ids: Tuple[str, ...] = ()
  distance: str = "cosine"
  direction: str = ""
  num_trials: int = 10
  max_rank: int = 20
  remove_same_camera: bool = False
  output_json: str = ""

  def __post_init__(self):
    sources = [f"--{name}" for name in ("features", "checkpoint", "saved_model")
               if getattr(self, name)]
    require(len(sources) == 1, "features", ",".join(self.features) or ",".join(sources),
            "exactly one source of features: --features=FILE.npz, --checkpoint="
            "WORKDIR or --saved_model=EXPORT_DIR" +
            (f" (got {' and '.join(sources)})" if sources else ""))
    require(not (self.features and (self.data_dir or self.output_features)), "data_dir",
            self.data_dir or self.output_features,
            "no --data_dir or --output_features with --features (they are for a model)")
    # A report written over its own input would lose the features for good.
    for path in self.features:
      require(not (self.output_json and within(self.output_json, path)), "output_json",
              self.output_json, f"a file other than the --features file {path} it reads")
    require(not (self.output_json and self.output_features and
                 within(self.output_json, self.output_features)), "output_json",
            self.output_json, "a file other than --output_features")
    require(self.protocol in EVAL_PROTOCOLS, "protocol", self.protocol,
            ", ".join(EVAL_PROTOCOLS))
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
    if self.protocol in ("sysu", "llcm", "custom") and self.features:
      name = {"sysu": "SYSU-MM01 (its 10 trials are gallery draws)",
              "llcm": "LLCM (its 10 trials are gallery draws)",
              "custom": "a custom list"}[self.protocol]
      require(len(self.features) == 1, "features", ",".join(self.features),
              f"one file for {name}; several files, one per trained trial, are for "
              f"RegDB")
    if self.protocol == "sysu":
      require(not self.direction, "direction", self.direction,
              "no --direction with --protocol=sysu")
      require(len(self.test_ids) <= 1, "test_ids", ",".join(self.test_ids),
              "one id list for SYSU-MM01 (test_id.mat or exp/test_id.txt), or all")
    else:
      require(not (self.mode or self.shots or self.perm_file != "auto"), "mode",
              self.mode or self.shots or self.perm_file,
              f"no --mode, --shots or --perm_file with --protocol={self.protocol}")
      require(len(self.test_ids) in (0, 1, max(1, len(self.features))), "test_ids",
              ",".join(self.test_ids), "one id list per features file (each trial's "
              "idx/test_visible_<trial>.txt), one for every file, or all")
    require(not self.remove_same_camera or self.protocol == "custom",
            "remove_same_camera", self.remove_same_camera, "only with --protocol=custom "
            "(the other protocols have their own camera rules)")
    if self.protocol == "custom":
      require(not self.direction, "direction", self.direction,
              "no --direction with --protocol=custom (its list file names the queries)")
    require("all" not in self.test_ids or len(self.test_ids) == 1, "test_ids",
            ",".join(self.test_ids), "all alone, or id lists")
    require(bool(self.perm_file), "perm_file", self.perm_file,
            "auto, official, seeded or a rand_perm_cam.mat path")
    self.check_rerank()


BACKBONES = ("torchvision_resnet50", "keras_resnet50", "small")
# How F's set-level encoder E_sl is trained (Table 3): "shared" = E_i, the content
# encoder of the disentanglement (SL); "separate" = its own weights, no SL (rows 1,
# 3); "adversarial" = its own weights and a feature-level modality GAN, as cmGAN
# (row 7: SL without disentanglement).
SL_MODES = ("shared", "separate", "adversarial")
RESNET50_BACKBONES = ("torchvision_resnet50", "keras_resnet50")
# --backbone_weights=none: a ResNet-50 trunk from random initialisation, on purpose.
NO_WEIGHTS = "none"
# What --backbone_weights may name, per backbone (a file by its ending).
BACKBONE_WEIGHTS = {"torchvision_resnet50": (".pth", ".pt", ".safetensors"),
                    "keras_resnet50": (".h5",)}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of the three modules (G, V, F) and the re-id trunk.

  The generation module works at half the re-id image size (the paper: 128x64 for
  256x128); the content encoder upsamples back to the re-id size, as the authors'
  code does, so that E_i is exactly the trunk's stem + stage 1.
  """

  preset: str = "demo"
  image_height: int = 128
  image_width: int = 64
  backbone: str = "small"
  # "small" backbone: stem width = widths[0]; stage i has blocks[i] basic blocks.
  small_widths: Tuple[int, ...] = (32, 64, 128, 256)
  small_blocks: Tuple[int, ...] = (1, 1, 1, 1)
  # A local ImageNet weights file for the ResNet-50 backbones ("imagenet", which
  # needs the network, for keras_resnet50 too), or "" for random initialisation.
  backbone_weights: str = ""
  # torchvision_resnet50: a ReLU after the stem's BN (torchvision has one; the
  # authors' E_sl = conv1, bn1, maxpool, layer1 has none).
  stem_relu: bool = False
  style_dim: int = 32
  style_channels: int = 16  # first style-encoder conv; then x2, x4, x4, x4
  mlp_dim: int = 64
  dis_channels: int = 16  # 4x4 s2 convs: c, 2c, 4c, 8c
  dis_scales: int = 2
  latent_channels: int = 16
  num_stripes: int = 6
  grey_input: bool = True
  sl_mode: str = "shared"
  seed: int = 0

  def __post_init__(self):
    require(self.preset in PRESETS, "preset", self.preset, f"one of {sorted(PRESETS)}")
    require(self.backbone in BACKBONES, "backbone", self.backbone,
            f"one of {', '.join(BACKBONES)}")
    require(self.sl_mode in SL_MODES, "sl_mode", self.sl_mode,
            f"one of {', '.join(SL_MODES)}")
    for name in ("image_height", "image_width"):
      value = getattr(self, name)
      require(value >= 16 and value % 16 == 0, name, value,
              "a multiple of 16 (the trunk downsamples by 16, the G module works at "
              "half size)")
    require(len(self.small_widths) == 4 and all(w > 0 for w in self.small_widths),
            "small_widths", self.small_widths, "4 positive widths")
    require(len(self.small_blocks) == 4 and all(b > 0 for b in self.small_blocks),
            "small_blocks", self.small_blocks, "4 positive block counts")
    for name in ("style_dim", "style_channels", "mlp_dim", "dis_channels",
                 "latent_channels", "num_stripes", "dis_scales"):
      value = getattr(self, name)
      require(isinstance(value, int) and value > 0, name, value, "a positive integer")
    # The discriminators' 4x4 s2 convs pad by reflection: the coarsest scale's last
    # conv needs an input of 2+ pixels a side (16 x 2^scales for the re-id image).
    smallest = max(32, 2 ** (self.dis_scales + 4))
    for name in ("image_height", "image_width"):
      value = getattr(self, name)
      require(value >= smallest, name, value,
              f"at least {smallest}: the coarsest of the {self.dis_scales} "
              f"discriminator scales reflect-pads a map of 2 pixels a side")
    require(self.num_stripes <= self.image_height // 16, "num_stripes",
            self.num_stripes, f"at most the {self.image_height // 16} rows of the "
            f"trunk's output map")
    if self.weights_file:
      endings = BACKBONE_WEIGHTS.get(self.backbone, ())
      ok = self.backbone_weights.endswith(endings) or (
          self.backbone == "keras_resnet50" and self.backbone_weights == "imagenet")
      require(ok, "backbone_weights", self.backbone_weights,
              f"a {' or '.join(endings)} file for --backbone={self.backbone}" if endings
              else "no weights file for the small backbone (ImageNet weights exist for "
              f"--backbone={' or '.join(RESNET50_BACKBONES)} only)")

  @property
  def weights_file(self) -> str:
    """The ImageNet weights to load into the trunk; "" for random initialisation
    (--backbone_weights empty, or "none" to say so on purpose)."""
    return "" if self.backbone_weights in ("", NO_WEIGHTS) else self.backbone_weights

  @staticmethod
  def upgrade_fields(values: dict) -> dict:
    """Reads a config.json of jsia_tf before --sl_mode: share_sl true / false is
    sl_mode shared / separate."""
    if "share_sl" in values:
      values.setdefault("sl_mode", "shared" if values.pop("share_sl") else "separate")
    return values

  @property
  def image_size(self) -> Tuple[int, int]:
    """(height, width) of re-id images."""
    return (self.image_height, self.image_width)

  @property
  def gen_size(self) -> Tuple[int, int]:
    """(height, width) of the generation module's images: half the re-id size."""
    return (self.image_height // 2, self.image_width // 2)


# Preset -> the ModelConfig fields it sets (flags may override any of them).
PRESETS = {
    # ../shared/SPEC.md numbers: the authors' torchvision-layout ResNet-50 (last
    # stride 1, no stem ReLU), 256x128, style 128.
    "paper": dict(image_height=256, image_width=128, backbone="torchvision_resnet50",
                  stem_relu=False, style_dim=128,
                  style_channels=32, mlp_dim=256, dis_channels=32, latent_channels=64,
                  num_stripes=6),
    # Trains for real on 2 CPU cores in minutes on the generated data set. E_sl has
    # weights of its own: a trunk learning from scratch in 600 steps matches people
    # it never saw better without G's losses on its first stage (+1.3 to +2.8 points
    # on every number over 3 seeds, docs/experiments.md "Which demo"); the paper
    # preset keeps SL, made for an ImageNet-initialised ResNet-50.
    "demo": dict(image_height=128, image_width=64, backbone="small",
                 small_widths=(32, 64, 128, 256), small_blocks=(1, 1, 1, 1),
                 style_dim=32, style_channels=16, mlp_dim=64, dis_channels=16,
                 latent_channels=16, num_stripes=6, sl_mode="separate"),
    # For tests: a few seconds per step.
    "tiny": dict(image_height=64, image_width=32, backbone="small",
                 small_widths=(8, 16, 24, 32), small_blocks=(1, 1, 1, 1), style_dim=8,
                 style_channels=4, mlp_dim=16, dis_channels=4, dis_scales=1,
                 latent_channels=4, num_stripes=4),
}


def model_config(preset: str, **overrides) -> ModelConfig:
  """The ModelConfig of `preset` with `overrides` applied."""
  require(preset in PRESETS, "preset", preset, f"one of {sorted(PRESETS)}")
  return ModelConfig(preset=preset, **{**PRESETS[preset], **overrides})


MAX_WEIGHT = 1000.0


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """The named weight of every term of Eq. (16) (and of Eq. (8)'s parts). A weight
  of 0 switches its term off: the training step then does not compute it."""

  lambda_gan: float = 1.0
  lambda_recon: float = 10.0
  lambda_cycle: float = 10.0
  lambda_code: float = 1.0
  lambda_v: float = 1.0
  lambda_id: float = 1.0
  lambda_il: float = 0.01
  lambda_lr: float = 0.01
  lambda_ui: float = 0.01
  # Not in Eq. (16): Table 3 row 7's feature-level GAN; the trainer uses it with
  # --sl_mode=adversarial only.
  lambda_sl_gan: float = 1.0

  def __post_init__(self):
    # The paper's weights are at most 10; far larger ones overflow float32 losses.
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      require(0 <= value <= MAX_WEIGHT, field.name, value,
              f"a weight in [0, {MAX_WEIGHT:g}]")

  def active(self) -> Dict[str, float]:
    """{term: weight} of the terms that are switched on ("gan", "recon", ...)."""
    return {f.name[len("lambda_"):]: getattr(self, f.name)
            for f in dataclasses.fields(self) if getattr(self, f.name) > 0}


STRATEGIES = ("default", "mirrored", "multi_worker")
# What python -m jsia_tf.export writes (serving.formats: each runtime, precision).
EXPORT_FORMATS = ("saved_model", "onnx", "onnx_float16", "onnx_int8", "litert",
                  "litert_float16", "litert_int8", "openvino", "openvino_float16")
MIXED_PRECISION = ("", "float16", "bfloat16")

# Preset -> the training settings the flags default to. The demo's fit the 15-minute
# budget on 2 CPU cores (README). Paper: the authors' batch (P=16, K=4), G on a
# sub-batch of 2 identities (8 + 8 images; the authors: 9 + 9) and their schedule.
# Their "epoch" is 200 iterations (core/train.py): the G warm-up is the paper's 100
# epochs (their code's default, 600, is said to work for anything above 100), the
# joint stage 50 epochs with every lr x0.1 from epoch 30 (lr_decay_at 0.6).
TRAIN_PRESETS = {
    "paper": dict(warmup_steps=20000, joint_steps=10000, gen_ids=2, batch_p=16,
                  batch_k=4, lr_f=4.5e-4),
    # The small trunk learns from scratch in minutes: a higher F lr than the paper's
    # ImageNet-initialised ResNet-50 (the configurations measured: docs/experiments.md).
    "demo": dict(warmup_steps=100, joint_steps=500, gen_ids=2, batch_p=8, batch_k=4,
                 lr_f=2e-3),
    "tiny": dict(warmup_steps=20, joint_steps=40, gen_ids=2, batch_p=4, batch_k=2,
                 lr_f=4.5e-4),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The schedule, optimizers, distribution and bookkeeping of a training run.

  Optimizers (../shared/SPEC.md, the authors' numbers): Adam for G, V and the
  discriminators at lr 1e-4, betas (0.5, 0.999), weight decay 1e-4; Adam for F at lr
  4.5e-4, betas (0.9, 0.999), weight decay 5e-4. Weight decay is PyTorch Adam's
  (an L2 term added to the gradient), not AdamW's. Every lr is multiplied by
  `lr_decay` once `lr_decay_at` of the joint stage has passed.
  """

  workdir: str = "runs/demo"
  warmup_steps: int = 100
  joint_steps: int = 500
  # Identities of the global batch that G, V and the losses on generated images
  # (IL, LR, UI) use; the re-id losses use the whole batch. 0: the whole batch.
  gen_ids: int = 2
  lr_g: float = 1e-4
  lr_dis: float = 1e-4
  lr_f: float = 4.5e-4
  beta1_g: float = 0.5
  beta1_f: float = 0.9
  beta2: float = 0.999
  weight_decay_g: float = 1e-4
  weight_decay_f: float = 5e-4
  lr_decay_at: float = 0.6
  lr_decay: float = 0.1
  strategy: str = "default"
  # MirroredStrategy on this many logical CPU devices when there is no GPU (0: all
  # local GPUs, or the one CPU).
  num_cpu_devices: int = 0
  # multi_worker: a worker silent this many seconds (no heartbeat to TensorFlow's
  # coordination service: dead, hung or cut off) stops every other worker with an
  # error, instead of leaving them waiting for ever.
  worker_timeout: int = 120
  mixed_precision: str = ""
  jit_compile: bool = False
  deterministic: bool = False
  log_every: int = 20
  image_every: int = 250
  eval_every: int = 500
  checkpoint_every: int = 250
  keep_checkpoints: int = 3
  # Stop (with a checkpoint) at this step without finishing the schedule; 0: run
  # to the end. For budgeted or preemptible runs: a rerun resumes.
  stop_at_step: int = 0
  flip_average: bool = False
  # Gradient routing; the defaults are the authors' (README, "Differences from the
  # authors' code"). align_trains_g: the generated pairs and the unseen-identity
  # mixes enter F undetached, so IL, LR and UI also train G and V (the authors
  # detach them: those terms train F only). v_grad_to_content: Eq. (10)'s gradient
  # reaches E_sl = E_i through the content map M (default: V models M without
  # reshaping it).
  align_trains_g: bool = False
  v_grad_to_content: bool = False
  # Eq. (12)'s pairs: each real image's stripes against its generated pair
  # ("generated", the paper's LR) or against the real image of the other modality
  # of the same identity in its row ("unpaired": Table 3 row 8, LR degraded).
  lr_pairs: str = "generated"

  def __post_init__(self):
    require(bool(self.workdir), "workdir", self.workdir, "a directory")
    require(self.lr_pairs in LR_PAIRS, "lr_pairs", self.lr_pairs, " or ".join(LR_PAIRS))
    require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "an integer >= 0")
    require(self.joint_steps >= 1, "joint_steps", self.joint_steps, "an integer >= 1")
    require(self.gen_ids >= 0, "gen_ids", self.gen_ids, "an integer >= 0")
    # Comparisons are False for NaN, so each range below also refuses NaN; an lr
    # above 1 only ever blows a network's weights up.
    for name in ("lr_g", "lr_dis", "lr_f"):
      require(0 < getattr(self, name) <= 1, name, getattr(self, name),
              "a learning rate in (0, 1]")
    for name in ("beta1_g", "beta1_f", "beta2", "lr_decay_at", "lr_decay"):
      value = getattr(self, name)
      require(0.0 <= value <= 1.0, name, value, "a float in [0, 1]")
    for name in ("weight_decay_g", "weight_decay_f"):
      require(0 <= getattr(self, name) <= 1, name, getattr(self, name),
              "a float in [0, 1]")
    require(self.strategy in STRATEGIES, "strategy", self.strategy,
            f"one of {', '.join(STRATEGIES)}")
    require(self.num_cpu_devices >= 0, "num_cpu_devices", self.num_cpu_devices,
            "an integer >= 0")
    require(self.mixed_precision in MIXED_PRECISION, "mixed_precision",
            self.mixed_precision, "empty (float32), float16 or bfloat16")
    # Found by a run: XLA has no deterministic kernels for some of the step's
    # gradients (MaxPoolGrad); failing here beats failing inside the first step.
    require(not (self.jit_compile and self.deterministic), "deterministic",
            self.deterministic, "false with --jit_compile: XLA has no deterministic "
            "kernels for some of the step's gradients (MaxPool)")
    require(self.worker_timeout >= 1, "worker_timeout", self.worker_timeout,
            "a number of seconds >= 1")
    for name in ("log_every", "image_every", "eval_every", "checkpoint_every",
                 "keep_checkpoints", "stop_at_step"):
      value = getattr(self, name)
      require(isinstance(value, int) and value >= 0, name, value, "an integer >= 0")
    require(self.log_every >= 1, "log_every", self.log_every, "an integer >= 1")
    require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints,
            "an integer >= 1")

  @property
  def total_steps(self) -> int:
    """Warm-up plus joint steps."""
    return self.warmup_steps + self.joint_steps

  def stage(self, step: int) -> str:
    """"warmup" (G and V only) or "joint" for the 0-based `step`."""
    return "warmup" if step < self.warmup_steps else "joint"

  def lr_factor(self, step: int) -> float:
    """1, or `lr_decay` from `lr_decay_at` of the joint stage on."""
    decay_step = self.warmup_steps + int(round(self.lr_decay_at * self.joint_steps))
    return self.lr_decay if step >= decay_step else 1.0


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What `python -m jsia_tf.export` exports: the newest checkpoint of `workdir`
  (or `checkpoint`, one prefix) as version `version` (0: one above the newest) of
  `export_dir` (empty: WORKDIR/export), in the formats `format` (the SavedModel
  always; the others inside its version), or the formats added to the existing
  SavedModel version `saved_model`. The other formats are checked on
  `probe_images` test images (0: all) and int8 calibrated on `calibration_images`
  training images of the run's data set (`data_dir` overrides where it is)."""

  workdir: str = ""
  checkpoint: str = ""
  saved_model: str = ""
  export_dir: str = ""
  version: int = 0
  # Permission bits the export's files and folders do NOT get (octal, as umask(1)):
  # 022 makes them readable by TF Serving running as another user.
  umask: str = "022"
  format: Tuple[str, ...] = ("saved_model",)
  data_dir: str = ""
  probe_images: int = 32
  calibration_images: int = 200

  def __post_init__(self):
    require(bool(self.workdir) or bool(self.checkpoint) or bool(self.saved_model),
            "workdir", self.workdir, "a training workdir (or --checkpoint=WORKDIR/"
            "checkpoints/ckpt-N, or --saved_model=EXPORT_DIR/N to add formats to it)")
    require(not (self.saved_model and (self.workdir or self.checkpoint)), "saved_model",
            self.saved_model, "no --workdir or --checkpoint with it (one source)")
    for name in self.format:
      require(name in EXPORT_FORMATS, "format", name,
              f"one or more of {', '.join(EXPORT_FORMATS)}")
    require(len(set(self.format)) == len(self.format) and len(self.format) > 0,
            "format", ",".join(self.format), "each format once")
    require(not (self.saved_model and (self.export_dir or self.version)), "export_dir",
            self.export_dir or self.version, "no --export_dir or --version with "
            "--saved_model (its formats go into that version)")
    require(self.probe_images >= 0, "probe_images", self.probe_images,
            "an integer >= 0 (0: the whole test split)")
    require(self.calibration_images >= 1, "calibration_images",
            self.calibration_images, "an integer >= 1")
    require(self.version >= 0, "version", self.version, "an integer >= 1 (0: next)")
    require(len(self.umask) <= 4 and all(c in "01234567" for c in self.umask)
            and bool(self.umask), "umask", self.umask, "octal digits such as 022")


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
  """What `python -m jsia_tf.embed` embeds: the images of `images` (a folder, a text
  file of paths or a custom CSV list file) with the export `model`, into the
  features file `output`."""

  model: str = ""
  images: str = ""
  output: str = ""
  batch_size: int = 64

  def __post_init__(self):
    for name in ("model", "images", "output"):
      require(bool(getattr(self, name)), name, getattr(self, name), "a path")
    require(self.output.endswith(".npz"), "output", self.output, "a .npz file name")
    require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class SearchConfig(RerankOptions):
  """What `python -m jsia_tf.search` ranks: each image of `query` (a file or a
  folder) against the images under `gallery`, with the export `saved_model`."""

  saved_model: str = ""
  query: str = ""
  gallery: str = ""
  output: str = ""
  top_k: int = 10
  batch_size: int = 64

  def __post_init__(self):
    for name in ("saved_model", "query", "gallery", "output"):
      require(bool(getattr(self, name)), name, getattr(self, name), "a path")
    for name in ("gallery", "query"):
      require(not within(self.output, getattr(self, name)), "output", self.output,
              f"a folder outside --{name}={getattr(self, name)} (the ranked-list "
              f"pictures written there would be read as {name} images by the next "
              "search)")
    require(self.top_k >= 1, "top_k", self.top_k, "an integer >= 1")
    require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
    self.check_rerank()


@dataclasses.dataclass(frozen=True)
class AnalyzeConfig:
  """What `python -m jsia_tf.analyze` analyses: the newest checkpoint of `workdir`
  (Table 4, Figs. 4, 6, 7), and the runs of `compare` beside it in Fig. 4.

  `inception`: FID's reference graph file (empty: no FID / KID); `reid_model`: an
  export judging MD (empty: the run's own F); `data_dir`: where the run's data set
  is now; `output_dir` (empty: WORKDIR/analysis). `max_pairs` caps the FRI / FLS
  pairs, `max_images` the images per modality and split of Fig. 4; every draw
  comes from `seed`."""

  workdir: str = ""
  compare: Tuple[str, ...] = ()
  inception: str = ""
  reid_model: str = ""
  data_dir: str = ""
  output_dir: str = ""
  max_pairs: int = 2000
  max_images: int = 2000
  grid_ids: int = 8
  kid_subsets: int = 100
  kid_subset_size: int = 1000
  batch_size: int = 32
  seed: int = 0

  def __post_init__(self):
    require(bool(self.workdir), "workdir", self.workdir, "a training workdir")
    for name in ("max_pairs", "max_images", "grid_ids", "kid_subsets", "kid_subset_size",
                 "batch_size"):
      require(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
    require(self.max_pairs >= 2, "max_pairs", self.max_pairs, "an integer >= 2")


@dataclasses.dataclass(frozen=True)
class AblationConfig:
  """What `python -m jsia_tf.experiments.ablation` runs: Table 3's `rows`, each with
  `seeds` seeds (0 .. seeds-1), every run in OUTPUT_DIR/row<r>_seed<s>, on
  `data_dir` (empty: the generated demo set) with `preset`; `warmup_steps` /
  `joint_steps` of 0 keep the preset's schedule; `train_flags` go to every run."""

  rows: Tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
  seeds: int = 1
  output_dir: str = "runs/ablation"
  data_dir: str = ""
  preset: str = "demo"
  warmup_steps: int = 0
  joint_steps: int = 0
  train_flags: Tuple[str, ...] = ()  # more flags of python -m jsia_tf.train, every run

  def __post_init__(self):
    require(len(self.rows) > 0, "rows", self.rows, "at least one row of Table 3")
    require(len(set(self.rows)) == len(self.rows), "rows", self.rows, "rows without repeats")
    require(self.seeds >= 1, "seeds", self.seeds, "at least 1 seed per row")
    require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "an integer >= 0")
    require(self.joint_steps >= 0, "joint_steps", self.joint_steps, "an integer >= 0")


@dataclasses.dataclass(frozen=True)
class RegdbExperimentConfig:
  """What `python -m jsia_tf.experiments.regdb` runs: one training run per RegDB
  `trials` (each trained and evaluated on its own trial's split), in
  OUTPUT_DIR/trial<k>, with `preset`, `seed`, (0: the preset's) schedule and more
  `train_flags`."""

  data_dir: str = ""
  trials: Tuple[int, ...] = REGDB_TRIALS
  output_dir: str = "runs/regdb"
  preset: str = "paper"
  seed: int = 0
  warmup_steps: int = 0
  joint_steps: int = 0
  train_flags: Tuple[str, ...] = ()  # more flags of python -m jsia_tf.train, every run

  def __post_init__(self):
    require(bool(self.data_dir), "data_dir", self.data_dir, "a RegDB-layout directory")
    require(len(self.trials) > 0, "trials", self.trials, "at least one trial")
    require(all(t in REGDB_TRIALS for t in self.trials) and
            len(set(self.trials)) == len(self.trials), "trials", self.trials,
            "distinct trials among 1-10")
    require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "an integer >= 0")
    require(self.joint_steps >= 0, "joint_steps", self.joint_steps, "an integer >= 0")


SWEEP_PARAMS = ("lambda_il", "lambda_lr", "lambda_ui", "num_stripes")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """What `python -m jsia_tf.experiments.sweep` runs (Fig. 5): one training run per
  (value of `param`, seed), in OUTPUT_DIR/<param>_<value>_seed<s> (OUTPUT_DIR
  defaults to runs/sweep_<param>), otherwise as `AblationConfig`."""

  param: str = "lambda_il"
  values: Tuple[float, ...] = ()
  seeds: int = 1
  output_dir: str = ""
  data_dir: str = ""
  preset: str = "demo"
  warmup_steps: int = 0
  joint_steps: int = 0
  train_flags: Tuple[str, ...] = ()

  def __post_init__(self):
    require(self.param in SWEEP_PARAMS, "param", self.param, " or ".join(SWEEP_PARAMS))
    require(len(self.values) > 0, "values", self.values, "at least one value")
    require(len(set(self.values)) == len(self.values), "values", self.values,
            "values without repeats")
    if self.param == "num_stripes":
      require(all(v >= 1 and float(v).is_integer() for v in self.values), "values",
              self.values, "whole numbers of stripes >= 1")
    else:
      require(all(v >= 0 for v in self.values), "values", self.values,
              f"loss weights >= 0 for {self.param}")
    require(self.seeds >= 1, "seeds", self.seeds, "at least 1 seed per value")
    require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "an integer >= 0")
    require(self.joint_steps >= 0, "joint_steps", self.joint_steps, "an integer >= 0")
