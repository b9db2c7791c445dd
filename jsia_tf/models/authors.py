"""The authors' PyTorch checkpoints (github.com/wangguanan/JSIA-ReID) in jsia_tf's
networks, tensor by tensor.

Their `Base.save_model` writes four state dicts per epoch, `model-{i}_{epoch}.pkl`:
  0 generator_rgb, 1 generator_ir: `mod_invar_enc` (the shared Encoder: E_sl =
    resnet_conv1 = conv1, bn1, maxpool, layer1; E_il = resnet_conv2 = layer2-4; the
    BN-neck + classifier), `mod_spec_enc` (E_s), `dec` (D), `mlp` (D's AdaIN MLP);
  2 discriminator_rgb, 3 discriminator_ir: `cnns.{scale}.{layer}`.
Both generators hold the same Encoder, so it is read from file 0 and must be equal
in file 1. Not mapped, on purpose (`UNUSED`): the style encoders' identity
classifier `mod_spec_enc.classifier` (no loss of their step uses it), the AdaIN
layers' dummy running statistics, and the BN-neck's bias (frozen at 0; ours has
none: it is checked to be 0). jsia_tf's V (E_v, D_v) and stripe heads (C_n) have no
counterpart in their code (the AAAI model): they keep their initialisation.
"""

from typing import Dict, List, Mapping, Tuple

import numpy as np

from jsia_tf import errors
from jsia_tf.models import torchvision_resnet

FILES = ("generator_rgb", "generator_ir", "discriminator_rgb", "discriminator_ir")
ENCODER = "mod_invar_enc."
# Their Sequential indices: resnet_conv1 = (conv1, bn1, maxpool, layer1),
# resnet_conv2 = (layer2, layer3, layer4).
_TRUNK_RENAMES = (("conv1.", "resnet_conv1.0."), ("bn1.", "resnet_conv1.1."),
                  ("layer1.", "resnet_conv1.3."), ("layer2.", "resnet_conv2.0."),
                  ("layer3.", "resnet_conv2.1."), ("layer4.", "resnet_conv2.2."))
_FROZEN_ZERO = ENCODER + "classifier.bn.bias"

Names = Dict[str, Tuple[object, object]]  # their name -> (variable, layout)


def trunk_name(torchvision_name: str) -> str:
  """Their Encoder's name of a torchvision ResNet-50 tensor (`layer2.0.conv1.weight`
  -> `mod_invar_enc.resnet_conv2.0.0.conv1.weight`)."""
  for ours, theirs in _TRUNK_RENAMES:
    if torchvision_name.startswith(ours):
      return ENCODER + theirs + torchvision_name[len(ours):]
  raise ValueError(f"no Encoder name for trunk tensor {torchvision_name}")


def _layer(layer, name: str, layout=True) -> Names:
  """weight (and bias) of a Conv2D / Dense layer under their module `name`."""
  out = {f"{name}.weight": (layer.kernel, layout)}
  if layer.use_bias:
    out[f"{name}.bias"] = (layer.bias, False)
  return out


def encoder_names(model) -> Names:
  """Their `mod_invar_enc.*` names of F's E_sl, E_il, BN-neck and classifier C."""
  if model.model_cfg.sl_mode != "shared":
    raise errors.ConfigError("the authors' model shares E_sl with the content encoder "
                             f"E_i: their checkpoints need --sl_mode=shared, not "
                             f"{model.model_cfg.sl_mode}")
  if model.model_cfg.backbone != "torchvision_resnet50":
    raise errors.ConfigError(
        f"the authors' trunk is torchvision's ResNet-50: --backbone="
        f"{model.model_cfg.backbone} cannot hold their weights")
  trunk = torchvision_resnet.state_dict_names(model.F.E_sl.layers + model.F.E_il.layers)
  names = {trunk_name(k): v for k, v in trunk.items()}
  neck = model.F.bn_neck
  names.update({ENCODER + "classifier.bn.weight": (neck.gamma, False),
                ENCODER + "classifier.bn.running_mean": (neck.moving_mean, False),
                ENCODER + "classifier.bn.running_var": (neck.moving_variance, False)})
  names.update(_layer(model.F.C, ENCODER + "classifier.classifier"))
  return names


