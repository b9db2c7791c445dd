"""Flags of the model (a preset plus overrides) and of the loss weights (Eq. 16)."""

import dataclasses

from absl import flags

from jsia_tf import config as config_lib

# Flags that override a preset's value only when given (None = the preset's).
_OVERRIDES = {
    "backbone": (flags.DEFINE_string,
                 "torchvision_resnet50 (the authors' layout), keras_resnet50 or small."),
    "backbone_weights": (flags.DEFINE_string,
                         "ResNet-50 ImageNet weights, a local file: torchvision's "
                         "resnet50-19c8e357.pth / resnet50-0676ba61.pth (needs torch) or "
                         "the same as .safetensors for torchvision_resnet50; Keras's "
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (or "
                         "'imagenet', needs network) for keras_resnet50; empty: random "
                         "init."),
    "stem_relu": (flags.DEFINE_bool, "torchvision_resnet50: a ReLU after the stem's BN "
                  "(the authors' E_sl has none)."),
    "sl_mode": (flags.DEFINE_string, "How F's set-level encoder E_sl is trained: "
                "shared (it is the content encoder E_i: set-level alignment, SL), "
                "separate (its own weights: Table 3's 'no SL'), adversarial (its own "
                "weights and a feature-level modality GAN, as cmGAN: Table 3 row 7)."),
    "grey_input": (flags.DEFINE_bool, "Feed the re-id trunk grey images (luma x 3), as "
                   "the authors' code does."),
    "num_stripes": (flags.DEFINE_integer, "Horizontal stripes of Eq. (12)."),
    "style_dim": (flags.DEFINE_integer, "Length of the style codes."),
}


def define_model_flags(flag_values=flags.FLAGS):
  """--preset and the model fields a user may override."""
  flags.DEFINE_enum("preset", "demo", sorted(config_lib.PRESETS),
                    "Model sizes: paper (ResNet-50, 256x128), demo (small, trains on 2 "
                    "CPU cores in minutes), tiny (tests).", flag_values=flag_values)
  for name, (define, help_text) in _OVERRIDES.items():
    define(name, None, help_text + " Default: the preset's.", flag_values=flag_values)


def model_config_from_flags(flag_values=flags.FLAGS, **overrides) -> config_lib.ModelConfig:
  """The ModelConfig of --preset (or `overrides["preset"]`) with the given
  overrides."""
  preset = overrides.pop("preset", flag_values.preset)
  given = {name: flag_values[name].value for name in _OVERRIDES
           if flag_values[name].value is not None}
  given.update(overrides)
  return config_lib.model_config(preset, **given)


def define_loss_flags(flag_values=flags.FLAGS):
  """--lambda_<term> for every term of Eq. (16) (and row 7's); 0 switches a term off."""
  notes = {"lambda_sl_gan": " Used with --sl_mode=adversarial only (Table 3 row 7)."}
  for field in dataclasses.fields(config_lib.LossWeights):
    flags.DEFINE_float(field.name, field.default,
                       f"Weight of the {field.name[len('lambda_'):]} loss term; 0 = off."
                       + notes.get(field.name, ""), flag_values=flag_values)


def loss_weights_from_flags(flag_values=flags.FLAGS) -> config_lib.LossWeights:
  """The LossWeights of the parsed flags."""
  return config_lib.LossWeights(**{f.name: flag_values[f.name].value
                                   for f in dataclasses.fields(config_lib.LossWeights)})
