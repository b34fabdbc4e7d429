"""Dimensionality and collapse of a representation (arXiv 2603.13377, §5.2, Fig. 16).

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) found
that representational collapse — a few principal components carrying most of the variance —
coincides with weak biological recall (ResNets), while higher-dimensional embeddings (ViTs,
pixel baselines) recall more. It is a sanity check,
not a proof of biological content.

What is measured
----------------
The **normalized well profiles** of a representation (every well, controls included):
they are what every task consumes, and with hundreds of wells the spectrum is not
truncated by the ~100 perturbations a screen may hold. Non-finite values count as 0
(the negative-control mean). Features are centered (not rescaled: the profile stage
already normalized them), and the singular values ``s_1 ≥ … ≥ s_r`` of the centered
``n × d`` matrix come from a full, deterministic eigendecomposition of its smaller Gram
matrix (no randomized solver; :func:`singular_values`).
With ``λ_i = s_i² / (n − 1)`` the PCA variances:

* ``explained_variance_ratio`` of component ``k``: ``λ_k / Σλ``, for
  ``k = 1 … min(n, d, 64)``; ``cumulative_explained_variance``: its running sum;
* ``effective_rank`` (Roy & Vetterli 2007, "The effective rank: a measure of effective
  dimensionality", EUSIPCO): ``exp(H(p))`` with ``p_i = s_i / Σ s_j`` the normalized
  *singular values* and ``H(p) = −Σ p_i log p_i`` (0 log 0 = 0); between 1 and the rank;
* ``participation_ratio``: ``(Σλ)² / Σλ²``; between 1 and the rank;
* ``n_components_90``: the smallest ``k`` with cumulative explained variance ≥ 0.9;
* ``top1_variance``: ``λ_1 / Σλ`` — near 1 means collapse onto one direction.

The scalar metrics carry ``component = 0``. A representation with no variance gets NaN
(and ``n_components_90 = 0``). Squared singular values below
``10 · max(n, d) · eps · s_1²`` (rounding) count as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["DIMENSIONALITY_COLUMNS", "MAX_COMPONENTS", "dimensionality", "spectrum_metrics"]

DIMENSIONALITY_COLUMNS = ["method", "method_kind", "layer", "metric", "component", "value"]
MAX_COMPONENTS = 64


def singular_values(x: np.ndarray) -> np.ndarray:
    """Singular values of the column-centered matrix, from the full symmetric
    eigendecomposition (LAPACK ``syevd``, deterministic) of the smaller Gram matrix
    ``Xcᵀ Xc`` or ``Xc Xcᵀ``: the squared singular values, 4–8× faster than an SVD of a
    wide matrix and equal to it up to rounding (~1e-8 relative on the smallest values)."""
    x = np.asarray(x, dtype=np.float64)
    x = np.where(np.isfinite(x), x, 0.0)
    if x.size == 0:
        return np.zeros(0)
    xc = x - x.mean(axis=0, keepdims=True)
    n, d = xc.shape
    gram = xc @ xc.T if d > n else xc.T @ xc  # the smaller of the two Gram matrices
    lam = np.linalg.eigvalsh(gram)[::-1]
    if not len(lam) or lam[0] <= 0:
        return np.zeros(len(lam))
    # rounding of the Gram eigenvalues is ~ max(n, d) * eps * λ1: below that is zero
    lam = np.where(lam > 10 * max(n, d) * np.finfo(float).eps * lam[0], lam, 0.0)
    return np.sqrt(lam)


def spectrum_metrics(s: Sequence[float]) -> dict[str, float]:
    """Scalar metrics of a singular-value spectrum (module docstring)."""
    s = np.asarray(s, dtype=np.float64)
    s = s[s > 0]
    if len(s) == 0:
        return {"effective_rank": float("nan"), "participation_ratio": float("nan"),
                "n_components_90": 0.0, "top1_variance": float("nan")}
    p = s / s.sum()
    erank = float(np.exp(-np.sum(p * np.log(p))))
    lam = s ** 2
    pr = float(lam.sum() ** 2 / np.sum(lam ** 2))
    cum = np.cumsum(lam) / lam.sum()
    n90 = float(int(np.searchsorted(cum, 0.9 - 1e-12)) + 1)
    return {"effective_rank": erank, "participation_ratio": pr, "n_components_90": n90,
            "top1_variance": float(lam[0] / lam.sum())}


def _rows_for(method: str, kind: str, layer: str, x: np.ndarray,
              max_components: int) -> list[list]:
    s = singular_values(x)
    lam = s ** 2
    total = lam.sum()
    rows = []
    k = min(x.shape[0], x.shape[1], max_components) if x.ndim == 2 else 0
    if total > 0:
        ratio = lam[:k] / total
        cum = np.cumsum(lam)[:k] / total
        for i in range(len(ratio)):
            rows.append([method, kind, layer, "explained_variance_ratio", i + 1, float(ratio[i])])
        for i in range(len(cum)):
            rows.append([method, kind, layer, "cumulative_explained_variance", i + 1,
                         float(cum[i])])
    for name, v in spectrum_metrics(s).items():
        rows.append([method, kind, layer, name, 0, v])
    return rows


def dimensionality(profile_sets: Sequence, *,
                   max_components: int = MAX_COMPONENTS) -> pd.DataFrame:
    """Long table ``method, method_kind, layer, metric, component, value`` for every
    profile set (objects with ``method, method_kind, layer, profiles, features``)."""
    rows = []
    for ps in profile_sets:
        x = ps.profiles[list(ps.features)].to_numpy(dtype=np.float64)
        rows += _rows_for(ps.method, ps.method_kind, ps.layer, x, max_components)
    out = pd.DataFrame(rows, columns=DIMENSIONALITY_COLUMNS)
    out["component"] = out["component"].astype("int64")
    out["value"] = out["value"].astype(np.float64)
    return out
