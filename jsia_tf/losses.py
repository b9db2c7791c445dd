"""Every loss of the paper, one pure function per equation.

Each function returns PER-EXAMPLE values [B] (never a batch mean), so the training
step can reduce them with `tf.nn.compute_average_loss` over the global batch, which
is what keeps the loss scale right under any number of replicas. Shapes: B batch, C
identities (classes), n stripes, H x W x ch images or feature maps.

The KL conventions are those of ../shared/SPEC.md: instance-level alignment is the
symmetric KL(p_real || p_fake) + KL(p_fake || p_real) with p_real held constant (the
generated image is pulled towards the real one); unseen-identity (UI) mixing is
KL(stop_grad(alpha p1 + (1 - alpha) p2) || p_mix), a soft-label classification.
"""

from typing import Dict, Sequence

import keras
import tensorflow as tf

from jsia_tf import config as config_lib


def loss_dtype() -> tf.DType:
  """The dtype every loss is computed in: float32 under the float32 and the
  mixed-precision policies; float64 under a float64 policy (the parity checks)."""
  if keras.mixed_precision.global_policy().compute_dtype == "float64":
    return tf.float64
  return tf.float32


def for_loss(tensor: tf.Tensor) -> tf.Tensor:
  """A network output in `loss_dtype()` (non-float tensors pass unchanged)."""
  return tf.cast(tensor, loss_dtype()) if tensor.dtype.is_floating else tensor


def _mean_per_example(x: tf.Tensor) -> tf.Tensor:
  """Mean over every axis but the first: [B, ...] -> [B]."""
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def reconstruction_loss(x: tf.Tensor, x_recon: tf.Tensor) -> tf.Tensor:
  """Eq. (4), one modality's term: ||x - D(E_i(x), E_s(x))||_1 as a mean absolute error.

  x, x_recon: [B, H, W, 3] -> [B]. L_recon sums the RGB and IR terms.
  """
  return _mean_per_example(tf.abs(x - x_recon))


def cycle_loss(x: tf.Tensor, x_cycle: tf.Tensor) -> tf.Tensor:
  """Eq. (5), one modality's term: ||x - x_{rgb2ir2rgb}||_1 (or ir2rgb2ir), where
  the cycle image is decoded from the re-encoded fake's content and the ORIGINAL real
  style code (Eq. 6). x, x_cycle: [B, H, W, 3] -> [B]."""
  return _mean_per_example(tf.abs(x - x_cycle))


def code_reconstruction_loss(code: tf.Tensor, code_recon: tf.Tensor) -> tf.Tensor:
  """Content / style code reconstruction L1 (the authors' code; not numbered in the
  paper): ||E(x_fake) - code||_1. code, code_recon: [B, ...] -> [B]."""
  return _mean_per_example(tf.abs(code - code_recon))


def gan_generator_loss(dis_fake: Sequence[tf.Tensor]) -> tf.Tensor:
  """Eq. (7), generator side, as LSGAN: sum over scales of mean (D(x_fake) - 1)^2.

  dis_fake: one [B, h_s, w_s, 1] map per discriminator scale -> [B].
  """
  return tf.add_n([_mean_per_example(tf.square(d - 1.0)) for d in dis_fake])


def gan_discriminator_loss(dis_real: Sequence[tf.Tensor],
                           dis_fake: Sequence[tf.Tensor]) -> tf.Tensor:
  """Eq. (7), discriminator side, as LSGAN: sum over scales of
  mean (D(x_real) - 1)^2 + mean D(x_fake)^2. Per scale [B, h_s, w_s, 1] -> [B]."""
  return tf.add_n([_mean_per_example(tf.square(r - 1.0)) + _mean_per_example(
      tf.square(f)) for r, f in zip(dis_real, dis_fake)])


def modality_discriminator_loss(dis_rgb: Sequence[tf.Tensor],
                                dis_ir: Sequence[tf.Tensor]) -> tf.Tensor:
  """Table 3 row 7 (SL without disentanglement, a feature-level GAN as in cmGAN),
  the modality discriminator's side, LSGAN: RGB features are labelled 1, IR 0.
  dis_rgb, dis_ir: its [B, h, w, 1] maps on E_sl's DETACHED maps -> [B]."""
  return gan_discriminator_loss(dis_rgb, dis_ir)


