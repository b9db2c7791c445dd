"""Flags of `python -m jsia_tf.generate`."""

from absl import flags

from flags import common
from jsia_tf.data import synthetic


def define_synthetic_flags(flag_values=flags.FLAGS):
  """Defines the generator's flags; defaults come from `SyntheticConfig`."""
  d = synthetic.SyntheticConfig.__dataclass_fields__
  flags.DEFINE_enum("layout", d["layout"].default, ["sysu", "regdb", "llcm"],
                    "On-disk layout to write: SYSU-MM01, RegDB or LLCM.",
                    flag_values=flag_values)
  flags.DEFINE_string("output_dir", None, "Directory to write the data set into.",
                      flag_values=flag_values)
  flags.DEFINE_integer("num_ids", d["num_ids"].default, "Number of identities.",
                       flag_values=flag_values)
  flags.DEFINE_integer("seed", d["seed"].default,
                       "Seed; the data set is a pure function of the flags.",
                       flag_values=flag_values)
  flags.DEFINE_integer("min_images", d["min_images"].default,
                       "SYSU and LLCM layouts: fewest images per (camera, identity).",
                       flag_values=flag_values)
  flags.DEFINE_integer("max_images", d["max_images"].default,
                       "SYSU and LLCM layouts: most images per (camera, identity).",
                       flag_values=flag_values)
  flags.DEFINE_integer("image_height", d["image_height"].default,
                       "SYSU and LLCM layouts: mean crop height in pixels (crops vary about "
                       "+-12% in height, width 0.42-0.55 of height).",
                       flag_values=flag_values)
  flags.DEFINE_bool("like_sysu_test", d["like_sysu_test"].default,
                    "SYSU layout: the test split has the real SYSU-MM01 test set's 96 "
                    "identities (their ids), cameras and per-(camera, identity) image "
                    "counts, read from the official split files, so that the official "
                    "rand_perm_cam.mat fits; --num_ids counts them.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_workers", d["num_workers"].default,
                       "Processes that render in parallel.", flag_values=flag_values)
  flags.DEFINE_bool("overwrite", d["overwrite"].default,
                    "Replace output_dir if it exists.", flag_values=flag_values)
  flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def synthetic_config_from_flags(flag_values=flags.FLAGS) -> synthetic.SyntheticConfig:
  """The `SyntheticConfig` of the parsed flags."""
  return common.config_from_flags(synthetic.SyntheticConfig, flag_values)
