"""Flags of `python -m jsia_tf.train` beyond the data, model and loss groups."""

import dataclasses

from absl import flags

from flags import common
from flags import data_flags
from flags import model_flags
from jsia_tf import config as config_lib
from jsia_tf.training import experiment

_HELP = {
    "workdir": "Checkpoints, config.json, TensorBoard logs and the final evaluation; "
               "rerunning with the same workdir resumes.",
    "warmup_steps": "Steps of the warm-up stage (G and V only, E_sl frozen). Default: "
                    "the preset's (paper 20000, demo 100, tiny 20).",
    "joint_steps": "Steps of the joint stage (everything). Default: the preset's "
                   "(paper 10000, demo 500, tiny 40).",
    "gen_ids": "Identities of the batch that G, V and the IL/LR/UI losses run on (a "
               "sub-batch, as the authors'); 0: all. Default: the preset's (2).",
    "lr_g": "Adam lr of G and V.", "lr_dis": "Adam lr of the discriminators.",
    "lr_f": "Adam lr of F. Default: the preset's (paper and tiny 4.5e-4, demo 2e-3).",
    "beta1_g": "Adam beta_1 of G, V and the discriminators.",
    "beta1_f": "Adam beta_1 of F.", "beta2": "Adam beta_2 of every optimizer.",
    "weight_decay_g": "L2 weight decay (PyTorch Adam) of G, V and the discriminators.",
    "weight_decay_f": "L2 weight decay (PyTorch Adam) of F.",
    "lr_decay_at": "Fraction of the joint stage after which every lr is multiplied "
                   "by --lr_decay.",
    "lr_decay": "The lr factor of the end of the joint stage.",
    "strategy": "default (one device), mirrored (local GPUs, or --num_cpu_devices "
                "logical CPUs), multi_worker (from TF_CONFIG).",
    "num_cpu_devices": "With --strategy=mirrored and no GPU: replicas on this many "
                       "logical CPU devices.",
    "worker_timeout": "multi_worker: seconds a worker may send no heartbeat (dead, "
                      "hung or cut off) before the others stop with an error naming "
                      "it, instead of hanging.",
    "mixed_precision": "float16 (with loss scaling) or bfloat16; empty: float32.",
    "jit_compile": "XLA-compile the train step (single replica only); the losses "
                   "are the uncompiled step's.",
    "deterministic": "Deterministic TensorFlow ops (slower), for exact reruns; not "
                     "with --jit_compile.",
    "log_every": "Console line and TensorBoard scalars every N steps.",
    "image_every": "TensorBoard image grids and V's interpolation strip every N "
                   "steps; 0 = off.",
    "eval_every": "Evaluate on the test split every N steps (R1, mAP, mINP); 0 = off.",
    "checkpoint_every": "Checkpoint every N steps (and always at the end).",
    "keep_checkpoints": "Checkpoints kept.",
    "stop_at_step": "Stop at this step with a checkpoint (resume by rerunning); 0 = "
                    "run the whole schedule.",
    "flip_average": "Average each test embedding with its mirror's.",
    "align_trains_g": "Let the IL, LR and UI gradients reach G and V through the "
                      "generated images (the authors detach them: those terms train "
                      "F only).",
    "v_grad_to_content": "Let Eq. (10)'s gradient reach E_sl = E_i through the "
                         "content map M (default: stopped at M).",
    "lr_pairs": "Eq. (12)'s pairs: generated (each real image against its "
                "generated pair) or unpaired (against the real image of the other "
                "modality of the same identity; Table 3 row 8).",
}
_DEFAULT_NONE = ("warmup_steps", "joint_steps", "gen_ids", "lr_f")


def define_train_flags(flag_values=flags.FLAGS):
  """Every TrainConfig field as a flag, plus --dry_run and --num_classes."""
  for field in dataclasses.fields(config_lib.TrainConfig):
    default = None if field.name in _DEFAULT_NONE else field.default
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
              float: flags.DEFINE_float, str: flags.DEFINE_string}[field.type]
    define(field.name, default, _HELP[field.name], flag_values=flag_values)
  flags.DEFINE_bool("dry_run", False, "Build the model, print parameter counts and "
                    "output shapes of one forward pass, and exit.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_classes", 0, "Training identities for --dry_run; 0: "
                       "395 for sysu, 206 for regdb.", flag_values=flag_values)


def experiment_config_from_flags(flag_values=flags.FLAGS) -> experiment.ExperimentConfig:
  """The ExperimentConfig of the parsed flags. Without --data_dir / --tfrecord_dir
  the preset defaults to demo (the generated set), with them to paper; the image
  size, batch and schedule follow the preset unless their flags are given."""
  real_data = bool(flag_values.data_dir or flag_values.tfrecord_dir)
  if flag_values["preset"].present:
    preset = flag_values.preset
  else:
    preset = "paper" if real_data else "demo"
  sizes = {k: flag_values[k].value for k in ("image_height", "image_width")
           if flag_values[k].present}
  model = model_flags.model_config_from_flags(flag_values, preset=preset, **sizes)
  defaults = config_lib.TRAIN_PRESETS[preset]
  batch = {k: defaults[k] for k in ("batch_p", "batch_k") if not flag_values[k].present}
  data = data_flags.data_config_from_flags(flag_values, image_height=model.image_height,
                                           image_width=model.image_width, **batch)
  schedule = {k: defaults[k] if flag_values[k].value is None else flag_values[k].value
              for k in _DEFAULT_NONE}
  train = common.config_from_flags(config_lib.TrainConfig, flag_values, **schedule)
  return experiment.ExperimentConfig(data=data, model=model,
                                     loss=model_flags.loss_weights_from_flags(flag_values),
                                     train=train)


def define_all_flags(flag_values=flags.FLAGS):
  """Every flag of `python -m jsia_tf.train`: data set, input, model, losses, run."""
  data_flags.define_dataset_flags(flag_values)
  data_flags.define_input_flags(flag_values)
  model_flags.define_model_flags(flag_values)
  model_flags.define_loss_flags(flag_values)
  define_train_flags(flag_values)


def experiment_config_from_argv(argv) -> experiment.ExperimentConfig:
  """The ExperimentConfig that `python -m jsia_tf.train ARGV...` would run, parsed
  into private flag values (for runners of many runs; the global flags untouched)."""
  values = flags.FlagValues()
  define_all_flags(values)
  values(["train", *argv])
  return experiment_config_from_flags(values)
