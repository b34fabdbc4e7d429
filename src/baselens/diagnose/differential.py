"""Which baseline is best, per group and per perturbation: decided here, drawn by the report.

Two tables under ``diagnostics/`` (written by :func:`baselens.diagnose.run.run_diagnostics`,
the tissue pipeline and ``baselens compare``):

``best_baseline.parquet`` (:func:`best_baseline_table`)
    The strongest baseline of *every* ``(task, batch_level, metric)`` that a baseline
    scored, in the declared direction — also where no model was compared, so that the
    report's ★ and bar-chart reference line never have to sort scores themselves. Where
    ``beyond_baseline.parquet`` names a best baseline the two agree (both are
    :func:`baselens.diagnose.beyond_baseline.best_baselines`).
``per_perturbation_differential.parquet`` (:func:`per_perturbation_table`)
    For each task, its per-perturbation scatter: every non-baseline method's value per
    perturbation next to the best baseline *for that perturbation*
    (:func:`baselens._tables.per_perturbation_differential`), on one per-item metric at one
    batch level — the headline per-item metric at the level the report shows first (the
    strictest distinct level, :func:`baselens.diagnose.findings.shown_levels`). Only what
    the report draws is kept, so the table stays small.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from baselens._tables import per_perturbation_differential
from baselens.diagnose.beyond_baseline import best_baselines
from baselens.diagnose.findings import _lower, headline_metrics, order_levels, shown_levels

__all__ = ["BEST_BASELINE_COLUMNS", "DIFFERENTIAL_COLUMNS", "best_baseline_table",
           "item_metric", "per_perturbation_table"]

#: Columns of ``diagnostics/best_baseline.parquet``.
BEST_BASELINE_COLUMNS = ["task", "batch_level", "metric", "best_baseline",
                         "best_baseline_layer", "best_baseline_mean", "best_baseline_std",
                         "higher_is_better"]

#: Columns of ``diagnostics/per_perturbation_differential.parquet``.
DIFFERENTIAL_COLUMNS = ["task", "metric", "higher_is_better", "batch_level", "perturbation",
                        "method", "method_kind", "layer", "value", "best_baseline",
                        "best_baseline_layer", "best_baseline_value", "difference",
                        "improvement"]

#: Per-item metrics that are not scores to plot: p-values, q-values, FDRs.
_PVALUE_LIKE = re.compile(r"p_?val|q_?val|fdr", re.IGNORECASE)


def best_baseline_table(scores: pd.DataFrame, metrics: pd.DataFrame | None = None, *,
                        lower_is_better: Iterable = ()) -> pd.DataFrame:
    """The best baseline of every ``(task, batch_level, metric)`` with a baseline value.

    ``best = argmax_b mean_r v_{b,r}`` over the baselines ``b`` (argmin where
    ``metrics.parquet`` declares the metric lower-is-better, or ``lower_is_better`` names
    it); ties go to the alphabetically first ``(method, layer)``
    (:func:`baselens.diagnose.beyond_baseline.best_baselines`).

    Parameters
    ----------
    scores
        ``scores.parquet`` (results contract).
    metrics
        ``diagnostics/metrics.parquet``: the declared direction of each metric.
    lower_is_better
        Extra lower-is-better metric names or ``(task, metric)`` pairs.

    Returns
    -------
    DataFrame
        :data:`BEST_BASELINE_COLUMNS`, one row per group, groups in order of appearance.
    """
    if scores is None or scores.empty:
        return pd.DataFrame(columns=BEST_BASELINE_COLUMNS)
    lower = _lower(metrics, lower_is_better)
    out = best_baselines(scores, lower_is_better=lower)
    out["higher_is_better"] = [not (m in lower or (t, m) in lower)
                               for t, m in zip(out["task"], out["metric"])]
    return out[BEST_BASELINE_COLUMNS].reset_index(drop=True)


def item_metric(metrics: Iterable[str], headline: str | None) -> str | None:
    """The per-item metric worth a scatter: the task's headline metric when it is also
    scored per item, else the first per-item metric that is neither a p-value nor a stored
    prediction (``oof_*``) nor a count (``n_*``)."""
    ok = [m for m in dict.fromkeys(map(str, metrics))
          if not _PVALUE_LIKE.search(m) and not m.startswith(("oof_", "n_"))]
    if not ok:
        return None
    return headline if headline in ok else ok[0]


def per_perturbation_table(scores: pd.DataFrame, per_perturbation: pd.DataFrame | None,
                           metrics: pd.DataFrame | None = None, *,
                           lower_is_better: Iterable = ()) -> pd.DataFrame:
    """Each task's per-perturbation differential against the per-perturbation best baseline.

    For every task of ``scores`` with per-item values: the metric is :func:`item_metric`
    (headline metric of ``metrics.parquet`` when scored per item), the batch level the
    strictest distinct level of the task (:func:`baselens.diagnose.findings.shown_levels`;
    NR, else the first in canonical order, when the per-item table lacks it), and every row
    of :func:`baselens._tables.per_perturbation_differential` for them::

        x_p = best baseline value for perturbation p (max, or min when lower is better)
        difference_{m,p} = v_{m,p} − x_p,   improvement = difference (−difference if lower)

    A task whose perturbations have no baseline value at all is left out.

    Parameters
    ----------
    scores
        ``scores.parquet``: tasks, headline metrics and the levels formed.
    per_perturbation
        ``per_perturbation.parquet`` (results contract).
    metrics
        ``diagnostics/metrics.parquet``: headline metric and direction of each metric (a
        per-item metric is lower-is-better when a metric of that name is declared so).
    lower_is_better
        Extra lower-is-better metric names.

    Returns
    -------
    DataFrame
        :data:`DIFFERENTIAL_COLUMNS`; within a task, rows in the order of
        :func:`~baselens._tables.per_perturbation_differential` (methods in order of
        appearance, largest improvement first).
    """
    empty = pd.DataFrame(columns=DIFFERENTIAL_COLUMNS)
    if scores is None or scores.empty or per_perturbation is None or per_perturbation.empty \
            or "task" not in per_perturbation.columns:
        return empty
    headline = headline_metrics(scores, metrics)
    shown = shown_levels(scores)
    lower_names = {m if isinstance(m, str) else m[1] for m in _lower(metrics, lower_is_better)}
    pp_task = per_perturbation["task"].astype(str)
    parts = []
    for task in headline:
        pp = per_perturbation[pp_task == task]
        if pp.empty:
            continue
        level = None
        if "batch_level" in pp.columns:
            levels = order_levels(pp["batch_level"].astype(str))
            first = (shown.get(task) or [None])[0]
            level = first if first in levels else ("NR" if "NR" in levels else levels[0])
        metric = item_metric(pp["metric"].astype(str), headline[task])
        if metric is None:
            continue
        low = metric in lower_names
        d = per_perturbation_differential(pp, task, metric, batch_level=level,
                                          lower_is_better=low)
        if d.empty or d["best_baseline_value"].notna().sum() == 0:
            continue
        parts.append(d.assign(task=task, metric=metric, higher_is_better=not low))
    if not parts:
        return empty
    out = pd.concat(parts, ignore_index=True)[DIFFERENTIAL_COLUMNS]
    out["higher_is_better"] = out["higher_is_better"].astype(bool)
    return out
