"""A procedural RGB-infrared pedestrian data set, written in the real on-disk layouts.

Every identity is a fixed set of attributes (clothing colours and pattern, lower-body
garment, sleeves, hair, bag, build). Every image re-renders it with a new pose, view,
scale and shift, over a camera-specific background, under camera-specific illumination,
with blur and noise.

The infrared rendering destroys colour the way near-infrared does: a material's grey
level is `nir(colour)`, a smooth but oscillating many-to-one function of its colour, so
different colours can map to one grey and similar colours to different greys. Colour
therefore does not transfer from RGB to IR; shape, pattern and layout still carry the
identity. That is the premise of the paper (IR to RGB is one-to-many).

Command line: `python -m jsia_tf.generate --layout=sysu|regdb --output_dir=DIR`.
"""

import dataclasses
import io
import json
import multiprocessing
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import progress as progress_lib
from jsia_tf.data import layouts
from jsia_tf.evaluation import protocols

# Material indices of the label map; 0 is background.
BACKGROUND, SKIN, HAIR, UPPER, UPPER2, LOWER, SHOES, BAG = range(8)
NUM_MATERIALS = 8

PATTERNS = ("solid", "hstripes", "vstripes", "two_tone", "logo")
LOWER_TYPES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder")

# Near-infrared response: grey = 0.5 + A * sin(2 pi <w, rgb> + phi). |grad| is about
# 7 per unit of colour, so a colour step of 0.05 can move the grey by 0.35, while
# every plane <w, rgb> = const (many colours) maps to one grey.
_NIR_W = np.array([1.7, 2.3, 1.1], np.float32)
_NIR_AMPLITUDE = 0.38
_NIR_PHASE = 0.6
_NIR_SKIN = 0.82  # skin is bright under NIR illumination whatever its visible tone


