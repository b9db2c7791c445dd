"""Feature extraction: every test image through a model once, into a `FeatureSet`.

The SYSU-MM01 trials only redraw the gallery, so the test set is embedded once and
the trials are evaluated on the stored features. This is the one TensorFlow-using
module of `jsia_tf.evaluation`; the protocols themselves are pure numpy. The model
is a trainer's, a restored checkpoint's (`jsia_tf.serving.extractor`) or an
exported SavedModel's.
"""

from typing import Callable, Dict

import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import progress as progress_lib
from jsia_tf.data import pipeline
from jsia_tf.data import tfrecords
from jsia_tf.data import table as table_lib
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import report as report_lib
from jsia_tf.serving import extractor as extractor_lib
from jsia_tf.serving import saved_model
from jsia_tf.training import experiment

Embed = Callable[[tf.Tensor], tf.Tensor]


def labelled(features: np.ndarray, table: table_lib.ImageTable) -> features_lib.FeatureSet:
  """`features` [N, D] of the N rows of `table`, with the rows' labels."""
  return features_lib.FeatureSet(
      features=features, ids=table.pid, cams=table.camera, frames=table.frame,
      modality=table.modality, paths=table.path.astype(str),
      role=table.role if table.role.any() else None)


def extract_features(embed: Embed, table: table_lib.ImageTable,
                     data_cfg: config_lib.DataConfig, batch_size: int = 128,
                     log_every_seconds: float = 10.0,
                     log: Callable[[str], None] = print,
                     dtype=np.float32) -> features_lib.FeatureSet:
  """Embeds every image of `table` once, in table order, keeping the embeddings
  in `dtype`.

  `embed` maps float32 images [b, H, W, 3] in [-1, 1] to embeddings [b, D].
  """
  chunks, done = [], 0
  progress = progress_lib.Progress(len(table), "features", log, every=log_every_seconds)
  for batch in pipeline.make_eval_dataset(table, data_cfg, batch_size):
    x = batch["x"]
    chunks.append(np.asarray(embed(x), dtype))
    done += int(x.shape[0])
    progress.update(done)
  return labelled(np.concatenate(chunks), table)


def extract_test_features(embed: Embed, data_cfg: config_lib.DataConfig,
                          **kwargs) -> features_lib.FeatureSet:
  """Embeds the test split of `data_cfg`'s data set (RegDB: its trial), read from
  its TFRecords when `data_cfg.tfrecord_dir` is set, else from the image files."""
  return extract_features(embed, tfrecords.load_split(data_cfg, "test"), data_cfg,
                          **kwargs)


def evaluate_model(cfg: config_lib.EvalConfig, log=print) -> Dict:
  """The report of `cfg` for a model source (`checkpoint` or `saved_model`): the
  test split of the run's data set is embedded once, then every setting and trial
  is evaluated on those features."""
  if cfg.checkpoint:
    restored = extractor_lib.restore(cfg.checkpoint, "checkpoint")
    run, embed = restored.config, tf.function(restored.extractor.embed)
    source = f"checkpoint {restored.checkpoint} (step {restored.step})"
  else:
    served = saved_model.open_model(cfg.saved_model)
    run, embed = served.config, served.embed
    source = f"export {served.directory} (step {served.metadata['step']})"
  data = experiment.run_data(run.data, cfg.data_dir, source,
                             "evaluating embeds the test split of its data set, but ")
  if data.dataset != cfg.protocol:
    raise errors.ConfigError(
        f"--protocol={cfg.protocol} but the model was trained on {data.dataset}: pass "
        f"--protocol={data.dataset}")
  log(f"embedding the {data.dataset} test split of {data.data_dir} with the {source}")
  feats = extract_test_features(embed, data, log=log)
  if cfg.output_features:
    features_lib.save(cfg.output_features, feats)
    log(f"wrote {cfg.output_features}")
  report = report_lib.evaluate_features([feats], cfg, split_ids=np.unique(feats.ids))
  report["source"] = source
  return report
