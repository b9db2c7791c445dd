"""`python -m jsia_tf.analyze`: Table 4, Fig. 4, Fig. 6 and Fig. 7 of a trained run.

Table 4 (Sec. 4.5) measures the generated images on the test split:
  FRI: the pairs (x_rgb, x_rgb2ir) and (x_ir, x_ir2rgb), Eq. (3), from unpaired
    real test images of one person (row b: an RGB and an IR image of one identity);
  FLS: the pair (x_mix_rgb, x_mix_ir), Eq. (14): ONE z_mix (from the RGB contents
    of two people) decoded by both decoders with each modality's mixed style.
  MD (identity consistency): the mean L2 distance between the L2-normalised
    Eq. (17) embeddings of the two images of a pair, by a judge: the run's own F or
    an export (`--reid_model`). Both images of a pair take the same path (generation
    size, upsampled to the judge's input) so that resolution does not count as
    identity.
  FID and KID (distribution consistency) of each modality's generated images against
    the real test images of that modality, all at generation size, in FID's
    reference Inception network (`inception`).
Fig. 4: cosine similarities of intra- and inter-person cross-modality pairs of the
run's own embeddings on the train and test splits (and of each `--compare` run).
Fig. 6: per identity x_rgb, x_rgb2ir, x_ir, x_ir2rgb. Fig. 7: alpha = 0, 0.1, ..., 1
between two people, in both modalities, the real images at the ends.
"""

import dataclasses
import functools
import json
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import files
from jsia_tf import progress as progress_lib
from jsia_tf.analysis import figures
from jsia_tf.analysis import inception as inception_lib
from jsia_tf.analysis import metrics
from jsia_tf.data import layouts
from jsia_tf.data import pipeline
from jsia_tf.data import table as table_lib
from jsia_tf.data import tfrecords
from jsia_tf.evaluation import extract
from jsia_tf.models import jsia
from jsia_tf.serving import extractor as extractor_lib
from jsia_tf.serving import saved_model
from jsia_tf.training import experiment

REPORT_FILE, JSON_FILE = "report.md", "analysis.json"
FIG4_FILE, FIG6_FILE, FIG7_FILE = "fig4_similarities.png", "fig6_pairs.png", "fig7_interpolation.png"
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclasses.dataclass
class Run:
  """A trained run, its whole model restored, and its data set's config."""

  label: str
  workdir: str
  checkpoint: str
  step: int
  cfg: object  # experiment.ExperimentConfig
  data: config_lib.DataConfig
  model: jsia.JSIA

  @functools.cached_property
  def embed(self) -> Callable[[tf.Tensor], tf.Tensor]:
    """The run's Eq. (17) embeddings of images in [-1, 1] at its image size: one
    tf.function for MD's judge and Fig. 4 (traced once)."""
    return tf.function(lambda x: self.model.F.embed(
        x, flip_average=self.cfg.train.flip_average))


def _check_same_data(main_cfg, cfg, workdir: str, flag: str) -> None:
  """A --compare run must have been trained on the analysed run's data set."""
  a, b = main_cfg.data, cfg.data
  same = (a.dataset == b.dataset and a.trial == b.trial and
          os.path.realpath(a.data_dir) == os.path.realpath(b.data_dir))
  if not same:
    raise errors.ConfigError(
        f"--{flag}={workdir} was trained on {b.dataset} at {b.data_dir} (trial "
        f"{b.trial}), the analysed run on {a.dataset} at {a.data_dir} (trial {a.trial}): "
        "Fig. 4 compares runs of one data set")


def load_run(path: str, flag: str, data_dir: str = "", same_data_as=None) -> Run:
  """The run at `path` with every network restored (G, V, F; no optimizer).
  `same_data_as`: an ExperimentConfig whose data set the run must share (checked
  before anything is built)."""
  workdir, prefix, cfg, step = extractor_lib.load_run(path, flag)
  if same_data_as is not None:
    _check_same_data(same_data_as, cfg, workdir, flag)
  data = experiment.run_data(cfg.data, data_dir, workdir)
  num_classes = int(tfrecords.load_split(data, "train").label.max()) + 1
  # The weights come from the checkpoint: no ImageNet file is needed here.
  model = jsia.build(dataclasses.replace(cfg.model, backbone_weights=""), num_classes)
  model.build()
  try:
    extractor_lib.restore_into(tf.train.Checkpoint(model=model), prefix, workdir)
  except errors.ConfigError:
    del model
    extractor_lib.collect_quietly()
    raise
  return Run(os.path.basename(os.path.normpath(workdir)), workdir, prefix, step, cfg, data,
             model)


