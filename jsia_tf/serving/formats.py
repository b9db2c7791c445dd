"""The exported extractor in the runtimes camera systems use: ONNX (ONNX Runtime),
LiteRT (TFLite; the ai-edge-litert interpreter) and OpenVINO (its CPU plugin),
each converted from the SavedModel's `serve_fixed_size` signature with its
variables frozen to constants.

A format directory (EXPORT_DIR/<version>/<format>/) is self-contained: the model
file, `export.json` (format, precision, input and output, the check against the
SavedModel) and the run's `config.json`. Its input is float32 RGB [B, H, W, 3] in
0..255 at the model's size (the antialiased resize has no op in these runtimes:
`Artifact` resizes with `pipeline.resize` before the call, as the SavedModel's
other signatures do inside); its output `embedding` [B, D] is L2-normalised.

The runtimes are an optional extra (`pip install -e .[deploy]`), imported only
when a format is written or run.
"""

import contextlib
import ctypes
import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import pipeline
from jsia_tf.training import experiment

ARTIFACT_FILE = "export.json"
SAVED_MODEL = "saved_model"
# The largest difference of a float32 artifact's unit-norm embeddings from the
# SavedModel's that an export accepts.
FLOAT32_TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "images", "embedding"


@dataclasses.dataclass(frozen=True)
class Format:
  """One artifact kind: `runtime` at `precision`, stored in `file`."""

  name: str
  runtime: str  # onnx | litert | openvino
  precision: str  # float32 | float16 (weights) | int8 (weights and activations)
  file: str
  packages: str  # what `pip install -e .[deploy]` brings for it

  @property
  def checked(self) -> bool:
    """Whether the export fails when the artifact differs from the SavedModel by
    more than FLOAT32_TOLERANCE (reduced precision is reported, not refused)."""
    return self.precision == "float32"


FORMATS = {f.name: f for f in (
    Format("onnx", "onnx", "float32", "model.onnx", "tf2onnx, onnxruntime"),
    Format("onnx_float16", "onnx", "float16", "model.onnx",
           "tf2onnx, onnxruntime, onnxconverter-common"),
    Format("onnx_int8", "onnx", "int8", "model.onnx", "tf2onnx, onnxruntime"),
    Format("litert", "litert", "float32", "model.tflite", "ai-edge-litert"),
    Format("litert_float16", "litert", "float16", "model.tflite", "ai-edge-litert"),
    Format("litert_int8", "litert", "int8", "model.tflite", "ai-edge-litert"),
    Format("openvino", "openvino", "float32", "model.xml", "openvino"),
    Format("openvino_float16", "openvino", "float16", "model.xml", "openvino"),
)}
# The names --format takes (config.EXPORT_FORMATS, which validates the flag).
assert config_lib.EXPORT_FORMATS == (SAVED_MODEL,) + tuple(FORMATS)


def _import(fmt: Format, module: str):
  """Imports a runtime's module; ConfigError with the install command if absent."""
  if fmt.runtime == "openvino":
    # OpenVINO sends usage statistics from the moment it is imported, over the
    # network, from a forked process: a fork of a process running TensorFlow's
    # threads can hang or die (it did under pytest), and nothing here may reach for
    # the network. Without openvino_telemetry its modules take their own no-op stub.
    sys.modules.setdefault("openvino_telemetry", None)
  try:
    return __import__(module, fromlist=["_"])
  except ImportError as e:
    raise errors.ConfigError(
        f"--format={fmt.name} needs {fmt.packages} ({e}): pip install -e .[deploy]"
    ) from None


def frozen_function(signature):
  """The tf.function images -> {"embedding"} of `signature` (the SavedModel's
  serve_fixed_size) with its variables as constants: the converters keep resource
  variables as runtime variables that nothing initialises (LiteRT then computes
  NaN, OpenVINO has no VarHandleOp)."""
  # pylint: disable-next=import-outside-toplevel
  from tensorflow.python.framework import convert_to_constants
  frozen = convert_to_constants.convert_variables_to_constants_v2(signature)
  spec = signature.structured_input_signature[1][INPUT_NAME]

  # Named input and output in every runtime: `images` -> `embedding`.
  @tf.function(input_signature=[tf.TensorSpec(spec.shape, tf.float32, name=INPUT_NAME)])
  def fixed_size(images):
    return {OUTPUT_NAME: frozen(images)[0]}

  return fixed_size