def generator_names(model, modality: str) -> Names:
  """Their names of the style encoder and the decoder (with its MLP) of `modality`,
  without the shared Encoder."""
  style = getattr(model, f"E_s_{modality}")
  decoder = getattr(model, f"D_{modality}")
  names = {}
  for i, conv in enumerate(style.convs):  # Conv2dBlocks 0-4; 5 is the pooling
    names.update(_layer(conv, f"mod_spec_enc.model.{i}.conv"))
  names.update(_layer(style.out, f"mod_spec_enc.model.{len(style.convs) + 1}",
                      torchvision_resnet.DENSE_AS_1X1_CONV))
  for k, conv in enumerate(decoder.res_convs):  # ResBlocks -> ResBlock -> Conv2dBlock
    names.update(_layer(conv, f"dec.model.0.model.{k // 2}.model.{k % 2}.conv"))
  names.update(_layer(decoder.up_conv, "dec.model.2.conv"))  # 1 is the Upsample
  names.update({"dec.model.2.norm.gamma": (decoder.up_norm.gamma, False),
                "dec.model.2.norm.beta": (decoder.up_norm.beta, False)})
  names.update(_layer(decoder.to_rgb, "dec.model.3.conv"))
  for i, dense in enumerate(decoder.mlp):
    names.update(_layer(dense, f"mlp.model.{i}.fc"))
  return names


def discriminator_names(model, modality: str) -> Names:
  """Their `cnns.{scale}.{layer}` names of the discriminator of `modality`."""
  names = {}
  for s, layers in enumerate(getattr(model, f"Dis_{modality}").scales):
    for i, conv in enumerate(layers[:-1]):
      names.update(_layer(conv, f"cnns.{s}.{i}.conv"))
    names.update(_layer(layers[-1], f"cnns.{s}.{len(layers) - 1}"))
  return names


def file_names(model) -> List[Names]:
  """The names of each of their four files (FILES order); the Encoder is listed
  with generator_rgb only."""
  return [{**encoder_names(model), **generator_names(model, "rgb")},
          generator_names(model, "ir"), discriminator_names(model, "rgb"),
          discriminator_names(model, "ir")]


def _adain_dummies(model) -> List[str]:
  """Their AdaIN layers' unused running statistics (buffers in their files)."""
  return [f"dec.model.0.model.{k // 2}.model.{k % 2}.norm.running_{stat}"
          for k in range(len(model.D_rgb.res_convs)) for stat in ("mean", "var")]


def unused_names(model) -> List[str]:
  """Exact names (or prefixes) of their generator files' tensors that map to no
  variable on purpose (the module docstring says why)."""
  return ["mod_spec_enc.classifier.", _FROZEN_ZERO] + _adain_dummies(model)


def export_state(model) -> List[Dict[str, np.ndarray]]:
  """The model's weights as their four state dicts (PyTorch layouts), with the
  tensors their files hold and ours do not use (both generators' Encoder, the
  BN-neck's zero bias, the AdaIN dummies, a zero style classifier)."""
  states = []
  for names in file_names(model):
    states.append({k: torchvision_resnet.to_torch_layout(v.numpy(), layout) if layout
                   else v.numpy() for k, (v, layout) in names.items()})
  encoder = {k: v for k, v in states[0].items() if k.startswith(ENCODER)}
  states[1].update(encoder)
  for state in states[:2]:
    state[_FROZEN_ZERO] = np.zeros(model.F.bn_neck.gamma.shape, np.float32)
    for name in _adain_dummies(model):
      state[name] = np.zeros([model.D_rgb.content_channels], np.float32)
    style_dim = model.model_cfg.style_dim
    state["mod_spec_enc.classifier.weight"] = np.zeros([model.num_classes, style_dim],
                                                       np.float32)
    state["mod_spec_enc.classifier.bias"] = np.zeros([model.num_classes], np.float32)
  return states


def load_state(model, states: List[Mapping[str, np.ndarray]], sources: List[str]) -> None:
  """Assigns their four state dicts (`module.` prefixes already removed) to the
  model. A missing, leftover or misshapen tensor, an Encoder that differs between
  the two generator files or a non-zero BN-neck bias is a ConfigError naming the
  file and the tensor; nothing is assigned unless every file fits."""
  names = file_names(model)
  unused = tuple(unused_names(model))
  for i in (0, 1):
    bias = states[i].get(_FROZEN_ZERO)
    if bias is not None and np.any(np.asarray(bias) != 0):
      raise errors.ConfigError(
          f"{sources[i]}: {_FROZEN_ZERO} is not zero; their BN-neck keeps its bias "
          f"frozen at 0 and jsia_tf's has none")
  rgb_encoder = {k: v for k, v in states[0].items() if k.startswith(ENCODER)}
  for key, value in states[1].items():
    if key.startswith(ENCODER) and key in rgb_encoder and not np.array_equal(
        np.asarray(value), np.asarray(rgb_encoder[key])):
      raise errors.ConfigError(
          f"{sources[1]}: {key} differs from {sources[0]}'s: the two generators "
          f"share one Encoder")
  # Check every file before assigning any (load_state_dict checks one at a time).
  for dry_run in (True, False):
    for i, (file_names_i, state) in enumerate(zip(names, states)):
      ignore = unused + ((ENCODER,) if i == 1 else ())
      torchvision_resnet.load_state_dict(
          file_names_i, state, source=f"{sources[i]} ({FILES[i]})",
          ignore_prefixes=ignore if i < 2 else (), dry_run=dry_run)
