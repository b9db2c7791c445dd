"""Export for TF Serving, evaluation from a model, and the search command."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import pipeline
from jsia_tf.data import readers
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import rerank
from jsia_tf.serving import extractor as extractor_lib
from jsia_tf.serving import saved_model
from jsia_tf.serving import search
from jsia_tf.training import trainer as trainer_lib

from conftest import run_python


@pytest.fixture(scope="module")
def restored(tiny_run):
  return extractor_lib.restore(tiny_run)


@pytest.fixture(scope="module")
def export_dir(restored, tmp_path_factory):
  base = str(tmp_path_factory.mktemp("export") / "models")
  saved_model.export(restored.extractor, restored.config, base,
                     checkpoint=restored.checkpoint, step=restored.step,
                     log=lambda _: None)
  return base


def _probe(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def _encode(image: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format=fmt)
  return buffer.getvalue()


def test_restored_extractor_is_the_trained_F(tiny_run, restored):
  """Only F's test path is restored, yet it embeds exactly as the trainer's model."""
  assert restored.step == 4 and restored.checkpoint.endswith("ckpt-4")
  trainer = trainer_lib.Trainer(restored.config, tf.distribute.get_strategy(), 10)
  trainer.restore(tf.train.latest_checkpoint(trainer_lib.checkpoint_dir(tiny_run)))
  x = tf.random.stateless_uniform((3,) + restored.config.model.image_size + (3,),
                                  [1, 2], -1, 1)
  np.testing.assert_allclose(restored.extractor.embed(x), trainer.embed(x), atol=1e-6)
  # Not the initial weights: the restore did something.
  fresh = extractor_lib.Extractor(restored.config)
  assert float(tf.reduce_max(tf.abs(fresh.embed(x) - trainer.embed(x)))) > 1e-3


def test_export_layout_signatures_and_assets(restored, export_dir):
  version = os.path.join(export_dir, "1")
  assert sorted(os.listdir(export_dir)) == ["1"]  # no leftovers beside the version
  assert os.path.isfile(os.path.join(version, "saved_model.pb"))
  meta = json.load(open(os.path.join(version, "assets", saved_model.METADATA_FILE)))
  assert meta["image_size"] == [64, 32] and meta["embedding_dim"] == 32
  assert meta["step"] == 4 and meta["version"] == 1
  assert config_lib.load(type(restored.config), os.path.join(
      version, "assets", "config.json")) == restored.config

  served = saved_model.Served(export_dir)
  assert served.directory == version
  ex = restored.extractor
  # serving_default: 0..255 RGB of any size, resized in the graph like evaluation.
  for shape in [(2, 64, 32, 3), (3, 50, 21, 3), (1, 200, 90, 3)]:
    images = tf.constant(_probe(shape), tf.float32)
    got = served.embed_images(images)
    x = pipeline.to_model_range(pipeline.resize(images, (64, 32)))
    np.testing.assert_allclose(got, ex.embed(x), atol=1e-5)
    np.testing.assert_allclose(tf.norm(got, axis=1), 1.0, rtol=1e-5)
  # serve_image_bytes: PNG, BMP and JPEG of different sizes in one batch.
  raw = [_probe((70, 30, 3), 1), _probe((64, 32, 3), 2), _probe((90, 44, 3), 3)]
  encoded = [_encode(raw[0], "PNG"), _encode(raw[1], "BMP"), _encode(raw[2], "JPEG")]
  got = served.embed_bytes(encoded)
  for i, data in enumerate(encoded):
    x = pipeline.to_model_range(pipeline.decode(tf.constant(data), (64, 32)))[None]
    np.testing.assert_allclose(got[i], ex.embed(x)[0], atol=1e-5)
  # Lossless formats decode to the pixels themselves.
  np.testing.assert_allclose(got[0], served.embed_images(raw[0][None])[0], atol=1e-5)


def test_versions_and_refusals(restored, export_dir, tmp_path):
  base = str(tmp_path / "models")
  shutil.copytree(export_dir, base)
  second = saved_model.export(restored.extractor, restored.config, base,
                              log=lambda _: None)
  assert second == os.path.join(base, "2") and sorted(saved_model.versions(base)) == [1, 2]
  assert saved_model.Served(base).directory == second  # the newest version
  with pytest.raises(errors.ConfigError, match=r"--version=1: .* already exists"):
    saved_model.export(restored.extractor, restored.config, base, version=1)
  with pytest.raises(errors.ConfigError, match="holds no SavedModel"):
    saved_model.resolve(str(tmp_path))


def test_failed_export_leaves_no_version(restored, tmp_path, monkeypatch):
  base = str(tmp_path / "models")

  def broken_check(directory, extractor):
    assert os.path.isfile(os.path.join(directory, "saved_model.pb"))  # half done
    raise RuntimeError("disk full")

  monkeypatch.setattr(saved_model, "_check", broken_check)
  with pytest.raises(RuntimeError, match="disk full"):
    saved_model.export(restored.extractor, restored.config, base, log=lambda _: None)
  assert os.listdir(base) == []
  assert saved_model.versions(base) == {}


def test_restore_refuses_a_checkpoint_of_another_model(tiny_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(tiny_run, workdir)
  path = os.path.join(workdir, "config.json")
  cfg = json.load(open(path))
  cfg["model"]["small_widths"] = [w * 2 for w in cfg["model"]["small_widths"]]
  json.dump(cfg, open(path, "w"))
  with pytest.raises(errors.ConfigError, match="does not fit the model"):
    extractor_lib.restore(workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints"))
  with pytest.raises(errors.ConfigError, match="has no checkpoint"):
    extractor_lib.find_checkpoint(workdir)


def test_evaluate_from_checkpoint_and_saved_model(tiny_run, export_dir, tmp_path):
  """Both model sources give the training run's own final features and report."""
  trained = features_lib.load(os.path.join(tiny_run, "eval", "features.npz"))
  reports = {}
  for flag, source in (("checkpoint", tiny_run), ("saved_model", export_dir)):
    feats, out = str(tmp_path / f"{flag}.npz"), str(tmp_path / f"{flag}.json")
    result = run_python("-m", "jsia_tf.evaluate", f"--{flag}={source}",
                        f"--output_features={feats}", f"--output_json={out}")
    assert result.returncode == 0, result.stderr
    assert "all-search single-shot" in result.stdout
    got = features_lib.load(feats)
    np.testing.assert_array_equal(got.ids, trained.ids)
    np.testing.assert_allclose(got.features, trained.features, atol=1e-5)
    reports[flag] = json.load(open(out))
  expected = json.load(open(os.path.join(tiny_run, "eval", "report.json")))
  for report in reports.values():
    for name, setting in expected["settings"].items():
      assert report["settings"][name]["mean"] == pytest.approx(setting["mean"], abs=1e-9)


