"""Evaluates a features file under the SYSU-MM01, RegDB, LLCM or a custom protocol.

  python -m jsia_tf.evaluate --features=test.npz --protocol=sysu \
      [--mode=all|indoor] [--shots=1|10] [--perm_file=auto|official|seeded|FILE] \
      [--test_ids=test_id.mat|DIR/exp/test_id.txt|all] \
      [--distance=cosine|euclidean] [--rerank] [--output_json=FILE]
  python -m jsia_tf.evaluate --features=trial1.npz,...,trial10.npz --protocol=regdb \
      [--direction=v2t|t2v]
  python -m jsia_tf.evaluate --features=test.npz --protocol=llcm [--direction=t2v|v2t]
  python -m jsia_tf.evaluate --checkpoint=WORKDIR --protocol=custom [--remove_same_camera]
  python -m jsia_tf.evaluate --checkpoint=WORKDIR [--data_dir=DIR] [--output_features=F]
  python -m jsia_tf.evaluate --saved_model=EXPORT_DIR [--data_dir=DIR]
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import eval_flags
from jsia_tf import cli
from jsia_tf.evaluation import report as report_lib


def main(argv):
  """Entry point: flags -> EvalConfig -> report (from features files, or from a
  model's features of the test split) -> table (and JSON)."""
  del argv
  cfg = eval_flags.eval_config_from_flags()
  if cfg.features:  # numpy only: importing TensorFlow would cost more than this
    report = report_lib.evaluate(cfg)
  else:
    from jsia_tf.evaluation import extract  # pylint: disable=import-outside-toplevel
    report = extract.evaluate_model(cfg)
  print(report_lib.format_table(report))
  if cfg.output_json:
    report_lib.save(report, cfg.output_json)
    print(f"wrote {cfg.output_json}")


if __name__ == "__main__":
  eval_flags.define_eval_flags()
  cli.run(main)
