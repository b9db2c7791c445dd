"""Retrieval for people: rank a gallery folder for query images with an export, and
draw each ranked list.

Labels come from the folder layout when it has them: an image in a folder named by
digits (`.../0007/x.jpg`) has that person id; a `camN` folder above it (SYSU-MM01)
or `Visible` / `Thermal` (RegDB) gives the camera and modality. Unlabelled images
have id -1 and are ranked all the same; only labelled pairs are framed as (non-)
matches. The gallery's embeddings are cached in the output folder as a features
file (`jsia_tf.evaluation.features`), reused while the export and the gallery's
files are unchanged.
"""

import json
import os
import re
import stat
import time
from typing import Dict, List, Optional

import numpy as np
from absl import logging
from PIL import Image, ImageDraw, ImageFont

from jsia_tf import config as config_lib
from jsia_tf import errors
from jsia_tf import files
from jsia_tf.data import layouts
from jsia_tf.data import table as table_lib
from jsia_tf.evaluation import features as features_lib
from jsia_tf.evaluation import rerank as rerank_lib
from jsia_tf.serving import saved_model

GALLERY_FEATURES = "gallery_features.npz"
GALLERY_KEY = "gallery_features.json"
RANKINGS = "rankings.json"
RANKED_DIR = "ranked"
_CAMERA = re.compile(r"^cam([0-9]+)$")
_REGDB_CAMERA = {"Visible": layouts.REGDB_VISIBLE_CAMERA,
                 "Thermal": layouts.REGDB_THERMAL_CAMERA}
_FRAME = {"query": (40, 90, 220), True: (30, 170, 60), False: (210, 40, 40),
          None: (150, 150, 150)}


def list_images(path: str, flag: str) -> List[str]:
  """`path` itself if it is an image file, else the images under the folder `path`
  (recursive, sorted), each counted once by its real path. Links to folders already
  walked (a loop, or a second way in), links that lead nowhere, and FIFOs, sockets
  and devices are skipped, counted and named in the log (a FIFO named .jpg would
  block the read forever); other files are counted."""
  if os.path.isfile(path):
    if not path.lower().endswith(layouts.IMAGE_EXTENSIONS):
      raise errors.ConfigError(f"--{flag}={path} is not an image (expected "
                               f"{'/'.join(layouts.IMAGE_EXTENSIONS)})")
    return [path]
  if not os.path.isdir(path):
    raise errors.ConfigError(f"--{flag}={path} does not exist")
  found, others = [], 0
  skipped: Dict[str, List[str]] = {}
  walked = {os.path.realpath(path)}
  for folder, dirs, names in os.walk(path, followlinks=True):
    kept_dirs = []
    for name in sorted(dirs):
      real = os.path.realpath(os.path.join(folder, name))
      if real in walked:
        skipped.setdefault("link(s) to a folder already walked",
                           []).append(os.path.join(folder, name))
      else:
        walked.add(real)
        kept_dirs.append(name)
    dirs[:] = kept_dirs
    for name in sorted(names):
      full = os.path.join(folder, name)
      try:
        mode = os.stat(full).st_mode
      except OSError:  # a dangling link, or links that point at each other
        skipped.setdefault("link(s) that lead to no file", []).append(full)
        continue
      if stat.S_ISDIR(mode):
        continue  # a link to a folder os.walk lists among the files: walked above
      if not stat.S_ISREG(mode):
        skipped.setdefault("FIFO(s), socket(s) or device(s)", []).append(full)
      elif not name.lower().endswith(layouts.IMAGE_EXTENSIONS):
        others += 1
      else:
        found.append(full)
  # One name per real file: the file's own name before a link's (its folders carry
  # the labels), then the first in walk order.
  chosen = {}
  for full in sorted(found, key=os.path.islink):
    chosen.setdefault(os.path.realpath(full), full)
  images = [full for full in found if chosen[os.path.realpath(full)] == full]
  seconds = [full for full in found if chosen[os.path.realpath(full)] != full]
  if seconds:
    skipped["second name(s) of an image already listed"] = seconds
  for why, paths in skipped.items():
    logging.warning("--%s: skipped %d %s: %s", flag, len(paths), why,
                    ", ".join(map(shown, paths[:5])) + (" ..." if len(paths) > 5 else ""))
  if others:
    logging.warning("--%s: ignored %d non-image file(s) under %s", flag, others, path)
  if not images:
    raise errors.ConfigError(f"--{flag}={path} holds no images (expected "
                             f"{'/'.join(layouts.IMAGE_EXTENSIONS)} files)")
  return images


def shown(path: str) -> str:
  """`path` as text any console and JSON reader takes: a file name's bytes that are
  not UTF-8 (which Python keeps as lone surrogates) become \\xNN escapes."""
  return os.fsencode(path).decode("utf-8", "backslashreplace")


