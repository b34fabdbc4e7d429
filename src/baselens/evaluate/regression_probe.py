"""Regression probe: PCA + ridge onto continuous per-well targets (HEST protocol).

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026)
(Appendix C.3) scores representations on HEST-1k by standardizing the embeddings, reducing
them to 256 dimensions by PCA, fitting a ridge regression onto the targets and reporting
the per-target Pearson correlation on held-out data, averaged over folds and targets. The HEST benchmark code (mahmoodlab/HEST, ``trainer.py``) fixes the
ridge penalty to ``alpha = 100 / (n_components · n_targets)`` (no inner search) and fits
without intercept on the standardized, PCA-reduced features.

This module applies that protocol to any continuous per-well target table (cell health
readouts, the ground-truth latent phenotype ``GT_*`` or ``n_cells`` of a synthetic
screen, ...), with the grouped folds of :mod:`baselens.evaluate.splits` as batch levels:

1. per fold, ``StandardScaler`` then ``PCA(n_components = min(256, n_train − 1, d))``
   fitted on the training wells only (deterministic full SVD);
2. ridge: ``alpha="hest"`` (default) uses HEST's fixed penalty; a float uses that
   penalty; ``alpha="cv"`` picks it per target by efficient leave-one-out CV on the
   training wells (``RidgeCV``, alphas 10^-3…10^4; not grouped). The intercept is
   fitted (the PCA scores are centred on the training wells, so the slopes equal HEST's
   no-intercept fit; the intercept only shifts predictions, which Pearson ignores);
3. Pearson r per target on the test wells (NaN when a target or prediction is constant
   in the fold; such rows are dropped).

Folds never train on a test well's own perturbation when a perturbation has several
wells (``group``, default ``Metadata_Perturbation``; the "not same compound" rule of
:mod:`baselens.evaluate.splits`): otherwise replicate wells in training let the probe
predict a well's readout by recognising its perturbation. ``scores.attrs["fold_plan"]``
says how each level's folds were formed.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

from baselens.evaluate.knn_probe import item_ids
from baselens.evaluate.splits import PROBE_LEVELS, describe_fold_plan, split_levels

__all__ = ["regression_probe", "pearson_columns"]

CV_ALPHAS = np.logspace(-3, 4, 15)


def pearson_columns(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``y`` with the same column of ``p`` (NaN if constant)."""
    y = y - y.mean(axis=0)
    p = p - p.mean(axis=0)
    den = np.sqrt((y * y).sum(axis=0) * (p * p).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (y * p).sum(axis=0) / den
    return np.where(den > 1e-12 * max(len(y), 1), r, np.nan)


def regression_probe(
    profiles: pd.DataFrame,
    features: list[str],
    targets: Sequence[str] | pd.DataFrame,
    *,
    levels: Iterable[str] = PROBE_LEVELS,
    n_components: int = 256,
    alpha: float | str = "hest",
    n_splits: int = 5,
    exclude_controls: bool = False,
    seed: int = 0,
    group: str | None = "Metadata_Perturbation",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score PCA + ridge prediction of continuous targets per batch level and fold.

    Parameters
    ----------
    profiles : DataFrame
        Well profiles with the feature columns and the grouping columns of the levels.
    features : list of str
        Feature columns (the representation).
    targets : list of str or DataFrame
        Target column names in ``profiles``, or a DataFrame with one row per profile row
        (same order/index) holding the target columns. Rows with a missing target value
        are dropped (for all targets; counted in ``scores.attrs["dropped"]``).
    levels : iterable of str
        Batch levels (:mod:`baselens.evaluate.splits`); unformable ones are skipped with
        a reason in ``scores.attrs["skipped_levels"]``.
    n_components : int
        PCA dimensions cap (256 in HEST); the fold uses ``min(n_components, n_train − 1,
        d)``.
    alpha : "hest", "cv" or float
        Ridge penalty (see module docstring).
    exclude_controls : bool
        Drop ``negcon``/``poscon`` wells (default keeps them: controls are valid wells
        for a per-well readout).
    group : str or None
        Perturbation column: when present and some perturbation has several wells,
        folds hold out whole perturbations at every level (grouped levels cross their
        own grouping with them). ``None`` splits wells without it.

    Returns
    -------
    scores : DataFrame
        ``metric, value, n, fold, batch_level, target``: ``pearson:{target}`` per fold
        (n = test wells) and ``pearson`` — the mean over targets of that fold (n = targets;
        ``target = ""``).
        ``attrs``: ``fold_plan`` (level → one line), ``dropped`` (wells without a
        target value), ``skipped_levels``.
    per_item : DataFrame
        ``perturbation, metric, value, batch_level, fold``:

        * ``pearson`` per target (the target name is in the ``perturbation`` column, as
          the results contract's item column) averaged over that level's folds;
        * ``abs_error`` per held-out well (``perturbation`` = the well id of
          :func:`baselens.evaluate.knn_probe.item_ids`, ``"<plate>/<well>"``; ``fold`` =
          its test fold): ``mean_t |y_t − ŷ_t| / sd_t``, the absolute prediction error
          averaged over targets, each in units of its standard deviation over the scored
          wells (the same scale for every representation, so methods pair over wells;
          lower is better).
    """
    df = profiles
    if isinstance(targets, pd.DataFrame):
        tnames = [str(c) for c in targets.columns]
        tvals = targets.to_numpy(dtype=np.float64)
        if len(tvals) != len(df):
            raise ValueError(f"targets has {len(tvals)} rows, profiles {len(df)}")
    else:
        tnames = list(targets)
        missing = [t for t in tnames if t not in df.columns]
        if missing:
            raise ValueError(f"target column(s) {missing} not in profiles")
        tvals = df[tnames].to_numpy(dtype=np.float64)
    if not tnames:
        raise ValueError("no targets given")
    has_target = np.isfinite(tvals).all(axis=1)
    keep = np.ones(len(df), dtype=bool)
    if exclude_controls and "Metadata_ControlType" in df.columns:
        keep &= ~df["Metadata_ControlType"].astype(str).isin(["negcon", "poscon"]).to_numpy()
    dropped = []
    if (keep & ~has_target).any():
        dropped.append({"what": "wells", "n_removed": int((keep & ~has_target).sum()),
                        "n_kept": int((keep & has_target).sum()),
                        "reason": "no value for some regression target "
                                  f"({', '.join(tnames[:3])}{' …' if len(tnames) > 3 else ''})"})
    keep &= has_target
    df = df[keep].reset_index(drop=True)
    y = tvals[keep]
    x = df[features].to_numpy(dtype=np.float64)
    if len(df) < 4:
        raise ValueError(f"regression probe needs ≥ 4 wells with targets, got {len(df)}")
    groups = group_col = None
    if group is not None and group in df.columns:
        g = df[group].astype(str).to_numpy()
        if len(np.unique(g)) < len(g):  # some perturbation has several wells
            groups, group_col = g, group
    folds, skipped = split_levels(df, levels, n_splits=n_splits, seed=seed, groups=groups)
    ids = item_ids(df)
    with np.errstate(invalid="ignore"):
        scale = np.nanstd(y, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    rows, per_rows = [], []
    plan: dict[str, str] = {}
    for level, lf in folds.items():
        plan[level] = describe_fold_plan(level, lf, group_col, len(df))
        fold_r = []
        for f in lf:
            if len(f.train) < 3 or len(f.test) < 3:
                continue
            pred = _fit_predict(x[f.train], y[f.train], x[f.test], n_components, alpha)
            r = pearson_columns(y[f.test], pred)
            fold_r.append(r)
            err = (np.abs(y[f.test] - pred) / scale).mean(axis=1)
            per_rows.append(pd.DataFrame({"perturbation": ids[f.test], "metric": "abs_error",
                                          "value": err, "batch_level": level, "fold": f.fold}))
            for t, v in zip(tnames, r):
                if np.isfinite(v):
                    rows.append(dict(metric=f"pearson:{t}", value=float(v), n=len(f.test),
                                     fold=f.fold, batch_level=level, target=t))
            if np.isfinite(r).any():
                rows.append(dict(metric="pearson", value=float(np.nanmean(r)),
                                 n=int(np.isfinite(r).sum()), fold=f.fold, batch_level=level,
                                 target=""))
        if fold_r:
            with warnings.catch_warnings():  # all-NaN target columns
                warnings.simplefilter("ignore", RuntimeWarning)
                mean_r = np.nanmean(np.vstack(fold_r), axis=0)
            ok = np.isfinite(mean_r)
            per_rows.append(pd.DataFrame({"perturbation": np.asarray(tnames)[ok],
                                          "metric": "pearson", "value": mean_r[ok],
                                          "batch_level": level, "fold": 0}))
    scores = pd.DataFrame(rows, columns=["metric", "value", "n", "fold", "batch_level", "target"])
    per = (pd.concat(per_rows, ignore_index=True) if per_rows
           else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level", "fold"]))
    scores.attrs["skipped_levels"] = skipped
    scores.attrs["fold_plan"] = plan
    scores.attrs["dropped"] = dropped
    return scores, per


def _pca_scores(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Project train ``a`` and test ``b`` on the top-``k`` principal axes of ``a``.

    With more features than wells (network layers), the axes come from the eigenvectors
    of the n×n Gram matrix: same subspace as ``PCA(svd_solver="full")``, so the ridge fit
    is the same, at a fraction of the cost (measured 7.7 → 1.5 s per 2048-d layer on the
    demo's 25 folds). Deterministic either way.
    """
    mu = a.mean(axis=0)
    a, b = a - mu, b - mu
    if a.shape[1] <= a.shape[0]:
        pca = PCA(n_components=k, svd_solver="full").fit(a)
        return pca.transform(a), pca.transform(b)
    gram = a @ a.T
    vals, vecs = np.linalg.eigh(gram)
    top = np.argsort(vals)[::-1][:k]
    vals, vecs = np.clip(vals[top], 1e-12, None), vecs[:, top]
    # the axes are comps = aᵀ·vecs/√vals (d × k, orthonormal); the scores follow without
    # forming them: a·comps = G·vecs/√vals = vecs·√vals, b·comps = (b·aᵀ)·vecs/√vals
    return vecs * np.sqrt(vals), (b @ a.T) @ vecs / np.sqrt(vals)


def _fit_predict(x_tr, y_tr, x_te, n_components, alpha):
    scaler = StandardScaler().fit(x_tr)
    a, b = scaler.transform(x_tr), scaler.transform(x_te)
    a, b = np.nan_to_num(a), np.nan_to_num(b)
    k = int(min(n_components, len(a) - 1, a.shape[1]))
    a, b = _pca_scores(a, b, k)
    if alpha == "hest":
        reg = Ridge(alpha=100.0 / (k * y_tr.shape[1]))
    elif alpha == "cv":
        reg = RidgeCV(alphas=CV_ALPHAS, alpha_per_target=True)
    else:
        reg = Ridge(alpha=float(alpha))
    reg.fit(a, y_tr)
    return np.asarray(reg.predict(b)).reshape(len(b), -1)
