"""Number-by-number parity of jsia_tf's training with the authors' PyTorch code.

  pip install -e .[parity]
  python tools/check_parity.py --authors_repo=DIR [--weights=resnet50-19c8e357.pth]
      [--batch_p=4 --batch_k=2 --gen_rows=4 --steps=5] [--sysu_dir=DIR]
      [--output_json=parity.json]

DIR is a clone of github.com/wangguanan/JSIA-ReID; nothing of it is copied into
jsia_tf. Their networks are built from DIR (offline: their Encoder's ImageNet
download is replaced by random or --weights initialisation), their weights are
copied into jsia_tf's paper preset with lambda_v = lambda_lr = lambda_ui = 0 (the
AAAI model they implement) by the checkpoint converter's mapping. Every comparison
runs twice, both sides in float64 (the pass/fail column, 1e-8 relative) and both
in float32 (informational):
  1. one joint step, optimizers not stepped: every output, loss term and parameter
     group's gradient;
  2. --steps joint steps in a row with every optimizer stepping (their Adam with
     weight decay, per-group lr and betas), a new batch each step: after each,
     every loss term, every parameter group's weights and every group of BN
     running statistics (informational after step 1: a difference carries on);
     each step after the first also from the same state on both sides (their
     weights, BN statistics and Adam moments after the step before loaded into
     jsia_tf), judged; then one warm-up step (G and discriminators) the same way;
  3. test time, after the joint steps: their `encoder(x, True, sl_enc=False)` in
     eval mode against `Trainer.embed`; their weights in a fresh jsia_tf model;
     their `Base.save_model` files through the converter, the extractor of
     `evaluate --checkpoint` and the SavedModel of `export` (float32, judged
     against their float64 features of the same weights);
  4. evaluation: both models with their weights after the joint steps embed the
     test split of --sysu_dir (default: a generated set in the real test set's
     shape) in float64 at 256x128, the size their Encoder resizes every input to;
     their `evaluate_sysymm01` on their features against
     `python -m jsia_tf.evaluate --perm_file=official` on ours, within 1e-6;
  5. every group's lr at the stage boundary and the decay point, their
     `lr_scheduler_step` against `Trainer.learning_rates`.
First, each side's float32 joint steps run alone in a process of their own (the tool
runs itself with --cost_side): the step's time and the process's peak memory.
The re-id batch is --batch_p identities x --batch_k images per modality at 256x128;
the G batch its first --gen_rows rows, downsampled as jsia_tf's forward pass does
(the same tensors go to theirs). Exit status 1 when a row is above its tolerance.

To run on a CPU, their CUDA defaults are redirected (`rgb2gray`, `norm`, `denorm`,
the label-smoothing loss). Where torchvision cannot be imported, a stand-in builds
torchvision's ResNet-50 module tree (`conv1`, `bn1`, `layer1.0.downsample.0`, ...)
so their `Encoder` gets the same network; the table's header says which was used.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import builtins
import contextlib
import functools
import gc
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from typing import Dict, List
import warnings

from absl import flags
import numpy as np

from jsia_tf import cli
from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import files
from jsia_tf import parity

FLAGS = flags.FLAGS
NUM_CLASSES = 395  # hard-coded in their Base (Encoder(395))
# Their main.py defaults.
THEIR_CONFIG = dict(learning_rate_reid=0.00045, weight_pixel_loss=0.01,
                    weight_gan_image=10.0, weight_gan_feature=1.0, milestones=[30])
REQUIRED_FILES = ("core/networks.py", "core/base.py", "core/train.py", "tools/__init__.py",
                  "tools/transforms2.py", "tools/loss.py")


def define_flags():
  """The tool's flags."""
  flags.DEFINE_string("authors_repo", None, "A clone of github.com/wangguanan/JSIA-ReID.")
  flags.DEFINE_string("weights", "", "torchvision's ResNet-50 ImageNet weights "
                      "(resnet50-19c8e357.pth, or .safetensors) for the trunk; default: "
                      "random initialisation.")
  flags.DEFINE_string("output_json", "", "Also write the table here as JSON.")
  flags.DEFINE_integer("seed", 0, "Seed of their initialisation and of the batches.")
  # float64 doubles every activation: the defaults fit both sides' float64 and
  # float32 runs in 24 GiB. Their main.py trains with 16 x 4 and 9 G rows.
  flags.DEFINE_integer("batch_p", 4, "Identities per re-id batch.")
  flags.DEFINE_integer("batch_k", 2, "Images per identity and modality.")
  flags.DEFINE_integer("gen_rows", 4, "Rows of the G batch (whole identities of the "
                       "re-id batch).")
  flags.DEFINE_integer("steps", 5, "Joint steps of the trajectory.")
  flags.DEFINE_float("their_perturbation", 0.0, "If > 0: their float64 trajectory "
                     "again, from initial weights moved by this much of each tensor's "
                     "norm in a random direction, against their own (informational "
                     "rows: how far their code moves from itself).")
  flags.DEFINE_string("sysu_dir", "", "The evaluation's data set: a SYSU-MM01 layout "
                      "whose test split has the real test set's shape (the real "
                      "SYSU-MM01, or python -m jsia_tf.generate --layout=sysu "
                      "--like_sysu_test); empty: the tool generates one; 'none': no "
                      "evaluation section.")
  flags.DEFINE_enum("cost_side", "", ["", "ours", "theirs"], "Internal: run one side's "
                    "float32 joint steps alone and print their time and this process's "
                    "peak memory as JSON (the tool runs itself so for each side).")
  flags.mark_flag_as_required("authors_repo")


# ---- their code, offline and on a CPU ----------------------------------------------


