"""Relationship recall in folds (RxRx3-core style), both tails, batch levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.relationship_recall import (
    level_similarity,
    recall_from_similarity,
    relationship_recall,
    sample_folds,
)
from baselens.metrics import known_relationship_recall

PERT = "Metadata_Perturbation"


def genes(n_genes=30, wells=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_genes):
        c = rng.normal(size=6)
        for w in range(wells if g % 5 else 4):
            rows.append({PERT: f"g{g:02d}", "Metadata_ControlType": "", "Metadata_Batch": f"b{w % 3}",
                         "Metadata_Plate": f"p{w % 6}", "Metadata_Source": "s", "Metadata_Well": f"w{w}",
                         **dict(zip([f"f{i}" for i in range(6)], c + rng.normal(size=6)))})
    pairs = pd.DataFrame({"entity1": [f"g{i:02d}" for i in range(0, 28, 2)],
                          "entity2": [f"g{i + 1:02d}" for i in range(0, 28, 2)]})
    return pd.DataFrame(rows), [f"f{i}" for i in range(6)], pairs


def test_sample_folds_fixed_size_disjoint_and_seeded():
    df, _, _ = genes()
    folds, short = sample_folds(df, 3, 4, seed=1)
    again, _ = sample_folds(df, 3, 4, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    assert short == 0
    for f in folds:
        assert df.iloc[f].groupby(PERT).size().eq(4).all()
    full = df.groupby(PERT).size() >= 12
    rows_full = [set(f[df.iloc[f][PERT].map(full).to_numpy()]) for f in folds]
    assert not (rows_full[0] & rows_full[1]) and not (rows_full[1] & rows_full[2])


def test_tails_reported_separately_and_nr_equals_metric():
    df, feats, pairs = genes()
    scores, per = relationship_recall(df, feats, pairs, n_folds=3, n_per_perturbation=4, seed=0)
    s = scores[scores.source == "all"].pivot(index="fold", columns="metric", values="value")
    assert list(s.index) == [0, 1, 2]
    np.testing.assert_allclose(s["recall_0.05_0.95"], s["recall_top_0.05"] + s["recall_bottom_0.05"])
    # fold 0 equals the (efaar-tested) metric on that fold's perturbation means
    folds, _ = sample_folds(df, 3, 4, seed=0)
    pp = df.iloc[folds[0]].groupby(PERT)[feats].mean()
    res = known_relationship_recall(pp.to_numpy(), pp.index.tolist(), pairs)
    assert s.loc[0, "recall_top_0.05"] == pytest.approx(res["recall_top_0.05"])
    assert s.loc[0, "recall_0.05_0.95"] == pytest.approx(res["recall_0.05_0.95"])
    assert set(per.metric) == {"partner_recall_top"}


def test_level_similarity_is_mean_cross_group_cosine():
    df = pd.DataFrame({PERT: ["a", "a", "b", "b"], "Metadata_Batch": ["x", "y", "x", "y"],
                       "f0": [1.0, 0.0, 1.0, 1.0], "f1": [0.0, 1.0, 1.0, 0.0]})
    names, s = level_similarity(df, ["f0", "f1"], "NSB")
    u = {("a", "x"): [1, 0], ("a", "y"): [0, 1], ("b", "x"): [1, 1], ("b", "y"): [1, 0]}
    cos = lambda p, q: np.dot(p, q) / np.linalg.norm(p) / np.linalg.norm(q)  # noqa: E731
    want = np.mean([cos(u[("a", "x")], u[("b", "y")]), cos(u[("a", "y")], u[("b", "x")])])
    assert names == ["a", "b"] and s[0, 1] == pytest.approx(want) and s[1, 0] == pytest.approx(want)
    # no restriction and one profile per perturbation: EFAAR's cosine of means
    names, s_nr = level_similarity(df, ["f0", "f1"], "NR")
    m = df.groupby(PERT)[["f0", "f1"]].mean().to_numpy()
    assert s_nr[0, 1] == pytest.approx(cos(m[0], m[1]))


def test_generic_recall_equals_metric_without_restriction():
    df, feats, pairs = genes()
    names, s = level_similarity(df, feats, "NR")
    pp = df.groupby(PERT)[feats].mean()
    res = known_relationship_recall(pp.to_numpy(), pp.index.tolist(), pairs)
    ours = recall_from_similarity(s, names, pairs)
    for k in ("recall_0.05_0.95", "recall_top_0.05"):
        assert ours[k] == pytest.approx(res[k])


def test_batch_levels_in_recall():
    df, feats, pairs = genes()
    with pytest.warns(UserWarning, match="NSS skipped"):
        scores, per = relationship_recall(df, feats, pairs, batch_level=["NR", "NSB", "NSS"])
    assert set(scores.batch_level) == {"NR", "NSB"}
    assert set(per.batch_level) == {"NR", "NSB"}
