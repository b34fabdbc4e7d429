"""Feature selection with pycytominer's semantics, plus the cell-count filter (Seal et al. 2026, Nat. Commun.).

Each ``*_features`` function returns the list of features to EXCLUDE (pycytominer's
convention); :func:`feature_select` chains them, drops the columns and reports every
removal through :class:`~baselens.profile.log.FilterLog`.

Operations (``X`` = rows used for fitting, ``j`` = a feature; pycytominer 1.7.1, BSD-3,
``pycytominer.feature_select`` / ``pycytominer.operations``):

* ``variance_threshold``: drop ``j`` unless ``var(X_j) > min_variance`` (population
  variance, ddof = 0, NaN ignored: sklearn's ``VarianceThreshold``; default 1e-6).
* ``frequency_threshold``: drop ``j`` if ``count(2nd most common value) / count(most
  common value) < freq_cut`` (0 when ``j`` has < 2 distinct values) or if
  ``n_unique / n_rows < unique_cut`` (the caret ``nearZeroVar`` filter; pycytominer's
  old ``variance_threshold``).
* ``drop_na_columns``: drop ``j`` if its share of NaN exceeds ``na_cutoff`` (0.05).
* ``drop_nonfinite``: drop ``j`` if it holds any ±inf (or, with ``na_cutoff`` = 0, any NaN).
* ``correlation_threshold``: with ``R`` the correlation matrix (pearson by default) and
  ``s_j = Σ_k |R_jk|`` (diagonal included), for every pair ``(a, b)`` with SIGNED
  ``R_ab > threshold`` (0.9) drop the member with the larger ``s``; all pairs are judged
  on the same ``R`` (not greedily), so a feature can be dropped by one pair and still
  drop its partner in another; perfectly anti-correlated pairs both survive. Exactly
  pycytominer's ``correlation_threshold``.
* ``blocklist``: drop the 55 CellProfiler features of pycytominer's default blocklist
  (shipped as ``data/cellprofiler_blocklist.txt``; Way 2019,
  https://doi.org/10.6084/m9.figshare.10255811) or a user list.
* ``cell_count``: drop ``j`` with ``|pearson(X_j, cell count)| > 0.95`` — Seal et al. 2026
  (Seal et al., Nat. Commun. 17, 2436, 2026) rec. 2: features that are a proxy of cell
  count make a representation look informative for viability-driven tasks; removing them
  keeps the comparison with the cell-count baseline honest. Needs a cell-count column
  (default ``Metadata_CellCount``) or vector.
"""

from __future__ import annotations

from importlib import resources
from typing import Sequence

import numpy as np
import pandas as pd

from baselens.profile.aggregate import feature_columns
from baselens.profile.log import FilterLog
from baselens.profile.normalize import reference_mask

#: Default per-well cell-count column the lead joins from the cell_count extractor.
CELL_COUNT_COLUMN = "Metadata_CellCount"

OPERATIONS = ("drop_na_columns", "drop_nonfinite", "variance_threshold", "frequency_threshold",
              "correlation_threshold", "blocklist", "cell_count")

#: baselens' default: NaN/inf first, then constant, then redundant, then known-noisy features.
DEFAULT_OPERATIONS = ("drop_na_columns", "drop_nonfinite", "variance_threshold",
                      "correlation_threshold", "blocklist")


