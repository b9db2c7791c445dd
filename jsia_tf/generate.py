"""Generates the procedural RGB-infrared data set in SYSU-MM01 or RegDB layout.

  python -m jsia_tf.generate --layout=sysu|regdb --output_dir=DIR [--num_ids=N] [--seed=S]
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import synthetic_flags  # pylint: disable=wrong-import-position
from jsia_tf import cli  # pylint: disable=wrong-import-position
from jsia_tf.data import synthetic  # pylint: disable=wrong-import-position


def main(argv):
  """Entry point: flags -> SyntheticConfig -> synthetic.generate()."""
  del argv
  summary = synthetic.generate(synthetic_flags.synthetic_config_from_flags())
  print(f"wrote {summary['num_images']} images of {summary['num_ids']} identities "
        f"({summary['layout']} layout) to {summary['output_dir']} in "
        f"{summary['seconds']} s")


if __name__ == "__main__":
  synthetic_flags.define_synthetic_flags()
  cli.run(main)
