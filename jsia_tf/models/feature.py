"""F, the feature alignment module (paper Sec. 3.3): the re-id trunk split into the
set-level encoder E_sl (stem + stage 1, shared with the content encoder E_i) and the
instance-level encoder E_il (stages 2-4), the BN-neck, the global classifier C and
the stripe classifiers C_n of Eq. (12).

Trunks: ResNet-50 in torchvision's layout (the `paper` preset; the authors' trunk,
torchvision_resnet.py) or Keras's own `keras.applications.ResNet50`, both with last
stride 1 and their own ImageNet weight files; a small ResNet of basic blocks (the
`demo` and `tiny` presets) has the same split.
"""

import os
import socket
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.models import generation
from jsia_tf.models import torchvision_resnet

RESNET50_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                        "resnet/" + RESNET50_WEIGHTS_FILE)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_LUMA = (0.299, 0.587, 0.114)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_TORCH_GREY = (0.2989, 0.5870, 0.1140)  # the authors' tools/transforms2.py


# The normalisation each trunk's weights expect, after the [-1, 1] images.
INPUT_NORMALISATION = {"torchvision_resnet50": "imagenet", "keras_resnet50": "caffe",
                       "small": "none"}


@keras.saving.register_keras_serializable(package="jsia_tf")
class TrunkInput(keras.layers.Layer):
  """Images in [-1, 1] (RGB) -> the trunk's input, optionally grey (the authors feed
  the re-id trunk grey images at train and test time), normalised as the
  backbone's weights expect:
    "imagenet" (torchvision): [0, 1], minus the ImageNet mean, over its std; grey
      is then the authors' `rgb2gray` ON THE NORMALISED tensor (weights 0.2989,
      0.5870, 0.1140, replicated to 3 channels);
    "caffe" (Keras ResNet-50): grey (luma) first, then BGR on 0..255 minus the mean;
    "none" (the small trunk): grey (luma) or unchanged [-1, 1].
  """

  def __init__(self, grey: bool, normalisation: str, **kwargs):
    super().__init__(**kwargs)
    if normalisation not in ("imagenet", "caffe", "none"):
      raise ValueError(f"TrunkInput: unknown normalisation {normalisation!r}")
    self.grey, self.normalisation = grey, normalisation

  def call(self, x):
    if self.normalisation == "imagenet":
      x = ((x + 1.0) / 2.0 - tf.constant(_IMAGENET_MEAN, x.dtype)) / tf.constant(
          _IMAGENET_STD, x.dtype)
      return _grey(x, _TORCH_GREY) if self.grey else x
    if self.grey:
      x = _grey(x, _LUMA)
    if self.normalisation == "caffe":
      x = (x + 1.0) * 127.5
      x = x[..., ::-1] - tf.constant(_CAFFE_BGR_MEAN, x.dtype)
    return x

  def get_config(self):
    return {**super().get_config(), "grey": self.grey, "normalisation": self.normalisation}


def _grey(x: tf.Tensor, weights) -> tf.Tensor:
  """The weighted sum of x's channels, replicated to 3 channels."""
  return tf.tile(tf.reduce_sum(x * tf.constant(weights, x.dtype), axis=-1, keepdims=True),
                 [1, 1, 1, 3])


def check_backbone_weights(cfg: config_lib.ModelConfig, from_scratch: bool = True) -> None:
  """Fails fast (before any data is read) when --backbone_weights cannot be used:
  a missing file, or, for torchvision_resnet50, a file whose tensors do not fit
  the trunk (the error names them with the expected names and shapes), or none
  given for a ResNet-50, which would then train from random initialisation and
  lose most of its accuracy on SYSU-MM01 and RegDB (--backbone_weights=none says
  that this is meant). A run that resumes (`from_scratch` False) has its weights in
  its checkpoint and needs no file."""
  if (from_scratch and not cfg.backbone_weights
      and cfg.backbone in config_lib.RESNET50_BACKBONES):
    files = (torchvision_resnet.IMAGENET_FILES if cfg.backbone == "torchvision_resnet50"
             else (RESNET50_WEIGHTS_FILE,))
    raise errors.ConfigError(
        f"--backbone_weights is not given: the ResNet-50 trunk (--backbone="
        f"{cfg.backbone}) would train from random initialisation, which costs most of "
        f"the accuracy on real data. Pass ImageNet weights as a local file, "
        f"--backbone_weights=PATH/{' or '.join(files)}, or --backbone_weights="
        f"{config_lib.NO_WEIGHTS} to start from random weights on purpose")
  if not cfg.weights_file:
    return
  if cfg.backbone == "keras_resnet50":
    resolve_resnet50_weights(cfg.weights_file)
  else:
    build_trunk(cfg)  # loads, and so checks, every tensor


