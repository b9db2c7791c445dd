"""The main job: train JSIA-ReID.

Today only `--dry_run` works: build every network of the chosen preset, run one
forward pass, print the parameter count of every sub-network and the shape of every
named tensor, and exit. The training loop is the next piece of work (issue 5).

  python -m jsia_tf.train --preset=paper --dry_run
"""

from absl import flags

from flags import data_flags
from flags import model_flags
from jsia_tf import cli
from jsia_tf import errors
from jsia_tf.models import jsia

FLAGS = flags.FLAGS
# Training identities when no data set is read (dry run): the real sets' numbers.
NUM_TRAIN_IDS = {"sysu": 395, "regdb": 206}


def define_train_flags():
  """Flags of this entry point beyond the data, model and loss groups."""
  flags.DEFINE_bool("dry_run", False, "Build the model, print parameter counts and "
                    "output shapes of one forward pass, and exit.")
  flags.DEFINE_integer("num_classes", 0, "Training identities for --dry_run; 0: "
                       "395 for sysu, 206 for regdb.")


def main(argv):
  """Entry point: flags -> configs -> dry run."""
  del argv
  model_cfg = model_flags.model_config_from_flags()
  model_flags.loss_weights_from_flags()  # validated now, used by training
  if not FLAGS.dry_run:
    raise errors.ConfigError("training is not implemented yet (the training loop is "
                             "issue 5); only --dry_run is available")
  print(jsia.dry_run_report(model_cfg, FLAGS.num_classes or NUM_TRAIN_IDS[FLAGS.dataset]))


if __name__ == "__main__":
  data_flags.define_dataset_flags()
  model_flags.define_model_flags()
  model_flags.define_loss_flags()
  define_train_flags()
  cli.run(main)
