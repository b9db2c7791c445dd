"""Table 4, Fig. 4, Fig. 6 and Fig. 7 of the paper for a trained run.

  python -m jsia_tf.analyze --workdir=RUN [--compare=RUN2,RUN3] \
      [--inception=classify_image_graph_def.pb] [--reid_model=EXPORT] \
      [--data_dir=DIR] [--output_dir=DIR]

Writes DIR/report.md, DIR/analysis.json, the figures' PNG files and Fig. 4's
TensorBoard histograms (DIR defaults to RUN/analysis).
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import analyze_flags  # pylint: disable=wrong-import-position
from jsia_tf import cli  # pylint: disable=wrong-import-position


def main(argv):
  """Entry point: flags -> AnalyzeConfig -> analysis.analyze."""
  del argv
  cfg = analyze_flags.analyze_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.analysis import analyze
  analyze.analyze(cfg)


if __name__ == "__main__":
  analyze_flags.define_analyze_flags()
  cli.run(main)
