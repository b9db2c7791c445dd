"""The exported extractor's speed in every runtime (JSON).

For each preset (random weights: speed does not depend on their values), the
extractor is exported with every format (`python -m jsia_tf.export`'s code, checked
on random probe images), then each runtime embeds random images at the model's size
at batch 1 and batch 32: Keras in process (the extractor's serve_fixed_size), the
SavedModel (its serve_fixed_size signature), ONNX Runtime, LiteRT and OpenVINO in
float32 and each reduced precision. Per runtime and batch: images/s, latency p50 and
p99 (ms per call). The machine's rate: a plain Keras ResNet-50 at 256x128 (inference,
global-average-pooled), measured in the same process.

  python benchmarks/inference.py [--presets=demo,paper] [--seconds=8] \
      [--formats=onnx,litert,...] [--output=FILE.json]
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

from jsia_tf import files

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["demo", "paper"], "Extractor presets to measure.")
flags.DEFINE_list("formats", ["onnx", "onnx_float16", "onnx_int8", "litert",
                              "litert_float16", "litert_int8", "openvino",
                              "openvino_float16"],
                  "Exported formats to measure beside Keras and the SavedModel.")
flags.DEFINE_list("batches", ["1", "32"], "Batch sizes.")
flags.DEFINE_float("seconds", 8.0, "Timed seconds per runtime and batch (after 3 "
                   "warm-up calls; at least 5 timed calls).")
flags.DEFINE_string("output", "", "Also write the JSON here.")


def machine() -> dict:
  """The CPU model and its bfloat16 features, cores, library versions."""
  flags_line, model = "", platform.processor()
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in lscpu.splitlines():
      if line.startswith("Model name:"):
        model = line.split(":", 1)[1].strip()
      if line.startswith("Flags:"):
        flags_line = line
  except (OSError, subprocess.CalledProcessError):
    pass
  versions = {}
  for module in ("tensorflow", "onnxruntime", "tf2onnx", "openvino", "ai_edge_litert"):
    try:
      versions[module] = __import__(module).__version__
    except (ImportError, AttributeError):
      versions[module] = None
  return {"cpu": model, "cpus": os.cpu_count(),
          "avx512_bf16": "avx512_bf16" in flags_line, "amx_bf16": "amx_bf16" in flags_line,
          **versions}


def timed(run, images: np.ndarray, seconds: float) -> dict:
  """images/s and per-call latency percentiles of `run(images)`."""
  for _ in range(3):
    run(images)
  latencies, start = [], time.perf_counter()
  while len(latencies) < 5 or time.perf_counter() - start < seconds:
    t = time.perf_counter()
    run(images)
    latencies.append(time.perf_counter() - t)
  latencies = np.asarray(latencies) * 1000.0
  return {"images_per_second": round(len(images) * len(latencies) / latencies.sum() * 1000, 1),
          "p50_ms": round(float(np.percentile(latencies, 50)), 2),
          "p99_ms": round(float(np.percentile(latencies, 99)), 2), "calls": len(latencies)}


def reference_resnet50(batches, seconds: float) -> dict:
  """A plain Keras ResNet-50 at 256x128, inference, per batch size."""
  # pylint: disable=import-outside-toplevel
  import keras
  import tensorflow as tf
  net = keras.applications.ResNet50(weights=None, include_top=False,
                                    input_shape=(256, 128, 3), pooling="avg")
  run = tf.function(lambda x: net(x, training=False))
  rng = np.random.default_rng(0)
  return {f"batch{b}": timed(lambda x: run(x).numpy(),
                             rng.uniform(-1, 1, (b, 256, 128, 3)).astype(np.float32),
                             seconds) for b in batches}


def measure(preset: str, formats, batches, seconds: float) -> dict:
  """Every runtime of `preset`'s exported extractor at every batch size."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf import config as config_lib
  from jsia_tf.serving import extractor as extractor_lib
  from jsia_tf.serving import formats as formats_lib
  from jsia_tf.serving import saved_model
  from jsia_tf.training import experiment

  model = config_lib.model_config(preset)
  data = config_lib.DataConfig(data_dir="unused", image_height=model.image_height,
                               image_width=model.image_width)
  with tempfile.TemporaryDirectory() as tmp:
    cfg = experiment.ExperimentConfig(data, model, config_lib.LossWeights(),
                                      config_lib.TrainConfig(workdir=tmp))
    extractor = extractor_lib.Extractor(cfg)
    rng = np.random.default_rng(1)
    size = model.image_size
    images = saved_model.Images(
        probe=rng.uniform(0, 255, (8,) + size + (3,)).astype(np.float32),
        calibration=rng.uniform(0, 255, (16,) + size + (3,)).astype(np.float32))
    start = time.time()
    version = saved_model.export(extractor, cfg, os.path.join(tmp, "export"),
                                 log=lambda _: None, formats=formats, images=images)
    export_seconds = time.time() - start
    loaded = tf.saved_model.load(version)
    signature = loaded.signatures[saved_model.FIXED_SIZE]
    delegates, checks = {}, {}
    runtimes = {
        "keras": lambda x: extractor.serve_fixed_size(tf.constant(x))["embedding"].numpy(),
        "saved_model": lambda x: signature(images=tf.constant(x))["embedding"].numpy()}
    for name in formats:
      artifact = formats_lib.Artifact(os.path.join(version, name))
      runtimes[name] = artifact.runtime
      delegates[name] = getattr(artifact.runtime, "delegate", None)
      checks[name] = artifact.metadata["check"]
    results = {}
    for name, run in runtimes.items():
      results[name] = {}
      for b in batches:
        x = rng.uniform(0, 255, (b,) + size + (3,)).astype(np.float32)
        results[name][f"batch{b}"] = timed(run, x, seconds)
      if name in checks:
        results[name]["max_abs_diff_vs_saved_model"] = checks[name]["max_abs_diff"]
      if delegates.get(name):
        results[name]["litert_delegate"] = delegates[name]
  best = max(formats, key=lambda n: results[n]["batch32"]["images_per_second"]) \
      if formats and "batch32" in results["saved_model"] else None
  out = {"preset": preset, "image_size": list(size),
         "embedding_dim": extractor.embedding_dim, "export_seconds": round(export_seconds, 1),
         "runtimes": results}
  if best:
    out["fastest_at_batch32"] = best
    out["fastest_vs_saved_model_at_batch32"] = round(
        results[best]["batch32"]["images_per_second"]
        / results["saved_model"]["batch32"]["images_per_second"], 2)
  return out


def main(argv):
  del argv
  batches = [int(b) for b in FLAGS.batches]
  result = {"machine": machine(),
            "reference_resnet50_256x128": reference_resnet50(batches, FLAGS.seconds),
            "presets": []}
  for preset in FLAGS.presets:
    result["presets"].append(measure(preset, list(FLAGS.formats), batches, FLAGS.seconds))
    print(json.dumps(result["presets"][-1]), flush=True)  # each preset as it ends
  text = json.dumps(result, indent=1)
  print(text)
  if FLAGS.output:
    files.atomic_write(FLAGS.output, lambda f: f.write(text + "\n"))


if __name__ == "__main__":
  app.run(main)