def import_torch():
  """torch, or a ConfigError that names the extra to install."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise errors.ConfigError("tools/check_parity.py needs torch: pip install -e "
                             ".[parity]") from None
  return torch


def standin_resnet50(torch):
  """torchvision's ResNet-50 module tree (same module names, strides, paddings),
  randomly initialised: what `torchvision.models.resnet50()` builds."""
  nn = torch.nn

  class Bottleneck(nn.Module):
    """1x1, 3x3 (the stride), 1x1 x4, with a projected shortcut when asked."""

    def __init__(self, inplanes, planes, stride, downsample):
      super().__init__()
      self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(planes * 4)
      self.relu = nn.ReLU(inplace=True)
      self.downsample = downsample

    def forward(self, x):
      shortcut = x if self.downsample is None else self.downsample(x)
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.relu(self.bn2(self.conv2(y)))
      return self.relu(self.bn3(self.conv3(y)) + shortcut)

  class ResNet50(nn.Module):
    """The module tree and initialisation of torchvision.models.resnet50."""

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      inplanes = 64
      for i, (planes, blocks, stride) in enumerate(
          zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)), start=1):
        layers = []
        for b in range(blocks):
          down = None
          if b == 0:
            down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * 4))
          layers.append(Bottleneck(inplanes, planes, stride if b == 0 else 1, down))
          inplanes = planes * 4
        setattr(self, f"layer{i}", nn.Sequential(*layers))
      self.avgpool = nn.AdaptiveAvgPool2d(1)
      self.fc = nn.Linear(2048, 1000)
      for m in self.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
          nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
          nn.init.ones_(m.weight)
          nn.init.zeros_(m.bias)

  return ResNet50()


def install_torchvision(torch) -> str:
  """Makes `torchvision.models.resnet50(pretrained=True)` build offline; returns
  what provides it."""
  try:
    import torchvision  # pylint: disable=import-outside-toplevel
    import torchvision.models  # pylint: disable=import-outside-toplevel
    original = torchvision.models.resnet50
    torchvision.models.resnet50 = lambda pretrained=False, **kwargs: original(weights=None)
    return f"torchvision {torchvision.__version__} (resnet50 built without its download)"
  except Exception as e:  # pylint: disable=broad-except
    reason = (str(e).splitlines() or [type(e).__name__])[-1]
  for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
    del sys.modules[name]
  package = types.ModuleType("torchvision")
  package.models = types.ModuleType("torchvision.models")
  package.models.resnet50 = lambda pretrained=False, **kwargs: standin_resnet50(torch)
  sys.modules["torchvision"], sys.modules["torchvision.models"] = package, package.models
  return f"the tool's stand-in for torchvision.models.resnet50 (torchvision: {reason})"


def check_repo(repo: str) -> None:
  """A ConfigError unless `repo` holds their modules."""
  missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(repo, f))]
  if not os.path.isdir(repo) or missing:
    raise errors.ConfigError(
        f"--authors_repo={repo}: not a clone of github.com/wangguanan/JSIA-ReID "
        f"(missing {', '.join(missing) if os.path.isdir(repo) else 'the directory'})")


def import_authors(repo: str, torch):
  """Their core.networks, core.base, core.train and tools, imported from `repo`."""
  check_repo(repo)
  repo = os.path.abspath(repo)
  for name in [n for n in sys.modules if n in ("core", "tools") or
               n.startswith(("core.", "tools."))]:
    del sys.modules[name]
  sys.path.insert(0, repo)
  # core/__init__ also imports their data loaders, test and visualisation code
  # (torchvision.transforms, image files): the step needs networks, base, train.
  core = types.ModuleType("core")
  core.__path__ = [os.path.join(repo, "core")]
  sys.modules["core"] = core
  modules = types.SimpleNamespace()
  try:
    modules.tools = importlib.import_module("tools")
    for name in ("networks", "base", "train"):
      setattr(modules, name, importlib.import_module(f"core.{name}"))
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ConfigError(f"--authors_repo={repo}: importing their modules failed: "
                             f"{type(e).__name__}: {e}") from None
  # Their helpers put tensors on CUDA by default.
  cpu = torch.device("cpu")
  modules.networks.rgb2gray = functools.partial(modules.tools.rgb2gray, cuda=False)
  modules.networks.norm = functools.partial(modules.tools.norm, device=cpu)
  modules.networks.denorm = functools.partial(modules.tools.denorm, device=cpu)
  return modules


def build_theirs(modules, torch, seed: int, weights: str):
  """Their Base (networks, optimizers, criteria) on the CPU, without its loaders."""
  torch.manual_seed(seed)
  base = modules.base.Base.__new__(modules.base.Base)
  base.config = types.SimpleNamespace(**THEIR_CONFIG)
  base.device = torch.device("cpu")
  base._init_networks()  # pylint: disable=protected-access
  base._init_optimizers()  # pylint: disable=protected-access
  base._init_creterion()  # pylint: disable=protected-access
  base.ide_creiteron.use_gpu = False
  if weights:
    # pylint: disable=import-outside-toplevel
    from jsia_tf.models import authors
    from jsia_tf.models import torchvision_resnet
    state = torchvision_resnet.read_state_dict(weights)
    trunk = {authors.trunk_name(k)[len(authors.ENCODER):]: torch.from_numpy(np.asarray(v))
             for k, v in state.items() if not k.startswith(("fc.",)) and
             not k.endswith("num_batches_tracked")}
    own = base.encoder.state_dict()
    wrong = sorted(k for k in trunk if k not in own or tuple(own[k].shape) != tuple(
        trunk[k].shape))
    absent = sorted(k for k in own if k.startswith("resnet_conv") and k not in trunk
                    and not k.endswith("num_batches_tracked"))
    if wrong or absent:
      raise errors.ConfigError(f"--weights={weights}: not torchvision's ResNet-50 "
                               f"(unexpected {wrong[:4]}, missing {absent[:4]})")
    base.encoder.load_state_dict(trunk, strict=False)
  return base


def person_batch(seed: int, p: int, k: int):
  """A re-id batch: p identities x k images per modality of the generated data
  set's people (RGB camera 1, IR camera 3), in [-1, 1], and their labels. People,
  not noise: distinct identities keep the triplet's hardest positive and negative
  clear of near-ties."""
  # pylint: disable=import-outside-toplevel
  from jsia_tf.data import layouts
  from jsia_tf.data import synthetic
  rng = np.random.default_rng(seed)
  cameras = [synthetic.make_camera(1, layouts.RGB, False, False, seed),
             synthetic.make_camera(3, layouts.IR, False, False, seed)]
  pids = rng.choice(NUM_CLASSES, p, replace=False)
  images = [[], []]
  for pid in pids:
    ident = synthetic.make_identity(int(pid), seed)
    for m, camera in enumerate(cameras):
      for _ in range(k):
        image = synthetic.render_image(ident, camera, 256, 128, rng)
        images[m].append(image.astype(np.float64) / 127.5 - 1.0)
  return [np.stack(x) for x in images], np.repeat(pids, k).astype(np.int64)


class _Iter:
  """Their IterLoader's interface, always giving one batch."""

  def __init__(self, images, ids):
    self.batch = (images, ids, ids, None)

  def next_one(self):
    return self.batch


# Their train_an_epoch's switches per stage (main.py): the G warm-up trains G and
# the discriminators only.
STAGE_FLAGS = {"joint": dict(train_gan=True, train_reid=True, train_pixel=True,
                             optimize_sl_enc=True),
               "warmup": dict(train_gan=True, train_reid=False, train_pixel=False,
                              optimize_sl_enc=False)}


def _plain(name: str) -> str:
  return name[len("module."):] if name.startswith("module.") else name


