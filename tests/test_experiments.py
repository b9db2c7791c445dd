"""The experiment runners: statistics over seeds checked by hand, the
Table 3 runner on the tiny preset (tables, intervals, reuse, resume, HParams), and
its bad input."""

import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.experiments import stats

from conftest import run_python
from conftest import train_config_from_argv


def test_summarize_and_paired_difference_by_hand():
  s = stats.summarize([1.0, 2.0, 3.0])
  assert (s["mean"], s["std"], s["n"]) == (2.0, 1.0, 3)
  assert stats.summarize([5.0])["std"] is None
  # d = [2, 3, 4]: mean 3, sd 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt 3
  d = stats.paired_difference([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])
  half = 4.302653 / np.sqrt(3.0)
  assert d["mean"] == pytest.approx(3.0) and d["n"] == 3
  assert (d["low"], d["high"]) == (pytest.approx(3.0 - half, abs=1e-5),
                                   pytest.approx(3.0 + half, abs=1e-5))
  assert stats.excludes_zero(d)
  noisy = stats.paired_difference([1.0, -1.0], [0.0, 0.0])  # mean 0: t(0.975, 1) = 12.71
  assert noisy["low"] == pytest.approx(-12.7062047 * np.sqrt(2) / np.sqrt(2), abs=1e-4)
  assert not stats.excludes_zero(noisy)
  one = stats.paired_difference([2.0], [1.0])
  assert one["low"] is None and not stats.excludes_zero(one)
  with pytest.raises(ValueError, match="equal-length"):
    stats.paired_difference([1.0, 2.0], [1.0])


def test_rows_table_pairs_seeds_with_the_baseline():
  from jsia_tf.experiments import runner  # pylint: disable=import-outside-toplevel
  metrics = lambda r1: {k: r1 if k == "R1" else 50.0 for k in runner.COLUMNS}
  groups = {"1": [metrics(10.0), metrics(12.0), metrics(14.0)],
            "2": [metrics(13.0), metrics(14.0), metrics(18.0)]}
  table = runner.rows_table(groups, baseline="1")
  assert table[0]["R1"]["mean"] == pytest.approx(12.0) and "vs_1" not in table[0]
  diff = table[1]["vs_1"]["R1"]  # d = [3, 2, 4]
  assert diff["mean"] == pytest.approx(3.0)
  assert diff["high"] - diff["mean"] == pytest.approx(4.302653 / np.sqrt(3), abs=1e-5)
  assert table[1]["vs_1"]["mAP"]["mean"] == 0.0
  text = runner.format_table(table, {"header": "row", "1": "1", "2": "2"}, baseline="1")
  assert "| 2 | 15.00 +- 2.65 |" in text and "+3.00 [+0.52, +5.48] *" in text


def test_a_signal_stops_the_experiment_at_its_run(tmp_path, monkeypatch):
  """A run stopped by SIGTERM ends the experiment with an error saying how to
  resume, instead of reading a report that was never written or training on."""
  from jsia_tf.experiments import runner  # pylint: disable=import-outside-toplevel
  from jsia_tf.training import loop  # pylint: disable=import-outside-toplevel
  started = []

  def stopped(cfg, log):
    started.append(cfg.train.workdir)
    return {"step": 3, "stopped_by": "SIGTERM"}

  monkeypatch.setattr(loop, "run", stopped)
  specs = [runner.RunSpec(f"r{i}", ("--preset=tiny", "--data_dir=d"), {"i": i})
           for i in range(3)]
  with pytest.raises(errors.JsiaError, match=r"stopped by SIGTERM during run 1/3 r0 "
                     r"\(its checkpoint is saved\): rerun the same command to resume it "
                     r"and go on with the 2 after it"):
    runner.run_all(specs, str(tmp_path), log=lambda _: None)
  assert started == [str(tmp_path / "r0")]