def resolve_resnet50_weights(spec: str) -> str:
  """A local path for `--backbone_weights` (a path, or "imagenet"); fails fast.

  "imagenet" uses Keras's cache when the file is there, else needs the network: a
  3-second connection probe, not a download that hangs, decides.
  """
  if spec != "imagenet":
    if not os.path.isfile(spec):
      raise errors.ConfigError(
          f"--backbone_weights={spec!r}: file not found (expected the Keras ResNet-50 "
          f"ImageNet weights {RESNET50_WEIGHTS_FILE}, from {RESNET50_WEIGHTS_URL})")
    return spec
  cached = os.path.join(os.path.expanduser("~"), ".keras", "models",
                        RESNET50_WEIGHTS_FILE)
  if os.path.isfile(cached):
    return cached
  try:
    socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
  except OSError:
    raise errors.ConfigError(
        f"--backbone_weights=imagenet needs {RESNET50_WEIGHTS_FILE}, which is not in "
        f"{os.path.dirname(cached)} and cannot be downloaded here (no network). "
        f"Download it from {RESNET50_WEIGHTS_URL} and pass --backbone_weights=PATH, or "
        f"put it at {cached}") from None
  return keras.utils.get_file(RESNET50_WEIGHTS_FILE, RESNET50_WEIGHTS_URL,
                              cache_subdir="models")


def _keras_resnet50(cfg: config_lib.ModelConfig, sync_bn: bool) -> keras.Model:
  """Keras's ResNet-50 without top, with the last stride set to 1 (stage 5's first
  block strides in its 1x1 conv and its shortcut), ImageNet weights if asked, BN
  momentum and running variance PyTorch's, and batch statistics synchronised across replicas with
  `sync_bn`."""
  weights = resolve_resnet50_weights(cfg.weights_file) if cfg.weights_file else None
  base = keras.applications.ResNet50(include_top=False, weights=weights,
                                     input_shape=cfg.image_size + (3,))
  model_config = base.get_config()
  for layer in model_config["layers"]:
    if layer["name"] in ("conv5_block1_1_conv", "conv5_block1_0_conv"):
      layer["config"]["strides"] = [1, 1]
    if layer["class_name"] == "InputLayer":
      layer["config"]["dtype"] = input_dtype()
    if layer["class_name"] == "BatchNormalization":
      layer["config"]["synchronized"] = sync_bn
      layer["config"]["momentum"] = BN_MOMENTUM
      layer.update(class_name="TorchBatchNorm", module=None,
                   registered_name="jsia_tf>TorchBatchNorm")
  model = keras.Model.from_config(model_config)
  model.set_weights(base.get_weights())
  return model


