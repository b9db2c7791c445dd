"""The analysis' pictures: image grids (Figs. 6 and 7) at exact pixel sizes and the
similarity histograms of Fig. 4 (matplotlib)."""

from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from jsia_tf import files


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [-1, 1] -> uint8 in 0..255."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
      np.uint8)


def image_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 2) -> np.ndarray:
  """One uint8 image [r*h + (r-1)*gap, c*w + (c-1)*gap, 3] of a grid of images in
  [-1, 1], all [h, w, 3], row by row, on white."""
  if not rows or not rows[0]:
    raise ValueError("an image grid needs at least one row and one column")
  h, w = np.asarray(rows[0][0]).shape[:2]
  r, c = len(rows), max(len(row) for row in rows)
  grid = np.full((r * h + (r - 1) * gap, c * w + (c - 1) * gap, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      image = to_uint8(image)
      if image.shape[:2] != (h, w):
        raise ValueError(f"grid cell ({i}, {j}) is {image.shape[:2]}, the others ({h}, {w})")
      grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = image
  return grid


def save_png(image: np.ndarray, path: str) -> None:
  """Writes a uint8 image [H, W, 3] as PNG."""
  files.atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"),
                     binary=True)


def save_figure(fig, path: str) -> None:
  """Writes a matplotlib figure as PNG atomically, and closes it whether or not the
  write succeeds."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  try:
    files.atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"), binary=True)
  finally:
    plt.close(fig)


def similarity_histograms(panels: List[Dict], path: str, bins: int = 50) -> None:
  """Fig. 4: one row per run, one column per split; each panel the histograms
  (densities) of intra- and inter-person cross-modality cosine similarities.

  `panels`: [{"run": label, "split": name, "intra": [n], "inter": [m], "auc": a}],
  in row-major order (run, then split)."""
  # pylint: disable=import-outside-toplevel
  import matplotlib
  matplotlib.use("Agg")  # files only: no display on a training machine
  import matplotlib.pyplot as plt
  runs = list(dict.fromkeys(p["run"] for p in panels))
  splits = list(dict.fromkeys(p["split"] for p in panels))
  fig, axes = plt.subplots(len(runs), len(splits), squeeze=False,
                           figsize=(4.2 * len(splits), 3.0 * len(runs)))
  edges = np.linspace(-1.0, 1.0, bins + 1)
  for p in panels:
    ax = axes[runs.index(p["run"])][splits.index(p["split"])]
    ax.hist(p["intra"], bins=edges, density=True, alpha=0.6, color="tab:red",
            label=f"intra-person (mean {np.mean(p['intra']):.3f})")
    ax.hist(p["inter"], bins=edges, density=True, alpha=0.6, color="tab:blue",
            label=f"inter-person (mean {np.mean(p['inter']):.3f})")
    ax.set_title(f"{p['run']}: {p['split']} (AUC {p['auc']:.3f})", fontsize=9)
    ax.set_xlabel("cross-modality cosine similarity", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
  fig.tight_layout()
  save_figure(fig, path)