def modality_confusion_loss(dis_rgb: Sequence[tf.Tensor],
                            dis_ir: Sequence[tf.Tensor]) -> tf.Tensor:
  """Table 3 row 7, E_sl's side: the modality discriminator's loss with the labels
  flipped (RGB 0, IR 1), so that E_sl learns maps whose modality it cannot tell.
  dis_rgb, dis_ir: [B, h, w, 1] -> [B]."""
  return gan_discriminator_loss(dis_ir, dis_rgb)


def variation_loss(m: tf.Tensor, m_recon: tf.Tensor, mu: tf.Tensor,
                   tau: tf.Tensor) -> tf.Tensor:
  """Eq. (10): L_v = ||M - M_recon||_1 + ||mu||^2 + ||tau - 1||^2, as written in the
  paper (each term a mean over its elements).

  m, m_recon: [B, h, w, c] content maps; mu, tau: [B, h', w', c'] latent mean and
  standard deviation -> [B].
  """
  return (_mean_per_example(tf.abs(m - m_recon)) + _mean_per_example(tf.square(mu)) +
          _mean_per_example(tf.square(tau - 1.0)))


def kl_divergence(p_logits: tf.Tensor, q_logits: tf.Tensor,
                  mini: float = 1e-8) -> tf.Tensor:
  """KL(p || q) of softmax(logits) as the authors' `kl_loss` computes it:
  sum_c p_c log(mini + p_c / (q_c + mini)). [..., C] -> [...]. The `mini` guards
  shift a near-zero KL by about C x mini, so the exact form would not match their
  IL numbers (mini=0 gives it)."""
  p = tf.nn.softmax(p_logits, axis=-1)
  q = tf.nn.softmax(q_logits, axis=-1)
  return tf.reduce_sum(p * tf.math.log(mini + p / (q + mini)), axis=-1)


