"""Number-by-number parity of jsia_tf's paper step with the authors' PyTorch code.

  pip install -e .[parity]
  python tools/check_parity.py --authors_repo=DIR [--weights=resnet50-19c8e357.pth]
      [--output_json=parity.json] [--seed=0]

DIR is a clone of github.com/wangguanan/JSIA-ReID; nothing of it is copied into
jsia_tf. Their networks are built from DIR (offline: their Encoder's ImageNet
download is replaced by random or --weights initialisation), their weights are
copied into jsia_tf's paper preset with lambda_v = lambda_lr = lambda_ui = 0 (the
AAAI model they implement) by the checkpoint converter's mapping, and both run one
joint-stage step on the same batch: a re-id batch of 16 x 4 images per modality at
256x128 and their 9 + 9 G images at 128x64 (jsia_tf's G sub-batch: the first nine
rows, downsampled; the same tensors go to theirs). Their step runs as their
`train_an_epoch` makes it (one iteration, optimizers not stepped); every output,
loss term and parameter group's gradient is compared. Exit status 1 when a row is
above the tolerance.

To run on a CPU, their CUDA defaults are redirected (`rgb2gray`, `norm`, `denorm`,
the label-smoothing loss). Where torchvision cannot be imported (this project's
machines have a CPU build of torch that no torchvision release matches), a
stand-in builds torchvision's ResNet-50 module tree (`conv1`, `bn1`, `layer1.0.
downsample.0`, ...) so their `Encoder` gets the same network.
"""

from jsia_tf import console

console.quiet()  # before anything imports TensorFlow

import builtins
import contextlib
import functools
import gc
import importlib
import json
import os
import subprocess
import sys
import tempfile
import types
import warnings

from absl import flags
import numpy as np

from jsia_tf import cli
from jsia_tf import errors
from jsia_tf import parity

FLAGS = flags.FLAGS
NUM_CLASSES = 395  # hard-coded in their Base (Encoder(395))
REID_P, REID_K, GEN_ROWS = 16, 4, 9  # their main.py: reid_p, reid_k; gan_p x gan_k
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
  flags.DEFINE_integer("seed", 0, "Seed of their initialisation and of the batch.")
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


def person_batch(seed: int):
  """The re-id batch: REID_P identities x REID_K images per modality of the
  generated data set's people (RGB camera 1, IR camera 3), in [-1, 1], and their
  labels. People, not noise: distinct identities keep the triplet's hardest
  positive and negative clear of near-ties."""
  # pylint: disable=import-outside-toplevel
  from jsia_tf.data import layouts
  from jsia_tf.data import synthetic
  rng = np.random.default_rng(seed)
  cameras = [synthetic.make_camera(1, layouts.RGB, False, False, seed),
             synthetic.make_camera(3, layouts.IR, False, False, seed)]
  pids = rng.choice(NUM_CLASSES, REID_P, replace=False)
  images = [[], []]
  for pid in pids:
    ident = synthetic.make_identity(int(pid), seed)
    for m, camera in enumerate(cameras):
      for _ in range(REID_K):
        image = synthetic.render_image(ident, camera, 256, 128, rng)
        images[m].append(image.astype(np.float32) / 127.5 - 1.0)
  return [np.stack(x) for x in images], np.repeat(pids, REID_K).astype(np.int64)


class _Iter:
  """Their IterLoader's interface, always giving one batch."""

  def __init__(self, images, ids):
    self.batch = (images, ids, ids, None)

  def next_one(self):
    return self.batch