def _ablation_config(tmp_path, sysu_dir, **kwargs):
  values = {"rows": (1, 2), "seeds": 2, "output_dir": str(tmp_path / "ablation"),
            "data_dir": sysu_dir, "preset": "tiny", "warmup_steps": 1, "joint_steps": 1}
  values.update(kwargs)
  return config_lib.AblationConfig(**values)


def _finished_copy(tiny_run, workdir):
  """A finished run at `workdir`: a copy of the tiny run's workdir (its report)."""
  shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns("checkpoints"))


def test_table3_runner_trains_reuses_and_resumes(tmp_path, sysu_dir, tiny_run):
  """Of the 4 runs, row1_seed0 trains, row1_seed1 and row2_seed0 are finished
  before (reused), row2_seed1 stopped after its first step (resumed)."""
  from jsia_tf.experiments import runner  # pylint: disable=import-outside-toplevel
  from jsia_tf.experiments import table3
  from jsia_tf.training import loop
  from flags import train_flags
  cfg = _ablation_config(tmp_path, sysu_dir)
  for name in ("row1_seed1", "row2_seed0"):
    _finished_copy(tiny_run, os.path.join(cfg.output_dir, name))
  # An unfinished run: row 2 seed 1 stopped after its first step.
  spec = table3.specs(cfg)[3]
  assert spec.name == "row2_seed1" and "--seed=1" in spec.argv
  assert "--sl_mode=shared" in spec.argv and "--lambda_il=0" in spec.argv
  row7, row8 = table3.specs(_ablation_config(tmp_path, sysu_dir, rows=(7, 8), seeds=1))
  assert row7.argv[-2:] == ("--sl_mode=adversarial", "--seed=0")
  assert row8.argv[-3:] == ("--sl_mode=shared", "--lr_pairs=unpaired", "--seed=0")
  assert not any(a.startswith("--lambda") for a in row8.argv)
  assert not any(a.startswith("--lambda") for a in row7.argv)
  unfinished = train_flags.experiment_config_from_argv(
      [*spec.argv, f"--workdir={tmp_path}/ablation/row2_seed1", "--stop_at_step=1"])
  loop.run(unfinished, log=lambda _: None)
  lines = []
  result = table3.run(cfg, log=lines.append)
  assert [r["row"] for r in result["rows"]] == ["1", "2"]
  assert result["rows"][0]["seeds"] == 2 and "vs_1" in result["rows"][1]
  assert any("run 1/4 row1_seed0: --preset=tiny" in line and "--sl_mode=separate" in line
             for line in lines)
  assert any("[row2_seed1] resumed from" in line for line in lines)
  assert sum("finished before, reusing" in line for line in lines) == 2
  # Every number of the table comes from the runs' reports.
  r1 = [result["runs"][f"row2_seed{s}"]["metrics"]["R1"] for s in (0, 1)]
  base = [result["runs"][f"row1_seed{s}"]["metrics"]["R1"] for s in (0, 1)]
  assert result["rows"][1]["R1"]["mean"] == pytest.approx(np.mean(r1))
  assert result["rows"][1]["vs_1"]["R1"] == stats.paired_difference(r1, base)
  with open(os.path.join(cfg.output_dir, "ablation.md")) as f:
    assert f"| 2 | x | - | - | - | 2 | {np.mean(r1):.2f} +- " in f.read()
  with open(os.path.join(cfg.output_dir, "ablation.json")) as f:
    assert json.load(f)["rows"] == json.loads(json.dumps(result["rows"]))
  # The HParams dashboard's records: each run's switches and final metrics.
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.plugins.hparams import plugin_data_pb2
  acc = event_accumulator.EventAccumulator(
      os.path.join(cfg.output_dir, "row1_seed1", runner.HPARAMS_DIR))
  acc.Reload()
  content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
  info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
  assert info.hparams["SL"].string_value == "off" and info.hparams["seed"].number_value == 1
  assert "final/R1" in acc.Tags()["tensors"]
  # A second call reuses every run.
  again = []
  assert table3.run(cfg, log=again.append)["rows"] == result["rows"]
  assert sum("finished before, reusing" in line for line in again) == 4


