"""The SavedModel of the test-time extractor, laid out for TF Serving.

EXPORT_DIR/<version>/ holds saved_model.pb, variables/ and assets/ (the run's
config.json and `serving.json`: input size, embedding size, signatures, checkpoint).
Signatures:
  serving_default    images      float32 [B, H, W, 3] RGB 0..255 -> embedding [B, D]
  serve_image_bytes  image_bytes string  [B] JPEG/PNG/BMP      -> embedding [B, D]
  serve_fixed_size   images      float32 [B, h, w, 3] RGB 0..255 at the model's
                                 size h x w (the caller resizes) -> embedding [B, D]
The other formats (ONNX, LiteRT, OpenVINO; `formats`) are converted from
serve_fixed_size into EXPORT_DIR/<version>/<format>/ and checked against it on real
test images. A version is written under a hidden temporary name, checked by loading
it back, and renamed into place: TF Serving (which watches numeric names) never sees
a half version, and a failed export leaves nothing behind.
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import pipeline
from jsia_tf.data import tfrecords
from jsia_tf.serving import extractor as extractor_lib
from jsia_tf.serving import formats as formats_lib
from jsia_tf.training import experiment

SERVING_DEFAULT = "serving_default"
IMAGE_BYTES = "serve_image_bytes"
FIXED_SIZE = "serve_fixed_size"
METADATA_FILE = "serving.json"
_VERSION = re.compile(r"^[0-9]+$")
# The reloaded model must reproduce the in-memory one to float32 rounding.
_CHECK_TOLERANCE = 1e-5


def versions(export_dir: str) -> Dict[int, str]:
  """{version: directory} of the complete versions in `export_dir`."""
  if not os.path.isdir(export_dir):
    return {}
  return {int(name): os.path.join(export_dir, name) for name in os.listdir(export_dir)
          if _VERSION.match(name) and
          os.path.isfile(os.path.join(export_dir, name, "saved_model.pb"))}


def new_version(export_dir: str, version: int = 0):
  """(version, directory) a new export would take: `version`, or one above the
  newest when 0; refuses a version that exists."""
  following = max(versions(export_dir), default=0) + 1
  version = version or following
  final = os.path.join(export_dir, str(version))
  if os.path.exists(final):
    raise errors.ConfigError(
        f"--version={version}: {final} already exists; pick another --version or "
        f"leave it out to write version {following}")
  return version, final


class _Terminated(Exception):
  """SIGTERM arrived during an export."""


@contextlib.contextmanager
def _sigterm_raises():
  """Turns SIGTERM into an exception while the block runs, so that a stopped export
  removes its temporary directory (SIGTERM's default ends the process at once)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):
    del signum, frame
    raise _Terminated()

  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def _set_modes(root: str, umask: int) -> None:
  """Folders 0777 and files 0666, less `umask`, under `root` and for `root`."""
  for folder, _, files in os.walk(root):
    os.chmod(folder, 0o777 & ~umask)
    for name in files:
      os.chmod(os.path.join(folder, name), 0o666 & ~umask)


@dataclasses.dataclass
class Images:
  """Real images [N, H, W, 3] float32 0..255 at the model's size that check the
  other formats (`probe`, test images) and calibrate int8 (`calibration`, training
  images); None where no format needs them."""

  probe: Optional[np.ndarray] = None
  calibration: Optional[np.ndarray] = None


def export(extractor: extractor_lib.Extractor, cfg: experiment.ExperimentConfig,
           export_dir: str, version: int = 0, checkpoint: str = "", step: int = 0,
           log=print, umask: int = 0o022, formats: Sequence[str] = (),
           images: Images = Images()) -> str:
  """Writes `extractor` as version `version` (0: one above the newest) of
  `export_dir` with the other `formats` inside it (checked on `images`), its
  folders and files with the modes `umask` leaves; returns the version
  directory."""
  version, final = new_version(export_dir, version)
  try:
    os.makedirs(export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=export_dir)
  except OSError as e:
    raise errors.ConfigError(f"--export_dir={export_dir}: cannot be written "
                             f"({e.strerror})") from None
  try:
    with _sigterm_raises():
      _write_version(extractor, cfg, staging, version, checkpoint, step)
      if _other_formats(formats):
        _write_formats(Served(staging), formats, images, log)
      _set_modes(staging, umask)
      os.rename(staging, final)
  except (OSError, tf.errors.OpError) as e:  # disk full, permissions
    shutil.rmtree(staging, ignore_errors=True)
    raise errors.ConfigError(
        f"--export_dir={export_dir}: writing version {version} failed "
        f"({errors.cause(e)}); "
        f"nothing was left behind and the existing versions are untouched") from None
  except _Terminated:
    shutil.rmtree(staging, ignore_errors=True)
    raise errors.JsiaError(
        f"stopped by SIGTERM while exporting version {version} to {export_dir}: its "
        f"temporary directory {staging} is removed and the existing versions are "
        f"untouched") from None
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  log(f"exported version {version} to {final} (input: any-size RGB images, "
      f"resized to {extractor.image_size[0]}x{extractor.image_size[1]}; embedding "
      f"dim {extractor.embedding_dim})")
  return final


def _write_version(extractor: extractor_lib.Extractor, cfg: experiment.ExperimentConfig,
                   staging: str, version: int, checkpoint: str, step: int) -> None:
  """Writes the SavedModel with its assets into `staging` and checks it."""
  metadata = {
      "version": version,
      "image_size": list(extractor.image_size),
      "embedding_dim": extractor.embedding_dim,
      "flip_average": extractor.flip_average,
      "grey_input": cfg.model.grey_input,
      "preset": cfg.model.preset,
      "checkpoint": os.path.abspath(checkpoint) if checkpoint else "",
      "step": step,
      "signatures": {
          SERVING_DEFAULT: {"inputs": {"images": "float32 [B, H, W, 3] RGB 0..255"},
                            "outputs": {"embedding": "float32 [B, D], L2-normalised"}},
          IMAGE_BYTES: {"inputs": {"image_bytes": "string [B] JPEG/PNG/BMP"},
                        "outputs": {"embedding": "float32 [B, D], L2-normalised"}},
          FIXED_SIZE: {"inputs": {"images": "float32 [B, h, w, 3] RGB 0..255 at "
                                            "image_size"},
                       "outputs": {"embedding": "float32 [B, D], L2-normalised"}}},
  }
  with tempfile.TemporaryDirectory() as assets:
    config_lib.save(cfg, os.path.join(assets, experiment.CONFIG_FILE))
    with open(os.path.join(assets, METADATA_FILE), "w") as f:
      json.dump(metadata, f, indent=2, sort_keys=True)
    servable = tf.Module()
    servable.extractor = extractor
    servable.config_file = tf.saved_model.Asset(
        os.path.join(assets, experiment.CONFIG_FILE))
    servable.metadata_file = tf.saved_model.Asset(os.path.join(assets, METADATA_FILE))
    tf.saved_model.save(servable, staging, signatures={
        SERVING_DEFAULT: extractor.serve_images.get_concrete_function(),
        IMAGE_BYTES: extractor.serve_image_bytes.get_concrete_function(),
        FIXED_SIZE: extractor.serve_fixed_size.get_concrete_function()})
  _check(staging, extractor)


def _check(directory: str, extractor: extractor_lib.Extractor) -> None:
  """Loads the written SavedModel back and compares its signatures with the
  in-memory extractor on a probe image of another size than the model's."""
  h, w = extractor.image_size
  probe = np.random.default_rng(0).integers(0, 256, (2, h + 7, w + 3, 3), np.uint8)
  expected = extractor.serve_images(tf.constant(probe, tf.float32))["embedding"]
  loaded = tf.saved_model.load(directory)
  got = {
      SERVING_DEFAULT: loaded.signatures[SERVING_DEFAULT](
          images=tf.constant(probe, tf.float32))["embedding"],
      IMAGE_BYTES: loaded.signatures[IMAGE_BYTES](
          image_bytes=tf.stack([tf.io.encode_png(p) for p in probe]))["embedding"],
      FIXED_SIZE: loaded.signatures[FIXED_SIZE](
          images=pipeline.resize(tf.constant(probe, tf.float32), (h, w)))["embedding"]}
  for name, value in got.items():
    diff = float(tf.reduce_max(tf.abs(value - expected)))
    if not diff <= _CHECK_TOLERANCE:
      raise errors.JsiaError(
          f"the exported signature {name} differs from the trained model by {diff:.3g} "
          f"(tolerance {_CHECK_TOLERANCE}); the export was discarded")


def resolve(path: str, flag: str = "saved_model") -> str:
  """The version directory of `path`: `path` itself when it holds a SavedModel,
  else the newest numeric version inside it."""
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  found = versions(path)
  if not found:
    what = "does not exist" if not os.path.exists(path) else "holds no SavedModel"
    raise errors.ConfigError(
        f"--{flag}={path} {what}: expected an export directory of python -m "
        f"jsia_tf.export (with version subdirectories 1/, 2/, ...) or one version "
        f"directory (with saved_model.pb)")
  return found[max(found)]


class Served:
  """A loaded export: embeds raw images through its signatures."""

  def __init__(self, path: str, flag: str = "saved_model"):
    self.directory = resolve(path, flag)
    self._model = tf.saved_model.load(self.directory)
    with open(os.path.join(self.directory, "assets", METADATA_FILE)) as f:
      self.metadata = json.load(f)
    self.config = config_lib.load(
        experiment.ExperimentConfig,
        os.path.join(self.directory, "assets", experiment.CONFIG_FILE))

  @property
  def signatures(self):
    """The loaded SavedModel's signatures, by name."""
    return self._model.signatures

  def embed_images(self, images: tf.Tensor) -> tf.Tensor:
    """RGB float32 [B, H, W, 3] in 0..255 -> embeddings [B, D] (serving_default)."""
    return self._model.signatures[SERVING_DEFAULT](
        images=tf.cast(images, tf.float32))["embedding"]

  def embed_bytes(self, image_bytes) -> tf.Tensor:
    """Encoded images (a list or string tensor [B]) -> embeddings [B, D]."""
    return self._model.signatures[IMAGE_BYTES](
        image_bytes=tf.constant(image_bytes, tf.string))["embedding"]

  def embed(self, x: tf.Tensor) -> tf.Tensor:
    """Images in [-1, 1] (evaluation's pipeline) -> embeddings [B, D]."""
    return self.embed_images(pipeline.from_model_range(x))


def _other_formats(names: Sequence[str]) -> List[str]:
  """The formats of `names` that are converted from the SavedModel."""
  return [n for n in names if n != formats_lib.SAVED_MODEL]


def _write_formats(version: Served, names: Sequence[str], images: Images,
                   log=print) -> Dict:
  """Converts the loaded SavedModel `version` into the formats `names` (saved_model
  itself is left out) inside its directory (`formats.write`)."""
  names = _other_formats(names)
  if not names:
    return {}
  signatures = version.signatures
  if FIXED_SIZE not in signatures:
    raise errors.ConfigError(
        f"{version.directory} has no {FIXED_SIZE} signature, which the other formats "
        f"are converted from: export its run again (python -m jsia_tf.export "
        f"--workdir=...)")
  return formats_lib.write(names, signatures[FIXED_SIZE], version.directory,
                           images.probe, images.calibration,
                           os.path.join(version.directory, "assets",
                                        experiment.CONFIG_FILE),
                           {k: version.metadata[k] for k in (
                               "version", "checkpoint", "step", "preset",
                               "flip_average", "grey_input")}, log)


def sample_images(data: config_lib.DataConfig, split: str, count: int,
                  image_size) -> np.ndarray:
  """`count` images (0: all) of `split` of `data`'s data set, spread evenly over its
  rows (which run camera by camera, so both modalities are in), float32 [N, H, W,
  3] 0..255 at `image_size`, resized as the SavedModel resizes."""
  table = tfrecords.load_split(data, split)
  if not len(table):
    raise errors.DataError(f"the {split} split of {data.data_dir} has no images")
  n = len(table) if not count else min(count, len(table))
  rows = np.unique(np.linspace(0, len(table) - 1, n).round().astype(int))
  return np.stack([pipeline.decode(tf.constant(table.encoded[i]), image_size).numpy()
                   for i in rows])


def check_images(cfg: config_lib.ExportConfig, run: experiment.ExperimentConfig,
                 source: str) -> Images:
  """The probe (test) and calibration (training) images the other formats of `cfg`
  need, from the data set of `run` (`cfg.data_dir` overrides where it is)."""
  names = _other_formats(cfg.format)
  if not names:
    return Images()
  data = experiment.run_data(
      run.data, cfg.data_dir, source,
      f"--format={','.join(names)} checks every artifact on real test images, but ")
  size = tuple(run.model.image_size)
  probe = sample_images(data, "test", cfg.probe_images, size)
  calibration = (sample_images(data, "train", cfg.calibration_images, size)
                 if any(formats_lib.FORMATS[n].precision == "int8" for n in names)
                 else None)
  return Images(probe, calibration)


def open_model(path: str, flag: str = "saved_model") -> "Model":
  """An export to embed with: a format directory of `formats` (or its model file)
  as a `formats.Artifact`, else a SavedModel export or version as `Served`."""
  if formats_lib.is_artifact(path):
    return formats_lib.Artifact(path)
  return Served(path, flag)


# What embeds images for evaluate, embed and search: a SavedModel or a format.
Model = Union[Served, formats_lib.Artifact]


def export_run(cfg: config_lib.ExportConfig, log=print) -> str:
  """Exports the checkpoint `cfg` names as a new version with its formats
  (`export`), or adds formats to the SavedModel version `cfg.saved_model`; returns
  the version directory."""
  if cfg.saved_model:
    served = Served(cfg.saved_model)
    images = check_images(cfg, served.config, served.directory)
    try:
      with _sigterm_raises():
        written = _write_formats(served, cfg.format, images, log)
    except _Terminated:
      raise errors.JsiaError(
          f"stopped by SIGTERM while converting {served.directory}: none of the new "
          f"formats is left in it") from None
    except (OSError, tf.errors.OpError) as e:
      raise errors.OutputError(
          f"--saved_model={cfg.saved_model}: writing the formats failed "
          f"({errors.cause(e)}); none of them is left in {served.directory}") from None
    for name in written:
      _set_modes(os.path.join(served.directory, name), int(cfg.umask, 8))
    return served.directory
  source, flag = ((cfg.checkpoint, "checkpoint") if cfg.checkpoint else
                  (cfg.workdir, "workdir"))
  workdir, _ = extractor_lib.find_checkpoint(source, flag)
  export_dir = cfg.export_dir or os.path.join(cfg.workdir or workdir, "export")
  new_version(export_dir, cfg.version)  # fail fast, before the model is built
  run = extractor_lib.restore(source, flag)
  images = check_images(cfg, run.config, run.workdir)
  log(f"exporting {run.checkpoint} (step {run.step})")
  return export(run.extractor, run.config, export_dir, cfg.version, run.checkpoint,
                run.step, log, umask=int(cfg.umask, 8), formats=cfg.format, images=images)
