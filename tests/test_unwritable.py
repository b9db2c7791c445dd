"""Unwritable places (not a directory, disk full) fail naming the path, and what
was written before stays intact: the last good checkpoint, the existing export
versions."""

import errno
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.analysis import figures
from jsia_tf.experiments import runner
from jsia_tf.serving import extractor as extractor_lib
from jsia_tf.serving import saved_model
from jsia_tf.training import experiment
from jsia_tf.training import loop

from conftest import REPO
from conftest import user_env


def test_export_dir_not_writable_or_full(tiny_run, tmp_path, monkeypatch):
  restored = extractor_lib.restore(tiny_run)
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(errors.ConfigError, match=f"--export_dir={blocker}/models: cannot be "
                                               f"written"):
    saved_model.export(restored.extractor, restored.config, str(blocker / "models"),
                       log=lambda _: None)
  base = tmp_path / "models"
  (base / "1").mkdir(parents=True)
  (base / "1" / "saved_model.pb").write_text("version 1")

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(tf.saved_model, "save", full)
  with pytest.raises(errors.ConfigError, match=r"writing version 2 failed \(No space left "
                                               r"on device\)"):
    saved_model.export(restored.extractor, restored.config, str(base), log=lambda _: None)
  assert sorted(os.listdir(base)) == ["1"]  # no half-written version, version 1 intact
  assert (base / "1" / "saved_model.pb").read_text() == "version 1"


def test_a_checkpoint_that_cannot_be_written_names_the_last_good_one(sysu_dir, tmp_path,
                                                                      monkeypatch):
  model = config_lib.model_config("tiny")
  data = config_lib.DataConfig(data_dir=sysu_dir, image_height=model.image_height,
                               image_width=model.image_width, batch_p=4, batch_k=2)
  train = config_lib.TrainConfig(workdir=str(tmp_path / "run"), warmup_steps=2,
                                 joint_steps=2, gen_ids=2, log_every=1, image_every=0,
                                 eval_every=0, checkpoint_every=1)
  cfg = experiment.ExperimentConfig(data, model, config_lib.LossWeights(), train)
  original, calls = tf.train.CheckpointManager.save, []

  def save_then_fill_the_disk(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
      raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    return original(self, *args, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", save_then_fill_the_disk)
  checkpoints = os.path.join(cfg.train.workdir, "checkpoints")
  with pytest.raises(errors.ConfigError,
                     match=f"cannot write the checkpoint of step 2 to {checkpoints} \\(No "
                           f"space left on device\\); the last good checkpoint is "
                           f"{checkpoints}/ckpt-1"):
    loop.run(cfg, log=lambda _: None)
  assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-1")
  assert tf.train.load_checkpoint(os.path.join(checkpoints, "ckpt-1")).get_tensor(
      "step/.ATTRIBUTES/VARIABLE_VALUE") == 1
  assert not os.path.exists(os.path.join(cfg.train.workdir, "run.lock"))  # released


def _run_with_file_size_limit(limit_bytes, *args):
  """`python ARGS` from the repository root with RLIMIT_FSIZE: a write past the limit
  fails with EFBIG ("File too large"), as a full disk fails a write (Python ignores
  SIGXFSZ). Needs no mount."""
  def limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        env=user_env(), timeout=600, preexec_fn=limit)


def _one_error_line(result, *parts):
  assert result.returncode == 2, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and all(p in last for p in parts), result.stderr
  assert "Traceback" not in result.stderr


def test_generate_on_a_full_disk_leaves_nothing(tmp_path):
  out = tmp_path / "data"
  result = _run_with_file_size_limit(
      20_000, "-m", "jsia_tf.generate", "--layout=regdb", "--num_ids=4",
      "--num_workers=1", f"--output_dir={out}")
  _one_error_line(result, "File too large")
  assert os.listdir(tmp_path) == []  # neither the set nor its temporary folder


def test_build_tfrecords_on_a_full_disk_leaves_no_shard(sysu_dir, tmp_path):
  out = tmp_path / "records"
  result = _run_with_file_size_limit(
      50_000, "tools/build_tfrecords.py", "--dataset=sysu", f"--data_dir={sysu_dir}",
      f"--output_dir={out}")
  _one_error_line(result, f"cannot write {out}/", "File too large",
                  "shards written so far are removed")
  assert not [n for n in os.listdir(out) if n.endswith(".tfrecord") or "manifest" in n]


def test_evaluate_output_json_full_or_a_folder(tiny_run, tmp_path):
  features = os.path.join(tiny_run, "eval", "features.npz")
  report = tmp_path / "report.json"
  result = _run_with_file_size_limit(
      1_000, "-m", "jsia_tf.evaluate", f"--features={features}", "--test_ids=all",
      f"--output_json={report}")
  _one_error_line(result, f"cannot write {report}", "File too large")
  assert os.listdir(tmp_path) == []  # no report, no temporary file
  result = _run_with_file_size_limit(
      10**9, "-m", "jsia_tf.evaluate", f"--features={features}", "--test_ids=all",
      f"--output_json={tmp_path}")
  _one_error_line(result, f"cannot write {tmp_path}", "is a directory")


def test_search_output_on_a_full_disk_is_one_error_line(sysu_dir, tiny_run, tmp_path):
  export_dir = tmp_path / "export"
  restored = extractor_lib.restore(tiny_run)
  saved_model.export(restored.extractor, restored.config, str(export_dir),
                     log=lambda _: None)
  result = _run_with_file_size_limit(
      3_000, "-m", "jsia_tf.search", f"--saved_model={export_dir}",
      f"--query={sysu_dir}/cam3", f"--gallery={sysu_dir}/cam1",
      f"--output={tmp_path / 'out'}")
  _one_error_line(result, "File too large")


def test_results_and_pictures_are_replaced_whole_or_not_at_all(tmp_path):
  """An experiment's table and JSON, and a figure, are written atomically: a result
  that cannot be encoded leaves the earlier pair; a path that is a folder is one
  OutputError naming it."""
  runner.write_results(str(tmp_path), "t.md", "table 1\n", "r.json", {"R1": 0.5},
                       log=lambda _: None)
  with pytest.raises(TypeError):
    runner.write_results(str(tmp_path), "t.md", "table 2\n", "r.json",
                         {"R1": object()}, log=lambda _: None)
  assert (tmp_path / "t.md").read_text() == "table 1\n"
  assert (tmp_path / "r.json").read_text() == '{\n "R1": 0.5\n}'
  assert sorted(os.listdir(tmp_path)) == ["r.json", "t.md"]  # no temporary file left
  picture = tmp_path / "grid.png"
  figures.save_png(np.full((4, 6, 3), 200, np.uint8), str(picture))
  (tmp_path / "folder.png").mkdir()
  with pytest.raises(errors.OutputError, match="folder.png .*is a directory"):
    figures.save_png(np.zeros((4, 6, 3), np.uint8), str(tmp_path / "folder.png"))
  with Image.open(picture) as image:
    assert image.size == (6, 4) and image.getpixel((0, 0)) == (200, 200, 200)
