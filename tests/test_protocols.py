"""SYSU-MM01 and RegDB protocols: galleries, the official perm file, end to end."""

import numpy as np
import pytest
from scipy import io as scipy_io

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import readers
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import report as report_lib

from ranking_reference import reference_ranking

SPLIT_DIR = protocols.OFFICIAL_SPLIT_DIR


def _features(rows, modality=None, dim=8, seed=0):
  rows = np.asarray(rows)
  if modality is None:
    modality = np.isin(rows[:, 1], layouts.SYSU_IR_CAMERAS).astype(int)
  rng = np.random.default_rng(seed)
  return features_lib.FeatureSet(features=rng.standard_normal((len(rows), dim)),
                                 ids=rows[:, 0], cams=rows[:, 1], frames=rows[:, 2],
                                 modality=modality)


@pytest.fixture(scope="module")
def official():
  perm, rows = protocols.official_test_layout(SPLIT_DIR)
  return perm, rows, _features(rows, dim=4)


def test_official_layout_has_the_sizes_of_the_real_test_set(official):
  _, rows, feats = official
  query, candidates = protocols.sysu_split(feats, "all")
  assert len(query) == 3803 and len(candidates) == 6775
  assert len(np.unique(rows[:, 0])) == 96


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("shots", [1, 10])
def test_official_perm_file_drives_the_gallery(official, mode, shots):
  perm, _, feats = official
  _, candidates = protocols.sysu_split(feats, mode)
  galleries = protocols.sysu_galleries(feats, candidates, shots, perm=perm)
  assert len(galleries) == 10
  for trial in (0, 4, 9):
    rows = candidates[galleries[trial]]
    got = set(zip(feats.cams[rows].tolist(), feats.ids[rows].tolist(),
                  feats.frames[rows].tolist()))
    expected = set()
    for cam in layouts.SYSU_GALLERY_CAMERAS[mode]:
      for pid in np.unique(feats.ids).tolist():
        matrix = perm.get(cam, pid)
        if matrix is not None:
          expected |= {(cam, pid, int(i) - 1) for i in matrix[trial, :shots]}
    assert got == expected
  if shots == 10 and mode == "all":
    assert {len(g) for g in galleries} == {3010}


def test_perm_file_that_does_not_fit_the_features(official, tmp_path):
  perm, rows, _ = official
  cam1 = np.flatnonzero(rows[:, 1] == 1)
  pid = rows[cam1[0], 0]
  missing_frame = _features(np.delete(rows, cam1[3], axis=0), dim=2)
  _, candidates = protocols.sysu_split(missing_frame, "all")
  with pytest.raises(errors.DataError, match=f"rand_perm_cam.mat does not fit the "
                     f"features: cam 1 id {pid} has .* images in the file but the "
                     f"features hold frames"):
    protocols.sysu_galleries(missing_frame, candidates, 1, perm=perm)
  stranger = _features(np.vstack([rows, [[2000, 1, 0]]]), dim=2)
  _, candidates = protocols.sysu_split(stranger, "all")
  with pytest.raises(errors.DataError, match="cam 1 id 2000 has no permutation"):
    protocols.sysu_galleries(stranger, candidates, 1, perm=perm)
  with pytest.raises(errors.DataError, match="perm file .*absent.mat does not exist"):
    protocols.PermFile(str(tmp_path / "absent.mat"))
  not_mat = tmp_path / "perm.mat"
  not_mat.write_text("hello")
  with pytest.raises(errors.DataError, match="is not a readable .mat file"):
    protocols.PermFile(str(not_mat))
  wrong = tmp_path / "wrong.mat"
  scipy_io.savemat(str(wrong), {"something": np.zeros(3)})
  with pytest.raises(errors.DataError, match="has no 6-camera cell array"):
    protocols.PermFile(str(wrong))


