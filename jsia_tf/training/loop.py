"""The training run: data, strategy, trainer, the loop with its progress, summaries,
checkpoints and evaluations, and the final evaluation.

Workdir layout:
  config.json          the ExperimentConfig (refused on resume if it conflicts)
  run.lock             pid, host, start of the run holding the workdir (while it runs)
  metrics.jsonl        per report: step, stage, mean loss terms, lrs, images/s
  checkpoints/         tf.train.CheckpointManager (networks, optimizers, step, stage)
  tensorboard/         scalars, image grids, interpolation strips, eval metrics
  eval/                features.npz, report.json and table.txt of the final evaluation
"""

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import threading
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import files
from jsia_tf.data import layouts
from jsia_tf.data import pipeline
from jsia_tf.data import synthetic
from jsia_tf.data import table as table_lib
from jsia_tf.data import tfrecords
from jsia_tf.evaluation import extract
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import protocols
from jsia_tf.evaluation import report as report_lib
from jsia_tf.models import feature
from jsia_tf.training import checkpoints
from jsia_tf.training import distribute
from jsia_tf.training import experiment
from jsia_tf.training import summaries
from jsia_tf.training import trainer as trainer_lib

Log = Callable[[str], None]
CONSOLE_TERMS = ("total", "dis", "gan", "recon", "cycle", "v", "id", "il", "lr", "ui",
                 "dis_sl", "sl_gan")
DEMO_DATA_DIRS = {"sysu": "data/sysu_demo", "regdb": "data/regdb_demo",
                  "llcm": "data/llcm_demo"}
# The demo data sets. SYSU: the real test set's shape (96 identities, 10,578 images),
# so that the demo measures matching of people it never saw against random ranking
# with the real protocol's odds, and 200 training identities, which the demo's 600
# steps fit better than 80 or 384 (the configurations measured: docs/experiments.md).
DEMO_DATA = {
    "sysu": synthetic.SyntheticConfig(layout="sysu", output_dir=DEMO_DATA_DIRS["sysu"],
                                      num_ids=296, like_sysu_test=True),
    "regdb": synthetic.SyntheticConfig(layout="regdb", output_dir=DEMO_DATA_DIRS["regdb"]),
    "llcm": synthetic.SyntheticConfig(layout="llcm", output_dir=DEMO_DATA_DIRS["llcm"]),
}
METRICS_FILE = "metrics.jsonl"


def lrs_named(lrs: Dict[str, float]) -> Dict[str, float]:
  """{"lr_G": ..., "lr_Dis": ..., "lr_F": ...}."""
  return {f"lr_{k}": v for k, v in lrs.items()}


def with_demo_data(data: config_lib.DataConfig, log: Log = print) -> config_lib.DataConfig:
  """`data` itself when it names a data set; else the generated demo set of its
  layout (`DEMO_DATA`), generated first if it is not there or was generated with
  other settings."""
  if data.data_dir or data.tfrecord_dir:
    return data
  if data.dataset not in DEMO_DATA:
    raise errors.ConfigError(f"--dataset={data.dataset} has no demo data set: pass "
                             f"--data_dir (the list file {layouts.CUSTOM_LIST} or its "
                             f"folder)")
  demo = DEMO_DATA[data.dataset]
  root = demo.output_dir
  recorded = synthetic.read_recipe(root)
  if not os.path.isdir(root):
    log(f"no --data_dir given: generating the demo {data.dataset} data set in {root}")
    synthetic.generate(demo, log=log)
  elif recorded is None:
    # Not a set the generator wrote (or its record is unreadable): it may be
    # someone's data, so it is never replaced unasked.
    raise errors.ConfigError(
        f"no --data_dir given, and {root} (the demo {data.dataset} data set's place) "
        f"holds something else: it has no readable {synthetic.RECIPE_FILE}, the record "
        f"python -m jsia_tf.generate writes. Move it away to let the demo generate its "
        f"set there, or train on it with --data_dir={root}")
  elif recorded != synthetic.recipe(demo):
    # A set generated with other settings would give other numbers than the ones
    # the docs quote.
    log(f"no --data_dir given: {root} is not the demo {data.dataset} data set "
        f"({synthetic.RECIPE_FILE} differs from {synthetic.recipe(demo)}): "
        f"generating it again")
    synthetic.generate(dataclasses.replace(demo, overwrite=True), log=log)
  else:
    log(f"no --data_dir given: using the demo {data.dataset} data set in {root}")
  return dataclasses.replace(data, data_dir=root)


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _stop_non_finite(what: str, step: int, ckpt_dir: str) -> None:
  """Stops the run: `what` went non-finite at `step`; names the newest checkpoint
  whose every tensor reads back finite (checked now, not assumed)."""
  try:
    good = checkpoints.newest_loadable(ckpt_dir, log=lambda _: None)
  except errors.CheckpointError:
    good = None
  raise errors.TrainingError(
      f"{what} at step {step}: training stopped, and nothing of this step is saved. "
      f"The newest checkpoint with finite weights (checked) is "
      f"{good or 'none (none was written yet)'}; rerun with lower learning rates "
      f"(--lr_g, --lr_dis, --lr_f may change on resume) to go on from it")