class Theirs:
  """Their Base on the CPU, reset to the same initial weights before every run."""

  def __init__(self, modules, torch, seed: int, weights: str, keep_initial: bool = True):
    self.modules, self.torch = modules, torch
    self.base = build_theirs(modules, torch, seed, weights)
    self.initial = self.state() if keep_initial else None

  def state(self) -> List[Dict[str, np.ndarray]]:
    """Their four state dicts (weights and BN statistics), numpy copies."""
    return [{_plain(k): v.detach().numpy().copy() for k, v in m.state_dict().items()}
            for m in self.base.model_list]

  def load(self, states) -> None:
    """`states` (as `state()` gives them) into their modules, in the modules' dtype."""
    for module, state in zip(self.base.model_list, states):
      module.module.load_state_dict({k: self.torch.from_numpy(np.asarray(v))
                                     for k, v in state.items()})

  def reset(self, dtype, config=None) -> None:
    """The initial weights in `dtype`, fresh optimizers and lr schedulers."""
    self.load(self.initial)
    for module in self.base.model_list:
      module.to(dtype)
    self.base.config = types.SimpleNamespace(**(config or THEIR_CONFIG))
    self.base._init_optimizers()  # pylint: disable=protected-access
    for optimizer in self.optimizers():
      optimizer.zero_grad(set_to_none=True)

  def optimizers(self):
    b = self.base
    return (b.sl_enc_optimizer, b.gen_optimizer, b.dis_optimizer, b.il_enc_optimizer)

  def iteration(self, gen, reid, labels_gen, labels_reid, stage: str,
                step_optimizers: bool, epoch: int = 0,
                capture: bool = True) -> Dict[str, Dict[str, np.ndarray]]:
    """One iteration of their `train_an_epoch` in `stage`: {function: its tensor
    locals at return (numpy)}; nothing read (an empty dict) without `capture`."""
    torch, base = self.torch, self.base
    dtype = next(base.encoder.parameters()).dtype
    to = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype)
    ids_gen, ids_reid = torch.from_numpy(labels_gen), torch.from_numpy(labels_reid)
    loaders = types.SimpleNamespace(
        gan_rgb_train_iter=_Iter(to(gen[0]), ids_gen),
        gan_ir_train_iter=_Iter(to(gen[1]), ids_gen),
        reid_rgb_train_iter=_Iter(to(reid[0]), ids_reid),
        reid_ir_train_iter=_Iter(to(reid[1]), ids_reid))
    if not step_optimizers:
      for optimizer in self.optimizers():
        optimizer.step = lambda *args, **kwargs: None  # the gradients are the result
    train = self.modules.train
    train.range = lambda n: builtins.range(1)  # their loop: one iteration
    wanted = {train.train_gan_an_iter.__code__: "gan",
              train.train_pixel_an_iter.__code__: "pixel",
              train.train_reid_an_iter.__code__: "reid"}
    captured = {}

    def profile(frame, event, arg):
      del arg
      if event == "return" and frame.f_code in wanted:
        # numpy copies: holding the tensors would keep their autograd graphs alive.
        captured[wanted[frame.f_code]] = {
            k: v.detach().numpy().copy() for k, v in frame.f_locals.items()
            if isinstance(v, torch.Tensor)}

    sys.setprofile(profile if capture else None)
    try:
      with warnings.catch_warnings(), _torch_default_dtype(torch, dtype):
        warnings.simplefilter("ignore")  # deprecations of the torch API they call
        train.train_an_epoch(base.config, loaders, base, epoch, **STAGE_FLAGS[stage])
    finally:
      sys.setprofile(None)
      del train.range
    return captured

  def moments(self) -> List[Dict[str, tuple]]:
    """Adam's state of each of their four modules: {name: (exp_avg, exp_avg_sq,
    step)} of every parameter an optimizer has stepped (numpy copies)."""
    by_parameter = {}
    for optimizer in self.optimizers():
      for parameter, state in optimizer.state.items():
        if "exp_avg" in state:
          by_parameter[id(parameter)] = (state["exp_avg"].detach().numpy().copy(),
                                         state["exp_avg_sq"].detach().numpy().copy(),
                                         int(state["step"]))
    return [{_plain(n): by_parameter[id(p)] for n, p in module.named_parameters()
             if id(p) in by_parameter} for module in self.base.model_list]

  def gradients(self) -> List[Dict[str, np.ndarray]]:
    """{name: gradient} of each of their four modules, after an iteration."""
    return [{_plain(n): p.grad.detach().numpy().copy()
             for n, p in module.named_parameters() if p.grad is not None}
            for module in self.base.model_list]

  def discriminator_outputs(self, gan) -> Dict[str, np.ndarray]:
    """Every discriminator output on the iteration's real G images and fakes."""
    out = {}
    for m, real, fake in (("rgb", "rgb_images", "fake_rgb_images"),
                          ("ir", "ir_images", "fake_ir_images")):
      with self.torch.no_grad():
        for kind, key in (("real", real), ("fake", fake)):
          outs = getattr(self.base, f"discriminator_{m}").module(
              self.torch.from_numpy(gan[key]))
          for s, o in enumerate(outs):
            out[f"Dis_{m}({kind}) scale {s}"] = o.numpy().copy()
    return out

  def embed(self, images) -> np.ndarray:
    """Their test path (core/test.py): every module in eval mode, then
    `encoder(x, True, sl_enc=False)`'s BN-neck features, L2-normalised as
    jsia_tf's embeddings are (the ranking is the same)."""
    torch, base = self.torch, self.base
    dtype = next(base.encoder.parameters()).dtype
    base.set_eval()
    try:
      with torch.no_grad(), _torch_default_dtype(torch, dtype):
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(dtype)
        _, features, _ = base.encoder(x, True, sl_enc=False)
    finally:
      base.set_train()
    f = features.numpy().astype(np.float64)
    return f / np.linalg.norm(f, axis=1, keepdims=True)

  def feature_gain(self, images, rel: float, draws: int, seed: int) -> float:
    """How far their test features move when their weights move: the mean over
    `draws` random directions of the features' relative change (`tensor_rel`) when
    every tensor of their state moves by `rel` of its norm. Their weights are put
    back after."""
    state, reference = self.state(), self.embed(images)
    rng = np.random.default_rng(seed)
    changes = []
    try:
      for _ in range(draws):
        self.load(parity.perturbed_state(state, rel, rng))
        changes.append(parity.tensor_rel(self.embed(images), reference))
    finally:
      self.load(state)
    return float(np.mean(changes))

  def embed_in_float64(self, images) -> np.ndarray:
    """`embed` with their modules in float64 and the same weights (float32 values are
    exact in float64); the modules' dtype is put back after."""
    dtype = next(self.base.encoder.parameters()).dtype
    try:
      for module in self.base.model_list:
        module.to(self.torch.float64)
      return self.embed(images)
    finally:
      for module in self.base.model_list:
        module.to(dtype)

  def save_model(self, directory: str, epoch: int) -> None:
    """Their `Base.save_model(epoch)`: model-{0..3}_{epoch}.pkl in `directory`."""
    self.base.config.save_models_path = directory
    self.base.config.max_save_model_num = 0
    self.base.save_model(epoch)

  def learning_rates(self, epoch: int) -> Dict[str, float]:
    """The lr of each of their optimizers after `lr_scheduler_step(epoch)`."""
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # step(epoch) is deprecated in torch
      self.base.lr_scheduler_step(epoch)
    b = self.base
    return {"sl_enc": b.sl_enc_optimizer.param_groups[0]["lr"],
            "gen": b.gen_optimizer.param_groups[0]["lr"],
            "dis": b.dis_optimizer.param_groups[0]["lr"],
            "il_enc": b.il_enc_optimizer.param_groups[0]["lr"]}


@contextlib.contextmanager
def _torch_default_dtype(torch, dtype):
  """torch's default dtype `dtype` inside: their helpers build their constants
  with `torch.tensor(list)` (the ImageNet mean and std, the grey weights), float32
  by default, which would round them inside a float64 step."""
  previous = torch.get_default_dtype()
  torch.set_default_dtype(dtype)
  try:
    yield
  finally:
    torch.set_default_dtype(previous)


@contextlib.contextmanager
def _policy(dtype: str):
  """Keras's global dtype policy `dtype` ("float32" or "float64") inside; float32
  after. Layers take their dtype when built and losses when traced."""
  import keras  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(dtype)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


