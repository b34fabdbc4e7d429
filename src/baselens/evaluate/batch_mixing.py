"""How much batch remains: batch signal in the representation of negative controls.

Computed on negative-control wells only (``Metadata_ControlType == "negcon"``: they differ
by nothing but technical factors), for each batch attribute present:

=================  =========================  ======================================
``batch_level``    label predicted / mixed    reading
=================  =========================  ======================================
``NSP``            ``Metadata_Plate``         plate identity still encoded
``NSB``            ``Metadata_Batch``         batch identity still encoded
``NSS``            ``Metadata_Source``        source (laboratory) identity encoded
``NSL``            ``Metadata_Well``          well position (layout) encoded
=================  =========================  ======================================

(``batch_level`` names the level whose restriction removes that attribute, so these rows
sit next to the task scores they explain.) Metrics:

* ``batch_classification_accuracy`` — stratified k-fold (default 5) cross-validated
  accuracy of a kNN (k = 5, cosine) or logistic-regression classifier predicting the label;
  ``groups=`` (e.g. ``"Metadata_Plate"`` when predicting the batch) uses StratifiedGroupKFold
  so a held-out plate is never seen. ``batch_classification_chance`` is the majority-class
  share (what a classifier gets without signal). Higher = more batch left.
* ``silhouette_batch`` — ``sklearn.metrics.silhouette_score`` of the label (cosine
  distance), in [-1, 1]; > 0: the label clusters (batch left), ~0: mixed.
* ``ilisi`` — median integration LISI (Korsunsky et al. 2019, Harmony; scib ``ilisi_graph``
  before scaling): for every profile, Gaussian weights on its ``3·perplexity`` nearest
  neighbours (Euclidean) with the bandwidth chosen by bisection so the weights' entropy is
  ``log(perplexity)``; LISI = 1 / Σ_b p_b² (inverse Simpson index of the neighbours'
  labels). 1 = neighbours from one label only (batch left), B = perfectly mixed over B
  labels. ``ilisi_scaled`` = (median LISI − 1)/(B − 1) ∈ [0, 1] (scib-metrics' scaling;
  1 = mixed). ``perplexity`` is reduced to ``(n − 1)/3`` on small sets.

Signature and contract::

    scores, per_perturbation = batch_mixing(profiles, features, *,
        labels=("Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"),
        classifier="knn", n_splits=5, groups=None, perplexity=30, seed=0)

* ``scores``: ``metric, value, n, batch_level`` (``n`` = negative-control wells);
* ``per_perturbation``: empty (``perturbation, metric, value, batch_level``); the metrics
  describe the control population, not perturbations.

Labels with a single value (or a class with fewer members than ``n_splits`` for the
classifier) are skipped and reported in ``scores.attrs["skipped_batch_levels"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from baselens.evaluate.batch_levels import report_skipped

LABEL_LEVEL = {"Metadata_Plate": "NSP", "Metadata_Batch": "NSB", "Metadata_Source": "NSS",
               "Metadata_Well": "NSL"}


def simpson_index(distances: np.ndarray, neighbor_labels: np.ndarray, perplexity: float,
                  tol: float = 1e-5, n_iter: int = 50) -> np.ndarray:
    """Simpson index per row (LISI = 1/Simpson), Harmony / lisi ``compute_simpson``.

    ``distances``, ``neighbor_labels``: ``(n, k)`` distances to and integer labels of each
    row's k nearest neighbours (self excluded). Bandwidth by bisection on ``beta`` (start 1)
    until the entropy of ``P ∝ exp(-beta·d)`` is within ``tol`` of ``log(perplexity)``.
    """
    d = np.asarray(distances, dtype=np.float64)
    n = d.shape[0]
    log_u = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)

    def entropy(beta):
        p = np.exp(-d * beta[:, None])
        s = p.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(s > 0, np.log(s) + beta * (d * p).sum(axis=1) / s, 0.0)
            p = np.where(s[:, None] > 0, p / s[:, None], 0.0)
        return h, p

    h, p = entropy(beta)
    for _ in range(n_iter):
        diff = h - log_u
        act = np.abs(diff) >= tol
        if not act.any():
            break
        up = act & (diff > 0)
        down = act & (diff <= 0)
        lo[up] = beta[up]
        beta[up] = np.where(np.isfinite(hi[up]), (beta[up] + hi[up]) / 2, beta[up] * 2)
        hi[down] = beta[down]
        beta[down] = np.where(np.isfinite(lo[down]), (beta[down] + lo[down]) / 2, beta[down] / 2)
        h_new, p_new = entropy(beta)
        h = np.where(act, h_new, h)
        p = np.where(act[:, None], p_new, p)
    labels = np.asarray(neighbor_labels)
    simpson = np.zeros(n)
    for lab in np.unique(labels):
        w = np.where(labels == lab, p, 0.0).sum(axis=1)
        simpson += w * w
    simpson[h == 0] = -1.0  # Harmony's marker for degenerate rows
    return simpson


def lisi(x: np.ndarray, labels, perplexity: float = 30) -> np.ndarray:
    """LISI per row (Harmony ``compute_lisi``): k = 3·perplexity Euclidean neighbours."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = int(min(3 * perplexity, n - 1))
    if k < 1:
        raise ValueError("LISI needs at least 2 profiles")
    perplexity = min(perplexity, k / 3)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    dist, idx = nn.kneighbors(x)
    # drop each row's self match (not necessarily column 0 when duplicates tie)
    keep = idx != np.arange(n)[:, None]
    keep[keep.sum(axis=1) > k, -1] = False
    dist = dist[keep].reshape(n, k)
    idx = idx[keep].reshape(n, k)
    codes = pd.factorize(pd.Series(labels).astype(str))[0]
    return 1.0 / simpson_index(dist, codes[idx], perplexity)


