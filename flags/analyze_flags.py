"""Flags of `python -m jsia_tf.analyze`."""

from absl import flags

from flags import common
from jsia_tf import config as config_lib


def define_analyze_flags(flag_values=flags.FLAGS):
  """Defines the analysis' flags; defaults come from `AnalyzeConfig`."""
  d = config_lib.AnalyzeConfig(workdir="defaults")
  flags.DEFINE_string("workdir", "", "The training workdir to analyse (its newest "
                      "checkpoint).", flag_values=flag_values)
  flags.DEFINE_list("compare", [], "More training workdirs of the same data set, each "
                    "a row of Fig. 4 (e.g. the Table 3 rows without SL or IL).",
                    flag_values=flag_values)
  flags.DEFINE_string("inception", "", "FID's reference network: classify_image_graph_"
                      "def.pb from inception-2015-12-05.tgz (never downloaded). Empty: "
                      "Table 4 without FID / KID.", flag_values=flag_values)
  flags.DEFINE_string("reid_model", "", "An export (python -m jsia_tf.export) that "
                      "judges MD, so that runs are compared by one judge. Empty: the "
                      "run's own F.", flag_values=flag_values)
  flags.DEFINE_string("data_dir", "", "Where the runs' data set is now; empty: the path "
                      "they were trained with.", flag_values=flag_values)
  flags.DEFINE_string("output_dir", "", "Where report.md, analysis.json and the figures "
                      "go; empty: WORKDIR/analysis.", flag_values=flag_values)
  flags.DEFINE_integer("max_pairs", d.max_pairs, "At most this many FRI (and FLS) pairs "
                       "of test images.", flag_values=flag_values)
  flags.DEFINE_integer("max_images", d.max_images, "Fig. 4: at most this many images "
                       "per modality and split.", flag_values=flag_values)
  flags.DEFINE_integer("grid_ids", d.grid_ids, "Fig. 6: identities (rows).",
                       flag_values=flag_values)
  flags.DEFINE_integer("kid_subsets", d.kid_subsets, "KID: random subsets averaged.",
                       flag_values=flag_values)
  flags.DEFINE_integer("kid_subset_size", d.kid_subset_size, "KID: images per subset "
                       "(at most the smaller set).", flag_values=flag_values)
  flags.DEFINE_integer("batch_size", d.batch_size, "Images per generation / embedding "
                       "batch.", flag_values=flag_values)
  flags.DEFINE_integer("seed", d.seed, "Seed of every draw (pairs, partners, alphas, "
                       "subsets).", flag_values=flag_values)


def analyze_config_from_flags(flag_values=flags.FLAGS) -> config_lib.AnalyzeConfig:
  """The `AnalyzeConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.AnalyzeConfig, flag_values)
