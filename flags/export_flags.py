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
  flags.DEFINE_string("export_dir", "", "The model base path for TF Serving; each "
                      "export is a numbered version in it. Empty: WORKDIR/export.",
                      flag_values=flag_values)
  flags.DEFINE_integer("version", 0, "Version number (subdirectory) to write; 0: one "
                       "above the newest.", flag_values=flag_values)
  flags.DEFINE_string("umask", config_lib.ExportConfig.umask, "Permission bits the "
                      "export's files and folders do not get, in octal as umask(1): "
                      "022 gives folders 0755 and files 0644, readable by a server "
                      "running as another user.", flag_values=flag_values)


def export_config_from_flags(flag_values=flags.FLAGS) -> config_lib.ExportConfig:
  """The `ExportConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.ExportConfig, flag_values)