# PyTorch's BatchNorm momentum 0.1 (the weight of the new batch) is Keras's 0.9
# (the weight of the old moving value).
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="jsia_tf")
class TorchBatchNorm(keras.layers.BatchNormalization):
  """BatchNormalization whose moving variance moves as PyTorch's running_var does.

  Both normalise a training batch by its biased variance, but PyTorch averages the
  batch's UNBIASED variance (n / (n - 1) times it, n the values per channel) into
  running_var, and Keras the biased one. Test-time features read the moving
  statistics, so a model trained here must hold the numbers a model trained with
  the authors' code holds: for the BN-neck, n is the batch size, and the two rules
  differ by 1 / (n - 1), 3 % at 32 images. With `synchronized`, n counts the
  global batch of equal replica batches."""

  def call(self, inputs, training=None, mask=None):
    if not (training and self.trainable) or mask is not None or self.renorm:
      return super().call(inputs, training=training, mask=mask)
    x = keras.ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
    mean, variance = self._moments(x, None)
    shape = tf.shape(x)
    n = tf.cast(tf.reduce_prod(tf.gather(shape, self._reduction_axes)), x.dtype)
    if self.synchronized:
      n *= tf.distribute.get_replica_context().num_replicas_in_sync
    unbiased = variance * n / tf.maximum(n - 1.0, 1.0)
    # Not a cast, which takes the Python float through float32 (0.9 -> 0.89999998).
    momentum = keras.ops.convert_to_tensor(self.momentum, x.dtype)
    self.moving_mean.assign(keras.ops.cast(
        keras.ops.cast(self.moving_mean, x.dtype) * momentum + mean * (1.0 - momentum),
        self.moving_mean.dtype))
    self.moving_variance.assign(keras.ops.cast(
        keras.ops.cast(self.moving_variance, x.dtype) * momentum
        + unbiased * (1.0 - momentum), self.moving_variance.dtype))
    cast = lambda w: None if w is None else keras.ops.cast(w, x.dtype)
    outputs = keras.ops.batch_normalization(
        x, mean, variance, axis=self.axis, offset=cast(self.beta if self.center else None),
        scale=cast(self.gamma if self.scale else None), epsilon=self.epsilon)
    return keras.ops.cast(outputs, self.compute_dtype)


def batch_norm(sync_bn: bool, name: str, center: bool = True):
  """The trunk's and heads' BatchNormalization (PyTorch's epsilon, momentum and
  running variance); `sync_bn` computes the statistics over the global batch of
  all replicas."""
  return TorchBatchNorm(epsilon=1e-5, momentum=BN_MOMENTUM, center=center,
                        synchronized=sync_bn, name=name)


def input_dtype() -> str:
  """The dtype of a trunk's image input: float32, or float64 under a float64 policy
  (keras.Input's default, float32, would round float64 images)."""
  return keras.mixed_precision.global_policy().variable_dtype


def _small_resnet(cfg: config_lib.ModelConfig, name: str, sync_bn: bool) -> keras.Model:
  """A ResNet of basic blocks: stem (7x7 s2 conv, BN, ReLU, 3x3 s2 max-pool), then
  four stages; stages 2-3 stride 2, stage 4 stride 1 (last stride 1)."""
  inputs = keras.Input(cfg.image_size + (3,), dtype=input_dtype())
  w = cfg.small_widths
  x = keras.layers.Conv2D(w[0], 7, 2, "same", use_bias=False, name="stem_conv")(inputs)
  x = batch_norm(sync_bn, "stem_bn")(x)
  x = keras.layers.ReLU(name="stem_relu")(x)
  x = keras.layers.MaxPooling2D(3, 2, "same", name="stem_pool")(x)
  for stage, (width, blocks) in enumerate(zip(w, cfg.small_blocks), start=1):
    for block in range(blocks):
      stride = 2 if (block == 0 and stage in (2, 3)) else 1
      prefix = f"stage{stage}_block{block + 1}"
      shortcut = x
      if stride != 1 or x.shape[-1] != width:
        shortcut = keras.layers.Conv2D(width, 1, stride, use_bias=False,
                                       name=f"{prefix}_down")(x)
        shortcut = batch_norm(sync_bn, f"{prefix}_down_bn")(shortcut)
      y = keras.layers.Conv2D(width, 3, stride, "same", use_bias=False,
                              name=f"{prefix}_conv1")(x)
      y = batch_norm(sync_bn, f"{prefix}_bn1")(y)
      y = keras.layers.ReLU()(y)
      y = keras.layers.Conv2D(width, 3, 1, "same", use_bias=False,
                              name=f"{prefix}_conv2")(y)
      y = batch_norm(sync_bn, f"{prefix}_bn2")(y)
      x = keras.layers.ReLU(name=f"{prefix}_out")(keras.layers.Add()([shortcut, y]))
  return keras.Model(inputs, x, name=name)


