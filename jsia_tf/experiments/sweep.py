"""Fig. 5 of the paper: R1 against one parameter, several seeds per value.

  python -m jsia_tf.experiments.sweep --param=lambda_il --values=0,0.001,0.01,0.1,1 \
      [--seeds=3] [--output_dir=runs/sweep_lambda_il] [--data_dir=DIR] \
      [--preset=demo] [--warmup_steps=N --joint_steps=N]

--param: lambda_il, lambda_lr, lambda_ui or num_stripes. One run per (value, seed),
reused when finished, resumed when not. Writes sweep.md, sweep.json and sweep.png.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import experiment_flags  # pylint: disable=wrong-import-position
from jsia_tf import cli  # pylint: disable=wrong-import-position


def main(argv):
  """Entry point: flags -> SweepConfig -> fig5.run."""
  del argv
  cfg = experiment_flags.sweep_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.experiments import fig5
  fig5.run(cfg)


if __name__ == "__main__":
  experiment_flags.define_sweep_flags()
  cli.run(main)
