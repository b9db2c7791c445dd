"""Feature extraction and the `python -m jsia_tf.evaluate` command."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import pipeline
from jsia_tf.data import readers
from jsia_tf.data import table as table_lib
from jsia_tf.evaluation import extract
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols

from conftest import REPO
from conftest import run_python
from conftest import user_env


def _tiny_model():
  keras.utils.set_random_seed(0)
  return keras.Sequential([keras.Input((32, 16, 3)), keras.layers.Conv2D(4, 3),
                           keras.layers.GlobalAveragePooling2D()])


def test_extract_embeds_every_test_image_once_in_order(sysu_dir):
  model = _tiny_model()
  calls = []

  def embed(x):
    calls.append(int(x.shape[0]))
    return model(x)

  cfg = config_lib.DataConfig(data_dir=sysu_dir, image_height=32, image_width=16)
  feats = extract.extract_test_features(embed, cfg, batch_size=16)
  records = readers.read_sysu(sysu_dir, "test")
  assert sum(calls) == len(records) == len(feats.features)
  assert [r.path for r in records] == list(feats.paths)
  np.testing.assert_array_equal(feats.ids, [r.pid for r in records])
  np.testing.assert_array_equal(feats.frames, [r.frame for r in records])
  table = table_lib.load_images(records, readers.relabel([r.pid for r in records]))

  def image(i):
    return pipeline.to_model_range(pipeline.decode(tf.constant(table.encoded[i]),
                                                   (32, 16)))[None]

  np.testing.assert_allclose(feats.features[5], model(image(5))[0], atol=1e-5)


@pytest.fixture(scope="module")
def features_file(sysu_dir, tmp_path_factory):
  records = readers.read_sysu(sysu_dir, "test")
  rng = np.random.default_rng(0)
  ids = np.array([r.pid for r in records])
  # Features that carry the identity, plus noise: far better than random ranking.
  centres = rng.standard_normal((ids.max() + 1, 16))
  feats = features_lib.FeatureSet(
      features=centres[ids] + 0.8 * rng.standard_normal((len(ids), 16)), ids=ids,
      cams=[r.camera for r in records], frames=[r.frame for r in records],
      modality=[r.modality for r in records])
  path = str(tmp_path_factory.mktemp("feats") / "test.npz")
  features_lib.save(path, feats)
  return path


def _run(*args):
  return run_python("-m", "jsia_tf.evaluate", *args, timeout=120)


def test_cli_table_and_json(features_file, sysu_dir, tmp_path):
  out = str(tmp_path / "report.json")
  id_list = os.path.join(sysu_dir, "exp", "test_id.txt")
  result = _run(f"--features={features_file}", f"--output_json={out}",
                f"--test_ids={id_list}")
  assert result.returncode == 0, result.stderr
  for name in ("all-search single-shot", "all-search multi-shot",
               "indoor-search single-shot", "indoor-search multi-shot"):
    assert name in result.stdout
  for column in ("R1", "R10", "R20", "mAP", "mINP"):
    assert column in result.stdout.splitlines()[0]
  with open(out) as f:
    report = json.load(f)
  single = report["settings"]["all-search single-shot"]
  assert single["num_trials"] == 10 and len(single["trials"]) == 10
  assert single["mean"]["R1"] == pytest.approx(np.mean([t["R1"] for t in single["trials"]]))
  assert single["mean"]["R1"] > 0.5  # identity-carrying features rank well
  assert report["config"]["distance"] == "cosine"
  # The official perm file does not fit a generated set of 12 ids: seeded draws, and
  # the report and the console say why.
  assert report["gallery_draws"].startswith("seeded: numpy default_rng(trial) (the "
                                            "official perm file does not fit")
  assert "gallery draws: seeded" in result.stdout
  with np.load(features_file) as data:
    num_rows, num_ids = len(data["ids"]), len(np.unique(data["ids"]))
  assert report["test_ids"] == [{"source": id_list, "kept_rows": num_rows,
                                 "kept_ids": num_ids, "left_out_rows": 0,
                                 "left_out_ids": 0}]
  assert f"test identities: {id_list}: {num_ids} identities, {num_rows} images" in (
      result.stdout)
  one = _run(f"--features={features_file}", "--mode=indoor", "--shots=10",
             "--num_trials=3", "--test_ids=all")
  assert one.returncode == 0, one.stderr
  assert "indoor-search multi-shot" in one.stdout and "all-search" not in one.stdout


def test_cli_rerank(features_file, tmp_path):
  out = str(tmp_path / "r.json")
  result = _run(f"--features={features_file}", "--test_ids=all", "--num_trials=2",
                "--rerank", "--rerank_k1=6", "--rerank_k2=3", f"--output_json={out}")
  assert result.returncode == 0, result.stderr
  assert "k-reciprocal re-ranking k1=6 k2=3 lambda=0.3" in result.stdout
  with open(out) as f:
    assert json.load(f)["rerank"] == {"k1": 6, "k2": 3, "lambda": 0.3}
  bad = _run(f"--features={features_file}", "--rerank", "--rerank_k2=9", "--rerank_k1=6")
  assert bad.returncode == 2 and "--rerank_k2=9 is invalid" in bad.stderr


def test_cli_from_features_does_not_import_tensorflow(features_file):
  """Evaluating a features file is numpy work: TensorFlow's import would cost more
  than the evaluation."""
  script = ("import runpy, sys\n"
            f"sys.argv = ['evaluate', '--features={features_file}', '--num_trials=2', "
            "'--test_ids=all']\n"
            "try:\n  runpy.run_module('jsia_tf.evaluate', run_name='__main__')\n"
            "except SystemExit as e:\n  assert not e.code, e.code\n"
            "print('imported:', sorted({'tensorflow', 'keras'} & set(sys.modules)))\n")
  result = run_python("-c", script)
  assert result.returncode == 0, result.stderr
  assert "all-search single-shot" in result.stdout
  assert result.stdout.splitlines()[-1] == "imported: []"


def test_cli_regdb_several_trials(regdb_dir, tmp_path):
  records = readers.read_regdb(regdb_dir, "test", 1)
  paths = []
  for trial in range(2):
    rng = np.random.default_rng(trial)
    feats = features_lib.FeatureSet(
        features=rng.standard_normal((len(records), 8)), ids=[r.pid for r in records],
        cams=[r.camera for r in records], frames=[r.frame for r in records],
        modality=[r.modality for r in records])
    paths.append(str(tmp_path / f"trial{trial}.npz"))
    features_lib.save(paths[-1], feats)
  result = _run(f"--features={','.join(paths)}", "--protocol=regdb")
  assert result.returncode == 0, result.stderr
  assert "visible->thermal" in result.stdout and "thermal->visible" in result.stdout
  assert "over 2 trial(s)" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--features=/no/such.npz"], "features file /no/such.npz does not exist"),
    (["--features=X.npz", "--shots=5"], "--shots=5 is invalid: expected 1 or 10"),
    (["--features=X.npz", "--protocol=regdb", "--mode=all"], "no --mode, --shots"),
    (["--features=a.npz,b.npz"], "one file for SYSU-MM01"),
])
def test_cli_bad_input(args, message):
  result = _run(*args)
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert "Traceback" not in result.stderr


def test_cli_unknown_protocol_and_unfit_perm_file(features_file):
  result = _run(f"--features={features_file}", "--protocol=market")
  assert result.returncode != 0 and "--protocol" in result.stderr
  assert "sysu" in result.stderr and "regdb" in result.stderr
  for perm in ("official", protocols.OFFICIAL_PERM_FILE):
    result = _run(f"--features={features_file}", f"--perm_file={perm}", "--test_ids=all")
    assert result.returncode == 2 and "does not fit the features" in result.stderr
    assert "tools/make_perm_file.py" in result.stderr
    assert "Traceback" not in result.stderr
  # The default id list is the official test_id.mat: a generated set's ids are not.
  result = _run(f"--features={features_file}")
  assert result.returncode == 2, result.stderr
  assert "none of its 2 identities is in the official test_id.mat" in result.stderr
  assert "--test_ids=DIR/exp/test_id.txt" in result.stderr


def _damaged(path, tmp_path, name, **arrays):
  with np.load(path) as data:
    base = {k: data[k] for k in data.files}
  out = str(tmp_path / name)
  np.savez(out, **{**base, **arrays})
  return out


@pytest.mark.parametrize("name, change, message", [
    ("nan_ids.npz", lambda n: {"ids": np.full(n, np.nan)}, "ids must hold integers"),
    ("fractional_cams.npz", lambda n: {"cams": np.full(n, 1.5)},
     "cams must hold integers, got dtype float64 with the value 1.5"),
    ("string_features.npz", lambda n: {"features": np.array([["x"]] * n)},
     "features must be a real number matrix"),
    ("complex_features.npz", lambda n: {"features": np.ones((n, 2), np.complex64)},
     "features must be a real number matrix"),
    ("no_dimensions.npz", lambda n: {"features": np.ones((n, 0), np.float32)},
     "features must be 2-D [N, D] with D >= 1"),
])
def test_cli_names_the_field_of_a_bad_features_file(features_file, tmp_path, name, change,
                                                    message):
  n = len(features_lib.load(features_file).ids)
  result = _run(f"--features={_damaged(features_file, tmp_path, name, **change(n))}")
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"error: features file {tmp_path / name}: {message}"), result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name, write, message", [
    ("empty.npz", lambda p: open(p, "wb").close(), "is not a readable .npz (empty)"),
    ("cut.npz", lambda p: open(p, "wb").write(b"PK\x03\x04" + b"\0" * 40),
     "is not a readable .npz"),
    ("one_array.npy", lambda p: np.save(p, np.ones(3)), "is a single array (.npy)"),
])
def test_cli_names_an_unreadable_features_file(tmp_path, name, write, message):
  path = str(tmp_path / name)
  write(path)
  result = _run(f"--features={path}")
  assert result.returncode == 2
  assert f"error: features file {path} {message}" in result.stderr, result.stderr
  assert "Traceback" not in result.stderr


def test_a_closed_stdout_ends_quietly(features_file):
  """`python -m jsia_tf.evaluate ... | head -1`: the reader goes away early."""
  proc = subprocess.Popen([sys.executable, "-m", "jsia_tf.evaluate",
                           f"--features={features_file}", "--test_ids=all"],
                          cwd=REPO, env=user_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  proc.stdout.close()  # as head does once it has its line
  stderr = proc.stderr.read().decode()
  assert proc.wait(timeout=120) == 0, stderr
  assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_official_protocol_by_default_from_any_directory(tmp_path):
  """Real-shaped features plus 200 rows of a training identity: the packaged perm
  file and test ids are found from another directory; the stranger is left out and
  counted, as the official code leaves it out."""
  _, rows = protocols.official_test_layout(protocols.OFFICIAL_SPLIT_DIR)
  extra = np.array([(1, cam, f) for cam in (1, 3) for f in range(100)])
  rows = np.vstack([rows, extra])
  rng = np.random.default_rng(0)
  feats = features_lib.FeatureSet(
      features=rng.standard_normal((len(rows), 4)), ids=rows[:, 0], cams=rows[:, 1],
      frames=rows[:, 2], modality=np.isin(rows[:, 1], (3, 6)).astype(int))
  path = str(tmp_path / "real_shape.npz")
  features_lib.save(path, feats)
  os.makedirs(tmp_path / "elsewhere")
  result = run_python("-m", "jsia_tf.evaluate", f"--features={path}", "--mode=all",
                      "--shots=1", "--perm_file=official", f"--output_json={tmp_path}/r.json",
                      cwd=str(tmp_path / "elsewhere"), timeout=120)
  assert result.returncode == 0, result.stderr
  assert "gallery draws: official rand_perm_cam.mat" in result.stdout
  assert ("test identities: the official test_id.mat: 96 identities, 10578 images; "
          "left out 200 images of 1 other identities") in result.stdout
  with open(tmp_path / "r.json") as f:
    single = json.load(f)["settings"]["all-search single-shot"]
  # The real test set's sizes: 3,803 queries, 301 (camera, id) galleries.
  assert single["num_queries"] == [3803] * 10 and single["gallery_size"] == [301] * 10


def test_make_perm_file_fits_a_generated_set(sysu_dir, features_file, tmp_path):
  perm = str(tmp_path / "perm.mat")
  result = run_python("tools/make_perm_file.py", f"--data_dir={sysu_dir}",
                      f"--output={perm}", "--seed=3", timeout=60)
  assert result.returncode == 0, result.stderr
  assert f"wrote {perm}: 10 draws for" in result.stdout
  cells = protocols.PermFile(perm)
  for r in readers.read_sysu(sysu_dir, "test"):
    assert cells.get(r.camera, r.pid).shape[1] > r.frame
  out = str(tmp_path / "r.json")
  result = _run(f"--features={features_file}", f"--perm_file={perm}",
                f"--test_ids={sysu_dir}/exp/test_id.txt", f"--output_json={out}")
  assert result.returncode == 0, result.stderr
  assert f"gallery draws: perm file {perm}" in result.stdout
  with open(out) as f:
    assert json.load(f)["gallery_draws"] == f"perm file {perm}"
  missing = run_python("tools/make_perm_file.py", f"--data_dir={tmp_path}/none",
                       f"--output={perm}", timeout=60)
  assert missing.returncode == 2 and missing.stderr.startswith("error: data_dir ")
  assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_run_whose_data_set_moved_names_data_dir(tiny_run, tmp_path):
  """evaluate --checkpoint on a run whose data set is no longer where its config.json
  says: one ConfigError naming the path and --data_dir, before anything is embedded."""
  workdir = shutil.copytree(tiny_run, tmp_path / "run")
  cfg_path = os.path.join(workdir, "config.json")
  with open(cfg_path) as f:
    saved = json.load(f)
  saved["data"]["data_dir"] = str(tmp_path / "moved")
  with open(cfg_path, "w") as f:
    json.dump(saved, f)
  with pytest.raises(errors.ConfigError, match=f"data_dir={tmp_path}/moved\\) is not "
                                               "there from .*pass --data_dir=where it is now"):
    extract.evaluate_model(config_lib.EvalConfig(checkpoint=str(workdir)),
                           log=lambda _: None)