class Ours:
  """jsia_tf's trainer of the paper preset as their code implements it, in `dtype`,
  with their initial weights (`states`; None: its own initialisation)."""

  def __init__(self, dtype: str, states, sizes: Dict[str, int]):
    # pylint: disable=import-outside-toplevel
    import tensorflow as tf
    from jsia_tf.models import authors
    from jsia_tf.training import convert
    from jsia_tf.training import trainer as trainer_lib
    self.tf, self.authors, self.dtype = tf, authors, dtype
    with _policy(dtype), tempfile.TemporaryDirectory() as tmp:
      cfg = convert.experiment_config(tmp, config_lib.DataConfig(
          batch_p=sizes["batch_p"], batch_k=sizes["batch_k"]))
      self.trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), NUM_CLASSES)
      # Their G batch: the first gen_rows rows of the re-id batch (identity-aligned).
      self.trainer.gen_rows = self.trainer.global_gen_rows = sizes["gen_rows"]
    if states is not None:
      self.load(states)

  def load(self, states) -> None:
    """Their four state dicts (weights and BN statistics) into the model."""
    self.authors.load_state(
        self.trainer.model,
        [{k: np.asarray(v, self.dtype) if np.issubdtype(np.asarray(v).dtype, np.floating)
          else v for k, v in state.items()} for state in states],
        [f"their {name}" for name in self.authors.FILES])

  def load_moments(self, moments) -> None:
    """Their Adam state (`Theirs.moments`) into the trainer's optimizers: every
    moment in our layout and every optimizer's step count at theirs. A parameter
    of theirs with a state and no variable of ours is a ValueError."""
    from jsia_tf.models import torchvision_resnet  # pylint: disable=import-outside-toplevel
    tr = self.trainer
    owner = {id(v): name for name, variables in tr.groups.items() for v in variables}
    counts = set()
    for i, (names, file_moments) in enumerate(zip(self.authors.file_names(tr.model),
                                                  moments)):
      for name, (m, v, count) in file_moments.items():
        if name not in names:
          if i == 1 and name.startswith(self.authors.ENCODER):
            continue  # the Encoder both generator files share, read from the first
          raise ValueError(f"their {self.authors.FILES[i]} {name} has an Adam state and "
                           f"no jsia_tf variable")
        variable, layout = names[name]
        optimizer = tr.optimizers[owner[id(variable)]]
        index = optimizer._get_variable_index(variable)  # pylint: disable=protected-access
        for slot, value in ((optimizer._momentums, m), (optimizer._velocities, v)):  # pylint: disable=protected-access
          slot[index].assign(np.asarray(
              torchvision_resnet.from_torch_layout(value, layout) if layout else value,
              self.dtype))
        counts.add(count)
    if len(counts) != 1:
      raise ValueError(f"their Adam step counts differ between parameters: {sorted(counts)}")
    count = counts.pop()
    for optimizer in tr.optimizers.values():
      optimizer.iterations.assign(count)

  def batch(self, reid, labels):
    tf = self.tf
    return {"x_rgb": tf.constant(reid[0], self.dtype), "x_ir": tf.constant(reid[1], self.dtype),
            "label_rgb": tf.constant(labels, tf.int32), "label_ir": tf.constant(labels, tf.int32)}

  def gen_images(self, reid):
    """The G images jsia_tf's forward pass makes of the re-id batch (the first
    gen_rows rows, downsampled); theirs get the same tensors."""
    from jsia_tf.models import generation  # pylint: disable=import-outside-toplevel
    rows = self.trainer.gen_rows
    return [generation.antialiased_resize(self.tf.constant(x[:rows], self.dtype),
                                          (128, 64)).numpy() for x in reid]

  def one_step(self, reid, labels):
    """The gradients of one joint step, nothing applied: (named outputs, report,
    [{their name: gradient in their layout}] per file, the step's graph)."""
    tf, tr = self.tf, self.trainer
    from jsia_tf.models import torchvision_resnet  # pylint: disable=import-outside-toplevel
    with _policy(self.dtype):
      batch, draws = self.batch(reid, labels), tr.global_draws(0)
      # Compiled: eager execution keeps every activation of the step's persistent
      # tape (and its own copies) alive.
      gradients = tf.function(lambda b, d: tr.gradients(b, d, "joint"))
      report, grads = gradients(batch, draws)
      graph = gradients.get_concrete_function(batch, draws).graph
      # The same forward pass again for the named outputs (training-mode BN: the
      # outputs depend on the batch only).
      out = tf.function(lambda b, d: tr.model.forward(
          b["x_rgb"], b["x_ir"], d, tr.partner, gen_rows=tr.gen_rows, training=True,
          passes=tr.passes["joint"]))(batch, draws)
      by_variable = {}
      for group, variables in tr.groups.items():
        for variable, grad in zip(variables, grads.get(group, [])):
          if grad is not None:
            by_variable[id(variable)] = grad.numpy()
      by_file = []
      for names in self.authors.file_names(tr.model):
        by_file.append({})
        for name, (variable, layout) in names.items():
          if id(variable) in by_variable:
            g = by_variable[id(variable)]
            by_file[-1][name] = torchvision_resnet.to_torch_layout(g, layout) if layout else g
      dis = {}
      for m, real, fake in (("rgb", "x_rgb_gen", "x_ir2rgb"), ("ir", "x_ir_gen", "x_rgb2ir")):
        for kind, key in (("real", real), ("fake", fake)):
          for s, o in enumerate(getattr(tr.model, f"Dis_{m}")(out[key])):
            dis[f"Dis_{m}({kind}) scale {s}"] = o.numpy()
      out = {k: v.numpy() for k, v in out.items()}
      out.update(dis)
      return out, {k: float(v) for k, v in report.items()}, by_file, graph

  def train_step(self, reid, labels, step: int) -> Dict[str, float]:
    """One step of the trainer at `step` (its stage and lr), optimizers applied."""
    with _policy(self.dtype):
      self.trainer.set_learning_rates(step)
      return self.trainer.train_step(self.batch(reid, labels), step)

  def embed(self, images) -> np.ndarray:
    """The trainer's test-time embeddings (`Trainer.embed`, eval mode)."""
    with _policy(self.dtype):
      return self.trainer.model.F.embed(self.tf.constant(images, self.dtype)).numpy()

  def state(self) -> List[Dict[str, np.ndarray]]:
    """The model's weights and BN statistics under their names and layouts."""
    names = self.authors.file_names(self.trainer.model)
    exported = self.authors.export_state(self.trainer.model)
    return [{k: exported[i][k] for k in names[i]} for i in range(len(names))]


def _free() -> None:
  """Frees a dropped trainer and Keras's global state: a paper-preset trainer in
  float64 (weights, Adam slots, traced graphs) and their Base do not fit in 24 GiB
  at once."""
  import keras  # pylint: disable=import-outside-toplevel
  keras.backend.clear_session()
  gc.collect()


# ---- rows ------------------------------------------------------------------------


def group_of(file_index: int, name: str) -> str:
  """Their parameter group (optimizer) of a tensor of file `file_index`."""
  # pylint: disable-next=import-outside-toplevel
  from jsia_tf.models import authors
  if file_index >= 2:
    return "Dis"
  if name.startswith(authors.ENCODER + "resnet_conv1"):
    return "E_sl (= E_i)"
  if name.startswith(authors.ENCODER):
    return "E_il + classifier"
  return "G"


def _grouped(files64, theirs64, files32, theirs32, names_filter):
  """{group: (names, ours64, theirs64, ours32, theirs32)} over the tensors of ours
  (files: [{their name: tensor}]) that `names_filter(file, name)` names a group of."""
  groups = {}
  for i, names in enumerate(files64):
    for name in names:
      group = names_filter(i, name)
      if group is None:
        continue
      entry = groups.setdefault(group, ([], [], [], [], []))
      entry[0].append(name)
      entry[1].append(files64[i][name])
      entry[2].append(theirs64[i][name])
      entry[3].append(files32[i][name])
      entry[4].append(theirs32[i][name])
  return groups


def _is_bn_stat(name: str) -> bool:
  return name.endswith(("running_mean", "running_var"))


def state_rows(section: str, ours64, theirs64, ours32, theirs32) -> List:
  """Rows of every parameter group's weights and every group of BN statistics."""
  rows = []
  weights = _grouped(ours64, theirs64, ours32, theirs32,
                     lambda i, n: None if _is_bn_stat(n) else group_of(i, n))
  stats = _grouped(ours64, theirs64, ours32, theirs32,
                   lambda i, n: (f"{group_of(i, n)} {n.rpartition('.')[2]}"
                                 if _is_bn_stat(n) else None))
  for kind, groups in (("weights", weights), ("BN", stats)):
    for group, (names, a, b, c, d) in groups.items():
      rows.append(parity.group_row(section, kind, group, a, b, c, d, note=(
          f"{len(names)} tensors, " + parity.worst(names, a, b))))
  return rows


# Loss terms: (name, ours: a report key or a function of the report, theirs: their
# locals summed, "w*name" weighted).
def _loss_terms(stage: str):
  terms = [("GAN (generator)", "gan", "gen_loss_gan"),
           ("image reconstruction", "recon", "gen_loss_reconst_images"),
           ("cycle reconstruction", "cycle", "gen_loss_cyclereconst_images"),
           ("code reconstruction", "code", "gen_loss_reconst_contents+gen_loss_reconst_styles"),
           ("discriminator", "dis", "dis_loss")]
  if stage == "joint":
    terms += [("IL (Eq. 11)", "il", "loss_rgb+loss_ir"),
              ("CE (Eq. 13)", lambda r: (r["id_ce_rgb"] + r["id_ce_ir"]) / 2.0, "cls_loss"),
              ("triplet (Eq. 13)", "id_triplet", "triplet_loss"),
              ("total (weighted)", "total",
               "gen_loss_without_gan_feature+gen_loss_gan_feature+"
               f"{THEIR_CONFIG['weight_pixel_loss']}*loss_rgb+"
               f"{THEIR_CONFIG['weight_pixel_loss']}*loss_ir+cls_loss+triplet_loss")]
  else:
    terms.append(("total (weighted)", "total",
                  "gen_loss_without_gan_feature+gen_loss_gan_feature"))
  return terms


def _their_loss(captured, key: str) -> float:
  total = 0.0
  for term in key.split("+"):
    weight, _, name = term.rpartition("*")
    scope = next(r for r in captured.values() if name in r)
    total += (float(weight) if weight else 1.0) * float(scope[name])
  return total


