"""G, the generation module (paper Sec. 3.1): style encoders E_s_rgb / E_s_ir,
AdaIN decoders D_rgb / D_ir and multi-scale patch discriminators Dis_rgb / Dis_ir.
The content encoder E_i is the re-id trunk's E_sl (see feature.py and jsia.py).

Numbers from ../shared/SPEC.md (the authors' code): style encoder 7x7 s1, then four
4x4 s2 convs, ReLU, no norm, global pool, 1x1 to style_dim; decoder 2 AdaIN residual
blocks, nearest x2 upsampling + 5x5 conv (LayerNorm, ReLU), 7x7 conv to 3, tanh;
AdaIN parameters from an MLP of the style code; discriminators 4x4 s2 convs
c-2c-4c-8c with LeakyReLU 0.2, no norm, 1x1 to 1 channel, 2 scales with 3x3 s2
average pooling between, weights N(0, 0.02).
"""

from typing import List, Tuple

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib

_EPS = 1e-5


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """The [out_size, in_size] matrix of tf.image.resize's antialiased bilinear
  resampling along one axis: a triangle kernel widened by the downscale factor,
  centred on half-pixel sample positions, cut at the border and renormalised (the
  rules of TensorFlow's ScaleAndTranslate kernel)."""
  inv_scale = in_size / out_size
  width = max(inv_scale, 1.0)  # the antialiasing: a wider kernel when shrinking
  centres = (np.arange(out_size) + 0.5) * inv_scale
  sources = np.arange(in_size) + 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(sources[None, :] - centres[:, None]) / width)
  return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def antialiased_resize(x: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
  """tf.image.resize(x, size, "bilinear", antialias=True) for images x [B, H, W, ch]
  of static H, W, as two matrix products (equal to 1e-6). Unlike ScaleAndTranslate,
  which has no XLA kernel, this compiles under jit_compile; it keeps x's dtype."""
  rows = tf.constant(resize_weights(x.shape[1], size[0]), x.dtype)
  cols = tf.constant(resize_weights(x.shape[2], size[1]), x.dtype)
  return tf.einsum("pw,bowc->bopc", cols, tf.einsum("oh,bhwc->bowc", rows, x))


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


@keras.saving.register_keras_serializable(package="jsia_tf")
class ChannelLayerNorm(keras.layers.Layer):
  """MUNIT's LayerNorm: normalise each image over (H, W, C), then a per-channel
  affine (Keras's LayerNormalization over those axes would learn H x W x C)."""

  def build(self, input_shape):
    c = input_shape[-1]
    self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
    self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

  def call(self, x):
    mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + _EPS) * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="jsia_tf")
class StyleEncoder(FromModelConfig, keras.Model):
  """E_s: image [B, h, w, 3] in [-1, 1] -> style code [B, style_dim]."""

  def __init__(self, cfg: config_lib.ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self._remember(cfg)
    c = cfg.style_channels
    self.convs = [keras.layers.Conv2D(c, 7, 1, "same", activation="relu", name="conv0")]
    for i, width in enumerate((2 * c, 4 * c, 4 * c, 4 * c), start=1):
      self.convs.append(keras.layers.Conv2D(width, 4, 2, "same", activation="relu",
                                            name=f"conv{i}"))
    self.out = keras.layers.Dense(cfg.style_dim, name="to_style")

  def call(self, x):
    for conv in self.convs:
      x = conv(x)
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
    self.mlp = [keras.layers.Dense(cfg.mlp_dim, activation="relu", name="mlp0"),
                keras.layers.Dense(cfg.mlp_dim, activation="relu", name="mlp1"),
                keras.layers.Dense(2 * self.NUM_ADAIN * c, name="adain_params")]
    self.res_convs = [keras.layers.Conv2D(c, 3, 1, "same", name=f"res{i}")
                      for i in range(self.NUM_ADAIN)]
    self.up_conv = keras.layers.Conv2D(max(c // 2, 8), 5, 1, "same", name="up_conv")
    self.up_norm = ChannelLayerNorm(name="up_norm")
    self.to_rgb = keras.layers.Conv2D(3, 7, 1, "same", activation="tanh", name="to_rgb")

  def get_build_config(self):
    # Two inputs: Keras cannot rebuild from one input shape; it builds on first call.
    return None

  def call(self, content, style):
    params = style
    for layer in self.mlp:
      params = layer(params)
    # [B, 4 AdaIN layers, (gamma, beta), C]
    params = tf.reshape(params, [-1, self.NUM_ADAIN, 2, self.content_channels])
    x = content
    for block in range(2):
      y = x
      for j in range(2):
        k = 2 * block + j
        y = adain(self.res_convs[k](y), params[:, k, 0], params[:, k, 1])
        if j == 0:
          y = tf.nn.relu(y)
      x = x + y
    x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)  # nearest x2
    x = tf.nn.relu(self.up_norm(self.up_conv(x)))
    return self.to_rgb(x)


def _dis_init() -> keras.initializers.Initializer:
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
      layers = [keras.layers.Conv2D(w, 4, 2, "same", kernel_initializer=_dis_init(),
                                    name=f"s{s}_conv{i}")
                for i, w in enumerate((c, 2 * c, 4 * c, 8 * c))]
      layers.append(keras.layers.Conv2D(1, 1, kernel_initializer=_dis_init(),
                                        name=f"s{s}_out"))
      self.scales.append(layers)
    self.down = keras.layers.AveragePooling2D(3, 2, "same")

  def call(self, x) -> List[tf.Tensor]:
    outputs = []
    for s, layers in enumerate(self.scales):
      if s:
        x = self.down(x)
      y = x
      for layer in layers[:-1]:
        y = tf.nn.leaky_relu(layer(y), alpha=0.2)
      outputs.append(layers[-1](y))
    return outputs