def _images(table: table_lib.ImageTable, data: config_lib.DataConfig) -> np.ndarray:
  """The images of `table` in [-1, 1] at the data set's image size [N, H, W, 3]."""
  return np.concatenate([np.asarray(b["x"]) for b in
                         pipeline.make_eval_dataset(table, data, batch_size=64)])


def paired_rows(table: table_lib.ImageTable, max_pairs: int, seed: int):
  """(rgb rows, ir rows): unpaired images of one person side by side. Per identity
  with images in both modalities, its RGB and its IR images are shuffled and zipped
  (each image used at most once); at most `max_pairs` pairs, drawn uniformly."""
  rng = np.random.default_rng(seed)
  rgb_rows, ir_rows = [], []
  for pid in np.unique(table.pid):
    rgb = rng.permutation(np.flatnonzero((table.pid == pid) & (table.modality == layouts.RGB)))
    ir = rng.permutation(np.flatnonzero((table.pid == pid) & (table.modality == layouts.IR)))
    k = min(len(rgb), len(ir))
    rgb_rows += rgb[:k].tolist()
    ir_rows += ir[:k].tolist()
  if len(rgb_rows) < 2:
    raise errors.ConfigError(f"the test split of {table.path[0] if len(table) else '?'} "
                             f"has {len(rgb_rows)} identity-aligned RGB-IR pairs; Table 4 "
                             "needs at least 2")
  keep = np.sort(rng.choice(len(rgb_rows), min(max_pairs, len(rgb_rows)), replace=False))
  return np.asarray(rgb_rows)[keep], np.asarray(ir_rows)[keep]