def loss_rows(section: str, stage: str, report64, captured64, report32, captured32):
  """One row per loss term of `stage`."""
  rows = []
  for name, ours, theirs in _loss_terms(stage):
    value = ours if callable(ours) else (lambda r, key=ours: r[key])
    rows.append(parity.tensor_row(section, "loss", name, value(report64),
                                  _their_loss(captured64, theirs), value(report32),
                                  _their_loss(captured32, theirs)))
  return rows


# (our output, their local, the function of theirs that holds it)
OUTPUTS = [
    ("M_rgb", "real_rgb_contents", "gan"), ("M_ir", "real_ir_contents", "gan"),
    ("s_rgb", "real_rgb_styles", "gan"), ("s_ir", "real_ir_styles", "gan"),
    ("x_rgb_recon", "reconst_rgb_images", "gan"), ("x_ir_recon", "reconst_ir_images", "gan"),
    ("x_ir2rgb", "fake_rgb_images", "gan"), ("x_rgb2ir", "fake_ir_images", "gan"),
    ("M_rgb2ir", "fake_rgb_contents", "gan"), ("M_ir2rgb", "fake_ir_contents", "gan"),
    ("s_ir2rgb", "fake_rgb_styles", "gan"), ("s_rgb2ir", "fake_ir_styles", "gan"),
    ("x_rgb_cycle", "cycreconst_rgb_images", "gan"),
    ("x_ir_cycle", "cycreconst_ir_images", "gan"),
    ("F_rgb_gen_logits", "rgb_cls_score", "pixel"),
    ("F_rgb2ir_logits", "fake_ir_score", "pixel"),
    ("F_ir_gen_logits", "ir_cls_score", "pixel"),
    ("F_ir2rgb_logits", "fake_rgb_score", "pixel"),
    ("F_rgb_v", "rgb_feature_vectors", "reid"), ("F_ir_v", "ir_feature_vectors", "reid"),
    ("F_rgb_logits", "rgb_cls_score", "reid"), ("F_ir_logits", "ir_cls_score", "reid")]


def output_rows(section, out64, captured64, out32, captured32) -> List:
  """Every named output of one step and the discriminators' outputs."""
  t = parity.nchw_to_nhwc
  rows = []
  for ours, theirs, scope in OUTPUTS:
    rows.append(parity.tensor_row(section, "output", ours, out64[ours],
                                  t(captured64[scope][theirs]), out32[ours],
                                  t(captured32[scope][theirs])))
  for name in [k for k in out64 if k.startswith("Dis_")]:
    rows.append(parity.tensor_row(section, "output", name, out64[name],
                                  t(captured64["gan"][name]), out32[name],
                                  t(captured32["gan"][name])))
  return rows


def gradient_rows(section, files64, grads64, files32, grads32) -> List:
  """Every parameter group's gradients (the tensors their step gives one)."""
  rows = []
  groups = _grouped(files64, grads64, files32, grads32,
                    lambda i, n: group_of(i, n) if n in grads64[i] else None)
  for group, (names, a, b, c, d) in groups.items():
    rows.append(parity.group_row(section, "gradient", group, a, b, c, d,
                                 note=f"{len(names)} tensors, " + parity.worst(names, a, b)))
  return rows


# ---- the comparison -------------------------------------------------------------


DTYPES = ("float64", "float32")
GAIN_DRAWS = 3  # random directions of the test-time tolerance's weight change
# The evaluation's images reach both sides at 256x128: their Encoder's forward
# resizes every input to that size (F.interpolate(x, [256, 128])), jsia_tf's
# network takes the model's size, so at another size the two would see different
# images.
EVAL_IMAGE_SIZE = (config_lib.PRESETS["paper"]["image_height"],
                   config_lib.PRESETS["paper"]["image_width"])


def _scalars(captured):
  """Their loss terms (the 0-d locals) of an iteration's captured locals."""
  return {scope: {k: v for k, v in values.items() if np.ndim(v) == 0}
          for scope, values in captured.items()}


