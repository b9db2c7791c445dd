"""Embeds many images with an exported model into a features file.

  python -m jsia_tf.embed --model=runs/demo/export --images=DIR|LIST.txt|LIST.csv \
      --output=features.npz [--batch_size=64]

The features file is the one `python -m jsia_tf.evaluate --features` and the
gallery cache of `search` read: build your own gallery index from it.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

from flags import embed_flags
from jsia_tf import cli


def main(argv):
  """Entry point: flags -> EmbedConfig -> the features file."""
  del argv
  cfg = embed_flags.embed_config_from_flags()
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.serving import embed
  embed.embed(cfg)


if __name__ == "__main__":
  embed_flags.define_embed_flags()
  cli.run(main)
