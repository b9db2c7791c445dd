"""Flags of `python -m jsia_tf.export`."""

from absl import flags

from flags import common
from jsia_tf import config as config_lib


def define_export_flags(flag_values=flags.FLAGS):
  """Defines the exporter's flags; defaults come from `ExportConfig`."""
  flags.DEFINE_string("workdir", "", "The training workdir whose newest checkpoint "
                      "is exported.", flag_values=flag_values)
  flags.DEFINE_string("checkpoint", "", "One checkpoint prefix to export instead "
                      "(e.g. WORKDIR/checkpoints/ckpt-500).", flag_values=flag_values)
  flags.DEFINE_string("saved_model", "", "Instead of a run: an export version "
                      "(EXPORT_DIR/N, or EXPORT_DIR for its newest) to add the "
                      "--format formats to.", flag_values=flag_values)
  flags.DEFINE_string("export_dir", "", "The model base path for TF Serving; each "
                      "export is a numbered version in it. Empty: WORKDIR/export.",
                      flag_values=flag_values)
  flags.DEFINE_integer("version", 0, "Version number (subdirectory) to write; 0: one "
                       "above the newest.", flag_values=flag_values)
  flags.DEFINE_string("umask", config_lib.ExportConfig.umask, "Permission bits the "
                      "export's files and folders do not get, in octal as umask(1): "
                      "022 gives folders 0755 and files 0644, readable by a server "
                      "running as another user.", flag_values=flag_values)
  flags.DEFINE_list("format", list(config_lib.ExportConfig.format), "Formats to write, "
                    f"comma-separated, of {', '.join(config_lib.EXPORT_FORMATS)}. The "
                    "SavedModel is always written; the others go into its version "
                    "directory (VERSION/onnx/, ...), each checked against it on real "
                    "test images.", flag_values=flag_values)
  flags.DEFINE_string("data_dir", "", "Where the run's data set is, when not where its "
                      "config.json says: its test images check the other formats, "
                      "its training images calibrate int8.", flag_values=flag_values)
  flags.DEFINE_integer("probe_images", config_lib.ExportConfig.probe_images,
                       "Test images each other format is checked on (spread over the "
                       "split); 0: every test image.", flag_values=flag_values)
  flags.DEFINE_integer("calibration_images", config_lib.ExportConfig.calibration_images,
                       "Training images that calibrate the int8 formats.",
                       flag_values=flag_values)


def export_config_from_flags(flag_values=flags.FLAGS) -> config_lib.ExportConfig:
  """The `ExportConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.ExportConfig, flag_values)