@pytest.mark.parametrize("args, message", [
    (["--rows=1,0,9"], r"--rows=1,0,9: unknown row\(s\) \[0, 9\]; expected rows 1, 2, 3, "
                       r"4, 5, 6, 7, 8 of Table 3$"),
    (["--rows=a-b"], r"--rows='a-b' is invalid: expected numbers"),
    (["--seeds=0"], r"--seeds=0 is invalid: expected at least 1 seed per row"),
    (["--rows=1,1"], r"--rows=\(1, 1\) is invalid: expected rows without repeats"),
])
def test_ablation_bad_input_is_one_error_line(args, message, tmp_path):
  _assert_one_error_line("ablation", args, message, tmp_path)


def _assert_one_error_line(runner_module, args, message, tmp_path):
  """`python -m jsia_tf.experiments.<runner_module> ARGS` fails with exit code 2 and
  one `error:` line matching `message`, before it writes anything."""
  proc = run_python("-m", f"jsia_tf.experiments.{runner_module}", *args,
                    f"--output_dir={tmp_path}/out")
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors_ = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors_) == 1 and re.search(message, errors_[0]), proc.stderr
  assert not os.path.exists(tmp_path / "out")


def test_ablation_config_refuses_an_empty_row_list():
  with pytest.raises(errors.ConfigError, match="--rows=\\(\\) is invalid"):
    config_lib.AblationConfig(rows=())


def test_regdb_runner_evaluates_each_trial_on_its_own_test_ids(tmp_path, regdb_dir):
  from jsia_tf.data import readers  # pylint: disable=import-outside-toplevel
  from jsia_tf.evaluation import features as features_lib
  from jsia_tf.experiments import table2
  cfg = config_lib.RegdbExperimentConfig(
      data_dir=regdb_dir, trials=(2,), output_dir=str(tmp_path / "regdb"),
      preset="tiny", warmup_steps=1, joint_steps=1,
      train_flags=("--batch_p=2", "--gen_ids=2"))  # a trial has 3 training ids
  lines = []
  result = table2.run(cfg, log=lines.append)
  test_ids = {t: {r.pid for r in readers.read_regdb(regdb_dir, "test", t)} for t in (1, 2)}
  assert test_ids[1] != test_ids[2]  # the check below can tell the trials apart
  feats = features_lib.load(os.path.join(cfg.output_dir, "trial2", "eval", "features.npz"))
  assert set(np.unique(feats.ids).tolist()) == test_ids[2]
  for name, short in table2.DIRECTIONS.items():
    assert result["directions"][name]["R1"] == stats.summarize(
        [result["trials"]["2"][f"{short}/R1"]])
  with open(os.path.join(cfg.output_dir, "regdb.md")) as f:
    text = f.read()
  assert "| visible->thermal | " in text and "1 trials: 2" in text
  assert any("run 1/1 trial2: --dataset=regdb" in line and "--trial=2" in line
             for line in lines)


def test_regdb_runner_bad_input(tmp_path, regdb_copy):
  os.remove(os.path.join(regdb_copy, "idx", "test_thermal_3.txt"))
  cases = [([f"--data_dir={regdb_copy}", "--trials=1,3"], r"test_thermal_3\.txt"),
           ([f"--data_dir={regdb_copy}", "--trials=0-2"],
            r"--trials=\(0, 1, 2\) is invalid: expected distinct trials among 1-10"),
           (["--trials=1"], r"--data_dir='' is invalid: expected a RegDB-layout directory")]
  for args, message in cases:
    _assert_one_error_line("regdb", args, message, tmp_path)


