"""SYSU-MM01 and RegDB protocols: galleries, the official perm file, end to end."""

import numpy as np
import pytest
from scipy import io as scipy_io

from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import readers
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols

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
  with pytest.raises(errors.DataError, match="is not a readable .npz"):
    features_lib.load(str(tmp_path / "text.npz"))


def test_empty_gallery_or_no_queries(generated):
  rgb_only = generated.select(generated.modality == layouts.RGB)
  with pytest.raises(errors.DataError, match="no SYSU-MM01 queries"):
    protocols.sysu_split(rgb_only, "all")
  no_indoor = generated.select(~np.isin(generated.cams, [1, 2]))
  with pytest.raises(errors.DataError, match="the indoor-search gallery is empty"):
    protocols.sysu_split(no_indoor, "indoor")
