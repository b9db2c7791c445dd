"""V, the variation module (paper Sec. 3.2, Eq. 9-10): a VAE on the content map M.

E_v maps M [B, h, w, c] to the mean mu and the standard deviation tau (positive via
softplus) of a spatial latent z [B, h/4, w/4, latent_channels]; z = mu + tau * eps
(the reparameterisation trick) with the standard normal eps given by the caller
(drawn from a seed in the config), so every draw is reproducible and a training step
can draw it for the global batch and slice its replica's rows. D_v maps z back to a content map. No public code exists
for this module; the sizes are ours (../shared/SPEC.md).
"""

from typing import Dict, Optional

import keras
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf.models import generation


@keras.saving.register_keras_serializable(package="jsia_tf")
class VariationEncoder(generation.FromModelConfig, keras.Model):
  """E_v: M -> {"mu", "tau", "z"}; without eps, z = mu (the mean, for tests and
  inference)."""

  def __init__(self, cfg: config_lib.ModelConfig, content_channels: int, **kwargs):
    super().__init__(**kwargs)
    self._remember(cfg, content_channels=content_channels)
    self.down = [keras.layers.Conv2D(content_channels, 3, 2, "same", activation="relu",
                                     name=f"down{i}") for i in range(2)]
    self.mu = keras.layers.Conv2D(cfg.latent_channels, 1, name="mu")
    self.tau = keras.layers.Conv2D(cfg.latent_channels, 1, name="tau")

  def call(self, m, eps: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    x = m
    for layer in self.down:
      x = layer(x)
    mu = self.mu(x)
    tau = tf.nn.softplus(self.tau(x)) + 1e-4
    z = mu if eps is None else mu + tau * tf.cast(eps, mu.dtype)
    return {"mu": mu, "tau": tau, "z": z}


@keras.saving.register_keras_serializable(package="jsia_tf")
class VariationDecoder(keras.Model):
  """D_v: z [B, h/4, w/4, latent] -> M_recon [B, h, w, c] (ReLU output: M is a
  post-ReLU trunk map)."""

  def __init__(self, content_channels: int, **kwargs):
    super().__init__(**kwargs)
    self.content_channels = content_channels
    self.up = [keras.layers.Conv2D(content_channels, 3, 1, "same", name=f"up{i}")
               for i in range(2)]

  def get_config(self):
    return {**super().get_config(), "content_channels": self.content_channels}

  def call(self, z):
    x = z
    for i, layer in enumerate(self.up):
      x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
      x = layer(x)
      x = tf.nn.relu(x)
    return x