def test_seeded_galleries(official):
  _, rows, feats = official
  _, candidates = protocols.sysu_split(feats, "all")
  groups = {(c, p): int(((rows[candidates, 1] == c) & (rows[candidates, 0] == p)).sum())
            for c, p in set(zip(rows[candidates, 1].tolist(), rows[candidates, 0].tolist()))}
  for shots in (1, 10):
    galleries = protocols.sysu_galleries(feats, candidates, shots)
    again = protocols.sysu_galleries(feats, candidates, shots)
    for a, b in zip(galleries, again):
      np.testing.assert_array_equal(a, b)
    assert not np.array_equal(galleries[0], galleries[1])
    r = candidates[galleries[0]]
    keys, counts = np.unique(feats.cams[r] * 10000 + feats.ids[r], return_counts=True)
    assert len(keys) == len(groups)
    for key, count in zip(keys.tolist(), counts.tolist()):
      assert count == min(shots, groups[(key // 10000, key % 10000)])


@pytest.fixture(scope="module")
def generated(sysu_dir):
  records = readers.read_sysu(sysu_dir, "test")
  rows = [(r.pid, r.camera, r.frame) for r in records]
  return _features(rows, modality=[r.modality for r in records], dim=6, seed=2)


def test_evaluate_sysu_agrees_with_reference_on_every_trial(generated):
  results = protocols.evaluate_sysu(generated, distance="euclidean", num_trials=4)
  assert sorted(results) == [("all", 1), ("all", 10), ("indoor", 1), ("indoor", 10)]
  for (mode, shots), trials in results.items():
    query, candidates = protocols.sysu_split(generated, mode)
    assert set(generated.cams[query].tolist()) <= {3, 6}
    assert set(generated.cams[candidates].tolist()) <= set(
        layouts.SYSU_GALLERY_CAMERAS[mode])
    galleries = protocols.sysu_galleries(generated, candidates, shots, 4)
    for result, gallery in zip(trials, galleries):
      g = candidates[gallery]
      d = features_lib.distance_matrix(generated.features[query],
                                       generated.features[g], "euclidean")
      cmc, m_ap, m_inp, nq, ns = reference_ranking(
          d, generated.ids[query], generated.ids[g], generated.cams[query],
          generated.cams[g], "sysu")
      np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
      assert abs(result.mAP - m_ap) < 1e-9 and abs(result.mINP - m_inp) < 1e-9
      assert (result.num_queries, result.num_skipped) == (nq, ns)


def test_regdb_directions(regdb_dir):
  records = readers.read_regdb(regdb_dir, "test", 1)
  feats = _features([(r.pid, r.camera, r.frame) for r in records],
                    modality=[r.modality for r in records], dim=5, seed=3)
  for direction, (qm, gm) in protocols.REGDB_DIRECTIONS.items():
    result = protocols.evaluate_regdb(feats, direction)
    q, g = feats.modality == qm, feats.modality == gm
    d = features_lib.distance_matrix(feats.features[q], feats.features[g], "cosine")
    cmc, m_ap, _, nq, _ = reference_ranking(d, feats.ids[q], feats.ids[g],
                                            feats.cams[q], feats.cams[g], "regdb")
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
    assert abs(result.mAP - m_ap) < 1e-9 and result.num_queries == nq == 30
  with pytest.raises(errors.DataError, match="unknown RegDB direction 'x2y'"):
    protocols.evaluate_regdb(feats, "x2y")


def test_distances():
  q = np.array([[3.0, 4.0]])
  g = np.array([[3.0, 4.0], [0.0, 1.0], [-6.0, -8.0]])
  np.testing.assert_allclose(features_lib.distance_matrix(q, g, "euclidean"),
                             [[0.0, np.sqrt(9 + 9), 15.0]])
  np.testing.assert_allclose(features_lib.distance_matrix(q, g, "cosine"),
                             [[0.0, 0.2, 2.0]], atol=1e-12)
  with pytest.raises(errors.DataError, match="unknown distance 'l1'"):
    features_lib.distance_matrix(q, g, "l1")


def test_features_file_round_trip_and_bad_files(generated, tmp_path):
  path = str(tmp_path / "f.npz")
  features_lib.save(path, generated)
  back = features_lib.load(path)
  for name in features_lib.REQUIRED:
    np.testing.assert_array_equal(getattr(back, name), getattr(generated, name))
  with pytest.raises(errors.DataError, match="features file .*nope.npz does not exist"):
    features_lib.load(str(tmp_path / "nope.npz"))
  np.savez(tmp_path / "short.npz", features=np.zeros((3, 2)), ids=[1, 2, 3],
           cams=[1, 2, 3], frames=[0, 0, 0], modality=[0, 1])
  with pytest.raises(errors.DataError, match=r"short.npz: modality has shape \(2,\) "
                     r"but features has 3 rows"):
    features_lib.load(str(tmp_path / "short.npz"))
  np.savez(tmp_path / "partial.npz", features=np.zeros((3, 2)), ids=[1, 2, 3])
  with pytest.raises(errors.DataError, match="partial.npz lacks cams, frames, modality"):
    features_lib.load(str(tmp_path / "partial.npz"))
  (tmp_path / "text.npz").write_text("not an npz")
  with pytest.raises(errors.DataError, match=r"is not a readable .npz \(it starts with "
                                              r"b'not an', not a zip archive's b'PK'\)"):
    features_lib.load(str(tmp_path / "text.npz"))


def test_empty_gallery_or_no_queries(generated):
  rgb_only = generated.select(generated.modality == layouts.RGB)
  with pytest.raises(errors.DataError, match="no SYSU-MM01 queries"):
    protocols.sysu_split(rgb_only, "all")
  no_indoor = generated.select(~np.isin(generated.cams, [1, 2]))
  with pytest.raises(errors.DataError, match="the indoor-search gallery is empty"):
    protocols.sysu_split(no_indoor, "indoor")


def _tied_set(num_ids=12, frames=3, seed=0):
  """A SYSU-shaped set whose features take 8 values: most distances tie exactly."""
  rows = np.array([(pid, cam, f) for cam in layouts.SYSU_CAMERAS
                   for pid in range(1, num_ids + 1) for f in range(frames)])
  feats = _features(rows)
  feats.features = np.random.default_rng(seed).integers(0, 2, (len(rows), 3)) + 0.5
  return feats


def _official_gallery(feats, perm, mode, shots, trial):
  """The gallery rows in the order of the official get_testing_set.m: cameras of the
  mode, then ids ascending, then the trial's permutation order."""
  rows = []
  for cam in layouts.SYSU_GALLERY_CAMERAS[mode]:
    for pid in sorted(set(feats.ids.tolist())):
      matrix = perm.get(cam, pid)
      for index in (matrix[trial, :shots] if matrix is not None else []):
        rows.append(int(np.flatnonzero((feats.cams == cam) & (feats.ids == pid) &
                                       (feats.frames == index - 1))[0]))
  return np.array(rows)


def test_shuffled_rows_give_the_official_order_metrics(tmp_path):
  """Exact ties are broken by the official gallery order, whatever the file's row
  order; checked against the official code's order written out by hand."""
  feats = _tied_set()
  counts = {(c, p): 3 for c in layouts.SYSU_CAMERAS for p in range(1, 13)}
  path = str(tmp_path / "perm.mat")
  protocols.write_perm_file(path, protocols.make_perm_cells(counts, seed=1))
  perm = protocols.PermFile(path)
  shuffled = feats.select(np.random.default_rng(5).permutation(len(feats.ids)))
  differs_in_file_order = False
  for perm_file in (path, "seeded"):
    cfg = config_lib.EvalConfig(features=("f.npz",), perm_file=perm_file,
                                test_ids=("all",))
    settings = report_lib.evaluate_features([feats], cfg)["settings"]
    assert report_lib.evaluate_features([shuffled], cfg)["settings"] == settings
    if perm_file == "seeded":
      continue
    for mode, shots, trial in (("all", 1, 0), ("all", 10, 3), ("indoor", 1, 7)):
      name = f"{mode}-search {'single' if shots == 1 else 'multi'}-shot"
      got = settings[name]["trials"][trial]
      query = np.flatnonzero(shuffled.modality == layouts.IR)
      gallery = _official_gallery(shuffled, perm, mode, shots, trial)
      for g, official in ((gallery, True), (np.sort(gallery), False)):  # file order
        d = features_lib.distance_matrix(shuffled.features[query],
                                         shuffled.features[g], "cosine")
        cmc, m_ap, m_inp, _, _ = reference_ranking(
            d, shuffled.ids[query], shuffled.ids[g], shuffled.cams[query],
            shuffled.cams[g], "sysu")
        same = (abs(got["R1"] - cmc[0]) < 1e-12 and abs(got["mAP"] - m_ap) < 1e-12
                and abs(got["mINP"] - m_inp) < 1e-12)
        if official:
          assert same, (name, trial, got, cmc[0], m_ap)
        differs_in_file_order |= not same
  assert differs_in_file_order  # the ties are heavy enough to move a metric
  regdb = feats.select(np.isin(feats.cams, (1, 3)))
  regdb.cams = np.where(regdb.cams == 1, 1, 2)
  cfg = config_lib.EvalConfig(features=("f.npz",), protocol="regdb")
  shuffled = regdb.select(np.random.default_rng(6).permutation(len(regdb.ids)))
  assert (report_lib.evaluate_features([regdb], cfg)["settings"] ==
          report_lib.evaluate_features([shuffled], cfg)["settings"])


def test_identities_outside_the_test_list_are_left_out_and_counted(tmp_path):
  feats = _tied_set(seed=2)
  id_list = tmp_path / "test_id.txt"
  id_list.write_text("1,2,3,4,5,6,7,8\n")
  cfg = config_lib.EvalConfig(features=("f.npz",), perm_file="seeded",
                              test_ids=(str(id_list),))
  report = report_lib.evaluate_features([feats], cfg)
  assert report["test_ids"] == [{"source": str(id_list), "kept_rows": 8 * 6 * 3,
                                 "kept_ids": 8, "left_out_rows": 4 * 6 * 3,
                                 "left_out_ids": 4}]
  assert ("test identities: " + str(id_list) + ": 8 identities, 144 images; left out "
          "72 images of 4 other identities") in report_lib.format_table(report)
  alone = report_lib.evaluate_features(
      [feats.select(feats.ids <= 8)],
      config_lib.EvalConfig(features=("f.npz",), perm_file="seeded", test_ids=("all",)))
  assert report["settings"] == alone["settings"]
  single = report["settings"]["all-search single-shot"]
  assert single["num_queries"] == [8 * 2 * 3] * 10 and single["gallery_size"] == [32] * 10
  # The official list, as .mat; a RegDB index file gives its folder ids.
  np.testing.assert_array_equal(protocols.read_ids(protocols.OFFICIAL_TEST_IDS)[:3],
                                [6, 10, 17])
  idx = tmp_path / "test_visible_1.txt"
  idx.write_text("Visible/7/a.bmp 0\nVisible/7/b.bmp 0\nVisible/12/c.bmp 1\n")
  np.testing.assert_array_equal(protocols.read_ids(str(idx)), [7, 12])
  bad = tmp_path / "bad.txt"
  bad.write_text("1,2\nthree\n")
  with pytest.raises(errors.DataError, match=r"bad.txt line 2: 'three' is not a person"):
    protocols.read_ids(str(bad))
  feats.ids += 1000  # the official test ids are all below 534
  with pytest.raises(errors.DataError, match="none of its 12 identities is in the "
                     "official test_id.mat"):
    report_lib.evaluate_features([feats], config_lib.EvalConfig(features=("f.npz",)))


def test_perm_cells_have_the_official_nesting(tmp_path):
  counts = {(1, 2): 3, (1, 5): 1, (3, 2): 300, (6, 1): 4}
  path = str(tmp_path / "perm.mat")
  protocols.write_perm_file(path, protocols.make_perm_cells(counts, num_trials=10, seed=4))
  assert scipy_io.whosmat(path) == [("rand_perm_cam", (6, 1), "cell")]
  cells = scipy_io.loadmat(path)["rand_perm_cam"]
  assert [cells[c, 0].shape for c in range(6)] == [(5, 1), (0, 1), (2, 1), (0, 1),
                                                   (0, 1), (1, 1)]
  assert cells[0, 0][0, 0].shape == (10, 0)  # cam 1 has no id 1: empty, as official
  assert cells[0, 0][1, 0].dtype == np.uint8 and cells[2, 0][1, 0].dtype == np.uint16
  perm = protocols.PermFile(path)
  for (cam, pid), n in counts.items():
    matrix = perm.get(cam, pid)
    assert matrix.shape == (10, n)
    for row in matrix:
      np.testing.assert_array_equal(np.sort(row), np.arange(1, n + 1))
  assert perm.get(1, 1) is None and perm.get(1, 3) is None and perm.get(2, 1) is None
  assert not np.array_equal(perm.get(3, 2)[0], perm.get(3, 2)[1])
  again = protocols.make_perm_cells(counts, num_trials=10, seed=4)
  np.testing.assert_array_equal(again[2, 0][1, 0], perm.get(3, 2))


def test_feature_cam_cells_are_the_authors_layout(tmp_path):
  """feature_cam{c}.mat of the SYSU-MM01 authors' Python evaluation: entry pid - 1
  holds the (c, pid) features in frame order whatever the row order; [0, 0] where
  the camera has no such identity."""
  feats = features_lib.FeatureSet(
      np.array([[3.0, 0], [1, 0], [2, 0], [9, 9], [4, 4]], np.float32),
      ids=[2, 2, 2, 1, 2], cams=[1, 1, 1, 1, 3], frames=[2, 0, 1, 0, 0],
      modality=[0, 0, 0, 0, 1])
  path = str(tmp_path / "feature_cam1.mat")
  scipy_io.savemat(path, {"feature": protocols.feature_cam_cells(feats, cam=1, num_ids=3)})
  cells = scipy_io.loadmat(path)["feature"]
  assert cells.shape == (3, 1)
  np.testing.assert_array_equal(cells[0, 0], [[9, 9]])
  np.testing.assert_array_equal(cells[1, 0], [[1, 0], [2, 0], [3, 0]])  # frames 0, 1, 2
  assert cells[2, 0].shape == (0, 0)  # read as "no such identity" by their code
  np.testing.assert_array_equal(protocols.feature_cam_cells(feats, 3, 2)[1, 0], [[4, 4]])


def _their_llcm_gallery(root, modality_folder, trial):
  """The gallery paths of the LLCM authors' `process_gallery_llcm`, written out:
  random.seed(trial); for each test id (as %04d, sorted), for each camera folder in
  order, if it exists: random.choice of its sorted files."""
  import os  # pylint: disable=import-outside-toplevel
  import random  # pylint: disable=import-outside-toplevel
  random.seed(trial)
  with open(os.path.join(root, "idx/test_id.txt")) as f:
    ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(",")]
  cameras = [f"{modality_folder}/cam{c}" for c in range(1, 10)]
  picked = []
  for pid in sorted(ids):
    for cam in cameras:
      folder = os.path.join(root, cam, pid)
      if os.path.isdir(folder):
        picked.append(random.choice(sorted(folder + "/" + n for n in os.listdir(folder))))
  return picked


def test_llcm_galleries_are_the_authors_draws_and_metrics_the_loop(llcm_dir):
  records = readers.read_llcm(llcm_dir, "test")
  feats = _features([(r.pid, r.camera, r.frame) for r in records],
                    modality=[r.modality for r in records], dim=4, seed=7)
  feats.paths = np.array([r.path for r in records])
  for direction, folder in (("t2v", "test_vis"), ("v2t", "test_nir")):
    gallery_modality = protocols.REGDB_DIRECTIONS[direction][1]
    galleries = protocols.llcm_galleries(
        feats, np.flatnonzero(feats.modality == gallery_modality), 10)
    for trial in (0, 1, 9):
      assert sorted(feats.paths[galleries[trial]]) == sorted(
          _their_llcm_gallery(llcm_dir, folder, trial))
    results = protocols.evaluate_llcm(feats, direction, num_trials=3)
    query = np.flatnonzero(feats.modality != gallery_modality)
    assert len(query) == sum(r.modality != gallery_modality for r in records)
    for trial, result in enumerate(results):
      g = galleries[trial]
      d = features_lib.distance_matrix(feats.features[query], feats.features[g], "cosine")
      cmc, m_ap, m_inp, nq, ns = reference_ranking(
          d, feats.ids[query], feats.ids[g], feats.cams[query], feats.cams[g], "llcm")
      np.testing.assert_allclose(result.cmc, cmc, atol=1e-12)
      assert abs(result.mAP - m_ap) < 1e-12 and abs(result.mINP - m_inp) < 1e-12
      assert (result.num_queries, result.num_skipped) == (nq, ns)
  # The same identity in the same camera (its other mode) is never a match.
  same = features_lib.FeatureSet(features=[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
                                 ids=[5, 5, 6], cams=[2, 2, 4], frames=[0, 0, 0],
                                 modality=[1, 0, 0])
  with pytest.raises(errors.DataError, match="no query has a true match"):
    protocols.evaluate_llcm(same, "t2v", num_trials=1)
  # All of id 5: the far image of camera 4 is the only match left, at rank 1 of 1.
  same = features_lib.FeatureSet(features=[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
                                 ids=[5, 5, 5], cams=[2, 2, 4], frames=[0, 0, 0],
                                 modality=[1, 0, 0])
  result = protocols.evaluate_llcm(same, "t2v", num_trials=1)[0]
  assert result.gallery_size == 2 and result.mAP == 1.0  # only the cam-4 image counts


@pytest.mark.parametrize("remove_same_camera", [False, True])
def test_custom_protocol_is_the_loop(remove_same_camera):
  rng = np.random.default_rng(11)
  n = 60
  feats = features_lib.FeatureSet(
      features=rng.standard_normal((n, 6)), ids=rng.integers(1, 7, n),
      cams=rng.integers(1, 4, n), frames=np.arange(n), modality=rng.integers(0, 2, n),
      role=np.where(np.arange(n) < 20, layouts.ROLE_QUERY, layouts.ROLE_GALLERY))
  result = protocols.evaluate_custom(feats, remove_same_camera=remove_same_camera)
  q = protocols.gallery_order(feats, np.arange(20))
  g = protocols.gallery_order(feats, np.arange(20, n))
  d = features_lib.distance_matrix(feats.features[q], feats.features[g], "cosine")
  cmc, m_ap, m_inp, nq, _ = reference_ranking(
      d, feats.ids[q], feats.ids[g], feats.cams[q], feats.cams[g], "custom",
      remove_same_camera=remove_same_camera)
  np.testing.assert_allclose(result.cmc, cmc, atol=1e-12)
  assert abs(result.mAP - m_ap) < 1e-12 and abs(result.mINP - m_inp) < 1e-12
  assert result.num_queries == nq and result.gallery_size == 40
  no_roles = features_lib.FeatureSet(feats.features, feats.ids, feats.cams, feats.frames,
                                     feats.modality)
  with pytest.raises(errors.DataError, match="needs the features' role array"):
    protocols.evaluate_custom(no_roles)
