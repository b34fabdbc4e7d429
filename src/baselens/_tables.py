"""Pure helpers over the results-contract tables (``scores``, ``per_perturbation``).

Shared by :mod:`baselens.diagnose` (which decides) and :mod:`baselens.report` (which
renders the same numbers), so neither keeps a copy and the report imports no stage.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Keys that define one comparison: a method is compared with the baselines of its group.
GROUP_KEYS = ["task", "batch_level", "metric"]
_METHOD_KEYS = ["method", "layer"]

_REQUIRED_SCORE_COLUMNS = {"method", "method_kind", "task", "metric", "value"}
_REQUIRED_PERPERT_COLUMNS = {"method", "method_kind", "task", "perturbation", "metric", "value"}

#: MorphoHELM's batch levels, least to most demanding.
LEVEL_ORDER = ["SP", "NR", "NSL", "NSP", "NSB", "NSS", "NSSL"]
#: What each batch level forbids or keeps, in words (the findings' sentences, the report).
LEVEL_NAMES = {"SP": "same plate", "NR": "no restriction", "NSL": "not same well position",
               "NSP": "not same plate", "NSB": "not same batch", "NSS": "not same source",
               "NSSL": "not same source nor position"}


def order_levels(levels: Iterable[str]) -> list[str]:
    """Distinct levels, MorphoHELM's in their canonical order (:data:`LEVEL_ORDER`), any
    others after them in order of appearance."""
    seen = list(dict.fromkeys(str(x) for x in levels))
    return [x for x in LEVEL_ORDER if x in seen] + [x for x in seen if x not in LEVEL_ORDER]


def _normalise(df: pd.DataFrame, required: set[str], what: str) -> pd.DataFrame:
    """Copy ``df`` with the optional contract columns filled in and key columns as str."""
    missing = required - set(df.columns)
    if missing:
        raise ValueError(f"{what} is missing required column(s): {sorted(missing)}")
    out = df.copy()
    defaults = {"layer": "default", "batch_level": "all", "fold": 0, "seed": 0}
    for col, default in defaults.items():
        if col not in out.columns:
            out[col] = default
        else:
            out[col] = out[col].where(out[col].notna(), default)
    for col in ["method", "method_kind", "layer", "task", "batch_level", "metric"]:
        out[col] = out[col].astype(str)
    if "perturbation" in out.columns:
        out["perturbation"] = out["perturbation"].astype(str)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype(float)
    return out


def _order(values: pd.Series) -> dict[str, int]:
    """Order of first appearance, with ``batch_level == "all"`` style values kept stable."""
    return {v: i for i, v in enumerate(pd.unique(values))}


def aggregate_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over folds and seeds, for every method (baselines included).

    For each ``(task, batch_level, metric, method, layer)``::

        value_mean = mean_r v_{m,r}            (NaN values skipped)
        value_std  = sqrt( sum_r (v_{m,r} - value_mean)^2 / (n_runs - 1) )
                     (sample standard deviation; NaN when n_runs < 2)
        n_runs     = number of runs r with a non-NaN value
        n          = largest ``n`` (items averaged over) among the runs, if present

    Rows keep the order in which tasks, batch levels, metrics and methods first appear.
    """
    df = _normalise(scores, _REQUIRED_SCORE_COLUMNS, "scores")
    keys = GROUP_KEYS + _METHOD_KEYS
    if df.empty:
        return pd.DataFrame(
            columns=[*keys, "method_kind", "value_mean", "value_std", "n_runs", "n"]
        )
    grouped = df.groupby(keys, sort=False, dropna=False)
    out = grouped["value"].agg(
        value_mean="mean", value_std=lambda s: s.std(ddof=1), n_runs="count"
    )
    out["method_kind"] = grouped["method_kind"].first()
    if "n" in df.columns:
        out["n"] = grouped["n"].max()
    else:
        out["n"] = np.nan
    out = out.reset_index()
    out["n_runs"] = out["n_runs"].astype(int)
    return out[[*keys, "method_kind", "value_mean", "value_std", "n_runs", "n"]]


