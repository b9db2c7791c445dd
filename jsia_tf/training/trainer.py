"""The train step of JSIA-ReID: discriminators first, then G + V + F, under any
distribution strategy.

The trainer owns the model, one optimizer per parameter group and the checkpoint.
Per replica, a step
  1. translates the real pairs (Eq. 3) and updates the discriminators Dis_rgb,
     Dis_ir on the detached fakes (Eq. 7, LSGAN), under `dis_tape`;
  2. runs the whole forward pass with the UPDATED discriminators and updates G, V
     and, in the joint stage, F, under `gen_tape` (Eq. 16).
Every loss is per example and reduced with `tf.nn.compute_average_loss` over the
GLOBAL batch inside the tape; the optimizers sum the replicas' gradients. Every
random draw is made for the global batch from (seed, step) and sliced per replica,
the triplet loss mines over the gathered global batch, and F's BN statistics are
synchronised: a step's losses do not depend on the number of replicas.

Parameter groups (../shared/SPEC.md): "G" = style encoders, decoders, V (and E_i
when it is not shared), Adam lr 1e-4, betas (0.5, 0.999); "Dis" = discriminators,
the same; "F" = E_sl (= E_i when shared), E_il and the heads, lr 4.5e-4, betas
(0.9, 0.999). The warm-up stage updates G and Dis only; E_sl stays frozen.

Mixed precision (--mixed_precision): the networks compute in float16 / bfloat16 with
float32 weights; their outputs are cast to float32 before any loss. Under float16
every optimizer is a LossScaleOptimizer with its own dynamic scale, so the joint
step takes one gradient of the total per scaled copy (G's and F's).
"""

import dataclasses
import os
from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import losses
from jsia_tf.models import jsia
from jsia_tf.training import experiment

