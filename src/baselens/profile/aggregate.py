"""Aggregate per-site features to wells, and wells to perturbations (pycytominer-style).

:func:`aggregate` (site → well, mean/median) and :func:`consensus` (well → perturbation:
mean, median or pycytominer's MODZ) share the metadata rules: ``Metadata_*`` columns
constant within every group are kept, the others dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from baselens.profile.log import FilterLog

WELL_KEYS: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well")


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Columns that are not ``Metadata_*`` (the pycytominer/JUMP convention)."""
    return [c for c in df.columns if not str(c).startswith("Metadata_")]


def aggregate(
    df: pd.DataFrame,
    *,
    by: Sequence[str] = WELL_KEYS,
    operation: str = "mean",
    features: Sequence[str] | None = None,
    log: FilterLog | None = None,
    stage: str = "aggregate",
) -> pd.DataFrame:
    """Aggregate rows (sites) into groups (wells by default).

    ``Metadata_*`` columns that are constant within every group are kept; the others
    (e.g. ``Metadata_Site``) are dropped. ``Metadata_n_sites`` counts the aggregated rows.

    The mean/median skips missing values feature by feature (pandas), so a site with
    some NaN features contributes only its finite ones. Such sites are counted: with
    ``log``, one event (``what = "sites"``, ``removed`` = sites with some but not all
    features NaN, ``kept`` = sites without NaN) under ``stage``; the count is also in
    ``out.attrs["n_sites_partial_nan"]``.

    Parameters
    ----------
    df : DataFrame
        Per-site profiles (``Metadata_*`` + feature columns).
    by : list of str
        Grouping columns.
    operation : {"mean", "median"}
    features : list of str, optional
        Feature columns; default: every non-``Metadata_`` column.
    log : FilterLog, optional
        Where the count of partially-NaN sites is recorded.
    stage : str
        Stage name of that record.

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, constant metadata, ``Metadata_n_sites``
        and the aggregated features.
    """
    if operation not in ("mean", "median"):
        raise ValueError(f"aggregate operation must be 'mean' or 'median', got {operation!r}")
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"cannot aggregate by {missing}: columns not in the table")
    features = list(features) if features is not None else feature_columns(df)
    by = list(by)
    grouped = df.groupby(by, sort=True, observed=True)
    feats = getattr(grouped[features], operation)()
    meta_cols = [c for c in df.columns if str(c).startswith("Metadata_") and c not in by]
    if meta_cols:
        nunique = grouped[meta_cols].nunique(dropna=False)
        constant = [c for c in meta_cols if (nunique[c] <= 1).all()]
        meta = grouped[constant].first()
    else:
        meta = pd.DataFrame(index=feats.index)
    meta["Metadata_n_sites"] = grouped.size()
    out = pd.concat([meta.reset_index(), feats.reset_index(drop=True)], axis=1)
    nan = df[features].isna().to_numpy()
    some, every = nan.any(axis=1), nan.all(axis=1)
    partial = some & ~every
    out.attrs["n_sites_partial_nan"] = int(partial.sum())
    if log is not None and partial.any():
        # FilterLog keeps 5 examples: name only those, not every partial site
        ex = (df.loc[partial, by].head(5).astype(str).agg("/".join, axis=1).tolist()
              if by else [])
        log.add(stage, "sites", int(partial.sum()), int((~some).sum()),
                f"site has NaN in some of its features ({int(nan[partial].sum())} values): "
                f"the {operation} over its {by[-1].removeprefix('Metadata_').lower()} skips "
                "them feature by feature", ex)
    return out


#: Keys of a perturbation-level profile (the synthetic screen's convention).
PERTURBATION_KEYS: tuple[str, ...] = ("Metadata_Perturbation",)

CONSENSUS_OPERATIONS = ("mean", "median", "modz")


def modz_weights(x: np.ndarray, method: str = "spearman", min_weight: float = 0.01,
                 precision: int = 4) -> np.ndarray:
    """Replicate weights of the moderated z-score (MODZ) consensus.

    As pycytominer's ``modz_base`` (from cmapPy; Subramanian et al. 2017, Cell 171:1437,
    L1000): ``R`` = correlation (Spearman by default) between replicate profiles (rows of
    ``x``) across features; ``w_i = max(mean_{k≠i} max(R_ik, 0), min_weight)``, normalized
    to sum 1 and rounded to ``precision`` decimals. A single replicate gets weight 1.
    """
    n = x.shape[0]
    if n == 1:
        return np.ones(1)
    if method == "spearman":
        x = np.apply_along_axis(rankdata, 1, x)
    elif method != "pearson":
        raise ValueError(f"modz correlation must be spearman or pearson, got {method!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(x)
    np.fill_diagonal(r, np.nan)
    r = np.clip(r, 0, None)
    raw = np.clip(np.nanmean(r, axis=1), min_weight, None)
    total = raw.sum()
    w = raw / total if total > 0 else np.full(n, 1.0 / n)
    return np.round(w, precision)


def consensus(
    df: pd.DataFrame,
    *,
    by: Sequence[str] = PERTURBATION_KEYS,
    operation: str = "mean",
    features: Sequence[str] | None = None,
    modz_method: str = "spearman",
    min_weight: float = 0.01,
    precision: int = 4,
) -> pd.DataFrame:
    """Collapse replicate wells into one profile per ``by`` group (pycytominer ``consensus``).

    ``operation``: ``"mean"``, ``"median"`` or ``"modz"`` (weighted sum
    ``Σ_i w_i x_i`` with :func:`modz_weights`). Metadata handling as :func:`aggregate`;
    ``Metadata_n_sites`` then counts the wells of each group.
    """
    if operation not in CONSENSUS_OPERATIONS:
        raise ValueError(f"consensus operation must be one of {CONSENSUS_OPERATIONS}, got {operation!r}")
    features = list(features) if features is not None else feature_columns(df)
    if operation != "modz":
        return aggregate(df, by=by, operation=operation, features=features)
    out = aggregate(df, by=by, operation="mean", features=features)
    x = df[features].to_numpy(dtype=np.float64)
    # ngroup() numbers groups in aggregate()'s (sorted) output order
    codes = df.groupby(list(by), sort=True, observed=True).ngroup().to_numpy()
    vals = np.vstack([modz_weights(x[idx], modz_method, min_weight, precision) @ x[idx]
                      for idx in (np.flatnonzero(codes == g) for g in range(len(out)))])
    return pd.concat([out.drop(columns=features),
                      pd.DataFrame(vals, columns=features, index=out.index)], axis=1)
