"""The JSIA-ReID model: owns every sub-network of G, V and F and runs the forward
pass of the paper's Fig. 3 as named tensors.

Sub-networks, with the paper's names: E_i (content encoder) = F.E_sl when
sl_mode="shared" (the set-level alignment), E_s_rgb, E_s_ir, D_rgb, D_ir, Dis_rgb,
Dis_ir, E_v, D_v, F (E_sl, E_il, BN-neck, C, C_n), and with sl_mode="adversarial"
(Table 3 row 7) the feature-level modality discriminator Dis_sl.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import losses
from jsia_tf.models import feature
from jsia_tf.models import generation
from jsia_tf.models import variation


@dataclasses.dataclass(frozen=True)
class Passes:
  """Which parts of `JSIA.forward` run, and how gradients route through them.

  A loss term whose weight is 0 builds nothing (`from_weights`): no network pass
  runs for it, so it cannot move a BN moving statistic either, and a Table 3 row is
  the row it claims.
  """

  cycle: bool = True  # Eq. (5)-(6): the cycle images
  code: bool = True  # the re-encoded style codes of the code reconstruction loss
  variation: bool = True  # V on the content maps (Eq. 9-10)
  mixes: bool = True  # unseen identities (Eq. 14) and F on them (Eq. 15)
  pairs: bool = True  # F on the generated pairs (Eq. 11-12)
  gen_reals: bool = True  # F on the G sub-batch's reals (the IL/LR/UI references)
  reid: bool = True  # F on the re-id batch (Eq. 13; row 7's feature GAN)
  # Gradient routing (the defaults are the authors'): generated images enter F
  # detached, and Eq. (10) does not reshape the content maps.
  align_trains_g: bool = False
  v_grad_to_content: bool = False

  def __post_init__(self):
    if self.mixes and not self.variation:
      raise ValueError("Passes: mixes need the variation pass (z comes from V)")
    if (self.pairs or self.mixes) and not self.gen_reals:
      raise ValueError("Passes: pairs and mixes need gen_reals (their references)")

  @classmethod
  def from_weights(cls, weights: config_lib.LossWeights, align_trains_g: bool = False,
                   v_grad_to_content: bool = False,
                   lr_pairs: str = "generated") -> "Passes":
    """The passes that the terms switched on by `weights` need (`lr_pairs`:
    whether LR compares with the generated pairs or the other modality's reals)."""
    on = weights.active()
    pairs = "il" in on or ("lr" in on and lr_pairs == "generated")
    return cls(cycle="cycle" in on, code="code" in on,
               variation="v" in on or "ui" in on, mixes="ui" in on, pairs=pairs,
               gen_reals=pairs or "lr" in on or "ui" in on,
               reid="id" in on or "sl_gan" in on,
               align_trains_g=align_trains_g, v_grad_to_content=v_grad_to_content)


@keras.saving.register_keras_serializable(package="jsia_tf")
class JSIA(keras.Model):
  """All networks of JSIA-ReID for `num_classes` training identities. `sync_bn`
  synchronises F's batch statistics across replicas (training with 2+ replicas)."""

  def __init__(self, model_cfg: config_lib.ModelConfig, num_classes: int,
               sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.model_cfg, self.num_classes, self.sync_bn = model_cfg, num_classes, sync_bn
    cfg = model_cfg
    # Keras initialisers without their own seed draw from the global generator:
    # seeding it here makes the initial weights a function of the config's seed.
    keras.utils.set_random_seed(cfg.seed)
    trunk = feature.build_trunk(cfg, sync_bn)
    # sl_mode "separate" or "adversarial" (Table 3 without SL, row 7) gives E_sl
    # weights of its own; E_i keeps the trunk's stem + stage 1 as the content encoder.
    self.E_i = trunk["E_sl"]
    E_sl = (self.E_i if cfg.sl_mode == "shared"
            else feature.build_trunk(cfg, sync_bn)["E_sl"])
    self.F = feature.FeatureModule(cfg, num_classes, E_sl, trunk["E_il"], sync_bn,
                                   name="F")
    c = self.E_i.output.shape[-1]
    self.E_s_rgb = generation.StyleEncoder(cfg, name="E_s_rgb")
    self.E_s_ir = generation.StyleEncoder(cfg, name="E_s_ir")
    self.D_rgb = generation.Decoder(cfg, c, name="D_rgb")
    self.D_ir = generation.Decoder(cfg, c, name="D_ir")
    self.Dis_rgb = generation.MultiScaleDiscriminator(cfg, name="Dis_rgb")
    self.Dis_ir = generation.MultiScaleDiscriminator(cfg, name="Dis_ir")
    self.E_v = variation.VariationEncoder(cfg, c, name="E_v")
    self.D_v = variation.VariationDecoder(c, name="D_v")
    if cfg.sl_mode == "adversarial":
      self.Dis_sl = feature.ModalityDiscriminator(cfg, name="Dis_sl")

  def build(self, input_shape=None):
    """Builds the weights that call() does not reach: the discriminators."""
    del input_shape
    h, w = self.model_cfg.gen_size
    self.discriminate(tf.zeros([1, h, w, 3]), tf.zeros([1, h, w, 3]))
    if self.model_cfg.sl_mode == "adversarial":
      x = tf.zeros([1, *self.model_cfg.image_size, 3])
      self.Dis_sl(self.E_sl(self.F.trunk_input(x)))
    self.built = True

  @property
  def E_sl(self) -> keras.Model:  # pylint: disable=invalid-name
    """The set-level encoder of F (the same object as E_i when sl_mode="shared")."""
    return self.F.E_sl

  def get_config(self):
    return {"model_cfg": config_lib.to_dict(self.model_cfg),
            "num_classes": self.num_classes, "sync_bn": self.sync_bn, "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(config_lib.from_dict(config_lib.ModelConfig, config["model_cfg"]),
               config["num_classes"], config.get("sync_bn", False),
               name=config.get("name"))

  # ---- G -------------------------------------------------------------------------

  def to_gen_size(self, x: tf.Tensor) -> tf.Tensor:
    """Re-id-size images -> the generation module's size (half), antialiased."""
    return generation.antialiased_resize(x, self.model_cfg.gen_size)

  def to_image_size(self, x: tf.Tensor) -> tf.Tensor:
    """Generation-size images -> re-id size (the authors upsample before E_i with
    bilinear interpolation, half-pixel centres), in x's dtype."""
    return generation.antialiased_resize(x, self.model_cfg.image_size)

  def encode_content(self, x_gen: tf.Tensor, training=False) -> tf.Tensor:
    """Eq. (2): M = E_i(x), from a generation-size image."""
    return self.E_i(self.F.trunk_input(self.to_image_size(x_gen)), training=training)

  def generate(self, x_rgb: tf.Tensor, x_ir: tf.Tensor, training=False,
               cycle: bool = True, style_codes: bool = True) -> Dict[str, tf.Tensor]:
    """Eq. (1)-(6) on an identity-aligned pair of batches (row b of x_rgb and x_ir
    show the same person): one forward pass of G, as the authors' step makes it.

    Contents M, styles s, reconstructions, the cross-modality pairs, their
    re-encoded contents M_rgb2ir = E_i(x_rgb2ir) (the content of x_rgb, seen in
    IR) and, with `style_codes`, their re-encoded styles s_rgb2ir = E_s_ir(x_rgb2ir)
    (the code reconstruction loss's inputs), and with `cycle` the cycle images.
    E_i runs in the authors' order (real RGB, real IR, x_ir2rgb, x_rgb2ir), each
    call moving its BN statistics as theirs does in training mode. Inputs at re-id
    size in [-1, 1]; image outputs at generation size.
    """
    x_rgb_g, x_ir_g = self.to_gen_size(x_rgb), self.to_gen_size(x_ir)
    m_rgb = self.encode_content(x_rgb_g, training)
    m_ir = self.encode_content(x_ir_g, training)
    s_rgb, s_ir = self.E_s_rgb(x_rgb_g), self.E_s_ir(x_ir_g)
    x_rgb2ir = self.D_ir(m_rgb, s_ir)  # Eq. (3): content of RGB, style of IR
    x_ir2rgb = self.D_rgb(m_ir, s_rgb)
    m_ir2rgb = self.encode_content(x_ir2rgb, training)
    m_rgb2ir = self.encode_content(x_rgb2ir, training)
    out = {
        "x_rgb_gen": x_rgb_g, "x_ir_gen": x_ir_g,
        "M_rgb": m_rgb, "M_ir": m_ir, "s_rgb": s_rgb, "s_ir": s_ir,
        "x_rgb_recon": self.D_rgb(m_rgb, s_rgb), "x_ir_recon": self.D_ir(m_ir, s_ir),
        "x_rgb2ir": x_rgb2ir, "x_ir2rgb": x_ir2rgb,
        "M_rgb2ir": m_rgb2ir, "M_ir2rgb": m_ir2rgb,
    }
    if style_codes:
      out["s_ir2rgb"] = self.E_s_rgb(x_ir2rgb)
      out["s_rgb2ir"] = self.E_s_ir(x_rgb2ir)
    if cycle:  # Eq. (6) with the original real style codes (the authors' code).
      out["x_rgb_cycle"] = self.D_rgb(m_rgb2ir, s_rgb)
      out["x_ir_cycle"] = self.D_ir(m_ir2rgb, s_ir)
    return out

  def discriminate(self, x_rgb_gen: tf.Tensor, x_ir_gen: tf.Tensor) -> Dict[str, List[tf.Tensor]]:
    """Discriminator outputs per scale of RGB and IR generation-size images, in
    the loss dtype (they go straight into Eq. (7))."""
    return {"rgb": [losses.for_loss(d) for d in self.Dis_rgb(x_rgb_gen)],
            "ir": [losses.for_loss(d) for d in self.Dis_ir(x_ir_gen)]}

  def discriminator_losses(self, g: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Eq. (7), discriminator side, on DETACHED fakes (no gradient reaches G):
    {"rgb": Dis_rgb's [B], "ir": Dis_ir's [B]}."""
    real = self.discriminate(g["x_rgb_gen"], g["x_ir_gen"])
    fake = self.discriminate(tf.stop_gradient(g["x_ir2rgb"]),
                             tf.stop_gradient(g["x_rgb2ir"]))
    return {k: losses.gan_discriminator_loss(real[k], fake[k]) for k in ("rgb", "ir")}

  def discriminate_modality(self, m_rgb: tf.Tensor, m_ir: tf.Tensor
                            ) -> Dict[str, List[tf.Tensor]]:
    """Dis_sl's patch maps (in the loss dtype) on E_sl maps of RGB and IR images (Table 3
    row 7, sl_mode="adversarial")."""
    return {"rgb": [losses.for_loss(d) for d in self.Dis_sl(m_rgb)],
            "ir": [losses.for_loss(d) for d in self.Dis_sl(m_ir)]}

  def discriminator_loss(self, g: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Eq. (7), discriminator side, both modalities: [B]."""
    per_modality = self.discriminator_losses(g)
    return per_modality["rgb"] + per_modality["ir"]

  # ---- V -------------------------------------------------------------------------

  @property
  def latent_shape(self) -> Tuple[int, int, int]:
    """(h, w, channels) of V's latent z: a quarter of the content map's size."""
    h, w = self.model_cfg.image_size
    return (h // 16, w // 16, self.model_cfg.latent_channels)

  def draws(self, seed: tf.Tensor, n: int) -> Dict[str, tf.Tensor]:
    """Every random draw of a forward pass on n rows, from a stateless `seed` [2]:
    V's noise eps_<m> [n, *latent_shape] and the mixing ratios alpha_<m> ~ U(0, 1)
    [n], for m in rgb, ir. A replica slices its rows out of the global draws, so the
    numbers do not depend on the replica count."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    return {"eps_rgb": tf.random.stateless_normal([n, *self.latent_shape], seeds[0]),
            "eps_ir": tf.random.stateless_normal([n, *self.latent_shape], seeds[1]),
            "alpha_rgb": tf.random.stateless_uniform([n], seeds[2]),
            "alpha_ir": tf.random.stateless_uniform([n], seeds[3])}

  def vary(self, m: tf.Tensor, eps: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Eq. (9): z = E_v(M) = mu + tau eps, M_recon = D_v(z)."""
    out = self.E_v(m, eps)
    out["M_recon"] = self.D_v(out["z"])
    return out

  def mix(self, z_1, z_2, s_1, s_2, alpha, modality: str) -> Dict[str, tf.Tensor]:
    """Eq. (14) then Eq. (9) and (3): an image of an unseen identity, x_mix, decoded
    from D_v(z_mix) with the mixed style s_mix by the decoder of `modality`."""
    z_mix, s_mix = losses.mix_codes(z_1, z_2, s_1, s_2, alpha)
    decoder = self.D_rgb if modality == "rgb" else self.D_ir
    return {"z_mix": z_mix, "s_mix": s_mix, "x_mix": decoder(self.D_v(z_mix), s_mix)}

  # ---- whole forward pass ----------------------------------------------------------

  def forward(self, x_rgb: tf.Tensor, x_ir: tf.Tensor, draws: Dict[str, tf.Tensor],
              partner: tf.Tensor, gen_rows: Optional[int] = None, training=False,
              passes: Optional["Passes"] = None) -> Dict[str, tf.Tensor]:
    """One forward pass of G, V and F on identity-aligned batches, the passes of
    `passes` only (default: all), in the order of the authors' step.

    G (`generate`) runs on the first `gen_rows` rows (default: all), the G
    sub-batch. V, per modality m (Eq. 9): mu_m, tau_m, z_m, M_m_recon, from the
    content map M_m (detached unless `passes.v_grad_to_content`); and an unseen
    identity mixing row b with row partner[b], a different identity of the same
    modality (Eq. 14): z_mix_m, s_mix_m, x_mix_m. F's outputs (M, T, v, f, logits,
    stripe_logits), as F_<image>_<output>, for:
      rgb_gen, rgb2ir, ir_gen, ir2rgb: the G sub-batch's real images and their
        generated pairs, through the same upsampling path (the authors' IL inputs);
      mix_rgb, mix_ir: the unseen identities;
      rgb, ir: the whole re-id batch at its own resolution (Eq. 13).
    Generated images enter F detached unless `passes.align_trains_g`. `draws` holds
    `draws()`'s tensors for the G rows.
    """
    p = passes or Passes()
    n = gen_rows if gen_rows is not None else x_rgb.shape[0]
    out = dict(self.generate(x_rgb[:n], x_ir[:n], training, cycle=p.cycle,
                             style_codes=p.code))
    if p.variation:
      for m in ("rgb", "ir"):
        content = out[f"M_{m}"] if p.v_grad_to_content else tf.stop_gradient(out[f"M_{m}"])
        v = self.vary(content, draws[f"eps_{m}"])
        out.update({f"mu_{m}": v["mu"], f"tau_{m}": v["tau"], f"z_{m}": v["z"],
                    f"M_{m}_recon": v["M_recon"], f"M_{m}_target": content})
        if p.mixes:
          s = out[f"s_{m}"]
          mixed = self.mix(v["z"], tf.gather(v["z"], partner), s, tf.gather(s, partner),
                           draws[f"alpha_{m}"], m)
          out.update({f"{k}_{m}": t for k, t in mixed.items()})
          out[f"alpha_{m}"] = losses.for_loss(draws[f"alpha_{m}"])
    generated = (lambda x: x) if p.align_trains_g else tf.stop_gradient
    images = []
    for m, pair in (("rgb", "rgb2ir"), ("ir", "ir2rgb")):  # the authors' IL order
      if p.gen_reals:
        images.append((f"{m}_gen", out[f"x_{m}_gen"]))
      if p.pairs:
        images.append((pair, generated(out[f"x_{pair}"])))
    if p.mixes:
      images += [(f"mix_{m}", generated(out[f"x_mix_{m}"])) for m in ("rgb", "ir")]
    # Separate calls, as the authors': each batch gets its own BN statistics.
    for name, x in images:
      out.update(self.features(self.to_image_size(x), name, training))
    if p.reid:
      out.update(self.features(x_rgb, "rgb", training))
      out.update(self.features(x_ir, "ir", training))
    return out

  def features(self, x: tf.Tensor, name: str, training=False) -> Dict[str, tf.Tensor]:
    """F's outputs (M, T, v, f, logits, stripe_logits) of re-id-size images x as
    F_<name>_<output>."""
    return {f"F_{name}_{key}": value for key, value in self.F(x, training=training).items()}

  def call(self, inputs: Dict[str, tf.Tensor], training=False) -> Dict[str, tf.Tensor]:
    """`forward` (every pass, G on every row) on {"x_rgb", "x_ir"} with optional
    "seed" (int [2]; without it eps = 0, so z = mu, and alpha = 0.5) and "partner"
    (int [n]; default: the row half a batch away, a different identity in a P x K
    batch)."""
    x_rgb, x_ir = inputs["x_rgb"], inputs["x_ir"]
    n = tf.shape(x_rgb)[0]
    if inputs.get("seed") is not None:
      draws = self.draws(inputs["seed"], n)
    else:
      zeros = tf.zeros(tf.concat([[n], self.latent_shape], 0))
      half = tf.fill([n], 0.5)
      draws = {"eps_rgb": zeros, "eps_ir": zeros, "alpha_rgb": half, "alpha_ir": half}
    partner = inputs.get("partner")
    if partner is None:
      partner = (tf.range(n) + n // 2) % n
    return self.forward(x_rgb, x_ir, draws, partner, training=training)

  def sub_networks(self) -> Dict[str, keras.Model]:
    """The named sub-networks (E_sl listed once when shared with E_i)."""
    nets = {"E_i": self.E_i, "E_s_rgb": self.E_s_rgb, "E_s_ir": self.E_s_ir,
            "D_rgb": self.D_rgb, "D_ir": self.D_ir, "Dis_rgb": self.Dis_rgb,
            "Dis_ir": self.Dis_ir, "E_v": self.E_v, "D_v": self.D_v}
    if self.model_cfg.sl_mode != "shared":
      nets["E_sl"] = self.F.E_sl
    if self.model_cfg.sl_mode == "adversarial":
      nets["Dis_sl"] = self.Dis_sl
    nets["E_il"] = self.F.E_il
    nets["F_heads"] = [self.F.bn_neck, self.F.C] + self.F.stripe_bn + self.F.C_n
    return nets


def build(model_cfg: config_lib.ModelConfig, num_classes: int,
          batch_size: int = 2, sync_bn: bool = False) -> JSIA:
  """Builds every weight of the model by one forward pass on zeros."""
  model = JSIA(model_cfg, num_classes, sync_bn)
  zeros = tf.zeros([batch_size] + list(model_cfg.image_size) + [3])
  model({"x_rgb": zeros, "x_ir": zeros})
  return model


def dry_run_report(model_cfg: config_lib.ModelConfig, num_classes: int,
                   batch_size: int = 2) -> str:
  """Builds the model, runs one forward pass of every module on a batch of
  `batch_size` per modality, and returns a table of the parameter count of every
  sub-network and the shape of every named output."""
  model = build(model_cfg, num_classes, batch_size)
  lines = [f"JSIA-ReID, preset {model_cfg.preset}: re-id images "
           f"{model_cfg.image_size}, generation images {model_cfg.gen_size}, "
           f"{num_classes} identities, sl_mode={model_cfg.sl_mode}", "",
           f"{'sub-network':<34}{'parameters':>14}"]
  total = 0
  for name, net in model.sub_networks().items():
    layers = net if isinstance(net, list) else [net]
    count = sum(feature.count_params(layer) for layer in layers)
    total += count
    label = ("E_i = E_sl (shared)" if name == "E_i" and model_cfg.sl_mode == "shared"
             else name)
    lines.append(f"{label:<34}{count:>14,}")
  trunk = feature.count_params(model.F.E_sl) + feature.count_params(model.F.E_il)
  lines += [f"{'re-id trunk (E_sl + E_il)':<34}{trunk:>14,}",
            f"{'total':<34}{total:>14,}", "",
            f"{'named output (batch ' + str(batch_size) + ')':<34}{'shape':>20}"]
  h, w = model_cfg.image_size
  x = tf.random.uniform([batch_size, h, w, 3], -1.0, 1.0, seed=model_cfg.seed)
  out = model({"x_rgb": x, "x_ir": x, "seed": tf.constant([model_cfg.seed, 0])})
  out["Dis_rgb(x_ir2rgb)"] = model.Dis_rgb(out["x_ir2rgb"])
  for name, value in out.items():
    shapes = [tuple(v.shape) for v in value] if isinstance(value, list) else tuple(
        value.shape)
    lines.append(f"{name:<34}{str(shapes):>20}")
  return "\n".join(lines)