SYSU_TEST_IDS = 96  # the real SYSU-MM01 test split's identities


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What to generate. Field names are the flags of `python -m jsia_tf.generate`."""

  layout: str = "sysu"
  output_dir: str = ""
  num_ids: int = 100
  seed: int = 0
  # SYSU layout: images per (camera, identity), drawn uniformly in [min, max].
  min_images: int = 4
  max_images: int = 12
  # Mean crop height of SYSU-layout images; widths and heights vary around it like
  # real detector crops. RegDB images are always 128 x 64, as in the real set.
  image_height: int = 128
  # SYSU layout: the test split is the real SYSU-MM01 test set's shape (its 96 ids,
  # cameras and per-(camera, id) image counts, from the official split files), so
  # that the official rand_perm_cam.mat fits the generated set.
  like_sysu_test: bool = False
  num_workers: int = 2
  overwrite: bool = False

  def __post_init__(self):
    config_lib.require(self.layout in config_lib.SYNTHETIC_LAYOUTS, "layout",
                       self.layout, ", ".join(config_lib.SYNTHETIC_LAYOUTS))
    config_lib.require(bool(self.output_dir), "output_dir", self.output_dir,
                       "a directory to write the data set into")
    # The SYSU split needs at least one id in each of train, val and test; RegDB
    # halves the ids per trial.
    config_lib.require(self.num_ids >= 3, "num_ids", self.num_ids, "an integer >= 3")
    config_lib.require(not self.like_sysu_test or self.layout == "sysu", "like_sysu_test",
                       self.like_sysu_test, "only with --layout=sysu")
    config_lib.require(not self.like_sysu_test or self.num_ids >= SYSU_TEST_IDS + 2,
                       "num_ids", self.num_ids,
                       f"an integer >= {SYSU_TEST_IDS + 2} with --like_sysu_test (the "
                       f"real test set's {SYSU_TEST_IDS} ids, then at least one train "
                       f"and one val id)")
    config_lib.require(1 <= self.min_images <= self.max_images, "min_images",
                       self.min_images, f"an integer in 1..max_images={self.max_images}")
    config_lib.require(32 <= self.image_height <= 512, "image_height",
                       self.image_height, "an integer in 32..512")
    config_lib.require(self.num_workers >= 1, "num_workers", self.num_workers,
                       "an integer >= 1")


def nir(rgb: np.ndarray) -> np.ndarray:
  """Near-infrared grey level in [0, 1] of material colours `rgb` [..., 3] in [0, 1]."""
  phase = 2.0 * np.pi * (rgb @ _NIR_W) + _NIR_PHASE
  return np.clip(0.5 + _NIR_AMPLITUDE * np.sin(phase), 0.04, 0.96).astype(np.float32)


# ---------------------------------------------------------------------------------
# Identities


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  i = int(h * 6.0) % 6
  f = h * 6.0 - int(h * 6.0)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v),
                   (v, p, q)][i], np.float32)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  # Real clothing: many dark and desaturated garments, some vivid ones.
  if rng.random() < 0.3:
    return np.full(3, rng.uniform(0.08, 0.9), np.float32)  # black / grey / white
  return _hsv_to_rgb(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.25, 0.95))


def make_identity(pid: int, seed: int) -> Dict:
  """The fixed attributes of identity `pid` (a pure function of `pid` and `seed`)."""
  rng = np.random.default_rng([seed, 7919, pid])
  colours = np.zeros((NUM_MATERIALS, 3), np.float32)
  colours[SKIN] = _hsv_to_rgb(rng.uniform(0.02, 0.09), rng.uniform(0.25, 0.6),
                              rng.uniform(0.35, 0.95))
  hair_tones = [(0.05, 0.04, 0.03), (0.25, 0.15, 0.08), (0.75, 0.6, 0.3),
                (0.55, 0.55, 0.55)]
  colours[HAIR] = np.array(hair_tones[rng.choice(4, p=[0.55, 0.25, 0.1, 0.1])])
  for material in (UPPER, UPPER2, LOWER, SHOES, BAG):
    colours[material] = _random_colour(rng)
  return {
      "pid": pid,
      "colours": colours,
      "pattern": PATTERNS[rng.choice(len(PATTERNS), p=[0.4, 0.2, 0.1, 0.15, 0.15])],
      "stripe_period": rng.uniform(0.03, 0.07),
      "long_sleeves": bool(rng.random() < 0.6),
      "lower_type": LOWER_TYPES[rng.choice(3, p=[0.65, 0.2, 0.15])],
      "long_hair": bool(rng.random() < 0.35),
      "bag": BAGS[rng.choice(3, p=[0.45, 0.3, 0.25])],
      "bag_side": float(rng.choice([-1.0, 1.0])),
      "build": rng.uniform(0.85, 1.2),
      "height": rng.uniform(0.93, 1.03),
  }


# ---------------------------------------------------------------------------------
# Rendering a person into a material label map


def _capsule(u, v, a, b, radius):
  """Mask of points within `radius` of segment a-b, and the position t in [0, 1]."""
  du, dv = b[0] - a[0], b[1] - a[1]
  t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv + 1e-9), 0, 1)
  d2 = (u - a[0] - t * du) ** 2 + (v - a[1] - t * dv) ** 2
  return d2 <= radius * radius, t


def _ellipse(u, v, cu, cv, ru, rv):
  return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _box(u, v, u0, u1, v0, v1):
  return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def render_labels(ident: Dict, height: int, width: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
  """Renders one new pose/view of `ident`: a material label map [H, W] (uint8) and a
  shading map [H, W] (float32, multiplies the material's intensity)."""
  b = ident["build"]
  person_h = height * rng.uniform(0.82, 0.95) * ident["height"]
  top = (height - person_h) / 2 + rng.uniform(-0.04, 0.04) * height
  centre = width / 2 + rng.uniform(-0.08, 0.08) * width
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  v = (y + 0.5 - top) / person_h
  u = (x + 0.5 - centre) / person_h
  back_view = rng.random() < 0.5
  mirror = -1.0 if rng.random() < 0.5 else 1.0
  u = u * mirror
  stride = rng.uniform(-1.0, 1.0)

  labels = np.zeros((height, width), np.uint8)

  def paint(mask, material):
    labels[mask] = material

  shoulder_v, hip_v, ankle_v = 0.19, 0.5, 0.925
  side = ident["bag_side"]
  if ident["bag"] == "backpack" and not back_view:
    paint(_box(u, v, -0.115 * b, 0.115 * b, 0.21, 0.43), BAG)  # seen behind the torso
  if ident["long_hair"]:
    paint(_box(u, v, -0.058, 0.058, 0.09, 0.27), HAIR)

  # Legs, each a capsule; shorts leave the shins bare.
  for s, phase in ((-1.0, stride), (1.0, -stride)):
    hip = (s * 0.045 * b, hip_v)
    ankle = (s * 0.05 * b + 0.045 * phase, ankle_v)
    mask, t = _capsule(u, v, hip, ankle, 0.036 * b)
    # Shorts and skirts leave the lower leg bare; trousers cover it.
    covered = t < (1.0 if ident["lower_type"] == "trousers" else 0.45)
    paint(mask & covered, LOWER)
    paint(mask & ~covered, SKIN)
    shoe, _ = _capsule(u, v, ankle, (ankle[0] + 0.02 * mirror, ankle[1] + 0.035), 0.026)
    paint(shoe, SHOES)
  if ident["lower_type"] == "skirt":
    width_at = 0.085 * b + (v - 0.47) * 0.25
    paint((v >= 0.47) & (v <= 0.7) & (np.abs(u) <= width_at), LOWER)

  # Torso: a trapezoid from the shoulders to the hips, then its pattern.
  half = 0.1 * b - (v - shoulder_v) * 0.05 * b
  torso = (v >= shoulder_v - 0.015) & (v <= hip_v + 0.02) & (np.abs(u) <= half)
  paint(torso, UPPER)
  period = ident["stripe_period"]
  pattern = ident["pattern"]
  if pattern == "hstripes":
    paint(torso & (np.mod(v, period) < period / 2), UPPER2)
  elif pattern == "vstripes":
    paint(torso & (np.mod(u + 1.0, period) < period / 2), UPPER2)
  elif pattern == "two_tone":
    paint(torso & (v > (shoulder_v + hip_v) / 2), UPPER2)
  elif pattern == "logo" and not back_view:
    paint(_box(u, v, -0.04, 0.04, 0.25, 0.33), UPPER2)
  paint(_box(u, v, -0.022, 0.022, 0.15, shoulder_v), SKIN)  # neck

  # Arms swing against the legs; sleeves cover the upper part or all of the arm.
  for s, phase in ((-1.0, -stride), (1.0, stride)):
    shoulder = (s * 0.098 * b, shoulder_v + 0.015)
    hand = (s * 0.125 * b + 0.05 * phase, hip_v + 0.02)
    mask, t = _capsule(u, v, shoulder, hand, 0.027 * b)
    sleeve = 0.9 if ident["long_sleeves"] else 0.4
    paint(mask & (t < sleeve), UPPER)
    paint(mask & (t >= sleeve), SKIN)

  head = _ellipse(u, v, 0.0, 0.095, 0.052, 0.066)
  paint(head, HAIR if back_view else SKIN)
  paint(head & (v < 0.075), HAIR)

  if ident["bag"] == "backpack":
    if back_view:
      paint(_box(u, v, -0.08 * b, 0.08 * b, 0.21, 0.43), BAG)
    else:
      for s in (-1.0, 1.0):
        paint(_box(u, v, s * 0.06 - 0.012, s * 0.06 + 0.012, shoulder_v, 0.36), BAG)
  elif ident["bag"] == "shoulder":
    strap, _ = _capsule(u, v, (-side * 0.07, shoulder_v), (side * 0.12, 0.44), 0.01)
    paint(strap, BAG)
    paint(_box(u, v, side * 0.12 - 0.045, side * 0.12 + 0.045, 0.42, 0.53), BAG)

  # Cylindrical shading across the body and a light falling from above.
  shading = (1.0 - 0.35 * np.clip(np.abs(u) / (0.14 * b), 0, 1) ** 2) * (1.05 - 0.15 * v)
  return labels, shading.astype(np.float32)


# ---------------------------------------------------------------------------------
# Cameras


@dataclasses.dataclass(frozen=True)
class Camera:
  """A camera's fixed look: modality, scene, illumination and sensor."""

  cam_id: int
  modality: int
  thermal: bool  # RegDB's far-infrared camera: body heat, not reflected NIR
  background: np.ndarray  # [256, 256, 3] float32 texture the crops are cut from
  colour_cast: np.ndarray  # [3] per-channel gain (RGB cameras)
  gain: float
  gamma: float
  vignetting: float  # active IR illuminators light the centre more
  noise: float
  blur: float


def _smooth_noise(rng, size, scale):
  return ndimage.gaussian_filter(rng.standard_normal((size, size)), scale,
                                 mode="wrap").astype(np.float32)


def make_camera(cam_id: int, modality: int, outdoor: bool, thermal: bool,
                seed: int) -> Camera:
  """Builds camera `cam_id`; a pure function of its arguments."""
  rng = np.random.default_rng([seed, 104729, cam_id])
  size = 256
  texture = _smooth_noise(rng, size, 12.0)
  texture = 0.5 * texture / (np.abs(texture).max() + 1e-6)
  yy = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
  if outdoor:
    base = np.array([0.45, 0.5, 0.4], np.float32) + rng.uniform(-0.12, 0.12, 3)
    floor = np.array([0.5, 0.48, 0.45], np.float32) + rng.uniform(-0.1, 0.1, 3)
  else:
    base = np.array([0.7, 0.68, 0.62], np.float32) + rng.uniform(-0.15, 0.15, 3)
    floor = np.array([0.4, 0.35, 0.3], np.float32) + rng.uniform(-0.1, 0.1, 3)
  floor_line = rng.uniform(0.6, 0.85)
  is_floor = (yy > floor_line).astype(np.float32)[..., None]
  background = (1 - is_floor) * base + is_floor * floor
  background = background * (1.0 + 0.6 * texture[..., None])
  # A few fixed objects (doors, windows, poles) of the scene.
  for _ in range(int(rng.integers(2, 6))):
    y0, x0 = rng.integers(0, size - 40, 2)
    h, w = rng.integers(20, 120), rng.integers(8, 60)
    background[y0:y0 + h, x0:x0 + w] = _random_colour(rng) * 0.9
  background = np.clip(background, 0.0, 1.0)
  if modality == layouts.IR:
    if thermal:
      grey = 0.12 + 0.12 * np.clip(texture + 0.3, 0, 1)
    else:
      grey = nir(background) * rng.uniform(0.6, 0.9)
    background = np.repeat(grey[..., None], 3, axis=-1)
  return Camera(
      cam_id=cam_id, modality=modality, thermal=thermal,
      background=background.astype(np.float32),
      colour_cast=(1.0 + rng.uniform(-0.15, 0.15, 3)).astype(np.float32),
      gain=float(rng.uniform(0.8, 1.15)),
      gamma=float(rng.uniform(0.75, 1.3)),
      vignetting=float(rng.uniform(0.1, 0.35)),
      noise=float(rng.uniform(0.01, 0.02) if modality == layouts.RGB else
                  rng.uniform(0.025, 0.05)),
      blur=float(rng.uniform(0.3, 0.7) if not thermal else 1.2))


def material_intensities(ident: Dict, camera: Camera) -> np.ndarray:
  """[NUM_MATERIALS, 3] colour of each material as `camera` records it."""
  colours = ident["colours"]
  if camera.modality == layouts.RGB:
    return colours
  if camera.thermal:
    # Thermal: skin is the warmest; clothing warmth depends on the fabric (a
    # many-to-one function of its colour, compressed); bags are cold.
    grey = 0.55 + 0.3 * (nir(colours) - 0.5)
    grey[SKIN], grey[HAIR], grey[BAG] = 0.93, 0.62, 0.3
  else:
    grey = nir(colours)
    grey[SKIN] = _NIR_SKIN
  return np.repeat(grey[:, None], 3, axis=1)


def render_image(ident: Dict, camera: Camera, height: int, width: int,
                 rng: np.random.Generator) -> np.ndarray:
  """One image of `ident` seen by `camera`: uint8 [height, width, 3]."""
  labels, shading = render_labels(ident, height, width, rng)
  person = material_intensities(ident, camera)[labels] * shading[..., None]
  by = rng.integers(0, camera.background.shape[0] - height + 1)
  bx = rng.integers(0, camera.background.shape[1] - width + 1)
  background = camera.background[by:by + height, bx:bx + width]
  image = np.where((labels == BACKGROUND)[..., None], background, person)
  brightness = camera.gain * rng.uniform(0.75, 1.2)
  if camera.modality == layouts.RGB:
    image = image * camera.colour_cast * brightness
  else:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((yy / height - 0.5) ** 2 + (xx / width - 0.5) ** 2) / 0.5
    image = image * brightness * (1.0 - camera.vignetting * r2)[..., None]
    image = np.clip(image, 0.0, 1.0) ** camera.gamma
  image = ndimage.gaussian_filter(image, (camera.blur * rng.uniform(0.6, 1.4),) * 2 +
                                  (0,))
  noise_shape = image.shape if camera.modality == layouts.RGB else image.shape[:2] + (1,)
  image = image + camera.noise * rng.standard_normal(noise_shape).astype(np.float32)
  return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _crop_size(rng, mean_height):
  h = int(round(mean_height * rng.uniform(0.88, 1.12)))
  return h, int(round(h * rng.uniform(0.42, 0.55)))


# ---------------------------------------------------------------------------------
# Writing the layouts


def _sysu_cameras(seed):
  outdoor = {1: False, 2: False, 3: False, 4: True, 5: True, 6: True}
  return {c: make_camera(c, layouts.sysu_modality(c), outdoor[c], False, seed)
          for c in layouts.SYSU_CAMERAS}


def sysu_plan(cfg: SyntheticConfig) -> Tuple[Dict[str, List[int]], List[Tuple]]:
  """The SYSU-layout plan: the id splits and the (camera, pid, num_images) folders.

  As in the real set, not every identity is seen by every camera, but every one is
  seen by at least one RGB and one IR camera.
  """
  rng = np.random.default_rng([cfg.seed, 1])
  if cfg.like_sysu_test:
    official = _official_test_counts()
    test = sorted({pid for _, pid in official})
    # The other ids take the smallest numbers the official test ids leave free.
    others = [i for i in range(1, cfg.num_ids + len(test) + 1) if i not in set(test)]
    others = np.array(others[:cfg.num_ids - len(test)])
    order = rng.permutation(others)
    n_val = max(1, int(round(0.25 * len(others))))  # 20 % of all ids, as below
    splits = {"test": test, "val": sorted(order[:n_val].tolist()),
              "train": sorted(order[n_val:].tolist())}
  else:
    official = {}
    order = rng.permutation(np.arange(1, cfg.num_ids + 1))
    n_test = max(1, int(round(0.2 * cfg.num_ids)))
    n_val = max(1, int(round(0.2 * cfg.num_ids)))
    splits = {
        "test": sorted(order[:n_test].tolist()),
        "val": sorted(order[n_test:n_test + n_val].tolist()),
        "train": sorted(order[n_test + n_val:].tolist()),
    }
  ids = sorted(splits["test"] + splits["val"] + splits["train"])
  splits["available"] = ids
  folders = []
  for pid in ids:
    if pid in splits["test"] and official:
      folders += [(cam, pid, n) for (cam, p), n in official.items() if p == pid]
      continue
    for cams, p in ((layouts.SYSU_RGB_CAMERAS, 0.7), (layouts.SYSU_IR_CAMERAS, 0.8)):
      chosen = [c for c in cams if rng.random() < p]
      if not chosen:
        chosen = [int(rng.choice(cams))]
      for cam in chosen:
        folders.append((cam, pid, int(rng.integers(cfg.min_images, cfg.max_images + 1))))
  return splits, sorted(folders)


def _official_test_counts() -> Dict[Tuple[int, int], int]:
  """{(camera, id): number of images} of the real SYSU-MM01 test set, from the
  official split files shipped with the package."""
  _, rows = protocols.official_test_layout(protocols.OFFICIAL_SPLIT_DIR)
  cams_ids, counts = np.unique(rows[:, [1, 0]], axis=0, return_counts=True)
  return {(int(c), int(p)): int(n) for (c, p), n in zip(cams_ids, counts)}


def _encode(image: np.ndarray, fmt: str) -> bytes:
  buf = io.BytesIO()
  if fmt == "JPEG":
    Image.fromarray(image).save(buf, format="JPEG", quality=92)
  else:
    Image.fromarray(image).save(buf, format=fmt)
  return buf.getvalue()


_CAMERAS_CACHE = {}


def _cameras(layout, seed):
  key = (layout, seed)
  if key not in _CAMERAS_CACHE:
    if layout == "sysu":
      _CAMERAS_CACHE[key] = _sysu_cameras(seed)
    elif layout == "llcm":
      _CAMERAS_CACHE[key] = _llcm_cameras(seed)
    else:
      _CAMERAS_CACHE[key] = {
          layouts.REGDB_VISIBLE_CAMERA: make_camera(
              layouts.REGDB_VISIBLE_CAMERA, layouts.RGB, True, False, seed),
          layouts.REGDB_THERMAL_CAMERA: make_camera(
              layouts.REGDB_THERMAL_CAMERA, layouts.IR, True, True, seed)}
  return _CAMERAS_CACHE[key]


def _render_folder(job) -> int:
  """Renders and writes one (camera, identity) folder; returns its image count."""
  layout, seed, mean_height, cam, pid, count, folder, names = job
  camera = _cameras(layout, seed)[cam]
  ident = make_identity(pid, seed)
  rng = np.random.default_rng([seed, 2, cam, pid])
  os.makedirs(folder, exist_ok=True)
  for name in names[:count]:
    if layout != "regdb":
      h, w = _crop_size(rng, mean_height)
      fmt = "JPEG"
    else:
      h, w, fmt = 128, 64, "BMP"
    with open(os.path.join(folder, name), "wb") as f:
      f.write(_encode(render_image(ident, camera, h, w, rng), fmt))
  return count


def _regdb_name(modality: int, pid: int, n: int) -> str:
  prefix = "v" if modality == layouts.RGB else "t"
  return f"{prefix}_{pid:04d}_{n:02d}.bmp"


REGDB_IMAGES_PER_MODALITY = 10  # as in the real RegDB


def _write_sysu(cfg: SyntheticConfig, root: str) -> List:
  splits, folders = sysu_plan(cfg)
  os.makedirs(os.path.join(root, "exp"))
  for split, ids in splits.items():
    with open(layouts.sysu_split_path(root, split), "w") as f:
      f.write(",".join(str(i) for i in ids) + "\n")
  return [("sysu", cfg.seed, cfg.image_height, cam, pid, n,
           os.path.join(root, f"cam{cam}", f"{pid:04d}"),
           [f"{k:04d}.jpg" for k in range(1, n + 1)]) for cam, pid, n in folders]


def _write_regdb(cfg: SyntheticConfig, root: str) -> List:
  ids = list(range(1, cfg.num_ids + 1))
  n = REGDB_IMAGES_PER_MODALITY
  os.makedirs(os.path.join(root, "idx"))
  for trial in range(1, layouts.REGDB_NUM_TRIALS + 1):
    order = np.random.default_rng([cfg.seed, 3, trial]).permutation(ids)
    half = len(ids) // 2
    for split, split_ids in (("train", sorted(order[:half].tolist())),
                             ("test", sorted(order[half:].tolist()))):
      for modality, folder in layouts.REGDB_FOLDERS.items():
        with open(layouts.regdb_idx_path(root, split, modality, trial), "w") as f:
          for label, pid in enumerate(split_ids):
            for k in range(1, n + 1):
              f.write(f"{folder}/{pid}/{_regdb_name(modality, pid, k)} {label}\n")
  cams = {layouts.RGB: layouts.REGDB_VISIBLE_CAMERA,
          layouts.IR: layouts.REGDB_THERMAL_CAMERA}
  return [("regdb", cfg.seed, 128, cams[m], pid, n,
           os.path.join(root, layouts.REGDB_FOLDERS[m], str(pid)),
           [_regdb_name(m, pid, k) for k in range(1, n + 1)])
          for m in layouts.REGDB_FOLDERS for pid in ids]


def _llcm_cameras(seed):
  """LLCM's nine cameras, each in its visible and its near-infrared mode (keyed
  `_llcm_key`); cameras 5 to 9 outdoor."""
  return {_llcm_key(m, c): make_camera(_llcm_key(m, c), m, c >= 5, False, seed)
          for m in (layouts.RGB, layouts.IR) for c in layouts.LLCM_CAMERAS}


def _llcm_key(modality: int, camera: int) -> int:
  """One camera mode's key: one number per (modality, camera)."""
  return 10 * modality + camera


def llcm_plan(cfg: SyntheticConfig) -> Tuple[Dict[str, List[int]], List[Tuple]]:
  """The LLCM-layout plan: the train / test ids (a third for test, as the real
  set's 351 of 1,064) and the (split, modality, camera, pid, num_images) folders.
  Every identity is seen by at least one visible and one infrared camera mode; the
  test set's infrared images come from every camera but cam 3, as the real set's."""
  rng = np.random.default_rng([cfg.seed, 5])
  order = rng.permutation(np.arange(1, cfg.num_ids + 1))
  n_test = max(1, int(round(cfg.num_ids / 3)))
  splits = {"test": sorted(order[:n_test].tolist()),
            "train": sorted(order[n_test:].tolist())}
  folders = []
  for split, ids in splits.items():
    for pid in ids:
      for modality in (layouts.RGB, layouts.IR):
        cams = [c for c in layouts.LLCM_CAMERAS
                if not (split == "test" and modality == layouts.IR and c == 3)]
        chosen = [c for c in cams if rng.random() < 0.4] or [int(rng.choice(cams))]
        for cam in chosen:
          folders.append((split, modality, cam, pid,
                          int(rng.integers(cfg.min_images, cfg.max_images + 1))))
  return splits, sorted(folders)


def _llcm_name(pid: int, cam: int, k: int) -> str:
  return f"{pid:04d}_c{cam:02d}_{k:04d}.jpg"


def _write_llcm(cfg: SyntheticConfig, root: str) -> List:
  splits, folders = llcm_plan(cfg)
  os.makedirs(os.path.join(root, "idx"))
  with open(os.path.join(root, layouts.LLCM_TEST_IDS), "w") as f:
    f.write(",".join(str(i) for i in splits["test"]) + "\n")
  folder_names = {("train", m): f"train_{'vis' if m == layouts.RGB else 'nir'}"
                  for m in (layouts.RGB, layouts.IR)}
  folder_names.update({("test", m): name for m, name in layouts.LLCM_TEST_FOLDERS.items()})
  lists = {m: [] for m in layouts.LLCM_TRAIN_LISTS}
  jobs = []
  for split, modality, cam, pid, n in folders:
    rel = f"{folder_names[(split, modality)]}/cam{cam}/{pid:04d}"
    names = [_llcm_name(pid, cam, k) for k in range(1, n + 1)]
    if split == "train":
      lists[modality] += [f"{rel}/{name} {pid}" for name in names]
    jobs.append(("llcm", cfg.seed, cfg.image_height, _llcm_key(modality, cam), pid, n,
                 os.path.join(root, rel), names))
  for modality, list_name in layouts.LLCM_TRAIN_LISTS.items():
    with open(os.path.join(root, list_name), "w") as f:
      f.write("\n".join(lists[modality]) + "\n")
  return jobs


_WRITERS = {"sysu": _write_sysu, "regdb": _write_regdb, "llcm": _write_llcm}


# The file in a generated set that records the flags its bytes are a function of.
RECIPE_FILE = "generator.json"
# SyntheticConfig fields that do not change the bytes of the set.
_NOT_RECIPE = ("output_dir", "num_workers", "overwrite")


def recipe(cfg: SyntheticConfig) -> Dict:
  """The fields of `cfg` that determine the generated bytes."""
  return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_RECIPE}


