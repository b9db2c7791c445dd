"""G, the generation module (paper Sec. 3.1): style encoders E_s_rgb / E_s_ir,
AdaIN decoders D_rgb / D_ir and multi-scale patch discriminators Dis_rgb / Dis_ir.
The content encoder E_i is the re-id trunk's E_sl (see feature.py and jsia.py).

Numbers from ../shared/SPEC.md and the authors' `core/networks.py` (MUNIT's blocks):
style encoder 7x7 s1, then four 4x4 s2 convs, ReLU, no norm, global pool, 1x1 to
style_dim; decoder 2 AdaIN residual blocks, nearest x2 upsampling + 5x5 conv
(their LayerNorm, ReLU), 7x7 conv to 3, tanh; AdaIN parameters from an MLP of the
style code; discriminators 4x4 s2 convs c-2c-4c-8c with LeakyReLU 0.2, no norm, 1x1
to 1 channel, 2 scales with 3x3 s2 average pooling between.

Where their details change the numbers, they are theirs: every conv pads by
reflection (PyTorch's ReflectionPad2d, `tf.pad(mode="REFLECT")`), symmetric,
kernel // 2 or 1 for the 4x4 convs; the LayerNorm divides by the UNBIASED standard
deviation plus epsilon; the pooling between scales pads 1 on every side and
averages the valid pixels only (`count_include_pad=False`); G's convs and dense
layers start from PyTorch's default initialisation, the LayerNorm's gamma from
U(0, 1), the discriminators' convs from N(0, 0.02) with zero biases.
"""

from typing import List, Tuple

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib

_EPS = 1e-5


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """The [out_size, in_size] float64 matrix of tf.image.resize's antialiased
  bilinear resampling along one axis: a triangle kernel widened by the downscale
  factor, centred on half-pixel sample positions, cut at the border and
  renormalised (the rules of TensorFlow's ScaleAndTranslate kernel). When
  enlarging, the kernel keeps its width and this is plain bilinear interpolation
  with half-pixel centres and the border clamped: tf.image.resize's "bilinear" and
  PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`."""
  inv_scale = in_size / out_size
  width = max(inv_scale, 1.0)  # the antialiasing: a wider kernel when shrinking
  centres = (np.arange(out_size) + 0.5) * inv_scale
  sources = np.arange(in_size) + 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(sources[None, :] - centres[:, None]) / width)
  return weights / weights.sum(axis=1, keepdims=True)


