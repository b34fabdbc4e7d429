"""Per-plate normalization of profiles to negative controls (or to all wells).

Formulas (per plate ``p``, feature ``j``; reference rows ``R_p`` = negative controls):

* ``standardize``:   z = (x - mean(x[R_p])) / std(x[R_p])          (population std, ddof=0,
  as sklearn's StandardScaler used by pycytominer)
* ``mad_robustize``: z = (x - median(x[R_p])) / (1.4826 * MAD(x[R_p]) + eps), eps = 1e-18
  (pycytominer's ``mad_robustize``)
* ``robustize``:     z = (x - median(x[R_p])) / (Q75(x[R_p]) - Q25(x[R_p]))   (quantiles with
  linear interpolation, as sklearn's RobustScaler used by pycytominer's ``robustize``)
* ``center``:        z = x - mean(x[R_p])                                 (no scaling)

``by=None`` fits one scaler on the whole table (pycytominer's behaviour); ``by`` may also be
a list of columns (e.g. plate and batch).

pycytominer fits one scaler on the whole table; baselens fits one per plate (the usual
JUMP practice), which is what a ``groupby`` over pycytominer's ``normalize`` gives.
Features whose reference spread is zero or non-finite on any plate are removed and
reported (they would otherwise become inf/NaN). "Zero" includes floating-point round-off
(:func:`zero_spread`): a spread ``s_j <= SPREAD_RTOL * max(1, max_i |x_ij|)`` over the
plate's rows ``i``, ``SPREAD_RTOL = 1e-12``. Such a spread is noise in the last digits,
e.g. a principal component with no variance in the controls it was fitted on
(control values ~1e-16), which would otherwise be scaled to ~1e15. pycytominer keeps
these features (and exact-zero ones, dividing by 0 or by its ``1e-18`` epsilon).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from baselens.profile.aggregate import feature_columns
from baselens.profile.log import FilterLog

METHODS = ("standardize", "mad_robustize", "robustize", "center", "none")

#: Relative tolerance below which a reference spread counts as zero (:func:`zero_spread`).
SPREAD_RTOL = 1e-12


def zero_spread(spread: np.ndarray, x: np.ndarray, rtol: float = SPREAD_RTOL) -> np.ndarray:
    """Which features have a zero (or round-off) reference spread.

    ``spread_j <= rtol * max(1, max_i |x_ij|)``, with ``x`` the rows of one plate
    (reference and others; non-finite values ignored). The relative part catches
    round-off of large values (float64 keeps ~16 digits, so a spread 1e-12 of the
    values' size is noise); the floor 1 keeps a feature whose values are all round-off
    (~1e-16) from passing as a small but real spread. Non-finite spreads are also True.
    """
    spread = np.asarray(spread, dtype=np.float64)
    ax = np.abs(np.asarray(x, dtype=np.float64))
    size = np.where(np.isfinite(ax), ax, 0.0).max(axis=0, initial=0.0)
    return ~np.isfinite(spread) | (spread <= float(rtol) * np.maximum(1.0, size))


def reference_mask(df: pd.DataFrame, reference: str) -> np.ndarray:
    """Rows used to fit the normalization: ``"negcon"`` or ``"all"``."""
    if reference == "all":
        return np.ones(len(df), dtype=bool)
    if reference == "negcon":
        if "Metadata_ControlType" not in df.columns:
            raise ValueError(
                "normalizing to negative controls needs a Metadata_ControlType column "
                "('negcon' marks controls); set profile.reference = \"all\" to normalize to all wells"
            )
        return (df["Metadata_ControlType"].astype(str) == "negcon").to_numpy()
    raise ValueError(f"reference must be 'negcon' or 'all', got {reference!r}")


def normalize(
    df: pd.DataFrame,
    *,
    method: str = "standardize",
    reference: str = "negcon",
    by: str | Sequence[str] | None = "Metadata_Plate",
    features: Sequence[str] | None = None,
    log: FilterLog | None = None,
    min_reference: int = 2,
    spread_rtol: float = SPREAD_RTOL,
) -> pd.DataFrame:
    """Normalize features per ``by`` group against reference rows.

    A feature whose reference spread (std, IQR or MAD) is zero up to round-off on any
    group (:func:`zero_spread` with ``spread_rtol``), or that holds non-finite values,
    is removed and counted in the ``normalize`` event of ``log``.

    Raises
    ------
    ValueError
        If a plate has fewer than ``min_reference`` reference wells (names the plate and
        says what to do).
    """
    if method not in METHODS:
        raise ValueError(f"normalize method must be one of {METHODS}, got {method!r}")
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    if method == "none":
        return df.copy()
    ref = reference_mask(df, reference)
    x = df[features].to_numpy(dtype=np.float64)
    nonfinite = ~np.isfinite(x).all(axis=0)
    out = np.empty_like(x)
    bad = nonfinite.copy()
    if by is None:
        groups = {"<all rows>": np.arange(len(df))}.items()
    else:
        groups = df.groupby(by, sort=False, observed=True).indices.items()
    for plate, idx in groups:
        r = idx[ref[idx]]
        if len(r) < min_reference:
            raise ValueError(
                f"plate {plate!r} has {len(r)} negative-control well(s) (need ≥ {min_reference}) "
                f"to normalize against; mark controls with Metadata_ControlType='negcon' or set "
                f"profile.reference = \"all\""
            )
        xr = x[r]
        if method == "standardize":
            center = np.nanmean(xr, axis=0)
            scale = np.nanstd(xr, axis=0)
            ok = ~zero_spread(scale, x[idx], spread_rtol)
        elif method == "center":
            center = np.nanmean(xr, axis=0)
            scale = np.ones_like(center)
            ok = np.isfinite(center)
        elif method == "robustize":
            center = np.nanmedian(xr, axis=0)
            q25, q75 = np.nanpercentile(xr, [25, 75], axis=0)
            scale = q75 - q25
            ok = ~zero_spread(scale, x[idx], spread_rtol)
        else:
            center = np.nanmedian(xr, axis=0)
            mad = np.nanmedian(np.abs(xr - center), axis=0)
            scale = 1.4826 * mad + 1e-18
            ok = ~zero_spread(mad, x[idx], spread_rtol)
        bad |= ~ok | ~np.isfinite(scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[idx] = (x[idx] - center) / scale
    keep = [f for f, b in zip(features, bad) if not b]
    dropped = [f for f, b in zip(features, bad) if b]
    log.add("normalize", "features", len(dropped), len(keep),
            f"non-finite values, or zero spread (<= {spread_rtol:g} x max(1, max |x|), round-off "
            f"included) in the {reference} reference on some plate",
            dropped)
    if not keep:
        raise ValueError(
            "every feature is constant or non-finite in the reference wells of some plate; "
            "nothing is left to score"
        )
    meta = df[[c for c in df.columns if c not in features]]
    normed = pd.DataFrame(out[:, ~bad], columns=keep, index=df.index)
    return pd.concat([meta, normed], axis=1)
