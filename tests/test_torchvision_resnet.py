"""The torchvision-layout ResNet-50 (the authors' trunk): parameter count, stride
and padding placement, the input path, and loading torchvision weights by name."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors import numpy as safetensors_numpy

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.models import feature
from jsia_tf.models import torchvision_resnet


def _cfg(**overrides):
  # The paper preset at a quarter of its size: the layout is the same.
  return config_lib.model_config("paper", image_height=64, image_width=32,
                                 num_stripes=4, dis_scales=1, **overrides)


@pytest.fixture(scope="module")
def trunk():
  return torchvision_resnet.build((64, 32, 3), lambda name: feature.batch_norm(False, name))


def test_parameter_count_and_state_dict_names(trunk):
  """torchvision.models.resnet50(): 25,557,032 parameters with its 1000-class fc,
  so 23,508,032 without; BN moving statistics are buffers there, variables here."""
  trainable = sum(int(np.prod(v.shape)) for v in trunk.trainable_variables)
  assert trainable == torchvision_resnet.NUM_PARAMS == 23_508_032
  names = torchvision_resnet.state_dict_names(trunk.layers)
  # torchvision's state dict: 320 tensors, less fc (2) and 53 num_batches_tracked.
  assert len(names) == 265
  assert tuple(names["layer4.2.conv3.weight"][0].shape) == (1, 1, 512, 2048)
  assert "layer2.0.downsample.1.running_var" in names


def test_strides_sit_on_the_3x3_conv_and_the_last_stage_strides_1(trunk):
  def strides(name):
    return tuple(trunk.get_layer(name).strides)
  for stage in (2, 3):
    assert strides(f"layer{stage}.0.conv2") == (2, 2)  # torchvision's V1.5 layout
    assert strides(f"layer{stage}.0.conv1") == (1, 1)
    assert strides(f"layer{stage}.0.downsample.0") == (2, 2)
  assert strides("layer4.0.conv2") == strides("layer4.0.downsample.0") == (1, 1)
  assert trunk.get_layer(torchvision_resnet.E_SL_OUTPUT).output.shape[1:] == (16, 8, 256)
  assert trunk.output.shape[1:] == (4, 2, 2048)  # 1/16: last stride 1
  # No ReLU after bn1 unless asked (the authors' E_sl has none).
  assert not any(isinstance(layer, keras.layers.ReLU) and layer.name == "relu"
                 for layer in trunk.layers)


def test_padding_is_pytorchs():
  """A 7x7 stride-2 conv pads 3 on every side (TF's "same" pads 2 top, 3 bottom),
  and max pooling pads with -inf (a zero would beat negative activations)."""
  x = tf.random.stateless_normal([1, 8, 6, 3], [1, 2])
  inputs = keras.Input((8, 6, 3))
  conv = keras.Model(inputs, torchvision_resnet._conv(inputs, 4, 7, 2, "c"))
  kernel = conv.get_layer("c").kernel
  want = tf.nn.conv2d(x, kernel, 2, [[0, 0], [3, 3], [3, 3], [0, 0]])
  np.testing.assert_allclose(conv(x), want, atol=1e-5)
  assert float(tf.reduce_max(tf.abs(tf.nn.conv2d(x, kernel, 2, "SAME") - want))) > 1e-3
  negative = -1.0 - tf.abs(x)
  pooled = torchvision_resnet.TorchMaxPool2D()(negative).numpy()
  padded = np.pad(negative.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)],
                  constant_values=-np.inf)
  want = np.array([[[padded[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, c].max() for c in range(3)]
                    for j in range(3)] for i in range(4)])
  np.testing.assert_allclose(pooled[0], want)


def test_input_path_is_the_authors():
  """[-1, 1] -> [0, 1] -> ImageNet mean/std -> their rgb2gray on the normalised
  tensor, replicated to 3 channels."""
  x = tf.constant([[[[1.0, -1.0, 0.0]]]])
  got = feature.TrunkInput(grey=True, normalisation="imagenet")(x).numpy()[0, 0, 0]
  normalised = (np.array([1.0, 0.0, 0.5]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  grey = float(np.dot(normalised, [0.2989, 0.5870, 0.1140]))
  np.testing.assert_allclose(got, [grey] * 3, rtol=1e-5)
  colour = feature.TrunkInput(grey=False, normalisation="imagenet")(x).numpy()[0, 0, 0]
  np.testing.assert_allclose(colour, normalised, rtol=1e-5)


def _torch_state(trunk, seed=0):
  """A torchvision-style state dict made from `trunk`'s shapes: random values,
  PyTorch layouts, plus fc and the num_batches_tracked counters."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, (variable, kernel) in torchvision_resnet.state_dict_names(trunk.layers).items():
    value = rng.standard_normal(variable.shape).astype(np.float32)
    if name.endswith("running_var"):
      value = np.abs(value) + 0.5
    state[name] = torchvision_resnet.to_torch_layout(value) if kernel else value
    if name.endswith("running_var"):
      state[name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
  state["fc.weight"] = np.zeros((1000, 2048), np.float32)
  state["fc.bias"] = np.zeros((1000,), np.float32)
  return state


def test_weights_load_by_name_from_safetensors(trunk, tmp_path):
  state = _torch_state(trunk)
  path = str(tmp_path / "resnet50.safetensors")
  safetensors_numpy.save_file({"module." + k: v for k, v in state.items()}, path)
  loaded = feature.build_trunk(_cfg(backbone_weights=path))
  layers = loaded["E_sl"].layers + loaded["E_il"].layers
  names = torchvision_resnet.state_dict_names(layers)
  assert len(names) == 265
  for name, (variable, kernel) in names.items():
    want = torchvision_resnet.from_torch_layout(state[name]) if kernel else state[name]
    np.testing.assert_array_equal(variable.numpy(), want, err_msg=name)
  # Round trip: ours -> their names and layouts -> ours is the identity.
  back = {k: torchvision_resnet.to_torch_layout(v.numpy()) if kernel else v.numpy()
          for k, (v, kernel) in names.items()}
  for name, value in back.items():
    np.testing.assert_array_equal(value, state[name], err_msg=name)


def test_bad_weight_files_fail_naming_the_tensors(trunk, tmp_path):
  state = _torch_state(trunk)
  cases = {
      "missing": ({k: v for k, v in state.items() if k != "layer3.1.bn2.weight"},
                  r"missing tensors layer3\.1\.bn2\.weight \(expected e\.g\. "
                  r"layer3\.1\.bn2\.weight \[256\]\)"),
      "shape": ({**state, "conv1.weight": np.zeros((64, 1, 7, 7), np.float32)},
                r"conv1\.weight has shape \(64, 1, 7, 7\), expected conv1\.weight "
                r"\[64, 3, 7, 7\]"),
      "extra": ({**state, "layer5.0.conv1.weight": np.zeros((1,), np.float32)},
                r"tensors that map to no variable: layer5\.0\.conv1\.weight"),
  }
  for label, (bad, pattern) in cases.items():
    path = str(tmp_path / f"{label}.safetensors")
    safetensors_numpy.save_file(bad, path)
    with pytest.raises(errors.ConfigError, match=pattern):
      feature.check_backbone_weights(_cfg(backbone_weights=path))
  with pytest.raises(errors.ConfigError, match=r"--backbone_weights='/no/r\.pth': file "
                     r"not found .*resnet50-19c8e357\.pth or resnet50-0676ba61\.pth"):
    feature.check_backbone_weights(_cfg(backbone_weights="/no/r.pth"))
  garbage = tmp_path / "garbage.safetensors"
  garbage.write_bytes(b"not a tensor file")
  with pytest.raises(errors.ConfigError, match="garbage.safetensors: not a readable"):
    feature.check_backbone_weights(_cfg(backbone_weights=str(garbage)))
  with pytest.raises(errors.ConfigError, match=r"a \.pth or \.pt or \.safetensors file "
                     r"for --backbone=torchvision_resnet50"):
    _cfg(backbone_weights="weights.h5")


def test_pth_without_torch_says_which_extra(tmp_path, monkeypatch):
  path = tmp_path / "resnet50-19c8e357.pth"
  path.write_bytes(b"x")
  monkeypatch.setitem(__import__("sys").modules, "torch", None)  # as if not installed
  with pytest.raises(errors.ConfigError, match=r"needs torch \(pip install -e \.\[parity\]\)"):
    torchvision_resnet.read_state_dict(str(path))


def test_a_float64_model_loads_float64_weights_unrounded():
  """Weights go in as the variable's dtype: a float64 model (the parity check's)
  gets 1/3 as float64's 1/3, not float32's; a float32 model gets float32's."""
  third = np.array([0.1, 1 / 3, np.pi])
  kernel = np.arange(6.0).reshape(3, 2, 1, 1) / 7  # torch [out, in, 1, 1]
  names = {"w": (tf.Variable(tf.zeros([3], tf.float64)), False),
           "k": (tf.Variable(tf.zeros([1, 1, 2, 3], tf.float64)), True),
           "w32": (tf.Variable(tf.zeros([3], tf.float32)), False)}
  torchvision_resnet.load_state_dict(names, {"w": third, "k": kernel, "w32": third}, "s")
  np.testing.assert_array_equal(names["w"][0].numpy(), third)
  np.testing.assert_array_equal(names["k"][0].numpy(),
                                torchvision_resnet.from_torch_layout(kernel))
  np.testing.assert_array_equal(names["w32"][0].numpy(), third.astype(np.float32))
  assert names["w"][0].numpy()[1] != np.float64(np.float32(1 / 3))