def _partners(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """For each row, another row of a different identity (drawn uniformly)."""
  partners = np.empty(len(ids), np.int64)
  for i, pid in enumerate(ids):
    others = np.flatnonzero(ids != pid)
    if not len(others):
      raise errors.ConfigError("FLS mixes two people: the test pairs hold one identity")
    partners[i] = rng.choice(others)
  return partners


def _batched(fn: Callable[..., Dict[str, tf.Tensor]], n: int, batch_size: int,
             log: Callable[[str], None], what: str) -> Dict[str, np.ndarray]:
  """fn(start, stop) -> dict of tensors, over [0, n) in batches, concatenated."""
  out: Dict[str, List[np.ndarray]] = {}
  progress = progress_lib.Progress(n, what, log, unit="images")
  for start in range(0, n, batch_size):
    for k, v in fn(start, min(start + batch_size, n)).items():
      out.setdefault(k, []).append(np.asarray(v))
    progress.update(min(start + batch_size, n))
  return {k: np.concatenate(v) for k, v in out.items()}


def generate_pairs(run: Run, x_rgb: np.ndarray, x_ir: np.ndarray, ids: np.ndarray,
                   batch_size: int, seed: int, log) -> Dict[str, np.ndarray]:
  """FRI and FLS images (generation size, [-1, 1]) of identity-aligned real rows:
  x_rgb_gen, x_ir_gen, x_rgb2ir, x_ir2rgb, x_mix_rgb, x_mix_ir (row b mixes b with
  `partner`[b] at `alpha`[b]), and the draws."""
  m = run.model

  @tf.function
  def translate(a, b):
    g = m.generate(a, b, training=False, cycle=False, style_codes=False)
    return {"x_rgb_gen": g["x_rgb_gen"], "x_ir_gen": g["x_ir_gen"],
            "x_rgb2ir": g["x_rgb2ir"], "x_ir2rgb": g["x_ir2rgb"],
            "z": m.vary(g["M_rgb"])["z"], "s_rgb": g["s_rgb"], "s_ir": g["s_ir"]}

  out = _batched(lambda i, j: translate(x_rgb[i:j], x_ir[i:j]), len(ids), batch_size, log,
                 "generating FRI pairs")
  rng = np.random.default_rng(seed)
  partner, alpha = _partners(ids, rng), rng.uniform(0.0, 1.0, len(ids)).astype(np.float32)

  @tf.function
  def mix(z_1, z_2, s_rgb_1, s_rgb_2, s_ir_1, s_ir_2, a):
    return {"x_mix_rgb": m.mix(z_1, z_2, s_rgb_1, s_rgb_2, a, "rgb")["x_mix"],
            "x_mix_ir": m.mix(z_1, z_2, s_ir_1, s_ir_2, a, "ir")["x_mix"]}

  z, s_rgb, s_ir = out.pop("z"), out.pop("s_rgb"), out.pop("s_ir")
  out.update(_batched(lambda i, j: mix(z[i:j], z[partner[i:j]], s_rgb[i:j],
                                       s_rgb[partner[i:j]], s_ir[i:j], s_ir[partner[i:j]],
                                       alpha[i:j]),
                      len(ids), batch_size, log, "generating FLS pairs"))
  out["partner"], out["alpha"] = partner, alpha
  return {k: np.asarray(v, np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}


def _judge(run: Run, reid_model: str):
  """(label, embed): MD's judge, images in [-1, 1] at the run's image size -> [N, D]."""
  if not reid_model:
    return f"the run's own F ({run.checkpoint})", run.embed
  served = saved_model.Served(reid_model, "reid_model")
  return f"the export {served.directory} (step {served.metadata['step']})", served.embed


def table4(run: Run, images: Dict[str, np.ndarray], judge, inception, cfg, log) -> Dict:
  """Table 4's numbers for the generated `images` (`generate_pairs`)."""
  to_judge = tf.function(lambda x: run.model.to_image_size(x))
  embed = lambda name: _batched(
      lambda i, j: {"e": judge(to_judge(images[name][i:j]))}, len(images[name]),
      cfg.batch_size, log, f"embedding {name}")["e"]
  e = {k: embed(k) for k in ("x_rgb_gen", "x_ir_gen", "x_rgb2ir", "x_ir2rgb",
                             "x_mix_rgb", "x_mix_ir")}
  md = {"FRI_rgb_rgb2ir": metrics.mean_pair_distance(e["x_rgb_gen"], e["x_rgb2ir"]),
        "FRI_ir_ir2rgb": metrics.mean_pair_distance(e["x_ir_gen"], e["x_ir2rgb"]),
        "FLS_mix_rgb_mix_ir": metrics.mean_pair_distance(e["x_mix_rgb"], e["x_mix_ir"])}
  md["FRI"] = (md["FRI_rgb_rgb2ir"] + md["FRI_ir_ir2rgb"]) / 2.0
  md["FLS"] = md["FLS_mix_rgb_mix_ir"]
  # The judge's scale: real RGB-IR pairs of one person, and of two people.
  md["real_same_person"] = metrics.mean_pair_distance(e["x_rgb_gen"], e["x_ir_gen"])
  md["real_two_people"] = metrics.mean_pair_distance(e["x_rgb_gen"],
                                                     e["x_ir_gen"][images["partner"]])
  result = {"MD": md, "pairs": int(len(images["x_rgb_gen"]))}
  if inception is None:
    return result
  feats = {k: inception.features(pipeline.from_model_range(images[k]), log=log, what=k)
           for k in ("x_rgb_gen", "x_ir_gen", "x_rgb2ir", "x_ir2rgb", "x_mix_rgb",
                     "x_mix_ir")}
  # (generated, real of its modality)
  sets = {"FRI_rgb": ("x_ir2rgb", "x_rgb_gen"), "FRI_ir": ("x_rgb2ir", "x_ir_gen"),
          "FLS_rgb": ("x_mix_rgb", "x_rgb_gen"), "FLS_ir": ("x_mix_ir", "x_ir_gen")}
  fid = {k: metrics.fid(feats[a], feats[b]) for k, (a, b) in sets.items()}
  kid = {k: metrics.kid(feats[a], feats[b], cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
         for k, (a, b) in sets.items()}
  for k in ("FRI", "FLS"):
    fid[k] = (fid[f"{k}_rgb"] + fid[f"{k}_ir"]) / 2.0
    kid[k] = {"mean": (kid[f"{k}_rgb"]["mean"] + kid[f"{k}_ir"]["mean"]) / 2.0}
  result.update(FID=fid, KID=kid)
  return result


def _subset(table: table_lib.ImageTable, max_images: int, seed: int) -> table_lib.ImageTable:
  """At most `max_images` rows of each modality of `table`, drawn uniformly."""
  rng, keep = np.random.default_rng(seed), []
  for modality in (layouts.RGB, layouts.IR):
    rows = np.flatnonzero(table.modality == modality)
    keep += sorted(rng.choice(rows, min(max_images, len(rows)), replace=False).tolist())
  return table.select(np.asarray(keep, np.int64))


def similarity_panels(run: Run, tables: Dict[str, table_lib.ImageTable], log) -> List[Dict]:
  """Fig. 4's panels of `run`: per split, the intra / inter similarities, their
  means and the ROC AUC of intra against inter."""
  panels = []
  for split, table in tables.items():
    log(f"{run.label}: embedding {len(table)} {split} images for Fig. 4")
    f = extract.extract_features(run.embed, table, run.data, log=log).features
    rgb, ir = table.modality == layouts.RGB, table.modality == layouts.IR
    s = metrics.cross_modality_similarities(f[rgb], table.pid[rgb], f[ir], table.pid[ir])
    panels.append({"run": run.label, "split": split, "intra": s["intra"],
                   "inter": s["inter"], "auc": metrics.roc_auc(s["intra"], s["inter"]),
                   "mean_intra": float(s["intra"].mean()),
                   "mean_inter": float(s["inter"].mean()),
                   "num_intra": int(s["intra"].size), "num_inter": int(s["inter"].size),
                   "images": int(len(table))})
  return panels


def interpolation_rows(run: Run, x_1: Dict[str, np.ndarray], x_2: Dict[str, np.ndarray]):
  """Fig. 7: for each modality, [real x_1, decoded at alpha = 0, ..., 1, real x_2]
  (generation size): one z from the two RGB contents, each modality's styles."""
  m = run.model
  g = m.generate(np.stack([x_1["rgb"], x_2["rgb"]]), np.stack([x_1["ir"], x_2["ir"]]),
                 training=False, cycle=False, style_codes=False)
  z = m.vary(g["M_rgb"])["z"]
  alpha = tf.constant(ALPHAS, tf.float32)
  n = len(ALPHAS)
  rows = []
  for k in ("rgb", "ir"):
    s = g[f"s_{k}"]
    # Eq. (14) weighs its first code by alpha: the second person first, so that
    # alpha = 0 is the person on the left.
    x = m.mix(tf.repeat(z[1:2], n, 0), tf.repeat(z[0:1], n, 0), tf.repeat(s[1:2], n, 0),
              tf.repeat(s[0:1], n, 0), alpha, k)["x_mix"]
    real = np.asarray(g[f"x_{k}_gen"])
    rows.append([real[0]] + list(np.asarray(x)) + [real[1]])
  return rows


def _tensorboard(output_dir: str, panels: List[Dict]) -> str:
  """Fig. 4's similarities as TensorBoard histograms, one log per run."""
  logdir = os.path.join(output_dir, "tensorboard")
  for run in dict.fromkeys(p["run"] for p in panels):
    with tf.summary.create_file_writer(os.path.join(logdir, run)).as_default():
      for p in (p for p in panels if p["run"] == run):
        for kind in ("intra", "inter"):
          tf.summary.histogram(f"fig4/{p['split']}/{kind}", p[kind], step=0)
  return logdir


def _fmt(value, digits=3) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def _kid_cell(k: Optional[Dict]) -> str:
  return "-" if k is None else f"{k['mean']:.4f} +- {k['std']:.4f}"


def format_report(result: Dict) -> str:
  """report.md: every table from `result` (analysis.json's content)."""
  t4, s = result["table4"], result["settings"]
  lines = [f"# Analysis of {s['workdir']} (step {s['step']})", "",
           f"Data: {s['dataset']} at {s['data_dir']}. Checkpoint: {s['checkpoint']}.", "",
           "## Table 4: identity and distribution consistency of the generated images", "",
           "| | MD FRI | MD FLS | FID FRI | FID FLS | KID FRI | KID FLS |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  fid, kid = t4.get("FID", {}), t4.get("KID", {})
  lines.append(f"| this run | {_fmt(t4['MD']['FRI'])} | {_fmt(t4['MD']['FLS'])} | "
               f"{_fmt(fid.get('FRI'), 2)} | {_fmt(fid.get('FLS'), 2)} | "
               f"{_fmt(kid.get('FRI', {}).get('mean'), 4)} | "
               f"{_fmt(kid.get('FLS', {}).get('mean'), 4)} |")
  lines += ["", "Per pair and modality:", "", "| set | MD | FID | KID (mean +- std) |",
            "| --- | --- | --- | --- |"]
  for name, md_key in (("FRI rgb (x_ir2rgb vs real RGB; MD x_rgb, x_rgb2ir)", "FRI_rgb_rgb2ir"),
                       ("FRI ir (x_rgb2ir vs real IR; MD x_ir, x_ir2rgb)", "FRI_ir_ir2rgb"),
                       ("FLS rgb (x_mix_rgb vs real RGB)", None),
                       ("FLS ir (x_mix_ir vs real IR)", None)):
    key = name.split(" (")[0].replace(" ", "_")
    k = kid.get(key)
    lines.append(f"| {name} | {_fmt(t4['MD'][md_key]) if md_key else '-'} | "
                 f"{_fmt(fid.get(key), 2)} | "
                 f"{_kid_cell(k)} |")
  lines += ["", f"MD judge: {s['judge']}. MD: mean L2 distance of the L2-normalised Eq. (17) "
            "embeddings of the two images of a pair (in [0, 2]); FLS's MD pairs x_mix_rgb "
            "with x_mix_ir. The judge's scale, on the same real test pairs: "
            f"{t4['MD']['real_same_person']:.3f} between the real RGB and IR images of one "
            f"person, {t4['MD']['real_two_people']:.3f} of two people.",
            f"Sample sizes: {t4['pairs']} FRI pairs (and as many FLS pairs) from the test "
            f"split; FID / KID compare {t4['pairs']} generated with {t4['pairs']} real "
            "images per modality, all at generation size. FID is biased upwards below "
            "~2,048 images; KID is unbiased.",
            f"FID network: {s['fid_network']}.", ""]
  lines += ["## Fig. 4: cross-modality similarity of intra- and inter-person pairs", "",
            f"![Fig. 4]({FIG4_FILE})", "",
            "| run | split | images | mean intra | mean inter | ROC AUC |",
            "| --- | --- | --- | --- | --- | --- |"]
  for p in result["fig4"]:
    lines.append(f"| {p['run']} | {p['split']} | {p['images']} | {p['mean_intra']:.3f} | "
                 f"{p['mean_inter']:.3f} | {p['auc']:.3f} |")
  lines += ["", "## Fig. 6: generated cross-modality pairs of real unpaired test images", "",
            f"![Fig. 6]({FIG6_FILE})", "",
            "Per row (one identity): x_rgb, x_rgb2ir, x_ir, x_ir2rgb.", "",
            "## Fig. 7: latent interpolation", "", f"![Fig. 7]({FIG7_FILE})", "",
            "Rows RGB and IR: a real image, alpha = 0, 0.1, ..., 1, the other person's real "
            "image; one z_mix per column decoded by both decoders.", ""]
  return "\n".join(lines)


def analyze(cfg: config_lib.AnalyzeConfig, log: Callable[[str], None] = print) -> Dict:
  """Runs the whole analysis of `cfg.workdir`; writes report.md, analysis.json and
  the PNG figures into the output directory; returns analysis.json's content."""
  # The cheap checks first: a missing file fails before any model is built.
  network = inception_lib.InceptionFeatures(cfg.inception) if cfg.inception else None
  run = load_run(cfg.workdir, "workdir", cfg.data_dir)
  others = [load_run(path, "compare", cfg.data_dir, same_data_as=run.cfg)
            for path in cfg.compare]
  output_dir = cfg.output_dir or os.path.join(run.workdir, "analysis")
  files.make_folder(output_dir, "output_dir",
                    f"{REPORT_FILE}, {JSON_FILE} and the figures")
  log(f"analysing {run.workdir} (step {run.step}) into {output_dir}")
  if network is None:
    log("no --inception file: Table 4 without FID / KID (FID's reference network is "
        f"{inception_lib.REFERENCE_FILE} from {inception_lib.REFERENCE_ARCHIVE})")

  test = tfrecords.load_split(run.data, "test")
  rgb_rows, ir_rows = paired_rows(test, cfg.max_pairs, cfg.seed)
  log(f"Table 4 on {len(rgb_rows)} identity-aligned test pairs of "
      f"{len(np.unique(test.pid[rgb_rows]))} identities")
  x_rgb, x_ir = _images(test.select(rgb_rows), run.data), _images(test.select(ir_rows), run.data)
  ids = test.pid[rgb_rows]
  images = generate_pairs(run, x_rgb, x_ir, ids, cfg.batch_size, cfg.seed, log)
  judge_label, judge = _judge(run, cfg.reid_model)
  t4 = table4(run, images, judge, network, cfg, log)

  # Fig. 6: the first pair of each of the first grid_ids identities.
  first = [int(np.flatnonzero(ids == pid)[0]) for pid in np.unique(ids)[:cfg.grid_ids]]
  fig6 = [[images[k][i] for k in ("x_rgb_gen", "x_rgb2ir", "x_ir_gen", "x_ir2rgb")]
          for i in first]
  figures.save_png(figures.image_grid(fig6), os.path.join(output_dir, FIG6_FILE))
  # Fig. 7: the first two identities.
  ends = [{"rgb": x_rgb[i], "ir": x_ir[i]} for i in first[:2]]
  if len(ends) < 2:
    raise errors.ConfigError("Fig. 7 needs two identities in the test pairs")
  fig7 = interpolation_rows(run, ends[0], ends[1])
  figures.save_png(figures.image_grid(fig7), os.path.join(output_dir, FIG7_FILE))

  tables = {split: _subset(tfrecords.load_split(run.data, split), cfg.max_images, cfg.seed)
            for split in ("train", "test")}
  panels = []
  for r in [run] + others:
    panels += similarity_panels(r, tables, log)
  figures.similarity_histograms(panels, os.path.join(output_dir, FIG4_FILE))
  logdir = _tensorboard(output_dir, panels)

  result = {
      "settings": {
          "workdir": run.workdir, "checkpoint": run.checkpoint, "step": run.step,
          "dataset": run.data.dataset, "data_dir": run.data.data_dir,
          "compare": [{"workdir": o.workdir, "checkpoint": o.checkpoint, "step": o.step}
                      for o in others],
          "judge": judge_label,
          "fid_network": (f"{network.path} ({inception_lib.REFERENCE_FILE}, pool_3)"
                          if network else "none (no --inception: FID and KID not computed)"),
          "config": config_lib.to_dict(cfg)},
      "table4": t4,
      "fig4": [{k: v for k, v in p.items() if k not in ("intra", "inter")} for p in panels],
      "fig6": {"file": FIG6_FILE, "rows": len(fig6), "columns": 4,
               "columns_are": ["x_rgb", "x_rgb2ir", "x_ir", "x_ir2rgb"],
               "identities": [int(ids[i]) for i in first]},
      "fig7": {"file": FIG7_FILE, "rows": 2, "columns": len(ALPHAS) + 2,
               "alphas": list(ALPHAS), "identities": [int(ids[i]) for i in first[:2]]},
      "tensorboard": logdir,
  }
  # Both encoded before either file is replaced: a failure leaves the earlier pair.
  encoded, report = json.dumps(result, indent=1), format_report(result)
  files.atomic_write(os.path.join(output_dir, JSON_FILE), lambda f: f.write(encoded))
  files.atomic_write(os.path.join(output_dir, REPORT_FILE), lambda f: f.write(report))
  log(f"wrote {os.path.join(output_dir, REPORT_FILE)}, {JSON_FILE} and the figures")
  return result
