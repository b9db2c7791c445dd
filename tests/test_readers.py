"""The SYSU-MM01, RegDB and LLCM readers on generated data, and their bad-input errors."""

import os
import shutil

import pytest

from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import readers


def _ids(root, split):
  return readers.read_sysu_split_file(root, split)


def test_sysu_train_is_train_plus_val_and_frames_follow_sorted_names(sysu_dir):
  records = readers.read_sysu(sysu_dir, "train")
  expected_ids = set(_ids(sysu_dir, "train")) | set(_ids(sysu_dir, "val"))
  assert {r.pid for r in records} == expected_ids
  on_disk = sum(len(os.listdir(f"{sysu_dir}/cam{c}/{pid:04d}"))
                for c in range(1, 7) for pid in expected_ids
                if os.path.isdir(f"{sysu_dir}/cam{c}/{pid:04d}"))
  assert len(records) == on_disk
  for r in records:
    assert r.modality == (layouts.IR if r.camera in (3, 6) else layouts.RGB)
    folder = os.path.dirname(r.path)
    assert sorted(os.listdir(folder))[r.frame] == os.path.basename(r.path)
    assert folder.endswith(f"cam{r.camera}/{r.pid:04d}")
  test = readers.read_sysu(sysu_dir, "test")
  assert {r.pid for r in test} == set(_ids(sysu_dir, "test"))


def test_sysu_ignores_and_counts_non_image_files(sysu_copy):
  pid = _ids(sysu_copy, "test")[0]
  cam = next(c for c in range(1, 7) if os.path.isdir(f"{sysu_copy}/cam{c}/{pid:04d}"))
  with open(f"{sysu_copy}/cam{cam}/{pid:04d}/Thumbs.db", "w") as f:
    f.write("x")
  before = len(os.listdir(f"{sysu_copy}/cam{cam}/{pid:04d}")) - 1
  records = [r for r in readers.read_sysu(sysu_copy, "test")
             if r.camera == cam and r.pid == pid]
  assert len(records) == before


def test_regdb_records_and_labels(regdb_dir):
  for split in ("train", "test"):
    records = readers.read_regdb(regdb_dir, split, trial=2)
    assert len(records) == 60
    assert {r.camera for r in records if r.modality == layouts.RGB} == {1}
    assert {r.camera for r in records if r.modality == layouts.IR} == {2}
    for r in records:
      assert sorted(os.listdir(os.path.dirname(r.path)))[r.frame] == os.path.basename(
          r.path)
  train = {r.pid for r in readers.read_regdb(regdb_dir, "train", 2)}
  test = {r.pid for r in readers.read_regdb(regdb_dir, "test", 2)}
  assert len(train) == len(test) == 3 and not train & test


def test_relabel():
  assert readers.relabel([7, 3, 7, 10]) == {3: 0, 7: 1, 10: 2}


# ---- bad input: each error names the path and what was expected -----------------


def test_missing_data_dir(tmp_path):
  with pytest.raises(errors.DataError, match=f"{tmp_path}/nope does not exist"):
    readers.read_sysu(str(tmp_path / "nope"), "train")
  with pytest.raises(errors.DataError, match="does not exist"):
    readers.read_regdb(str(tmp_path / "nope"), "train", 1)


def test_wrong_layout(sysu_dir, regdb_dir):
  with pytest.raises(errors.DataError, match=r"is not the SYSU-MM01 layout: missing "
                     r"cam1, cam2.*expected cam1/ \.\. cam6/"):
    readers.read_sysu(regdb_dir, "train")
  with pytest.raises(errors.DataError, match="is not the RegDB layout: missing "
                     "Visible, Thermal, idx"):
    readers.read_regdb(sysu_dir, "train", 1)


def test_sysu_missing_split_file(sysu_copy):
  os.remove(f"{sysu_copy}/exp/val_id.txt")
  with pytest.raises(errors.DataError, match="exp/val_id.txt is missing"):
    readers.read_sysu(sysu_copy, "train")


@pytest.mark.parametrize("content,message", [
    ("1,2,x3\n", "'x3' is not a person id"),
    ("\n", "is empty"),
    ("1,2,2\n", r"lists ids more than once: \[2\]"),
])
def test_sysu_malformed_split_file(sysu_copy, content, message):
  with open(f"{sysu_copy}/exp/test_id.txt", "w") as f:
    f.write(content)
  with pytest.raises(errors.DataError, match="test_id.txt.*" + message):
    readers.read_sysu(sysu_copy, "test")