def load_blocklist() -> list[str]:
    """pycytominer's default CellProfiler blocklist (55 features), shipped with baselens."""
    text = resources.files("baselens.profile").joinpath("data/cellprofiler_blocklist.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _matrix(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return df[list(features)].to_numpy(dtype=np.float64)


def variance_threshold_features(df: pd.DataFrame, features: Sequence[str],
                                min_variance: float = 1e-6) -> list[str]:
    """Features with ``nanvar (ddof=0) <= min_variance`` (sklearn VarianceThreshold)."""
    if min_variance < 0:
        raise ValueError("min_variance must be non-negative")
    x = _matrix(df, features)
    with np.errstate(invalid="ignore"):
        var = np.nanvar(np.where(np.isfinite(x), x, np.nan), axis=0) if len(x) else np.full(len(features), np.nan)
    if min_variance == 0 and len(x):  # sklearn also uses the peak-to-peak range at 0
        var = np.fmin(var, np.nanmax(x, axis=0) - np.nanmin(x, axis=0))
    keep = var > min_variance
    return [f for f, k in zip(features, keep) if not k]


def frequency_threshold_features(df: pd.DataFrame, features: Sequence[str],
                                 freq_cut: float = 0.05, unique_cut: float = 0.01) -> list[str]:
    """Features failing the frequency-ratio or unique-ratio test (pycytominer semantics)."""
    if not (0 <= freq_cut <= 1 and 0 <= unique_cut <= 1):
        raise ValueError("freq_cut and unique_cut must lie in [0, 1]")
    n = len(df)
    out = []
    for f in features:
        counts = df[f].value_counts(dropna=True).to_numpy()
        ratio = 0.0 if len(counts) < 2 else counts[1] / counts[0]
        if ratio < freq_cut or (len(counts) / n if n else 0.0) < unique_cut:
            out.append(f)
    return out


def na_features(df: pd.DataFrame, features: Sequence[str], na_cutoff: float = 0.05) -> list[str]:
    """Features whose share of NaN exceeds ``na_cutoff`` (pycytominer ``get_na_columns``)."""
    if not 0 <= na_cutoff <= 1:
        raise ValueError("na_cutoff must lie in [0, 1]")
    if not len(df):
        return []
    share = df[list(features)].isna().to_numpy().mean(axis=0)
    return [f for f, s in zip(features, share) if s > na_cutoff]


def nonfinite_features(df: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """Features holding ±inf (NaN is left to :func:`na_features`)."""
    x = _matrix(df, features)
    return [f for f, b in zip(features, np.isinf(x).any(axis=0)) if b]


def correlation_matrix(x: np.ndarray, method: str = "pearson") -> np.ndarray:
    """Feature × feature correlation; pandas' pairwise-complete path when NaN/inf occur."""
    if method not in ("pearson", "spearman", "kendall"):
        raise ValueError(f"correlation method must be pearson, spearman or kendall, got {method!r}")
    if method == "pearson" and np.isfinite(x).all():
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.corrcoef(x, rowvar=False)
    return pd.DataFrame(x).corr(method=method).to_numpy()


def correlation_threshold_features(df: pd.DataFrame, features: Sequence[str],
                                   threshold: float = 0.9, method: str = "pearson") -> list[str]:
    """pycytominer's ``correlation_threshold``: see the module docstring."""
    if not 0 <= threshold <= 1:
        raise ValueError("threshold must lie in [0, 1]")
    features = list(features)
    if len(features) < 2:
        return []
    r = correlation_matrix(_matrix(df, features), method)
    # order by total |r| (NaN skipped), ascending, exactly as pycytominer sorts it
    order = pd.Series(np.nansum(np.abs(r), axis=0), index=features).sort_values().index
    rank = pd.Series(np.arange(len(order)), index=order).reindex(features).to_numpy()
    a, b = np.tril_indices(len(features), k=-1)  # pair_a = row (later), pair_b = column
    hit = r[a, b] > threshold
    a, b = a[hit], b[hit]
    drop = np.where(rank[a] > rank[b], a, b)
    dropped = set(np.unique(drop).tolist())
    return [f for i, f in enumerate(features) if i in dropped]


def blocklist_features(features: Sequence[str], blocklist: Sequence[str] | None = None) -> list[str]:
    """Features on the blocklist (default: pycytominer's CellProfiler blocklist)."""
    block = set(load_blocklist() if blocklist is None else blocklist)
    return [f for f in features if f in block]


def cell_count_features(df: pd.DataFrame, features: Sequence[str],
                        cell_count: str | Sequence[float] | np.ndarray = CELL_COUNT_COLUMN,
                        threshold: float = 0.95) -> list[str]:
    """Features with ``|pearson(feature, cell count)| > threshold`` (Seal et al. 2026 rec. 2).

    ``cell_count`` is a column name of ``df`` or a vector aligned with its rows. Rows with
    a non-finite count or feature value are left out of that feature's correlation.
    """
    if isinstance(cell_count, str):
        if cell_count not in df.columns:
            raise ValueError(
                f"the cell-count filter needs a {cell_count!r} column (per-well cell count; "
                "join the cell_count extractor's Count_Nuclei) or an explicit vector")
        c = df[cell_count].to_numpy(dtype=np.float64)
    else:
        c = np.asarray(cell_count, dtype=np.float64)
        if c.shape != (len(df),):
            raise ValueError(f"cell_count has shape {c.shape}, expected ({len(df)},)")
    x = _matrix(df, features)
    ok = np.isfinite(x) & np.isfinite(c)[:, None]
    n = ok.sum(axis=0)
    xz = np.where(ok, x, 0.0)
    cz = np.where(ok, c[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = xz.sum(0) / n
        mc = cz.sum(0) / n
        dx = np.where(ok, x - mx, 0.0)
        dc = np.where(ok, c[:, None] - mc, 0.0)
        r = (dx * dc).sum(0) / np.sqrt((dx ** 2).sum(0) * (dc ** 2).sum(0))
    return [f for f, v in zip(features, np.abs(r)) if v > threshold]


def feature_select(
    df: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    operations: Sequence[str] | str = DEFAULT_OPERATIONS,
    reference: str = "all",
    log: FilterLog | None = None,
    na_cutoff: float = 0.05,
    min_variance: float = 1e-6,
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
    corr_threshold: float = 0.9,
    corr_method: str = "pearson",
    blocklist: Sequence[str] | None = None,
    cell_count: str | Sequence[float] | np.ndarray = CELL_COUNT_COLUMN,
    cell_count_threshold: float = 0.95,
) -> pd.DataFrame:
    """Run ``operations`` in order, each on the features the previous ones kept.

    ``reference`` picks the rows the statistics are computed on (``"all"`` or
    ``"negcon"``, pycytominer's ``samples``); every row is kept. Returns ``df`` without the
    dropped feature columns; each operation adds one event to ``log``.
    """
    if isinstance(operations, str):
        operations = [operations]
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ValueError(f"unknown feature_select operation(s) {unknown}; choose from {OPERATIONS}")
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    fit = df.loc[reference_mask(df, reference)]
    if isinstance(cell_count, (np.ndarray, list, tuple, pd.Series)):
        cc = np.asarray(cell_count, dtype=np.float64)[reference_mask(df, reference)]
    else:
        cc = cell_count
    reasons = {
        "drop_na_columns": f"more than {na_cutoff:g} of values NaN",
        "drop_nonfinite": "contains ±inf",
        "variance_threshold": f"variance ≤ {min_variance:g}",
        "frequency_threshold": f"2nd/1st value frequency < {freq_cut:g} or unique share < {unique_cut:g}",
        "correlation_threshold": f"{corr_method} r > {corr_threshold:g} with a feature of smaller total |r|",
        "blocklist": "on the CellProfiler blocklist" if blocklist is None else "on the user blocklist",
        "cell_count": f"|r| > {cell_count_threshold:g} with cell count (Seal et al. 2026 rec. 2)",
    }
    excluded: list[str] = []
    for op in operations:
        if op == "drop_na_columns":
            ex = na_features(fit, features, na_cutoff)
        elif op == "drop_nonfinite":
            ex = nonfinite_features(fit, features)
        elif op == "variance_threshold":
            ex = variance_threshold_features(fit, features, min_variance)
        elif op == "frequency_threshold":
            ex = frequency_threshold_features(fit, features, freq_cut, unique_cut)
        elif op == "correlation_threshold":
            ex = correlation_threshold_features(fit, features, corr_threshold, corr_method)
        elif op == "blocklist":
            ex = blocklist_features(features, blocklist)
        else:
            ex = cell_count_features(fit, features, cc, cell_count_threshold)
        ex_set = set(ex)
        features = [f for f in features if f not in ex_set]
        excluded += [f for f in ex if f not in excluded]
        log.add(f"feature_select.{op}", "features", len(ex_set), len(features), reasons[op], sorted(ex_set))
    if not features:
        raise ValueError("feature selection removed every feature; loosen the thresholds")
    return df.drop(columns=excluded)