def test_sweep_tables_and_plots_r1_per_value(tmp_path, sysu_dir, tiny_run):
  """The sweep's runs and table; its runs are finished ones (the runs themselves are
  the Table 3 runner's, tested above)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jsia_tf.experiments import fig5
  cfg = config_lib.SweepConfig(param="lambda_il", values=(0.0, 0.5), seeds=1,
                               output_dir=str(tmp_path / "sweep"), data_dir=sysu_dir,
                               preset="tiny", warmup_steps=1, joint_steps=1)
  specs = fig5.specs(cfg)
  assert [s.name for s in specs] == ["lambda_il_0_seed0", "lambda_il_0.5_seed0"]
  assert specs[1].argv[-2:] == ("--lambda_il=0.5", "--seed=0")
  # The paper's model whatever the preset's SL mode; --train_flags may override it.
  assert specs[1].argv[0] == "--sl_mode=shared"
  demo = train_config_from_argv(*specs[1].argv[:1], "--preset=demo")
  assert demo.model.sl_mode == "shared"
  override = fig5.specs(dataclasses.replace(cfg, train_flags=("--sl_mode=separate",)))
  assert train_config_from_argv(*override[0].argv).model.sl_mode == "separate"
  for s in specs:
    _finished_copy(tiny_run, os.path.join(cfg.output_dir, s.name))
  result = fig5.run(cfg, log=lambda _: None)
  assert [r["row"] for r in result["rows"]] == ["0", "0.5"]
  assert result["rows"][1]["R1"]["mean"] == pytest.approx(
      result["runs"]["lambda_il_0.5_seed0"]["metrics"]["R1"])
  assert Image.open(tmp_path / "sweep" / "sweep.png").size[0] > 300
  assert "R1 - " not in (tmp_path / "sweep" / "sweep.md").read_text()  # no default run
  stripes = config_lib.SweepConfig(param="num_stripes", values=(2.0, 4.0))
  assert fig5.specs(stripes)[1].argv[-2] == "--num_stripes=4"
  assert fig5.default_value(stripes) == 6 and fig5.default_value(cfg) == 0.01


def test_sweep_compares_each_value_with_the_default_seed_by_seed(tmp_path, tiny_run):
  """With the default value among the values, each other value's row has its paired
  difference to it: here one run's report is moved by +1 point of R1 and -0.5 of
  mAP, the other's not."""
  from jsia_tf.experiments import fig5  # pylint: disable=import-outside-toplevel
  cfg = config_lib.SweepConfig(param="lambda_ui", values=(0.1, 0.01), seeds=1,
                               output_dir=str(tmp_path / "sweep"), preset="tiny")
  for s in fig5.specs(cfg):
    _finished_copy(tiny_run, os.path.join(cfg.output_dir, s.name))
  path = os.path.join(cfg.output_dir, "lambda_ui_0.1_seed0", "eval", "report.json")
  with open(path) as f:
    report = json.load(f)
  mean = report["settings"]["all-search single-shot"]["mean"]
  mean["R1"] += 0.01
  mean["mAP"] -= 0.005
  with open(path, "w") as f:
    json.dump(report, f)
  result = fig5.run(cfg, log=lambda _: None)
  assert "vs_0.01" not in result["rows"][1]
  diff = result["rows"][0]["vs_0.01"]
  assert diff["R1"]["mean"] == pytest.approx(1.0) and diff["mAP"]["mean"] == pytest.approx(-0.5)
  text = (tmp_path / "sweep" / "sweep.md").read_text()
  assert "| R1 - lambda_ui 0.01 | mAP - lambda_ui 0.01 |" in text
  assert "| +1.00 | -0.50 |" in text and "the default" in text


@pytest.mark.parametrize("args, message", [
    (["--param=lambda_il", "--values=0,-0.1"],
     r"--values=\(0.0, -0.1\) is invalid: expected loss weights >= 0 for lambda_il"),
    (["--param=num_stripes", "--values=2,2.5"], r"expected whole numbers of stripes"),
    (["--param=lambda_lr", "--values=0,x"], r"--values=0,x is invalid: expected numbers"),
    (["--param=lambda_lr"], r"--values=\(\) is invalid: expected at least one value"),
])
def test_sweep_bad_input_is_one_error_line(args, message, tmp_path):
  _assert_one_error_line("sweep", args, message, tmp_path)
