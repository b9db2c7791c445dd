"""Images/s of the P x K training pipeline at the paper's 256x128 (prints JSON).

With no --data_dir it generates the default demo data set (SYSU layout) in a
temporary directory first. Usage:
  python benchmarks/input_pipeline.py [--data_dir=DIR] [--batches=40]
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import json
import os
import platform
import tempfile
import time

from absl import app
from absl import flags

import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf.data import pipeline
from jsia_tf.data import synthetic
from jsia_tf.data import tfrecords

_DATA_DIR = flags.DEFINE_string("data_dir", None, "SYSU-layout data set; default: "
                                "generate the demo set in a temporary directory.")
_BATCHES = flags.DEFINE_integer("batches", 40, "Batches to time (after 5 warm-up).")


def measure(table, cfg, batches):
  """Images/s over `batches` batches of the train pipeline, after a warm-up."""
  iterator = iter(pipeline.make_train_dataset(table, cfg))
  for _ in range(5):
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  seconds = time.perf_counter() - start
  return batches * 2 * cfg.batch_p * cfg.batch_k / seconds


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = _DATA_DIR.value
    if data_dir is None:
      data_dir = os.path.join(tmp, "sysu")
      synthetic.generate(synthetic.SyntheticConfig(output_dir=data_dir),
                         log=lambda _: None)
    table = tfrecords.load_split(config_lib.DataConfig(data_dir=data_dir), "train")
    results = {}
    variants = {
        "flip": {},
        "flip+pad_crop+random_erasing": {"pad_crop": 10, "random_erasing": 0.5},
    }
    for name, extra in variants.items():
      cfg = config_lib.DataConfig(data_dir=data_dir, image_height=256, image_width=128,
                                  batch_p=16, batch_k=4, **extra)
      results[name] = round(measure(table, cfg, _BATCHES.value), 1)
  cores = os.cpu_count()
  print(json.dumps({
      "benchmark": "input_pipeline",
      "image_size": [256, 128], "batch": "P=16 x K=4 x 2 modalities",
      "images_per_second": results,
      "images_per_second_per_core": {k: round(v / cores, 1) for k, v in results.items()},
      "cpu_cores": cores, "machine": platform.machine(),
      "tensorflow": tf.__version__,
  }, indent=2))


if __name__ == "__main__":
  app.run(main)
