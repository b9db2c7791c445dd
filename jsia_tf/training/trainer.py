"""The train step of JSIA-ReID, as the authors' step makes it, under any
distribution strategy.

The trainer owns the model, one optimizer per parameter group and the checkpoint.
Per replica, a step (the authors' `core/train.py`)
  1. runs ONE forward pass of G, V and F (`JSIA.forward`, only the passes of the
     terms switched on) under `gen_tape`, and Eq. (16)'s total;
  2. under `dis_tape`, the discriminators' loss (Eq. 7, LSGAN) on the real images
     and the DETACHED fakes of that same forward pass;
  3. takes every gradient, then applies every optimizer: G's GAN term was computed
     against the discriminators before their update.
The code reconstruction term trains G only: its gradient never reaches E_sl = E_i
(the authors zero E_sl's gradient after a separate backward pass of that term; here,
E_sl's share of one backward of the whole total is taken off, `_gradients`). The generated images enter F
detached (IL, LR and UI train F), and V's input M is detached (Eq. 10 does not
reshape the content maps), unless --align_trains_g / --v_grad_to_content.

Every loss is per example and reduced with `tf.nn.compute_average_loss` over the
GLOBAL batch inside the tape; the optimizers sum the replicas' gradients. Every
random draw is made for the global batch from (seed, step) and sliced per replica,
the triplet loss mines over the gathered global batch, and F's BN statistics are
synchronised: a step's losses do not depend on the number of replicas.

Parameter groups (../shared/SPEC.md): "G" = style encoders, decoders, V (and E_i
when it is not shared), Adam lr 1e-4, betas (0.5, 0.999); "Dis" = discriminators
(with --sl_mode=adversarial also Table 3 row 7's Dis_sl, which learns from the
re-id batch's detached E_sl maps while E_sl learns to fool it, term "sl_gan"), the
same; "F" = E_sl (= E_i when shared), E_il and the heads, lr 4.5e-4, betas
(0.9, 0.999). The warm-up stage updates G and Dis only; E_sl stays frozen and no F
pass runs.

Mixed precision (--mixed_precision): the networks compute in float16 / bfloat16 with
float32 weights; their outputs are cast to float32 before any loss. Under float16
every optimizer is a LossScaleOptimizer with its own dynamic scale, so the joint
step takes one gradient per scaled copy (G's and F's).
"""

import dataclasses
import os
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import losses
from jsia_tf.models import jsia
from jsia_tf.training import experiment

STAGES = ("warmup", "joint")
REID_TERMS = ("id", "il", "lr", "ui", "sl_gan")


def _add(a, b):
  """a + b for gradients that may be None (a variable a loss does not reach)."""
  if a is None:
    return b
  return a if b is None else a + b


def unseen_partners(num_ids: int, k: int) -> np.ndarray:
  """The mixing partner of every row of a P x K batch (identity-major): identities
  are paired (0, 1), (2, 3), ...; row j of identity i mixes with row j of its
  partner, a different person. Pairs never straddle replicas when every replica
  holds an even number of identities. With an odd count the last identity mixes
  with the first."""
  ids = np.arange(num_ids)
  partner = ids ^ 1
  if num_ids % 2:
    partner[-1] = 0
  rows = np.arange(num_ids * k)
  return (partner[rows // k] * k + rows % k).astype(np.int32)


@keras.saving.register_keras_serializable(package="jsia_tf")
class TorchAdam(keras.optimizers.Adam):
  """Adam as `torch.optim.Adam` (the authors' optimizer) computes it.

  PyTorch adds epsilon to the bias-corrected sqrt(v_t / (1 - beta_2^t)); Keras adds
  it to the uncorrected sqrt(v_t), an effective epsilon 1 / sqrt(1 - beta_2^t)
  times larger (about 32x at step 1 with beta_2 = 0.999), which damps the first
  updates of small-gradient weights. Weight decay is added to the gradient by the
  trainer, as PyTorch's `weight_decay` does.
  """

  def __init__(self, *args, **kwargs):
    # Keras makes the lr variable in floatx (float32) whatever the policy: under a
    # float64 policy, 4.5e-4 in float32 would put every update 2e-8 off.
    floatx = keras.backend.floatx()
    keras.backend.set_floatx(keras.mixed_precision.global_policy().variable_dtype)
    try:
      super().__init__(*args, **kwargs)
    finally:
      keras.backend.set_floatx(floatx)

  def update_step(self, gradient, variable, learning_rate):
    ops = keras.ops
    dtype = variable.dtype
    lr, gradient = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
    t = ops.cast(self.iterations + 1, dtype)
    # convert_to_tensor, not cast: a cast takes the Python float through float32
    # (0.999 -> 0.99900001287), which a float64 step would carry.
    bias_1 = 1.0 - ops.power(ops.convert_to_tensor(self.beta_1, dtype), t)
    bias_2 = 1.0 - ops.power(ops.convert_to_tensor(self.beta_2, dtype), t)
    m = self._momentums[self._get_variable_index(variable)]
    v = self._velocities[self._get_variable_index(variable)]
    self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - self.beta_1))
    self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v),
                                    1.0 - self.beta_2))
    denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_2)), self.epsilon)
    self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_1), denominator))


