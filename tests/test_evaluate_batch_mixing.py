"""Batch-mixing metrics: iLISI on hand-built known cases; accuracy/silhouette behave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.batch_mixing import batch_mixing, ilisi, lisi, simpson_index


def test_lisi_separated_batches_is_one():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 100]
    y = ["a"] * 40 + ["b"] * 40
    np.testing.assert_allclose(lisi(x, y, perplexity=10), 1.0, atol=1e-9)
    med, scaled = ilisi(x, y, perplexity=10)
    assert med == pytest.approx(1.0) and scaled == pytest.approx(0.0)


def test_lisi_identical_points_is_inverse_simpson_of_label_shares():
    # all distances 0 -> uniform weights over the k neighbours
    x = np.zeros((61, 2))
    y = ["a"] * 30 + ["b"] * 31
    values = lisi(x, y, perplexity=20)  # k = 60 = every other point
    a = 1 / ((29 / 60) ** 2 + (31 / 60) ** 2)
    b = 1 / ((30 / 60) ** 2 + (30 / 60) ** 2)
    np.testing.assert_allclose(values[:30], a)
    np.testing.assert_allclose(values[30:], b)


def test_simpson_perplexity_calibration():
    # 3 neighbours at distance 0 labelled x,y,z and one far neighbour: perplexity 3 puts
    # (almost) all weight on the three -> Simpson 1/3
    d = np.array([[0.0, 0.0, 0.0, 50.0]])
    s = simpson_index(d, np.array([[0, 1, 2, 0]]), perplexity=3)
    assert s[0] == pytest.approx(1 / 3, rel=1e-4)


def test_batch_mixing_detects_batch_signal():
    rng = np.random.default_rng(1)
    rows = []
    for b in range(3):
        shift = rng.normal(size=8) * 3
        for p in range(2):
            for w in range(10):
                rows.append({"Metadata_Batch": f"b{b}", "Metadata_Plate": f"b{b}p{p}", "Metadata_Source": "s",
                             "Metadata_Well": f"w{w}", "Metadata_ControlType": "negcon",
                             **dict(zip([f"f{i}" for i in range(8)], shift + rng.normal(size=8)))})
    df = pd.DataFrame(rows)
    feats = [f"f{i}" for i in range(8)]
    with pytest.warns(UserWarning, match="NSS skipped"):
        scores, per = batch_mixing(df, feats, labels=("Metadata_Batch", "Metadata_Source"), perplexity=5)
    s = scores.set_index(["batch_level", "metric"])["value"]
    assert s[("NSB", "batch_classification_accuracy")] > 0.9 > s[("NSB", "batch_classification_chance")] + 0.5
    assert s[("NSB", "silhouette_batch")] > 0.3
    assert s[("NSB", "ilisi")] < 1.3
    # no batch signal: shuffled labels mix
    df2 = df.assign(Metadata_Batch=rng.permutation(df["Metadata_Batch"].to_numpy()))
    s2 = batch_mixing(df2, feats, labels=("Metadata_Batch",), perplexity=5)[0].set_index("metric")["value"]
    assert s2["ilisi"] > 2.0 and s2["batch_classification_accuracy"] < 0.6
    assert per.empty
