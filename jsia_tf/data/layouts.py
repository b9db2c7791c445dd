"""Facts of the on-disk layouts of SYSU-MM01, RegDB and LLCM, shared by writer and
readers.

SYSU-MM01: `root/cam{1..6}/{pid:04d}/{n:04d}.jpg` and `root/exp/{split}_id.txt` (one
line of comma-separated ids). RegDB: `root/Visible/<id>/*.bmp`,
`root/Thermal/<id>/*.bmp` and `root/idx/{train,test}_{visible,thermal}_{trial}.txt`
with lines `relative/path label`. LLCM (Zhang et al., CVPR 2023): training images
listed by `root/idx/train_vis.txt` and `root/idx/train_nir.txt` (lines
`relative/path label`), test images in `root/test_vis/cam{C}/{pid:04d}/` and
`root/test_nir/cam{C}/{pid:04d}/` for the ids of `root/idx/test_id.txt` (one line of
comma-separated ids).
"""

RGB = 0
IR = 1
MODALITY_NAMES = {RGB: "rgb", IR: "ir"}

SYSU_CAMERAS = (1, 2, 3, 4, 5, 6)
SYSU_RGB_CAMERAS = (1, 2, 4, 5)
SYSU_IR_CAMERAS = (3, 6)
# Search modes of the SYSU-MM01 protocol: queries are the IR images of cams 3 and 6
# in both modes; the gallery is RGB cams 1, 2, 4, 5 (all) or 1, 2 (indoor).
SYSU_GALLERY_CAMERAS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SYSU_QUERY_CAMERAS = (3, 6)
# Cam-3 queries never see cam-2 gallery images (both at the same indoor location).
SYSU_EXCLUDED_PAIR = (3, 2)
SYSU_SPLIT_FILES = ("train", "val", "test", "available")

# RegDB has one visible and one thermal camera; we number them as cameras 1 and 2.
REGDB_VISIBLE_CAMERA = 1
REGDB_THERMAL_CAMERA = 2
REGDB_FOLDERS = {RGB: "Visible", IR: "Thermal"}
REGDB_IDX_NAMES = {RGB: "visible", IR: "thermal"}
REGDB_NUM_TRIALS = 10

# LLCM: nine cameras, each with a visible and a near-infrared mode; the test set's
# NIR images come from every camera but cam 3.
LLCM_CAMERAS = tuple(range(1, 10))
LLCM_TEST_FOLDERS = {RGB: "test_vis", IR: "test_nir"}
LLCM_TRAIN_LISTS = {RGB: "idx/train_vis.txt", IR: "idx/train_nir.txt"}
LLCM_TEST_IDS = "idx/test_id.txt"

# An image's role in its test split: the SYSU-MM01, RegDB and LLCM protocols derive
# queries and galleries from camera and modality; a custom list file names them.
ROLE_NONE, ROLE_QUERY, ROLE_GALLERY = 0, 1, 2

# Your own data (`--dataset=custom`): one CSV list file with this header; paths are
# relative to the file; `--data_dir` is the file or the folder that holds it under
# this name. Its splits, and the role each gives an image.
CUSTOM_LIST = "list.csv"
CUSTOM_COLUMNS = ("path", "pid", "camera", "modality", "split")
CUSTOM_MODALITIES = {"rgb": RGB, "ir": IR}
CUSTOM_SPLITS = {"train": ROLE_NONE, "query": ROLE_QUERY, "gallery": ROLE_GALLERY}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def sysu_modality(camera: int) -> int:
  """RGB for SYSU cameras 1, 2, 4, 5; IR for cameras 3, 6."""
  return IR if camera in SYSU_IR_CAMERAS else RGB


def sysu_split_path(root: str, split: str) -> str:
  """Path of the id list of `split` ("train", "val", "test", "available")."""
  return f"{root}/exp/{split}_id.txt"


def regdb_idx_path(root: str, split: str, modality: int, trial: int) -> str:
  """Path of RegDB's index file of (`split`, `modality`, `trial`)."""
  return f"{root}/idx/{split}_{REGDB_IDX_NAMES[modality]}_{trial}.txt"