def _check_finite(values: Dict[str, float], step: int, ckpt_dir: str) -> None:
  for name, value in values.items():
    if not math.isfinite(value):
      _stop_non_finite(f"loss term {name!r} is {value}", step, ckpt_dir)


def _check_finite_weights(trainer, step: int, ckpt_dir: str) -> None:
  bad = trainer.nonfinite_variables()
  if bad:
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    _stop_non_finite(f"{len(bad)} weight(s) hold NaN or Inf ({shown})", step, ckpt_dir)


def quick_metrics(feats: features_lib.FeatureSet, dataset: str) -> Dict[str, float]:
  """The periodic evaluation: SYSU-MM01 all-search single-shot over the 10 gallery
  draws of the final evaluation (`--perm_file=auto`), LLCM infrared->visible over
  10 draws, a custom list's queries, or RegDB visible->thermal; mean R1, mAP,
  mINP."""
  if dataset == "sysu":
    perm, _ = report_lib.gallery_draws("auto", feats, protocols.SYSU_TRIALS)
    trials = protocols.evaluate_sysu(feats, modes=["all"], shots=[1],
                                     perm=perm)[("all", 1)]
  elif dataset == "llcm":
    trials = protocols.evaluate_llcm(feats, "t2v")
  elif dataset == "custom":
    trials = [protocols.evaluate_custom(feats)]
  else:
    trials = [protocols.evaluate_regdb(feats, "v2t")]
  mean = report_lib.summarize(trials)["mean"]
  return {k: mean[k] for k in ("R1", "mAP", "mINP")}


def final_evaluation(embed, test_table: table_lib.ImageTable,
                     cfg: experiment.ExperimentConfig, log: Log = print) -> Dict:
  """Embeds the test split and evaluates it under the data set's protocol. Writes
  eval/features.npz, eval/report.json (with the experiment config and, for scale,
  `random_baseline`: the same protocol on random features, i.e. random ranking)
  and eval/table.txt; returns the report."""
  out_dir = os.path.join(cfg.train.workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  feats = extract.extract_features(embed, test_table, cfg.data, log=log)
  path = os.path.join(out_dir, "features.npz")
  features_lib.save(path, feats)
  eval_cfg = config_lib.EvalConfig(features=(path,), protocol=cfg.data.dataset)
  split_ids = np.unique(feats.ids)
  report = report_lib.evaluate_features([feats], eval_cfg, split_ids)
  rng = np.random.default_rng(cfg.data.seed)
  random_report = report_lib.evaluate_features([dataclasses.replace(
      feats, features=rng.standard_normal(feats.features.shape).astype(np.float32))],
                                               eval_cfg, split_ids)
  report["random_baseline"] = random_report["settings"]
  report["experiment"] = config_lib.to_dict(cfg)
  table = (report_lib.format_table(report) + "\nrandom ranking, same protocol:\n" +
           report_lib.format_table(random_report))
  report_lib.save(report, os.path.join(out_dir, "report.json"))
  files.atomic_write(os.path.join(out_dir, "table.txt"), lambda f: f.write(table + "\n"))
  log(f"final evaluation ({len(test_table)} test images):\n{table}\nwrote {out_dir}/"
      f"{{features.npz, report.json, table.txt}}")
  return report


class _Meter:
  """Means of the step values since the last report, and the image rate."""

  def __init__(self):
    self.sums, self.count, self.start = {}, 0, time.time()

  def add(self, values: Dict[str, float]):
    for k, v in values.items():
      self.sums[k] = self.sums.get(k, 0.0) + v
    self.count += 1

  def means(self) -> Dict[str, float]:
    return {k: v / max(self.count, 1) for k, v in self.sums.items()}


class StopRequest:
  """SIGINT / SIGTERM during a single-process run: the loop finishes its step,
  checkpoints and returns; a second signal interrupts at once (the default
  handlers come back). Handlers can only be set in the main thread, so elsewhere
  (a run started from a thread) signals keep their default meaning."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signal_name: Optional[str] = None
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    self._restore()

  def _restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def __exit__(self, *exc):
    self._restore()

  def run(self, step_fn: Callable[[], Dict[str, float]]) -> Optional[Dict[str, float]]:
    """step_fn() (the signal is looked at between steps, by the loop)."""
    return step_fn()

  def __bool__(self) -> bool:
    return self.signal_name is not None


class _Preempted(Exception):
  """Leaves TensorFlow's preemption handler after its checkpoint (its exit_fn)."""


class PreemptionStop:
  """The multi-worker StopRequest: TensorFlow's PreemptionCheckpointHandler.

  When any worker gets SIGTERM, the workers agree (through the coordination
  service) on a step, all finish it, all call `save` (a checkpoint is a
  collective: the chief's is kept) and then leave `run` with None, so that the
  run ends as a single-process stop does: exit code 0 and how to resume.
  TensorFlow's own exit (sys.exit(42)) is replaced by that return. SIGINT is not
  watched: Ctrl-C interrupts one worker, and the others stop as after a dead peer.
  """

  def __init__(self, strategy: tf.distribute.Strategy,
               manager: tf.train.CheckpointManager, save: Callable[[], None]):
    self.signal_name: Optional[str] = None
    self._strategy, self._manager, self._save = strategy, manager, save
    self._handler = None
    self._previous = None

  def __enter__(self) -> "PreemptionStop":
    self._previous = signal.getsignal(signal.SIGTERM)
    # The handler adds its run counter to the checkpoint; the trainer restored the
    # chief's checkpoint already, so the counter is restored on attachment and
    # is the same on every worker (it must be: the agreed step is a count).
    with self._strategy.scope():
      self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
          getattr(self._strategy, "cluster_resolver", None), self._manager,
          termination_config=tf.distribute.experimental.TerminationConfig(
              exit_fn=self._exit, save_fn=self._save))
    return self

  @staticmethod
  def _exit():
    raise _Preempted()

  def run(self, step_fn: Callable[[], Dict[str, float]]) -> Optional[Dict[str, float]]:
    """step_fn() through the handler (which also reports a step's error to the
    other workers); None once the agreed checkpoint is written."""
    try:
      return self._handler.run(step_fn)
    except _Preempted:
      self.signal_name = "SIGTERM"
      return None

  def __exit__(self, *exc):
    self._handler = None  # its watcher threads end with it
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def __bool__(self) -> bool:
    return self.signal_name is not None


