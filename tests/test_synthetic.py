"""The generated RGB-IR data set: layouts, modalities, determinism, NIR premise."""

import glob
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import readers
from jsia_tf.data import synthetic
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols


def _ids(path):
  with open(path) as f:
    return [int(t) for t in f.read().strip().split(",")]


def _digest(root):
  h = hashlib.sha256()
  for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
    if os.path.isfile(path):
      h.update(os.path.relpath(path, root).encode())
      with open(path, "rb") as f:
        h.update(f.read())
  return h.hexdigest()


def _channel_spread(path):
  image = np.asarray(Image.open(path).convert("RGB"), np.float32)
  return float(np.abs(image - image.mean(axis=2, keepdims=True)).max(axis=2).mean())


def test_sysu_layout(sysu_dir):
  assert sorted(os.listdir(sysu_dir)) == [f"cam{c}" for c in range(1, 7)] + [
      "exp", synthetic.RECIPE_FILE]
  splits = {s: _ids(layouts.sysu_split_path(sysu_dir, s))
            for s in layouts.SYSU_SPLIT_FILES}
  assert splits["available"] == list(range(1, 13))
  parts = splits["train"] + splits["val"] + splits["test"]
  assert sorted(parts) == splits["available"]  # disjoint, and they cover every id
  assert all(len(splits[s]) >= 1 for s in ("train", "val", "test"))
  cams_of = {pid: [c for c in range(1, 7)
                   if os.path.isdir(f"{sysu_dir}/cam{c}/{pid:04d}")]
             for pid in splits["available"]}
  for pid, cams in cams_of.items():
    assert set(cams) & set(layouts.SYSU_RGB_CAMERAS), pid
    assert set(cams) & set(layouts.SYSU_IR_CAMERAS), pid
    for c in cams:
      names = sorted(os.listdir(f"{sysu_dir}/cam{c}/{pid:04d}"))
      assert 2 <= len(names) <= 5
      assert names == [f"{k:04d}.jpg" for k in range(1, len(names) + 1)]
  # As in the real set, not every identity is seen by every camera.
  assert any(len(cams) < 6 for cams in cams_of.values())


def test_ir_images_are_grey_and_rgb_images_are_not(sysu_dir):
  for cam in range(1, 7):
    files = glob.glob(f"{sysu_dir}/cam{cam}/*/*.jpg")
    spread = np.mean([_channel_spread(p) for p in files])
    if cam in layouts.SYSU_IR_CAMERAS:
      assert spread < 1.5, (cam, spread)  # equal channels up to JPEG rounding
    else:
      assert spread > 8.0, (cam, spread)


def test_image_sizes_vary_like_crops(sysu_dir):
  sizes = {Image.open(p).size for p in glob.glob(f"{sysu_dir}/cam*/*/*.jpg")}
  widths, heights = zip(*sizes)
  assert len(sizes) > 5
  assert 0.4 < np.mean(widths) / np.mean(heights) < 0.6
  assert 48 <= min(heights) and max(heights) <= 80  # mean 64 +- 12%


def test_regdb_layout(regdb_dir):
  for folder in ("Visible", "Thermal"):
    assert sorted(os.listdir(f"{regdb_dir}/{folder}"), key=int) == [
        str(i) for i in range(1, 7)]
    for pid in range(1, 7):
      files = sorted(glob.glob(f"{regdb_dir}/{folder}/{pid}/*.bmp"))
      assert len(files) == 10
      assert Image.open(files[0]).size == (64, 128)
  spread_t = np.mean([_channel_spread(p) for p in glob.glob(f"{regdb_dir}/Thermal/*/*")])
  spread_v = np.mean([_channel_spread(p) for p in glob.glob(f"{regdb_dir}/Visible/*/*")])
  assert spread_t == 0.0 and spread_v > 8.0  # BMP is lossless: exact grey
  for trial in range(1, 11):
    pids = {}
    for split in ("train", "test"):
      for modality in (layouts.RGB, layouts.IR):
        with open(layouts.regdb_idx_path(regdb_dir, split, modality, trial)) as f:
          lines = [l.split() for l in f.read().splitlines()]
        assert len(lines) == 30  # 3 ids x 10 images
        for rel, label in lines:
          assert os.path.isfile(os.path.join(regdb_dir, rel))
          assert rel.startswith(layouts.REGDB_FOLDERS[modality] + "/")
        pids[split] = {int(rel.split("/")[1]) for rel, _ in lines}
        assert sorted({int(l) for _, l in lines}) == [0, 1, 2]
    assert not pids["train"] & pids["test"]


@pytest.mark.parametrize("layout", ["sysu", "llcm"])
def test_deterministic_from_seed(tmp_path, layout):
  def make(name, seed):
    cfg = synthetic.SyntheticConfig(output_dir=str(tmp_path / name), num_ids=4,
                                    min_images=1, max_images=2, image_height=48,
                                    seed=seed, num_workers=1, layout=layout)
    synthetic.generate(cfg, log=lambda _: None)
    return _digest(str(tmp_path / name))

  a = make("a", 7)
  # Two worker processes render in another order but write the same bytes.
  cfg = synthetic.SyntheticConfig(output_dir=str(tmp_path / "b"), num_ids=4,
                                  min_images=1, max_images=2, image_height=48, seed=7,
                                  num_workers=2, layout=layout)
  synthetic.generate(cfg, log=lambda _: None)
  assert _digest(str(tmp_path / "b")) == a
  assert make("c", 8) != a


