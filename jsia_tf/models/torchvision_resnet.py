"""ResNet-50 in torchvision's layout: the trunk of the authors' code (and of AGW and
torchreid), so that their weights load into ours tensor by tensor.

It differs from `keras.applications.ResNet50` where the numbers change: a
bottleneck's stride sits on its 3x3 conv (Keras: on the first 1x1), padding is
PyTorch's symmetric padding (TensorFlow's "same" pads more at the bottom and right
for stride 2), max pooling pads with -inf, convs have no bias, BN epsilon is 1e-5.
The last stage strides 1 (the re-id "last stride 1"), and the stem's ReLU after
bn1 is optional: the authors' `resnet_conv1` is conv1, bn1, maxpool, layer1 with no
ReLU. Layers are named after torchvision's modules (`layer2.0.downsample.0`), so a
state dict maps by name (`state_dict_names`).
"""

from typing import Callable, Dict, Iterable, Mapping, Tuple

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import errors

# torchvision's ImageNet checkpoints of ResNet-50 (V1 and V2 weights).
IMAGENET_FILES = ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth")
# torchvision.models.resnet50() has 25,557,032 parameters; its fc (2048 x 1000 + 1000)
# is not part of the trunk.
NUM_PARAMS = 25_557_032 - (2048 * 1000 + 1000)
BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
# The split of the trunk: E_sl = conv1 .. layer1 (the authors' resnet_conv1).
E_SL_OUTPUT = "layer1.2.out"
# In the ImageNet checkpoints, not in the trunk.
CLASSIFIER_PREFIX = "fc."


@keras.saving.register_keras_serializable(package="jsia_tf")
class TorchMaxPool2D(keras.layers.Layer):
  """PyTorch's MaxPool2d(pool_size, strides, padding): the padding never wins (it
  is -inf there, not 0: without the stem ReLU, bn1's outputs can be negative)."""

  def __init__(self, pool_size: int = 3, strides: int = 2, padding: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.pool_size, self.strides, self.padding = pool_size, strides, padding

  def call(self, x):
    p = self.padding
    x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=x.dtype.min)
    return tf.nn.max_pool2d(x, self.pool_size, self.strides, "VALID")

  def get_config(self):
    return {**super().get_config(), "pool_size": self.pool_size,
            "strides": self.strides, "padding": self.padding}


def _conv(x, filters: int, kernel: int, stride: int, name: str):
  """PyTorch's Conv2d(kernel, stride, padding=kernel // 2, bias=False)."""
  if kernel > 1:
    x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}.pad")(x)
  return keras.layers.Conv2D(filters, kernel, stride, "valid", use_bias=False,
                             name=name)(x)


def build(input_shape: Tuple[int, int, int],
          batch_norm: Callable[[str], keras.layers.Layer], stem_relu: bool = False,
          last_stride: int = 1, name: str = "torchvision_resnet50",
          dtype: str = "float32") -> keras.Model:
  """The trunk, images -> the layer4 map [B, H/16, W/16, 2048] (last stride 1).

  `batch_norm(name)` makes each BatchNormalization (the caller sets momentum,
  epsilon and synchronisation). `stem_relu=False` is the authors' quirk. `dtype`:
  the images'.
  """
  inputs = keras.Input(input_shape, dtype=dtype)
  x = _conv(inputs, 64, 7, 2, "conv1")
  x = batch_norm("bn1")(x)
  if stem_relu:
    x = keras.layers.ReLU(name="relu")(x)
  x = TorchMaxPool2D(name="maxpool")(x)
  for stage, (blocks, width) in enumerate(zip(BLOCKS, WIDTHS), start=1):
    for block in range(blocks):
      stride = 1
      if block == 0 and stage in (2, 3):
        stride = 2
      elif block == 0 and stage == 4:
        stride = last_stride
      prefix = f"layer{stage}.{block}"
      shortcut = x
      if block == 0:
        shortcut = _conv(x, width * EXPANSION, 1, stride, f"{prefix}.downsample.0")
        shortcut = batch_norm(f"{prefix}.downsample.1")(shortcut)
      y = keras.layers.ReLU()(batch_norm(f"{prefix}.bn1")(_conv(x, width, 1, 1,
                                                                f"{prefix}.conv1")))
      y = keras.layers.ReLU()(batch_norm(f"{prefix}.bn2")(_conv(y, width, 3, stride,
                                                                f"{prefix}.conv2")))
      y = batch_norm(f"{prefix}.bn3")(_conv(y, width * EXPANSION, 1, 1, f"{prefix}.conv3"))
      x = keras.layers.ReLU(name=f"{prefix}.out")(keras.layers.Add()([shortcut, y]))
  return keras.Model(inputs, x, name=name)


# Keras weight attribute -> the PyTorch parameter or buffer suffix.
_BN_NAMES = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
             ("moving_variance", "running_var"))


def state_dict_names(layers: Iterable[keras.layers.Layer]) -> Dict[str, Tuple[tf.Variable, bool]]:
  """{PyTorch state-dict name: (Keras variable, is a kernel)} of the Conv2D,
  Dense and BatchNormalization layers among `layers`, named as their Keras layer
  names say (`layer1.0.conv1` -> `layer1.0.conv1.weight`). Conv kernels are stored
  [kh, kw, in, out] here and [out, in, kh, kw] in PyTorch; Dense kernels [in, out]
  and [out, in]."""
  names = {}
  for layer in layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      for attr, torch_name in _BN_NAMES:
        variable = getattr(layer, attr, None)
        if variable is not None:
          names[f"{layer.name}.{torch_name}"] = (variable, False)
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      names[f"{layer.name}.weight"] = (layer.kernel, True)
      if layer.use_bias:
        names[f"{layer.name}.bias"] = (layer.bias, False)
  return names