def test_sysu_split_id_without_images(sysu_copy):
  pid = _ids(sysu_copy, "test")[0]
  for c in range(1, 7):
    shutil.rmtree(f"{sysu_copy}/cam{c}/{pid:04d}", ignore_errors=True)
  with pytest.raises(errors.DataError, match=f"person id {pid} is listed in .*"
                     f"test_id.txt but has no images"):
    readers.read_sysu(sysu_copy, "test")


def test_regdb_missing_idx_file(regdb_copy):
  os.remove(f"{regdb_copy}/idx/test_thermal_4.txt")
  with pytest.raises(errors.DataError, match="idx/test_thermal_4.txt is missing"):
    readers.read_regdb(regdb_copy, "test", 4)


@pytest.mark.parametrize("line,message", [
    ("Visible/1/v_0001_01.bmp", "line 2 is malformed"),
    ("Visible/1/v_0001_01.bmp one", "line 2 is malformed"),
    ("Thermal/1/t_0001_01.bmp 0", "is not of the form 'Visible/<numeric id>/<file>'"),
    ("Visible/1/missing.bmp 0", "line 2: image .*missing.bmp does not exist"),
])
def test_regdb_malformed_idx_line(regdb_copy, line, message):
  path = f"{regdb_copy}/idx/train_visible_1.txt"
  with open(path) as f:
    lines = f.read().splitlines()
  lines.insert(1, line)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(errors.DataError, match="train_visible_1.txt.*" + message):
    readers.read_regdb(regdb_copy, "train", 1)


def test_regdb_contradicting_labels(regdb_copy):
  path = f"{regdb_copy}/idx/train_visible_1.txt"
  with open(path) as f:
    lines = f.read().splitlines()
  rel, label = lines[0].split()
  lines[1] = f"{lines[1].split()[0]} {int(label) + 1}"
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(errors.DataError, match="line 2: label .* contradicts"):
    readers.read_regdb(regdb_copy, "train", 1)


def test_llcm_records(llcm_dir):
  train = readers.read_llcm(llcm_dir, "train")
  test = readers.read_llcm(llcm_dir, "test")
  with open(os.path.join(llcm_dir, "idx", "test_id.txt")) as f:
    test_ids = {int(t) for t in f.read().strip().split(",")}
  assert {r.pid for r in test} == test_ids and not {r.pid for r in train} & test_ids
  for records in (train, test):
    assert {r.modality for r in records} == {layouts.RGB, layouts.IR}
    for r in records:
      assert f"/cam{r.camera}/{r.pid:04d}/" in r.path
      assert r.path.split("/")[-4].endswith("_nir" if r.modality else "_vis")
      folder = os.path.dirname(r.path)
      assert sorted(os.listdir(folder)).index(os.path.basename(r.path)) == r.frame
  assert 3 not in {r.camera for r in test if r.modality == layouts.IR}
  with open(os.path.join(llcm_dir, "idx", "train_nir.txt")) as f:
    assert len(f.read().splitlines()) == sum(r.modality == layouts.IR for r in train)
  assert readers.read_dataset("llcm", llcm_dir, "test") == test


@pytest.mark.parametrize("name, content, message", [
    ("idx/train_vis.txt", "train_vis/cam1/0001/x.jpg\n",
     r"train_vis.txt line 1 is malformed: 'train_vis/cam1/0001/x.jpg'"),
    ("idx/train_nir.txt", "nir/0001/a.jpg 1\n", r"train_nir.txt line 1: image .*nir/0001/a.jpg "
     r"does not exist"),
    ("idx/train_vis.txt", "", r"train_vis.txt lists no images"),
    ("idx/test_id.txt", "1,x,3\n", r"test_id.txt is malformed: 'x'"),
])
def test_llcm_bad_files(llcm_dir, tmp_path, name, content, message):
  root = shutil.copytree(llcm_dir, tmp_path / "llcm")
  (root / name).write_text(content)
  split = "test" if "test_id" in name else "train"
  with pytest.raises(errors.DataError, match=message):
    readers.read_llcm(str(root), split)
  shutil.rmtree(root / "test_nir")
  with pytest.raises(errors.DataError, match="is not the LLCM layout: missing test_nir"):
    readers.read_llcm(str(root), "test")


