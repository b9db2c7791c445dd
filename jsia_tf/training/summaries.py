"""What a run shows in TensorBoard besides scalars: image grids of G and the latent
interpolation strip of V."""

from typing import Dict

import tensorflow as tf

from jsia_tf.models import jsia


def _to_unit(x: tf.Tensor) -> tf.Tensor:
  """[-1, 1] images -> [0, 1] for tf.summary.image."""
  return tf.clip_by_value((tf.cast(x, tf.float32) + 1.0) / 2.0, 0.0, 1.0)


def image_grids(model: jsia.JSIA, x_rgb: tf.Tensor, x_ir: tf.Tensor) -> Dict[str, tf.Tensor]:
  """One grid [1, rows*h, 4*w, 3] per modality: a row per example; columns real,
  generated pair (the other modality), reconstruction, cycle."""
  g = model.generate(x_rgb, x_ir, training=False)
  grids = {}
  for m, other in (("rgb", "ir"), ("ir", "rgb")):
    columns = [g[f"x_{m}_gen"], g[f"x_{m}2{other}"], g[f"x_{m}_recon"], g[f"x_{m}_cycle"]]
    rows = tf.concat([_to_unit(c) for c in columns], axis=2)  # [n, h, 4w, 3]
    grids[f"G/{m}: real | {m}2{other} | recon | cycle"] = tf.reshape(
        rows, [1, -1, rows.shape[2], 3])
  return grids


def interpolation_strip(model: jsia.JSIA, x_1: tf.Tensor, x_2: tf.Tensor,
                        steps: int = 8) -> tf.Tensor:
  """V's latent interpolation (Eq. 14) between two RGB images of different people:
  alpha from 0 to 1 left to right, [1, h, steps*w, 3], decoded by D_rgb."""
  x = model.to_gen_size(tf.stack([x_1, x_2]))
  m = model.encode_content(x)
  z = model.vary(m)["z"]
  s = model.E_s_rgb(x)
  alpha = tf.linspace(0.0, 1.0, steps)
  z_1, z_2 = tf.repeat(z[1:2], steps, 0), tf.repeat(z[0:1], steps, 0)
  s_1, s_2 = tf.repeat(s[1:2], steps, 0), tf.repeat(s[0:1], steps, 0)
  images = _to_unit(model.mix(z_1, z_2, s_1, s_2, alpha, "rgb")["x_mix"])
  return tf.concat(tf.unstack(images), axis=1)[None]
