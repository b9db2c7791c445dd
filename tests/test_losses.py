"""Every loss against values computed by hand or by a direct numpy transcription."""

import math

import numpy as np
import pytest
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import losses


def _np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_kl(p_logits, q_logits, mini=1e-8):
  """The authors' guarded KL (tools: Base.kl_loss), one direction."""
  p, q = _np_softmax(p_logits), _np_softmax(q_logits)
  return (p * np.log(mini + p / (q + mini))).sum(-1)


def test_l1_losses_by_hand():
  x = tf.zeros([2, 2, 2, 3])
  y = tf.concat([tf.fill([1, 2, 2, 3], 0.5), tf.fill([1, 2, 2, 3], -2.0)], 0)
  np.testing.assert_allclose(losses.reconstruction_loss(x, y), [0.5, 2.0])
  np.testing.assert_allclose(losses.cycle_loss(y, x), [0.5, 2.0])
  np.testing.assert_allclose(losses.code_reconstruction_loss(
      tf.constant([[1.0, 2.0], [0.0, 0.0]]), tf.constant([[0.0, 0.0], [1.0, -3.0]])),
                             [1.5, 2.0])


def test_lsgan_by_hand():
  # Two scales; example 0 gets D(fake) = 1 (fooled) everywhere, example 1 gets 0.
  fake = [tf.constant([1.0, 0.0])[:, None, None, None] * tf.ones([2, 4, 2, 1]),
          tf.constant([1.0, 0.0])[:, None, None, None] * tf.ones([2, 2, 1, 1])]
  np.testing.assert_allclose(losses.gan_generator_loss(fake), [0.0, 2.0])
  real = [tf.fill([2, 4, 2, 1], 0.5), tf.fill([2, 2, 1, 1], 1.0)]
  # scale 1: (0.5-1)^2 + fake^2; scale 2: 0 + fake^2.
  np.testing.assert_allclose(losses.gan_discriminator_loss(real, fake),
                             [0.25 + 1 + 0 + 1, 0.25 + 0 + 0 + 0])


def test_variation_loss_by_hand():
  m = tf.ones([1, 2, 2, 1])
  m_recon = tf.zeros([1, 2, 2, 1])
  mu = tf.constant([[[[2.0]], [[0.0]]]])  # [1, 2, 1, 1]: mean mu^2 = 2
  tau = tf.constant([[[[1.0]], [[3.0]]]])  # mean (tau-1)^2 = 2
  np.testing.assert_allclose(losses.variation_loss(m, m_recon, mu, tau), [1 + 2 + 2])


def test_kl_direction_and_value():
  p = np.array([[0.0, 0.0]])  # [0.5, 0.5]
  q = np.array([[math.log(9.0), 0.0]])  # [0.9, 0.1]
  expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
  np.testing.assert_allclose(losses.kl_divergence(tf.constant(p), tf.constant(q)),
                             [expected], rtol=1e-6)
  reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
  np.testing.assert_allclose(losses.kl_divergence(tf.constant(q), tf.constant(p)),
                             [reverse], rtol=1e-6)


def test_kl_guard_is_the_authors():
  """Identical distributions: the exact KL is 0, the authors' guarded one is
  sum_c p_c log(1e-8 + p_c / (p_c + 1e-8)), about 1e-8 (C - 1) for uniform p."""
  uniform = tf.zeros([1, 395], tf.float64)
  got = float(losses.kl_divergence(uniform, uniform)[0])
  p = 1.0 / 395
  assert got == pytest.approx(math.log(1e-8 + p / (p + 1e-8)), rel=1e-6)
  assert got == pytest.approx(-1e-8 * 394, rel=1e-3)
  assert float(losses.kl_divergence(uniform, uniform, mini=0.0)[0]) == 0.0


def test_instance_alignment_is_symmetric_kl_with_real_held_constant():
  rng = np.random.default_rng(0)
  ir, ir2rgb, rgb, rgb2ir = (tf.Variable(rng.standard_normal((3, 5))) for _ in range(4))
  with tf.GradientTape() as tape:
    loss = losses.instance_alignment_loss(ir, ir2rgb, rgb, rgb2ir)
  expected = (_np_kl(ir.numpy(), ir2rgb.numpy()) + _np_kl(ir2rgb.numpy(), ir.numpy()) +
              _np_kl(rgb.numpy(), rgb2ir.numpy()) + _np_kl(rgb2ir.numpy(), rgb.numpy()))
  np.testing.assert_allclose(loss, expected, rtol=1e-9)
  grads = tape.gradient(loss, [ir, ir2rgb, rgb, rgb2ir])
  assert grads[0] is None and grads[2] is None  # the real images are the targets
  assert np.abs(grads[1]).sum() > 0 and np.abs(grads[3]).sum() > 0


def test_local_alignment_averages_stripes():
  rng = np.random.default_rng(1)
  stripes = [rng.standard_normal((2, 6, 4)) for _ in range(4)]
  got = losses.local_alignment_loss(*map(tf.constant, stripes))
  per_stripe = (_np_kl(stripes[0], stripes[1]) + _np_kl(stripes[1], stripes[0]) +
                _np_kl(stripes[2], stripes[3]) + _np_kl(stripes[3], stripes[2]))
  np.testing.assert_allclose(got, per_stripe.mean(axis=1), rtol=1e-9)


