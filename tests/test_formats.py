"""The ONNX, LiteRT and OpenVINO exports: converted from the SavedModel, checked
against it on real test images, refused (leaving nothing) when they differ or fail,
and embedded with by evaluate and embed as the SavedModel is."""

import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.evaluation import features as features_lib
from jsia_tf.serving import formats
from jsia_tf.serving import saved_model

from conftest import built_once
from conftest import run_python

OTHERS = tuple(n for n in config_lib.EXPORT_FORMATS if n != "saved_model")


def _quiet(_):
  pass


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
  """A version of the tiny run with every format, exported by the command a user
  runs (its own process, as the converters' native libraries expect), and the
  export's console lines."""
  def build(path):
    result = run_python("-m", "jsia_tf.export", f"--workdir={tiny_run}",
                        f"--export_dir={path / 'models'}",
                        f"--format={','.join(config_lib.EXPORT_FORMATS)}")
    assert result.returncode == 0, result.stderr
    (path / "stdout.txt").write_text(result.stdout)
  path = built_once(tmp_path_factory, "exported", build)
  return str(path / "models" / "1"), (path / "stdout.txt").read_text().splitlines()


def _listing(root):
  return sorted(os.path.relpath(os.path.join(d, n), root)
                for d, folders, files in os.walk(root) for n in folders + files)


def test_every_format_embeds_as_the_saved_model(exported, sysu_dir):
  version, lines = exported
  served = saved_model.Served(version)
  h, w = served.metadata["image_size"]
  # Real test images and random ones of another size than the model's (resized).
  real = saved_model.sample_images(served.config.data, "test", 6, (h + 9, w + 5))
  noise = np.random.default_rng(1).integers(0, 256, (3, h + 9, w + 5, 3)).astype(np.float32)
  x = np.concatenate([real, noise])
  expected = np.asarray(served.embed_images(x))
  assert sorted(n for n in os.listdir(version) if n in OTHERS) == sorted(OTHERS)
  assert not [n for n in os.listdir(version) if n.startswith(".")]
  for name in OTHERS:
    artifact = saved_model.open_model(os.path.join(version, name))
    fmt = formats.FORMATS[name]
    assert isinstance(artifact, formats.Artifact)
    assert sorted(os.listdir(artifact.directory)) == sorted(
        [fmt.file, "export.json", "config.json"] + (["model.bin"] if fmt.runtime ==
                                                   "openvino" else []))
    meta = artifact.metadata
    assert (meta["format"], meta["precision"], meta["step"], meta["version"]) == (
        name, fmt.precision, 4, 1)
    got = artifact.embed_images(x)
    assert got.shape == expected.shape and np.all(np.isfinite(got))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0,
                               atol={"float32": 1e-5, "float16": 1e-2}.get(fmt.precision, 0.05))
    diff = float(np.max(np.abs(got - expected)))
    if fmt.checked:
      assert diff <= formats.FLOAT32_TOLERANCE, (name, diff)
      assert meta["check"]["max_abs_diff"] <= formats.FLOAT32_TOLERANCE
      assert meta["check"]["tolerance"] == formats.FLOAT32_TOLERANCE
    else:  # reduced precision: reported with its difference, never refused
      assert meta["check"]["tolerance"] is None and meta["check"]["max_abs_diff"] > 0
      assert any(line.startswith(f"{name}: ") and "reported, not refused" in line
                 for line in lines)
    assert meta["check"]["images"] == len(saved_model.sample_images(
        served.config.data, "test", 32, (h, w)))
    # The same file bytes through the encoded path give the same embeddings.
    encoded = [open(p, "rb").read() for p in sorted(
        os.path.join(sysu_dir, "cam3", "0001", f) for f in
        os.listdir(os.path.join(sysu_dir, "cam3", "0001")))[:2]]
    if fmt.checked:
      np.testing.assert_allclose(artifact.embed_bytes(encoded),
                                 served.embed_bytes(encoded), atol=1e-4)


def test_a_format_that_differs_is_refused_and_leaves_nothing(tiny_run, tmp_path,
                                                             monkeypatch):
  base = str(tmp_path / "models")
  monkeypatch.setattr(formats, "FLOAT32_TOLERANCE", -1.0)  # every artifact differs
  with pytest.raises(errors.JsiaError, match=r"--format=onnx: its embeddings differ "
                     r"from the SavedModel's by .* the export was discarded"):
    saved_model.export_run(config_lib.ExportConfig(
        workdir=tiny_run, export_dir=base, format=("saved_model", "onnx")), log=_quiet)
  assert os.listdir(base) == []  # no version, no temporary directory


def test_formats_are_added_to_a_version_all_or_none(tiny_run, tmp_path, monkeypatch):
  base = str(tmp_path / "models")
  version = saved_model.export_run(config_lib.ExportConfig(
      workdir=tiny_run, export_dir=base), log=_quiet)
  before = _listing(version)
  real_convert = formats.convert

  def convert(fmt, *args):
    if fmt.name == "openvino":
      raise RuntimeError("converter crashed")
    return real_convert(fmt, *args)

  monkeypatch.setattr(formats, "convert", convert)
  add = config_lib.ExportConfig(saved_model=base, format=("litert", "openvino"))
  with pytest.raises(errors.JsiaError, match="--format=openvino: the conversion failed "
                     r"\(RuntimeError: converter crashed\); nothing was written"):
    saved_model.export_run(add, log=_quiet)
  assert _listing(version) == before  # litert, converted first, is not left either
  monkeypatch.setattr(formats, "convert", real_convert)
  assert saved_model.export_run(add, log=_quiet) == version
  assert {"litert", "openvino"} <= set(os.listdir(version))
  with pytest.raises(errors.ConfigError, match="--format=litert: .*litert already exists"):
    saved_model.export_run(config_lib.ExportConfig(saved_model=version,
                                                   format=("litert",)), log=_quiet)


