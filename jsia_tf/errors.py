"""Errors whose message is written for the user.

Entry points catch `JsiaError`, print its message and exit non-zero, so every message
must name the file, flag or value at fault and say what was expected.
"""


class JsiaError(Exception):
  """Base class of errors that are reported to the user as a one-line message."""


class ConfigError(JsiaError, ValueError):
  """A flag or config value is invalid; the message names the flag and the value."""


class DataError(JsiaError, ValueError):
  """A data set on disk is missing, malformed or not of the expected layout."""


class TrainingError(JsiaError, RuntimeError):
  """Training cannot go on (a loss became NaN or Inf); the message names the term,
  the step and the checkpoint that was kept."""


def cause(e: BaseException) -> str:
  """The short cause of an OSError ("No space left on device") or a TensorFlow
  OpError (its message), for an error message that names the path itself."""
  return getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)


class CheckpointError(JsiaError, RuntimeError):
  """No checkpoint of a run can be read; the message lists each one tried and why."""


class OutputError(JsiaError, RuntimeError):
  """A result could not be written (disk full, permissions, a folder in the way);
  the message names the path, and nothing half-written is left there."""
