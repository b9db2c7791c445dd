"""Exports the test-time extractor of a training run as a SavedModel for TF Serving.

  python -m jsia_tf.export --workdir=runs/demo [--export_dir=DIR] [--version=N]
  python -m jsia_tf.export --checkpoint=runs/demo/checkpoints/ckpt-500

Writes DIR/<version>/ (default runs/demo/export/1, 2, ...): signatures
serving_default (float32 RGB 0..255 images of any size) and serve_image_bytes
(encoded JPEG/PNG/BMP), both -> `embedding`.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import export_flags
from jsia_tf import cli


def main(argv):
  """Entry point: flags -> ExportConfig -> a new SavedModel version."""
  del argv
  cfg = export_flags.export_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.serving import saved_model
  saved_model.export_run(cfg)


if __name__ == "__main__":
  export_flags.define_export_flags()
  cli.run(main)
