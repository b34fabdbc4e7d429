"""Gene-expression probe: PCA-256 + ridge per gene, patient-stratified (HEST-Benchmark).

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) (§4.2,
Appendix C.3) scores tissue representations on HEST-1k with the HEST-Benchmark protocol
(Jaume et al. 2024; code ``mahmoodlab/HEST``, ``src/hest/bench/benchmark.py`` and
``trainer.py``): per train/test split,

1. ``StandardScaler`` then ``PCA(n_components=256)``, both fitted on the training spots
   only (``Pipeline([scaler, PCA]).fit_transform(X_train)``, ``.transform(X_test)``);
2. one ridge regression onto all target genes with the fixed penalty
   ``alpha = 100 / (k · G)`` (``k`` PCA dimensions, ``G`` genes; no inner search) and
   ``fit_intercept=False``; or XGBoost (``n_estimators=100, learning_rate=0.1,
   max_depth=3, min_child_weight=1, subsample=0.8, colsample_bytree=0.8, reg_lambda=1``)
   on the same PCA scores;
3. the Pearson correlation of every gene's prediction with its measured (log1p)
   expression on the test spots; a split's score is the mean over genes, a task's the
   mean over splits.

The splits are *patient-stratified*: no patient contributes spots to both sides (HEST's
own ``splits/train_i.csv``/``test_i.csv`` when the dataset has them; otherwise
:func:`patient_folds`). Adjacent spots overlap on the slide, so a spot-level split would
leak.

Details fixed here (each leaves HEST's numbers unchanged or is forced by small data):

* ``k = min(n_components, n_train, d)`` — sklearn's PCA cannot return more components
  than training spots or features. The penalty uses this ``k``.
* PCA is exact and deterministic (eigendecomposition of the smaller of ``AᵀA`` and
  ``AAᵀ`` of the centred, standardized training matrix ``A``; HEST's ``PCA(random_state)``
  is exact for its sizes too). Components whose training variance is numerically zero
  (≤ 1e-10 × the largest) are left out: their training scores are 0, so their ridge
  coefficient is 0 and the predictions are the same with or without them.
* The ridge is solved in closed form (HEST: ``solver="lsqr"``, an iterative solver of the
  same problem). Without an intercept and with the PCA scores centred on the training
  spots, the slopes equal those of a fit with intercept; the missing offset shifts every
  prediction of a gene equally, which Pearson ignores.
* A gene that is constant on a test split (or predicted as a constant) has no Pearson r
  (NaN); the split's mean skips it and the count of genes averaged is reported.

Count-matched correlation (arXiv 2603.13377 §5.3): "Stronger evidence would require matching
analysis (conditioned on cell count)". :func:`count_matched_pearson` correlates the
out-of-fold predictions with the targets *within* strata of spots that have the same
number of cells, so a representation that only encodes cell count scores ≈ 0 there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from baselens.evaluate.regression_probe import pearson_columns

__all__ = [
    "HEST_XGB_PARAMS",
    "GeneExpressionResult",
    "count_matched_pearson",
    "count_strata",
    "gene_expression_probe",
    "hest_alpha",
    "patient_folds",
]

#: HEST-Benchmark's XGBoost settings (``trainer.py``, ``method="xgboost"``).
HEST_XGB_PARAMS = dict(n_estimators=100, learning_rate=0.1, max_depth=3, min_child_weight=1,
                       subsample=0.8, colsample_bytree=0.8, gamma=0.0, reg_alpha=0.0,
                       reg_lambda=1.0)

#: Relative eigenvalue below which a principal axis carries no training variance.
_NULL_EIG = 1e-10


def hest_alpha(n_components: int, n_targets: int) -> float:
    """HEST-Benchmark's fixed ridge penalty ``alpha = 100 / (n_components · n_targets)``."""
    return 100.0 / (int(n_components) * int(n_targets))


