"""Which layer of each method is best: decided here, drawn by the report.

A network read out at several depths (``block3 … block12``, ``layer1 … layer4``) is one
method with several representation layers. Which of them scores best is a choice the
report shows twice — the layers section's "best layer of each network per task" table
and the reference line of its depth curves, and the tissue count-matched panel, which
draws every method at its best layer — so it is made once, here, and written to
``diagnostics/best_layers.parquet`` (:func:`best_layers`).

For every ``(task, batch_level, metric)`` and method, over the method's layers ``l``::

    best = argmax_l  mean_r v_{l,r}        (argmin where the metric is lower-is-better)

with ``v_{l,r}`` the layer's score in run ``r`` (fold × seed), the means of
:func:`baselens._tables.aggregate_scores` (the numbers every table of the report prints).
The direction is the declared one (``diagnostics/metrics.parquet``, written from
:mod:`baselens.evaluate.registry`). Ties go to the layer that comes first in
``scores.parquet`` (the pipeline writes a network's layers shallow to deep). Metrics
declared as something other than a score (counts, chance levels, nulls, warning flags)
have no best layer; a layer whose mean is NaN is never best.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from baselens._tables import aggregate_scores
from baselens.diagnose.findings import _lower

__all__ = ["BEST_LAYER_COLUMNS", "best_layers"]

#: Columns of ``diagnostics/best_layers.parquet``.
BEST_LAYER_COLUMNS = ["task", "batch_level", "metric", "higher_is_better", "method",
                      "method_kind", "best_layer", "value", "n_layers"]


def _not_scores(metrics: pd.DataFrame | None) -> set[tuple[str, str]]:
    """``(task, metric)`` declared as something other than a score."""
    if metrics is None or not len(metrics) or not {"task", "metric", "metric_kind"} <= \
            set(metrics.columns):
        return set()
    m = metrics[metrics["metric_kind"].astype(str) != "score"]
    return set(zip(m["task"].astype(str), m["metric"].astype(str)))


def best_layers(scores: pd.DataFrame, metrics: pd.DataFrame | None = None, *,
                lower_is_better: Iterable = ()) -> pd.DataFrame:
    """The best layer of every method in every ``(task, batch_level, metric)`` (module
    docstring).

    Parameters
    ----------
    scores
        ``scores.parquet`` (results contract).
    metrics
        ``diagnostics/metrics.parquet``: direction and kind of each metric.
    lower_is_better
        Extra lower-is-better metric names or ``(task, metric)`` pairs.

    Returns
    -------
    DataFrame
        :data:`BEST_LAYER_COLUMNS`, one row per group and method with a finite mean
        (``value`` = the best layer's mean, ``n_layers`` = layers of the method scored
        in the group), in order of each group's and method's first appearance.
    """
    if scores is None or scores.empty:
        return pd.DataFrame(columns=BEST_LAYER_COLUMNS)
    agg = aggregate_scores(scores)
    lower = _lower(metrics, lower_is_better)
    skip = _not_scores(metrics)
    keys = ["task", "batch_level", "metric"]
    agg["_pos"] = np.arange(len(agg))
    hib = [not (m in lower or (t, m) in lower) for t, m in zip(agg["task"], agg["metric"])]
    agg["higher_is_better"] = hib
    agg = agg[[(t, m) not in skip for t, m in zip(agg["task"], agg["metric"])]]
    g = agg.groupby([*keys, "method"], sort=False)
    agg = agg.assign(n_layers=g["layer"].transform("size"), _first=g["_pos"].transform("min"))
    valid = agg[agg["value_mean"].notna()]
    # best first within each group and method: descending mean (ascending where lower is
    # better), ties in order of appearance
    key = np.where(valid["higher_is_better"], -valid["value_mean"], valid["value_mean"])
    ranked = valid.assign(_key=key).sort_values(["_key", "_pos"], kind="stable")
    best = ranked.drop_duplicates([*keys, "method"], keep="first").sort_values("_first")
    out = best.rename(columns={"layer": "best_layer", "value_mean": "value"})
    out = out[BEST_LAYER_COLUMNS].reset_index(drop=True)
    out["higher_is_better"] = out["higher_is_better"].astype(bool)
    out["value"] = out["value"].astype(np.float64)
    out["n_layers"] = out["n_layers"].astype(np.int64)
    return out
