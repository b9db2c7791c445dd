"""The analysis: Table 4's metrics against hand-computed and closed-form
values, the Inception graph loader on a small graph file of the same shape, and
`python -m jsia_tf.analyze` on a tiny run: its files, their agreement, bad input."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from jsia_tf.analysis import metrics

from conftest import built_once
from conftest import run_python

# ---- metrics -------------------------------------------------------------------------


def test_fid_of_a_feature_set_with_itself_is_zero():
  x = np.random.default_rng(0).normal(size=(300, 16))
  assert abs(metrics.fid(x, x)) < 1e-6


def _trace_sqrt_2x2(m):
  """tr(M^(1/2)) of a 2 x 2 matrix with positive eigenvalues, in closed form:
  sqrt(tr M + 2 sqrt(det M))."""
  return np.sqrt(np.trace(m) + 2.0 * np.sqrt(np.linalg.det(m)))


def test_fid_of_two_gaussian_samples_is_the_closed_form_of_their_statistics():
  rng = np.random.default_rng(1)
  x = rng.multivariate_normal([0.0, 1.0], [[2.0, 0.5], [0.5, 1.0]], size=4000)
  y = rng.multivariate_normal([1.0, -1.0], [[1.0, -0.3], [-0.3, 0.5]], size=3000)
  mu_1, s_1 = x.mean(0), np.cov(x, rowvar=False)
  mu_2, s_2 = y.mean(0), np.cov(y, rowvar=False)
  want = (np.sum((mu_1 - mu_2) ** 2) + np.trace(s_1) + np.trace(s_2)
          - 2.0 * _trace_sqrt_2x2(s_1 @ s_2))
  assert metrics.fid(x, y) == pytest.approx(want, rel=1e-9)
  # and near the population value (the statistics are estimates)
  s_a, s_b = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, -0.3], [-0.3, 0.5]])
  population = 1.0 + 4.0 + np.trace(s_a) + np.trace(s_b) - 2 * _trace_sqrt_2x2(s_a @ s_b)
  assert metrics.fid(x, y) == pytest.approx(population, abs=0.15)


def test_frechet_distance_of_diagonal_gaussians():
  mu_1, mu_2 = np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
  s_1, s_2 = np.diag([4.0, 1.0, 9.0]), np.diag([1.0, 1.0, 1.0])
  # |dmu|^2 + sum (sqrt(a) - sqrt(b))^2 = 5 + (1 + 0 + 4)
  assert metrics.frechet_distance(mu_1, s_1, mu_2, s_2) == pytest.approx(10.0, abs=1e-9)


def test_frechet_distance_of_singular_covariances_is_finite():
  """Fewer samples than dimensions (the test splits' case): the covariances are
  singular and the distance still comes out, finite and >= 0."""
  rng = np.random.default_rng(2)
  value = metrics.fid(rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 1.0)
  assert np.isfinite(value) and value > 64 * 0.5


def test_mmd2_unbiased_by_hand():
  # D = 1, k(x, y) = (x y + 1)^3. Within x = {0, 1}: k(0, 1) = 1; within y = {0, 2}:
  # k(0, 2) = 1; across: k(0,0) = k(0,2) = k(1,0) = 1, k(1,2) = 27 -> mean 7.5.
  assert metrics.mmd2_unbiased(np.array([[0.0], [1.0]]),
                               np.array([[0.0], [2.0]])) == pytest.approx(1 + 1 - 15.0)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_shifted():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
  same = metrics.kid(a, b, num_subsets=50, subset_size=200, seed=0)
  shifted = metrics.kid(a, b + 0.5, num_subsets=50, subset_size=200, seed=0)
  assert same["subset_size"] == 200 and same["num_subsets"] == 50
  assert abs(same["mean"]) < 3 * same["std"] / np.sqrt(50) + 1e-3
  assert shifted["mean"] > 10 * abs(same["mean"]) and shifted["mean"] > 0.05
  # The subset size is capped by the smaller set.
  assert metrics.kid(a[:30], b, num_subsets=2, subset_size=1000)["subset_size"] == 30


def test_mean_pair_distance_of_hand_built_embeddings():
  a = np.array([[3.0, 4.0], [1.0, 0.0]])
  b = np.array([[6.0, 8.0], [0.0, 2.0]])  # the same direction; orthogonal
  assert metrics.mean_pair_distance(a, b) == pytest.approx(np.sqrt(2.0) / 2.0)
  with pytest.raises(ValueError, match="paired"):
    metrics.mean_pair_distance(a, b[:1])


def test_similarities_and_roc_auc_by_hand():
  rgb = np.array([[1.0, 0.0], [0.0, 1.0]])
  ir = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.0]])
  s = metrics.cross_modality_similarities(rgb, np.array([7, 8]), ir, np.array([7, 8, 9]))
  r = 1 / np.sqrt(2)
  np.testing.assert_allclose(sorted(s["intra"]), sorted([r, -1.0]))
  np.testing.assert_allclose(sorted(s["inter"]), sorted([0.0, 1.0, r, 0.0]))
  assert metrics.roc_auc([0.9, 0.8], [0.1, 0.85]) == pytest.approx(0.75)
  assert metrics.roc_auc([0.5], [0.5]) == pytest.approx(0.5)


# ---- the Inception graph loader ------------------------------------------------------

POOL_DIM = 6


def write_stand_in_graph(path):
  """A small GraphDef shaped like classify_image_graph_def.pb: a JPEG decoder feeding
  Cast -> ExpandDims (the FID input), the graph's own ResizeBilinear and
  normalisation, then `pool_3` [N, 1, 1, POOL_DIM]; and the kernel it uses."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  kernel = np.random.default_rng(5).normal(size=(3, 3, 3, POOL_DIM)).astype(np.float32)
  graph = tf.Graph()
  with graph.as_default():
    contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
    image = tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg")
    x = tf.expand_dims(tf.cast(image, tf.float32, name="Cast"), 0, name="ExpandDims")
    x = tf.compat.v1.image.resize_bilinear(x, [12, 12], name="ResizeBilinear")
    x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1 / 128.0, name="Mul")
    x = tf.nn.relu(tf.nn.conv2d(x, tf.constant(kernel), 1, "VALID"))
    pool = tf.nn.avg_pool2d(x, 10, 1, "VALID", name="pool_3")
    tf.reshape(pool, [1, POOL_DIM], name="pool_3/_reshape")  # batch 1, as the real one
  with open(path, "wb") as f:
    f.write(graph.as_graph_def().SerializeToString())
  return kernel