# --------------------------------------------------------------------------- splits
def patient_folds(groups: Sequence, *, n_splits: int = 5,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-stratified folds: every patient's spots are on one side of each split.

    With at most ``n_splits`` patients: leave-one-patient-out (one fold per patient, in
    sorted order). With more: ``GroupKFold(n_splits)`` over the patients after a seeded
    shuffle of their names (GroupKFold balances fold sizes deterministically; the shuffle
    makes the assignment depend on ``seed``, not on the names' sort order).

    Returns a list of ``(train, test)`` sorted positional index arrays.

    Raises
    ------
    ValueError
        Fewer than two patients (nothing to hold out).
    """
    from sklearn.model_selection import GroupKFold

    g = np.asarray(groups).astype(str)
    uniq = np.unique(g)
    if len(uniq) < 2:
        raise ValueError(f"{len(uniq)} patient(s) ({', '.join(uniq[:3])}): a patient-stratified "
                         "split needs at least 2 patients; give a dataset with more samples")
    if len(uniq) <= n_splits:
        return [(np.flatnonzero(g != p), np.flatnonzero(g == p)) for p in uniq]
    rng = np.random.default_rng(seed)
    code = {p: i for i, p in enumerate(rng.permutation(uniq))}
    coded = np.array([code[p] for p in g])
    idx = np.arange(len(g))
    return [(np.sort(tr), np.sort(te))
            for tr, te in GroupKFold(n_splits=n_splits).split(idx, groups=coded)]


def _check_splits(splits, groups: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, (tr, te) in enumerate(splits):
        tr, te = np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)
        if len(tr) == 0 or len(te) == 0:
            raise ValueError(f"split {i}: {len(tr)} training and {len(te)} test spots; "
                             "both sides need spots")
        if tr.min() < 0 or te.min() < 0 or max(tr.max(), te.max()) >= n:
            raise ValueError(f"split {i}: indices outside 0..{n - 1}")
        shared = np.intersect1d(groups[tr], groups[te])
        if len(shared):
            raise ValueError(f"split {i}: patient(s) {', '.join(map(str, shared[:5]))} on both "
                             "the training and the test side; splits must be patient-stratified")
        out.append((np.sort(tr), np.sort(te)))
    if not out:
        raise ValueError("no split given")
    return out


# --------------------------------------------------------------------------- PCA + regression
def _standardize(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's StandardScaler fitted on ``a`` (a constant feature keeps scale 1)."""
    mu = a.mean(axis=0)
    sd = a.std(axis=0)
    sd = np.where(sd < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mu), 1.0), 1.0, sd)
    return (a - mu) / sd, (b - mu) / sd