def test_search_cli(sysu_dir, export_dir, tmp_path):
  gallery = tmp_path / "gallery"
  for cam in ("cam1", "cam2"):
    shutil.copytree(os.path.join(sysu_dir, cam), gallery / cam)
  (gallery / "notes.txt").write_text("not an image")
  (gallery / "broken.jpg").write_bytes(b"not a jpeg")
  query_dir = os.path.join(sysu_dir, "cam3", "0002")
  out = tmp_path / "out"
  args = ("-m", "jsia_tf.search", f"--saved_model={export_dir}", f"--query={query_dir}",
          f"--gallery={gallery}", f"--output={out}", "--top_k=5")
  result = run_python(*args)
  assert result.returncode == 0, result.stderr
  assert "ignored 1 non-image file" in result.stderr
  assert "skipped 1 undecodable image(s)" in result.stderr and "broken.jpg" in result.stderr
  rankings = json.load(open(out / "rankings.json"))
  queries = sorted(os.listdir(query_dir))
  assert [os.path.basename(q["query"]) for q in rankings["queries"]] == queries
  assert len(os.listdir(out / "ranked")) == len(queries)
  gallery_feats = features_lib.load(str(out / "gallery_features.npz"))  # evaluator's
  assert rankings["gallery_size"] == len(gallery_feats.features) == len(
      search.list_images(str(gallery), "gallery")) - 1  # all but broken.jpg
  assert set(gallery_feats.cams) == {1, 2} and set(gallery_feats.modality) == {0}
  served = saved_model.Served(export_dir)
  for q in rankings["queries"]:
    assert q["id"] == 2 and len(q["results"]) == 5
    scores = [r["score"] for r in q["results"]]
    assert scores == sorted(scores, reverse=True)
    for r in q["results"]:
      assert r["match"] == (r["id"] == 2)
    # The scores are the cosine similarities of the export's embeddings.
    emb = served.embed_bytes([open(q["query"], "rb").read(),
                              open(q["results"][0]["path"], "rb").read()])
    assert float(tf.reduce_sum(emb[0] * emb[1])) == pytest.approx(scores[0], abs=1e-5)
    with Image.open(q["image"]) as image:
      assert image.width >= 6 * 64  # the query and 5 results, 64 px wide each
  # A rerun reuses the cached gallery; a changed gallery file is re-embedded.
  again = run_python(*args)
  assert again.returncode == 0 and "from the cache" in again.stdout, again.stderr
  # A cache that cannot be read (a crash, a full disk) is embedded again, not fatal.
  good = (out / "gallery_features.npz").read_bytes()
  (out / "gallery_features.npz").write_bytes(good[:100])
  healed = run_python(*args)
  assert healed.returncode == 0, healed.stderr
  assert "gallery_features.npz is unreadable" in healed.stdout, healed.stdout
  np.testing.assert_array_equal(
      features_lib.load(str(out / "gallery_features.npz")).features, gallery_feats.features)
  # Re-ranked: the same lists as k-reciprocal re-ranking of the same features.
  reranked = run_python(*args[:-2], f"--output={tmp_path}/rr", "--top_k=5", "--rerank",
                        "--rerank_k1=4", "--rerank_k2=2")
  assert reranked.returncode == 0, reranked.stderr
  rr = json.load(open(tmp_path / "rr" / "rankings.json"))
  assert rr["rerank"] == {"k1": 4, "k2": 2, "lambda": 0.3}
  query_feats = np.stack([np.asarray(served.embed_bytes([open(q["query"], "rb").read()]))[0]
                          for q in rr["queries"]])
  d = rerank.distances(query_feats, gallery_feats.features, "cosine", (4, 2, 0.3))
  shown_paths = [search.shown(p) for p in gallery_feats.paths]
  for i, q in enumerate(rr["queries"]):
    expected = [shown_paths[j] for j in np.argsort(d[i], kind="stable")[:5]]
    assert [r["path"] for r in q["results"]] == expected
    assert q["results"][0]["score"] == pytest.approx(1 - np.sort(d[i])[0], abs=1e-5)
  files = [f for f in search.list_images(str(gallery), "gallery") if "broken" not in f]
  shutil.copy(files[-1], files[0])
  changed = run_python(*args)
  assert changed.returncode == 0 and "re-embedding" in changed.stdout, changed.stderr