def antialiased_resize(x: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
  """tf.image.resize(x, size, "bilinear", antialias=True) for images x [B, H, W, ch]
  of static H, W, as two matrix products (equal to 1e-6 in float32), in x's dtype.
  Unlike ScaleAndTranslate, which has no XLA kernel, this compiles under
  jit_compile, and unlike TensorFlow's resize kernels (float32 only) it runs in
  float64, where the parity check needs every op exact. Half-precision images are
  resampled in float32: two products of bfloat16 weights would round each pixel
  to 8 bits."""
  dtype = x.dtype if x.dtype in (tf.float32, tf.float64) else tf.float32
  rows = tf.constant(resize_weights(x.shape[1], size[0]), dtype)
  cols = tf.constant(resize_weights(x.shape[2], size[1]), dtype)
  y = tf.einsum("pw,bowc->bopc", cols, tf.einsum("oh,bhwc->bowc", rows, tf.cast(x, dtype)))
  return tf.cast(y, x.dtype)


class FromModelConfig:
  """get_config / from_config for networks built from a ModelConfig (plus named
  integer arguments such as the content map's channel count)."""

  def _remember(self, cfg: config_lib.ModelConfig, **ints):
    self._cfg_dict, self._ints = config_lib.to_dict(cfg), ints

  def get_config(self):
    return {**super().get_config(), "cfg": self._cfg_dict, **self._ints}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    cfg = config_lib.from_dict(config_lib.ModelConfig, config.pop("cfg"))
    for key in ("trainable", "dtype"):
      config.pop(key, None)
    return cls(cfg, **config)


def instance_norm(x: tf.Tensor, eps: float = _EPS) -> tf.Tensor:
  """Normalises each channel of each image over its spatial positions."""
  mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
  return (x - mean) * tf.math.rsqrt(var + eps)


def adain(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
  """Adaptive instance normalisation, stateless: instance_norm(x) * gamma + beta.

  x [B, H, W, C]; gamma, beta [B, C] produced from the style code. No weights are
  written at call time (unlike MUNIT's PyTorch AdaIN module), so it is safe under
  tf.function and distribution strategies.
  """
  return instance_norm(x) * gamma[:, None, None, :] + beta[:, None, None, :]


def torch_default_init(fan_in: int):
  """(kernel, bias) initialisers of PyTorch's default Conv2d / Linear reset: both
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5) for the
  kernel). New objects per call: an unseeded Keras initialiser takes its seed when
  it is made, so a shared one would give every layer the same draw."""
  bound = 1.0 / np.sqrt(fan_in)
  return (keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
          keras.initializers.RandomUniform(-bound, bound))


def torch_conv(filters: int, kernel: int, stride: int, in_channels: int, name: str,
               activation=None) -> keras.layers.Conv2D:
  """A G conv with PyTorch's default initialisation; pad its input with
  `reflect_pad` (the conv itself is "valid")."""
  kernel_init, bias_init = torch_default_init(in_channels * kernel * kernel)
  return keras.layers.Conv2D(filters, kernel, stride, "valid", activation=activation,
                             kernel_initializer=kernel_init, bias_initializer=bias_init,
                             name=name)


def torch_dense(units: int, in_units: int, name: str, activation=None) -> keras.layers.Dense:
  """A G dense layer with PyTorch's default Linear initialisation."""
  kernel_init, bias_init = torch_default_init(in_units)
  return keras.layers.Dense(units, activation=activation, kernel_initializer=kernel_init,
                            bias_initializer=bias_init, name=name)


def reflect_pad(x: tf.Tensor, pad: int) -> tf.Tensor:
  """PyTorch's ReflectionPad2d(pad) on [B, H, W, C] (the border is not repeated)."""
  if not pad:
    return x
  return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")


def leaky_relu(x: tf.Tensor, alpha: float = 0.2) -> tf.Tensor:
  """PyTorch's LeakyReLU(alpha), `alpha` made in x's dtype. tf.nn.leaky_relu keeps
  alpha in a float32 attribute (0.2 becomes 0.20000000298), 1.5e-8 off in float64;
  the gradient at 0 is alpha, as PyTorch's."""
  return tf.where(x > 0, x, x * tf.constant(alpha, x.dtype))


def avg_pool_exclude_pad(x: tf.Tensor) -> tf.Tensor:
  """PyTorch's AvgPool2d(3, stride=2, padding=1, count_include_pad=False): each
  window averages its pixels inside the image. (Keras's "same" pooling pads only at
  the bottom and right for even sizes: other windows.)"""
  pads = [[0, 0], [1, 1], [1, 1], [0, 0]]
  total = tf.nn.avg_pool2d(tf.pad(x, pads), 3, 2, "VALID")
  inside = tf.nn.avg_pool2d(tf.pad(tf.ones_like(x[..., :1]), pads), 3, 2, "VALID")
  return total / inside


@keras.saving.register_keras_serializable(package="jsia_tf")
class ChannelLayerNorm(keras.layers.Layer):
  """The authors' (MUNIT's) LayerNorm: (x - mean) / (std + eps) with the mean and the
  UNBIASED standard deviation of each image over (H, W, C), then a per-channel affine
  with gamma ~ U(0, 1), beta = 0 (Keras's LayerNormalization over those axes would
  learn H x W x C and divide by sqrt(var + eps))."""

  def build(self, input_shape):
    c = input_shape[-1]
    self.gamma = self.add_weight(shape=(c,), initializer=keras.initializers.RandomUniform(
        0.0, 1.0), name="gamma")
    self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

  def call(self, x):
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    n = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    var = tf.reduce_sum(tf.square(x - mean), axis=[1, 2, 3], keepdims=True) / (n - 1.0)
    return (x - mean) / (tf.sqrt(var) + _EPS) * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="jsia_tf")
class StyleEncoder(FromModelConfig, keras.Model):
  """E_s: image [B, h, w, 3] in [-1, 1] -> style code [B, style_dim]."""

  def __init__(self, cfg: config_lib.ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self._remember(cfg)
    c = cfg.style_channels
    self.convs = [torch_conv(c, 7, 1, 3, "conv0", activation="relu")]
    widths = (c, 2 * c, 4 * c, 4 * c, 4 * c)
    for i in range(1, 5):
      self.convs.append(torch_conv(widths[i], 4, 2, widths[i - 1], f"conv{i}",
                                   activation="relu"))
    self.out = torch_dense(cfg.style_dim, widths[-1], "to_style")

  def call(self, x):
    for conv in self.convs:
      x = conv(reflect_pad(x, 3 if conv.kernel_size[0] == 7 else 1))
    return self.out(tf.reduce_mean(x, axis=[1, 2]))


@keras.saving.register_keras_serializable(package="jsia_tf")
class Decoder(FromModelConfig, keras.Model):
  """D: (content map M [B, h, w, c], style code [B, style_dim]) -> image [B, 2h, 2w, 3]
  in [-1, 1]: 2 AdaIN residual blocks, x2 nearest upsampling + 5x5 conv + LayerNorm +
  ReLU, 7x7 conv to RGB, tanh."""

  NUM_ADAIN = 4  # 2 residual blocks x 2 AdaIN layers

  def __init__(self, cfg: config_lib.ModelConfig, content_channels: int, **kwargs):
    super().__init__(**kwargs)
    self._remember(cfg, content_channels=content_channels)
    c = content_channels
    self.content_channels = c
    self.mlp = [torch_dense(cfg.mlp_dim, cfg.style_dim, "mlp0", activation="relu"),
                torch_dense(cfg.mlp_dim, cfg.mlp_dim, "mlp1", activation="relu"),
                torch_dense(2 * self.NUM_ADAIN * c, cfg.mlp_dim, "adain_params")]
    self.res_convs = [torch_conv(c, 3, 1, c, f"res{i}") for i in range(self.NUM_ADAIN)]
    up = max(c // 2, 8)
    self.up_conv = torch_conv(up, 5, 1, c, "up_conv")
    self.up_norm = ChannelLayerNorm(name="up_norm")
    self.to_rgb = torch_conv(3, 7, 1, up, "to_rgb", activation="tanh")

  def get_build_config(self):
    # Two inputs: Keras cannot rebuild from one input shape; it builds on first call.
    return None

  def call(self, content, style):
    params = style
    for layer in self.mlp:
      params = layer(params)
    # [B, 4 AdaIN layers, (beta, gamma), C]: the authors' order (each layer's
    # "mean" then its "std"), so their MLP's weights load unpermuted.
    params = tf.reshape(params, [-1, self.NUM_ADAIN, 2, self.content_channels])
    x = content
    for block in range(2):
      y = x
      for j in range(2):
        k = 2 * block + j
        y = adain(self.res_convs[k](reflect_pad(y, 1)), params[:, k, 1], params[:, k, 0])
        if j == 0:
          y = tf.nn.relu(y)
      x = x + y
    x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)  # nearest x2
    x = tf.nn.relu(self.up_norm(self.up_conv(reflect_pad(x, 2))))
    return self.to_rgb(reflect_pad(x, 3))


def dis_init() -> keras.initializers.Initializer:
  """The discriminators' N(0, 0.02) (the authors' `weights_init('gaussian')`)."""
  return keras.initializers.RandomNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="jsia_tf")
class MultiScaleDiscriminator(FromModelConfig, keras.Model):
  """Dis: image [B, h, w, 3] -> one patch map [B, h_s, w_s, 1] per scale (LSGAN)."""

  def __init__(self, cfg: config_lib.ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self._remember(cfg)
    c = cfg.dis_channels
    self.scales = []
    for s in range(cfg.dis_scales):
      # A new initialiser per layer: an unseeded Keras initialiser takes its seed
      # from Python's generator (seeded from the config by JSIA) when it is made,
      # and one shared object would give every layer, scale and discriminator the
      # same draw.
      layers = [keras.layers.Conv2D(w, 4, 2, "valid", kernel_initializer=dis_init(),
                                    name=f"s{s}_conv{i}")
                for i, w in enumerate((c, 2 * c, 4 * c, 8 * c))]
      layers.append(keras.layers.Conv2D(1, 1, kernel_initializer=dis_init(),
                                        name=f"s{s}_out"))
      self.scales.append(layers)

  def call(self, x) -> List[tf.Tensor]:
    outputs = []
    for s, layers in enumerate(self.scales):
      if s:
        x = avg_pool_exclude_pad(x)
      y = x
      for layer in layers[:-1]:
        y = leaky_relu(layer(reflect_pad(y, 1)))
      outputs.append(layers[-1](y))
    return outputs
