"""Flags of `python -m jsia_tf.embed`."""

from absl import flags

from flags import common
from jsia_tf import config as config_lib


def define_embed_flags(flag_values=flags.FLAGS):
  """Defines the embedder's flags; defaults come from `EmbedConfig`."""
  flags.DEFINE_string("model", "", "An export of python -m jsia_tf.export (its newest "
                      "version) or one version directory.", flag_values=flag_values)
  flags.DEFINE_string("images", "", "A folder of images (searched recursively), a text "
                      "file of image paths (one a line, relative to it), or a custom "
                      "CSV list file (path,pid,camera,modality,split).",
                      flag_values=flag_values)
  flags.DEFINE_string("output", "", "The features file to write (.npz).",
                      flag_values=flag_values)
  flags.DEFINE_integer("batch_size", config_lib.EmbedConfig.batch_size,
                       "Images per embedding batch.", flag_values=flag_values)


def embed_config_from_flags(flag_values=flags.FLAGS) -> config_lib.EmbedConfig:
  """The `EmbedConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.EmbedConfig, flag_values)
