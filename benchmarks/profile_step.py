"""Where the joint-stage train step spends its time: the TF profiler's trace of a
few steps, summarised per op type (JSON).

  python benchmarks/profile_step.py [--preset=paper] [--steps=1]
      [--mixed_precision=bfloat16] [--top=25] [--logdir=DIR]

One process: a compiling step, then `--steps` profiled steps of `--preset` (its
batch, G sub-batch, one replica, generated data). The trace (TensorBoard's Profile
tab reads it from --logdir) is read back from its XSpace file: every op event of
the host's executor threads, grouped by op type, with its total time, share and
count. The times are summed over threads, so with 2 cores they add up to about
twice the wall time of the steps.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import collections
import glob
import json
import os
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_string("preset", "paper", "Preset to profile.")
flags.DEFINE_integer("steps", 1, "Profiled joint steps (after one untimed, compiling).")
flags.DEFINE_enum("mixed_precision", "", ["", "float16", "bfloat16"],
                  "The step's compute dtype; empty: float32.")
flags.DEFINE_integer("top", 25, "Op types to list.")
flags.DEFINE_string("logdir", "", "Where the trace goes (default: a temporary "
                    "directory, deleted).")
FLAGS = flags.FLAGS


def op_times(xspace_path: str) -> collections.Counter:
  """{op type: (picoseconds, count)} over the op events of an XSpace file's host
  plane. TensorFlow names an op event "name:Type"."""
  # pylint: disable-next=import-outside-toplevel
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  space = xplane_pb2.XSpace()
  with open(xspace_path, "rb") as f:
    space.ParseFromString(f.read())
  totals, counts = collections.Counter(), collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        # Op events are "name:Type" (oneDNN's rewrites: "_MklNativeConv2D", ...);
        # the executor's own spans ("ExecutorState::Process", ...) contain "::".
        if ":" not in name or "::" in name or name.startswith("tf_function"):
          continue
        op_type = name.rsplit(":", 1)[1]
        if not op_type or not (op_type[0].isupper() or op_type.startswith("_")):
          continue
        totals[op_type] += event.duration_ps
        counts[op_type] += 1
  return totals, counts


def main(argv):
  del argv
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf import config as config_lib
  from jsia_tf import losses
  from jsia_tf.data import pipeline
  from jsia_tf.data import synthetic
  from jsia_tf.data import tfrecords
  from jsia_tf.training import distribute
  from jsia_tf.training import experiment
  from jsia_tf.training import trainer as trainer_lib

  tmp = tempfile.TemporaryDirectory()
  data_dir = os.path.join(tmp.name, "sysu")
  synthetic.generate(synthetic.SyntheticConfig(output_dir=data_dir, num_ids=40),
                     log=lambda _: None)
  model = config_lib.model_config(FLAGS.preset)
  defaults = config_lib.TRAIN_PRESETS[FLAGS.preset]
  data = config_lib.DataConfig(data_dir=data_dir, image_height=model.image_height,
                               image_width=model.image_width,
                               batch_p=defaults["batch_p"], batch_k=defaults["batch_k"])
  train = config_lib.TrainConfig(workdir=os.path.join(tmp.name, "run"), warmup_steps=0,
                                 joint_steps=FLAGS.steps + 1, gen_ids=defaults["gen_ids"],
                                 mixed_precision=FLAGS.mixed_precision)
  distribute.set_numerics(train)
  cfg = experiment.ExperimentConfig(data, model, losses.LossWeights(), train)
  table = tfrecords.load_split(data, "train")
  trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(),
                                int(table.label.max()) + 1)
  batches = iter(pipeline.make_train_dataset(table, data))
  trainer.train_step(next(batches), 0)  # compiles
  logdir = FLAGS.logdir or os.path.join(tmp.name, "profile")
  inputs = [next(batches) for _ in range(FLAGS.steps)]
  tf.profiler.experimental.start(logdir)
  start = time.time()
  for step, batch in enumerate(inputs, start=1):
    trainer.train_step(batch, step)
  seconds = time.time() - start
  tf.profiler.experimental.stop()
  paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
  if not paths:
    raise SystemExit(f"the profiler wrote no .xplane.pb under {logdir}")
  totals, counts = op_times(sorted(paths)[-1])
  all_ps = sum(totals.values())
  print(json.dumps({
      "preset": FLAGS.preset, "mixed_precision": FLAGS.mixed_precision or "float32",
      "profiled_steps": FLAGS.steps, "wall_seconds": round(seconds, 2),
      "op_seconds_summed_over_threads": round(all_ps / 1e12, 2),
      "cpus": os.cpu_count(), "tensorflow": tf.__version__,
      "trace": logdir if FLAGS.logdir else "(temporary, deleted)",
      "op_types": [{"type": t, "seconds": round(ps / 1e12, 3),
                    "share": round(ps / max(all_ps, 1), 4), "count": counts[t]}
                   for t, ps in totals.most_common(FLAGS.top)],
  }, indent=2))
  tmp.cleanup()


if __name__ == "__main__":
  app.run(main)
