"""The P x K cross-modality training pipeline and the evaluation pipeline."""

import collections
import itertools

import numpy as np
import pytest
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf.data import layouts
from jsia_tf.data import pipeline
from jsia_tf.data import readers
from jsia_tf.data import table as table_lib

P, K = 4, 3


@pytest.fixture(scope="module")
def table(sysu_dir):
  records = readers.read_sysu(sysu_dir, "train")
  return table_lib.load_images(records, readers.relabel([r.pid for r in records]))


def _cfg(**kwargs):
  values = dict(image_height=32, image_width=16, batch_p=P, batch_k=K, seed=11)
  values.update(kwargs)
  return config_lib.DataConfig(**values)


def _check_pk(batch, table, p, k):
  labels_rgb, labels_ir = batch["label_rgb"], batch["label_ir"]
  np.testing.assert_array_equal(labels_rgb, labels_ir)  # identity-aligned rows
  counts = collections.Counter(labels_rgb.tolist())
  assert len(counts) == p and set(counts.values()) == {k}
  assert set(batch["cam_rgb"].tolist()) <= set(layouts.SYSU_RGB_CAMERAS)
  assert set(batch["cam_ir"].tolist()) <= set(layouts.SYSU_IR_CAMERAS)


def test_pk_invariant_over_many_batches(table):
  dataset = pipeline.make_train_dataset(table, _cfg())
  seen = set()
  for batch in itertools.islice(dataset.as_numpy_iterator(), 40):
    assert batch["x_rgb"].shape == batch["x_ir"].shape == (P * K, 32, 16, 3)
    assert batch["x_rgb"].dtype == np.float32
    assert batch["x_rgb"].min() >= -1.0 and batch["x_rgb"].max() <= 1.0
    _check_pk(batch, table, P, K)
    seen.update(batch["label_rgb"].tolist())
  assert seen == set(range(len(set(table.label.tolist()))))  # every identity drawn


def test_sampler_rows_belong_to_their_identity_and_modality(table):
  sampler = pipeline.PKSampler(table.label, table.modality, P, K, seed=0)
  for b in range(300):
    rgb, ir = sampler.sample(b)
    assert (table.modality[rgb] == layouts.RGB).all()
    assert (table.modality[ir] == layouts.IR).all()
    np.testing.assert_array_equal(table.label[rgb], table.label[ir])
    for rows in (rgb, ir):  # no repeats where an identity has K or more images
      for lab in np.unique(table.label[rows]):
        picked = rows[table.label[rows] == lab]
        pool = ((table.label == lab) & (table.modality == table.modality[picked[0]])).sum()
        if pool >= K:
          assert len(set(picked.tolist())) == K


def test_stream_is_a_function_of_seed_and_batch_index(table):
  cfg = _cfg(pad_crop=2, random_erasing=0.5)
  full = list(itertools.islice(pipeline.make_train_dataset(table, cfg)
                               .as_numpy_iterator(), 5))
  again = list(itertools.islice(pipeline.make_train_dataset(table, cfg)
                                .as_numpy_iterator(), 5))
  resumed = next(pipeline.make_train_dataset(table, cfg, start_batch=3)
                 .as_numpy_iterator())
  for key in full[0]:
    np.testing.assert_array_equal(full[3][key], resumed[key])
    for a, b in zip(full, again):
      np.testing.assert_array_equal(a[key], b[key])
  other = next(pipeline.make_train_dataset(table, _cfg(seed=12)).as_numpy_iterator())
  assert not np.array_equal(other["label_rgb"], full[0]["label_rgb"])


def test_the_stream_runs_without_autotunes_model_thread(table):
  """Its iterator is deleted at the end of every run; with autotune's model thread
  that deletion can wait up to a minute (the pipeline's comment)."""
  dataset = pipeline.make_train_dataset(table, _cfg())
  assert dataset.options().autotune.enabled is False
  assert next(dataset.as_numpy_iterator())["x_rgb"].shape[0] > 0  # still a stream


def test_identity_without_both_modalities_is_left_out(table):
  keep = ~((table.label == 0) & (table.modality == layouts.IR))
  sampler = pipeline.PKSampler(table.label[keep], table.modality[keep], P, K, seed=0)
  assert 0 not in sampler.labels.tolist()
  assert sampler.num_ids == len(set(table.label.tolist())) - 1


def test_p_larger_than_identities_is_refused(table):
  with pytest.raises(errors.ConfigError, match="--batch_p=99 is larger than the"):
    pipeline.make_train_dataset(table, _cfg(batch_p=99))


def test_mirrored_strategy_keeps_identities_whole_per_replica(table):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  assert strategy.num_replicas_in_sync == 2
  cfg = _cfg()
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.make_train_dataset(table, cfg, ctx))
  reference = pipeline.make_train_dataset(table, cfg).as_numpy_iterator()
  for batch in itertools.islice(iter(dist), 5):
    parts = [{k: v.numpy() for k, v in zip(batch, values)} for values in zip(
        *[strategy.experimental_local_results(batch[k]) for k in batch])]
    assert len(parts) == 2
    for part in parts:
      _check_pk(part, table, P // 2, K)
    # Together the replicas hold exactly the single-replica global batch.
    whole = next(reference)
    np.testing.assert_array_equal(
        np.concatenate([p["label_rgb"] for p in parts]), whole["label_rgb"])
    assert not set(parts[0]["label_rgb"]) & set(parts[1]["label_rgb"])


def test_p_not_divisible_by_replicas_is_refused(table):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with pytest.raises(errors.ConfigError, match="--batch_p=3 is invalid: expected a "
                     "multiple of the number of replicas \\(2\\)"):
    strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.make_train_dataset(table, _cfg(batch_p=3), ctx))


def test_augmentation(table):
  plain = _cfg(flip=False)
  one = table.select(np.array([0]))
  image = pipeline.decode(tf.constant(one.encoded[0]), plain.image_size)
  seed = tf.constant([1, 2], tf.int64)
  np.testing.assert_array_equal(pipeline.augment(image, seed, plain), image)
  flips = [not np.array_equal(
      pipeline.augment(image, tf.constant([1, s], tf.int64), _cfg()), image)
           for s in range(40)]
  assert 5 < sum(flips) < 35  # about half
  erased = pipeline.augment(image, seed, _cfg(flip=False, random_erasing=1.0))
  changed = np.any(erased.numpy() != image.numpy(), axis=-1).mean()
  assert 0.01 < changed < 0.5
  cropped = pipeline.augment(image, seed, _cfg(flip=False, pad_crop=4))
  assert cropped.shape == image.shape


def test_eval_dataset_yields_every_image_once_in_order(table):
  cfg = _cfg()
  indices, count = [], 0
  for batch in pipeline.make_eval_dataset(table, cfg, batch_size=7).as_numpy_iterator():
    assert batch["x"].shape[1:] == (32, 16, 3)
    indices.extend(batch["index"].tolist())
    count += len(batch["x"])
  assert indices == list(range(len(table))) and count == len(table)
  first = next(pipeline.make_eval_dataset(table, cfg).as_numpy_iterator())["x"][0]
  expected = pipeline.to_model_range(pipeline.decode(tf.constant(table.encoded[0]),
                                                     cfg.image_size))
  np.testing.assert_allclose(first, expected, atol=1e-6)
