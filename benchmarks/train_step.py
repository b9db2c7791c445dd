"""Images/s of the joint-stage train step per preset, and the process's peak memory.

  python benchmarks/train_step.py [--presets=tiny,demo,paper] [--steps=5]
      [--mixed_precision=float16|bfloat16] [--jit_compile]

Each preset runs in a fresh process (so that its peak RSS is its own) on a generated
SYSU-layout set, with the preset's batch (P x K per modality) and G sub-batch, one
replica. Prints one JSON object per preset, then a JSON list of all of them.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_list("presets", ["tiny", "demo", "paper"], "Presets to measure.")
flags.DEFINE_integer("steps", 5, "Timed joint steps (after one untimed, compiling).")
flags.DEFINE_enum("mixed_precision", "", ["", "float16", "bfloat16"],
                  "The step's compute dtype; empty: float32.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the step.")
flags.DEFINE_string("one", "", "Internal: measure this preset in this process.")
flags.DEFINE_string("data_dir", "", "Internal: the generated data set.")
FLAGS = flags.FLAGS


def measure(preset: str, data_dir: str, steps: int, mixed_precision: str,
            jit_compile: bool) -> dict:
  """Times `steps` joint steps of `preset` after a compiling one."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf import config as config_lib
  from jsia_tf import losses
  from jsia_tf.data import pipeline
  from jsia_tf.data import tfrecords
  from jsia_tf.training import distribute
  from jsia_tf.training import experiment
  from jsia_tf.training import trainer as trainer_lib

  model = config_lib.model_config(preset)
  defaults = config_lib.TRAIN_PRESETS[preset]
  data = config_lib.DataConfig(data_dir=data_dir, image_height=model.image_height,
                               image_width=model.image_width,
                               batch_p=defaults["batch_p"], batch_k=defaults["batch_k"])
  train = config_lib.TrainConfig(workdir=tempfile.mkdtemp(), warmup_steps=0,
                                 joint_steps=steps + 1, gen_ids=defaults["gen_ids"],
                                 mixed_precision=mixed_precision,
                                 jit_compile=jit_compile)
  distribute.set_numerics(train)
  cfg = experiment.ExperimentConfig(data, model, losses.LossWeights(), train)
  strategy = tf.distribute.get_strategy()
  table = tfrecords.load_split(data, "train")
  trainer = trainer_lib.Trainer(cfg, strategy, int(table.label.max()) + 1)
  batches = iter(pipeline.make_train_dataset(table, data))
  start = time.time()
  trainer.train_step(next(batches), 0)
  compile_seconds = time.time() - start
  start = time.time()
  for step in range(1, steps + 1):
    trainer.train_step(next(batches), step)
  seconds = (time.time() - start) / steps
  images = 2 * data.batch_p * data.batch_k
  return {"preset": preset, "image_size": list(model.image_size),
          "batch": f"P={data.batch_p} x K={data.batch_k} x 2 modalities",
          "gen_ids": train.gen_ids, "mixed_precision": mixed_precision or "float32",
          "jit_compile": jit_compile,
          "seconds_per_step": round(seconds, 3),
          "images_per_second": round(images / seconds, 1),
          "first_step_seconds": round(compile_seconds, 1),
          "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
          "cpus": os.cpu_count(), "tensorflow": tf.__version__}


def main(argv):
  del argv
  if FLAGS.one:
    print(json.dumps(measure(FLAGS.one, FLAGS.data_dir, FLAGS.steps,
                             FLAGS.mixed_precision, FLAGS.jit_compile)))
    return
  from jsia_tf.data import synthetic  # pylint: disable=import-outside-toplevel
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = os.path.join(tmp, "sysu")
    synthetic.generate(synthetic.SyntheticConfig(output_dir=data_dir, num_ids=40),
                       log=lambda _: None)
    for preset in FLAGS.presets:
      proc = subprocess.run(
          [sys.executable, __file__, f"--one={preset}", f"--data_dir={data_dir}",
           f"--steps={FLAGS.steps}", f"--mixed_precision={FLAGS.mixed_precision}",
           f"--jit_compile={FLAGS.jit_compile}"],
          capture_output=True, text=True,
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
      if proc.returncode:
        raise SystemExit(f"preset {preset} failed:\n{proc.stderr[-3000:]}")
      result = json.loads(proc.stdout.strip().splitlines()[-1])
      print(json.dumps(result), flush=True)
      results.append(result)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