def _pca_scores(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``a`` (train) and ``b`` (test) on the top-``k`` principal axes of ``a``.

    Exact: eigenvectors of ``AᵀA`` (d ≤ n) or, via ``AAᵀ`` (d > n), the same axes
    ``Aᵀu/σ``. Axes with eigenvalue ≤ 1e-10 × the largest are dropped (module docstring).
    """
    mu = a.mean(axis=0)
    a, b = a - mu, b - mu
    n, d = a.shape
    if d <= n:
        vals, vecs = np.linalg.eigh(a.T @ a)
        top = np.argsort(vals)[::-1][:k]
        vals, comps = vals[top], vecs[:, top]
    else:
        vals, vecs = np.linalg.eigh(a @ a.T)
        top = np.argsort(vals)[::-1][:k]
        vals, vecs = vals[top], vecs[:, top]
        comps = None
    keep = vals > _NULL_EIG * max(float(vals[0]) if len(vals) else 0.0, 1e-300)
    if comps is None:
        comps = (a.T @ vecs[:, keep]) / np.sqrt(vals[keep])
    else:
        comps = comps[:, keep]
    return a @ comps, b @ comps


def _ridge_no_intercept(a: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """``argmin_W ‖Y − AW‖² + alpha ‖W‖²`` = ``(AᵀA + alpha I)⁻¹ AᵀY``."""
    k = a.shape[1]
    return np.linalg.solve(a.T @ a + alpha * np.eye(k), a.T @ y)


def _fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, *, n_components: int,
                 model: str, alpha, seed: int, xgb_params: dict | None,
                 n_jobs: int) -> tuple[np.ndarray, int, float]:
    a, b = _standardize(x_tr, x_te)
    k = int(min(n_components, a.shape[0], a.shape[1]))
    a, b = _pca_scores(a, b, k)
    n_genes = y_tr.shape[1]
    if model == "ridge":
        if isinstance(alpha, str):
            if alpha != "hest":
                raise ValueError(f"alpha must be 'hest' or a number, got {alpha!r}")
            lam = hest_alpha(k, n_genes)
        else:
            lam = float(alpha)
        if a.shape[1] == 0:  # every training spot identical: nothing to regress on
            return np.zeros((len(b), n_genes)), k, lam
        w = _ridge_no_intercept(a, y_tr, lam)
        return b @ w, k, lam
    if model == "xgboost":
        import xgboost as xgb

        params = {**HEST_XGB_PARAMS, **(xgb_params or {})}
        reg = xgb.XGBRegressor(**params, random_state=seed, n_jobs=n_jobs)
        reg.fit(a, y_tr)
        return np.asarray(reg.predict(b), dtype=np.float64).reshape(len(b), n_genes), k, \
            float("nan")
    raise ValueError(f"model must be 'ridge' or 'xgboost', got {model!r}")


# --------------------------------------------------------------------------- count matching
def count_strata(counts: np.ndarray, *, size: int = 2) -> np.ndarray:
    """Stratum label per spot: spots matched on (nearly) the same cell count.

    Spots are sorted by count and cut into consecutive strata of at least ``size`` spots;
    tied counts are never split, so a count shared by ``size`` or more spots is its own
    stratum (exact matching) and rarer counts are pooled with their nearest neighbours
    (e.g. with ``size = 2``, a spot of 41 cells with the one of 42). Small strata keep the
    count difference within a stratum small: a prediction that depends on count alone
    then has (almost) no within-stratum variation left to correlate with the target.
    Labels are ``0 … n_strata − 1`` in increasing count.
    """
    c = np.asarray(counts, dtype=np.float64)
    if len(c) == 0:
        return np.zeros(0, dtype=np.int64)
    uniq, inv, n_per = np.unique(c, return_inverse=True, return_counts=True)
    label_of = np.empty(len(uniq), dtype=np.int64)
    label, filled = 0, 0
    for i, k in enumerate(n_per):
        if filled >= size:  # the current stratum is full: start the next
            label, filled = label + 1, 0
        label_of[i] = label
        filled += int(k)
    if filled < size and label > 0:  # a short last stratum joins the one before
        label_of[label_of == label] = label - 1
    return label_of[inv]


def count_matched_pearson(y: np.ndarray, pred: np.ndarray, counts: np.ndarray, *,
                          stratum_size: int = 2) -> np.ndarray:
    """Pearson r of each column of ``y`` and ``pred`` *within* cell-count strata.

    With strata ``s`` from :func:`count_strata` and stratum means ``ȳ_s``, ``p̄_s``::

        r_w = Σ_s Σ_{i∈s} (y_i − ȳ_s)(p_i − p̄_s)
              / sqrt( Σ_s Σ_{i∈s} (y_i − ȳ_s)² · Σ_s Σ_{i∈s} (p_i − p̄_s)² )

    the pooled within-stratum correlation (the correlation that remains when cell count
    is held fixed; arXiv 2603.13377 §5.3). A prediction that depends on the spot only through its
    cell count is constant within every stratum: it explains none of the within-stratum
    variation and gets 0 by convention (the formula's 0/0), or ≈ 0 with near-equal counts.
    Spots alone in their stratum contribute nothing. NaN when the target itself does not
    vary within any stratum.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if y.ndim == 1:
        y, p = y[:, None], p[:, None]
    s = count_strata(counts, size=stratum_size)
    _, inv = np.unique(s, return_inverse=True)
    m = inv.max() + 1 if len(inv) else 0
    size = np.bincount(inv, minlength=m).astype(np.float64)

    def centred(v: np.ndarray) -> np.ndarray:
        sums = np.zeros((m, v.shape[1]))
        np.add.at(sums, inv, v)
        return v - (sums / size[:, None])[inv]

    yc, pc = centred(y), centred(p)
    num = (yc * pc).sum(axis=0)
    syy, spp = (yc * yc).sum(axis=0), (pc * pc).sum(axis=0)
    den = np.sqrt(syy * spp)
    # a prediction constant within every stratum (up to rounding) has no within-stratum
    # variance: compare with the total variance of the prediction
    tot = ((p - p.mean(axis=0)) ** 2).sum(axis=0)
    flat = spp <= 1e-12 * tot
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r = np.where(flat, 0.0, r)
    return np.where(syy > 0, r, np.nan)


# --------------------------------------------------------------------------- the probe
@dataclass
class GeneExpressionResult:
    """What :func:`gene_expression_probe` returns.

    Attributes
    ----------
    per_gene : DataFrame
        One row per (fold, gene): ``fold, gene, pearson`` (held-out patients' spots),
        ``pearson_count_matched`` (when counts were given), ``n_train, n_test``
        (spots), ``n_components`` (the fold's ``k``), ``alpha`` (ridge penalty; NaN for
        XGBoost).
    predictions : ndarray (n_spots, n_genes)
        Out-of-fold predictions: each spot's prediction from the fold that held it out
        (the last such fold if several did); NaN for a spot in no test set.
    folds : list of (train, test)
        The splits used.
    genes : list of str
    """

    per_gene: pd.DataFrame
    predictions: np.ndarray
    folds: list = field(default_factory=list)
    genes: list = field(default_factory=list)

    def fold_scores(self, metric: str = "pearson",
                    genes: Sequence[str] | None = None) -> pd.DataFrame:
        """Mean over genes of ``metric`` per fold: ``fold, value, n`` (n = genes with a
        finite value). ``genes`` restricts the mean (e.g. one driver's genes)."""
        pg = self.per_gene
        if genes is not None:
            pg = pg[pg["gene"].isin(list(genes))]
        if metric not in pg.columns:
            return pd.DataFrame(columns=["fold", "value", "n"])
        g = pg.groupby("fold", sort=True)[metric]
        out = pd.DataFrame({"value": g.mean(), "n": g.count()}).reset_index()
        return out[out["n"] > 0].reset_index(drop=True)


def gene_expression_probe(
    X: np.ndarray,
    Y: np.ndarray | pd.DataFrame,
    groups: Sequence,
    *,
    genes: Sequence[str] | None = None,
    n_components: int = 256,
    model: str = "ridge",
    alpha: float | str = "hest",
    n_splits: int = 5,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
    counts: np.ndarray | None = None,
    stratum_size: int = 2,
    xgb_params: dict | None = None,
    n_jobs: int = 1,
) -> GeneExpressionResult:
    """Score a spot representation by predicting gene expression on held-out patients.

    Parameters
    ----------
    X : array (n_spots, d)
        The representation (one row per spot).
    Y : array or DataFrame (n_spots, n_genes)
        Expression targets (HEST: log1p of the counts). A DataFrame's columns name the
        genes.
    groups : sequence (n_spots,)
        Patient of every spot; no patient is split between training and test.
    genes : list of str, optional
        Gene names (default: ``Y``'s columns, else ``gene0, gene1, …``).
    n_components : int
        PCA dimensions (HEST: 256), capped per fold at ``min(n_train, d)``.
    model : "ridge" or "xgboost"
        The regression head (module docstring).
    alpha : "hest" or float
        Ridge penalty: ``"hest"`` = ``100 / (k · n_genes)``.
    n_splits : int
        Folds of :func:`patient_folds` when ``splits`` is not given.
    splits : list of (train, test) index arrays, optional
        Predefined patient-stratified splits (HEST's ``splits/``); checked: a patient on
        both sides raises.
    seed : int
        Fold assignment and XGBoost seed.
    counts : array (n_spots,), optional
        Cells per spot; adds ``pearson_count_matched`` (:func:`count_matched_pearson` on
        each fold's test spots).
    stratum_size : int
        Smallest count-matched stratum (:func:`count_strata`).
    xgb_params : dict, optional
        Overrides of :data:`HEST_XGB_PARAMS`.
    n_jobs : int
        XGBoost threads.

    Raises
    ------
    ValueError
        Shapes disagree, a value is not finite (the message counts the rows and names
        the first), fewer than two patients, or a split that is not patient-stratified.
    """
    if isinstance(Y, pd.DataFrame):
        gnames = [str(c) for c in Y.columns] if genes is None else [str(g) for g in genes]
        y = Y.to_numpy(dtype=np.float64)
    else:
        y = np.asarray(Y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        gnames = ([str(g) for g in genes] if genes is not None
                  else [f"gene{i}" for i in range(y.shape[1])])
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (spots × features), got shape {x.shape}")
    g = np.asarray(groups).astype(str)
    n = len(x)
    if len(y) != n or len(g) != n:
        raise ValueError(f"X has {n} spots, Y {len(y)}, groups {len(g)}; they must agree")
    if len(gnames) != y.shape[1]:
        raise ValueError(f"{len(gnames)} gene names for {y.shape[1]} target columns")
    for name, arr in (("X", x), ("Y", y)):
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise ValueError(f"{name}: {int(bad.sum())} spot(s) with a non-finite value "
                             f"(first: row {int(np.flatnonzero(bad)[0])}); drop or impute them first")
    c = None
    if counts is not None:
        c = np.asarray(counts, dtype=np.float64)
        if len(c) != n:
            raise ValueError(f"counts has {len(c)} values for {n} spots")
    folds = (_check_splits(splits, g, n) if splits is not None
             else patient_folds(g, n_splits=n_splits, seed=seed))
    pred_all = np.full(y.shape, np.nan)
    frames = []
    for fold, (tr, te) in enumerate(folds):
        pred, k, lam = _fit_predict(x[tr], y[tr], x[te], n_components=n_components,
                                    model=model, alpha=alpha, seed=seed,
                                    xgb_params=xgb_params, n_jobs=n_jobs)
        pred_all[te] = pred
        cols = {"fold": fold, "gene": gnames, "pearson": pearson_columns(y[te], pred)}
        if c is not None:
            cols["pearson_count_matched"] = count_matched_pearson(y[te], pred, c[te],
                                                                  stratum_size=stratum_size)
        frames.append(pd.DataFrame({**cols, "n_train": len(tr), "n_test": len(te),
                                    "n_components": k, "alpha": lam}))
    per_gene = pd.concat(frames, ignore_index=True)
    return GeneExpressionResult(per_gene=per_gene, predictions=pred_all, folds=folds,
                                genes=gnames)
