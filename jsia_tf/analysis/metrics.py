"""Table 4's and Fig. 4's numbers as pure numpy: FID, KID, MD, similarity
distributions and their ROC AUC. Every function takes feature arrays [N, D]."""

from typing import Dict, Tuple

import numpy as np
import scipy.linalg
import scipy.stats

from jsia_tf.evaluation import features as features_lib


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(mean [D], covariance [D, D]) of features [N, D], the covariance with N - 1
  in the denominator (the reference FID code's `np.cov`)."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu_1: np.ndarray, sigma_1: np.ndarray, mu_2: np.ndarray,
                     sigma_2: np.ndarray, eps: float = 1e-6) -> float:
  """The Frechet distance of two Gaussians N(mu_1, sigma_1), N(mu_2, sigma_2):
  |mu_1 - mu_2|^2 + tr(sigma_1 + sigma_2 - 2 (sigma_1 sigma_2)^(1/2)).

  The square root's failure handling is the reference implementation's (TTUR):
  a product that is singular to the solver (non-finite root) is retried with `eps`
  added to both diagonals; an imaginary part (numerical error of the root) is
  dropped when the diagonal's is below 1e-3 and is an error otherwise."""
  mu_1, mu_2 = np.atleast_1d(mu_1), np.atleast_1d(mu_2)
  sigma_1, sigma_2 = np.atleast_2d(sigma_1), np.atleast_2d(sigma_2)
  if mu_1.shape != mu_2.shape or sigma_1.shape != sigma_2.shape:
    raise ValueError(f"statistics of different sizes: means {mu_1.shape} and "
                     f"{mu_2.shape}, covariances {sigma_1.shape} and {sigma_2.shape}")
  diff = mu_1 - mu_2
  root = scipy.linalg.sqrtm(sigma_1.dot(sigma_2))
  if not np.isfinite(root).all():
    offset = np.eye(sigma_1.shape[0]) * eps
    root = scipy.linalg.sqrtm((sigma_1 + offset).dot(sigma_2 + offset))
  if np.iscomplexobj(root):
    if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
      raise ValueError(f"the covariances' product has a square root with an imaginary "
                       f"component of {np.max(np.abs(root.imag)):.3g}")
    root = root.real
  return float(diff.dot(diff) + np.trace(sigma_1) + np.trace(sigma_2)
               - 2.0 * np.trace(root))


def fid(features_1: np.ndarray, features_2: np.ndarray) -> float:
  """FID: the Frechet distance of the Gaussians fitted to two feature sets."""
  return frechet_distance(*feature_statistics(features_1), *feature_statistics(features_2))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """KID's kernel k(x, y) = (x.y / D + 1)^3 for all rows of x [n, D] and y [m, D]."""
  return (x.dot(y.T) / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """The unbiased estimate of MMD^2 between the distributions of x [m, D] and
  y [n, D] with the cubic polynomial kernel (Binkowski et al., 2018): the
  within-set means leave out the diagonal."""
  m, n = x.shape[0], y.shape[0]
  if m < 2 or n < 2:
    raise ValueError(f"the unbiased MMD needs 2+ samples per set, got {m} and {n}")
  k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
  return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
               + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
               - 2.0 * k_xy.mean())


def kid(features_1: np.ndarray, features_2: np.ndarray, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> Dict[str, float]:
  """KID: the unbiased MMD^2 over `num_subsets` random subsets of each set, each of
  min(subset_size, both set sizes) rows drawn without replacement (seeded):
  {"mean", "std", "subset_size", "num_subsets"}."""
  x = np.asarray(features_1, np.float64)
  y = np.asarray(features_2, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"need two feature sets [N, D] of one D, got {x.shape} and {y.shape}")
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be at least 1, got {num_subsets}")
  size = min(subset_size, x.shape[0], y.shape[0])
  rng = np.random.default_rng(seed)
  values = np.array([mmd2_unbiased(x[rng.choice(x.shape[0], size, replace=False)],
                                   y[rng.choice(y.shape[0], size, replace=False)])
                     for _ in range(num_subsets)])
  return {"mean": float(values.mean()), "std": float(values.std()),
          "subset_size": int(size), "num_subsets": int(num_subsets)}


def mean_pair_distance(embeddings_1: np.ndarray, embeddings_2: np.ndarray) -> float:
  """MD (Table 4, identity consistency): the mean over pairs i of the L2 distance
  between the L2-normalised embeddings of row i of each set (in [0, 2])."""
  a, b = features_lib.l2_normalize(embeddings_1), features_lib.l2_normalize(embeddings_2)
  if a.shape != b.shape:
    raise ValueError(f"MD needs paired embeddings of one shape, got {a.shape} and {b.shape}")
  return float(np.linalg.norm(a - b, axis=1).mean())


def cross_modality_similarities(rgb: np.ndarray, rgb_ids: np.ndarray, ir: np.ndarray,
                                ir_ids: np.ndarray) -> Dict[str, np.ndarray]:
  """Fig. 4: the cosine similarity of every (RGB, IR) pair of embeddings,
  {"intra": pairs of one person, "inter": pairs of two}."""
  similarity = features_lib.l2_normalize(rgb).dot(features_lib.l2_normalize(ir).T)
  same = np.asarray(rgb_ids)[:, None] == np.asarray(ir_ids)[None, :]
  return {"intra": similarity[same], "inter": similarity[~same]}


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
  """The area under the ROC curve of scores that should rank `positives` above
  `negatives`: P(positive > negative) + P(tie) / 2 (Mann-Whitney, ties at their
  mean rank)."""
  positives, negatives = np.ravel(positives), np.ravel(negatives)
  if positives.size == 0 or negatives.size == 0:
    raise ValueError(f"AUC needs both classes, got {positives.size} positives and "
                     f"{negatives.size} negatives")
  ranks = scipy.stats.rankdata(np.concatenate([positives, negatives]))
  n_pos, n_neg = positives.size, negatives.size
  return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
