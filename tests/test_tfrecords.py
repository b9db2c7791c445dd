"""TFRecord round trip, manifest, corrupt images, and the command-line tools' errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import readers
from jsia_tf.data import table as table_lib
from jsia_tf.data import tfrecords

from conftest import run_python


def _table(dataset, root, split, trial=1):
  records = readers.read_dataset(dataset, root, split, trial)
  return table_lib.load_images(records, readers.relabel([r.pid for r in records]))


@pytest.mark.parametrize("dataset", ["sysu", "regdb"])
def test_round_trip(dataset, sysu_dir, regdb_dir, tmp_path):
  root = sysu_dir if dataset == "sysu" else regdb_dir
  manifest = tfrecords.build(dataset, root, str(tmp_path), trial=5, images_per_shard=37)
  for split in ("train", "test"):
    expected = _table(dataset, root, split, trial=5)
    got = tfrecords.load_table(str(tmp_path), split)
    assert len(got) == len(expected) > 0
    assert list(got.encoded) == list(expected.encoded)  # the bytes as stored on disk
    assert list(got.path) == list(expected.path)
    for name in table_lib.INT_FIELDS:
      np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    info = manifest["splits"][split]
    assert len(info["files"]) == -(-len(expected) // 37)
    for name, m in (("rgb", 0), ("ir", 1)):
      assert info[name]["num_images"] == int((expected.modality == m).sum())
      assert info[name]["num_ids"] == len(set(expected.pid[expected.modality == m]))
    assert {int(k): v for k, v in info["label_map"].items()} == readers.relabel(
        expected.pid)
    assert info["num_skipped_corrupt"] == 0
  with open(tmp_path / "manifest.json") as f:
    assert json.load(f) == manifest


def _corrupt_one(root):
  records = readers.read_sysu(root, "train")
  victim = records[len(records) // 2].path
  with open(victim, "rb") as f:
    data = f.read()
  with open(victim, "wb") as f:
    f.write(data[: len(data) // 3])  # a truncated JPEG
  return victim, len(records)


def test_corrupt_image_stops_the_build_and_is_named(sysu_copy, tmp_path):
  victim, _ = _corrupt_one(sysu_copy)
  with pytest.raises(errors.DataError, match=f"image {victim} is not a decodable "
                     f"image.*--skip_corrupt"):
    tfrecords.build("sysu", sysu_copy, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_skip_corrupt_skips_and_counts(sysu_copy, tmp_path):
  victim, total = _corrupt_one(sysu_copy)
  manifest = tfrecords.build("sysu", sysu_copy, str(tmp_path), skip_corrupt=True)
  train = manifest["splits"]["train"]
  assert train["num_skipped_corrupt"] == 1
  assert train["rgb"]["num_images"] + train["ir"]["num_images"] == total - 1
  assert victim not in set(tfrecords.load_table(str(tmp_path), "train").path)


def test_a_rebuild_that_fails_midway_leaves_no_manifest(sysu_dir, regdb_dir, tmp_path,
                                                        monkeypatch):
  """A rebuild over another set that fails after its train shards: the old manifest
  must not describe the new shards (same names, other images and labels)."""
  out = str(tmp_path / "out")
  tfrecords.build("regdb", regdb_dir, out)
  write_split = tfrecords.write_split

  def full_at_test(table, output_dir, split, *args, **kwargs):
    if split == "test":
      raise errors.OutputError("cannot write the test shards (No space left on device)")
    return write_split(table, output_dir, split, *args, **kwargs)

  monkeypatch.setattr(tfrecords, "write_split", full_at_test)
  with pytest.raises(errors.OutputError, match="No space left"):
    tfrecords.build("sysu", sysu_dir, out)
  with pytest.raises(errors.DataError, match="manifest.json does not exist; build"):
    tfrecords.load_table(out, "train")


def test_missing_manifest_is_named(tmp_path):
  with pytest.raises(errors.DataError, match=f"{tmp_path}/manifest.json does not exist"):
    tfrecords.load_table(str(tmp_path), "train")




def test_build_tfrecords_cli(sysu_dir, tmp_path):
  ok = run_python("tools/build_tfrecords.py", "--dataset=sysu", f"--data_dir={sysu_dir}",
                  f"--output_dir={tmp_path}")
  assert ok.returncode == 0, ok.stderr
  assert os.path.isfile(tmp_path / "manifest.json")


@pytest.mark.parametrize("args,message", [
    (["tools/build_tfrecords.py", "--dataset=sysu", "--data_dir=/no/such/dir",
      "--output_dir=/tmp/unused"], "data_dir /no/such/dir does not exist"),
    (["tools/build_tfrecords.py", "--dataset=sysu", "--output_dir=/tmp/unused"],
     "--data_dir='' is invalid"),
    (["-m", "jsia_tf.generate", "--output_dir=/tmp/unused", "--num_ids=1"],
     "--num_ids=1 is invalid: expected an integer >= 3"),
])
def test_cli_errors_are_one_line_messages(args, message):
  result = run_python(*args)
  assert result.returncode == 2
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def test_cli_corrupt_image(sysu_copy, tmp_path):
  victim, _ = _corrupt_one(sysu_copy)
  result = run_python("tools/build_tfrecords.py", "--dataset=sysu",
                      f"--data_dir={sysu_copy}", f"--output_dir={tmp_path}")
  assert result.returncode == 2 and victim in result.stderr
  assert "Traceback" not in result.stderr
  result = run_python("tools/build_tfrecords.py", "--dataset=sysu", "--skip_corrupt",
                      f"--data_dir={sysu_copy}", f"--output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert "skipped 1 corrupt image(s)" in result.stderr


def test_load_split_reads_tfrecords_or_files_alike(sysu_dir, regdb_dir, tmp_path):
  tfrecords.build("sysu", sysu_dir, str(tmp_path / "sysu"))
  from_files = tfrecords.load_split(config_lib.DataConfig(data_dir=sysu_dir), "train")
  from_records = tfrecords.load_split(
      config_lib.DataConfig(tfrecord_dir=str(tmp_path / "sysu")), "train")
  assert list(from_files.encoded) == list(from_records.encoded)
  np.testing.assert_array_equal(from_files.label, from_records.label)
  with pytest.raises(errors.DataError, match="was built for dataset 'sysu' trial None, "
                     "but --dataset='regdb' --trial=1 was asked for"):
    tfrecords.load_split(config_lib.DataConfig(
        dataset="regdb", tfrecord_dir=str(tmp_path / "sysu")), "train")
  tfrecords.build("regdb", regdb_dir, str(tmp_path / "regdb"), trial=2)
  with pytest.raises(errors.DataError, match="trial 2, but --dataset='regdb' --trial=3"):
    tfrecords.load_split(config_lib.DataConfig(
        dataset="regdb", trial=3, tfrecord_dir=str(tmp_path / "regdb")), "test")
  with pytest.raises(errors.ConfigError, match="--data_dir='' is invalid"):
    tfrecords.load_split(config_lib.DataConfig(), "train")


def test_tiff_bytes_behind_a_jpg_name_are_named_before_training(sysu_copy, tmp_path):
  """PIL reads TIFF, TensorFlow's decoder does not: the file is named when the data
  is loaded, not by a decoder error inside the first training step."""
  records = readers.read_sysu(sysu_copy, "train")
  victim = records[0].path
  Image.open(victim).save(victim, format="TIFF")
  with pytest.raises(errors.DataError, match=f"image {victim} is not a decodable image "
                                             f"\\(TIFF data, not one TensorFlow decodes"):
    tfrecords.build("sysu", sysu_copy, str(tmp_path / "out"))
  manifest = tfrecords.build("sysu", sysu_copy, str(tmp_path / "skip"), skip_corrupt=True)
  assert manifest["splits"]["train"]["num_skipped_corrupt"] == 1