def test_embed_cli(sysu_dir, export_dir, tmp_path):
  """A folder, a CSV list and a text list embedded into features files that the
  evaluator reads; each embedding is the export's own."""
  out = str(tmp_path / "all.npz")
  result = run_python("-m", "jsia_tf.embed", f"--model={export_dir}",
                      f"--images={sysu_dir}", f"--output={out}", "--batch_size=16")
  assert result.returncode == 0, result.stderr
  assert f"wrote {out}: " in result.stdout and "images/s" in result.stdout
  feats = features_lib.load(out)
  images = search.list_images(sysu_dir, "images")
  assert list(feats.paths) == images
  assert feats.ids[0] == search.labels(images[0])["id"] and set(feats.cams) == set(range(1, 7))
  served = saved_model.Served(export_dir)
  emb = served.embed_bytes([open(images[7], "rb").read()])
  np.testing.assert_allclose(feats.features[7], np.asarray(emb)[0], atol=1e-5)
  evaluated = run_python("-m", "jsia_tf.evaluate", f"--features={out}",
                         f"--test_ids={sysu_dir}/exp/test_id.txt", "--num_trials=2")
  assert evaluated.returncode == 0, evaluated.stderr
  assert "left out" in evaluated.stdout  # the training identities' images
  # A CSV list gives its own labels and roles.
  records = readers.read_sysu(sysu_dir, "test")
  query = next(r for r in records if r.camera == 3)
  gallery = next(r for r in records if r.camera == 1 and r.pid == query.pid)
  trainable = readers.read_sysu(sysu_dir, "train")
  pid = next(p for p in sorted({r.pid for r in trainable})
             if {r.modality for r in trainable if r.pid == p} == {0, 1})
  train = [next(r for r in trainable if r.pid == pid and r.modality == m) for m in (0, 1)]
  csv_file = tmp_path / "list.csv"
  csv_file.write_text("path,pid,camera,modality,split\n" + "".join(
      f"{r.path},{r.pid},{r.camera},{'ir' if r.modality else 'rgb'},{split}\n"
      for r, split in ((train[0], "train"), (train[1], "train"), (query, "query"),
                       (gallery, "gallery"))))
  listed = run_python("-m", "jsia_tf.embed", f"--model={export_dir}",
                      f"--images={csv_file}", f"--output={tmp_path}/list.npz")
  assert listed.returncode == 0, listed.stderr
  feats = features_lib.load(str(tmp_path / "list.npz"))
  assert sorted(feats.role.tolist()) == [0, 0, 1, 2]
  text = tmp_path / "paths.txt"
  text.write_text(f"{query.path}\n\nno/such.jpg\n")
  bad = run_python("-m", "jsia_tf.embed", f"--model={export_dir}", f"--images={text}",
                   f"--output={tmp_path}/x.npz")
  assert bad.returncode == 2 and f"image list {text} line 3:" in bad.stderr, bad.stderr
  assert not os.path.exists(tmp_path / "x.npz")


