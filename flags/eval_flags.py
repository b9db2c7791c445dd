"""Flags of `python -m jsia_tf.evaluate`."""

from absl import flags

from flags import common
from jsia_tf import config as config_lib


def define_eval_flags(flag_values=flags.FLAGS):
  """Defines the evaluator's flags; defaults come from `EvalConfig`."""
  flags.DEFINE_list("features", [], "Features file(s) (.npz). SYSU-MM01: one file; "
                    "RegDB: one file per trained trial, averaged.",
                    flag_values=flag_values)
  flags.DEFINE_string("checkpoint", "", "Instead of --features: a training workdir "
                      "(its newest checkpoint) or one checkpoint prefix; its test "
                      "split is embedded once, then evaluated.", flag_values=flag_values)
  flags.DEFINE_string("saved_model", "", "Instead of --features: an export of python -m "
                      "jsia_tf.export (its newest version) or one version directory.",
                      flag_values=flag_values)
  flags.DEFINE_string("data_dir", "", "With --checkpoint / --saved_model: where the "
                      "run's data set is now; empty: the path the run was trained with.",
                      flag_values=flag_values)
  flags.DEFINE_string("output_features", "", "With --checkpoint / --saved_model: also "
                      "write the extracted features here (.npz).",
                      flag_values=flag_values)
  flags.DEFINE_enum("protocol", "sysu", list(config_lib.EVAL_PROTOCOLS),
                    "Evaluation protocol.", flag_values=flag_values)
  flags.DEFINE_enum("mode", "", ["", "all", "indoor"],
                    "SYSU-MM01 search mode; empty: both.", flag_values=flag_values)
  flags.DEFINE_integer("shots", 0, "SYSU-MM01 gallery shots (1 or 10); 0: both.",
                       flag_values=flag_values)
  flags.DEFINE_string("perm_file", "auto", "SYSU-MM01 gallery draws: official (the "
                      "official rand_perm_cam.mat, shipped with the package), seeded "
                      "(numpy default_rng(trial)), a path to an official-format "
                      "rand_perm_cam.mat (tools/make_perm_file.py writes one for any "
                      "SYSU-layout set), or auto: official when it fits the features, "
                      "else seeded (the report says which).", flag_values=flag_values)
  flags.DEFINE_list("test_ids", [], "The identities evaluated; rows of others are left "
                    "out and counted. SYSU-MM01: test_id.mat or exp/test_id.txt; empty: "
                    "the official test_id.mat with --features, the model's test split "
                    "with --checkpoint / --saved_model. RegDB: each trial's "
                    "idx/test_visible_<trial>.txt, one per features file; empty: every "
                    "identity of the files. all: every identity.",
                    flag_values=flag_values)
  flags.DEFINE_enum("distance", "cosine", ["cosine", "euclidean"],
                    "Distance between features.", flag_values=flag_values)
  flags.DEFINE_enum("direction", "", ["", "v2t", "t2v"],
                    "RegDB query->gallery direction; empty: both.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_trials", 10, "SYSU-MM01 gallery draws (1..10).",
                       flag_values=flag_values)
  flags.DEFINE_integer("max_rank", 20, "Length of the CMC curve.",
                       flag_values=flag_values)
  flags.DEFINE_boolean("remove_same_camera", False, "--protocol=custom: leave out of "
                       "each query's gallery the images of its identity taken by its "
                       "camera.", flag_values=flag_values)
  define_rerank_flags(flag_values)
  flags.DEFINE_string("output_json", "", "Also write the report here (JSON).",
                      flag_values=flag_values)


def define_rerank_flags(flag_values=flags.FLAGS):
  """k-reciprocal re-ranking's flags (evaluate and search)."""
  flags.DEFINE_boolean("rerank", False, "Re-rank with k-reciprocal encoding (Zhong et "
                       "al., CVPR 2017) before the metrics.", flag_values=flag_values)
  flags.DEFINE_integer("rerank_k1", 20, "Re-ranking's k1: the k-reciprocal "
                       "neighbourhood.", flag_values=flag_values)
  flags.DEFINE_integer("rerank_k2", 6, "Re-ranking's k2: the local query expansion.",
                       flag_values=flag_values)
  flags.DEFINE_float("rerank_lambda", 0.3, "Re-ranking's lambda: the weight of the "
                     "original distance beside the Jaccard distance.",
                     flag_values=flag_values)


def eval_config_from_flags(flag_values=flags.FLAGS) -> config_lib.EvalConfig:
  """The `EvalConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.EvalConfig, flag_values)
