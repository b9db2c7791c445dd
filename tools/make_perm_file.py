"""Writes an official-format rand_perm_cam.mat for any SYSU-MM01-layout data set.

  python tools/make_perm_file.py --data_dir=DIR --output=FILE [--trials=10 --seed=0]
  python -m jsia_tf.evaluate --features=F.npz --perm_file=FILE \
      --test_ids=DIR/exp/test_id.txt

The file has the official file's variable and nesting (`rand_perm_cam`: a 6 x 1 cell
array of per-identity [trials, n] matrices of 1-based indices into the sorted images
of (camera, identity)), so the official MATLAB evaluation reads it too.
"""

from absl import flags

from jsia_tf import cli
from jsia_tf import config as config_lib
from jsia_tf.data import readers
from jsia_tf.evaluation import protocols

FLAGS = flags.FLAGS


def define_flags():
  """The tool's flags."""
  flags.DEFINE_string("data_dir", None, "A SYSU-MM01-layout data set "
                      "(cam1..cam6/<pid:04d>/).")
  flags.DEFINE_string("output", None, "The .mat file to write.")
  flags.DEFINE_integer("trials", protocols.SYSU_TRIALS, "Gallery draws (rows of each "
                       "matrix); the evaluation uses the first 1..10.")
  flags.DEFINE_integer("seed", 0, "Seed of numpy.random.default_rng for the draws.")
  flags.mark_flags_as_required(["data_dir", "output"])


def main(argv):
  """Entry point: flags -> image counts -> permutations -> the .mat file."""
  del argv
  config_lib.require(FLAGS.trials >= 1, "trials", FLAGS.trials, "an integer >= 1")
  counts = readers.sysu_image_counts(FLAGS.data_dir)
  protocols.write_perm_file(FLAGS.output, protocols.make_perm_cells(
      counts, FLAGS.trials, FLAGS.seed))
  print(f"wrote {FLAGS.output}: {FLAGS.trials} draws for {len(counts)} "
        f"(camera, identity) folders of {FLAGS.data_dir}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