def test_label_smoothed_cross_entropy_by_hand():
  logits = tf.constant([[0.0, 0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0, 0.0]])
  # Uniform prediction: CE = log 4 whatever the smoothing.
  got = losses.cross_entropy(logits, tf.constant([2, 0]), label_smoothing=0.1)
  # Row 2: p = [2/5, 1/5, 1/5, 1/5]; target = [0.925, 0.025, 0.025, 0.025].
  row2 = -(0.925 * math.log(0.4) + 3 * 0.025 * math.log(0.2))
  np.testing.assert_allclose(got, [math.log(4.0), row2], rtol=1e-6)


def test_triplet_mines_across_modalities():
  # 1-D features. RGB: a(id0)=0, b(id1)=10. IR: c(id0)=1, d(id0)=4, e(id1)=3.
  f = tf.constant([[0.0], [10.0], [1.0], [4.0], [3.0]])
  labels = tf.constant([0, 1, 0, 0, 1])
  is_ir = tf.constant([False, False, True, True, True])
  got = losses.cross_modality_triplet_loss(f, labels, is_ir, margin=0.3).numpy()
  # a: positives in IR {c:1, d:4} -> 4; negatives in IR {e:3} -> 3: 0.3+4-3 = 1.3
  #    (the RGB negative b and IR-only structure are not mined).
  # b: positive {e:7}; negatives {c:9, d:6} -> 6: 0.3+7-6 = 1.3
  # c: positive {a:1}; negative {b:9}: relu(0.3+1-9) = 0
  # d: positive {a:4}; negative {b:6}: relu(0.3+4-6) = 0
  # e: positive {b:7}; negative {a:3}: 0.3+7-3 = 4.3
  np.testing.assert_allclose(got, [1.3, 1.3, 0.0, 0.0, 4.3], atol=1e-5)


def test_triplet_anchor_without_cross_modality_positive_gives_zero():
  f = tf.constant([[0.0], [1.0], [5.0]])
  got = losses.cross_modality_triplet_loss(f, tf.constant([0, 1, 1]),
                                           tf.constant([False, True, True]))
  np.testing.assert_allclose(got, [0.0, 0.0, 0.0])


def test_mixing_and_unseen_identity_loss():
  z1, z2 = tf.ones([2, 2, 2, 3]), tf.zeros([2, 2, 2, 3])
  s1, s2 = tf.fill([2, 4], 2.0), tf.zeros([2, 4])
  alpha = tf.constant([0.25, 1.0])
  z_mix, s_mix = losses.mix_codes(z1, z2, s1, s2, alpha)
  np.testing.assert_allclose(z_mix[:, 0, 0, 0], [0.25, 1.0])
  np.testing.assert_allclose(s_mix[:, 0], [0.5, 2.0])

  rng = np.random.default_rng(2)
  l1, l2, lmix = (tf.Variable(rng.standard_normal((2, 5))) for _ in range(3))
  a = tf.constant([0.3, 0.8], tf.float64)
  with tf.GradientTape() as tape:
    loss = losses.unseen_identity_loss(lmix, l1, l2, a)
  target = (a.numpy()[:, None] * _np_softmax(l1.numpy()) +
            (1 - a.numpy()[:, None]) * _np_softmax(l2.numpy()))
  expected = (target * (np.log(target) - np.log(_np_softmax(lmix.numpy())))).sum(-1)
  np.testing.assert_allclose(loss, expected, rtol=1e-9)
  g1, g2, gmix = tape.gradient(loss, [l1, l2, lmix])
  assert g1 is None and g2 is None and np.abs(gmix).sum() > 0
  # Equal parents and alpha: the loss is zero when p_mix equals the parents'.
  same = losses.unseen_identity_loss(l1, l1, l1, a)
  np.testing.assert_allclose(same, [0.0, 0.0], atol=1e-12)


def test_total_loss_weights_and_switches():
  # lambda_sl_gan (row 7's term, not Eq. 16's) is on by default: the trainer
  # zeroes it unless --sl_mode=adversarial.
  weights = config_lib.LossWeights(lambda_il=0.0, lambda_lr=0.0, lambda_ui=0.0,
                                   lambda_sl_gan=0.0)
  terms = {"gan": 1.0, "recon": 2.0, "cycle": 3.0, "code": 4.0, "v": 5.0, "id": 6.0}
  got = losses.total_loss({k: tf.constant(v) for k, v in terms.items()}, weights)
  assert float(got) == pytest.approx(1 + 10 * 2 + 10 * 3 + 4 + 5 + 6)
  assert "il" not in weights.active()
  with pytest.raises(ValueError, match=r"active terms \['il'\] were not computed"):
    losses.total_loss({k: tf.constant(v) for k, v in terms.items()},
                      config_lib.LossWeights(lambda_lr=0.0, lambda_ui=0.0, lambda_sl_gan=0.0))
  with pytest.raises(errors.ConfigError, match="--lambda_ui=-1.0 is invalid"):
    config_lib.LossWeights(lambda_ui=-1.0)