def test_labels_from_folders_and_stable_ranking(tmp_path):
  assert search.labels("/d/cam3/0007/0001.jpg") == {"id": 7, "camera": 3, "modality": 1}
  assert search.labels("/d/Thermal/12/a.bmp") == {"id": 12, "camera": 2, "modality": 1}
  assert search.labels("/d/Visible/12/a.bmp")["modality"] == 0
  assert search.labels("/d/test_nir/cam1/0007/a.jpg") == {"id": 7, "camera": 1,
                                                           "modality": 1}
  assert search.labels("/d/train_vis/cam3/0007/a.jpg")["modality"] == 0
  assert search.labels("/home/me/photo.png") == {"id": -1, "camera": 0, "modality": 0}
  gallery = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
  order, scores = search.rank(np.array([[1.0, 0.0]]), gallery, 3)
  np.testing.assert_array_equal(order, [[0, 2, 3]])  # the tie keeps gallery order
  np.testing.assert_allclose(scores, [[1.0, 1.0, np.sqrt(0.5)]])


@pytest.mark.parametrize("module,args,message", [
    ("export", [], "--workdir='' is invalid"),
    ("export", ["--workdir=/no/such/run"], "--workdir=/no/such/run does not exist"),
    ("search", ["--saved_model=/no/such", "--query=q", "--gallery=g", "--output=o"],
     "--saved_model=/no/such does not exist"),
    ("search", ["--saved_model=m", "--query=q", "--gallery=g", "--output=o",
                "--top_k=0"], "--top_k=0 is invalid"),
    ("evaluate", ["--features=a.npz", "--checkpoint=runs/x"],
     "exactly one source of features"),
    ("evaluate", [], "exactly one source of features"),
    ("evaluate", ["--checkpoint=/no/such/run"], "--checkpoint=/no/such/run does not"),
])
def test_cli_bad_input(module, args, message):
  result = run_python("-m", f"jsia_tf.{module}", *args)
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert "Traceback" not in result.stderr


def test_cli_refusals_that_need_a_run(tiny_run, export_dir, sysu_dir, tmp_path):
  wrong = run_python("-m", "jsia_tf.evaluate", f"--checkpoint={tiny_run}",
                     "--protocol=regdb")
  assert wrong.returncode == 2 and "trained on sysu" in wrong.stderr, wrong.stderr
  (tmp_path / "g").mkdir()
  missing = run_python("-m", "jsia_tf.search", f"--saved_model={export_dir}",
                       f"--query={tmp_path}/none.jpg", f"--gallery={tmp_path}/g",
                       f"--output={tmp_path}/o")
  assert missing.returncode == 2 and "--query=" in missing.stderr and \
      "does not exist" in missing.stderr, missing.stderr
  (tmp_path / "notes.txt").write_text("mine")
  as_file = run_python("-m", "jsia_tf.search", f"--saved_model={export_dir}",
                       f"--query={sysu_dir}/cam3/0002", f"--gallery={tmp_path}/g",
                       f"--output={tmp_path}/notes.txt")
  assert as_file.returncode == 2 and f"--output={tmp_path}/notes.txt is a file" in \
      as_file.stderr and "Traceback" not in as_file.stderr, as_file.stderr
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_empty_batch_gives_an_empty_embedding_matrix(export_dir):
  served = saved_model.Served(export_dir)
  assert served.embed_images(tf.zeros((0, 40, 20, 3))).shape == (0, 32)
  assert served.embed_bytes(tf.constant([], tf.string)).shape == (0, 32)


