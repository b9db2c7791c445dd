"""Flags of the experiment runners (`python -m jsia_tf.experiments.ablation`,
`python -m jsia_tf.experiments.regdb`, `python -m jsia_tf.experiments.sweep`)."""

from absl import flags

from flags import common
from jsia_tf import config as config_lib
from jsia_tf import errors


def parse_rows(text: str, flag: str = "rows") -> tuple:
  """"1-6", "1,2,4" or "1-3,6" -> (1, ...); a clear error otherwise (rows of a
  table, RegDB trials)."""
  rows = []
  try:
    for part in filter(None, (p.strip() for p in text.split(","))):
      if "-" in part:
        first, last = (int(x) for x in part.split("-"))
        if first > last:
          raise ValueError(part)
        rows += range(first, last + 1)
      else:
        rows.append(int(part))
  except ValueError:
    raise errors.ConfigError(f"--{flag}={text!r} is invalid: expected numbers such "
                             "as 1-6 or 1,2,4") from None
  return tuple(rows)


def define_ablation_flags(flag_values=flags.FLAGS):
  """Defines the Table 3 runner's flags; defaults come from `AblationConfig`."""
  d = config_lib.AblationConfig()
  flags.DEFINE_string("rows", f"{min(d.rows)}-{max(d.rows)}", "Rows of Table 3: 1-8, "
                      "1,2,4, ...", flag_values=flag_values)
  flags.DEFINE_integer("seeds", d.seeds, "Runs per row, with --seed=0 .. N-1.",
                       flag_values=flag_values)
  flags.DEFINE_string("output_dir", d.output_dir, "Where every run's workdir, "
                      "ablation.md and ablation.json go (and TensorBoard's HParams "
                      "dashboard reads).", flag_values=flag_values)
  flags.DEFINE_string("data_dir", d.data_dir, "A SYSU-MM01-layout set; empty: the "
                      "generated demo set.", flag_values=flag_values)
  _define_run_flags(flag_values, d.preset)


def _define_run_flags(flag_values, preset: str):
  """The flags every runner passes on to each of its runs (its config's fields of
  these names): the preset, the schedule (0: the preset's) and more train flags."""
  flags.DEFINE_enum("preset", preset, list(config_lib.TRAIN_PRESETS), "Model preset "
                    "of every run.", flag_values=flag_values)
  flags.DEFINE_integer("warmup_steps", 0, "Warm-up steps per run; 0: the preset's.",
                       flag_values=flag_values)
  flags.DEFINE_integer("joint_steps", 0, "Joint steps per run; 0: the preset's.",
                       flag_values=flag_values)
  flags.DEFINE_list("train_flags", [], "More flags of python -m jsia_tf.train for every "
                    "run, comma-separated: --train_flags=--batch_p=4,--mixed_precision="
                    "bfloat16", flag_values=flag_values)


def ablation_config_from_flags(flag_values=flags.FLAGS) -> config_lib.AblationConfig:
  """The `AblationConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.AblationConfig, flag_values,
                                  rows=parse_rows(flag_values.rows))


def define_regdb_flags(flag_values=flags.FLAGS):
  """Defines the Table 2 (RegDB) runner's flags; defaults from `RegdbExperimentConfig`."""
  d = config_lib.RegdbExperimentConfig(data_dir="defaults")
  flags.DEFINE_string("data_dir", "", "The RegDB-layout set (python -m jsia_tf.generate "
                      "--layout=regdb makes one).", flag_values=flag_values)
  flags.DEFINE_string("trials", f"{min(d.trials)}-{max(d.trials)}", "RegDB trials, one "
                      "model each: 1-10, 1,2, ...", flag_values=flag_values)
  flags.DEFINE_string("output_dir", d.output_dir, "Where every trial's workdir, regdb.md "
                      "and regdb.json go.", flag_values=flag_values)
  flags.DEFINE_integer("seed", d.seed, "Seed of every run.", flag_values=flag_values)
  _define_run_flags(flag_values, d.preset)


def regdb_config_from_flags(flag_values=flags.FLAGS) -> config_lib.RegdbExperimentConfig:
  """The `RegdbExperimentConfig` of the parsed flags."""
  return common.config_from_flags(config_lib.RegdbExperimentConfig, flag_values,
                                  trials=parse_rows(flag_values.trials, "trials"))


def define_sweep_flags(flag_values=flags.FLAGS):
  """Defines the Fig. 5 sweep's flags; defaults come from `SweepConfig`."""
  flags.DEFINE_enum("param", "lambda_il", list(config_lib.SWEEP_PARAMS), "The swept "
                    "parameter.", flag_values=flag_values)
  flags.DEFINE_list("values", [], "Its values, e.g. 0,0.001,0.01,0.1,1.",
                    flag_values=flag_values)
  flags.DEFINE_integer("seeds", 1, "Runs per value, with --seed=0 .. N-1.",
                       flag_values=flag_values)
  flags.DEFINE_string("output_dir", "", "Where the runs, sweep.md, sweep.json and "
                      "sweep.png go; empty: runs/sweep_<param>.", flag_values=flag_values)
  flags.DEFINE_string("data_dir", "", "A SYSU-MM01-layout set; empty: the generated "
                      "demo set.", flag_values=flag_values)
  _define_run_flags(flag_values, config_lib.SweepConfig.preset)


def sweep_config_from_flags(flag_values=flags.FLAGS) -> config_lib.SweepConfig:
  """The `SweepConfig` of the parsed flags."""
  try:
    values = tuple(float(v) for v in flag_values["values"].value)
  except ValueError:
    raise errors.ConfigError(f"--values={','.join(flag_values['values'].value)} is "
                             "invalid: expected numbers such as 0,0.01,0.1,1") from None
  return common.config_from_flags(config_lib.SweepConfig, flag_values, values=values)
