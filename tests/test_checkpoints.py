"""Checkpoints that cannot be read are named and skipped: resume, export and evaluate
take the newest one that loads, the state file is rebuilt from the directory, and a
workdir none of whose checkpoints loads is an error, never a silent restart."""

import glob
import os
import shutil

import pytest

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.serving import extractor
from jsia_tf.training import checkpoints
from jsia_tf.training import experiment
from jsia_tf.training import loop
from jsia_tf.training import trainer as trainer_lib

from conftest import built_once


def _config(sysu_dir, workdir, **train):
  model = config_lib.model_config("tiny")
  data = config_lib.DataConfig(data_dir=sysu_dir, image_height=model.image_height,
                               image_width=model.image_width, batch_p=4, batch_k=2)
  train = config_lib.TrainConfig(workdir=str(workdir), warmup_steps=2, joint_steps=2,
                                 gen_ids=2, log_every=1, image_every=0, eval_every=0,
                                 checkpoint_every=1, keep_checkpoints=5, **train)
  return experiment.ExperimentConfig(data, model, config_lib.LossWeights(), train)


@pytest.fixture(scope="module")
def stopped_run(sysu_dir, tmp_path_factory):
  """A tiny run stopped at step 3 with ckpt-1, ckpt-2 and ckpt-3. Read-only."""
  return str(built_once(tmp_path_factory, "stopped_run", lambda path: loop.run(
      _config(sysu_dir, path, stop_at_step=3), log=lambda _: None)))


@pytest.fixture
def run_copy(stopped_run, tmp_path):
  return shutil.copytree(stopped_run, tmp_path / "run")


def _ckpt(workdir, step):
  return os.path.join(trainer_lib.checkpoint_dir(str(workdir)), f"ckpt-{step}")


def _data_file(prefix):
  return glob.glob(prefix + ".data-*")[0]


def _flip_a_byte(path):
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x40]))


def _truncate(path, size=None):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2 if size is None else size)


FAULTS = {
    "zero-byte index": lambda p: _truncate(p + ".index", 0),
    "truncated index": lambda p: _truncate(p + ".index"),
    "truncated data": lambda p: _truncate(_data_file(p)),
    "bit-flipped data": lambda p: _flip_a_byte(_data_file(p)),
    "data removed": lambda p: os.remove(_data_file(p)),
}


def test_the_stopped_run_has_three_loadable_checkpoints(stopped_run):
  directory = trainer_lib.checkpoint_dir(stopped_run)
  assert checkpoints.list_prefixes(directory) == [_ckpt(stopped_run, s) for s in (3, 2, 1)]
  assert all(checkpoints.unreadable_reason(p) is None
             for p in checkpoints.list_prefixes(directory))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_newest_checkpoint_is_named_and_the_previous_one_used(run_copy, fault):
  FAULTS[fault](_ckpt(run_copy, 3))
  lines = []
  directory = trainer_lib.checkpoint_dir(str(run_copy))
  assert checkpoints.newest_loadable(directory, lines.append) == _ckpt(run_copy, 2)
  assert len(lines) == 1 and lines[0].startswith(
      f"warning: checkpoint {_ckpt(run_copy, 3)} cannot be read (")
  # export and evaluate --checkpoint take the same one
  assert extractor.find_checkpoint(str(run_copy))[1] == _ckpt(run_copy, 2)
  # and a checkpoint named explicitly is refused with its reason
  with pytest.raises(errors.CheckpointError,
                     match=f"--checkpoint={_ckpt(run_copy, 3)}: the checkpoint cannot "
                           f"be read"):
    extractor.find_checkpoint(_ckpt(run_copy, 3), "checkpoint")


def test_no_loadable_checkpoint_is_an_error_listing_each_one(run_copy):
  for step in (1, 2, 3):
    _truncate(_ckpt(run_copy, step) + ".index", 0)
  directory = trainer_lib.checkpoint_dir(str(run_copy))
  with pytest.raises(errors.CheckpointError) as e:
    checkpoints.newest_loadable(directory, lambda _: None)
  message = str(e.value)
  assert all(_ckpt(run_copy, s) in message for s in (1, 2, 3))
  assert "move" in message and "another --workdir" in message


@pytest.mark.parametrize("state", ["removed", "zero bytes", "garbled"])
def test_resume_with_a_broken_state_file_and_newest_checkpoint(sysu_dir, run_copy, state):
  """The run resumes from ckpt-2, rebuilds the state file, and finishes; the metrics
  rows after step 2 are dropped, never the earlier ones."""
  state_file = os.path.join(trainer_lib.checkpoint_dir(str(run_copy)),
                            checkpoints.STATE_FILE)
  if state == "removed":
    os.remove(state_file)
  else:
    with open(state_file, "w") as f:
      f.write("" if state == "zero bytes" else "model_checkpoint_path: \"ckpt-3\n{{")
  _truncate(_ckpt(run_copy, 3) + ".index")
  lines = []
  result = loop.run(_config(sysu_dir, run_copy), log=lines.append)
  assert result["step"] == 4
  text = "\n".join(lines)
  assert f"checkpoint {_ckpt(run_copy, 3)} cannot be read" in text
  assert f"resumed from {_ckpt(run_copy, 2)} at step 2" in text
  assert checkpoints.newest_loadable(trainer_lib.checkpoint_dir(str(run_copy))) == \
      _ckpt(run_copy, 4)


def test_no_loadable_checkpoint_stops_the_run_instead_of_restarting(sysu_dir, run_copy):
  for step in (1, 2, 3):
    os.remove(_ckpt(run_copy, step) + ".index")
  with pytest.raises(errors.CheckpointError, match="no checkpoint in .* can be read"):
    loop.run(_config(sysu_dir, run_copy), log=lambda _: None)
  # nothing was overwritten: the data files are still there
  assert len(glob.glob(_ckpt(run_copy, "*") + ".data-*")) == 3


def test_a_run_whose_checkpoints_were_removed_does_not_start_again(sysu_dir, run_copy):
  """metrics.jsonl logs steps past the first checkpoint, and the checkpoints are gone
  (removed by hand): the run refuses to overwrite that record from step 0."""
  shutil.rmtree(trainer_lib.checkpoint_dir(str(run_copy)))
  with pytest.raises(errors.CheckpointError, match=r"logs steps up to 3 \(checkpoints "
                                                   r"every 1\): its checkpoints were removed"):
    loop.run(_config(sysu_dir, run_copy), log=lambda _: None)
  assert os.path.getsize(os.path.join(str(run_copy), loop.METRICS_FILE)) > 0


def test_a_checkpoint_removed_while_read_is_named_as_such(run_copy):
  """export and evaluate during training: training rotated the checkpoint away
  between finding it and reading it (--keep_checkpoints)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  cfg = config_lib.load(experiment.ExperimentConfig,
                        os.path.join(str(run_copy), experiment.CONFIG_FILE))
  ex = extractor.Extractor(cfg)
  prefix = _ckpt(run_copy, 1)
  for path in glob.glob(prefix + ".*"):
    os.remove(path)
  with pytest.raises(errors.CheckpointError, match=f"checkpoint {prefix} was removed "
                                                   f"while it was read"):
    extractor.restore_into(tf.train.Checkpoint(model=tf.train.Checkpoint(F=ex.F)),
                           prefix, str(run_copy))
