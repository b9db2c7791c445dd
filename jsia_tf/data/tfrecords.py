"""Sharded TFRecords of a data set's splits, and their `manifest.json`.

One feature spec (`FEATURES`) is used by the writer and the reader. A record holds
the encoded image bytes as stored on disk (no re-encoding) and the image's label
(relabelled 0..n-1 within its split), original person id, camera, modality and frame.

`manifest.json` says, per split: the shard files, per modality `num_images` and
`num_ids`, how many corrupt images were skipped, and the id relabelling map.
"""

import glob
import json
import os
from typing import Dict, List

import numpy as np
import tensorflow as tf
from absl import logging

from jsia_tf import errors
from jsia_tf import files
from jsia_tf.data import readers
from jsia_tf.data import table as table_lib

MANIFEST = "manifest.json"
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "path": tf.io.FixedLenFeature([], tf.string),
    **{name: tf.io.FixedLenFeature([], tf.int64) for name in table_lib.INT_FIELDS
       if name != "role"},
    # Shards written before roles existed read as ROLE_NONE.
    "role": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}
SPLITS = ("train", "test")


def _example(table: table_lib.ImageTable, i: int) -> bytes:
  def bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  def int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

  feature = {"image": bytes_feature(table.encoded[i]),
             "path": bytes_feature(table.path[i].encode("utf-8"))}
  feature.update({k: int_feature(getattr(table, k)[i]) for k in table_lib.INT_FIELDS})
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(table: table_lib.ImageTable, output_dir: str, split: str,
                images_per_shard: int = 2000) -> List[str]:
  """Writes `table` as shards `{split}-NNNNN-of-MMMMM.tfrecord`; returns file names."""
  for stale in glob.glob(os.path.join(output_dir, f"{split}-*-of-*.tfrecord")):
    os.remove(stale)
  num_shards = max(1, -(-len(table) // images_per_shard))
  names = []
  try:
    for shard in range(num_shards):
      name = f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"
      names.append(name)
      with tf.io.TFRecordWriter(os.path.join(output_dir, name)) as writer:
        for i in range(shard * images_per_shard,
                       min(len(table), (shard + 1) * images_per_shard)):
          writer.write(_example(table, i))
  except BaseException as e:
    # No partial shard is left for a reader to take for a whole one.
    for name in names:
      if os.path.exists(os.path.join(output_dir, name)):
        os.remove(os.path.join(output_dir, name))
    if isinstance(e, (OSError, tf.errors.OpError)):
      raise errors.OutputError(
          f"cannot write {os.path.join(output_dir, names[-1])} ({errors.cause(e)}); "
          f"the {split} shards written so far are removed") from None
    raise
  return names


def build(dataset: str, data_dir: str, output_dir: str, trial: int = 1,
          skip_corrupt: bool = False, images_per_shard: int = 2000) -> Dict:
  """Converts the train and test splits of a data set on disk; returns the manifest.

  The manifest is written last, atomically, so a reader never sees a manifest that
  describes shards still being written; a rebuild removes the old manifest first, so
  a rebuild that fails midway never leaves the old manifest describing new shards.
  """
  os.makedirs(output_dir, exist_ok=True)
  files.remove(os.path.join(output_dir, MANIFEST))
  manifest = {"dataset": dataset, "data_dir": os.path.abspath(data_dir),
              "trial": trial if dataset == "regdb" else None, "splits": {}}
  for split in SPLITS:
    records = readers.read_dataset(dataset, data_dir, split, trial)
    label_map = readers.relabel([r.pid for r in records])
    table = table_lib.load_images(records, label_map, skip_corrupt=skip_corrupt)
    shard_files = write_split(table, output_dir, split, images_per_shard)
    manifest["splits"][split] = {
        "files": shard_files,
        **table_lib.summary(table),
        "num_skipped_corrupt": len(records) - len(table),
        "label_map": {str(pid): label for pid, label in label_map.items()},
    }
    logging.info("%s: wrote %d images in %d shard(s)", split, len(table),
                 len(shard_files))
  files.atomic_write(os.path.join(output_dir, MANIFEST),
                     lambda f: json.dump(manifest, f, indent=2))
  return manifest


def read_manifest(tfrecord_dir: str) -> Dict:
  """The manifest of `tfrecord_dir`; `DataError` if it is missing or unreadable."""
  path = os.path.join(tfrecord_dir, MANIFEST)
  if not os.path.isfile(path):
    raise errors.DataError(f"{path} does not exist; build the TFRecords with "
                           f"tools/build_tfrecords.py first")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise errors.DataError(f"{path} is not valid JSON ({e})") from None


def load_table(tfrecord_dir: str, split: str) -> table_lib.ImageTable:
  """Reads the shards of `split` listed in the manifest into an `ImageTable`."""
  manifest = read_manifest(tfrecord_dir)
  if split not in manifest.get("splits", {}):
    raise errors.DataError(f"{os.path.join(tfrecord_dir, MANIFEST)} has no split "
                           f"{split!r}; it has {sorted(manifest.get('splits', {}))}")
  files = [os.path.join(tfrecord_dir, n) for n in manifest["splits"][split]["files"]]
  missing = [f for f in files if not os.path.isfile(f)]
  if missing:
    raise errors.DataError(f"TFRecord shard {missing[0]} listed in the manifest does "
                           f"not exist ({len(missing)} missing)")
  columns = {k: [] for k in FEATURES}
  dataset = tf.data.TFRecordDataset(files).batch(1024).map(
      lambda x: tf.io.parse_example(x, FEATURES))
  try:
    for batch in dataset.as_numpy_iterator():
      for k in FEATURES:
        columns[k].append(batch[k])
  except tf.errors.DataLossError as e:
    raise errors.DataError(f"a TFRecord shard of {tfrecord_dir} split {split!r} is "
                           f"corrupt: {e.message}") from None
  cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in columns.items()}
  return table_lib.make_table(
      list(cat["image"]), [p.decode("utf-8") for p in cat["path"]],
      **{k: cat[k] for k in table_lib.INT_FIELDS})


def load_split(cfg, split: str) -> table_lib.ImageTable:
  """The `split` of the data set of `cfg` (a `DataConfig`): from the TFRecords of
  `cfg.tfrecord_dir` when set, else from the image files of `cfg.data_dir`.

  TFRecords built from another data set or RegDB trial are refused.
  """
  if cfg.tfrecord_dir:
    manifest = read_manifest(cfg.tfrecord_dir)
    built = (manifest.get("dataset"), manifest.get("trial"))
    wanted = (cfg.dataset, cfg.trial if cfg.dataset == "regdb" else None)
    if built != wanted:
      raise errors.DataError(
          f"{os.path.join(cfg.tfrecord_dir, MANIFEST)} was built for dataset "
          f"{built[0]!r} trial {built[1]}, but --dataset={cfg.dataset!r}"
          f"{f' --trial={cfg.trial}' if cfg.dataset == 'regdb' else ''} was asked for")
    return load_table(cfg.tfrecord_dir, split)
  records = readers.read_dataset(cfg.dataset, cfg.data_dir, split, cfg.trial)
  return table_lib.load_images(records, readers.relabel([r.pid for r in records]))