def test_export_modes_follow_the_umask(restored, export_dir, tmp_path):
  def modes(root):
    return {os.stat(os.path.join(d, n)).st_mode & 0o777
            for d, dirs, files in os.walk(root) for n in dirs + files} | {
                os.stat(root).st_mode & 0o777}
  # The default (022): readable by a server running as another user.
  assert modes(os.path.join(export_dir, "1")) == {0o755, 0o644}
  private = saved_model.export(restored.extractor, restored.config, str(tmp_path / "m"),
                               log=lambda _: None, umask=0o077)
  assert modes(private) == {0o700, 0o600}


def test_sigterm_during_export_removes_the_temporary_version(restored, tmp_path,
                                                             monkeypatch):
  base = str(tmp_path / "models")
  original = saved_model._check

  def check_then_sigterm(directory, extractor):
    original(directory, extractor)
    os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, mid-export

  monkeypatch.setattr(saved_model, "_check", check_then_sigterm)
  with pytest.raises(errors.JsiaError, match=r"stopped by SIGTERM while exporting "
                                             r"version 1 .* is removed"):
    saved_model.export(restored.extractor, restored.config, base, log=lambda _: None)
  assert os.listdir(base) == []
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_cli_refuses_a_bad_umask(tiny_run):
  result = run_python("-m", "jsia_tf.export", f"--workdir={tiny_run}", "--umask=9")
  assert result.returncode == 2 and "--umask='9' is invalid" in result.stderr


def test_a_gallery_with_link_loops_fifos_and_dangling_links(tmp_path, caplog):
  """Every image once, by its own name; loops, links to nowhere, links to each other
  and FIFOs are skipped and named, never walked into or read (a FIFO would block)."""
  gallery = tmp_path / "g"
  (gallery / "0001").mkdir(parents=True)
  Image.new("RGB", (16, 32)).save(gallery / "0001" / "a.jpg")
  Image.new("RGB", (16, 32)).save(gallery / "0001" / "b.png")
  os.symlink(".", gallery / "loop")
  os.symlink("..", gallery / "0001" / "up")
  os.symlink("x.jpg", gallery / "y.jpg")
  os.symlink("y.jpg", gallery / "x.jpg")
  os.symlink("missing.jpg", gallery / "dangling.jpg")
  os.mkfifo(gallery / "fifo.jpg")
  os.symlink(os.path.join("0001", "a.jpg"), gallery / "alias.jpg")
  images = search.list_images(str(gallery), "gallery")
  assert images == [str(gallery / "0001" / "a.jpg"), str(gallery / "0001" / "b.png")]
  log = caplog.text
  assert "skipped 2 link(s) to a folder already walked" in log
  assert "skipped 3 link(s) that lead to no file" in log and "dangling.jpg" in log
  assert "skipped 1 FIFO(s), socket(s) or device(s): " + str(gallery / "fifo.jpg") in log
  assert "skipped 1 second name(s) of an image already listed: " + str(
      gallery / "alias.jpg") in log


def test_search_names_files_whose_names_are_not_utf8(sysu_dir, export_dir, tmp_path):
  """A file name's bytes that are not UTF-8 reach the console and rankings.json as
  \\xNN escapes, under a UTF-8 console that refuses Python's surrogates."""
  gallery, query = tmp_path / "g" / "0001", tmp_path / "q" / "0001"
  gallery.mkdir(parents=True)
  query.mkdir(parents=True)
  image = Image.open(os.path.join(sysu_dir, "cam1", os.listdir(
      os.path.join(sysu_dir, "cam1"))[0], "0001.jpg"))
  image.save(os.fsencode(str(gallery)) + b"/caf\xe9.jpg", format="JPEG")
  image.save(os.fsencode(str(query)) + b"/q\xff.jpg", format="JPEG")
  result = subprocess.run(
      [sys.executable, "-m", "jsia_tf.search", f"--saved_model={export_dir}",
       f"--query={tmp_path / 'q'}", f"--gallery={tmp_path / 'g'}",
       f"--output={tmp_path / 'out'}"], capture_output=True, text=True,
      env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "q\\xff.jpg: top-1 " + str(gallery) + "/caf\\xe9.jpg" in result.stdout
  with open(tmp_path / "out" / "rankings.json", encoding="utf-8") as f:
    rankings = json.load(f)
  assert rankings["queries"][0]["query"] == str(query) + "/q\\xff.jpg"