def run(repo: str, weights: str = "", seed: int = 0, batch_p: int = 4, batch_k: int = 2,
        gen_rows: int = 4, steps: int = 5, their_perturbation: float = 0.0,
        sysu_dir: str = "", log=print):
  """Builds both, runs every comparison, returns (rows, settings). `sysu_dir`: the
  evaluation's data set ("": generated, "none": no evaluation)."""
  check_repo(repo)
  if sysu_dir not in ("", "none") and not os.path.isdir(sysu_dir):
    raise errors.ConfigError(f"--sysu_dir={sysu_dir}: no such directory (expected a "
                             f"SYSU-MM01 layout, '' to generate one, or 'none')")
  if weights and not os.path.isfile(weights):
    raise errors.ConfigError(f"--weights={weights}: file not found (expected "
                             f"torchvision's resnet50-19c8e357.pth or a .safetensors copy)")
  for flag, value, low in (("batch_p", batch_p, 2), ("batch_k", batch_k, 2),
                           ("steps", steps, 1)):
    if value < low:
      raise errors.ConfigError(f"--{flag}={value}: expected an integer >= {low}")
  if not 0.0 <= their_perturbation < 1.0:
    raise errors.ConfigError(f"--their_perturbation={their_perturbation}: expected a "
                             f"relative size in [0, 1)")
  if not (batch_k <= gen_rows <= batch_p * batch_k and gen_rows % batch_k == 0):
    raise errors.ConfigError(f"--gen_rows={gen_rows}: expected whole identities of the "
                             f"re-id batch, a multiple of --batch_k={batch_k} up to "
                             f"{batch_p * batch_k}")
  torch = import_torch()
  costs = measure_costs(repo, weights, seed, batch_p, batch_k, gen_rows, steps, log)
  torch.use_deterministic_algorithms(True)
  torchvision_note = install_torchvision(torch)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # their code's SyntaxWarnings
    modules = import_authors(repo, torch)
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf.training import macs
  tf.config.experimental.enable_op_determinism()
  torch_dtype = {"float64": torch.float64, "float32": torch.float32}
  sizes = dict(batch_p=batch_p, batch_k=batch_k, gen_rows=gen_rows)
  batches = [person_batch(seed + i, batch_p, batch_k) for i in range(steps)]
  rows = []
  # The evaluation's test set first: a set the official perm file does not fit
  # fails here, not after the trajectory.
  eval_scratch = tempfile.TemporaryDirectory(prefix="check_parity_eval_")
  evaluation = (None if sysu_dir == "none" else
                sysu_test_split(sysu_dir, eval_scratch.name, log))

  log(f"their networks: {torchvision_note}")
  theirs = Theirs(modules, torch, seed, weights)

  # 1. One joint step, optimizers not stepped: outputs, losses, gradients.
  log("one joint step")
  reid, labels = batches[0]
  one = {}
  from torch.utils.flop_counter import FlopCounterMode
  for dtype in DTYPES:
    ours = Ours(dtype, theirs.initial, sizes)
    gen = ours.gen_images(reid)
    out, report, by_file, graph = ours.one_step(reid, labels)
    if dtype == "float32":
      our_macs = macs.count(graph)
    del ours
    _free()
    theirs.reset(torch_dtype[dtype])
    counter = FlopCounterMode(display=False) if dtype == "float32" else contextlib.nullcontext()
    with counter:
      captured = theirs.iteration(gen, reid, labels[:gen_rows], labels, "joint",
                                  step_optimizers=False)
    if dtype == "float32":
      their_flops = counter.get_flop_counts().get("Global", {})
    captured["gan"].update(theirs.discriminator_outputs(captured["gan"]))
    captured["gan"]["G inputs"] = np.stack([parity.nchw_to_nhwc(captured["gan"][k])
                                            for k in ("rgb_images", "ir_images")])
    out["G inputs"] = np.stack([out["x_rgb_gen"], out["x_ir_gen"]])
    one[dtype] = (out, report, by_file, captured, theirs.gradients())
    gc.collect()
  (o64, r64, f64, c64, g64), (o32, r32, f32, c32, g32) = one["float64"], one["float32"]
  rows.append(parity.tensor_row("one joint step", "output", "G inputs (x_rgb_gen, x_ir_gen)",
                                o64["G inputs"], c64["gan"]["G inputs"],
                                o32["G inputs"], c32["gan"]["G inputs"]))
  rows += output_rows("one joint step", o64, c64, o32, c32)
  rows += loss_rows("one joint step", "joint", r64, c64, r32, c32)
  rows += gradient_rows("one joint step", f64, g64, f32, g32)
  del one
  gc.collect()

  # 2. A trajectory of joint steps and one warm-up step, optimizers stepping; after
  # the joint steps, the test-time features of both on images of other people. Every
  # step's weights wait on disk: in memory beside the models they would not fit.
  timings, features, test_rows, self_rows, resynced = {}, {}, [], [], []
  test_reid, _ = person_batch(seed + steps, batch_p, batch_k)
  test_images = np.concatenate(test_reid)
  with tempfile.TemporaryDirectory(prefix="check_parity_") as scratch:
    store = parity.Snapshots(scratch)
    for stage, count, section in (("joint", steps, "joint trajectory"),
                                  ("warmup", 1, "warm-up step")):
      log(f"{section}: {count} step(s)")
      for dtype in DTYPES:
        ours = Ours(dtype, theirs.initial, sizes)
        cfg = ours.trainer.cfg.train
        first = cfg.warmup_steps if stage == "joint" else 0
        seconds = []
        for k in range(count):
          reid, labels = batches[k]
          start = time.perf_counter()
          report = ours.train_step(reid, labels, first + k)
          seconds.append(time.perf_counter() - start)
          store.put((stage, "ours", dtype, k), (report, ours.state()))
        gens = [ours.gen_images(batches[k][0]) for k in range(count)]
        if stage == "joint":
          features[dtype] = [ours.embed(test_images)]
        del ours
        _free()
        theirs.reset(torch_dtype[dtype])
        their_seconds = []
        for k in range(count):
          reid, labels = batches[k]
          start = time.perf_counter()
          captured = theirs.iteration(gens[k], reid, labels[:gen_rows], labels, stage,
                                      step_optimizers=True)
          their_seconds.append(time.perf_counter() - start)
          store.put((stage, "theirs", dtype, k), (_scalars(captured), theirs.state()))
          if stage == "joint" and dtype == "float64":
            store.put((stage, "moments", k), theirs.moments())
          del captured
        if stage == "joint":
          features[dtype].append(theirs.embed(test_images))
          # Their weights after the joint steps in our eval-mode network: the test
          # path alone, without the trajectory's difference in the weights.
          same = Ours(dtype, theirs.state(), sizes)
          features[dtype].append(same.embed(test_images))
          del same
          _free()
          if dtype == "float64" and evaluation:
            log("evaluation: both models embed the test set (float64)")
            eval_rows = evaluation_rows(theirs, theirs.state(), sizes, repo, *evaluation,
                                        log)
            eval_scratch.cleanup()
          if dtype == "float64":
            if count == 1:  # after more steps the trainer's row has no verdict
              gain = theirs.feature_gain(test_images, parity.TOLERANCE, GAIN_DRAWS, seed)
            resynced += resynced_rows(store, batches, sizes, first, count, log)
            if their_perturbation:
              self_rows += their_own_rows(theirs, store, gens, batches, gen_rows,
                                          their_perturbation, seed, log)
          else:
            test_rows += converted_rows(theirs, test_images, features[dtype][1], log)
        if dtype == "float32" and count > 1:  # the first step of ours traces the graph
          timings[stage] = {"jsia_tf_s": float(np.mean(seconds[1:])),
                            "authors_s": float(np.mean(their_seconds[1:]))}
        gc.collect()
      if stage == "joint":
        note = f"{len(test_images)} images of other people"
        if steps == 1:
          # Weights within the tolerance give features within what the network
          # makes of such a difference: their own features' change when their
          # weights move by the tolerance (a network a few steps from random weights
          # amplifies it).
          tolerance = max(parity.TOLERANCE, gain)
          note += (f"; tolerance: their features' change when their weights move by "
                   f"{parity.TOLERANCE:g} (mean of {GAIN_DRAWS} directions)")
        else:
          tolerance = math.inf  # the free-running trajectory's difference, no verdict
        test_rows.insert(0, parity.tensor_row(
            "test time", "feature", f"trainer (Trainer.embed) after {steps} steps",
            features["float64"][0], features["float64"][1], features["float32"][0],
            features["float32"][1], tolerance=tolerance, note=note))
        test_rows.insert(1, parity.tensor_row(
            "test time", "feature", "their weights after the joint steps -> Trainer.embed",
            features["float64"][2], features["float64"][1], features["float32"][2],
            features["float32"][1], note="the same weights on both sides"))
      for k in range(count):
        r64, s64 = store.get((stage, "ours", "float64", k))
        c64, t64 = store.get((stage, "theirs", "float64", k))
        r32, s32 = store.get((stage, "ours", "float32", k))
        c32, t32 = store.get((stage, "theirs", "float32", k))
        name = f"{section}, after step {k + 1}" if count > 1 else section
        step_rows = loss_rows(name, stage, r64, c64, r32, c32)
        step_rows += state_rows(name, s64, t64, s32, t32)
        if stage == "joint" and k > 0:
          # Judged one step at a time by the resynced rows; free-running, a
          # difference within the tolerance grows as it does in their code alone.
          for row in step_rows:
            _informational(row, keep_float32=True)
        rows += step_rows
        del s64, t64, s32, t32
        gc.collect()
  rows += resynced + test_rows + (eval_rows if evaluation else []) + self_rows

  # 3. The learning rates at the stage boundary and the decay point.
  rows += lr_rows(theirs, torch)

  settings = {"authors_repo": os.path.abspath(repo), "authors_commit": _commit(repo),
              "torch": torch.__version__, "tensorflow": tf.__version__,
              "torchvision": torchvision_note, "weights": weights or "random", "seed": seed,
              "reid_batch": f"{batch_p}x{batch_k} per modality at 256x128",
              "gen_batch": f"{gen_rows} + {gen_rows} at 128x64", "steps": steps,
              "their_perturbation": their_perturbation,
              "evaluation": ("none" if not evaluation else
                             f"{len(evaluation[0])} test images of "
                             f"{sysu_dir or 'a generated --like_sysu_test set'} at "
                             f"{EVAL_IMAGE_SIZE[0]}x{EVAL_IMAGE_SIZE[1]}"),
              "step_seconds_float32": timings.get("joint", {}),
              "cost_float32": costs,
              "macs": {
                  # FLOPs of a multiply-add are 2 in torch's counter.
                  "authors_gmacs": round(sum(their_flops.values()) / 2e9, 2),
                  "authors_gmacs_by_op": {str(k): round(v / 2e9, 2)
                                          for k, v in their_flops.items()},
                  "jsia_tf_gmacs": round(sum(op.macs for op in our_macs) / 1e9, 2),
                  "jsia_tf_gmacs_by_network": {
                      k: round((v["forward_macs"] + v["backward_macs"]) / 1e9, 2)
                      for k, v in macs.by_network(our_macs).items()}}}
  return rows, settings


# ---- the cost of a step, each side in a process of its own ------------------------