# A layout of `state_dict_names`: a Keras Dense kernel [in, out] stored by PyTorch as
# a 1x1 Conv2d weight [out, in, 1, 1] (MUNIT's style encoders end in one).
DENSE_AS_1X1_CONV = "dense_as_1x1_conv"


def to_torch_layout(value: np.ndarray, layout=True) -> np.ndarray:
  """A Keras kernel in PyTorch's layout: conv HWIO -> OIHW, dense IO -> OI (or
  O, I, 1, 1 with `layout=DENSE_AS_1X1_CONV`). The result is contiguous: file
  writers such as safetensors store the raw buffer."""
  if layout == DENSE_AS_1X1_CONV:
    return np.ascontiguousarray(value.T[:, :, None, None])
  return np.ascontiguousarray(value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T)


def from_torch_layout(value: np.ndarray, layout=True) -> np.ndarray:
  """A PyTorch weight in Keras's layout: conv OIHW -> HWIO, linear OI -> IO (a 1x1
  conv O, I, 1, 1 -> dense IO with `layout=DENSE_AS_1X1_CONV`)."""
  if layout == DENSE_AS_1X1_CONV:
    if value.ndim != 4 or value.shape[2:] != (1, 1):
      return value  # the caller's shape check names it
    return value[:, :, 0, 0].T
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T


def load_state_dict(names: Mapping[str, Tuple[tf.Variable, bool]],
                    state: Mapping[str, np.ndarray], source: str,
                    ignore_prefixes: Tuple[str, ...] = (), dry_run: bool = False) -> None:
  """Assigns every variable of `names` ({name: (variable, layout)}: False for a
  tensor stored as is, True for a kernel, or DENSE_AS_1X1_CONV) its tensor of
  `state`. A missing tensor, a shape that does not fit, or a tensor of `state`
  that maps to nothing (but PyTorch's `num_batches_tracked` counters and names
  under `ignore_prefixes`) is a `ConfigError` that names them and `source`; nothing
  is assigned then (nor with `dry_run`: the checks only)."""
  leftover = sorted(k for k in state if k not in names and
                    not k.endswith("num_batches_tracked") and
                    not k.startswith(ignore_prefixes))
  missing = sorted(k for k in names if k not in state)
  problems = []
  if missing:
    problems.append(f"missing tensors {_some(missing)} (expected e.g. "
                    f"{_expected(names, missing[:3])})")
  if leftover:
    problems.append(f"tensors that map to no variable: {_some(leftover)}")
  values = {}
  for key, (variable, kernel) in names.items():
    if key not in state:
      continue
    # In the variable's dtype: a float64 model gets float64 weights unrounded.
    value = np.asarray(state[key], dtype=tf.as_dtype(variable.dtype).as_numpy_dtype)
    value = from_torch_layout(value, kernel) if kernel else value
    if tuple(value.shape) != tuple(variable.shape):
      torch_shape = tuple(np.asarray(state[key]).shape)
      want = _expected(names, [key])
      problems.append(f"{key} has shape {torch_shape}, expected {want}")
    values[key] = value
  if problems:
    raise errors.ConfigError(f"{source}: does not fit the network: " + "; ".join(problems))
  if dry_run:
    return
  for key, (variable, _) in names.items():
    variable.assign(values[key])


def _some(keys, limit: int = 8) -> str:
  shown = ", ".join(keys[:limit])
  return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _expected(names, keys) -> str:
  """`name [PyTorch shape]` for `keys`."""
  out = []
  for key in keys:
    variable, kernel = names[key]
    shape = tuple(variable.shape)
    if kernel:
      shape = tuple(to_torch_layout(np.zeros(shape, np.float32), kernel).shape)
    out.append(f"{key} {list(shape)}")
  return ", ".join(out)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The tensors of a PyTorch checkpoint (`.pth`/`.pt`/`.pkl`, read with torch when
  it is installed) or a `.safetensors` file (the `safetensors` package, no torch).
  A DataParallel `module.` prefix is removed. Fails with a message naming `path`."""
  import os  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(path):
    raise errors.ConfigError(f"{path}: file not found")
  if path.endswith(".safetensors"):
    try:
      from safetensors import numpy as safetensors_numpy  # pylint: disable=import-outside-toplevel
      state = safetensors_numpy.load_file(path)
    except Exception as e:  # a truncated or foreign file: say which
      raise errors.ConfigError(f"{path}: not a readable .safetensors file ({e})") from None
  else:
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise errors.ConfigError(
          f"{path}: reading a PyTorch checkpoint needs torch (pip install -e "
          f".[parity]); or give the same weights as a .safetensors file") from None
    try:
      loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.ConfigError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    if isinstance(loaded, dict) and "state_dict" in loaded:
      loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
      raise errors.ConfigError(f"{path}: holds a {type(loaded).__name__}, expected a "
                               f"state dict (name -> tensor)")
    state = {k: v.detach().cpu().numpy() for k, v in loaded.items()
             if hasattr(v, "detach")}
  return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