def per_perturbation_differential(
    per_pert: pd.DataFrame,
    task: str,
    metric: str,
    *,
    batch_level: str | None = None,
    lower_is_better: bool = False,
) -> pd.DataFrame:
    """Per perturbation: each model's value minus the best baseline's value *for that perturbation*.

    For one task and metric, and every ``(batch_level, perturbation)`` ``p``::

        x_p  = max_{b in B} v_{b,p}      (min when ``lower_is_better``) — the best baseline
               is chosen per perturbation, so it may differ between perturbations
        difference_{m,p}  = v_{m,p} - x_p
        improvement_{m,p} = difference_{m,p}   (or -difference when lower is better)

    Large positive improvements name perturbations that only the learned representation
    retrieves (no baseline does). Duplicate rows for one method/perturbation (e.g. several
    folds) are averaged first.

    Parameters
    ----------
    per_pert
        A ``per_perturbation.parquet`` table (results contract).
    task, metric
        Which task and metric to compare (e.g. ``"replicate_retrieval"``,
        ``"average_precision"``).
    batch_level
        Restrict to one batch level; ``None`` keeps all (they are never mixed).
    lower_is_better
        Whether smaller values of ``metric`` are better (e.g. p-values).

    Returns
    -------
    Columns ``batch_level, perturbation, method, method_kind, layer, value, best_baseline,
    best_baseline_layer, best_baseline_value, difference, improvement``: one row per
    non-baseline method/layer and perturbation, sorted by method/layer and then by
    improvement (largest first, NaN last). Perturbations without any baseline value have
    NaN best-baseline columns.
    """
    cols = [
        "batch_level", "perturbation", "method", "method_kind", "layer", "value",
        "best_baseline", "best_baseline_layer", "best_baseline_value", "difference",
        "improvement",
    ]
    if per_pert is None or per_pert.empty:
        return pd.DataFrame(columns=cols)
    df = _normalise(per_pert, _REQUIRED_PERPERT_COLUMNS, "per_perturbation")
    df = df[(df["task"] == str(task)) & (df["metric"] == str(metric))]
    if batch_level is not None:
        df = df[df["batch_level"] == str(batch_level)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    keys = ["batch_level", "perturbation", "method", "layer"]
    grouped = df.groupby(keys, sort=False)
    avg = grouped["value"].mean().to_frame("value")
    avg["method_kind"] = grouped["method_kind"].first()
    avg = avg.reset_index()

    base = avg[(avg["method_kind"] == "baseline") & avg["value"].notna()]
    base = base.sort_values(["method", "layer"], kind="stable")
    base = base.sort_values("value", ascending=lower_is_better, kind="stable")
    best = base.drop_duplicates(["batch_level", "perturbation"], keep="first")
    best = best.rename(
        columns={
            "method": "best_baseline",
            "layer": "best_baseline_layer",
            "value": "best_baseline_value",
        }
    )[["batch_level", "perturbation", "best_baseline", "best_baseline_layer",
       "best_baseline_value"]]

    others = avg[avg["method_kind"] != "baseline"]
    if others.empty:
        return pd.DataFrame(columns=cols)
    out = others.merge(best, on=["batch_level", "perturbation"], how="left")
    for col in ["best_baseline", "best_baseline_layer"]:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["difference"] = out["value"] - out["best_baseline_value"]
    out["improvement"] = -out["difference"] if lower_is_better else out["difference"]
    morder = _order(out["method"] + "\x00" + out["layer"])
    out["_o"] = (out["method"] + "\x00" + out["layer"]).map(morder)
    out = out.sort_values(
        ["_o", "improvement", "perturbation"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    )
    return out[cols].reset_index(drop=True)


def _truthy(v) -> bool:
    return bool(v) if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() in (
        "true", "1", "yes")


def coerce_types(df: pd.DataFrame | None, numeric, flags=()) -> pd.DataFrame | None:
    """A copy of ``df`` whose ``numeric`` columns are numbers and ``flags`` booleans
    (tables read back from parquet files written as text by older runs); ``None`` stays
    ``None``. ``predictable_by_cell_count`` is always a flag."""
    if df is None:
        return None
    df = df.copy()
    for c in numeric:
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in (*flags, "predictable_by_cell_count"):
        if c in df.columns and not pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].map(_truthy).astype(bool)
    return df
