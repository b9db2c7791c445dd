"""The train step computes what the authors' step computes: the L_id
reduction, gradient routing, one G forward with the pre-update discriminators, the
schedule, initialisation, BN momentum, and weight-0 terms that build nothing."""

import dataclasses
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import losses
from jsia_tf.models import feature
from jsia_tf.models import generation
from jsia_tf.models import jsia
from jsia_tf.training import experiment
from jsia_tf.training import trainer as trainer_lib

from conftest import train_config_from_argv

NUM_CLASSES = 5
OFF = {f.name: 0.0 for f in dataclasses.fields(config_lib.LossWeights)}


def _trainer(loss=None, model=None, **train):
  """A tiny-preset trainer, P=4 x K=2, G on the first 2 identities (4 rows);
  `model`: ModelConfig overrides."""
  model = config_lib.model_config("tiny", **(model or {}))
  data = config_lib.DataConfig(image_height=model.image_height,
                               image_width=model.image_width, batch_p=4, batch_k=2)
  train = config_lib.TrainConfig(**{"workdir": "unused", "warmup_steps": 0,
                                    "joint_steps": 10, "gen_ids": 2, **train})
  cfg = experiment.ExperimentConfig(data, model, config_lib.LossWeights(**(loss or {})), train)
  return trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), NUM_CLASSES)


def _batch(seed=0):
  g = tf.random.Generator.from_seed(seed)
  labels = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
  return {"x_rgb": g.uniform([8, 64, 32, 3], -1, 1), "x_ir": g.uniform([8, 64, 32, 3], -1, 1),
          "label_rgb": labels, "label_ir": labels}


@pytest.fixture
def eagerly():
  """Steps run eagerly: the same ops without tracing (seconds, not tens of them)."""
  tf.config.run_functions_eagerly(True)
  yield
  tf.config.run_functions_eagerly(False)


def _is_zero(grads):
  return all(g is None or float(tf.reduce_max(tf.abs(g))) == 0.0 for g in grads)


def _variables(*nets):
  return [v for net in nets for v in net.trainable_variables]


# ---- L_id --------------------------------------------------------------------------

