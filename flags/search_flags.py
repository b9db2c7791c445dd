"""Flags of `python -m jsia_tf.search`."""

from absl import flags

from flags import common
from flags import eval_flags
from jsia_tf import config as config_lib


def define_search_flags(flag_values=flags.FLAGS):
  """Defines the search command's flags; defaults come from `SearchConfig`."""
  flags.DEFINE_string("saved_model", "", "An export of python -m jsia_tf.export (its "
                      "newest version) or one version directory.",
                      flag_values=flag_values)
  flags.DEFINE_string("query", "", "A query image, or a folder of them (searched "
                      "recursively).", flag_values=flag_values)
  flags.DEFINE_string("gallery", "", "A folder of gallery images (searched "
                      "recursively). Images in ID folders (e.g. cam1/0007/x.jpg) are "
                      "labelled with that id.", flag_values=flag_values)
  flags.DEFINE_string("output", "", "Where the ranked-list images, rankings.json and "
                      "the cached gallery features go.", flag_values=flag_values)
  flags.DEFINE_integer("top_k", 10, "Gallery images shown and listed per query.",
                       flag_values=flag_values)
  flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.",
                       flag_values=flag_values)
  eval_flags.define_rerank_flags(flag_values)


def search_config_from_flags(flag_values=flags.FLAGS) -> config_lib.SearchConfig:
  """The `SearchConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.SearchConfig, flag_values)