def _torchvision_resnet50(cfg: config_lib.ModelConfig, sync_bn: bool) -> keras.Model:
  """The authors' trunk (torchvision's layout, last stride 1), with torchvision's
  ImageNet weights from a local file when asked (the classifier `fc.*` of the
  ImageNet checkpoint is not part of it)."""
  model = torchvision_resnet.build(cfg.image_size + (3,),
                                   lambda name: batch_norm(sync_bn, name),
                                   stem_relu=cfg.stem_relu, dtype=input_dtype())
  if cfg.weights_file:
    path = cfg.weights_file
    expected = (f"torchvision's ResNet-50 ImageNet weights, "
                f"{' or '.join(torchvision_resnet.IMAGENET_FILES)}, or the same tensors "
                f"as .safetensors")
    if not os.path.isfile(path):
      raise errors.ConfigError(
          f"--backbone_weights={path!r}: file not found (expected {expected})")
    torchvision_resnet.load_state_dict(
        torchvision_resnet.state_dict_names(model.layers),
        torchvision_resnet.read_state_dict(path),
        source=f"--backbone_weights={path} (expected {expected})",
        ignore_prefixes=(torchvision_resnet.CLASSIFIER_PREFIX,))
  return model


def build_trunk(cfg: config_lib.ModelConfig, sync_bn: bool = False) -> Dict[str, keras.Model]:
  """The re-id trunk split in two: {"E_sl": images -> M, "E_il": M -> T}.

  E_sl = stem + stage 1 (its output M is the content map of E_i); E_il = stages 2-4.
  Both take the already converted input of `TrunkInput`.
  """
  if cfg.backbone == "torchvision_resnet50":
    full, split = _torchvision_resnet50(cfg, sync_bn), torchvision_resnet.E_SL_OUTPUT
  elif cfg.backbone == "keras_resnet50":
    full, split = _keras_resnet50(cfg, sync_bn), "conv2_block3_out"
  else:
    full = _small_resnet(cfg, "small_resnet", sync_bn)
    split = f"stage1_block{cfg.small_blocks[0]}_out"
  m = full.get_layer(split).output
  return {"E_sl": keras.Model(full.input, m, name="E_sl"),
          "E_il": keras.Model(m, full.output, name="E_il")}


def stripe_pool(t: tf.Tensor, num_stripes: int) -> tf.Tensor:
  """Average pool of n horizontal stripes (adaptive, like PCB): [B, h, w, c] ->
  [B, n, c]; stripe i covers rows floor(i h / n) .. ceil((i + 1) h / n) - 1."""
  h = t.shape[1]
  stripes = []
  for i in range(num_stripes):
    start, end = (i * h) // num_stripes, -((-(i + 1) * h) // num_stripes)
    stripes.append(tf.reduce_mean(t[:, start:end], axis=[1, 2]))
  return tf.stack(stripes, axis=1)


