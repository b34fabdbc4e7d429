"""Aggregate per-site features to wells (or any grouping), pycytominer-style."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

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
) -> pd.DataFrame:
    """Aggregate rows (sites) into groups (wells by default).

    ``Metadata_*`` columns that are constant within every group are kept; the others
    (e.g. ``Metadata_Site``) are dropped. ``Metadata_n_sites`` counts the aggregated rows.

    Parameters
    ----------
    df : DataFrame
        Per-site profiles (``Metadata_*`` + feature columns).
    by : list of str
        Grouping columns.
    operation : {"mean", "median"}
    features : list of str, optional
        Feature columns; default: every non-``Metadata_`` column.
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
    out = pd.concat([meta, feats], axis=1).reset_index()
    return out