def _aligned_kl(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
  """KL(p_real || p_fake) + KL(p_fake || p_real) with p_real held constant."""
  real = tf.stop_gradient(real_logits)
  return kl_divergence(real, fake_logits) + kl_divergence(fake_logits, real)


def instance_alignment_loss(logits_ir: tf.Tensor, logits_ir2rgb: tf.Tensor,
                            logits_rgb: tf.Tensor, logits_rgb2ir: tf.Tensor) -> tf.Tensor:
  """Eq. (11): KL alignment of the pairs (x_ir, x_ir2rgb) and (x_rgb2ir, x_rgb).

  Logits of the global classifier C: [B, C] each -> [B] (the two pair terms summed;
  row b of the IR and RGB batches are different images, both in example b).
  """
  return _aligned_kl(logits_ir, logits_ir2rgb) + _aligned_kl(logits_rgb, logits_rgb2ir)


def local_alignment_loss(stripes_ir: tf.Tensor, stripes_ir2rgb: tf.Tensor,
                         stripes_rgb: tf.Tensor, stripes_rgb2ir: tf.Tensor) -> tf.Tensor:
  """Eq. (12): Eq. (11) per horizontal stripe, with the stripe classifiers C_n,
  averaged over the n stripes. Logits [B, n, C] each -> [B]."""
  return tf.reduce_mean(_aligned_kl(stripes_ir, stripes_ir2rgb) +
                        _aligned_kl(stripes_rgb, stripes_rgb2ir), axis=1)


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor,
                  label_smoothing: float = 0.1) -> tf.Tensor:
  """Eq. (13), L_cls: label-smoothed cross-entropy. logits [B, C], labels [B] -> [B]."""
  num_classes = tf.shape(logits)[-1]
  target = tf.one_hot(labels, num_classes, dtype=logits.dtype)
  smooth = tf.cast(label_smoothing, logits.dtype)
  target = target * (1.0 - smooth) + smooth / tf.cast(num_classes, logits.dtype)
  return -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def pairwise_distances(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """Euclidean distances [N, M] between rows of a [N, D] and b [M, D]; the clamp
  keeps the gradient of sqrt finite at zero distance."""
  squared = (tf.reduce_sum(tf.square(a), 1)[:, None] +
             tf.reduce_sum(tf.square(b), 1)[None, :] - 2.0 * tf.matmul(a, b, transpose_b=True))
  return tf.sqrt(tf.maximum(squared, 1e-12))


def cross_modality_triplet_loss(features: tf.Tensor, labels: tf.Tensor,
                                is_ir: tf.Tensor, margin: float = 0.3) -> tf.Tensor:
  """Eq. (13), L_triplet: batch-hard triplet with cross-modality mining.

  Every image is an anchor; its hardest positive is the FARTHEST image of the same
  identity in the OTHER modality and its hardest negative the CLOSEST image of another
  identity in the other modality (RGB anchors mine within IR and vice versa).
  Euclidean distance on pre-BN features. features [N, D], labels [N], is_ir [N] bool
  -> [N]; an anchor without a positive or negative in the other modality gives 0.
  """
  dist = pairwise_distances(features, features)
  same_id = tf.equal(labels[:, None], labels[None, :])
  other_modality = tf.not_equal(is_ir[:, None], is_ir[None, :])
  positive = same_id & other_modality
  negative = ~same_id & other_modality
  big = tf.reduce_max(dist) + 1.0
  hardest_positive = tf.reduce_max(tf.where(positive, dist, 0.0), axis=1)
  hardest_negative = tf.reduce_min(tf.where(negative, dist, big), axis=1)
  valid = tf.reduce_any(positive, 1) & tf.reduce_any(negative, 1)
  loss = tf.nn.relu(margin + hardest_positive - hardest_negative)
  return tf.where(valid, loss, 0.0)


def mix_codes(z_1: tf.Tensor, z_2: tf.Tensor, s_1: tf.Tensor, s_2: tf.Tensor,
              alpha: tf.Tensor):
  """Eq. (14): z_mix = alpha z_1 + (1 - alpha) z_2, s_mix likewise.

  z: [B, h, w, c] latent maps, s: [B, style_dim] style codes, alpha [B] in [0, 1]
  -> (z_mix, s_mix), in the codes' dtype (alpha is cast: under mixed precision the
  codes are half precision, the draws float32).
  """
  alpha = tf.cast(alpha, z_1.dtype)
  a_z = tf.reshape(alpha, [-1] + [1] * (len(z_1.shape) - 1))
  a_s = tf.reshape(alpha, [-1] + [1] * (len(s_1.shape) - 1))
  return a_z * z_1 + (1.0 - a_z) * z_2, a_s * s_1 + (1.0 - a_s) * s_2


def unseen_identity_loss(logits_mix: tf.Tensor, logits_1: tf.Tensor,
                         logits_2: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
  """Eq. (15): the mixed image's prediction must match the mixture of its parents'
  predictions: KL(stop_grad(alpha p_1 + (1 - alpha) p_2) || p_mix).

  logits [B, C] each, alpha [B] -> [B].
  """
  a = tf.cast(alpha, logits_1.dtype)[:, None]  # the draws are float32
  target = tf.stop_gradient(a * tf.nn.softmax(logits_1) + (1.0 - a) * tf.nn.softmax(logits_2))
  log_target = tf.math.log(tf.maximum(target, 1e-12))
  return tf.reduce_sum(target * (log_target - tf.nn.log_softmax(logits_mix)), axis=-1)


def total_loss(terms: Dict[str, tf.Tensor], weights: config_lib.LossWeights) -> tf.Tensor:
  """Eq. (16): sum of weight x term over the active terms.

  `terms` maps term names ("gan", "recon", "cycle", "code", "v", "id", "il", "lr",
  "ui") to per-example [B] values or already-reduced scalars. A term with weight 0
  may be absent; an active term that is absent is an error (it would silently drop
  a loss). With no active term the total is 0.
  """
  active = weights.active()
  missing = sorted(set(active) - set(terms))
  if missing:
    raise ValueError(f"total_loss: active terms {missing} were not computed")
  if not active:
    return tf.zeros([])
  return tf.add_n([active[name] * terms[name] for name in sorted(active)])