def read_recipe(root: str) -> Optional[Dict]:
  """The recipe a generated set at `root` was written with; None if it has none
  (not a generated set, or an unreadable file)."""
  try:
    with open(os.path.join(root, RECIPE_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def generate(cfg: SyntheticConfig, log=print) -> Dict:
  """Writes the data set of `cfg` to `cfg.output_dir` and returns a summary dict.

  The set is written to a temporary sibling directory and renamed into place, so an
  interrupted run never leaves a half-written data set that looks complete.
  """
  out = os.path.abspath(cfg.output_dir)
  if os.path.exists(out):
    if not cfg.overwrite:
      raise errors.DataError(
          f"{out} already exists; pass --overwrite to replace it or choose another "
          f"--output_dir")
    if not os.path.isdir(out):
      raise errors.DataError(f"{out} exists and is not a directory")
  tmp = f"{out}.partial-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  start = time.time()
  try:
    jobs = _WRITERS[cfg.layout](cfg, tmp)
    with open(os.path.join(tmp, RECIPE_FILE), "w") as f:
      json.dump(recipe(cfg), f, indent=2, sort_keys=True)
    total = sum(job[5] for job in jobs)
    done = 0
    if cfg.num_workers > 1:
      # fork would copy TF's threads if the caller imported TensorFlow; spawn is safe.
      ctx = multiprocessing.get_context("spawn")
      pool = ctx.Pool(cfg.num_workers)
      results = pool.imap_unordered(_render_folder, jobs, chunksize=4)
    else:
      pool = None
      results = map(_render_folder, jobs)
    try:
      progress = progress_lib.Progress(total, "generated", log, every=5.0)
      for count in results:
        done += count
        progress.update(done)
    finally:
      if pool is not None:
        pool.close()
        pool.join()
    if os.path.exists(out):
      shutil.rmtree(out)
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return {"layout": cfg.layout, "output_dir": out, "num_ids": cfg.num_ids,
          "num_images": total, "seconds": round(time.time() - start, 2)}