@functools.lru_cache(maxsize=None)
def _sigaltstack():
  """libc's sigaltstack, or None where there is none (Windows)."""
  return getattr(ctypes.CDLL(None), "sigaltstack", None)


@contextlib.contextmanager
def _signal_stack_kept():
  """Puts the calling thread's alternate signal stack back after the block.

  OpenVINO's CPU plugin points the thread's alternate signal stack at a stack of
  its own while a compiled model lives, and when the model goes puts back the one
  it found. Two models that go in another order than they came leave the thread
  on an unmapped stack; Python's signal handlers run on that stack, so the next
  SIGTERM or Ctrl-C crashes the process (SIGSEGV) instead of stopping it. Every
  OpenVINO call runs inside this block, so the stack in use stays the process's
  own. The saved `stack_t` is handed back as bytes, whatever its layout."""
  sigaltstack = _sigaltstack()
  if sigaltstack is None:  # no POSIX signals
    yield
    return
  saved = ctypes.create_string_buffer(64)  # > sizeof(stack_t) on every ABI
  have = sigaltstack(None, saved) == 0
  try:
    yield
  finally:
    if have:
      sigaltstack(saved, None)


def convert(fmt: Format, function, directory: str,
            calibration: Optional[np.ndarray] = None) -> str:
  """Writes `function` (`frozen_function`'s) as `fmt` into `directory`; returns the
  model file. `calibration`: images [N, H, W, 3] 0..255 for int8."""
  path = os.path.join(directory, fmt.file)
  if fmt.runtime == "onnx":
    tf2onnx = _import(fmt, "tf2onnx")
    _import(fmt, "onnxruntime")
    # tf2onnx logs every optimizer pass at INFO.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    # The opset ONNX Runtime 1.17+ runs in full; tf2onnx's default is older.
    tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                  opset=17, output_path=path)
    if fmt.precision == "float16":
      onnx = _import(fmt, "onnx")
      float16 = _import(fmt, "onnxconverter_common.float16")
      # Input and output stay float32: callers send the float32 model's images.
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        onnx.save(float16.convert_float_to_float16(onnx.load(path), keep_io_types=True),
                  path)
      clamped = [w for w in caught if "truncated" in str(w.message)]
      if clamped:  # one line, not one warning per weight
        logging.getLogger(__name__).warning(
            "--format=%s: %d weight(s) below float16's smallest normal number were set "
            "to +-1e-7 by onnxconverter-common", fmt.name, len(clamped))
    elif fmt.precision == "int8":
      _quantize_onnx(fmt, path, _calibration(fmt, calibration))
  elif fmt.runtime == "litert":
    _import(fmt, "ai_edge_litert.interpreter")
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], tf.Module())
    if fmt.precision == "float16":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.target_spec.supported_types = [tf.float16]
    elif fmt.precision == "int8":
      calibration = _calibration(fmt, calibration)
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.representative_dataset = lambda: ([calibration[i:i + 1]]
                                                  for i in range(len(calibration)))
    with open(path, "wb") as f:
      f.write(converter.convert())
  elif fmt.runtime == "openvino":
    ov = _import(fmt, "openvino")
    with _signal_stack_kept():
      ov.save_model(ov.convert_model(function.get_concrete_function()), path,
                    compress_to_fp16=fmt.precision == "float16")
  else:
    raise ValueError(f"unknown runtime {fmt.runtime!r}")
  return path


def _calibration(fmt: Format, images: Optional[np.ndarray]) -> np.ndarray:
  if images is None or not len(images):
    raise errors.ConfigError(f"--format={fmt.name} needs calibration images")
  return images


def _quantize_onnx(fmt: Format, path: str, calibration: np.ndarray) -> None:
  """Replaces the float32 ONNX model at `path` by its static int8 quantisation
  (QDQ, int8 weights per channel, int8 activations whose ranges come from
  `calibration`, one image at a time as the TFLite converter takes them)."""
  quantization = _import(fmt, "onnxruntime.quantization")

  class Images(quantization.CalibrationDataReader):
    def __init__(self):
      self._batches = iter(calibration[i:i + 1] for i in range(len(calibration)))

    def get_next(self):
      batch = next(self._batches, None)
      return None if batch is None else {INPUT_NAME: batch}

  float32 = path + ".float32.onnx"
  os.replace(path, float32)
  try:
    quantization.quantize_static(
        float32, path, Images(), quant_format=quantization.QuantFormat.QDQ,
        per_channel=True, weight_type=quantization.QuantType.QInt8,
        activation_type=quantization.QuantType.QInt8)
  finally:
    os.remove(float32)


