"""Ranks a gallery of person images for query images with an exported model.

  python -m jsia_tf.search --saved_model=runs/demo/export --query=IMAGE_OR_DIR \
      --gallery=DIR --output=DIR [--top_k=10]

Writes DIR/ranked/<query>.jpg (the query, then the top-k with scores; true matches
framed green when ids are known from the folders), DIR/rankings.json and the cached
gallery features DIR/gallery_features.npz (readable by python -m jsia_tf.evaluate).
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import search_flags
from jsia_tf import cli


def main(argv):
  """Entry point: flags -> SearchConfig -> rankings and ranked-list images."""
  del argv
  cfg = search_flags.search_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.serving import search
  search.run(cfg)


if __name__ == "__main__":
  search_flags.define_search_flags()
  cli.run(main)
