"""Known answers for baselens.diagnose.beyond_baseline on hand-built contract tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from baselens.diagnose.beyond_baseline import (
    aggregate_scores,
    best_baselines,
    beyond_best_baseline,
    per_perturbation_differential,
)


def score_rows(spec, *, task="replicate_retrieval", metric="mean_average_precision",
               batch_level="all"):
    """spec: list of (method, kind, layer, [values over folds])."""
    rows = []
    for method, kind, layer, values in spec:
        for fold, v in enumerate(values):
            rows.append(dict(method=method, method_kind=kind, layer=layer, task=task,
                             batch_level=batch_level, metric=metric, fold=fold, seed=0,
                             value=v, n=10))
    return pd.DataFrame(rows)


def test_known_answer_single_run():
    scores = score_rows([
        ("A", "baseline", "default", [0.3]),
        ("B", "baseline", "default", [0.5]),
        ("M", "model", "default", [0.7]),
    ])
    out = beyond_best_baseline(scores)
    assert len(out) == 1
    r = out.iloc[0]
    assert r["method"] == "M" and r["method_kind"] == "model"
    assert r["best_baseline"] == "B" and r["best_baseline_layer"] == "default"
    assert r["value_mean"] == pytest.approx(0.7)
    assert r["best_baseline_mean"] == pytest.approx(0.5)
    assert r["difference"] == pytest.approx(0.2)
    assert r["improvement"] == pytest.approx(0.2)
    assert r["ratio"] == pytest.approx(1.4)
    # one run is one pair: a single number is never a significant difference
    assert r["verdict"] == "not distinguishable" and not r["beats_best_baseline"]
    assert r["n_paired"] == 1 and r["paired_over"] == "fold"
    assert r["n_runs"] == 1
    assert math.isnan(r["value_std"])  # a single run has no spread


def test_folds_and_seeds_give_mean_and_sample_std():
    rows = []
    for fold, seed, v in [(0, 0, 0.6), (1, 0, 0.8), (0, 1, 0.7), (1, 1, 0.7)]:
        rows.append(dict(method="M", method_kind="model", layer="default", task="t",
                         batch_level="all", metric="m", fold=fold, seed=seed, value=v, n=5))
    for fold, v in [(0, 0.4), (1, 0.6)]:
        rows.append(dict(method="B", method_kind="baseline", layer="default", task="t",
                         batch_level="all", metric="m", fold=fold, seed=0, value=v, n=5))
    out = beyond_best_baseline(pd.DataFrame(rows)).iloc[0]
    assert out["value_mean"] == pytest.approx(0.7)
    assert out["value_std"] == pytest.approx(np.std([0.6, 0.8, 0.7, 0.7], ddof=1))
    assert out["n_runs"] == 4
    assert out["best_baseline_mean"] == pytest.approx(0.5)
    assert out["best_baseline_std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert out["difference"] == pytest.approx(0.2)
    assert out["ratio"] == pytest.approx(1.4)


def test_best_baseline_is_chosen_on_the_mean_not_a_single_fold():
    # A has the single highest fold (0.9) but B has the higher mean.
    scores = score_rows([
        ("A", "baseline", "default", [0.9, 0.1]),
        ("B", "baseline", "default", [0.6, 0.6]),
        ("M", "model", "default", [0.5, 0.5]),
    ])
    r = beyond_best_baseline(scores).iloc[0]
    assert r["best_baseline"] == "B"
    assert r["difference"] == pytest.approx(-0.1)
    assert not r["beats_best_baseline"]


def test_groups_are_separate_and_layers_are_methods():
    a = score_rows([
        ("conv", "baseline", "l1", [0.2]),
        ("conv", "baseline", "l2", [0.4]),
        ("net", "model", "block1", [0.3]),
        ("net", "model", "block2", [0.6]),
    ], task="t1", metric="m1")
    b = score_rows([
        ("conv", "baseline", "l1", [0.9]),
        ("conv", "baseline", "l2", [0.1]),
        ("net", "model", "block1", [0.5]),
        ("net", "model", "block2", [0.95]),
    ], task="t2", metric="m1")
    out = beyond_best_baseline(pd.concat([a, b], ignore_index=True))
    assert len(out) == 4
    t1 = out[out["task"] == "t1"].set_index("layer")
    assert set(t1["best_baseline_layer"]) == {"l2"}
    assert t1.loc["block2", "difference"] == pytest.approx(0.2)
    assert t1.loc["block1", "difference"] == pytest.approx(-0.1)
    # within a group, rows are ordered best improvement first
    assert list(out[out["task"] == "t1"]["layer"]) == ["block2", "block1"]
    t2 = out[out["task"] == "t2"].set_index("layer")
    assert set(t2["best_baseline_layer"]) == {"l1"}
    assert t2.loc["block2", "difference"] == pytest.approx(0.05)


def test_batch_levels_never_mix():
    a = score_rows([("B", "baseline", "default", [0.5]), ("M", "model", "default", [0.6])],
                   batch_level="NR")
    b = score_rows([("B", "baseline", "default", [0.2]), ("M", "model", "default", [0.1])],
                   batch_level="NSB")
    out = beyond_best_baseline(pd.concat([a, b])).set_index("batch_level")
    assert out.loc["NR", "difference"] == pytest.approx(0.1)
    assert out.loc["NSB", "difference"] == pytest.approx(-0.1)


def test_reference_is_compared_and_baselines_are_not_rows():
    scores = score_rows([
        ("cell_count", "baseline", "default", [0.42]),
        ("ground_truth", "reference", "default", [0.73]),
    ])
    out = beyond_best_baseline(scores)
    assert list(out["method"]) == ["ground_truth"]
    assert out.iloc[0]["method_kind"] == "reference"
    assert out.iloc[0]["improvement"] == pytest.approx(0.31)


def test_nan_values_are_skipped_and_all_nan_methods_never_win():
    scores = score_rows([
        ("A", "baseline", "default", [np.nan, np.nan]),  # all NaN: cannot be best
        ("B", "baseline", "default", [0.4, np.nan]),
        ("M", "model", "default", [0.5, 0.7]),
        ("N", "model", "default", [np.nan]),
    ])
    out = beyond_best_baseline(scores).set_index("method")
    assert out.loc["M", "best_baseline"] == "B"
    assert out.loc["M", "best_baseline_mean"] == pytest.approx(0.4)
    assert out.loc["M", "difference"] == pytest.approx(0.2)
    assert math.isnan(out.loc["N", "value_mean"])
    assert math.isnan(out.loc["N", "difference"])
    assert not out.loc["N", "beats_best_baseline"]
    assert out.loc["N", "n_runs"] == 0
    # NaN rows sort last
    assert list(out.index) == ["M", "N"]


def test_no_baseline_in_group():
    scores = score_rows([("M", "model", "default", [0.5])])
    out = beyond_best_baseline(scores)
    assert len(out) == 1
    r = out.iloc[0]
    assert r["best_baseline"] is None
    assert math.isnan(r["best_baseline_mean"]) and math.isnan(r["difference"])
    assert math.isnan(r["ratio"])
    assert not r["beats_best_baseline"] and r["verdict"] == "no baseline"


def test_only_baselines_gives_empty_table_with_columns():
    scores = score_rows([("A", "baseline", "default", [0.3]), ("B", "baseline", "default", [0.5])])
    out = beyond_best_baseline(scores)
    assert out.empty
    assert {"difference", "ratio", "best_baseline"} <= set(out.columns)
    best = best_baselines(scores)
    assert best.iloc[0]["best_baseline"] == "B"


def test_zero_baseline_gives_nan_ratio():
    scores = score_rows([("A", "baseline", "default", [0.0]), ("M", "model", "default", [0.2])])
    r = beyond_best_baseline(scores).iloc[0]
    assert r["difference"] == pytest.approx(0.2)
    assert math.isnan(r["ratio"])


def test_ties_break_alphabetically():
    scores = score_rows([
        ("zeta", "baseline", "default", [0.5]),
        ("alpha", "baseline", "default", [0.5]),
        ("M", "model", "default", [0.6]),
    ])
    assert beyond_best_baseline(scores).iloc[0]["best_baseline"] == "alpha"


def test_lower_is_better_metric():
    scores = score_rows([
        ("A", "baseline", "default", [0.3]),
        ("B", "baseline", "default", [0.5]),
        ("M", "model", "default", [0.2]),
    ], task="t", metric="error")
    r = beyond_best_baseline(scores, lower_is_better={"error"}).iloc[0]
    assert r["best_baseline"] == "A"
    assert r["difference"] == pytest.approx(-0.1)
    assert r["improvement"] == pytest.approx(0.1)
    assert r["ratio"] == pytest.approx(2 / 3)
    assert r["higher_is_better"] == False  # noqa: E712
    # the same numbers read as higher-is-better: B is best and M loses
    r2 = beyond_best_baseline(scores).iloc[0]
    assert r2["best_baseline"] == "B" and r2["improvement"] < 0


def test_optional_columns_default():
    scores = pd.DataFrame(dict(
        method=["B", "M"], method_kind=["baseline", "model"], task=["t", "t"],
        metric=["m", "m"], value=[0.5, 0.7],
    ))
    r = beyond_best_baseline(scores).iloc[0]
    assert r["layer"] == "default" and r["batch_level"] == "all"
    assert r["difference"] == pytest.approx(0.2)


def test_missing_required_column_raises():
    with pytest.raises(ValueError, match="method_kind"):
        beyond_best_baseline(pd.DataFrame(dict(method=["a"], task=["t"], metric=["m"],
                                               value=[1.0])))


def test_aggregate_keeps_baselines_and_n():
    scores = score_rows([("A", "baseline", "default", [0.3, 0.5]),
                         ("M", "model", "x", [0.7])])
    agg = aggregate_scores(scores).set_index("method")
    assert agg.loc["A", "value_mean"] == pytest.approx(0.4)
    assert agg.loc["A", "n_runs"] == 2
    assert agg.loc["A", "n"] == 10
    assert agg.loc["M", "layer"] == "x"


# ------------------------------------------------------------------ per perturbation
def pp_rows(table, *, task="replicate_retrieval", metric="average_precision",
            batch_level="all"):
    """table: {(method, kind): {perturbation: value}}."""
    rows = []
    for (method, kind), values in table.items():
        for pert, v in values.items():
            rows.append(dict(method=method, method_kind=kind, layer="default", task=task,
                             batch_level=batch_level, perturbation=pert, metric=metric,
                             value=v))
    return pd.DataFrame(rows)


def test_per_perturbation_best_baseline_is_per_perturbation():
    pp = pp_rows({
        ("A", "baseline"): {"g1": 0.9, "g2": 0.1, "g3": 0.2},
        ("B", "baseline"): {"g1": 0.2, "g2": 0.3, "g3": np.nan},
        ("M", "model"): {"g1": 0.8, "g2": 0.9, "g3": 0.25},
    })
    out = per_perturbation_differential(pp, "replicate_retrieval", "average_precision")
    out = out.set_index("perturbation")
    assert out.loc["g1", "best_baseline"] == "A"
    assert out.loc["g1", "difference"] == pytest.approx(-0.1)
    assert out.loc["g2", "best_baseline"] == "B"
    assert out.loc["g2", "best_baseline_value"] == pytest.approx(0.3)
    assert out.loc["g2", "difference"] == pytest.approx(0.6)
    assert out.loc["g3", "best_baseline"] == "A"  # NaN baseline values are ignored
    assert out.loc["g3", "difference"] == pytest.approx(0.05)
    # largest improvement first: g2 is what only the model retrieves
    assert list(out.index) == ["g2", "g3", "g1"]


def test_per_perturbation_filters_task_metric_and_level():
    a = pp_rows({("A", "baseline"): {"g1": 0.5}, ("M", "model"): {"g1": 0.7}})
    b = pp_rows({("A", "baseline"): {"g1": 0.1}, ("M", "model"): {"g1": 0.0}},
                metric="p_value")
    c = pp_rows({("A", "baseline"): {"g1": 0.0}, ("M", "model"): {"g1": 0.0}},
                task="other")
    d = pp_rows({("A", "baseline"): {"g1": 0.9}, ("M", "model"): {"g1": 0.1}},
                batch_level="NSB")
    pp = pd.concat([a, b, c, d], ignore_index=True)
    out = per_perturbation_differential(pp, "replicate_retrieval", "average_precision",
                                        batch_level="all")
    assert len(out) == 1 and out.iloc[0]["difference"] == pytest.approx(0.2)
    both = per_perturbation_differential(pp, "replicate_retrieval", "average_precision")
    assert set(both["batch_level"]) == {"all", "NSB"}
    pv = per_perturbation_differential(pp, "replicate_retrieval", "p_value",
                                       lower_is_better=True)
    r = pv.iloc[0]
    assert r["best_baseline_value"] == pytest.approx(0.1)
    assert r["difference"] == pytest.approx(-0.1) and r["improvement"] == pytest.approx(0.1)


def test_per_perturbation_without_baseline_or_empty():
    pp = pp_rows({("M", "model"): {"g1": 0.7}})
    out = per_perturbation_differential(pp, "replicate_retrieval", "average_precision")
    assert math.isnan(out.iloc[0]["best_baseline_value"])
    assert out.iloc[0]["best_baseline"] is None
    empty = per_perturbation_differential(pp.iloc[:0], "replicate_retrieval", "x")
    assert empty.empty and "difference" in empty.columns
    assert per_perturbation_differential(None, "t", "m").empty


def test_per_perturbation_duplicates_are_averaged():
    pp = pd.concat([
        pp_rows({("A", "baseline"): {"g1": 0.4}, ("M", "model"): {"g1": 0.6}}),
        pp_rows({("M", "model"): {"g1": 0.8}}),
    ])
    out = per_perturbation_differential(pp, "replicate_retrieval", "average_precision")
    assert out.iloc[0]["value"] == pytest.approx(0.7)
    assert out.iloc[0]["difference"] == pytest.approx(0.3)