class Runtime:
  """A format directory's model in its runtime: float32 RGB [B, H, W, 3] 0..255 at
  the model's size -> unit-norm embeddings [B, D] (numpy)."""

  def __init__(self, fmt: Format, path: str, threads: int = 0):
    self.format, self.path = fmt, path
    if fmt.runtime == "onnx":
      ort = _import(fmt, "onnxruntime")
      options = ort.SessionOptions()
      if threads:
        options.intra_op_num_threads = threads
      session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
      self._run = lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    elif fmt.runtime == "litert":
      litert = _import(fmt, "ai_edge_litert.interpreter")
      self.delegate = "XNNPACK"
      try:
        runner = self._litert_runner(litert, path, threads, litert.OpResolverType.AUTO)
      except RuntimeError as e:
        # XNNPACK refuses some int8 graphs (a ResNet-50's, "failed to prepare"):
        # LiteRT's own kernels run them, slower.
        logging.getLogger(__name__).warning(
            "%s: XNNPACK cannot run it (%s); using LiteRT's builtin kernels", path,
            str(e).splitlines()[0])
        self.delegate = "none"
        runner = self._litert_runner(
            litert, path, threads, litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
      self._run = lambda x: runner(**{INPUT_NAME: x})[OUTPUT_NAME]
    elif fmt.runtime == "openvino":
      ov = _import(fmt, "openvino")
      properties = {
          # The CPU plugin computes in bfloat16 by default on CPUs with AVX-512
          # BF16 or AMX (about 1e-3 off); float32 keeps the artifact the model.
          "INFERENCE_PRECISION_HINT": "f32"}
      if threads:
        properties["INFERENCE_NUM_THREADS"] = threads
      with _signal_stack_kept():
        compiled = ov.Core().compile_model(path, "CPU", properties)

      def run(x):
        with _signal_stack_kept():
          return compiled(x)[0]
      self._run = run
    else:
      raise ValueError(f"unknown runtime {fmt.runtime!r}")

  @staticmethod
  def _litert_runner(litert, path: str, threads: int, resolver):
    """The signature runner of a LiteRT model, tried on one blank image (a delegate
    that cannot take the graph fails there, not on the first real batch)."""
    interpreter = litert.Interpreter(model_path=path, num_threads=threads or None,
                                     experimental_op_resolver_type=resolver)
    runner = interpreter.get_signature_runner()
    shape = runner.get_input_details()[INPUT_NAME]["shape_signature"]
    runner(**{INPUT_NAME: np.zeros([1] + [int(d) for d in shape[1:]], np.float32)})
    return runner

  def __call__(self, images: np.ndarray) -> np.ndarray:
    return np.asarray(self._run(np.ascontiguousarray(images, np.float32)), np.float32)


def max_difference(run: Callable[[np.ndarray], np.ndarray], reference: np.ndarray,
                   images: np.ndarray, batch_size: int = 32) -> float:
  """The largest absolute difference of `run`'s embeddings of `images` from
  `reference` (a NaN anywhere is returned as NaN)."""
  got = np.concatenate([run(images[i:i + batch_size])
                        for i in range(0, len(images), batch_size)])
  return float(np.max(np.abs(got - reference)))


def _metadata(fmt: Format, image_size, embedding_dim: int, source: Dict,
              probe: Dict) -> Dict:
  return {**source,
      "format": fmt.name, "runtime": fmt.runtime, "precision": fmt.precision,
      "file": fmt.file, "image_size": list(image_size), "embedding_dim": embedding_dim,
      "inputs": {INPUT_NAME: f"float32 [B, {image_size[0]}, {image_size[1]}, 3] RGB "
                             "0..255, resized with pipeline.resize (bilinear, "
                             "antialiased)"},
      "outputs": {OUTPUT_NAME: f"float32 [B, {embedding_dim}], L2-normalised"},
      "check": probe}


def write(names: Sequence[str], signature, version_dir: str, probe: np.ndarray,
          calibration: Optional[np.ndarray], config_file: str, source: Dict,
          log=print) -> Dict:
  """Writes the formats `names` (not saved_model) of the SavedModel in
  `version_dir` (its serve_fixed_size `signature`) into `version_dir/<name>/`:
  all of them or none; `source` (the SavedModel's version, checkpoint and step)
  goes into each one's export.json. Every artifact is run on `probe` (real test images [N, H,
  W, 3] 0..255 at the model's size) against the SavedModel; a float32 one that
  differs by more than FLOAT32_TOLERANCE fails the export. Returns {name: check}."""
  existing = [n for n in names if os.path.exists(os.path.join(version_dir, n))]
  if existing:
    raise errors.ConfigError(
        f"--format={','.join(existing)}: {os.path.join(version_dir, existing[0])} "
        f"already exists; export a new version to replace it")
  if not names:
    return {}
  reference = np.concatenate([signature(images=tf.constant(probe[i:i + 32]))[OUTPUT_NAME]
                              .numpy() for i in range(0, len(probe), 32)])
  function = frozen_function(signature)
  image_size = tuple(int(d) for d in function.input_signature[0].shape[1:3])
  staging = tempfile.mkdtemp(prefix=".formats.tmp-", dir=version_dir)
  checks = {}
  try:
    for name in names:
      fmt = FORMATS[name]
      folder = os.path.join(staging, name)
      os.makedirs(folder)
      try:
        path = convert(fmt, function, folder, calibration)
        diff = max_difference(Runtime(fmt, path), reference, probe)
      except errors.JsiaError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        raise errors.JsiaError(
            f"--format={name}: the conversion failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); nothing was written") from None
      checks[name] = {"images": len(probe), "max_abs_diff": diff,
                      "tolerance": FLOAT32_TOLERANCE if fmt.checked else None}
      if fmt.checked and not diff <= FLOAT32_TOLERANCE:
        raise errors.JsiaError(
            f"--format={name}: its embeddings differ from the SavedModel's by {diff:.3g} "
            f"on {len(probe)} test images (tolerance {FLOAT32_TOLERANCE}); the export "
            f"was discarded")
      shutil.copy(config_file, os.path.join(folder, experiment.CONFIG_FILE))
      with open(os.path.join(folder, ARTIFACT_FILE), "w") as f:
        json.dump(_metadata(fmt, image_size, int(reference.shape[1]),
                            source, checks[name]), f, indent=2, sort_keys=True)
      size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
      log(f"{name}: {size / 1e6:.1f} MB, embeddings within "
          f"{diff:.2g} of the SavedModel's on {len(probe)} test images"
          + ("" if fmt.checked else f" ({fmt.precision}: reported, not refused)"))
    for name in names:
      os.rename(os.path.join(staging, name), os.path.join(version_dir, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return checks


def is_artifact(path: str) -> bool:
  """Whether `path` is a format directory (or its model file)."""
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  return os.path.isfile(os.path.join(folder, ARTIFACT_FILE))


class Artifact:
  """A loaded format directory, with the methods of `saved_model.Served`: embeds
  images of any size (resized as the SavedModel does), encoded images, or images
  in the model's range."""

  def __init__(self, path: str, threads: int = 0):
    self.directory = path if os.path.isdir(path) else os.path.dirname(path)
    with open(os.path.join(self.directory, ARTIFACT_FILE)) as f:
      self.metadata = json.load(f)
    self.config = config_lib.load(experiment.ExperimentConfig,
                                  os.path.join(self.directory, experiment.CONFIG_FILE))
    self.format = FORMATS[self.metadata["format"]]
    self.image_size = tuple(self.metadata["image_size"])
    self.runtime = Runtime(self.format, os.path.join(self.directory, self.format.file),
                           threads)

  def embed_images(self, images) -> np.ndarray:
    """RGB [B, H, W, 3] in 0..255 of any size -> embeddings [B, D]."""
    return self.runtime(pipeline.resize(tf.cast(images, tf.float32), self.image_size)
                        .numpy())

  def embed_bytes(self, image_bytes) -> np.ndarray:
    """Encoded images (a list of bytes) -> embeddings [B, D]."""
    return self.runtime(np.stack([pipeline.decode(tf.constant(b), self.image_size).numpy()
                                  for b in image_bytes]))

  def embed(self, x) -> np.ndarray:
    """Images in [-1, 1] (evaluation's pipeline) -> embeddings [B, D]."""
    return self.embed_images(pipeline.from_model_range(x))