def _np_ce(logits, labels, eps=0.1):
  """Label-smoothed CE, mean over the batch (the authors' CrossEntropyLabelSmooth)."""
  log_p = logits - logits.max(1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
  target = np.full(logits.shape, eps / logits.shape[1])
  target[np.arange(len(labels)), labels] += 1.0 - eps
  return float(np.mean(-(target * log_p).sum(1)))


def _np_triplet(anchors, others, labels, margin=0.3):
  """Batch hard in the other modality, one direction, mean over anchors."""
  losses_ = []
  for a, la in zip(anchors, labels):
    d = np.sqrt(((others - a) ** 2).sum(1))
    hardest_positive = max(d[i] for i in range(len(d)) if labels[i] == la)
    hardest_negative = min(d[i] for i in range(len(d)) if labels[i] != la)
    losses_.append(max(0.0, margin + hardest_positive - hardest_negative))
  return float(np.mean(losses_))


def test_id_loss_is_the_mean_of_the_modalities_ce_and_of_the_triplet_directions():
  tr = _trainer({**OFF, "lambda_id": 1.0, "lambda_lr": 1.0})
  rng = np.random.default_rng(0)
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  out = {}
  for k in ("rgb", "ir", "rgb_gen", "ir_gen", "rgb2ir", "ir2rgb"):
    out[f"F_{k}_logits"] = tf.constant(rng.normal(size=(8, NUM_CLASSES)), tf.float32)
    out[f"F_{k}_stripe_logits"] = tf.constant(rng.normal(size=(8, 4, NUM_CLASSES)),
                                              tf.float32)
    out[f"F_{k}_v"] = tf.constant(rng.normal(size=(8, 3)), tf.float32)
  batch = {"label_rgb": tf.constant(labels), "label_ir": tf.constant(labels)}
  only_id = config_lib.LossWeights(**{**OFF, "lambda_id": 1.0})
  got = float(tr.loss_terms(out, batch, only_id)["id"])
  np_ = {k: out[f"F_{k}_logits"].numpy() for k in ("rgb", "ir")}
  v_rgb, v_ir = out["F_rgb_v"].numpy(), out["F_ir_v"].numpy()
  ce = (_np_ce(np_["rgb"], labels) + _np_ce(np_["ir"], labels)) / 2
  triplet = (_np_triplet(v_rgb, v_ir, labels) + _np_triplet(v_ir, v_rgb, labels)) / 2
  assert triplet > 0.05 and ce > 1.0  # both parts matter in this check
  assert got == pytest.approx(ce + triplet, rel=1e-5)
  # Its parts are reported too (TensorBoard), with the training accuracy.
  parts = tr.loss_terms(out, batch, only_id)
  assert float(parts["id_ce_rgb"]) == pytest.approx(_np_ce(np_["rgb"], labels), rel=1e-5)
  assert float(parts["id_ce_ir"]) == pytest.approx(_np_ce(np_["ir"], labels), rel=1e-5)
  assert float(parts["id_triplet"]) == pytest.approx(triplet, rel=1e-5)
  for k in ("rgb", "ir"):
    assert float(parts[f"acc_{k}"]) == pytest.approx(
        np.mean(np_[k].argmax(1) == labels), abs=1e-6)
  assert "id_stripe_ce" not in parts
  # The stripe classifiers' CE (with LR on) is reduced the same way.
  with_lr = float(tr.loss_terms(out, batch, tr.weights["joint"])["id"])
  stripes = {k: out[f"F_{k}_stripe_logits"].numpy() for k in ("rgb", "ir")}
  stripe_ce = np.mean([(_np_ce(stripes["rgb"][:, i], labels) +
                        _np_ce(stripes["ir"][:, i], labels)) / 2 for i in range(4)])
  assert with_lr == pytest.approx(ce + stripe_ce + triplet, rel=1e-5)
  assert float(tr.loss_terms(out, batch, tr.weights["joint"])["id_stripe_ce"]) == (
      pytest.approx(stripe_ce, rel=1e-5))


# ---- gradient routing ----------------------------------------------------------------

@pytest.mark.parametrize("term", ["il", "lr", "ui"])
def test_alignment_terms_train_F_only(term):
  """With only IL, LR or UI weighted, G and V get exactly no gradient (the generated
  images enter F detached) and F does; --align_trains_g is the variant where G
  does."""
  for align_trains_g in (False, True):
    tr = _trainer({**OFF, f"lambda_{term}": 1.0}, align_trains_g=align_trains_g)
    m = tr.model
    report, grads = tr.gradients(_batch(), tr.global_draws(0), "joint")
    assert float(report[term]) > 0 and set(grads) == {"G", "F"}
    generator = _variables(m.D_rgb, m.D_ir, m.E_s_rgb, m.E_s_ir)
    by_name = dict(zip([v.path for v in tr.groups["G"]], grads["G"]))
    assert _is_zero(by_name[v.path] for v in generator) != align_trains_g, align_trains_g
    # V only shapes the mixes, through z_mix.
    v_zero = _is_zero(by_name[v.path] for v in _variables(m.E_v, m.D_v))
    assert v_zero != (align_trains_g and term == "ui")
    f_by_name = dict(zip([v.path for v in tr.groups["F"]], grads["F"]))
    assert not _is_zero(f_by_name[v.path] for v in m.F.E_il.trainable_variables)


def test_unpaired_lr_aligns_each_real_image_with_the_other_modalitys_real_image():
  """--lr_pairs=unpaired (Table 3 row 8): Eq. (12) between row b's real RGB and real
  IR images of the G sub-batch (one person: the rows are identity-aligned), no F
  pass on the generated pairs, and the gradient reaches F through both reals."""
  tr = _trainer({**OFF, "lambda_lr": 1.0}, lr_pairs="unpaired")
  assert not tr.passes["joint"].pairs and tr.passes["joint"].gen_reals
  m, b = tr.model, _batch()
  draws = tr.global_draws(0)
  g_rows = slice(0, tr.gen_rows)
  np.testing.assert_array_equal(b["label_rgb"][g_rows], b["label_ir"][g_rows])
  report, grads = tr.gradients(b, draws, "joint")
  out = m.forward(b["x_rgb"], b["x_ir"], draws, tr.partner, gen_rows=tr.gen_rows,
                  training=True, passes=tr.passes["joint"])
  assert "F_rgb2ir_logits" not in out and "F_ir2rgb_logits" not in out
  rgb, ir = out["F_rgb_gen_stripe_logits"], out["F_ir_gen_stripe_logits"]
  want = tf.reduce_mean(losses.local_alignment_loss(ir, rgb, rgb, ir))
  assert float(report["lr"]) == pytest.approx(float(want), rel=1e-4)
  assert float(report["lr"]) > 0
  f_by_name = dict(zip([v.path for v in tr.groups["F"]], grads["F"]))
  assert not _is_zero(f_by_name[v.path] for v in m.F.E_il.trainable_variables)
  # The generated-pair LR of the same weights is another number.
  paired = _trainer({**OFF, "lambda_lr": 1.0})
  assert float(paired.gradients(b, draws, "joint")[0]["lr"]) != pytest.approx(
      float(report["lr"]), rel=1e-3)


def test_il_compares_each_fake_with_its_real_image_at_generation_size():
  """The real side of IL is the G batch's real image through the fake's path
  (down to generation size, up again), not the sharper re-id image."""
  tr = _trainer()
  m, b = tr.model, _batch()
  out = m.forward(b["x_rgb"], b["x_ir"], tr.global_draws(0), tr.partner,
                  gen_rows=tr.gen_rows, training=False)
  x = b["x_rgb"][:tr.gen_rows]
  want = m.F(m.to_image_size(m.to_gen_size(x)))["logits"]
  np.testing.assert_allclose(out["F_rgb_gen_logits"], want, atol=1e-5)
  assert float(tf.reduce_max(tf.abs(want - m.F(x)["logits"]))) > 1e-4
  np.testing.assert_allclose(out["F_rgb2ir_logits"],
                             m.F(m.to_image_size(out["x_rgb2ir"]))["logits"], atol=1e-5)


def test_code_term_trains_G_fully_and_never_E_sl():
  """The authors' routing: the code term's gradient reaches the decoders and both
  sides of the style reconstruction (its target is not detached), and not E_sl."""
  tr = _trainer({**OFF, "lambda_code": 1.0, "lambda_id": 1.0})
  m, b = tr.model, _batch()
  draws = tr.global_draws(0)
  report, grads = tr.gradients(b, draws, "joint")
  with tf.GradientTape() as tape:
    out = m.forward(b["x_rgb"], b["x_ir"], draws, tr.partner, gen_rows=tr.gen_rows,
                    training=True, passes=tr.passes["joint"])
    code = tf.add_n([tf.reduce_mean(tf.abs(out[a] - out[b_]))
                     for a, b_ in (("M_rgb2ir", "M_rgb"), ("M_ir2rgb", "M_ir"),
                                   ("s_rgb2ir", "s_ir"), ("s_ir2rgb", "s_rgb"))])
  assert float(report["code"]) == pytest.approx(float(code), rel=1e-5)
  _assert_same_gradients(grads["G"], tape.gradient(code, tr.groups["G"]), tr.groups["G"])
  by_name = dict(zip([v.path for v in tr.groups["G"]], grads["G"]))
  for net in (m.E_s_rgb, m.E_s_ir, m.D_rgb, m.D_ir):
    assert not _is_zero(by_name[v.path] for v in net.trainable_variables), net.name
  # F's gradient is the re-id term's alone: the code term adds nothing to E_sl.
  with tf.GradientTape() as tape:
    out = m.forward(b["x_rgb"], b["x_ir"], draws, tr.partner, gen_rows=tr.gen_rows,
                    training=True, passes=tr.passes["joint"])
    reid = tr.loss_terms(out, b, config_lib.LossWeights(**{**OFF, "lambda_id": 1.0}))["id"]
  _assert_same_gradients(grads["F"], tape.gradient(reid, tr.groups["F"]), tr.groups["F"])


@pytest.fixture
def float64():
  """Every layer, variable, input and loss in float64: an identity between two
  routings of the same gradients then holds to 1e-15 of each variable's largest
  gradient (measured), where float32's rounding on the subtraction of near-equal
  gradients (1e-7 absolute) would fail a correct routing by chance. A routing
  error moves a gradient by the code term's share, far more than the 1e-10 the
  tests allow."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("float64")
  yield
  keras.mixed_precision.set_global_policy(previous)


def test_float64_step_is_the_float32_step_in_float64(float64):
  """The float64 switch (the parity check's): one joint step's loss terms equal the
  float32 step's to 1e-4 from the same weights, and every variable, gradient and
  output is float64."""
  tr64 = _trainer()
  keras.mixed_precision.set_global_policy("float32")
  tr32 = _trainer()
  for a, b in zip(tr64.model.weights, tr32.model.weights):
    a.assign(tf.cast(b, a.dtype))
  b32 = _batch()
  b64 = {k: tf.cast(v, tf.float64) if v.dtype.is_floating else v for k, v in b32.items()}
  draws = tr32.global_draws(0)
  report32, _ = tr32.gradients(b32, draws, "joint")
  keras.mixed_precision.set_global_policy("float64")
  out = tr64.model.forward(b64["x_rgb"], b64["x_ir"], draws, tr64.partner,
                           gen_rows=tr64.gen_rows, training=True,
                           passes=tr64.passes["joint"])
  report64, grads64 = tr64.gradients(b64, draws, "joint")
  assert {tf.as_dtype(v.dtype) for v in tr64.model.weights} == {tf.float64}
  assert {g.dtype for gs in grads64.values() for g in gs if g is not None} == {tf.float64}
  assert [k for k, v in out.items() if v.dtype != tf.float64] == []
  for name, value in report32.items():
    assert report64[name].dtype == tf.float64, name
    np.testing.assert_allclose(float(report64[name]), float(value), rtol=1e-4, atol=1e-6,
                               err_msg=name)


def test_float64_constants_are_not_rounded_through_float32(float64):
  """Under float64, the numbers Python holds (the learning rates, Adam's betas, BN's
  momentum, LeakyReLU's slope) enter the step as float64: each one rounded through
  float32 would put a float64 step 1e-8 to 1e-7 away from PyTorch's."""
  tr = _trainer(lr_f=4.5e-4, beta1_f=0.9)
  for name, optimizer in tr.optimizers.items():
    assert tf.as_dtype(optimizer.learning_rate.dtype) == tf.float64, name
  assert float(tr.optimizers["F"].learning_rate) == 4.5e-4
  # One Adam step, by hand in float64 as torch.optim.Adam computes it.
  opt = trainer_lib.TorchAdam(learning_rate=4.5e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
  w = tf.Variable(np.array([0.3, -1.2, 2.5]), dtype=tf.float64)
  g = np.array([1e-3, -2.0, 0.5])
  opt.apply([tf.constant(g)], [w])
  m, v = 0.1 * g, 0.001 * g ** 2  # 1 - beta
  expected = np.array([0.3, -1.2, 2.5]) - 4.5e-4 * (m / (1 - 0.9)) / (
      np.sqrt(v) / np.sqrt(1 - 0.999) + 1e-8)
  np.testing.assert_allclose(w.numpy(), expected, rtol=1e-15, atol=0)
  # BatchNorm's running mean after one training call: 0.9 * 0 + 0.1 * batch mean.
  bn = feature.batch_norm(False, "bn")
  x = tf.constant(np.random.default_rng(0).normal(size=(6, 5)), tf.float64)
  bn(x, training=True)
  np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * x.numpy().mean(axis=0),
                             rtol=1e-15, atol=0)
  y = generation.leaky_relu(tf.constant([-3.0, 0.0, 2.0], tf.float64))
  assert y.numpy().tolist() == [-3.0 * 0.2, 0.0, 2.0]


@pytest.mark.parametrize("sl_mode", ["shared", "separate"])
def test_one_backward_gives_every_group_the_two_backward_gradients(sl_mode, float64):
  """With every term on, the step's one backward of the total (and its code-term
  correction of E_sl) gives the gradients of the authors' routing taken the long
  way: G the total's, F the total's without the code term."""
  tr = _trainer(model={"sl_mode": sl_mode})
  m, b = tr.model, _batch()
  b = {k: tf.cast(v, tf.float64) if v.dtype.is_floating else v for k, v in b.items()}
  assert {v.dtype for v in tr.groups["G"] + tr.groups["F"]} == {"float64"}
  draws = tr.global_draws(0)
  _, grads = tr.gradients(b, draws, "joint")
  with tf.GradientTape(persistent=True) as tape:
    out = m.forward(b["x_rgb"], b["x_ir"], draws, tr.partner, gen_rows=tr.gen_rows,
                    training=True, passes=tr.passes["joint"])
    terms = tr.loss_terms(out, b, tr.weights["joint"])
    rest = losses.total_loss(terms, dataclasses.replace(tr.weights["joint"],
                                                        lambda_code=0.0))
    total = rest + tr.weights["joint"].lambda_code * terms["code"]
  _assert_same_gradients(grads["G"], tape.gradient(total, tr.groups["G"]), tr.groups["G"],
                         of_scale=1e-10)
  _assert_same_gradients(grads["F"], tape.gradient(rest, tr.groups["F"]), tr.groups["F"],
                         of_scale=1e-10)
  # The code term does reach E_sl's weights, so the correction is not empty.
  assert not _is_zero(tape.gradient(terms["code"], m.E_i.trainable_variables))


def test_row7_feature_gan_trains_E_sl_and_Dis_sl_and_never_E_i():
  """--sl_mode=adversarial (Table 3 row 7): Dis_sl learns RGB = 1, IR = 0 on E_sl's
  detached maps of the re-id batch; E_sl, with weights of its own, learns the
  flipped labels. The term reaches E_sl and Dis_sl, not E_i, E_il or the image
  discriminators; the other SL modes have no such term."""
  tr = _trainer({**OFF, "lambda_sl_gan": 2.0}, model={"sl_mode": "adversarial"})
  m, b = tr.model, _batch()
  assert m.E_i is not m.E_sl and tr.weights["warmup"].lambda_sl_gan == 0.0
  report, grads = tr.gradients(b, tr.global_draws(0), "joint")
  # The hand-computed LSGAN terms of Dis_sl's maps on the whole re-id batch.
  d_rgb = m.Dis_sl(m.F(b["x_rgb"], training=True)["M"])[0].numpy()
  d_ir = m.Dis_sl(m.F(b["x_ir"], training=True)["M"])[0].numpy()
  mean = lambda x: float(np.mean(np.mean(x, axis=(1, 2, 3))))
  assert float(report["dis_sl"]) == pytest.approx(mean((d_rgb - 1) ** 2) + mean(d_ir ** 2),
                                                  rel=1e-4)
  assert float(report["sl_gan"]) == pytest.approx(mean(d_rgb ** 2) + mean((d_ir - 1) ** 2),
                                                  rel=1e-4)
  f_by_name = dict(zip([v.path for v in tr.groups["F"]], grads["F"]))
  assert not _is_zero(f_by_name[v.path] for v in m.E_sl.trainable_variables)
  assert _is_zero(f_by_name[v.path] for v in m.F.E_il.trainable_variables)
  g_by_name = dict(zip([v.path for v in tr.groups["G"]], grads["G"]))
  assert _is_zero(g_by_name[v.path] for v in m.E_i.trainable_variables)
  dis_by_name = dict(zip([v.path for v in tr.groups["Dis"]], grads["Dis"]))
  assert not _is_zero(dis_by_name[v.path] for v in m.Dis_sl.trainable_variables)
  assert _is_zero(dis_by_name[v.path] for v in _variables(m.Dis_rgb, m.Dis_ir))
  # E_sl's gradient is 2 x that of the flipped-label loss (lambda_sl_gan = 2).
  with tf.GradientTape() as tape:
    maps = [m.F(b[k], training=True)["M"] for k in ("x_rgb", "x_ir")]
    dis = m.discriminate_modality(*maps)
    want = 2.0 * tf.reduce_mean(losses.modality_confusion_loss(dis["rgb"], dis["ir"]))
  _assert_same_gradients([f_by_name[v.path] for v in m.E_sl.trainable_variables],
                         tape.gradient(want, m.E_sl.trainable_variables),
                         m.E_sl.trainable_variables)
  shared = _trainer({**OFF, "lambda_sl_gan": 2.0, "lambda_id": 1.0})
  assert shared.weights["joint"].lambda_sl_gan == 0.0
  assert "sl_gan" not in shared.gradients(b, shared.global_draws(0), "joint")[0]


def _assert_same_gradients(got, want, variables, rtol=1e-4, atol=1e-7, of_scale=None):
  """Elementwise within rtol / atol; with `of_scale`, every element within that
  fraction of the variable's largest gradient instead."""
  for g, w, v in zip(got, want, variables):
    if w is None:  # a variable the loss does not reach (e.g. the unused stripe heads)
      assert g is None or not np.any(g), v.path
    elif of_scale is not None:
      scale = float(np.max(np.abs(w)))
      error = float(np.max(np.abs(np.asarray(g) - np.asarray(w))))
      assert error <= of_scale * scale + 1e-15, (v.path, error, scale)
    else:
      np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=v.path)


@pytest.mark.parametrize("v_grad_to_content", [False, True])
def test_variation_loss_stops_at_the_content_map(v_grad_to_content):
  tr = _trainer({**OFF, "lambda_v": 1.0}, v_grad_to_content=v_grad_to_content)
  _, grads = tr.gradients(_batch(), tr.global_draws(0), "joint")
  by_name = dict(zip([v.path for v in tr.groups["G"]], grads["G"]))
  assert not _is_zero(by_name[v.path] for v in _variables(tr.model.E_v, tr.model.D_v))
  assert _is_zero(grads["F"]) != v_grad_to_content


# ---- one G forward, the authors' update order ------------------------------------------

def _count_calls(monkeypatch, cls, counts):
  original = cls.call

  @functools.wraps(original)
  def counted(self, *args, **kwargs):
    counts[self.name] = counts.get(self.name, 0) + 1
    return original(self, *args, **kwargs)

  monkeypatch.setattr(cls, "call", counted)


@pytest.mark.parametrize("loss,stage,traced,want", [
    ({}, "joint", True, {"D_rgb": 4, "D_ir": 4, "E_s_rgb": 2, "E_s_ir": 2, "Dis_rgb": 3,
                         "Dis_ir": 3, "E_v": 2, "F": 8, "E_i": 4}),
    ({"lambda_v": 0.0, "lambda_ui": 0.0}, "joint", False,
     {"D_rgb": 3, "D_ir": 3, "E_s_rgb": 2, "E_s_ir": 2, "Dis_rgb": 3, "Dis_ir": 3,
      "F": 6, "E_i": 4}),
    ({"lambda_il": 0.0, "lambda_lr": 0.0}, "joint", False,  # F: G reals, mixes, re-id
     {"D_rgb": 4, "D_ir": 4, "E_s_rgb": 2, "E_s_ir": 2, "Dis_rgb": 3, "Dis_ir": 3,
      "E_v": 2, "F": 6, "E_i": 4}),
    ({"lambda_il": 0.0, "lambda_lr": 0.0, "lambda_ui": 0.0, "lambda_code": 0.0}, "joint",
     False, {"D_rgb": 3, "D_ir": 3, "E_s_rgb": 1, "E_s_ir": 1, "Dis_rgb": 3,
             "Dis_ir": 3, "E_v": 2, "F": 2, "E_i": 4}),
    ({}, "warmup", True, {"D_rgb": 3, "D_ir": 3, "E_s_rgb": 2, "E_s_ir": 2,
                          "Dis_rgb": 3, "Dis_ir": 3, "E_v": 2, "E_i": 4}),
])
def test_network_calls_in_a_step(monkeypatch, loss, stage, traced, want):
  """One G forward per step: each decoder decodes the reconstruction, the pair and
  the cycle image once (plus the unseen identity), E_i encodes the two reals and
  the two fakes once; each discriminator sees the fake for G and the real and the
  detached fake for itself (the authors' three passes); F runs once per image set
  of an active term, and not at all in the warm-up. Counted while the step is
  traced (a graph's calls) or, where tracing is not the point, run eagerly."""
  tf.config.run_functions_eagerly(not traced)
  counts = {}
  for cls in (generation.Decoder, generation.StyleEncoder,
              generation.MultiScaleDiscriminator, feature.FeatureModule):
    _count_calls(monkeypatch, cls, counts)
  original = jsia.JSIA.encode_content

  def encode_content(self, *args, **kwargs):
    counts["E_i"] = counts.get("E_i", 0) + 1
    return original(self, *args, **kwargs)

  monkeypatch.setattr(jsia.JSIA, "encode_content", encode_content)
  original_vary = jsia.JSIA.vary

  def vary(self, *args, **kwargs):
    counts["E_v"] = counts.get("E_v", 0) + 1
    return original_vary(self, *args, **kwargs)

  monkeypatch.setattr(jsia.JSIA, "vary", vary)
  tr = _trainer(loss, warmup_steps=1 if stage == "warmup" else 0)
  counts.clear()  # building the model called the networks too
  try:
    tr.train_step(_batch(), 0)
  finally:
    tf.config.run_functions_eagerly(False)
  assert counts == want


def test_gan_term_uses_the_discriminators_before_their_update(eagerly):
  """G's GAN term and the discriminators' loss come from one forward pass against
  the discriminators as they were before the step (checked by hand), and the
  discriminators do move in that step."""
  tr = _trainer(lr_dis=0.05)
  m, b = tr.model, _batch()
  draws = tr.global_draws(0)
  out = m.forward(b["x_rgb"], b["x_ir"], draws, tr.partner, gen_rows=tr.gen_rows,
                  training=True, passes=tr.passes["joint"])

  def gan(model):
    fake = model.discriminate(out["x_ir2rgb"], out["x_rgb2ir"])
    return float(tf.reduce_mean(losses.gan_generator_loss(fake["rgb"]) +
                                losses.gan_generator_loss(fake["ir"])))

  before, dis_before = gan(m), float(tf.reduce_mean(m.discriminator_loss(out)))
  per_modality = {k: float(tf.reduce_mean(v)) for k, v in m.discriminator_losses(out).items()}
  report = tr.train_step(b, 0)
  assert report["gan"] == pytest.approx(before, rel=1e-5)
  assert report["dis"] == pytest.approx(dis_before, rel=1e-5)
  for k in ("rgb", "ir"):  # reported per discriminator too
    assert report[f"dis_{k}"] == pytest.approx(per_modality[k], rel=1e-5)
  assert gan(m) != pytest.approx(before, rel=1e-3)  # the update happened after


# ---- schedule, initialisation, BN momentum -------------------------------------------------

def test_paper_schedule_and_learning_rates():
  """Their epoch is 200 steps: warm-up 20,000, joint 10,000, every lr x0.1 from joint
  step 6,000 (epoch 30 of 50)."""
  paper = train_config_from_argv("--data_dir=/data/SYSU-MM01").train
  assert (paper.warmup_steps, paper.joint_steps) == (20000, 10000)
  tr = _trainer(**{k: getattr(paper, k) for k in ("warmup_steps", "joint_steps", "lr_f")})
  base = {"G": 1e-4, "Dis": 1e-4, "F": 4.5e-4}
  for joint_step, factor in ((None, 1.0), (0, 1.0), (5999, 1.0), (6000, 0.1), (9999, 0.1)):
    step = 0 if joint_step is None else 20000 + joint_step
    tr.set_learning_rates(step)
    for name, lr in base.items():
      got = float(tr.optimizers[name].learning_rate.numpy())
      assert got == pytest.approx(lr * factor, rel=1e-6), (joint_step, name)
  assert trainer_lib.learning_rates(paper, 25999)["F"] == pytest.approx(4.5e-4)
  assert trainer_lib.learning_rates(paper, 26000)["F"] == pytest.approx(4.5e-5)


def _dis_kernels(dis):
  return [layer.kernel.numpy() for layers in dis.scales for layer in layers]


def test_discriminators_and_scales_have_their_own_initial_weights():
  # Two scales need a 64-pixel-wide image (tiny has one scale).
  cfg = config_lib.model_config("tiny", image_height=128, image_width=64, dis_scales=2)
  model = jsia.build(cfg, NUM_CLASSES)
  rgb, ir = _dis_kernels(model.Dis_rgb), _dis_kernels(model.Dis_ir)
  scales = len(rgb) // 2
  assert not np.allclose(rgb[0], ir[0]) and not np.allclose(rgb[0], rgb[scales])
  everything = np.concatenate([k.ravel() for k in rgb + ir])
  assert abs(everything.std() - 0.02) < 0.002 and abs(everything.mean()) < 0.002
  # A function of the config's seed: the same seed gives the same draw.
  again = _dis_kernels(jsia.build(cfg, NUM_CLASSES).Dis_ir)
  other = _dis_kernels(jsia.build(dataclasses.replace(cfg, seed=1), NUM_CLASSES).Dis_ir)
  np.testing.assert_array_equal(again[0], ir[0])
  assert not np.allclose(other[0], ir[0])


def _batch_norms(layer):
  if isinstance(layer, keras.layers.BatchNormalization):
    return [layer]
  return [bn for sub in getattr(layer, "layers", []) for bn in _batch_norms(sub)]


def test_batch_norm_momentum_is_pytorchs_everywhere_in_F():
  model = jsia.build(config_lib.model_config("tiny"), NUM_CLASSES)
  f = model.F
  bns = (_batch_norms(f.E_sl) + _batch_norms(f.E_il) + [f.bn_neck] + list(f.stripe_bn))
  assert len(bns) > 10 and {bn.momentum for bn in bns} == {0.9}
  paper = feature.build_trunk(config_lib.model_config("paper"))
  bns = _batch_norms(paper["E_sl"]) + _batch_norms(paper["E_il"])
  assert len(bns) == 53 and {bn.momentum for bn in bns} == {0.9}


# ---- a weight of 0 builds nothing -----------------------------------------------------------

def _moving_statistics(model):
  f = model.F
  bns = _batch_norms(f.E_sl) + _batch_norms(f.E_il) + [f.bn_neck] + list(f.stripe_bn)
  return [w.numpy() for bn in bns for w in (bn.moving_mean, bn.moving_variance)]


@pytest.mark.parametrize("off,pairs", [({"lambda_ui": 0.0}, True),
                                       ({"lambda_il": 0.0, "lambda_lr": 0.0,
                                         "lambda_ui": 0.0}, False)])
def test_switched_off_terms_do_not_move_F_batch_statistics(eagerly, off, pairs):
  """F's BN moving statistics after one step equal those of the passes the active
  terms need, made by hand in the authors' order (E_i on the reals and fakes; F on
  the G reals and the pairs when IL/LR are on; F on the re-id batch): with a term
  off, nothing runs for it."""
  tr = _trainer(off)
  b = _batch()
  ref = jsia.build(tr.cfg.model, NUM_CLASSES)
  ref.set_weights(tr.model.get_weights())
  g = ref.generate(b["x_rgb"][:4], b["x_ir"][:4], training=True)
  if pairs:
    for name in ("x_rgb_gen", "x_rgb2ir", "x_ir_gen", "x_ir2rgb"):
      ref.F(ref.to_image_size(g[name]), training=True)
  ref.F(b["x_rgb"], training=True)
  ref.F(b["x_ir"], training=True)
  tr.train_step(b, 0)
  want = _moving_statistics(ref)
  assert any(np.abs(w - v).max() > 1e-3 for w, v in
             zip(want, _moving_statistics(jsia.build(tr.cfg.model, NUM_CLASSES))))
  for got, expected in zip(_moving_statistics(tr.model), want):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  # With every term on (the same initial weights: the same seed), the extra passes
  # move them further.
  everything = _trainer()
  everything.train_step(b, 0)
  assert any(np.abs(a - w).max() > 1e-6
             for a, w in zip(_moving_statistics(everything.model), want))


def test_torch_adam_is_pytorchs_adam():
  """Three updates against a transcription of torch.optim.Adam's formula, with
  gradients small enough that where epsilon is added matters."""
  w0 = np.array([0.5, -1.0, 2.0], np.float32)
  grads = [np.array([1e-8, -3e-7, 0.2], np.float32), np.array([2e-8, 1e-7, -0.1], np.float32),
           np.array([-1e-8, 2e-7, 0.05], np.float32)]
  lr, b1, b2, eps = 1e-3, 0.5, 0.999, 1e-8
  w, m, v = w0.astype(np.float64), 0.0, 0.0
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
    w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
  variable = keras.Variable(w0)
  keras_variable = keras.Variable(w0)
  ours = trainer_lib.TorchAdam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
  plain = keras.optimizers.Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
  for g in grads:
    ours.apply([tf.constant(g)], [variable])
    plain.apply([tf.constant(g)], [keras_variable])
  np.testing.assert_allclose(variable.numpy(), w, rtol=1e-6)
  # Keras's own Adam moves the small-gradient weights visibly less.
  assert abs(keras_variable.numpy()[0] - w0[0]) < 0.5 * abs(w[0] - w0[0])