def _custom(tmp_path, rows, header="path,pid,camera,modality,split"):
  """A list file of `rows` (absolute paths into the tiny SYSU set)."""
  path = tmp_path / "list.csv"
  path.write_text("\n".join([header] + rows) + "\n")
  return str(path)


def _first_image(sysu_dir, cam, pid):
  folder = os.path.join(sysu_dir, f"cam{cam}", f"{pid:04d}")
  return os.path.join(folder, sorted(os.listdir(folder))[0])


@pytest.fixture
def custom_rows(sysu_dir):
  """Four good rows over images that exist in the tiny SYSU set (ids seen by cams 1
  and 3 there)."""
  records = readers.read_sysu(sysu_dir, "train") + readers.read_sysu(sysu_dir, "test")
  both = sorted({r.pid for r in records if r.camera == 1} &
                {r.pid for r in records if r.camera == 3})
  a, b = both[:2]
  return [f"{_first_image(sysu_dir, 1, a)},{a},1,rgb,train",
          f"{_first_image(sysu_dir, 3, a)},{a},3,IR,train",
          f"{_first_image(sysu_dir, 3, b)},{b},3,ir,query",
          f"{_first_image(sysu_dir, 1, b)},{b},1,rgb,gallery"], (a, b)


def test_custom_list_records(tmp_path, custom_rows):
  rows, (a, b) = custom_rows
  path = _custom(tmp_path, rows)
  train = readers.read_custom(path, "train")
  assert [(r.pid, r.camera, r.modality, r.role) for r in train] == [
      (a, 1, layouts.RGB, layouts.ROLE_NONE), (a, 3, layouts.IR, layouts.ROLE_NONE)]
  test = readers.read_custom(str(tmp_path), "test")  # the folder holding list.csv
  assert [(r.pid, r.role) for r in test] == [(b, layouts.ROLE_QUERY),
                                             (b, layouts.ROLE_GALLERY)]
  assert readers.read_dataset("custom", path, "test") == test


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows + ["no/such.jpg,9,1,rgb,train"], r"line 6: image .*no/such.jpg does not exist"),
    (lambda rows: rows[:3] + [rows[3].replace(",rgb,", ",thermal,")],
     r"line 5: modality 'thermal' is not one of rgb, ir"),
    (lambda rows: rows[:3] + [rows[3].replace(",gallery", ",test")],
     r"line 5: split 'test' is not one of train, query, gallery"),
    (lambda rows: rows[:1] + rows[2:], r"line 2: training identity \d+ has rgb images only"),
    (lambda rows: rows[:3], r"needs rows of split query and of split gallery"),
    (lambda rows: rows + [rows[0]], r"line 6: .* is listed again \(first on line 2\)"),
    (lambda rows: rows[:2] + [rows[2].replace("," + rows[2].split(",")[1] + ",3,",
                                              ",77,3,")] + rows[3:],
     r"line 4: query identity 77 has no image in the gallery"),
    (lambda rows: rows[:3] + [rows[3].replace(",1,rgb", ",one,rgb")],
     r"line 5: camera 'one' is not a non-negative integer"),
])
def test_custom_list_bad_rows(tmp_path, custom_rows, change, message):
  rows, _ = custom_rows
  path = _custom(tmp_path, change(rows))
  with pytest.raises(errors.DataError, match=message):
    readers.read_custom(path, "train")


def test_custom_list_bad_file(tmp_path, custom_rows):
  rows, _ = custom_rows
  with pytest.raises(errors.DataError, match=r"line 1: the header is path,pid,cam,"
                     r"modality,split; expected .* \(missing camera\) \(unknown cam\)"):
    readers.read_custom(_custom(tmp_path, rows, "path,pid,cam,modality,split"),
                        "train")
  with pytest.raises(errors.DataError, match=r"list file .*nothing does not "
                     r"exist \(--dataset=custom"):
    readers.read_custom(str(tmp_path / "nothing"), "train")
  short = _custom(tmp_path, rows[:2] + ["a.jpg,1"])
  with pytest.raises(errors.DataError, match=r"line 4: expected 5 comma-separated"):
    readers.read_custom(short, "train")
