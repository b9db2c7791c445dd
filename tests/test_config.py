"""Config validation messages, flag parsing into configs, and the JSON round trip."""

import json

import pytest
from absl import flags as absl_flags

from flags import data_flags
from jsia_tf import config as config_lib
from jsia_tf import errors

from conftest import train_config_from_argv


@pytest.mark.parametrize("field,value,message", [
    ("dataset", "market", "--dataset='market' is invalid: expected one of sysu, regdb"),
    ("batch_p", 0, "--batch_p=0 is invalid: expected a positive integer"),
    ("trial", 11, "--trial=11 is invalid: expected an integer in 1..10"),
    ("random_erasing", 1.5, "--random_erasing=1.5 is invalid: expected a probability"),
    ("pad_crop", -1, "--pad_crop=-1 is invalid"),
])
def test_data_config_errors_name_flag_and_value(field, value, message):
  with pytest.raises(errors.ConfigError) as info:
    config_lib.DataConfig(**{field: value})
  assert message in str(info.value)


def test_config_is_frozen():
  cfg = config_lib.DataConfig()
  with pytest.raises(Exception):
    cfg.batch_p = 3  # pytype: disable=attribute-error


def test_json_round_trip(tmp_path):
  cfg = config_lib.DataConfig(dataset="regdb", trial=3, batch_p=8, flip=False)
  path = str(tmp_path / "config.json")
  config_lib.save(cfg, path)
  assert config_lib.load(config_lib.DataConfig, path) == cfg
  with open(path) as f:
    values = json.load(f)
  values["nonsense"] = 1
  with open(path, "w") as f:
    json.dump(values, f)
  with pytest.raises(errors.ConfigError, match=r"unknown field\(s\) \['nonsense'\]"):
    config_lib.load(config_lib.DataConfig, path)
  with pytest.raises(errors.ConfigError, match="does not exist"):
    config_lib.load(config_lib.DataConfig, str(tmp_path / "missing.json"))


@pytest.mark.parametrize("share_sl, sl_mode", [(True, "shared"), (False, "separate")])
def test_model_configs_before_sl_mode_still_load(share_sl, sl_mode):
  """A config.json of a run made before --sl_mode (it had the boolean share_sl)."""
  values = config_lib.to_dict(config_lib.model_config("tiny"))
  del values["sl_mode"]
  values["share_sl"] = share_sl
  assert config_lib.from_dict(config_lib.ModelConfig, values).sl_mode == sl_mode


def test_flags_parse_into_config():
  values = absl_flags.FlagValues()
  data_flags.define_dataset_flags(values)
  data_flags.define_input_flags(values)
  values(["prog", "--dataset=regdb", "--trial=4", "--batch_p=8", "--noflip"])
  cfg = data_flags.data_config_from_flags(values)
  assert (cfg.dataset, cfg.trial, cfg.batch_p, cfg.flip) == ("regdb", 4, 8, False)
  values(["prog", "--batch_k=0"])
  with pytest.raises(errors.ConfigError, match="--batch_k=0 is invalid"):
    data_flags.data_config_from_flags(values)


def test_presets_set_schedule_batch_and_f_lr_unless_flags_do():
  demo = train_config_from_argv()
  assert demo.model.preset == "demo" and demo.data.batch_p == 8
  # The demo's E_sl has weights of its own; the paper preset keeps SL.
  assert demo.model.sl_mode == "separate"
  assert (demo.train.warmup_steps, demo.train.joint_steps, demo.train.lr_f) == (
      100, 500, 2e-3)
  paper = train_config_from_argv("--data_dir=/data/SYSU-MM01")
  assert paper.model.preset == "paper" and paper.data.batch_p == 16
  assert paper.model.sl_mode == "shared"
  # The authors' schedule: an "epoch" is 200 steps; G warm-up 100 epochs, joint 50.
  assert (paper.train.warmup_steps, paper.train.joint_steps, paper.train.lr_f) == (
      20000, 10000, 4.5e-4)
  mine = train_config_from_argv("--preset=demo", "--lr_f=2e-4", "--joint_steps=7", "--batch_p=4")
  assert (mine.train.lr_f, mine.train.joint_steps, mine.data.batch_p) == (2e-4, 7, 4)


@pytest.mark.parametrize("change, message", [
    (lambda v: v["loss"].update(lambda_gan="one"), "field 'lambda_gan' is \"one\"; expected a number"),
    (lambda v: v.update(data=5), "DataConfig must be a JSON object, got 5"),
    (lambda v: v.update(data=None), "DataConfig must be a JSON object, got null"),
    (lambda v: v.pop("train"), "ExperimentConfig lacks the field(s) ['train']"),
    (lambda v: v["train"].update(log_every=-5), "--log_every=-5 is invalid"),
    (lambda v: v["train"].update(deterministic=1), "field 'deterministic' is 1; expected true or false"),
    (lambda v: v["model"].update(small_widths=[8, "a"]), "expected a list of integers"),
    (lambda v: v["train"].update(warmup_steps=2.5), "field 'warmup_steps' is 2.5; expected an integer"),
])
def test_a_hand_edited_config_json_names_the_file_and_field(tmp_path, change, message):
  from jsia_tf.training import experiment  # pylint: disable=import-outside-toplevel
  model = config_lib.model_config("tiny")
  cfg = experiment.ExperimentConfig(
      config_lib.DataConfig(data_dir="d", image_height=model.image_height,
                            image_width=model.image_width),
      model, config_lib.LossWeights(), config_lib.TrainConfig())
  path = str(tmp_path / "config.json")
  config_lib.save(cfg, path)
  with open(path) as f:
    values = json.load(f)
  change(values)
  with open(path, "w") as f:
    json.dump(values, f)
  with pytest.raises(errors.ConfigError) as e:
    config_lib.load(experiment.ExperimentConfig, path)
  assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)


def test_outputs_that_would_overwrite_or_feed_their_own_inputs_are_refused(tmp_path):
  """A report over the features it reads, or ranked-list pictures inside the folders
  the next search reads, are refused before anything runs; other places pass."""
  feats = tmp_path / "f.npz"
  link = tmp_path / "link.npz"
  link.symlink_to(feats)
  for same in (str(feats), f"{tmp_path}/sub/../f.npz", str(link)):
    with pytest.raises(errors.ConfigError, match="--output_json=.* expected a file other "
                                                 "than the --features file"):
      config_lib.EvalConfig(features=(str(feats),), output_json=same)
  with pytest.raises(errors.ConfigError, match="other than --output_features"):
    config_lib.EvalConfig(checkpoint="run", output_features="x.npz", output_json="x.npz")
  config_lib.EvalConfig(features=(str(feats),), output_json=str(tmp_path / "f.json"))
  gallery, query = tmp_path / "gallery", tmp_path / "query"
  for output, name in ((gallery, "gallery"), (gallery / "out", "gallery"),
                       (query / "out", "query")):
    with pytest.raises(errors.ConfigError, match=f"outside --{name}="):
      config_lib.SearchConfig(saved_model="m", query=str(query), gallery=str(gallery),
                              output=str(output))
  # A sibling whose name starts with the gallery's is outside it.
  config_lib.SearchConfig(saved_model="m", query=str(query), gallery=str(gallery),
                          output=str(tmp_path / "gallery_out"))
