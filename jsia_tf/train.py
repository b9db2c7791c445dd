"""The main job: train JSIA-ReID, then evaluate it on the test protocol.

  python -m jsia_tf.train                      # demo: generated data, demo preset
  python -m jsia_tf.train --dataset=sysu --data_dir=DIR --workdir=runs/sysu
  python -m jsia_tf.train --dataset=regdb --data_dir=DIR --trial=1 --workdir=...
  python -m jsia_tf.train --dataset=llcm --data_dir=DIR --workdir=runs/llcm
  python -m jsia_tf.train --dataset=custom --data_dir=DIR/list.csv --workdir=...
  python -m jsia_tf.train --preset=paper --dry_run

Without --data_dir the demo data set is generated (once) into data/sysu_demo and the
demo preset trains on it; with real data the paper preset is the default.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import dataclasses

from absl import flags

from flags import train_flags
from jsia_tf import cli
from jsia_tf import config as config_lib

FLAGS = flags.FLAGS
# Training identities when no data set is read (dry run): the real sets' numbers.
NUM_TRAIN_IDS = {"sysu": 395, "regdb": 206, "llcm": 713}


def main(argv):
  """Entry point: flags -> ExperimentConfig -> training run (or dry run)."""
  del argv
  cfg = train_flags.experiment_config_from_flags()
  # Imported once the flags and the config are valid: a bad one is answered at
  # once, not after the seconds TensorFlow takes to load.
  from jsia_tf.models import jsia  # pylint: disable=import-outside-toplevel
  from jsia_tf.training import loop  # pylint: disable=import-outside-toplevel
  if FLAGS.dry_run:
    num_classes = FLAGS.num_classes or NUM_TRAIN_IDS.get(FLAGS.dataset)
    config_lib.require(bool(num_classes), "num_classes", FLAGS.num_classes,
                       f"the training identities of --dataset={FLAGS.dataset} "
                       f"(a dry run reads no data)")
    print(jsia.dry_run_report(cfg.model, num_classes))
    return
  cfg = dataclasses.replace(cfg, data=loop.with_demo_data(cfg.data))
  loop.run(cfg)


if __name__ == "__main__":
  train_flags.define_all_flags()
  cli.run(main)