def run_their_step(modules, base, torch, gen, reid, labels_gen, labels_reid, dtype):
  """One iteration of their `train_an_epoch` (joint stage) without optimizer steps,
  on inputs of `dtype` (their networks must hold it): {function: its tensor locals
  at return (numpy), plus the discriminators' outputs in "gan"} and {module index:
  {name: gradient}}."""
  to = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype)
  ids_gen, ids_reid = torch.from_numpy(labels_gen), torch.from_numpy(labels_reid)
  loaders = types.SimpleNamespace(
      gan_rgb_train_iter=_Iter(to(gen[0]), ids_gen), gan_ir_train_iter=_Iter(to(gen[1]), ids_gen),
      reid_rgb_train_iter=_Iter(to(reid[0]), ids_reid),
      reid_ir_train_iter=_Iter(to(reid[1]), ids_reid))
  for optimizer in (base.sl_enc_optimizer, base.gen_optimizer, base.dis_optimizer,
                    base.il_enc_optimizer):
    optimizer.step = lambda *args, **kwargs: None  # the gradients are the result
  train = modules.train
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

  sys.setprofile(profile)
  try:
    train.train_an_epoch(base.config, loaders, base, 0, train_gan=True, train_reid=True,
                         train_pixel=True, optimize_sl_enc=True)
  finally:
    sys.setprofile(None)
    del train.range
  grads = {}
  for i, module in enumerate(base.model_list):
    grads[i] = {n[len("module."):] if n.startswith("module.") else n:
                p.grad.detach().numpy().copy()
                for n, p in module.named_parameters() if p.grad is not None}
  # Every discriminator output, on the real G images and the step's fakes.
  gan = captured["gan"]
  for m, real, fake in (("rgb", "rgb_images", "fake_rgb_images"),
                        ("ir", "ir_images", "fake_ir_images")):
    with torch.no_grad():
      for kind, key in (("real", real), ("fake", fake)):
        outs = getattr(base, f"discriminator_{m}").module(torch.from_numpy(gan[key]))
        for s, out in enumerate(outs):
          gan[f"Dis_{m}({kind}) scale {s}"] = out.numpy().copy()
  return captured, grads


# ---- the comparison -------------------------------------------------------------