def test_inception_loader_runs_the_graphs_own_path_on_a_batch(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from jsia_tf.analysis import inception
  kernel = write_stand_in_graph(tmp_path / "graph.pb")
  images = np.random.default_rng(6).uniform(0, 255, (5, 20, 10, 3)).astype(np.float32)
  lines = []
  got = inception.InceptionFeatures(str(tmp_path / "graph.pb")).features(
      images, batch_size=2, log=lines.append, what="test images")
  x = (tf.compat.v1.image.resize_bilinear(images, [12, 12]) - 128.0) / 128.0
  want = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID")), axis=[1, 2])
  assert got.shape == (5, POOL_DIM)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert lines[-1].startswith("Inception features of test images: 5/5")


def test_inception_loader_errors(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from jsia_tf import errors
  from jsia_tf.analysis import inception
  with pytest.raises(errors.ConfigError, match=r"--inception=.*nope.pb: no such file.*"
                     r"classify_image_graph_def.pb from http://download.tensorflow.org"):
    inception.InceptionFeatures(str(tmp_path / "nope.pb"))
  (tmp_path / "junk.pb").write_bytes(b"\xff\x00not a graph" * 10)
  with pytest.raises(errors.ConfigError, match="junk.pb is not a TensorFlow GraphDef"):
    inception.InceptionFeatures(str(tmp_path / "junk.pb"))
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.placeholder(tf.float32, [None, 4], name="ExpandDims")
  (tmp_path / "other.pb").write_bytes(graph.as_graph_def().SerializeToString())
  with pytest.raises(errors.ConfigError, match="other.pb has no tensor pool_3:0"):
    inception.InceptionFeatures(str(tmp_path / "other.pb"))


# ---- python -m jsia_tf.analyze -------------------------------------------------------


@pytest.fixture(scope="module")
def analysed(tiny_run, tmp_path_factory):
  """The analysis of the tiny run, with itself as a --compare run and the stand-in
  Inception graph: (output dir, analysis.json, report.md, log lines)."""
  from jsia_tf import config as config_lib  # pylint: disable=import-outside-toplevel
  from jsia_tf.analysis import analyze
  def build(root):
    root.mkdir()
    write_stand_in_graph(root / "graph.pb")
    lines = []
    cfg = config_lib.AnalyzeConfig(workdir=tiny_run, compare=(tiny_run,),
                                   inception=str(root / "graph.pb"),
                                   output_dir=str(root / "out"), kid_subsets=5,
                                   grid_ids=3)
    result = analyze.analyze(cfg, log=lines.append)
    with open(root / "out" / "analysis.json") as f:
      assert json.load(f) == json.loads(json.dumps(result))
    (root / "log.txt").write_text("".join(line + "\n" for line in lines))
  root = built_once(tmp_path_factory, "analysed", build)
  out = root / "out"
  with open(out / "analysis.json") as f:
    result = json.load(f)
  return (out, result, (out / "report.md").read_text(),
          (root / "log.txt").read_text().splitlines())


def test_analysis_writes_table4_with_every_number(analysed):
  _, result, report, lines = analysed
  t4 = result["table4"]
  assert t4["pairs"] >= 10
  for key in ("FRI", "FLS", "FRI_rgb_rgb2ir", "FRI_ir_ir2rgb", "real_same_person",
              "real_two_people"):
    assert 0.0 <= t4["MD"][key] <= 2.0
  for key in ("FRI_rgb", "FRI_ir", "FLS_rgb", "FLS_ir"):
    assert t4["FID"][key] > 0 and np.isfinite(t4["KID"][key]["mean"])
  assert t4["FID"]["FRI"] == pytest.approx((t4["FID"]["FRI_rgb"] + t4["FID"]["FRI_ir"]) / 2)
  assert any(line.startswith("generating FRI pairs:") for line in lines)
  assert any(line.startswith("Inception features of x_mix_ir:") for line in lines)
  # report.md shows analysis.json's numbers.
  row = next(line for line in report.splitlines() if line.startswith("| this run |"))
  cells = [c.strip() for c in row.strip("|").split("|")][1:]
  assert cells == [f"{t4['MD']['FRI']:.3f}", f"{t4['MD']['FLS']:.3f}",
                   f"{t4['FID']['FRI']:.2f}", f"{t4['FID']['FLS']:.2f}",
                   f"{t4['KID']['FRI']['mean']:.4f}", f"{t4['KID']['FLS']['mean']:.4f}"]
  assert f"{t4['pairs']} FRI pairs" in report and "graph.pb" in report


def test_analysis_figures_have_their_grid_shape(analysed, tiny_run):
  out, result, report, _ = analysed
  from jsia_tf import config as config_lib  # pylint: disable=import-outside-toplevel
  from jsia_tf.training import experiment
  cfg = config_lib.load(experiment.ExperimentConfig, os.path.join(tiny_run, "config.json"))
  h, w = cfg.model.gen_size
  fig6 = Image.open(out / "fig6_pairs.png")
  # One row per identity of the test pairs, at most grid_ids = 3 (the tiny set's
  # test split has fewer with both modalities).
  rows = result["fig6"]["rows"]
  assert 2 <= rows <= 3 and len(set(result["fig6"]["identities"])) == rows
  assert result["fig6"]["columns"] == 4
  assert fig6.size == (4 * w + 3 * 2, rows * h + (rows - 1) * 2)
  fig7 = Image.open(out / "fig7_interpolation.png")
  assert result["fig7"]["columns"] == 13 and result["fig7"]["alphas"][-1] == 1.0
  assert fig7.size == (13 * w + 12 * 2, 2 * h + 2)
  assert Image.open(out / "fig4_similarities.png").size[0] > 400
  # Fig. 4: the run and its --compare copy, each on train and test, agree.
  panels = result["fig4"]
  assert [(p["run"], p["split"]) for p in panels] == [("tiny", "train"), ("tiny", "test")] * 2
  for p, q in zip(panels[:2], panels[2:]):
    assert p["auc"] == pytest.approx(q["auc"]) and 0.0 <= p["auc"] <= 1.0
  for p in panels:
    assert f"| {p['run']} | {p['split']} | {p['images']} | {p['mean_intra']:.3f} |" in report
  # and TensorBoard's histograms are readable
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(os.path.join(result["tensorboard"], "tiny"))
  acc.Reload()
  assert "fig4/test/intra" in acc.Tags()["tensors"] + acc.Tags()["histograms"]


def _analyze(*args):
  return run_python("-m", "jsia_tf.analyze", *args, timeout=600)


def test_analyze_bad_input_is_one_error_line(tiny_run, tmp_path):
  empty = tmp_path / "empty"
  shutil.copytree(tiny_run, empty, ignore=shutil.ignore_patterns("checkpoints"))
  other = tmp_path / "other"
  shutil.copytree(tiny_run, other)
  with open(other / "config.json") as f:
    config = json.load(f)
  config["data"]["data_dir"] = str(tmp_path / "another_set")
  with open(other / "config.json", "w") as f:
    json.dump(config, f)
  cases = [
      ([f"--workdir={empty}"], r"has no checkpoint in .*empty/checkpoints"),
      ([f"--workdir={tiny_run}", f"--inception={tmp_path}/missing.pb"],
       r"--inception=.*missing.pb: no such file"),
      ([f"--workdir={tiny_run}", f"--compare={other}"],
       r"--compare=.*other was trained on sysu at .*another_set"),
      ([f"--workdir={tiny_run}", f"--output_dir={other}/config.json"],
       r"--output_dir=.*other/config.json is a file: expected a folder"),
  ]
  for args, pattern in cases:
    proc = _analyze(*args)
    assert proc.returncode == 2, (args, proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), (args, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
