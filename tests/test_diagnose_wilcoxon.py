"""Paired Wilcoxon test of each model against its best baseline (beyond_baseline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from baselens.diagnose.beyond_baseline import (
    add_paired_tests,
    beyond_best_baseline,
    wilcoxon_signed_rank,
)


def test_equals_scipy_and_edge_cases():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30) + 0.5
    p, n = wilcoxon_signed_rank(x, y)
    assert n == 30 and p == pytest.approx(wilcoxon(x, y).pvalue, rel=1e-12)
    x[3] = np.nan  # NaN pairs dropped
    p, n = wilcoxon_signed_rank(x, y)
    ok = np.isfinite(x)
    assert n == 29 and p == pytest.approx(wilcoxon(x[ok], y[ok]).pvalue, rel=1e-12)
    assert wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0]) == (1.0, 2)
    p, n = wilcoxon_signed_rank([], [])
    assert np.isnan(p) and n == 0


def _tables():
    rng = np.random.default_rng(1)
    perts = [f"P{i}" for i in range(25)]
    base_a = rng.uniform(0.2, 0.4, size=25)
    base_b = base_a + 0.05
    model = base_b + rng.normal(0.1, 0.05, size=25)
    per = []
    for m, kind, v in (("A", "baseline", base_a), ("B", "baseline", base_b), ("M", "model", model)):
        per.append(pd.DataFrame({"method": m, "method_kind": kind, "layer": "default",
                                 "task": "replicate_retrieval", "batch_level": "NR",
                                 "perturbation": perts, "metric": "mean_average_precision",
                                 "value": v, "fold": 0}))
    per = pd.concat(per, ignore_index=True)
    sc = per.groupby(["method", "method_kind", "layer", "task", "batch_level", "metric"],
                     as_index=False)["value"].mean().assign(fold=0, seed=0, n=25)
    # a task scored over 5 folds without per-item rows
    folds = []
    for m, kind, off in (("A", "baseline", 0.0), ("B", "baseline", 0.1), ("M", "model", 0.2)):
        for f in range(5):
            folds.append(dict(method=m, method_kind=kind, layer="default", task="knn_probe",
                              batch_level="NSP", metric="macro_f1", fold=f, seed=0, n=10,
                              value=0.3 + off + 0.01 * f + (0.02 * (f % 2) if m == "M" else 0)))
    # a model without baseline rows in its group
    lone = dict(method="M", method_kind="model", layer="default", task="batch_mixing",
                batch_level="NR", metric="ilisi_scaled", fold=0, seed=0, n=10, value=0.5)
    sc = pd.concat([sc, pd.DataFrame(folds), pd.DataFrame([lone])], ignore_index=True)
    return sc, per, base_b, model


def test_paired_over_perturbations_folds_or_nothing():
    sc, per, base_b, model = _tables()
    out = add_paired_tests(beyond_best_baseline(sc), sc, per)
    # beyond_best_baseline pairs and tests itself now; add_paired_tests is the same table
    direct = beyond_best_baseline(sc, per)
    assert list(out.columns) == list(direct.columns)
    assert {"wilcoxon_p", "n_paired", "paired_over", "p", "p_adjusted", "verdict"} <= set(out)
    pd.testing.assert_frame_equal(out.reset_index(drop=True), direct.reset_index(drop=True),
                                  check_like=True)
    assert (out["p"].fillna(-1) == out["wilcoxon_p"].fillna(-1)).all()
    r = out[out.task == "replicate_retrieval"].iloc[0]
    assert r["best_baseline"] == "B" and r["paired_over"] == "perturbation"
    assert r["n_paired"] == 25
    assert r["wilcoxon_p"] == pytest.approx(wilcoxon(model, base_b).pvalue, rel=1e-12)
    r = out[out.task == "knn_probe"].iloc[0]
    assert r["paired_over"] == "fold" and r["n_paired"] == 5
    m = sc[(sc.task == "knn_probe") & (sc.method == "M")].sort_values("fold")["value"]
    b = sc[(sc.task == "knn_probe") & (sc.method == "B")].sort_values("fold")["value"]
    assert r["wilcoxon_p"] == pytest.approx(wilcoxon(m.to_numpy(), b.to_numpy()).pvalue)
    r = out[out.task == "batch_mixing"].iloc[0]
    assert r["paired_over"] == "" and r["n_paired"] == 0 and np.isnan(r["wilcoxon_p"])


def test_equals_scipy_in_every_regime():
    """exact (no ties, n ≤ 50), sign-flip enumeration (ties/zeros, n ≤ 13), normal
    approximation (ties and n > 13, or n > 50)."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(2, 70))
        dec = (1, 2, 8)[trial % 3]
        x = np.round(rng.normal(size=n), dec)
        y = np.round(rng.normal(size=n) + rng.normal() * 0.5, dec)
        if trial % 4 == 0:
            y[: n // 3] = x[: n // 3]  # zeros
        if np.all(x == y):
            continue
        ref = wilcoxon(x, y).pvalue
        assert wilcoxon_signed_rank(x, y)[0] == pytest.approx(ref, rel=1e-9, abs=1e-15), (n, dec)
