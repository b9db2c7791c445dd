"""Embeds images through a running TF Serving with the requests its client
libraries send: REST (`{"instances": [{"b64": ...}]}`, or the columnar form with
--columnar) or gRPC (a tensorflow-serving-api PredictRequest), to the export's
serve_image_bytes signature.

  tensorflow_model_server --port=8500 --rest_api_port=8501 --model_name=jsia \
      --model_base_path=$PWD/runs/demo/export
  python tools/serving_client.py --server=localhost:8501 --images=DIR \
      [--protocol=rest|grpc] [--model_name=jsia] [--version=N] [--columnar] \
      [--output=features.npz] [--batch_size=32]

--images: a folder (searched recursively), one image, or a text file of paths. With
--output, writes the features file python -m jsia_tf.evaluate and search read.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from absl import flags  # pylint: disable=wrong-import-position

from jsia_tf import cli  # pylint: disable=wrong-import-position
from jsia_tf import config as config_lib  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS


def define_flags():
  """The tool's flags."""
  flags.DEFINE_string("server", None, "HOST:PORT of the server: its REST port "
                      "(--rest_api_port, 8501 in the examples) or its gRPC port "
                      "(--port, 8500).")
  flags.DEFINE_string("images", None, "A folder of images (recursive), one image, or "
                      "a text file of image paths (one a line, relative to it).")
  flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "The API to call.")
  flags.DEFINE_string("model_name", "jsia", "The server's --model_name.")
  flags.DEFINE_integer("version", 0, "The model version to ask for; 0: the newest "
                       "the server has loaded.")
  flags.DEFINE_boolean("columnar", False, "REST: send the columnar form "
                       "{\"inputs\": ...} instead of the row form {\"instances\": ...}.")
  flags.DEFINE_string("output", "", "The features file to write (.npz); empty: print "
                      "a summary only.")
  flags.DEFINE_integer("batch_size", 32, "Images per request.")
  flags.DEFINE_float("timeout", 60.0, "Seconds to wait for each reply.")
  flags.mark_flags_as_required(["server", "images"])


def main(argv):
  """Entry point: flags -> the images' paths -> requests -> a features file."""
  del argv
  # pylint: disable=import-outside-toplevel
  from jsia_tf.evaluation import features as features_lib
  from jsia_tf.serving import client
  from jsia_tf.serving import embed
  from jsia_tf.serving import search
  config_lib.require(FLAGS.batch_size >= 1, "batch_size", FLAGS.batch_size,
                     "an integer >= 1")
  config_lib.require(not FLAGS.output or FLAGS.output.endswith(".npz"), "output",
                     FLAGS.output, "a .npz file name")
  config_lib.require(":" in FLAGS.server, "server", FLAGS.server, "HOST:PORT")
  remote = client.Remote(FLAGS.server, FLAGS.model_name, FLAGS.protocol, FLAGS.version,
                         FLAGS.columnar, FLAGS.timeout)
  feats = search.embed_files(remote, embed.image_paths(FLAGS.images), FLAGS.batch_size,
                             "images")
  norms = (feats.features ** 2).sum(axis=1) ** 0.5
  print(f"{len(feats.features)} embeddings of dimension {feats.features.shape[1]} from "
        f"{remote.directory} (norms {norms.min():.4f} to {norms.max():.4f})")
  if FLAGS.output:
    features_lib.save(FLAGS.output, feats)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