def run(repo: str, weights: str = "", seed: int = 0, log=print):
  """Builds both, runs both steps, returns (rows, settings)."""
  check_repo(repo)
  if weights and not os.path.isfile(weights):
    raise errors.ConfigError(f"--weights={weights}: file not found (expected "
                             f"torchvision's resnet50-19c8e357.pth or a .safetensors copy)")
  torch = import_torch()
  torch.use_deterministic_algorithms(True)
  torchvision_note = install_torchvision(torch)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # their code's SyntaxWarnings
    modules = import_authors(repo, torch)
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jsia_tf import config as config_lib
  from jsia_tf import losses
  from jsia_tf.models import authors
  from jsia_tf.models import torchvision_resnet
  from jsia_tf.training import convert
  from jsia_tf.training import macs
  from jsia_tf.training import trainer as trainer_lib
  from jsia_tf.models import generation
  tf.config.experimental.enable_op_determinism()

  # Theirs first, kept as numpy, then freed: both steps at once (128 ResNet-50
  # images each, with their graphs) do not fit in 24 GiB.
  log(f"their networks: {torchvision_note}")
  base = build_theirs(modules, torch, seed, weights)
  reid, labels = person_batch(seed)
  # jsia_tf's G images: the first rows of the re-id batch, downsampled as its
  # forward pass does; theirs get the same tensors.
  gen = [generation.antialiased_resize(tf.constant(x[:GEN_ROWS]), (128, 64)).numpy()
         for x in reid]
  states = [{(k[len("module."):] if k.startswith("module.") else k): v.detach().numpy().copy()
             for k, v in m.state_dict().items()} for m in base.model_list]
  # Their step in float32 (the comparison), then the same weights in float64:
  # float32's own limit on every row.
  results = {}
  # pylint: disable-next=import-outside-toplevel
  from torch.utils.flop_counter import FlopCounterMode
  for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
    for module in base.model_list:
      module.to(dtype)
    # Their float32 step's dense arithmetic (convolutions, their backward,
    # matrix products: the ops jsia_tf.training.macs counts), forward and backward.
    counter = (FlopCounterMode(display=False) if dtype == torch.float32
               else contextlib.nullcontext())
    with warnings.catch_warnings(), counter:
      warnings.simplefilter("ignore")  # deprecations of the torch API they call
      results[name] = run_their_step(modules, base, torch, gen, reid, labels[:GEN_ROWS],
                                     labels, dtype)
    if dtype == torch.float32:
      their_flops = counter.get_flop_counts().get("Global", {})
    gc.collect()
  (captured, their_grads), (reference, reference_grads) = results["float32"], results["float64"]
  del base
  gc.collect()

  log("jsia_tf's step")
  with tempfile.TemporaryDirectory() as tmp:
    cfg = convert.experiment_config(tmp, config_lib.DataConfig(batch_p=REID_P,
                                                               batch_k=REID_K))
    trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), NUM_CLASSES)
  # Their G batch is 3 identities x 3 images; ours is the first rows of the re-id
  # batch (gen_ids x K = 8 in the preset): nine rows here.
  trainer.gen_rows = trainer.global_gen_rows = GEN_ROWS
  model = trainer.model
  authors.load_state(model, states, [f"their {name}" for name in authors.FILES])
  batch = {"x_rgb": tf.constant(reid[0]), "x_ir": tf.constant(reid[1]),
           "label_rgb": tf.constant(labels, tf.int32), "label_ir": tf.constant(labels, tf.int32)}
  draws = trainer.global_draws(0)
  # Compiled: eager execution keeps every activation of the step's persistent tape
  # (and its own copies) alive and does not fit beside the data in 24 GiB.
  our_gradients = tf.function(lambda b, d: trainer.gradients(b, d, "joint"))
  report, our_grads = our_gradients(batch, draws)
  our_macs = macs.count(our_gradients.get_concrete_function(batch, draws).graph)
  # The same forward pass again for the named outputs (training-mode BN: the
  # outputs depend on the batch only).
  out = tf.function(lambda b, d: model.forward(
      b["x_rgb"], b["x_ir"], d, trainer.partner, gen_rows=GEN_ROWS, training=True,
      passes=trainer.passes["joint"]))(batch, draws)

  t = parity.nchw_to_nhwc
  g = captured["gan"]
  rows = []
  # (our output, their local, the function of theirs that holds it)
  outputs = [
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
  rows.append(parity.tensor_row("output", "x_rgb_gen, x_ir_gen (inputs)",
                                np.stack([out["x_rgb_gen"], out["x_ir_gen"]]),
                                np.stack([t(g["rgb_images"]), t(g["ir_images"])])))
  for ours, theirs, scope in outputs:
    rows.append(parity.tensor_row("output", ours, out[ours], t(captured[scope][theirs]),
                                  t(reference[scope][theirs])))
  for m, real, fake in (("rgb", "x_rgb_gen", "x_ir2rgb"), ("ir", "x_ir_gen", "x_rgb2ir")):
    dis = getattr(model, f"Dis_{m}")
    for kind, key in (("real", real), ("fake", fake)):
      for s, ours in enumerate(dis(out[key])):
        name = f"Dis_{m}({kind}) scale {s}"
        rows.append(parity.tensor_row("output", name, ours, t(g[name]),
                                      t(reference["gan"][name])))

  code = lambda pairs: sum(float(tf.reduce_mean(losses.code_reconstruction_loss(
      out[a], out[b]))) for a, b in pairs)
  # L_id's parts as the trainer reports them (the mean of the two modalities' CE).
  ce = (float(report["id_ce_rgb"]) + float(report["id_ce_ir"])) / 2.0
  triplet = report["id_triplet"]

  def theirs(key):
    """A loss of theirs by name, float32 and float64: `loss_rgb+loss_ir`, sums."""
    def value(results):
      total = 0.0
      for term in key.split("+"):
        weight, _, name = term.rpartition("*")
        scope = next(r for r in results.values() if name in r)
        total += (float(weight) if weight else 1.0) * float(scope[name])
      return total
    return value(captured), value(reference)

  their_total = ("gen_loss_without_gan_feature+gen_loss_gan_feature+"
                 f"{THEIR_CONFIG['weight_pixel_loss']}*loss_rgb+"
                 f"{THEIR_CONFIG['weight_pixel_loss']}*loss_ir+cls_loss+triplet_loss")
  loss_rows = [
      ("GAN (generator)", report["gan"], "gen_loss_gan"),
      ("image reconstruction", report["recon"], "gen_loss_reconst_images"),
      ("cycle reconstruction", report["cycle"], "gen_loss_cyclereconst_images"),
      ("content code reconstruction", code((("M_rgb2ir", "M_rgb"), ("M_ir2rgb", "M_ir"))),
       "gen_loss_reconst_contents"),
      ("style code reconstruction", code((("s_rgb2ir", "s_ir"), ("s_ir2rgb", "s_rgb"))),
       "gen_loss_reconst_styles"),
      ("discriminator", report["dis"], "dis_loss"),
      ("IL (Eq. 11)", report["il"], "loss_rgb+loss_ir"),
      ("CE (Eq. 13)", ce, "cls_loss"),
      ("triplet (Eq. 13)", triplet, "triplet_loss"),
      ("total (weighted)", report["total"], their_total)]
  for name, ours, key in loss_rows:
    value32, value64 = theirs(key)
    rows.append(parity.tensor_row("loss", name, float(ours), value32, value64))

  ours_by_variable = {}
  for group, variables in trainer.groups.items():
    for variable, grad in zip(variables, our_grads.get(group, [])):
      if grad is not None:
        ours_by_variable[id(variable)] = grad.numpy()
  groups = {}
  for i, names in enumerate(authors.file_names(model)):
    for name, (variable, layout) in names.items():
      if name not in their_grads[i]:
        continue  # no gradient in their step (BN statistics)
      if name.startswith(authors.ENCODER + "resnet_conv1"):
        group = "E_sl (= E_i)"
      elif name.startswith(authors.ENCODER):
        group = "E_il + classifier"
      else:
        group = "G" if i < 2 else "discriminators"
      ours = ours_by_variable.get(id(variable), np.zeros(variable.shape, np.float32))
      ours = torchvision_resnet.to_torch_layout(ours, layout) if layout else ours
      groups.setdefault(group, []).append(
          (ours, their_grads[i][name], reference_grads[i][name]))
  for group, entries in groups.items():
    rows.append(parity.gradient_row(group, *zip(*entries), note=f"{len(entries)} tensors"))
  settings = {"authors_repo": os.path.abspath(repo), "authors_commit": _commit(repo),
              "torch": torch.__version__, "tensorflow": tf.__version__,
              "torchvision": torchvision_note, "weights": weights or "random", "seed": seed,
              "reid_batch": f"{REID_P}x{REID_K} per modality at 256x128",
              "gen_batch": f"{GEN_ROWS} + {GEN_ROWS} at 128x64",
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


def _commit(repo: str) -> str:
  try:
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git work tree)"


def main(argv):
  """Entry point: flags -> run -> table (and JSON); exit 1 if a row is off."""
  del argv
  rows, settings = run(FLAGS.authors_repo, FLAGS.weights, FLAGS.seed)
  print(f"authors' code {settings['authors_commit']} (torch {settings['torch']}) vs "
        f"jsia_tf (TensorFlow {settings['tensorflow']}); weights: {settings['weights']}; "
        f"re-id batch {settings['reid_batch']}, G batch {settings['gen_batch']}")
  print(parity.format_table(rows))
  count = settings["macs"]
  print(f"MACs of one step (convolutions, their backward, matrix products): authors "
        f"{count['authors_gmacs']} G, jsia_tf {count['jsia_tf_gmacs']} G")
  if FLAGS.output_json:
    with open(FLAGS.output_json, "w") as f:
      json.dump(parity.to_json(rows, settings), f, indent=2)
    print(f"wrote {FLAGS.output_json}")
  if not all(r.ok for r in rows):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