def ilisi(x: np.ndarray, labels, perplexity: float = 30) -> tuple[float, float]:
    """Median iLISI and its scaled form (median − 1)/(B − 1)."""
    values = lisi(x, labels, perplexity)
    b = pd.Series(labels).nunique()
    med = float(np.median(values))
    return med, (med - 1.0) / (b - 1.0) if b > 1 else float("nan")


def batch_mixing(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    labels=tuple(LABEL_LEVEL),
    classifier: str = "knn",
    n_splits: int = 5,
    groups: str | None = None,
    perplexity: float = 30,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Batch signal left on negative controls (see the module docstring for the contract)."""
    if classifier not in ("knn", "logistic"):
        raise ValueError(f"classifier must be 'knn' or 'logistic'; got {classifier!r}")
    neg = profiles[profiles["Metadata_ControlType"].astype(str) == "negcon"]
    if len(neg) < 4:
        raise ValueError(f"batch mixing needs negative-control wells; found {len(neg)}")
    x = neg[features].to_numpy(dtype=np.float64)
    rows, skipped = [], {}
    for col in labels:
        lv = LABEL_LEVEL.get(col, col)
        if col not in neg.columns:
            skipped[lv] = f"column {col} is missing"
            continue
        y = neg[col].astype(str).to_numpy()
        n_lab = len(set(y))
        if n_lab < 2:
            skipped[lv] = f"a single {col.removeprefix('Metadata_').lower()} among negative controls"
            continue
        add = lambda m, v: rows.append({"metric": m, "value": float(v), "n": len(neg), "batch_level": lv})  # noqa: E731
        min_class = pd.Series(y).value_counts().min()
        if min_class >= n_splits:
            if classifier == "knn":
                model = KNeighborsClassifier(n_neighbors=min(5, len(y) - 1), metric="cosine")
            else:
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            if groups is not None and groups != col:
                cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                acc = cross_val_score(model, x, y, cv=cv, groups=neg[groups].astype(str).to_numpy())
            else:
                cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                acc = cross_val_score(model, x, y, cv=cv)
            add("batch_classification_accuracy", np.mean(acc))
            add("batch_classification_chance", pd.Series(y).value_counts(normalize=True).max())
        else:
            skipped[f"{lv}/batch_classification_accuracy"] = (
                f"smallest {col} has {min_class} negative controls < n_splits={n_splits}")
        if n_lab < len(y):
            add("silhouette_batch", silhouette_score(x, y, metric="cosine"))
        med, scaled = ilisi(x, y, perplexity)
        add("ilisi", med)
        add("ilisi_scaled", scaled)
    scores = pd.DataFrame(rows, columns=["metric", "value", "n", "batch_level"])
    report_skipped(scores, skipped, "batch_mixing")
    return scores, pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"])