def test_refuses_existing_output_dir_without_overwrite(tmp_path):
  (tmp_path / "out").mkdir()
  cfg = synthetic.SyntheticConfig(output_dir=str(tmp_path / "out"), num_ids=3,
                                  min_images=1, max_images=1, num_workers=1)
  with pytest.raises(errors.DataError, match="already exists.*--overwrite"):
    synthetic.generate(cfg)


@pytest.mark.parametrize("field,value,flag", [
    ("num_ids", 2, "--num_ids=2"), ("min_images", 0, "--min_images=0"),
    ("layout", "market", "--layout='market'"), ("output_dir", "", "--output_dir=''")])
def test_config_errors_name_the_flag(field, value, flag):
  kwargs = {"output_dir": "/tmp/x", field: value}
  with pytest.raises(errors.ConfigError, match=flag.replace("'", ".")):
    synthetic.SyntheticConfig(**kwargs)


def test_nir_is_many_to_one_and_not_monotone_in_colour():
  rng = np.random.default_rng(0)
  colours = rng.uniform(0, 1, (20000, 3)).astype(np.float32)
  grey = synthetic.nir(colours)
  # Different colours, same grey: the grey takes far fewer distinct levels.
  far = np.linalg.norm(colours[:1000, None] - colours[None, :1000], axis=-1) > 0.5
  same = np.abs(grey[:1000, None] - grey[None, :1000]) < 0.01
  assert (far & same).sum() > 1000
  # Similar colours, very different greys.
  step = colours + np.float32(0.05) * np.array([1, 1, 1], np.float32) / np.sqrt(3)
  assert np.max(np.abs(synthetic.nir(step) - grey)) > 0.25
  # And the visible brightness (luma) of a garment says little about its IR grey,
  # so matching colours across modalities does not solve RGB-IR re-id.
  luma = colours @ np.array([0.299, 0.587, 0.114], np.float32)
  assert abs(np.corrcoef(luma, grey)[0, 1]) < 0.2


def test_like_sysu_test_fits_the_official_perm_file(tmp_path):
  """The test split is the real test set's shape: its ids, cameras and image counts,
  so that `evaluate --perm_file=<official>` runs on the generated set."""
  root = str(tmp_path / "sysu")
  synthetic.generate(synthetic.SyntheticConfig(
      layout="sysu", output_dir=root, num_ids=98, like_sysu_test=True, image_height=32,
      min_images=1, max_images=2), log=lambda *a: None)
  perm, official = protocols.official_test_layout(protocols.OFFICIAL_SPLIT_DIR)
  test = readers.read_sysu(root, "test")
  assert sorted((r.pid, r.camera, r.frame) for r in test) == sorted(
      map(tuple, official.tolist()))
  assert len(test) == 10578  # the real test set: 3,803 IR and 6,775 RGB images
  train_ids = {r.pid for r in readers.read_sysu(root, "train")}
  assert len(train_ids) == 2 and not train_ids & {r.pid for r in test}
  # Every trial's indices of every (camera, id) fall inside the generated folder.
  counts = {}
  for r in test:
    counts[(r.camera, r.pid)] = counts.get((r.camera, r.pid), 0) + 1
  for (cam, pid), n in counts.items():
    rows = perm.get(cam, pid)
    assert rows.shape == (10, n) and rows.min() >= 1 and rows.max() <= n
  feats = features_lib.FeatureSet(
      features=np.random.default_rng(0).normal(size=(len(test), 4)).astype(np.float32),
      ids=np.array([r.pid for r in test]), cams=np.array([r.camera for r in test]),
      frames=np.array([r.frame for r in test]),
      modality=np.array([r.modality for r in test]))
  features_lib.save(str(tmp_path / "f.npz"), feats)
  result = subprocess.run(
      [sys.executable, "-m", "jsia_tf.evaluate", f"--features={tmp_path / 'f.npz'}",
       "--protocol=sysu", "--mode=all", "--shots=1",
       f"--perm_file={os.path.join(protocols.OFFICIAL_SPLIT_DIR, 'rand_perm_cam.mat')}"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "all-search single-shot" in result.stdout


@pytest.mark.parametrize("cfg, flag", [
    (dict(layout="regdb", like_sysu_test=True), "--like_sysu_test"),
    (dict(layout="sysu", like_sysu_test=True, num_ids=97), "--num_ids=97"),
])
def test_like_sysu_test_errors_name_the_flag(cfg, flag):
  with pytest.raises(errors.ConfigError, match=flag):
    synthetic.SyntheticConfig(output_dir="x", **cfg)


def test_the_recipe_is_written_and_read_back(tmp_path):
  cfg = synthetic.SyntheticConfig(layout="regdb", output_dir=str(tmp_path / "r"),
                                  num_ids=4, seed=3, num_workers=1)
  synthetic.generate(cfg, log=lambda *a: None)
  assert synthetic.read_recipe(cfg.output_dir) == synthetic.recipe(cfg)
  assert synthetic.recipe(cfg)["seed"] == 3 and "output_dir" not in synthetic.recipe(cfg)
  assert synthetic.read_recipe(str(tmp_path)) is None
