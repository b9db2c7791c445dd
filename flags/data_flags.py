"""Flags naming a data set on disk, its input pipeline, and its TFRecord conversion."""

from absl import flags

from flags import common
from jsia_tf import config as config_lib

_D = config_lib.DataConfig.__dataclass_fields__


def define_dataset_flags(flag_values=flags.FLAGS):
  """--dataset, --data_dir, --trial: which data set, where, which RegDB trial."""
  flags.DEFINE_enum("dataset", _D["dataset"].default, list(config_lib.DATASETS),
                    "Data set layout: sysu (SYSU-MM01) or regdb (RegDB).",
                    flag_values=flag_values)
  flags.DEFINE_string("data_dir", _D["data_dir"].default,
                      "Root of the data set in its original layout.",
                      flag_values=flag_values)
  flags.DEFINE_integer("trial", _D["trial"].default, "RegDB trial (1..10).",
                       flag_values=flag_values)


def define_input_flags(flag_values=flags.FLAGS):
  """Flags of the P x K training pipeline (image size, batch, augmentation)."""
  flags.DEFINE_string("tfrecord_dir", _D["tfrecord_dir"].default,
                      "Read training images from the TFRecords of "
                      "tools/build_tfrecords.py in this directory instead of the "
                      "image files of --data_dir.", flag_values=flag_values)
  flags.DEFINE_integer("image_height", _D["image_height"].default,
                       "Height images are resized to.", flag_values=flag_values)
  flags.DEFINE_integer("image_width", _D["image_width"].default,
                       "Width images are resized to.", flag_values=flag_values)
  flags.DEFINE_integer("batch_p", _D["batch_p"].default,
                       "Identities per batch (P); a multiple of the replica count.",
                       flag_values=flag_values)
  flags.DEFINE_integer("batch_k", _D["batch_k"].default,
                       "Images per identity and modality (K).", flag_values=flag_values)
  flags.DEFINE_bool("flip", _D["flip"].default, "Random horizontal flip.",
                    flag_values=flag_values)
  flags.DEFINE_integer("pad_crop", _D["pad_crop"].default,
                       "Zero padding (pixels) before a random crop; 0 = off.",
                       flag_values=flag_values)
  flags.DEFINE_float("random_erasing", _D["random_erasing"].default,
                     "Probability of random erasing; 0 = off.", flag_values=flag_values)
  flags.DEFINE_integer("seed", _D["seed"].default, "Seed of every random draw.",
                       flag_values=flag_values)


def data_config_from_flags(flag_values=flags.FLAGS, **overrides) -> config_lib.DataConfig:
  """The `DataConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.DataConfig, flag_values, **overrides)


def define_tfrecord_flags(flag_values=flags.FLAGS):
  """Flags of tools/build_tfrecords.py beyond the data set ones."""
  flags.DEFINE_string("output_dir", None, "Directory for the shards and manifest.json.",
                      flag_values=flag_values)
  flags.DEFINE_bool("skip_corrupt", False,
                    "Leave out unreadable or corrupt images (and report how many) "
                    "instead of stopping at the first one.", flag_values=flag_values)
  flags.DEFINE_integer("images_per_shard", 2000, "Images per TFRecord shard.",
                       flag_values=flag_values)
  flags.mark_flag_as_required("output_dir", flag_values=flag_values)
