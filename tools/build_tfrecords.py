"""Converts SYSU-MM01 or RegDB (one trial) into sharded TFRecords + manifest.json.

  python tools/build_tfrecords.py --dataset=sysu --data_dir=DIR --output_dir=DIR
  python tools/build_tfrecords.py --dataset=regdb --data_dir=DIR --trial=1 --output_dir=DIR
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import json

from absl import flags

from flags import data_flags
from jsia_tf import cli

FLAGS = flags.FLAGS


def main(argv):
  """Entry point: flags -> tfrecords.build -> the manifest's counts."""
  del argv
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.data import tfrecords
  manifest = tfrecords.build(FLAGS.dataset, FLAGS.data_dir, FLAGS.output_dir,
                             trial=FLAGS.trial, skip_corrupt=FLAGS.skip_corrupt,
                             images_per_shard=FLAGS.images_per_shard)
  counts = {split: {k: v for k, v in info.items() if k not in ("files", "label_map")}
            for split, info in manifest["splits"].items()}
  print(json.dumps(counts, indent=2))
  print(f"wrote {FLAGS.output_dir}/manifest.json")


if __name__ == "__main__":
  data_flags.define_dataset_flags()
  data_flags.define_tfrecord_flags()
  cli.run(main)