class FeatureModule(keras.Model):
  """F: E_sl -> E_il -> pooled feature v -> BN-neck f -> classifier C, plus the
  stripe classifiers C_n on the n stripes of the E_il map T.

  call() returns named tensors: M (E_sl map), T (E_il map), v [B, D] (pre-BN, the
  triplet's feature), f [B, D] (BN-neck), logits [B, C], stripe_logits [B, n, C].
  With `num_classes=None` it is the test-time path only (no classifiers, no logits):
  what evaluation and the exported model restore from a training checkpoint.
  """

  def __init__(self, cfg: config_lib.ModelConfig, num_classes: Optional[int],
               E_sl: keras.Model, E_il: keras.Model, sync_bn: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.cfg, self.num_classes = cfg, num_classes
    self.trunk_input = TrunkInput(cfg.grey_input, INPUT_NORMALISATION[cfg.backbone])
    self.E_sl, self.E_il = E_sl, E_il
    self.bn_neck = batch_norm(sync_bn, "bn_neck", center=False)
    if num_classes is None:
      return
    # The classifiers run in float32 under a mixed-precision policy: their logits
    # feed softmaxes and the KL alignments, where half precision loses the small
    # differences Eq. (11), (12) and (15) are about. Under a float64 policy (the
    # gradient-identity tests) they are float64 like everything else.
    head_dtype = ("float64" if keras.mixed_precision.global_policy().compute_dtype
                  == "float64" else "float32")
    self.C = keras.layers.Dense(num_classes, use_bias=False, name="C", dtype=head_dtype,
                                kernel_initializer=keras.initializers.RandomNormal(
                                    stddev=0.001))
    self.stripe_bn = [batch_norm(sync_bn, f"stripe_bn_{i}", center=False)
                      for i in range(cfg.num_stripes)]
    self.C_n = [keras.layers.Dense(num_classes, use_bias=False, name=f"C_{i}",
                                   dtype=head_dtype,
                                   kernel_initializer=keras.initializers.RandomNormal(
                                       stddev=0.001))
                for i in range(cfg.num_stripes)]

  def call(self, x, training=False):
    m = self.E_sl(self.trunk_input(x), training=training)
    return self.from_content(m, training=training)

  def from_content(self, m, training=False) -> Dict[str, tf.Tensor]:
    """The outputs of call() from the E_sl map `m` (to reuse an E_sl pass)."""
    t = self.E_il(m, training=training)
    v = tf.reduce_mean(t, axis=[1, 2])
    f = self.bn_neck(v, training=training)
    if self.num_classes is None:
      return {"M": m, "T": t, "v": v, "f": f}
    stripes = stripe_pool(t, self.cfg.num_stripes)
    stripe_logits = tf.stack(
        [c(bn(stripes[:, i], training=training)) for i, (bn, c) in
         enumerate(zip(self.stripe_bn, self.C_n))], axis=1)
    return {"M": m, "T": t, "v": v, "f": f, "logits": self.C(f),
            "stripe_logits": stripe_logits}

  def embed(self, x, flip_average: bool = False, pre_bn: bool = False) -> tf.Tensor:
    """Eq. (17): the L2-normalised test feature [B, D] of images x [B, H, W, 3] in
    [-1, 1] (BN-neck output, or pooled pre-BN). With `flip_average`, the normalised
    mean of the image's and its mirror's features."""

    def one(images):
      out = self(images, training=False)
      return tf.math.l2_normalize(out["v"] if pre_bn else out["f"], axis=-1)

    if not flip_average:
      return one(x)
    return tf.math.l2_normalize(one(x) + one(tf.image.flip_left_right(x)), axis=-1)


@keras.saving.register_keras_serializable(package="jsia_tf")
class ModalityDiscriminator(generation.FromModelConfig, keras.Model):
  """Dis_sl, Table 3 row 7 (--sl_mode=adversarial): tells RGB from IR by E_sl's
  map M [B, h, w, c] -> [one patch map [B, h / 4, w / 4, 1]] (LSGAN), as the
  feature-level modality discriminator of cmGAN; E_sl learns to fool it. Built like
  one scale of the image discriminators (4x4 s2 convs, reflection padding, leaky
  ReLU 0.2, N(0, 0.02) weights), two convs deep: M is already 4x smaller."""

  def __init__(self, cfg: config_lib.ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self._remember(cfg)
    c = cfg.dis_channels
    self.convs = [keras.layers.Conv2D(w, 4, 2, "valid", kernel_initializer=generation.dis_init(),
                                      name=f"conv{i}") for i, w in enumerate((2 * c, 4 * c))]
    self.out = keras.layers.Conv2D(1, 1, kernel_initializer=generation.dis_init(),
                                   name="out")

  def call(self, m) -> List[tf.Tensor]:
    y = m
    for conv in self.convs:
      y = generation.leaky_relu(conv(generation.reflect_pad(y, 1)))
    return [self.out(y)]


def count_params(model: keras.Model) -> int:
  """Number of weights (trainable and not) of `model`."""
  return int(sum(np.prod(w.shape) for w in model.weights))
