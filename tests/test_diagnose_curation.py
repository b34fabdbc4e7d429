"""Benchmark curation (Seal et al. 2026 recommendations 1–4) on a hand-built assay table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_ind

from baselens.diagnose.curation import ASSAY_CONFOUND_COLUMNS, assay_confounds, curated_tasks


def _table():
    rng = np.random.default_rng(0)
    n = 100
    cpds = [f"C{i:03d}" for i in range(n)]
    cc = pd.Series(rng.normal(0, 0.2, size=n), index=cpds)
    cc.iloc[:30] -= 1.0  # 30 cytotoxic compounds
    rows = []
    # toxic assay: actives = the cytotoxic compounds
    rows += [(c, "tox", "specific", int(i < 30)) for i, c in enumerate(cpds)]
    # specific assay: 25 actives unrelated to cell count (every 4th compound: 8 of them
    # cytotoxic, as 22 of the 75 inactives)
    rows += [(c, "target", "specific", int(i % 4 == 1)) for i, c in enumerate(cpds)]
    # viability assay, predictable
    rows += [(c, "viab", "viability", int(i < 25)) for i, c in enumerate(cpds)]
    # few actives, unrelated
    rows += [(c, "rare", "specific", int(i in (10, 50, 70))) for i, c in enumerate(cpds)]
    # no actives at all
    rows += [(c, "none", "specific", 0) for c in cpds]
    labels = pd.DataFrame(rows, columns=["Metadata_Perturbation", "assay", "assay_type", "active"])
    return cc, labels


def test_flags_and_statistics():
    cc, labels = _table()
    out = assay_confounds(cc, labels)
    assert list(out.columns) == ASSAY_CONFOUND_COLUMNS
    out = out.set_index("assay")
    assert out.loc["tox", "predictable_by_cell_count"]
    assert out.loc["tox", "cell_count_balanced_accuracy"] > 0.95
    assert -1.0 < out.loc["tox", "threshold"] < 0.0
    assert out.loc["viab", "predictable_by_cell_count"]
    assert not out.loc["target", "predictable_by_cell_count"]
    assert not out.loc["rare", "predictable_by_cell_count"]
    assert not out.loc["none", "predictable_by_cell_count"]
    assert np.isnan(out.loc["none", "p_value"]) and out.loc["none", "n_actives"] == 0
    # t-test = scipy's Welch test on every compound
    y = labels[labels.assay == "target"].set_index("Metadata_Perturbation")["active"]
    ref = ttest_ind(cc[y.index[y == 1]], cc[y.index[y == 0]], equal_var=False)
    assert out.loc["target", "t_statistic"] == pytest.approx(ref.statistic)
    assert out.loc["target", "p_value"] == pytest.approx(ref.pvalue)
    assert out.loc["target", "n_actives"] == 25 and out.loc["target", "n_inactives"] == 75
    m = out["p_value"].notna().sum()
    assert out.loc["target", "p_value_bonferroni"] == pytest.approx(min(1, ref.pvalue * m))
    # curated list: not predictable, not viability, with the ≥ 20 rule noted
    cur = curated_tasks(out.reset_index())
    assert cur["assay"].tolist() == ["target", "rare"]
    assert cur.set_index("assay").loc["target", "enough_compounds"]
    assert not cur.set_index("assay").loc["rare", "enough_compounds"]
    assert "fewer than 20" in cur.set_index("assay").loc["rare", "note"]


def test_high_balanced_accuracy_without_significance_is_not_flagged():
    # 2 of 3 actives below every inactive: the sweep reaches 0.83 by chance, but the
    # third active sits high and the groups do not differ significantly
    cc = pd.Series([-0.50, -0.45, 0.60] + list(np.linspace(-0.4, 0.4, 40)),
                   index=[f"C{i}" for i in range(43)])
    labels = pd.DataFrame({"Metadata_Perturbation": cc.index, "assay": "a",
                           "active": [1, 1, 1] + [0] * 40})
    out = assay_confounds(cc, labels).iloc[0]
    assert out["cell_count_balanced_accuracy"] == pytest.approx(5 / 6)
    assert out["p_value"] > 0.05
    assert not out["predictable_by_cell_count"]


def test_empty_inputs_give_the_columns():
    out = assay_confounds(pd.Series(dtype=float), None)
    assert list(out.columns) == ASSAY_CONFOUND_COLUMNS and out.empty
    assert list(curated_tasks(out).columns)[:2] == ["assay", "assay_type"]
