"""Helpers shared by the flag groups."""

import dataclasses

from absl import flags


def config_from_flags(cls, flag_values=flags.FLAGS, **overrides):
  """Builds the dataclass `cls` from the flags named like its fields.

  Fields with no flag of that name keep their defaults; `overrides` win over flags.
  Validation happens in `cls.__post_init__`, whose errors name the flag.
  """
  values = {}
  for field in dataclasses.fields(cls):
    if field.name in flag_values:
      value = flag_values[field.name].value
      values[field.name] = tuple(value) if isinstance(value, list) else value
  values.update(overrides)
  return cls(**values)