def cost(side: str, repo: str, weights: str = "", seed: int = 0, batch_p: int = 4,
         batch_k: int = 2, gen_rows: int = 4, steps: int = 5) -> Dict:
  """`side`'s ("ours" or "theirs") float32 joint steps alone in this process, on
  the run's batches: {"step_s": mean seconds of steps 2.., "peak_rss_gb": the
  process's peak resident memory, and the resident memory once the framework is
  imported ("framework_rss_gb") and once the model is built ("model_rss_gb")}. The
  other side is never imported, so the peak is this side's framework, model,
  optimizer state and step."""
  import resource  # pylint: disable=import-outside-toplevel
  batches = [person_batch(seed + i, batch_p, batch_k) for i in range(max(steps, 2))]
  seconds, rss = [], {}
  if side == "theirs":
    torch = import_torch()
    torch.use_deterministic_algorithms(True)
    install_torchvision(torch)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      modules = import_authors(repo, torch)
      rss["framework_rss_gb"] = _rss_gb()
      theirs = Theirs(modules, torch, seed, weights, keep_initial=False)
    rss["model_rss_gb"] = _rss_gb()
    for reid, labels in batches:
      # The G rows at half size (a 2x2 mean; the values do not change the cost).
      gen = [x[:gen_rows].reshape(gen_rows, 128, 2, 64, 2, 3).mean(axis=(2, 4))
             for x in reid]
      start = time.perf_counter()
      theirs.iteration(gen, reid, labels[:gen_rows], labels, "joint", step_optimizers=True,
                       capture=False)
      seconds.append(time.perf_counter() - start)
  else:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.experimental.enable_op_determinism()
    rss["framework_rss_gb"] = _rss_gb()
    ours = Ours("float32", None, dict(batch_p=batch_p, batch_k=batch_k, gen_rows=gen_rows))
    rss["model_rss_gb"] = _rss_gb()
    first = ours.trainer.cfg.train.warmup_steps
    for k, (reid, labels) in enumerate(batches):
      start = time.perf_counter()
      ours.train_step(reid, labels, first + k)
      seconds.append(time.perf_counter() - start)
  # ru_maxrss is in KiB on Linux.
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
  return {"step_s": float(np.mean(seconds[1:])), "peak_rss_gb": round(peak, 2),
          "steps": len(seconds), **rss}


def _rss_gb() -> float:
  """This process's resident memory now, GB (Linux; NaN elsewhere)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
  except (OSError, StopIteration, ValueError):
    return math.nan
  return round(kib * 1024 / 1e9, 2)


def measure_costs(repo: str, weights: str, seed: int, batch_p: int, batch_k: int,
                  gen_rows: int, steps: int, log=print) -> Dict:
  """Both sides' `cost`, each in a fresh process of this tool, one after the other
  (nothing else of the run lives yet): their figures and ours/theirs ratios."""
  out = {}
  for side, name in (("theirs", "authors"), ("ours", "jsia_tf")):
    log(f"the float32 step's time and memory: {name}, in a process of its own")
    argv = [sys.executable, os.path.abspath(__file__), f"--authors_repo={repo}",
            f"--weights={weights}", f"--seed={seed}", f"--batch_p={batch_p}",
            f"--batch_k={batch_k}", f"--gen_rows={gen_rows}", f"--steps={steps}",
            f"--cost_side={side}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      tail = "\n".join(result.stderr.strip().splitlines()[-5:])
      raise errors.TrainingError(f"the {name} cost process exited {result.returncode}: "
                                 f"{tail}")
    out[name] = json.loads(result.stdout.strip().splitlines()[-1])
  out["time_ratio"] = round(out["jsia_tf"]["step_s"] / out["authors"]["step_s"], 3)
  out["memory_ratio"] = round(out["jsia_tf"]["peak_rss_gb"] / out["authors"]["peak_rss_gb"], 3)
  return out


ITERATIONS_PER_EPOCH = 200  # their train_an_epoch's loop


def _informational(row, keep_float32: bool = False) -> None:
  """Makes `row` informational: no verdict ("-"), its figures kept."""
  row.tolerance = math.inf
  if not keep_float32:
    row.rel32, row.floor = math.nan, math.nan


def resynced_rows(store, batches, sizes, first: int, count: int, log) -> List:
  """Joint steps 2..`count`, each from the same state on both sides: their float64
  weights, BN statistics and Adam moments after step k (from `store`) loaded into
  jsia_tf, then jsia_tf's step k + 1 on the trajectory's batch k + 1 against their
  step k + 1 of the trajectory: every loss term and group, judged at the
  tolerance. The free-running trajectory carries each step's rounding into the
  next, and Adam's sign steps carry it apart; these rows judge each step alone."""
  rows = []
  ours = None
  for k in range(1, count):
    log(f"joint step {k + 1} from their state after step {k}")
    _, state = store.get(("joint", "theirs", "float64", k - 1))
    if ours is None:
      ours = Ours("float64", state, sizes)
    else:
      ours.load(state)
    ours.load_moments(store.get(("joint", "moments", k - 1)))
    del state
    reid, labels = batches[k]
    report = ours.train_step(reid, labels, first + k)
    moved = ours.state()
    their_losses, their_state = store.get(("joint", "theirs", "float64", k))
    section = f"joint step {k + 1} from their state after step {k}"
    step_rows = loss_rows(section, "joint", report, their_losses, report, their_losses)
    step_rows += state_rows(section, moved, their_state, moved, their_state)
    for row in step_rows:
      row.rel32, row.floor = math.nan, math.nan
    rows += step_rows
    del moved, their_state
  del ours
  _free()
  return rows


def their_own_rows(theirs, store, gens, batches, gen_rows: int, rel: float, seed: int,
                   log) -> List:
  """Their float64 joint steps again, from their initial weights moved by `rel` of
  each tensor's norm (`parity.perturbed_state`), against their own trajectory in
  `store`: every loss term and group after each step. Informational rows (no
  tolerance): how far their code moves from itself for a difference of that size."""
  log(f"their code against itself, initial weights moved by {rel:g}")
  theirs.reset(theirs.torch.float64)
  theirs.load(parity.perturbed_state(theirs.state(), rel, np.random.default_rng(seed)))
  rows = []
  for k, gen in enumerate(gens):
    reid, labels = batches[k]
    captured = _scalars(theirs.iteration(gen, reid, labels[:gen_rows], labels, "joint",
                                         step_optimizers=True))
    moved = theirs.state()
    reference_losses, reference = store.get(("joint", "theirs", "float64", k))
    section = f"their code against itself (moved by {rel:g}), after step {k + 1}"
    step_rows = [parity.tensor_row(section, "loss", name, _their_loss(captured, key),
                                   _their_loss(reference_losses, key))
                 for name, _, key in _loss_terms("joint")]
    step_rows += state_rows(section, moved, reference, moved, reference)
    for row in step_rows:
      _informational(row)
    rows += step_rows
    del moved, reference
  return rows


def lr_rows(theirs, torch) -> List:
  """Every group's lr at the first and last step of the epochs around the stage
  boundary and the decay point: their `lr_scheduler_step(epoch)` (main.py's
  milestones: the decay epoch after the warm-up epochs) against
  `trainer.learning_rates(step)` of the paper preset."""
  # pylint: disable=import-outside-toplevel
  from jsia_tf.training import trainer as trainer_lib
  train = config_lib.TrainConfig(workdir="unused", **{
      k: v for k, v in config_lib.TRAIN_PRESETS["paper"].items()
      if k not in ("batch_p", "batch_k", "gen_ids")})
  warmup = train.warmup_steps // ITERATIONS_PER_EPOCH
  decay = int(round(train.lr_decay_at * train.joint_steps)) // ITERATIONS_PER_EPOCH
  total = train.total_steps // ITERATIONS_PER_EPOCH
  theirs.reset(torch.float32, dict(THEIR_CONFIG, milestones=[warmup + decay]))
  ours_of = {"sl_enc": "F", "gen": "G", "dis": "Dis", "il_enc": "F"}
  rows = []
  for epoch in sorted({0, warmup - 1, warmup, warmup + decay - 1, warmup + decay, total - 1}):
    lrs = theirs.learning_rates(epoch)
    first, last = epoch * ITERATIONS_PER_EPOCH, (epoch + 1) * ITERATIONS_PER_EPOCH - 1
    # Every group of theirs at the epoch's first and last step of ours.
    ours = [trainer_lib.learning_rates(train, step)[ours_of[g]] for step in (first, last)
            for g in lrs]
    rows.append(parity.tensor_row(
        "learning rates", "lr", f"epoch {epoch} = steps {first}-{last}", ours,
        list(lrs.values()) * 2,
        note=", ".join(f"{g} {lr:g}" for g, lr in lrs.items())))
  return rows


