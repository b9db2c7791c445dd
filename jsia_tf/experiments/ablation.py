"""Table 3 of the paper with several seeds per row.

  python -m jsia_tf.experiments.ablation [--rows=1-6] [--seeds=3] \
      [--output_dir=runs/ablation] [--data_dir=DIR] [--preset=demo] \
      [--warmup_steps=N --joint_steps=N]

One training run per (row, seed) in OUTPUT_DIR/row<r>_seed<s>: a finished run is
reused, an unfinished one resumes. Writes OUTPUT_DIR/ablation.md and ablation.json;
`tensorboard --logdir=OUTPUT_DIR` shows every run in the HParams dashboard.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import experiment_flags  # pylint: disable=wrong-import-position
from jsia_tf import cli  # pylint: disable=wrong-import-position


def main(argv):
  """Entry point: flags -> AblationConfig -> table3.run."""
  del argv
  cfg = experiment_flags.ablation_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.experiments import table3
  table3.run(cfg)


if __name__ == "__main__":
  experiment_flags.define_ablation_flags()
  cli.run(main)