def test_a_missing_runtime_names_the_extra(tiny_run, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
  base = str(tmp_path / "models")
  with pytest.raises(errors.ConfigError, match=r"--format=onnx needs tf2onnx, "
                     r"onnxruntime .*pip install -e \.\[deploy\]"):
    saved_model.export_run(config_lib.ExportConfig(workdir=tiny_run, export_dir=base,
                                                   format=("onnx",)), log=_quiet)
  assert os.listdir(base) == []


def test_export_refusals_are_one_error_line(tiny_run, tmp_path):
  result = run_python("-m", "jsia_tf.export", f"--workdir={tiny_run}",
                      "--format=saved_model,tflite")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "error: --format='tflite' is invalid" in result.stderr and "litert" in result.stderr
  # The run's data set moved: the probe images cannot be read.
  workdir = shutil.copytree(tiny_run, tmp_path / "run")
  cfg_path = os.path.join(workdir, "config.json")
  cfg = json.load(open(cfg_path))
  cfg["data"]["data_dir"] = str(tmp_path / "moved")
  json.dump(cfg, open(cfg_path, "w"))
  result = run_python("-m", "jsia_tf.export", f"--workdir={workdir}", "--format=onnx")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "pass --data_dir=where it is now" in result.stderr
  assert not os.path.exists(os.path.join(workdir, "export", "1"))


def test_evaluate_and_embed_take_a_format(exported, tmp_path):
  version, _ = exported
  out = {}
  for name, model in (("saved_model", version), ("onnx", os.path.join(version, "onnx")),
                      ("litert", os.path.join(version, "litert", "model.tflite"))):
    out[name] = str(tmp_path / f"{name}.npz")
    result = run_python("-m", "jsia_tf.evaluate", f"--saved_model={model}",
                        f"--output_features={out[name]}")
    assert result.returncode == 0, result.stderr
  reference = features_lib.load(out["saved_model"])
  for name in ("onnx", "litert"):
    feats = features_lib.load(out[name])
    np.testing.assert_array_equal(feats.paths, reference.paths)
    assert np.max(np.abs(feats.features - reference.features)) <= 1e-4
  listed = tmp_path / "list.txt"
  listed.write_text("\n".join(reference.paths[:5]) + "\n")
  result = run_python("-m", "jsia_tf.embed", f"--model={os.path.join(version, 'openvino')}",
                      f"--images={listed}", f"--output={tmp_path / 'ov.npz'}")
  assert result.returncode == 0, result.stderr
  assert np.max(np.abs(features_lib.load(str(tmp_path / "ov.npz")).features
                       - reference.features[:5])) <= 1e-4


def test_openvino_sends_nothing(tmp_path):
  """OpenVINO's usage statistics (sent from a forked process from the moment it is
  imported) stay off: converting and running a model forks nothing."""
  script = f"""
import multiprocessing
import numpy as np
import tensorflow as tf
forks = []
start = multiprocessing.Process.start
multiprocessing.Process.start = lambda self: (forks.append(self), start(self))[1]
from jsia_tf.serving import formats

@tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="images")])
def f(images):
  return {{"embedding": tf.math.l2_normalize(images * 2.0, axis=-1)}}

fmt = formats.FORMATS["openvino"]
run = formats.Runtime(fmt, formats.convert(fmt, f, {str(tmp_path)!r}))
print(run(np.ones([2, 4], np.float32)).tolist(), len(forks))
"""
  result = run_python("-c", script)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[-2] == "[[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]] 0"


def test_a_signal_after_openvino_models_stops_the_process_cleanly(tmp_path):
  """Two OpenVINO models that go in another order than they came must not leave the
  thread on an unmapped alternate signal stack: the next SIGTERM reaches Python's
  handler (on the unmapped stack the process dies of SIGSEGV, exit status -11)."""
  script = f"""
import faulthandler, gc, os, signal
import numpy as np
import tensorflow as tf
from jsia_tf.serving import formats
faulthandler.enable()  # an alternate signal stack on this thread, as under pytest

@tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="images")])
def f(images):
  return {{"embedding": tf.math.l2_normalize(images + 1.0, axis=-1)}}

runs = []
for name in ("openvino", "openvino_float16"):
  fmt = formats.FORMATS[name]
  os.makedirs(os.path.join({str(tmp_path)!r}, name))
  runs.append(formats.Runtime(fmt, formats.convert(fmt, f, os.path.join({str(tmp_path)!r}, name))))
  runs[-1](np.ones([2, 4], np.float32))
del runs[0]  # the first model goes first
gc.collect()
runs.clear()
gc.collect()
got = []
signal.signal(signal.SIGTERM, lambda sig, frame: got.append(sig))
os.kill(os.getpid(), signal.SIGTERM)
print("handled", got)
"""
  result = run_python("-c", script)
  assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
  assert result.stdout.split("\n")[-2] == f"handled [{int(signal.SIGTERM)}]"