def converted_rows(theirs, images, their_features, log) -> List:
  """Their files, as their `Base.save_model` writes them after the float32 joint
  steps, through tools/convert_authors_checkpoint.py's converter, then the
  extractor of `python -m jsia_tf.evaluate --checkpoint` and the SavedModel of
  `python -m jsia_tf.export`, each in float32. Judged (the first column): how far
  each is from the exact features of these weights, their float64 features, within
  FEATURE_TOLERANCE_32 or what float32 costs their own code on these weights where
  that is more (the `floor` column): a network a few steps from random weights
  amplifies float32's rounding. The float32-against-float32 difference (both
  sides' rounding, up to twice the floor) is the informational column."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf.serving import extractor as extractor_lib
  from jsia_tf.serving import saved_model
  from jsia_tf.training import convert
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    their_dir, workdir = os.path.join(tmp, "their_models"), os.path.join(tmp, "converted")
    os.makedirs(their_dir)
    theirs.save_model(their_dir, 0)
    convert.convert(their_dir, workdir, num_classes=NUM_CLASSES, log=lambda line: None)
    run = extractor_lib.restore(workdir)
    x = tf.constant(images, tf.float32)
    ours = {"extractor (evaluate --checkpoint)": run.extractor.embed(x).numpy()}
    del run
    _free()
    version = saved_model.export_run(config_lib.ExportConfig(workdir=workdir),
                                     log=lambda line: None)
    ours["SavedModel (export)"] = saved_model.Served(version).embed(x).numpy()
    _free()
  log("their files converted, restored and exported")
  exact = theirs.embed_in_float64(images)
  floor = parity.tensor_rel(their_features, exact)
  for name, value in ours.items():
    rows.append(parity.Row("test time", "feature", f"their model-*_0.pkl -> {name}",
                           parity.tensor_rel(value, exact), float(np.max(np.abs(exact))),
                           rel32=parity.tensor_rel(value, their_features), floor=floor,
                           tolerance=max(parity.FEATURE_TOLERANCE_32, floor),
                           note="ours in float32 against their float64 features of the "
                                "same weights; fp32 rel: against their float32; floor: "
                                "their float32 against their float64"))
  return rows


def sysu_test_split(sysu_dir: str, scratch: str, log):
  """(table, data config at EVAL_IMAGE_SIZE) of the evaluation's test split: of
  `sysu_dir`, or of a set the tool generates in `scratch` in the real test set's
  shape (`sysu_dir` empty). The official perm file must fit it (a DataError
  otherwise)."""
  # pylint: disable=import-outside-toplevel
  from jsia_tf.data import synthetic
  from jsia_tf.data import tfrecords
  from jsia_tf.evaluation import extract
  from jsia_tf.evaluation import their_sysu
  source = f"--sysu_dir={sysu_dir}"
  if not sysu_dir:
    sysu_dir = os.path.join(scratch, "like_sysu_test")
    source = (f"the set generated by python -m jsia_tf.generate --layout=sysu "
              f"--like_sysu_test --num_ids={synthetic.SYSU_TEST_IDS + 2}")
    log(f"generating the evaluation's test set ({source})")
    synthetic.generate(synthetic.SyntheticConfig(
        output_dir=sysu_dir, num_ids=synthetic.SYSU_TEST_IDS + 2, like_sysu_test=True),
        log=lambda *a, **k: None)
  data = config_lib.DataConfig(dataset="sysu", data_dir=sysu_dir,
                               image_height=EVAL_IMAGE_SIZE[0],
                               image_width=EVAL_IMAGE_SIZE[1])
  table = tfrecords.load_split(data, "test")
  their_sysu.require_fit(extract.labelled(np.zeros((len(table), 1)), table), source)
  return table, data


def evaluation_rows(theirs, states, sizes, repo: str, table, data, log,
                    batch_size: int = 32) -> List:
  """Their model after the joint steps (float64, eval mode) and jsia_tf's model with
  the same weights embed every test image of `table` (`data`'s size); their
  `evaluate_sysymm01` on their features against `python -m jsia_tf.evaluate
  --perm_file=official` on ours: R1, R10, R20 and mAP of the four settings, within
  their_sysu.TOLERANCE absolute. The features themselves: one float64 row."""
  # pylint: disable=import-outside-toplevel
  from jsia_tf.evaluation import extract
  from jsia_tf.evaluation import their_sysu
  evaluator = their_sysu.load_evaluator(repo)
  ours = Ours("float64", states, sizes)
  feats = {}
  for side, embed in (("ours", ours.embed), ("theirs", theirs.embed)):
    log(f"  evaluation: {side}")
    # The pipeline's float32 images are exact in float64.
    feats[side] = extract.extract_features(
        lambda x, embed=embed: embed(np.asarray(x, np.float64)), table, data,
        batch_size, log_every_seconds=60, log=lambda line: log(f"    {line}"),
        dtype=np.float64)
  del ours
  _free()
  h, w = data.image_size
  rows = [parity.tensor_row("evaluation", "feature",
                            f"{len(table)} test images at {h}x{w}",
                            feats["ours"].features, feats["theirs"].features,
                            note="their weights after the joint steps on both sides")]
  for setting, metric, mine, value, diff in their_sysu.differences(
      their_sysu.ours(feats["ours"], "jsia_tf's features of the test set"),
      their_sysu.theirs(evaluator, repo, feats["theirs"])):
    rows.append(parity.Row("evaluation", "metric", f"{setting} {metric}", diff, value,
                           tolerance=their_sysu.TOLERANCE,
                           note=f"|ours - theirs| absolute: {100 * mine:.6f} % "
                                f"against {100 * value:.6f} %"))
  return rows


def _commit(repo: str) -> str:
  try:
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git work tree)"


def main(argv):
  """Entry point: flags -> run -> table (and JSON); exit 1 if a row is off."""
  del argv
  if FLAGS.cost_side:
    print(json.dumps(cost(FLAGS.cost_side, FLAGS.authors_repo, FLAGS.weights, FLAGS.seed,
                          FLAGS.batch_p, FLAGS.batch_k, FLAGS.gen_rows, FLAGS.steps)))
    return
  rows, settings = run(FLAGS.authors_repo, FLAGS.weights, FLAGS.seed, FLAGS.batch_p,
                       FLAGS.batch_k, FLAGS.gen_rows, FLAGS.steps,
                       FLAGS.their_perturbation, FLAGS.sysu_dir)
  print(f"authors' code {settings['authors_commit']} (torch {settings['torch']}) vs "
        f"jsia_tf (TensorFlow {settings['tensorflow']}); weights: {settings['weights']}; "
        f"re-id batch {settings['reid_batch']}, G batch {settings['gen_batch']}; "
        f"{settings['steps']} joint steps; evaluation: {settings['evaluation']}")
  print(parity.format_table(rows))
  count = settings["macs"]
  print(f"MACs of one float32 step (convolutions, their backward, matrix products): "
        f"authors {count['authors_gmacs']} G, jsia_tf {count['jsia_tf_gmacs']} G")
  seconds = settings["step_seconds_float32"]
  if seconds:
    print(f"float32 joint step (mean of steps 2-{settings['steps']}) in this process: "
          f"authors {seconds['authors_s']:.2f} s, jsia_tf {seconds['jsia_tf_s']:.2f} s")
  costs = settings["cost_float32"]
  print(f"float32 joint step, each side in a process of its own (mean of steps "
        f"2-{costs['authors']['steps']}; resident memory with the framework imported, "
        f"with the model built, peak):")
  for name in ("authors", "jsia_tf"):
    c = costs[name]
    print(f"  {name}: {c['step_s']:.2f} s; {c['framework_rss_gb']:.2f} GB, "
          f"{c['model_rss_gb']:.2f} GB, {c['peak_rss_gb']:.2f} GB")
  print(f"  ours/theirs: time {costs['time_ratio']:.2f}, peak memory "
        f"{costs['memory_ratio']:.2f}")
  if FLAGS.output_json:
    record = json.dumps(parity.to_json(rows, settings), indent=2)
    files.atomic_write(FLAGS.output_json, lambda f: f.write(record))
    print(f"wrote {FLAGS.output_json}")
  if not all(r.ok for r in rows):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