def _save(manager: tf.train.CheckpointManager, step: int,
          last_checkpoint: Optional[str]) -> str:
  """manager.save(step), or a ConfigError naming the directory and the last good
  checkpoint (kept: TensorFlow writes a checkpoint under temporary names and only
  then points `checkpoint` at it) when the disk is full or not writable."""
  try:
    return manager.save(checkpoint_number=step)
  except (OSError, tf.errors.OpError) as e:
    raise errors.ConfigError(
        f"cannot write the checkpoint of step {step} to {manager.directory} "
        f"({errors.cause(e)}); the last good checkpoint is {last_checkpoint or 'none'}; free "
        f"space or fix the permissions and rerun to resume from it") from None


_DEAD_PEER_ERRORS = (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                     tf.errors.AbortedError, tf.errors.CancelledError,
                     tf.errors.InternalError)


def _train_step(trainer, batches, step: int, t: config_lib.TrainConfig,
                stop) -> Optional[Dict[str, float]]:
  """One step through `stop.run` (None: stopped before it); under multi_worker, a
  collective that times out or loses its peers becomes a TrainingError naming the
  task TensorFlow names (a dead worker)."""
  try:
    return stop.run(lambda: trainer.train_step(next(batches), step))
  except _DEAD_PEER_ERRORS as e:
    if t.strategy != "multi_worker":
      raise
    message = e.message or str(e)
    said = message.strip().splitlines()[0][:300]
    own = distribute.own_task()
    tasks = sorted({f"{job}:{index}" for job, index in re.findall(
        r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", message)} - {own})
    who = (f"task {', '.join(tasks)} of TF_CONFIG's cluster" if tasks else
           "a worker of TF_CONFIG's cluster")
    raise errors.TrainingError(
        f"step {step + 1}: the workers' collective failed or lost a peer (one "
        f"silent for --worker_timeout={t.worker_timeout} s, or gone); {who} is "
        f"probably dead. Restart every worker to resume from the last checkpoint. "
        f"TensorFlow: {type(e).__name__}: {said}") from None


def _logged_rows(path: str):
  """(line, step) of each row of the metrics file `path`; step None for a row cut
  short by a kill."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.readlines()
  rows = []
  for line in lines:
    try:
      rows.append((line, int(json.loads(line)["step"])))
    except (ValueError, KeyError, TypeError):
      rows.append((line, None))
  return rows


def _refuse_a_silent_restart(t: config_lib.TrainConfig, metrics_path: str) -> None:
  """A run with no checkpoint whose metrics went past its first checkpoint lost its
  checkpoints: starting again from step 0 would overwrite the record of that run."""
  logged = max((s for _, s in _logged_rows(metrics_path) if s is not None), default=0)
  if logged > t.checkpoint_every:
    raise errors.CheckpointError(
        f"--workdir={t.workdir} has no checkpoint in {trainer_lib.checkpoint_dir(t.workdir)}, "
        f"but {metrics_path} logs steps up to {logged} (checkpoints every "
        f"{t.checkpoint_every}): its checkpoints were removed. Starting again from step "
        f"0 would overwrite that run; move {t.workdir} away or use another --workdir")


def _truncate_metrics(path: str, step: int, log: Log) -> None:
  """Drops the rows of `path` after `step`: a run killed after its last checkpoint
  logged steps that the resumed run logs again."""
  rows = _logged_rows(path)
  keep = [line for line, s in rows if s is not None and s <= step]
  if len(keep) != len(rows):
    files.atomic_write(path, lambda f: f.writelines(keep))
    log(f"{path}: dropped {len(rows) - len(keep)} row(s) after step {step}, the step "
        f"this run resumes from")


def run(cfg: experiment.ExperimentConfig, log: Log = print) -> Dict:
  """Trains (or resumes) the run of `cfg` to its end (or `stop_at_step`), then
  evaluates it on the test split. Returns {"step", "losses", "report"}."""
  # The strategy first: logical CPU devices can only be made before anything
  # initialises TensorFlow's devices.
  strategy = distribute.make_strategy(cfg.train)
  previous_policy = distribute.set_numerics(cfg.train)
  try:
    if not distribute.is_chief(strategy):  # the chief holds the workdir
      return _run(cfg, strategy, log)
    with experiment.workdir_lock(cfg.train.workdir, log):
      return _run(cfg, strategy, log)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)


def _run(cfg: experiment.ExperimentConfig, strategy: tf.distribute.Strategy,
         log: Log) -> Dict:
  t = cfg.train
  # Fail fast, before any data is read; a resumed run's trunk is in its checkpoints.
  feature.check_backbone_weights(cfg.model, from_scratch=not checkpoints.list_prefixes(
      trainer_lib.checkpoint_dir(t.workdir)))
  chief = distribute.is_chief(strategy)
  if chief:
    experiment.prepare_workdir(cfg, log)
  train_table = tfrecords.load_split(cfg.data, "train")
  test_table = tfrecords.load_split(cfg.data, "test") if chief else None
  num_classes = int(train_table.label.max()) + 1
  log(f"training data: {len(train_table)} images of {num_classes} identities; "
      f"{strategy.num_replicas_in_sync} replica(s) ({t.strategy}); preset "
      f"{cfg.model.preset}; workdir {t.workdir}")
  trainer = trainer_lib.Trainer(cfg, strategy, num_classes)
  # Every worker resumes from the chief's newest checkpoint that loads (a worker's
  # own are scratch); the chief points the state file at it before saving there.
  last_checkpoint = checkpoints.newest_loadable(trainer_lib.checkpoint_dir(t.workdir),
                                                log, repair=chief)
  ckpt_dir = trainer_lib.checkpoint_dir(t.workdir)
  if not chief:  # every worker must save (collectives); only the chief's is kept
    ckpt_dir = os.path.join(t.workdir, f".worker{distribute.task_id(strategy)}")
  manager = trainer.checkpoint_manager(ckpt_dir)
  step = trainer.restore(last_checkpoint)
  saved_step = step if last_checkpoint else None
  if step:
    log(f"resumed from {last_checkpoint} at step {step} ({t.stage(step - 1)} stage)")
  if chief:
    if last_checkpoint is None:
      _refuse_a_silent_restart(t, os.path.join(t.workdir, METRICS_FILE))
    _truncate_metrics(os.path.join(t.workdir, METRICS_FILE), step, log)
  end = min(t.total_steps, t.stop_at_step) if t.stop_at_step else t.total_steps

  dataset = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.make_train_dataset(train_table, cfg.data, ctx, start_batch=step))
  batches = iter(dataset)
  writer = (tf.summary.create_file_writer(os.path.join(t.workdir, "tensorboard"))
            if chief else tf.summary.create_noop_writer())
  embed = tf.function(trainer.embed, reduce_retracing=True)
  visual = next(iter(pipeline.make_train_dataset(train_table, cfg.data))) if chief else None
  images_per_step = 2 * cfg.data.batch_p * cfg.data.batch_k
  meter, run_start, start_step = _Meter(), time.time(), step
  values: Dict[str, float] = {}

  def save():
    nonlocal last_checkpoint, saved_step
    # A checkpoint is the run's only memory: never one with NaN or Inf weights.
    _check_finite_weights(trainer, step, trainer_lib.checkpoint_dir(t.workdir))
    last_checkpoint, saved_step = _save(manager, step, last_checkpoint), step

  stop = (PreemptionStop(strategy, manager, save) if t.strategy == "multi_worker"
          else StopRequest())
  with stop:
    while step < end and not stop:
      lrs = trainer.set_learning_rates(step)
      step_values = _train_step(trainer, batches, step, t, stop)
      if step_values is None:  # preempted: the workers saved this step
        break
      values = step_values
      _check_finite(values, step + 1, trainer_lib.checkpoint_dir(t.workdir))
      meter.add(values)
      step += 1
      if step % t.log_every == 0 or step == end:
        elapsed = time.time() - meter.start
        rate = meter.count * images_per_step / max(elapsed, 1e-9)
        done_rate = (step - start_step) / max(time.time() - run_start, 1e-9)
        means = meter.means()
        shown = "  ".join(f"{k} {means[k]:.4f}" for k in CONSOLE_TERMS if k in means)
        log(f"[{t.stage(step - 1)}] step {step}/{t.total_steps}  {shown}  "
            f"{rate:.0f} img/s  ETA {_format_eta((end - step) / max(done_rate, 1e-9))}")
        scales = trainer.loss_scales()
        if chief:
          with open(os.path.join(t.workdir, METRICS_FILE), "a") as f:
            f.write(json.dumps({"step": step, "stage": t.stage(step - 1),
                                "images_per_second": rate, **lrs_named(lrs),
                                **{f"loss_scale_{k}": v for k, v in scales.items()},
                                **means}) + "\n")
        with writer.as_default(step=step):
          for k, v in means.items():  # acc_rgb -> accuracy/rgb, the rest loss/...
            tf.summary.scalar(f"accuracy/{k[4:]}" if k.startswith("acc_") else f"loss/{k}", v)
          for k, v in lrs.items():
            tf.summary.scalar(f"lr/{k}", v)
          for k, v in scales.items():
            tf.summary.scalar(f"loss_scale/{k}", v)
          tf.summary.scalar("images_per_second", rate)
        meter = _Meter()
      if chief and t.image_every and (step % t.image_every == 0 or step == end):
        with writer.as_default(step=step):
          for name, grid in summaries.image_grids(
              trainer.model, visual["x_rgb"][:4], visual["x_ir"][:4]).items():
            tf.summary.image(name, grid)
          # The first and the last identity of the batch: different people.
          tf.summary.image("V/interpolation alpha 0 -> 1", summaries.interpolation_strip(
              trainer.model, visual["x_rgb"][0], visual["x_rgb"][-1]))
      if t.checkpoint_every and step % t.checkpoint_every == 0 and step < end:
        save()
      if chief and t.eval_every and step % t.eval_every == 0 and step < end:
        metrics = quick_metrics(extract.extract_features(embed, test_table, cfg.data,
                                                         log=lambda _: None),
                                cfg.data.dataset)
        log(f"eval at step {step}: " + "  ".join(f"{k} {100 * v:.2f}%"
                                                 for k, v in metrics.items()))
        with writer.as_default(step=step):
          for k, v in metrics.items():
            tf.summary.scalar(f"eval/{k}", v)
  if saved_step != step:
    save()
  writer.flush()
  if not chief:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
  result = {"step": step, "losses": values, "report": None}
  if stop:
    saved = last_checkpoint if chief else (
        f"step {step} in the chief's {trainer_lib.checkpoint_dir(t.workdir)}")
    again = " on every worker" if t.strategy == "multi_worker" else ""
    log(f"stopped by {stop.signal_name} at step {step} of {t.total_steps}: saved "
        f"{saved}; rerun the same command{again} (--workdir={t.workdir}) to resume")
    return dict(result, stopped_by=stop.signal_name)
  if step < t.total_steps:
    log(f"stopped at step {step} of {t.total_steps} (--stop_at_step); rerun with "
        f"--workdir={t.workdir} to resume")
    return result
  if chief:
    result["report"] = final_evaluation(embed, test_table, cfg, log)
  return result
