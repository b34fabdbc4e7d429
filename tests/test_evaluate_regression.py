"""Regression probe: HEST protocol (standardize, PCA ≤ 256, ridge, per-target Pearson)."""

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate import regression_probe as rp
from baselens.evaluate.regression_probe import pearson_columns, regression_probe


def _table(n=120, d=20, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"Metadata_Source": np.where(np.arange(n) % 2, "S1", "S2"),
                       "Metadata_Batch": [f"B{i % 4}" for i in range(n)],
                       "Metadata_Plate": [f"P{i % 6}" for i in range(n)],
                       "Metadata_Well": [f"W{i % 10}" for i in range(n)],
                       "Metadata_ControlType": ""})
    x = rng.normal(size=(n, d))
    feats = [f"f{j}" for j in range(d)]
    df = pd.concat([df, pd.DataFrame(x, columns=feats)], axis=1)
    df["linear"] = x[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)
    df["noise"] = rng.normal(size=n)
    return df, feats


def test_pearson_columns():
    y = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    p = np.array([[2.0, 0.0], [4.0, 1.0], [6.0, 2.0]])
    r = pearson_columns(y, p)
    assert r[0] == pytest.approx(1.0) and np.isnan(r[1])  # constant target -> NaN


def test_signal_and_noise_targets_every_level():
    df, feats = _table()
    s, per = regression_probe(df, feats, ["linear", "noise"])
    assert set(s.batch_level) == {"NR", "NSP", "NSB", "NSS", "NSL"}
    lin = s[s.metric == "pearson:linear"].groupby("batch_level")["value"].mean()
    noise = s[s.metric == "pearson:noise"]["value"]
    assert (lin > 0.95).all()
    assert abs(noise.mean()) < 0.25
    mean = s[s.metric == "pearson"]
    assert (mean["n"] == 2).all() and not s.duplicated(["batch_level", "metric", "fold"]).any()
    assert set(per["perturbation"]) == {"linear", "noise"} and set(per.metric) == {"pearson"}
    assert list(s.columns) == ["metric", "value", "n", "fold", "batch_level", "target"]


def test_alpha_options_target_frame_and_pca_cap(monkeypatch):
    df, feats = _table(n=40, d=300)  # d > n: PCA to n_train - 1 components
    seen = []
    real = rp.PCA

    def spy(n_components, **kw):
        seen.append(n_components)
        return real(n_components=n_components, **kw)

    monkeypatch.setattr(rp, "PCA", spy)
    targets = df[["linear"]].rename(columns={"linear": "t"})
    for alpha in ("hest", "cv", 1.0):
        s, _ = regression_probe(df, feats, targets, levels=["NR"], alpha=alpha, n_splits=4)
        assert set(s.metric) == {"pearson:t", "pearson"}
    assert set(seen) == {29}  # 30 training wells per fold -> 29 components (< 256, < d)
    s, _ = regression_probe(df, feats[:5], targets, levels=["NR"], n_splits=4)
    assert seen[-1] == 5      # d < n: all 5 dimensions


def test_skips_missing_targets_and_errors():
    df, feats = _table()
    df["Metadata_Source"] = "S1"
    df.loc[:9, "linear"] = np.nan  # dropped rows
    s, _ = regression_probe(df, feats, ["linear"], levels=["NR", "NSS"])
    assert set(s.batch_level) == {"NR"} and "NSS" in s.attrs["skipped_levels"]
    assert s[s.metric == "pearson:linear"]["n"].sum() == 110
    with pytest.raises(ValueError):
        regression_probe(df, feats, ["missing_target"])