def learning_rates(train: config_lib.TrainConfig, step: int) -> Dict[str, float]:
  """{"G", "Dis", "F"}: the lr of every optimizer at the 0-based `step`."""
  factor = train.lr_factor(step)
  return {"G": train.lr_g * factor, "Dis": train.lr_dis * factor,
          "F": train.lr_f * factor}


class Trainer:
  """Model, optimizers, checkpoint and the compiled train steps of one run."""

  def __init__(self, cfg: experiment.ExperimentConfig, strategy: tf.distribute.Strategy,
               num_classes: int):
    self.cfg, self.strategy, self.num_classes = cfg, strategy, num_classes
    data, train = cfg.data, cfg.train
    self.replicas = strategy.num_replicas_in_sync
    config_lib.require(data.batch_p % self.replicas == 0, "batch_p", data.batch_p,
                       f"a multiple of the number of replicas ({self.replicas})")
    gen_ids = train.gen_ids or data.batch_p
    config_lib.require(gen_ids <= data.batch_p and gen_ids % self.replicas == 0,
                       "gen_ids", train.gen_ids, f"at most --batch_p={data.batch_p} and a "
                       f"multiple of the number of replicas ({self.replicas})")
    gen_ids_per_replica = gen_ids // self.replicas
    config_lib.require(
        cfg.loss.lambda_ui == 0 or gen_ids_per_replica % 2 == 0, "gen_ids",
        train.gen_ids, f"an even number of identities per replica (gen_ids / "
        f"{self.replicas} replicas) for the unseen-identity pairs of --lambda_ui, or "
        f"--lambda_ui=0")
    self.rows = data.batch_p // self.replicas * data.batch_k  # per replica, modality
    self.global_rows = data.batch_p * data.batch_k
    self.gen_rows = gen_ids_per_replica * data.batch_k  # G's sub-batch per replica
    self.global_gen_rows = gen_ids * data.batch_k
    self.partner = tf.constant(unseen_partners(gen_ids_per_replica, data.batch_k))
    # Row 7's feature GAN exists with sl_mode="adversarial" only.
    joint = (cfg.loss if cfg.model.sl_mode == "adversarial"
             else dataclasses.replace(cfg.loss, lambda_sl_gan=0.0))
    self.weights = {
        "warmup": dataclasses.replace(joint, **{f"lambda_{t}": 0.0 for t in REID_TERMS}),
        "joint": joint}
    self.passes = {stage: jsia.Passes.from_weights(
        w, align_trains_g=train.align_trains_g, v_grad_to_content=train.v_grad_to_content,
        lr_pairs=train.lr_pairs)
                   for stage, w in self.weights.items()}
    with strategy.scope():
      self.model = jsia.build(cfg.model, num_classes, sync_bn=self.replicas > 1)
      self.optimizers = {
          "G": self._adam(train.lr_g, train.beta1_g),
          "Dis": self._adam(train.lr_dis, train.beta1_g),
          "F": self._adam(train.lr_f, train.beta1_f)}
      self.groups = self.variable_groups()
      # Built under the scope before the first step: a lazy build inside
      # strategy.run breaks with 2+ replicas.
      for name, optimizer in self.optimizers.items():
        optimizer.build(self.groups[name])
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage")
    self.weight_decay = {"G": train.weight_decay_g, "Dis": train.weight_decay_g,
                         "F": train.weight_decay_f}
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, step=self.step, stage=self.stage,
        **{f"optimizer_{k}": v for k, v in self.optimizers.items()})
    # Without AutoGraph: the step has no tensor-dependent Python control flow (a
    # Python `if` on a tensor raises while tracing), and converting the source of
    # its few hundred functions is about a quarter of the tracing time.
    self._steps = {stage: tf.function(self._make_step(stage),
                                      jit_compile=train.jit_compile,
                                      reduce_retracing=True, autograph=False)
                   for stage in STAGES}

  def _adam(self, lr: float, beta_1: float) -> keras.optimizers.Optimizer:
    optimizer = TorchAdam(learning_rate=lr, beta_1=beta_1, beta_2=self.cfg.train.beta2,
                          epsilon=1e-8)
    if self.cfg.train.mixed_precision == "float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

  def variable_groups(self) -> Dict[str, List[tf.Variable]]:
    """{"G", "Dis", "F"}: the trainable variables each optimizer updates."""
    m = self.model
    g = []
    for net in (m.E_s_rgb, m.E_s_ir, m.D_rgb, m.D_ir, m.E_v, m.D_v):
      g += net.trainable_variables
    dis = m.Dis_rgb.trainable_variables + m.Dis_ir.trainable_variables
    if m.model_cfg.sl_mode != "shared":
      g += m.E_i.trainable_variables
    if m.model_cfg.sl_mode == "adversarial":
      dis += m.Dis_sl.trainable_variables
    return {"G": g, "Dis": dis, "F": m.F.trainable_variables}

  # ---- learning rates ---------------------------------------------------------------

  def learning_rates(self, step: int) -> Dict[str, float]:
    """The lr of every optimizer at `step`."""
    return learning_rates(self.cfg.train, step)

  def set_learning_rates(self, step: int) -> Dict[str, float]:
    """Assigns `learning_rates(step)` (outside the compiled step); returns them."""
    lrs = self.learning_rates(step)
    for name, lr in lrs.items():
      self.optimizers[name].learning_rate.assign(lr)
    return lrs

  def loss_scales(self) -> Dict[str, float]:
    """The current dynamic loss scale of every optimizer under float16 ({} else):
    it halves on each step whose gradients overflow (that step is skipped), and
    doubles after `dynamic_growth_steps` (Keras: 2000) finite steps."""
    return {name: float(opt.dynamic_scale.numpy()) for name, opt in self.optimizers.items()
            if isinstance(opt, keras.optimizers.LossScaleOptimizer)}

  # ---- the step ---------------------------------------------------------------------

  def _apply(self, name: str, grads, variables) -> None:
    """Adds PyTorch-Adam weight decay (an L2 gradient) and applies the gradients.
    The optimizer sums gradients over replicas, so each replica adds 1/R of the
    decay; under loss scaling the decay is scaled like the gradients."""
    optimizer, decay = self.optimizers[name], self.weight_decay[name] / self.replicas
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if decay:
      pairs = [(g + decay * optimizer.scale_loss(tf.cast(v, g.dtype)), v) for g, v in pairs]
    optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])

  def global_draws(self, step: int) -> Dict[str, tf.Tensor]:
    """Every random draw of `step` for the global G sub-batch, from (seed, step).
    Made outside the compiled step: XLA's random kernels give other numbers for the
    same seed, and --jit_compile must not change the run."""
    return self.model.draws(tf.constant([self.cfg.model.seed, step], tf.int64),
                            self.global_gen_rows)

  def _replica_draws(self, draws: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """This replica's rows of `global_draws`."""
    start = tf.distribute.get_replica_context().replica_id_in_sync_group * self.gen_rows
    return {k: v[start:start + self.gen_rows] for k, v in draws.items()}

  def _triplet(self, out, batch) -> tf.Tensor:
    """Eq. (13)'s triplet term of this replica's anchors [2n], mined over the
    gathered global batch (as a single replica would)."""
    v = tf.concat([out["F_rgb_v"], out["F_ir_v"]], 0)
    labels = tf.concat([batch["label_rgb"], batch["label_ir"]], 0)
    is_ir = tf.concat([tf.zeros([self.rows], tf.int32), tf.ones([self.rows], tf.int32)], 0)
    if self.replicas == 1:
      return losses.cross_modality_triplet_loss(v, labels, is_ir > 0)
    ctx = tf.distribute.get_replica_context()
    loss = losses.cross_modality_triplet_loss(
        ctx.all_gather(v, 0), ctx.all_gather(labels, 0), ctx.all_gather(is_ir, 0) > 0)
    start = ctx.replica_id_in_sync_group * 2 * self.rows
    return loss[start:start + 2 * self.rows]

  def loss_terms(self, out: Dict[str, tf.Tensor], batch: Dict[str, tf.Tensor],
                 weights: config_lib.LossWeights) -> Dict[str, tf.Tensor]:
    """Every active term of Eq. (16), each a replica's share of the global batch
    mean (summing over replicas gives the mean). G, V, IL, LR and UI are means over
    G's sub-batch (its first rows), the re-id terms over the whole batch."""
    m, active = self.model, weights.active()
    avg = lambda x: tf.nn.compute_average_loss(x, global_batch_size=self.global_rows)
    gen_avg = lambda x: tf.nn.compute_average_loss(
        x, global_batch_size=self.global_gen_rows)
    terms = {}
    if "gan" in active:  # Eq. (7), generator side
      fake = m.discriminate(out["x_ir2rgb"], out["x_rgb2ir"])
      terms["gan"] = gen_avg(losses.gan_generator_loss(fake["rgb"]) +
                             losses.gan_generator_loss(fake["ir"]))
    if "recon" in active:  # Eq. (4)
      terms["recon"] = gen_avg(losses.reconstruction_loss(out["x_rgb_gen"], out["x_rgb_recon"]) +
                           losses.reconstruction_loss(out["x_ir_gen"], out["x_ir_recon"]))
    if "cycle" in active:  # Eq. (5)-(6)
      terms["cycle"] = gen_avg(losses.cycle_loss(out["x_rgb_gen"], out["x_rgb_cycle"]) +
                           losses.cycle_loss(out["x_ir_gen"], out["x_ir_cycle"]))
    if "code" in active:  # the fakes' re-encoded codes against the reals' (authors')
      # x_rgb2ir carries the content of x_rgb and the style of x_ir.
      pairs = (("M_rgb2ir", "M_rgb"), ("M_ir2rgb", "M_ir"), ("s_rgb2ir", "s_ir"),
               ("s_ir2rgb", "s_rgb"))
      terms["code"] = gen_avg(tf.add_n([losses.code_reconstruction_loss(out[a], out[b])
                                        for a, b in pairs]))
    if "v" in active:  # Eq. (10), on the content maps of both modalities
      terms["v"] = gen_avg(tf.add_n([losses.variation_loss(
          out[f"M_{k}_target"], out[f"M_{k}_recon"], out[f"mu_{k}"], out[f"tau_{k}"])
                                 for k in ("rgb", "ir")]))
    if "id" in active:  # Eq. (13), the authors' reduction: the mean of the two
      # modalities' CE (+ the stripe classifiers' CE) and of the triplet's two
      # mining directions (a mean over all anchors of both modalities)
      ce = {k: losses.cross_entropy(out[f"F_{k}_logits"], batch[f"label_{k}"])
            for k in ("rgb", "ir")}
      stripe_ce = 0.0
      if "lr" in active:
        n = self.cfg.model.num_stripes
        for k in ("rgb", "ir"):
          stripes = out[f"F_{k}_stripe_logits"]
          stripe_ce += tf.add_n([losses.cross_entropy(stripes[:, i], batch[f"label_{k}"])
                                 for i in range(n)]) / (2.0 * n)
      triplet = tf.nn.compute_average_loss(self._triplet(out, batch),
                                           global_batch_size=2 * self.global_rows)
      terms["id"] = avg((ce["rgb"] + ce["ir"]) / 2.0 + stripe_ce) + triplet
      # Its parts, reported (not weighted again): which one is stuck, and the
      # training accuracy per modality (the authors log it).
      terms["id_triplet"] = triplet
      for k in ("rgb", "ir"):
        terms[f"id_ce_{k}"] = avg(ce[k])
        correct = tf.equal(tf.argmax(out[f"F_{k}_logits"], axis=-1, output_type=tf.int32),
                           tf.cast(batch[f"label_{k}"], tf.int32))
        terms[f"acc_{k}"] = avg(tf.cast(correct, losses.loss_dtype()))
      if "lr" in active:
        terms["id_stripe_ce"] = avg(stripe_ce)
    if "il" in active:  # Eq. (11)
      terms["il"] = gen_avg(losses.instance_alignment_loss(
          out["F_ir_gen_logits"], out["F_ir2rgb_logits"], out["F_rgb_gen_logits"],
          out["F_rgb2ir_logits"]))
    if "lr" in active:  # Eq. (12)
      # Each real image's counterpart: its generated pair, or (--lr_pairs=unpaired,
      # Table 3 row 8) the real image of the other modality in its row, which
      # shows the same person (the G rows are identity-aligned).
      ir_other, rgb_other = (("F_ir2rgb", "F_rgb2ir") if self.cfg.train.lr_pairs == "generated"
                             else ("F_rgb_gen", "F_ir_gen"))
      terms["lr"] = gen_avg(losses.local_alignment_loss(
          out["F_ir_gen_stripe_logits"], out[f"{ir_other}_stripe_logits"],
          out["F_rgb_gen_stripe_logits"], out[f"{rgb_other}_stripe_logits"]))
    if "sl_gan" in active:  # Table 3 row 7: E_sl fools Dis_sl on the re-id batch
      dis = m.discriminate_modality(out["F_rgb_M"], out["F_ir_M"])
      terms["sl_gan"] = avg(losses.modality_confusion_loss(dis["rgb"], dis["ir"]))
    if "ui" in active:  # Eq. (15), in both modalities
      terms["ui"] = gen_avg(tf.add_n([losses.unseen_identity_loss(
          out[f"F_mix_{k}_logits"], out[f"F_{k}_gen_logits"],
          tf.gather(out[f"F_{k}_gen_logits"], self.partner), out[f"alpha_{k}"])
                                  for k in ("rgb", "ir")]))
    return terms

  def _gradients(self, tape: tf.GradientTape, total: tf.Tensor, rest: tf.Tensor,
                 code: Optional[tf.Tensor], names: List[str]):
    """{group: gradients} for the optimizer groups `names` of the weighted `total`
    = `rest` + `code` (the code term; None when off), all recorded on `tape`.

    "G" gets the gradient of the total; every other group gets the rest's alone. So
    when F trains E_sl = E_i, the code term does not reach it, as in the authors'
    step. One backward of the total covers every group that shares a loss scale
    (float32, bfloat16); E_sl's share of the code term is then taken off by a second
    backward of the code term to E_sl alone. That pass needs only the code term's
    input gradients down to E_sl: the weight gradients of the decoders and style
    encoders, which a separate backward of the code term to G would take again
    (about 190 GMAC of the paper step), are taken once."""
    if self.cfg.train.mixed_precision == "float16":  # a loss scale per group
      return {name: tape.gradient(self.optimizers[name].scale_loss(
          total if name == "G" else rest), self.groups[name]) for name in names}
    variables = [v for name in names for v in self.groups[name]]
    flat, grads = tape.gradient(total, variables), {}
    for name in names:
      grads[name], flat = flat[:len(self.groups[name])], flat[len(self.groups[name]):]
    if code is not None and "F" in names and self.model.model_cfg.sl_mode == "shared":
      e_sl = {id(v) for v in self.model.E_sl.trainable_variables}
      shared = [i for i, v in enumerate(self.groups["F"]) if id(v) in e_sl]
      code_grads = tape.gradient(code, [self.groups["F"][i] for i in shared])
      for i, g in zip(shared, code_grads):
        if g is not None:
          grads["F"][i] = grads["F"][i] - g
    return grads

  def gradients(self, batch, draws, stage: str):
    """One replica's forward pass and gradients of a `stage` step, nothing applied:
    (report, {group: gradients}); the report holds the loss terms, the total and the
    discriminator loss. `draws`: `global_draws`."""
    m, weights = self.model, self.weights[stage]
    names = ["G"] if stage == "warmup" else ["G", "F"]
    # A second gradient call: the code term's share of E_sl, or one per loss scale.
    persistent = len(names) > 1 and (
        (weights.lambda_code > 0 and m.model_cfg.sl_mode == "shared")
        or self.cfg.train.mixed_precision == "float16")
    with tf.GradientTape(persistent=persistent) as gen_tape:
      out = m.forward(batch["x_rgb"], batch["x_ir"], self._replica_draws(draws),
                      self.partner, gen_rows=self.gen_rows, training=True,
                      passes=self.passes[stage])
      out = {k: losses.for_loss(v) for k, v in out.items()}
      terms = self.loss_terms(out, batch, weights)
      code = weights.lambda_code * terms["code"] if "code" in terms else None
      rest = losses.total_loss(terms, dataclasses.replace(weights, lambda_code=0.0))
      total = rest if code is None else rest + code
    grads = self._gradients(gen_tape, total, rest, code, names)
    report = dict(terms, total=total)
    if weights.lambda_gan > 0 or weights.lambda_sl_gan > 0:
      with tf.GradientTape() as dis_tape:
        dis_total = tf.zeros([], losses.loss_dtype())
        if weights.lambda_gan > 0:
          per_modality = m.discriminator_losses(out)
          report["dis"] = tf.nn.compute_average_loss(
              per_modality["rgb"] + per_modality["ir"],
              global_batch_size=self.global_gen_rows)
          for k, value in per_modality.items():
            report[f"dis_{k}"] = tf.nn.compute_average_loss(
                value, global_batch_size=self.global_gen_rows)
          dis_total += weights.lambda_gan * report["dis"]
        if weights.lambda_sl_gan > 0:  # Dis_sl on E_sl's detached maps (row 7)
          maps = m.discriminate_modality(tf.stop_gradient(out["F_rgb_M"]),
                                         tf.stop_gradient(out["F_ir_M"]))
          report["dis_sl"] = tf.nn.compute_average_loss(
              losses.modality_discriminator_loss(maps["rgb"], maps["ir"]),
              global_batch_size=self.global_rows)
          dis_total += weights.lambda_sl_gan * report["dis_sl"]
        scaled = self.optimizers["Dis"].scale_loss(dis_total)
      grads["Dis"] = dis_tape.gradient(scaled, self.groups["Dis"])
    return report, grads

  def _replica_step(self, batch, draws, stage: str) -> Dict[str, tf.Tensor]:
    report, grads = self.gradients(batch, draws, stage)
    # Every optimizer steps after every gradient is taken (the authors' order).
    for name, group_grads in grads.items():
      self._apply(name, group_grads, self.groups[name])
    return report

  def _make_step(self, stage: str):
    def step_fn(batch, draws):
      per_replica = self.strategy.run(self._replica_step, args=(batch, draws),
                                      kwargs={"stage": stage})
      return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for k, v in per_replica.items()}
    return step_fn

  def step_graph(self, batch, step: int) -> tf.Graph:
    """The graph of the step of `step`'s stage traced for `batch` (as `train_step`
    runs it; for counting its MACs, `macs.count`)."""
    stage = self.cfg.train.stage(step)
    return self._steps[stage].get_concrete_function(batch, self.global_draws(step)).graph

  def train_step(self, batch, step: int) -> Dict[str, float]:
    """Runs the step of `step`'s stage on a distributed batch; returns the global
    mean of every unweighted loss term, the weighted total and the discriminator
    loss, and advances the step counter."""
    stage = self.cfg.train.stage(step)
    values = self._steps[stage](batch, self.global_draws(step))
    self.step.assign(step + 1)
    self.stage.assign(STAGES.index(self.cfg.train.stage(step + 1)))
    return {k: float(v) for k, v in values.items()}

  # ---- checkpoints ------------------------------------------------------------------

  def checkpoint_manager(self, directory: str) -> tf.train.CheckpointManager:
    """A manager of this trainer's checkpoints in `directory`."""
    return tf.train.CheckpointManager(self.checkpoint, directory,
                                      max_to_keep=self.cfg.train.keep_checkpoints,
                                      step_counter=self.step)

  def nonfinite_variables(self) -> List[str]:
    """Names of the networks' and optimizers' variables that hold NaN or Inf."""
    variables = list(self.model.variables)
    for optimizer in self.optimizers.values():
      variables += list(optimizer.variables)
    floats = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
    return [getattr(v, "path", v.name) for v in floats
            if not bool(tf.reduce_all(tf.math.is_finite(v)))]

  def restore(self, prefix: Optional[str]) -> int:
    """Restores the checkpoint `prefix` (nothing when None); returns the step."""
    if prefix:
      self.checkpoint.restore(prefix).assert_existing_objects_matched()
    return int(self.step.numpy())

  def embed(self, x: tf.Tensor) -> tf.Tensor:
    """Eq. (17): the test-time embedding of images in [-1, 1], float32 (averaged
    with the mirror image's with --flip_average)."""
    return tf.cast(self.model.F.embed(x, flip_average=self.cfg.train.flip_average),
                   tf.float32)


def checkpoint_dir(workdir: str) -> str:
  """Where the checkpoints of `workdir` live."""
  return os.path.join(workdir, "checkpoints")