def labels(path: str) -> Dict[str, int]:
  """{"id", "camera", "modality"} of an image from its folders (-1 / 0 / RGB when
  the layout does not say): SYSU-MM01's cam<C>/<id>/, LLCM's
  test_{vis,nir}/cam<C>/<id>/, RegDB's {Visible,Thermal}/<id>/."""
  parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
  pid = int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else -1
  above = parts[-3] if len(parts) >= 3 else ""
  camera, modality = 0, layouts.RGB
  if _CAMERA.match(above):
    camera = int(_CAMERA.match(above).group(1))
    # LLCM's cameras have both modes, told by the folder above (test_nir, train_nir).
    if len(parts) >= 4 and parts[-4].endswith(("_vis", "_nir")):
      modality = layouts.IR if parts[-4].endswith("_nir") else layouts.RGB
    else:
      modality = layouts.sysu_modality(camera)
  elif above in _REGDB_CAMERA:
    camera = _REGDB_CAMERA[above]
    modality = layouts.IR if above == "Thermal" else layouts.RGB
  return {"id": pid, "camera": camera, "modality": modality}


def _read(paths: List[str], flag: str) -> Dict[str, bytes]:
  """{path: bytes} of the readable, decodable images of `paths`; the rest are
  skipped, counted and named in the log."""
  out, bad = {}, []
  for path in paths:
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      bad.append(f"{shown(path)} (cannot be read: {e.strerror})")
      continue
    problem = table_lib.decode_error(data)
    if problem:
      bad.append(f"{shown(path)} ({problem})")
    else:
      out[path] = data
  if bad:
    logging.warning("--%s: skipped %d undecodable image(s): %s", flag, len(bad),
                    "; ".join(bad[:3]))
  if not out:
    raise errors.DataError(f"--{flag}: none of the {len(paths)} image(s) decodes")
  return out


def embed_paths(served: saved_model.Model, paths: List[str], batch_size: int,
                flag: str, log=print):
  """(the decodable paths of `paths`, their [N, D] float32 embeddings) through the
  export's serve_image_bytes signature, with a progress line every 10 s; the
  undecodable ones are skipped, counted and named in the log."""
  data = _read(paths, flag)
  kept = list(data)
  chunks, start, last = [], time.time(), time.time()
  for i in range(0, len(kept), batch_size):
    batch = kept[i:i + batch_size]
    chunks.append(np.asarray(served.embed_bytes([data[p] for p in batch]), np.float32))
    done = i + len(batch)
    if done == len(kept) or time.time() - last > 10:
      last = time.time()
      rate = done / max(last - start, 1e-9)
      log(f"--{flag}: embedded {done}/{len(kept)} images ({rate:.0f} images/s)")
  return kept, np.concatenate(chunks)


def embed_files(served: saved_model.Model, paths: List[str], batch_size: int,
                flag: str, log=print) -> features_lib.FeatureSet:
  """Embeds the image files `paths`; returns them as a features set labelled from
  the folder layout (`labels`)."""
  kept, embeddings = embed_paths(served, paths, batch_size, flag, log)
  meta = [labels(p) for p in kept]
  cams = [m["camera"] for m in meta]
  ids = [m["id"] for m in meta]
  frames, seen = [], {}
  for key in zip(cams, ids):  # paths are sorted: the index within (camera, id)
    frames.append(seen.get(key, 0))
    seen[key] = frames[-1] + 1
  return features_lib.FeatureSet(
      features=embeddings, ids=ids, cams=cams, frames=frames,
      modality=[m["modality"] for m in meta], paths=np.asarray(kept, str))


def _gallery_key(served: saved_model.Model, paths: List[str]) -> Dict:
  """What the cached gallery features depend on: the export and every file."""
  return {"saved_model": os.path.abspath(served.directory),
          "files": [[os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns]
                    for p in paths]}


def gallery_features(served: saved_model.Model, cfg: config_lib.SearchConfig,
                     log=print) -> features_lib.FeatureSet:
  """The gallery's features: from the cache in `cfg.output` when it is current,
  else embedded and cached."""
  paths = list_images(cfg.gallery, "gallery")
  key = _gallery_key(served, paths)
  cache, key_file = (os.path.join(cfg.output, GALLERY_FEATURES),
                     os.path.join(cfg.output, GALLERY_KEY))
  if os.path.isfile(cache) and os.path.isfile(key_file):
    if _read_key(key_file) == key:
      try:
        feats = features_lib.load(cache)
        log(f"gallery: {len(paths)} images, features from the cache {cache}")
        return feats
      except errors.DataError as e:
        log(f"gallery: the cache {cache} is unreadable ({e}); re-embedding")
    else:
      log("gallery: the cached features are of another export or gallery, or their "
          "key is unreadable; re-embedding")
  feats = embed_files(served, paths, cfg.batch_size, "gallery", log)
  # The key goes last: a cache whose key is not written is never reused.
  files.remove(key_file)
  features_lib.save(cache, feats)
  files.atomic_write(key_file, lambda f: json.dump(key, f))
  return feats


