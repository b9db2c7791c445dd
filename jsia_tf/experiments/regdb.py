"""Table 2 of the paper on RegDB: one model per trial, mean +- std over trials.

  python -m jsia_tf.experiments.regdb --data_dir=DIR [--trials=1-10] \
      [--output_dir=runs/regdb] [--preset=paper] [--seed=0] \
      [--warmup_steps=N --joint_steps=N]

Trial k trains on its own training ids and is evaluated on its own test ids, in
OUTPUT_DIR/trial<k> (a finished trial is reused, an unfinished one resumes). Writes
OUTPUT_DIR/regdb.md and regdb.json.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import experiment_flags  # pylint: disable=wrong-import-position
from jsia_tf import cli  # pylint: disable=wrong-import-position


def main(argv):
  """Entry point: flags -> RegdbExperimentConfig -> table2.run."""
  del argv
  cfg = experiment_flags.regdb_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.experiments import table2
  table2.run(cfg)


if __name__ == "__main__":
  experiment_flags.define_regdb_flags()
  cli.run(main)
