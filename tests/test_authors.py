"""The authors' checkpoints in jsia_tf: their state-dict names and layouts, the
converter to a workdir, and its errors (no torch: state dicts as numpy arrays and
.safetensors files)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from safetensors import numpy as safetensors_numpy

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.models import authors
from jsia_tf.models import jsia
from jsia_tf.serving import extractor
from jsia_tf.training import convert

from conftest import run_python

NUM_CLASSES = 395


def _paper(seed=0, **overrides):
  return config_lib.model_config("paper", seed=seed, **overrides)


@pytest.fixture(scope="module")
def source():
  """A paper-preset model with distinct weights: the "authors'" trained model."""
  model = jsia.build(_paper(seed=5), NUM_CLASSES)
  rng = np.random.default_rng(0)
  for v in model.weights:  # BN statistics too, so that they are checked
    value = rng.standard_normal(v.shape).astype(np.float32) * 0.05
    if "moving_variance" in v.name or "gamma" in v.name:
      value = np.abs(value) + 0.5
    v.assign(value)
  return model


@pytest.fixture(scope="module")
def states(source):
  return authors.export_state(source)


def test_their_names_and_layouts(states):
  """Names and PyTorch shapes of their Generator / Discriminator / Encoder."""
  rgb, ir, dis_rgb, _ = states
  want = {
      "mod_invar_enc.resnet_conv1.0.weight": (64, 3, 7, 7),  # conv1
      "mod_invar_enc.resnet_conv1.1.running_var": (64,),  # bn1
      "mod_invar_enc.resnet_conv1.3.2.conv3.weight": (256, 64, 1, 1),  # layer1.2
      "mod_invar_enc.resnet_conv2.0.0.downsample.0.weight": (512, 256, 1, 1),
      "mod_invar_enc.resnet_conv2.2.0.conv2.weight": (512, 512, 3, 3),  # layer4
      "mod_invar_enc.classifier.bn.weight": (2048,),
      "mod_invar_enc.classifier.classifier.weight": (NUM_CLASSES, 2048),
      "mod_spec_enc.model.0.conv.weight": (32, 3, 7, 7),
      "mod_spec_enc.model.4.conv.bias": (128,),
      "mod_spec_enc.model.6.weight": (128, 128, 1, 1),  # the 1x1 conv after pooling
      "dec.model.0.model.1.model.0.conv.weight": (256, 256, 3, 3),
      "dec.model.2.conv.weight": (128, 256, 5, 5),
      "dec.model.2.norm.gamma": (128,),
      "dec.model.3.conv.weight": (3, 128, 7, 7),
      "mlp.model.2.fc.weight": (2 * 4 * 256, 256),
  }
  for name, shape in want.items():
    assert rgb[name].shape == shape, name
    assert ir[name].shape == shape, name
  assert dis_rgb["cnns.1.0.conv.weight"].shape == (32, 3, 4, 4)
  assert dis_rgb["cnns.0.3.conv.weight"].shape == (256, 128, 4, 4)
  assert dis_rgb["cnns.1.4.weight"].shape == (1, 256, 1, 1)
  # The trunk: 53 convs and 53 BNs (weight, bias, running mean and variance).
  assert sum(k.startswith("mod_invar_enc.resnet_conv") for k in rgb) == 53 * 5
  # Both generator files hold the one shared Encoder.
  np.testing.assert_array_equal(rgb["mod_invar_enc.resnet_conv1.0.weight"],
                                ir["mod_invar_enc.resnet_conv1.0.weight"])


def test_round_trip_is_the_identity(source, states):
  """jsia_tf -> their names and layouts -> jsia_tf gives every mapped weight back
  bit for bit, and the same F and G outputs."""
  target = jsia.build(_paper(seed=9), NUM_CLASSES)
  authors.load_state(target, states, [f"file{i}" for i in range(4)])
  count = 0
  for got, want in zip(authors.file_names(target), authors.file_names(source)):
    for name, (variable, _) in got.items():
      np.testing.assert_array_equal(variable.numpy(), want[name][0].numpy(), err_msg=name)
      count += 1
  assert count == len(target.weights) - (
      len(target.E_v.weights) + len(target.D_v.weights) +
      sum(len(layer.weights) for layer in target.F.stripe_bn + target.F.C_n))
  x = tf.random.stateless_uniform([2, 256, 128, 3], [1, 2], -1, 1)
  np.testing.assert_allclose(target.F.embed(x), source.F.embed(x), atol=1e-6)
  gen = tf.random.stateless_uniform([2, 128, 64, 3], [3, 4], -1, 1)
  for net in ("E_s_ir", "Dis_rgb"):
    a, b = getattr(target, net)(gen), getattr(source, net)(gen)
    for x_a, x_b in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
      np.testing.assert_array_equal(x_a, x_b)
  m = source.encode_content(gen)
  s = source.E_s_rgb(gen)
  np.testing.assert_array_equal(target.D_rgb(m, s), source.D_rgb(m, s))


@pytest.fixture(scope="module")
def target():
  """A paper-preset model of other weights for the loads that must fail: they
  assign nothing, so the cases share it (each checks it is unchanged)."""
  return jsia.build(_paper(seed=9), NUM_CLASSES)


def _damaged(states, index, edit):
  copy = [dict(s) for s in states]
  edit(copy[index])
  return copy


@pytest.mark.parametrize("index,edit,message", [
    (2, lambda s: s.pop("cnns.0.2.conv.weight"), "missing tensors cnns.0.2.conv.weight"),
    (0, lambda s: s.update({"dec.extra.weight": np.zeros(3)}),
     "map to no variable: dec.extra.weight"),
    (1, lambda s: s.update({"mlp.model.0.fc.weight": np.zeros((256, 7))}),
     "mlp.model.0.fc.weight has shape (256, 7), expected mlp.model.0.fc.weight [256, 128]"),
    (1, lambda s: s.update({"mod_invar_enc.resnet_conv1.0.weight": np.ones((64, 3, 7, 7))}),
     "differs from file0's: the two generators share one Encoder"),
    (0, lambda s: s.update({"mod_invar_enc.classifier.bn.bias": np.ones(2048)}),
     "classifier.bn.bias is not zero"),
])
def test_a_tensor_that_does_not_fit_is_named_and_nothing_is_assigned(states, target, index,
                                                                      edit, message):
  before = [v.numpy() for v in target.weights]
  with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(").replace(
      ")", r"\)").replace("[", r"\[").replace("]", r"\]")) as info:
    authors.load_state(target, _damaged(states, index, edit),
                       [f"file{i}" for i in range(4)])
  assert f"file{index}" in str(info.value)
  for v, b in zip(target.weights, before):
    np.testing.assert_array_equal(v.numpy(), b)


def _write_safetensors(states, directory, epoch):
  os.makedirs(directory, exist_ok=True)
  for i, state in enumerate(states):
    # DataParallel's prefix, as their files have it.
    safetensors_numpy.save_file({f"module.{k}": np.ascontiguousarray(v, np.float32)
                                 for k, v in state.items()},
                                os.path.join(directory, f"model-{i}_{epoch}.safetensors"))


def test_converted_workdir_is_what_evaluate_and_export_restore(source, states, tmp_path):
  _write_safetensors(states, tmp_path / "theirs", 3)
  _write_safetensors(states[:3], tmp_path / "theirs", 9)  # incomplete: not chosen
  lines = []
  workdir = str(tmp_path / "converted")
  prefix = convert.convert(str(tmp_path / "theirs"), workdir, log=lines.append)
  assert prefix.endswith("ckpt-0")
  assert "reading epoch 3" in lines[0]
  assert "E_v" in lines[1] and "stripe classifiers" in lines[1]
  restored = extractor.restore(workdir)  # what evaluate --checkpoint and export use
  assert restored.config.loss.lambda_v == 0 and restored.config.model.preset == "paper"
  x = tf.random.stateless_uniform([2, 256, 128, 3], [5, 6], -1, 1)
  np.testing.assert_allclose(restored.extractor.embed(x), source.F.embed(x), atol=1e-5)
  with pytest.raises(errors.ConfigError, match="already holds checkpoints"):
    convert.convert(str(tmp_path / "theirs"), workdir, log=lines.append)
  with pytest.raises(errors.ConfigError, match="epoch 9 has files"):
    convert.convert(str(tmp_path / "theirs"), str(tmp_path / "other"), epoch=9)
  with pytest.raises(errors.ConfigError, match="--num_classes=206, but"):
    convert.convert(str(tmp_path / "theirs"), str(tmp_path / "other"), num_classes=206)


def test_cli_errors_name_the_directory(tmp_path):
  result = run_python("tools/convert_authors_checkpoint.py",
                      f"--checkpoint_dir={tmp_path}", f"--workdir={tmp_path / 'out'}")
  assert result.returncode == 2
  assert f"error: --checkpoint_dir={tmp_path}: no complete epoch" in result.stderr
  assert "model-0_E.pkl" in result.stderr
