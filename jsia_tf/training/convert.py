"""A jsia_tf training workdir from a checkpoint of the authors' PyTorch code, for
`python -m jsia_tf.evaluate --checkpoint` and `python -m jsia_tf.export`.

Their files (`Base.save_model`): `model-{i}_{epoch}.pkl` for i = 0..3 (read with
torch), or the same state dicts as `.safetensors` (no torch needed). The workdir's
model is the `paper` preset with lambda_v = lambda_lr = lambda_ui = 0, the AAAI
model their code implements; V and the stripe classifiers, which their code does
not have, keep their initialisation (the console and `authors_checkpoint.json` say
so). The optimizers start fresh: their files hold no optimizer state.
"""

import json
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import files
from jsia_tf.models import authors
from jsia_tf.models import feature
from jsia_tf.models import torchvision_resnet
from jsia_tf.training import checkpoints
from jsia_tf.training import experiment
from jsia_tf.training import trainer as trainer_lib

EXTENSIONS = (".pkl", ".pth", ".safetensors")
RECORD_FILE = "authors_checkpoint.json"
_FILE = re.compile(r"^model-([0-3])_(\d+)(" + "|".join(map(re.escape, EXTENSIONS)) + r")$")


def find_files(checkpoint_dir: str, epoch: Optional[int] = None) -> Tuple[int, List[str]]:
  """(epoch, the four paths in `authors.FILES` order) of the newest epoch (or
  `epoch`) for which all four files are in `checkpoint_dir`."""
  if not os.path.isdir(checkpoint_dir):
    raise errors.ConfigError(f"--checkpoint_dir={checkpoint_dir}: not a directory")
  found: Dict[int, Dict[int, str]] = {}
  for name in sorted(os.listdir(checkpoint_dir)):
    match = _FILE.match(name)
    if match:
      found.setdefault(int(match.group(2)), {})[int(match.group(1))] = os.path.join(
          checkpoint_dir, name)
  complete = sorted(e for e, files in found.items() if len(files) == 4)
  expected = (f"the authors' model-0_E.pkl .. model-3_E.pkl (generator_rgb, "
              f"generator_ir, discriminator_rgb, discriminator_ir of epoch E; or "
              f".safetensors)")
  if epoch is not None:
    if epoch not in complete:
      have = sorted(found.get(epoch, {}))
      raise errors.ConfigError(
          f"--checkpoint_dir={checkpoint_dir}: epoch {epoch} has files "
          f"{['model-%d' % i for i in have] or 'none'}; expected all of {expected}. "
          f"Complete epochs: {complete or 'none'}")
  elif not complete:
    raise errors.ConfigError(f"--checkpoint_dir={checkpoint_dir}: no complete epoch; "
                             f"expected {expected}")
  epoch = complete[-1] if epoch is None else epoch
  return epoch, [found[epoch][i] for i in range(4)]


def experiment_config(workdir: str, data: Optional[config_lib.DataConfig] = None
                      ) -> experiment.ExperimentConfig:
  """The paper preset as their code implements it (no V, no LR, no UI term)."""
  model = config_lib.model_config("paper")
  schedule = {k: v for k, v in config_lib.TRAIN_PRESETS["paper"].items()
              if k not in ("batch_p", "batch_k")}
  data = data or config_lib.DataConfig()
  return experiment.ExperimentConfig(
      data=config_lib.DataConfig(**{**config_lib.to_dict(data),
                                    "image_height": model.image_height,
                                    "image_width": model.image_width}),
      model=model, loss=config_lib.LossWeights(lambda_v=0.0, lambda_lr=0.0, lambda_ui=0.0),
      train=config_lib.TrainConfig(workdir=workdir, **schedule))


def convert(checkpoint_dir: str, workdir: str, num_classes: Optional[int] = None,
            epoch: Optional[int] = None, data: Optional[config_lib.DataConfig] = None,
            log: Callable[[str], None] = print) -> str:
  """Writes `workdir` (config.json, checkpoints/ckpt-0, authors_checkpoint.json)
  from their checkpoint; returns the checkpoint prefix. Refuses a workdir that
  already holds checkpoints."""
  epoch, paths = find_files(checkpoint_dir, epoch)
  if checkpoints.has_checkpoint_files(trainer_lib.checkpoint_dir(workdir)):
    raise errors.ConfigError(f"--workdir={workdir} already holds checkpoints; give a "
                             f"new directory")
  log(f"reading epoch {epoch}: " + ", ".join(os.path.basename(p) for p in paths))
  states = [torchvision_resnet.read_state_dict(p) for p in paths]
  classifier = authors.ENCODER + "classifier.classifier.weight"
  if classifier not in states[0]:
    raise errors.ConfigError(f"{paths[0]}: has no {classifier}; is it the authors' "
                             f"generator_rgb (model-0)?")
  theirs = int(states[0][classifier].shape[0])
  if num_classes is not None and num_classes != theirs:
    raise errors.ConfigError(f"--num_classes={num_classes}, but {paths[0]}'s classifier "
                             f"has {theirs} identities")
  cfg = experiment_config(workdir, data)
  trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), theirs)
  authors.load_state(trainer.model, states, paths)
  experiment.prepare_workdir(cfg)
  prefix = trainer.checkpoint_manager(trainer_lib.checkpoint_dir(workdir)).save(
      checkpoint_number=0)
  model = trainer.model
  untouched = {"E_v": feature.count_params(model.E_v), "D_v": feature.count_params(model.D_v),
               "stripe classifiers (stripe_bn, C_n)": sum(
                   feature.count_params(layer) for layer in model.F.stripe_bn + model.F.C_n)}
  mapped = sum(len(names) for names in authors.file_names(model))
  record = {"checkpoint_dir": os.path.abspath(checkpoint_dir), "epoch": epoch,
            "files": [os.path.abspath(p) for p in paths], "num_classes": theirs,
            "tensors_mapped": mapped, "left_at_initialisation": untouched,
            "not_mapped_on_purpose": authors.unused_names(model), "checkpoint": prefix}
  files.atomic_write(os.path.join(workdir, RECORD_FILE),
                     lambda f: json.dump(record, f, indent=2))
  log(f"mapped {mapped} tensors onto the paper preset ({theirs} identities); left at "
      f"initialisation (not in the authors' model): " +
      ", ".join(f"{k} ({v:,} weights)" for k, v in untouched.items()))
  log(f"wrote {prefix} and {os.path.join(workdir, RECORD_FILE)}")
  return prefix
