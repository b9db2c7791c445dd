"""The networks: shapes, weight sharing, gradient routing, serialisation, weights."""


import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import losses
from jsia_tf.models import feature
from jsia_tf.models import generation
from jsia_tf.models import jsia

from conftest import run_python

NUM_CLASSES = 7


@pytest.fixture(scope="module")
def tiny():
  return jsia.build(config_lib.model_config("tiny"), NUM_CLASSES, batch_size=4)


def _batch(cfg, n=4, seed=0):
  g = tf.random.Generator.from_seed(seed)
  shape = [n] + list(cfg.image_size) + [3]
  return {"x_rgb": g.uniform(shape, -1, 1), "x_ir": g.uniform(shape, -1, 1)}


def test_tiny_named_outputs(tiny):
  cfg = tiny.model_cfg
  out = tiny({**_batch(cfg), "seed": tf.constant([1, 2])}, training=True)
  gen = (4,) + cfg.gen_size + (3,)
  content = (4, cfg.image_height // 4, cfg.image_width // 4, cfg.small_widths[0])
  for name in ("x_rgb_recon", "x_ir_recon", "x_rgb2ir", "x_ir2rgb", "x_rgb_cycle",
               "x_ir_cycle", "x_mix_rgb", "x_mix_ir"):
    assert tuple(out[name].shape) == gen, name
    assert float(tf.reduce_max(tf.abs(out[name]))) <= 1.0  # tanh range
  for name in ("M_rgb", "M_ir", "M_rgb2ir", "M_ir2rgb", "M_rgb_recon", "M_rgb_target"):
    assert tuple(out[name].shape) == content, name
  latent = (4, content[1] // 4, content[2] // 4, cfg.latent_channels)
  for name in ("mu_rgb", "tau_rgb", "z_rgb", "z_mix_rgb"):
    assert tuple(out[name].shape) == latent, name
  assert float(tf.reduce_min(out["tau_rgb"])) > 0  # a standard deviation
  for prefix in ("rgb", "ir", "rgb_gen", "ir_gen", "rgb2ir", "ir2rgb", "mix_rgb",
                 "mix_ir"):
    assert tuple(out[f"F_{prefix}_T"].shape) == (4, cfg.image_height // 16,
                                                 cfg.image_width // 16, 32)
    assert tuple(out[f"F_{prefix}_logits"].shape) == (4, NUM_CLASSES)
    assert tuple(out[f"F_{prefix}_stripe_logits"].shape) == (4, 4, NUM_CLASSES)
  assert tuple(out["s_mix_ir"].shape) == (4, cfg.style_dim)
  dis = tiny.Dis_rgb(out["x_ir2rgb"])
  assert [tuple(d.shape) for d in dis] == [(4, 2, 1, 1)]  # tiny: one scale
  emb = tiny.F.embed(_batch(cfg)["x_rgb"])
  np.testing.assert_allclose(tf.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_embed_flip_average_is_the_normalised_mean_with_the_mirror(tiny):
  x = _batch(tiny.model_cfg)["x_rgb"]
  plain = tiny.F.embed(x)
  mirror = tiny.F.embed(tf.image.flip_left_right(x))
  both = tiny.F.embed(x, flip_average=True)
  expected = (plain + mirror) / tf.norm(plain + mirror, axis=1, keepdims=True)
  np.testing.assert_allclose(both, expected, atol=1e-6)
  assert float(tf.reduce_max(tf.abs(both - plain))) > 1e-3  # the mirror mattered


def test_paper_preset_shapes_and_trunk_is_the_authors_resnet50():
  cfg = config_lib.model_config("paper")
  assert cfg.backbone == "torchvision_resnet50" and not cfg.stem_relu
  model = jsia.JSIA(cfg, 395)
  x = tf.zeros([1, 256, 128, 3])
  g = model.generate(x, x)
  assert tuple(g["M_rgb"].shape) == (1, 64, 32, 256)  # the authors' content map
  assert tuple(g["x_rgb2ir"].shape) == (1, 128, 64, 3)
  out = model.F(x)
  assert tuple(out["T"].shape) == (1, 16, 8, 2048)  # last stride 1
  assert tuple(out["stripe_logits"].shape) == (1, 6, 395)
  trainable = sum(int(np.prod(v.shape)) for v in
                  model.F.E_sl.trainable_variables + model.F.E_il.trainable_variables)
  assert trainable == 23_508_032  # torchvision's ResNet-50 without fc


def test_keras_resnet50_backbone_is_keras_own():
  cfg = config_lib.model_config("paper", backbone="keras_resnet50", image_height=64,
                                image_width=32, num_stripes=4, dis_scales=1)
  trunk = feature.build_trunk(cfg)
  keras_resnet50 = keras.applications.ResNet50(include_top=False, weights=None,
                                               input_shape=(64, 32, 3))
  assert (feature.count_params(trunk["E_sl"]) + feature.count_params(trunk["E_il"]) ==
          keras_resnet50.count_params() == 23_587_712)
  assert tuple(trunk["E_il"].output.shape[1:]) == (4, 2, 2048)  # last stride 1
  # Its BN layers move the running variance as every other trunk's.
  assert {type(l) for l in trunk["E_sl"].layers if "bn" in l.name} == {feature.TorchBatchNorm}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_moves_the_unbiased_variance_as_pytorch(dtype):
  """A training call normalises by the batch's biased variance and moves the
  running variance by its unbiased one (PyTorch's rule), momentum 0.1."""
  x = np.array([[1.0, -2.0], [2.0, 0.0], [4.0, 5.0], [9.0, 1.0]], dtype)
  bn = feature.batch_norm(False, "bn")
  y = bn(tf.constant(x), training=True).numpy()
  np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-6)
  np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * x.mean(0), rtol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * x.var(0, ddof=1),
                             rtol=1e-6)
  # Image maps: n counts batch x height x width values per channel.
  maps = np.arange(2 * 3 * 2 * 1, dtype=dtype).reshape(2, 3, 2, 1) ** 2
  bn2 = feature.batch_norm(False, "bn2")
  bn2(tf.constant(maps), training=True)
  np.testing.assert_allclose(bn2.moving_variance.numpy(),
                             0.9 + 0.1 * maps.reshape(-1).var(ddof=1), rtol=1e-6)
  # Inference reads the moving statistics and moves nothing.
  before = bn2.moving_variance.numpy()
  bn2(tf.constant(maps), training=False)
  np.testing.assert_array_equal(bn2.moving_variance.numpy(), before)


@pytest.mark.parametrize("sl_mode", ["shared", "separate"])
def test_weight_sharing(sl_mode):
  model = jsia.build(config_lib.model_config("tiny", sl_mode=sl_mode), NUM_CLASSES)
  share_sl = sl_mode == "shared"
  x = _batch(model.model_cfg)["x_rgb"]
  x_gen = model.to_gen_size(x)
  before = model.encode_content(x_gen).numpy()
  assert (model.E_i is model.F.E_sl) == share_sl
  kernel = model.F.E_sl.get_layer("stem_conv").kernel
  kernel.assign(kernel * 2.0 + 0.1)
  after = model.encode_content(x_gen).numpy()
  assert (np.abs(after - before).max() > 1e-3) == share_sl


def test_discriminator_loss_gives_no_gradient_to_the_generator(tiny):
  b = _batch(tiny.model_cfg)
  with tf.GradientTape(persistent=True) as tape:
    g = tiny.generate(b["x_rgb"], b["x_ir"], training=True)
    loss = tiny.discriminator_loss(g)
  generator = (tiny.E_s_rgb.trainable_variables + tiny.D_rgb.trainable_variables +
               tiny.D_ir.trainable_variables + tiny.E_i.trainable_variables)
  assert all(gr is None for gr in tape.gradient(loss, generator))
  dis = tape.gradient(loss, tiny.Dis_rgb.trainable_variables + tiny.Dis_ir.trainable_variables)
  assert all(gr is not None for gr in dis)


def test_config_round_trip_gives_identical_outputs(tiny):
  clone = jsia.JSIA.from_config(tiny.get_config())
  clone.build()
  clone(_batch(clone.model_cfg))
  clone.set_weights(tiny.get_weights())
  b = _batch(tiny.model_cfg, seed=3)
  a, c = tiny(b), clone(b)
  for key in a:
    np.testing.assert_array_equal(a[key], c[key])
  assert clone.model_cfg == tiny.model_cfg


@pytest.mark.parametrize("shape,size", [((64, 32), (32, 16)), ((128, 64), (64, 32)),
                                        ((100, 37), (41, 23)), ((20, 12), (45, 30))])
def test_antialiased_resize_is_tf_image_resize_and_compiles(shape, size):
  """G's downsampling as matrix products equals tf.image.resize(antialias=True)
  (halving, an odd factor, upsampling) and, unlike it, compiles with XLA."""
  x = tf.random.stateless_uniform((2,) + shape + (3,), [4, 2], -1, 1)
  want = tf.image.resize(x, size, method="bilinear", antialias=True)
  np.testing.assert_allclose(generation.antialiased_resize(x, size), want, atol=5e-6)
  compiled = tf.function(lambda t: generation.antialiased_resize(t, size),
                         jit_compile=True)
  np.testing.assert_allclose(compiled(x), want, atol=5e-6)
  # Each output pixel is a convex combination of input pixels.
  weights = generation.resize_weights(shape[0], size[0])
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
  assert weights.min() >= 0.0


@pytest.mark.parametrize("shape,size", [((128, 64), (256, 128)), ((20, 12), (45, 30))])
def test_enlarging_is_plain_bilinear_in_float64(shape, size):
  """Enlarging (E_i's input) is tf.image.resize's plain bilinear, and runs in float64
  where TensorFlow's resize kernels have no float64 version."""
  x = tf.random.stateless_uniform((2,) + shape + (3,), [5, 1], -1, 1, tf.float64)
  want = tf.image.resize(tf.cast(x, tf.float32), size, method="bilinear")
  got = generation.antialiased_resize(x, size)
  assert got.dtype == tf.float64
  np.testing.assert_allclose(got, want, atol=5e-6)


def test_doubling_by_hand():
  """Half-pixel centres, border clamped: [a, b] -> [a, 3a/4 + b/4, a/4 + 3b/4, b]."""
  x = tf.constant([1.0, 5.0], tf.float64)[None, :, None, None]
  got = generation.antialiased_resize(x, (4, 1))[0, :, 0, 0].numpy()
  np.testing.assert_array_equal(got, [1.0, 2.0, 4.0, 5.0])
  half = generation.antialiased_resize(tf.constant([1.0, 3.0, 5.0, 7.0], tf.float64)[
      None, :, None, None], (2, 1))[0, :, 0, 0].numpy()
  # Halving: the triangle of width 2 gives weights 1/8, 3/8, 3/8, 1/8 around each
  # sample, cut at the border and renormalised: (3*1 + 3*3 + 5) / 7, (3 + 3*5 + 3*7) / 7.
  np.testing.assert_allclose(half, [17 / 7, 39 / 7], rtol=1e-15)


def test_adain_is_stateless_and_sets_channel_statistics():
  x = tf.random.normal([2, 8, 4, 3], seed=1) * 5.0 + 2.0
  gamma = tf.constant([[1.0, 2.0, 0.5], [3.0, 1.0, 1.0]])
  beta = tf.constant([[0.0, -1.0, 4.0], [1.0, 1.0, 1.0]])
  y = generation.adain(x, gamma, beta)
  mean, var = tf.nn.moments(y, axes=[1, 2])
  np.testing.assert_allclose(mean, beta, atol=1e-4)
  np.testing.assert_allclose(tf.sqrt(var), gamma, rtol=1e-3)


def test_reflect_pad_and_exclusive_average_pool_by_hand():
  """PyTorch's ReflectionPad2d and AvgPool2d(3, 2, 1, count_include_pad=False),
  checked on a 4 x 4 ramp by hand."""
  x = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
  padded = generation.reflect_pad(x, 1)[0, :, :, 0].numpy()
  np.testing.assert_array_equal(padded[0], [5, 4, 5, 6, 7, 6])  # row 1, reflected
  np.testing.assert_array_equal(padded[:, 0], [5, 1, 5, 9, 13, 9])
  pooled = generation.avg_pool_exclude_pad(x)[0, :, :, 0].numpy()
  # Windows centred on rows / cols 0 and 2; the corner window holds x[0:2, 0:2].
  np.testing.assert_allclose(pooled, [[np.mean([0, 1, 4, 5]), np.mean([1, 2, 3, 5, 6, 7])],
                                      [np.mean([4, 5, 8, 9, 12, 13]),
                                       np.mean([5, 6, 7, 9, 10, 11, 13, 14, 15])]],
                             rtol=1e-6)


def test_layer_norm_is_the_authors():
  """(x - mean) / (unbiased std + 1e-5) over (H, W, C) per image, then gamma, beta."""
  x = tf.random.stateless_normal([2, 3, 2, 4], [1, 2]) * 3.0 + 1.0
  norm = generation.ChannelLayerNorm()
  norm.build(x.shape)
  gamma = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
  norm.gamma.assign(gamma)
  norm.beta.assign([0.0, 1.0, 0.0, -1.0])
  flat = x.numpy().reshape(2, -1)
  mean, std = flat.mean(1), flat.std(1, ddof=1)
  want = (x.numpy() - mean[:, None, None, None]) / (std[:, None, None, None] + 1e-5)
  want = want * gamma + np.array([0.0, 1.0, 0.0, -1.0])
  np.testing.assert_allclose(norm(x), want, rtol=1e-5, atol=1e-6)
  fresh = generation.ChannelLayerNorm()
  fresh.build([1, 1, 1, 1000])
  g = fresh.gamma.numpy()
  assert 0.0 <= g.min() and g.max() <= 1.0 and abs(g.mean() - 0.5) < 0.05  # U(0, 1)


def test_generator_layers_start_from_pytorch_default_initialisation():
  """G's convs / dense layers: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  cfg = config_lib.model_config("demo")
  decoder = generation.Decoder(cfg, content_channels=32)
  decoder(tf.zeros([1, 4, 2, 32]), tf.zeros([1, cfg.style_dim]))
  for layer, fan_in in ((decoder.res_convs[0], 32 * 9), (decoder.mlp[1], cfg.mlp_dim)):
    bound = 1.0 / np.sqrt(fan_in)
    for w in (layer.kernel.numpy(), layer.bias.numpy()):
      assert np.abs(w).max() <= bound
      # U(-b, b) has std b / sqrt(3).
      assert abs(w.std() * np.sqrt(3.0) / bound - 1.0) < (0.05 if w.size > 1000 else 0.4)


def test_stripe_pool_adaptive_bins():
  t = tf.reshape(tf.range(4, dtype=tf.float32), [1, 4, 1, 1])  # rows 0, 1, 2, 3
  # 3 stripes of 4 rows: [0, 2), [1, 3), [2, 4) as adaptive pooling bins.
  np.testing.assert_allclose(feature.stripe_pool(t, 3)[0, :, 0], [0.5, 1.5, 2.5])
  np.testing.assert_allclose(feature.stripe_pool(t, 2)[0, :, 0], [0.5, 2.5])


def test_trunk_input_grey_and_caffe():
  x = tf.constant([[[[1.0, -1.0, 0.0]]]])  # red-ish pixel in [-1, 1]
  grey = feature.TrunkInput(grey=True, normalisation="none")(x).numpy()
  luma = 0.299 - 0.587
  np.testing.assert_allclose(grey[0, 0, 0], [luma] * 3, rtol=1e-6)
  caffe = feature.TrunkInput(grey=False, normalisation="caffe")(x).numpy()
  # RGB (255, 0, 127.5) -> BGR minus mean.
  np.testing.assert_allclose(caffe[0, 0, 0], [127.5 - 103.939, 0 - 116.779, 255 - 123.68],
                             rtol=1e-5)


def test_backbone_weights_from_a_local_file(tmp_path):
  source = keras.applications.ResNet50(include_top=False, weights=None,
                                       input_shape=(64, 32, 3))
  conv1 = source.get_layer("conv1_conv")
  conv1.kernel.assign(tf.fill(conv1.kernel.shape, 0.125))
  path = str(tmp_path / feature.RESNET50_WEIGHTS_FILE)
  # The real file is Keras's legacy HDF5 weights format; write one the same way.
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  with h5py.File(path, "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, source)
  cfg = config_lib.model_config("paper", backbone="keras_resnet50", image_height=64,
                                image_width=32, backbone_weights=path, num_stripes=4,
                                dis_scales=1)
  trunk = feature.build_trunk(cfg)
  np.testing.assert_array_equal(trunk["E_sl"].get_layer("conv1_conv").kernel, 0.125)


def test_missing_or_unreachable_backbone_weights(tmp_path, monkeypatch):
  with pytest.raises(errors.ConfigError, match="--backbone_weights='/no/w.h5': file not "
                     "found .*resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
    feature.resolve_resnet50_weights("/no/w.h5")
  monkeypatch.setenv("HOME", str(tmp_path))

  def offline(*args, **kwargs):
    raise OSError("no network")

  monkeypatch.setattr(feature.socket, "create_connection", offline)
  with pytest.raises(errors.ConfigError, match="needs resnet50_weights_tf_dim_ordering_"
                     "tf_kernels_notop.h5.*no network.*--backbone_weights=PATH"):
    feature.resolve_resnet50_weights("imagenet")
  with pytest.raises(errors.ConfigError, match="--backbone_weights='x.h5' is invalid"):
    config_lib.model_config("tiny", backbone_weights="x.h5")


def _train(*args):
  return run_python("-m", "jsia_tf.train", *args)


def test_dry_run_cli():
  result = _train("--preset=tiny", "--dry_run", "--num_classes=5")
  assert result.returncode == 0, result.stderr
  for name in ("E_i = E_sl (shared)", "E_s_rgb", "D_ir", "Dis_ir", "E_v", "D_v", "E_il",
               "re-id trunk (E_sl + E_il)", "x_rgb2ir", "F_ir2rgb_logits",
               "(2, 5)", "z_mix_rgb"):
    assert name in result.stdout, name
  row7 = _train("--preset=tiny", "--dry_run", "--sl_mode=adversarial")
  assert "E_sl " in row7.stdout and "Dis_sl " in row7.stdout
  assert "sl_mode=adversarial" in row7.stdout
  bad = _train("--preset=tiny", "--dry_run", "--sl_mode=cmgan")
  assert bad.returncode == 2 and ("--sl_mode='cmgan' is invalid: expected one of shared, "
                                  "separate, adversarial") in bad.stderr, bad.stderr
  bad = _train("--preset=tiny", "--dry_run", "--num_stripes=9")
  assert bad.returncode == 2 and "--num_stripes=9 is invalid" in bad.stderr
  assert "Traceback" not in bad.stderr


def test_sub_networks_round_trip_through_keras_serialisation(tiny):
  cfg = tiny.model_cfg
  x = _batch(cfg)["x_rgb"][:, :32, :16]
  m = tiny.encode_content(x)
  s = tiny.E_s_rgb(x)
  cases = [(tiny.E_s_rgb, (x,)), (tiny.D_rgb, (m, s)), (tiny.Dis_ir, (x,)),
           (tiny.E_v, (m,)), (tiny.D_v, (tiny.E_v(m)["z"],))]
  for net, args in cases:
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert type(clone) is type(net)
    clone(*args)
    clone.set_weights(net.get_weights())
    a, b = net(*args), clone(*args)
    for x_a, x_b in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
      np.testing.assert_array_equal(x_a, x_b)