def _read_key(path: str):
  """The gallery cache's key; None if the file cannot be read as JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def rank(queries: np.ndarray, gallery: np.ndarray, top_k: int, rerank=None):
  """Cosine ranking: (indices [Q, k], scores [Q, k]), best first; ties keep gallery
  order. The score is 1 - the distance: the cosine similarity, or with `rerank`
  (k1, k2, lambda) 1 - the k-reciprocal re-ranked distance."""
  distance = rerank_lib.distances(queries, gallery, "cosine", rerank)
  order = np.argsort(distance, axis=1, kind="stable")[:, :top_k]
  return order, 1.0 - np.take_along_axis(distance, order, axis=1)


def _match(query_id: int, gallery_id: int) -> Optional[bool]:
  return None if query_id < 0 or gallery_id < 0 else query_id == gallery_id


def draw_ranking(query_path: str, results: List[Dict], size) -> Image.Image:
  """The ranked list as one image: the query (blue frame), then the top-k with rank
  and score, framed green (same id), red (another id) or grey (id unknown)."""
  h = 128
  w = max(16, int(round(h * size[1] / size[0])))
  pad, border, label = 8, 4, 16
  tiles = [(query_path, "query", "query")] + [
      (r["path"], f"{r['rank']}: {r['score']:.3f}", r["match"]) for r in results]
  width = pad + len(tiles) * (w + 2 * border + pad) + pad  # a gap after the query
  canvas = Image.new("RGB", (width, h + 2 * border + label + 2 * pad), "white")
  draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
  x = pad
  for i, (path, text, frame) in enumerate(tiles):
    with Image.open(path) as image:
      thumb = image.convert("RGB").resize((w, h), Image.BILINEAR)
    draw.rectangle([x, pad, x + w + 2 * border - 1, pad + h + 2 * border - 1],
                   fill=_FRAME[frame])
    canvas.paste(thumb, (x + border, pad + border))
    draw.text((x + border, pad + h + 2 * border + 2), text, fill="black", font=font)
    x += w + 2 * border + pad + (pad if i == 0 else 0)
  return canvas


def run(cfg: config_lib.SearchConfig, log=print) -> Dict:
  """Ranks the gallery for every query; writes a ranked-list image per query,
  rankings.json and the config to `cfg.output`; returns the rankings."""
  served = saved_model.open_model(cfg.saved_model)
  query_paths = list_images(cfg.query, "query")
  files.make_folder(cfg.output, "output",
                    f"{RANKINGS} and {RANKED_DIR}/ (a new folder or one search wrote)")
  os.makedirs(os.path.join(cfg.output, RANKED_DIR), exist_ok=True)
  config_lib.save(cfg, os.path.join(cfg.output, "search_config.json"))
  gallery = gallery_features(served, cfg, log)
  queries = embed_files(served, query_paths, cfg.batch_size, "query", log)
  top_k = min(cfg.top_k, len(gallery.features))
  order, scores = rank(queries.features, gallery.features, top_k, cfg.rerank_params)
  out = {"saved_model": served.directory, "gallery": cfg.gallery,
         "gallery_size": len(gallery.features), "top_k": top_k,
         "rerank": cfg.rerank_summary, "queries": []}
  for i, path in enumerate(queries.paths):
    qid = int(queries.ids[i])
    results = [{"rank": r + 1, "path": str(gallery.paths[j]), "score": float(s),
                "id": int(gallery.ids[j]), "match": _match(qid, int(gallery.ids[j]))}
               for r, (j, s) in enumerate(zip(order[i], scores[i]))]
    image = os.path.join(cfg.output, RANKED_DIR,
                         f"{i:04d}_{os.path.splitext(os.path.basename(path))[0]}.jpg")
    picture = draw_ranking(path, results, served.metadata["image_size"])
    files.atomic_write(image, lambda f, p=picture: p.save(f, format="JPEG", quality=92),
                       binary=True)
    first = next((r["rank"] for r in results if r["match"]), None)
    for r in results:
      r["path"] = shown(r["path"])
    out["queries"].append({"query": shown(path), "id": qid, "image": shown(image),
                           "first_match_rank": first, "results": results})
    log(f"{shown(path)}: top-1 {results[0]['path']} ({results[0]['score']:.3f})" +
        (f"; first true match at rank {first}" if first else ""))
  files.atomic_write(os.path.join(cfg.output, RANKINGS),
                     lambda f: json.dump(out, f, indent=2))
  log(f"wrote {len(out['queries'])} ranked list(s) to {cfg.output}/{RANKED_DIR} and "
      f"{cfg.output}/{RANKINGS}")
  return out