STAGES = ("warmup", "joint")
REID_TERMS = ("id", "il", "lr", "ui")


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
    self.weights = {
        "warmup": dataclasses.replace(cfg.loss, **{f"lambda_{t}": 0.0 for t in REID_TERMS}),
        "joint": cfg.loss}
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
    self._steps = {stage: tf.function(self._make_step(stage),
                                      jit_compile=train.jit_compile,
                                      reduce_retracing=True) for stage in STAGES}

  def _adam(self, lr: float, beta_1: float) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.Adam(learning_rate=lr, beta_1=beta_1,
                                      beta_2=self.cfg.train.beta2, epsilon=1e-8)
    if self.cfg.train.mixed_precision == "float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

  def variable_groups(self) -> Dict[str, List[tf.Variable]]:
    """{"G", "Dis", "F"}: the trainable variables each optimizer updates."""
    m = self.model
    g = []
    for net in (m.E_s_rgb, m.E_s_ir, m.D_rgb, m.D_ir, m.E_v, m.D_v):
      g += net.trainable_variables
    if not m.model_cfg.share_sl:
      g += m.E_i.trainable_variables
    return {"G": g, "Dis": m.Dis_rgb.trainable_variables + m.Dis_ir.trainable_variables,
            "F": m.F.trainable_variables}

  # ---- learning rates ---------------------------------------------------------------

  def learning_rates(self, step: int) -> Dict[str, float]:
    """The lr of every optimizer at `step`."""
    t = self.cfg.train
    factor = t.lr_factor(step)
    return {"G": t.lr_g * factor, "Dis": t.lr_dis * factor, "F": t.lr_f * factor}

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
                 weights: losses.LossWeights) -> Dict[str, tf.Tensor]:
    """Every active term of Eq. (16), each a replica's share of the global batch
    mean (summing over replicas gives the mean). G, V, IL, LR and UI are means over
    G's sub-batch (its first rows), the re-id terms over the whole batch."""
    m, active, g = self.model, weights.active(), self.gen_rows
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
    if "code" in active:
      terms["code"] = gen_avg(m.code_reconstruction_loss(out, training=True))
    if "v" in active:  # Eq. (10), on the content maps of both modalities
      terms["v"] = gen_avg(tf.add_n([losses.variation_loss(
          out[f"M_{k}"], out[f"M_{k}_recon"], out[f"mu_{k}"], out[f"tau_{k}"])
                                 for k in ("rgb", "ir")]))
    if "id" in active:  # Eq. (13): CE (+ the stripe classifiers' CE) and triplet
      ce = (losses.cross_entropy(out["F_rgb_logits"], batch["label_rgb"]) +
            losses.cross_entropy(out["F_ir_logits"], batch["label_ir"]))
      if "lr" in active:
        n = self.cfg.model.num_stripes
        for k in ("rgb", "ir"):
          stripes = out[f"F_{k}_stripe_logits"]
          ce += tf.add_n([losses.cross_entropy(stripes[:, i], batch[f"label_{k}"])
                          for i in range(n)]) / n
      triplet = tf.nn.compute_average_loss(self._triplet(out, batch),
                                           global_batch_size=2 * self.global_rows)
      terms["id"] = avg(ce) + triplet
    if "il" in active:  # Eq. (11)
      terms["il"] = gen_avg(losses.instance_alignment_loss(
          out["F_ir_logits"][:g], out["F_ir2rgb_logits"], out["F_rgb_logits"][:g],
          out["F_rgb2ir_logits"]))
    if "lr" in active:  # Eq. (12)
      terms["lr"] = gen_avg(losses.local_alignment_loss(
          out["F_ir_stripe_logits"][:g], out["F_ir2rgb_stripe_logits"],
          out["F_rgb_stripe_logits"][:g], out["F_rgb2ir_stripe_logits"]))
    if "ui" in active:  # Eq. (15), in both modalities
      terms["ui"] = gen_avg(tf.add_n([losses.unseen_identity_loss(
          out[f"F_mix_{k}_logits"], out[f"F_{k}_logits"][:g],
          tf.gather(out[f"F_{k}_logits"], self.partner), out[f"alpha_{k}"])
                                  for k in ("rgb", "ir")]))
    return terms

  def _replica_step(self, batch, draws, stage: str) -> Dict[str, tf.Tensor]:
    m, weights = self.model, self.weights[stage]
    x_rgb, x_ir = batch["x_rgb"], batch["x_ir"]
    report = {}
    x_rgb_g, x_ir_g = x_rgb[:self.gen_rows], x_ir[:self.gen_rows]
    if weights.lambda_gan > 0:
      fakes = m.translate(x_rgb_g, x_ir_g, training=True)
      dis_vars = self.groups["Dis"]
      with tf.GradientTape() as dis_tape:
        dis = tf.nn.compute_average_loss(m.discriminator_loss(fakes),
                                         global_batch_size=self.global_gen_rows)
        scaled = self.optimizers["Dis"].scale_loss(weights.lambda_gan * dis)
      self._apply("Dis", dis_tape.gradient(scaled, dis_vars), dis_vars)
      report["dis"] = dis
    names = ["G"] if stage == "warmup" else ["G", "F"]
    two_scales = self.cfg.train.mixed_precision == "float16" and len(names) > 1
    with tf.GradientTape(persistent=two_scales) as gen_tape:
      out = m.forward(x_rgb_g, x_ir_g, self._replica_draws(draws), self.partner,
                      training=True, with_F=False)
      if stage == "joint":
        out.update(m.features(out, x_rgb, x_ir, training=True))
      out = {k: losses.float32(v) for k, v in out.items()}
      terms = self.loss_terms(out, batch, weights)
      total = losses.total_loss(terms, weights)
      scaled = {name: self.optimizers[name].scale_loss(total) for name in names}
    if two_scales:  # each LossScaleOptimizer unscales by its own factor
      for name in names:
        self._apply(name, gen_tape.gradient(scaled[name], self.groups[name]),
                    self.groups[name])
    else:
      variables = [v for name in names for v in self.groups[name]]
      grads = gen_tape.gradient(scaled[names[0]], variables)
      start = 0
      for name in names:
        count = len(self.groups[name])
        self._apply(name, grads[start:start + count], self.groups[name])
        start += count
    report.update(terms, total=total)
    return report

  def _make_step(self, stage: str):
    def step_fn(batch, draws):
      per_replica = self.strategy.run(self._replica_step, args=(batch, draws),
                                      kwargs={"stage": stage})
      return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for k, v in per_replica.items()}
    return step_fn

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

  def restore(self, manager: tf.train.CheckpointManager) -> int:
    """Restores the latest checkpoint of `manager` if any; returns the step."""
    if manager.latest_checkpoint:
      self.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    return int(self.step.numpy())

  def embed(self, x: tf.Tensor) -> tf.Tensor:
    """Eq. (17): the test-time embedding of images in [-1, 1], float32 (averaged
    with the mirror image's with --flip_average)."""
    return tf.cast(self.model.F.embed(x, flip_average=self.cfg.train.flip_average),
                   tf.float32)


def checkpoint_dir(workdir: str) -> str:
  """Where the checkpoints of `workdir` live."""
  return os.path.join(workdir, "checkpoints")
