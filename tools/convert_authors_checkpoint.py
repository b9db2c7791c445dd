"""Converts a checkpoint of the authors' PyTorch code into a jsia_tf workdir.

  python tools/convert_authors_checkpoint.py --checkpoint_dir=DIR --workdir=OUT \
      [--epoch=E] [--num_classes=395] [--dataset=sysu --data_dir=DIR]
  python -m jsia_tf.evaluate --checkpoint=OUT [--data_dir=DIR]
  python -m jsia_tf.export --workdir=OUT

DIR holds their `model-{0..3}_{epoch}.pkl` (torch needed: pip install -e .[parity])
or the same state dicts as .safetensors.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from absl import flags

from flags import data_flags
from jsia_tf import cli

FLAGS = flags.FLAGS


def define_flags():
  """The converter's own flags (the data set ones come from data_flags)."""
  flags.DEFINE_string("checkpoint_dir", None, "Directory of the authors' "
                      "model-{0..3}_{epoch}.pkl (or .safetensors) files.")
  flags.DEFINE_string("workdir", None, "The jsia_tf workdir to write (new).")
  flags.DEFINE_integer("epoch", None, "Which epoch's files; default: the newest "
                       "complete one.")
  flags.DEFINE_integer("num_classes", None, "Training identities the checkpoint must "
                       "have (their code: 395 for SYSU-MM01); default: its own.")
  flags.mark_flags_as_required(["checkpoint_dir", "workdir"])


def main(argv):
  """Entry point: flags -> convert.convert."""
  del argv
  data = data_flags.data_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.training import convert
  convert.convert(FLAGS.checkpoint_dir, FLAGS.workdir, FLAGS.num_classes, FLAGS.epoch, data)


if __name__ == "__main__":
  data_flags.define_dataset_flags()
  define_flags()
  cli.run(main)
