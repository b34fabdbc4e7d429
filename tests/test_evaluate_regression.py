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
    pr = per[per.metric == "pearson"]
    assert set(pr["perturbation"]) == {"linear", "noise"} and set(per.metric) == {"pearson", "abs_error"}
    err = per[per.metric == "abs_error"]
    # one error per held-out well and level (no perturbation column: wells are split)
    assert (err.groupby("batch_level").size() == len(df)).all()
    assert "grouped by" not in s.attrs["fold_plan"]["NR"]
    assert list(s.columns) == ["metric", "value", "n", "fold", "batch_level", "target"]


def test_alpha_options_target_frame_and_pca_cap(monkeypatch):
    df, feats = _table(n=40, d=300)  # d > n: PCA to n_train - 1 components
    seen = []
    real = rp._pca_scores

    def spy(a, b, k):
        seen.append(k)
        return real(a, b, k)

    monkeypatch.setattr(rp, "_pca_scores", spy)
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
    assert s.attrs["dropped"] == [{"what": "wells", "n_removed": 10, "n_kept": 110,
                                   "reason": "no value for some regression target (linear)"}]
    with pytest.raises(ValueError):
        regression_probe(df, feats, ["missing_target"])


def test_gram_pca_equals_sklearn_pca_for_the_ridge_fit():
    """More features than wells: the Gram-matrix axes span sklearn's PCA subspace."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    a, b, y = rng.normal(size=(60, 200)), rng.normal(size=(20, 200)), rng.normal(size=(60, 2))
    mu = a.mean(axis=0)
    p = PCA(30, svd_solver="full").fit(a - mu)
    ref = Ridge(alpha=1.0).fit(p.transform(a - mu), y).predict(p.transform(b - mu))
    ga, gb = rp._pca_scores(a, b, 30)
    np.testing.assert_allclose(Ridge(alpha=1.0).fit(ga, y).predict(gb), ref, atol=1e-9)


def test_replicate_wells_of_a_perturbation_never_train_its_prediction():
    """Features = a random code per perturbation, target = a random value per perturbation:
    only recognising the perturbation predicts it. Grouped folds: no signal; wells split
    at random: near-perfect."""
    rng = np.random.default_rng(3)
    n_pert, reps = 60, 4
    pert = np.repeat(np.arange(n_pert), reps)
    code, value = rng.normal(size=(n_pert, 200)), rng.normal(size=n_pert)
    df = pd.DataFrame(code[pert] + 0.01 * rng.normal(size=(len(pert), 200)),
                      columns=[f"f{j}" for j in range(200)])
    df["Metadata_Perturbation"] = [f"p{i}" for i in pert]
    df["Metadata_Plate"] = [f"P{r}" for r in np.tile(np.arange(reps), n_pert)]
    df["Metadata_Well"] = [f"W{i:03d}" for i in pert]
    df["y"] = value[pert]
    feats = [f"f{j}" for j in range(200)]
    s, per = regression_probe(df, feats, ["y"], levels=["NR", "NSP"], alpha=1e-3)
    r = s[s.metric == "pearson"].groupby("batch_level")["value"].mean()
    assert (r.abs() < 0.4).all(), r
    assert "grouped by Metadata_Perturbation" in s.attrs["fold_plan"]["NSP"]
    s_u, per_u = regression_probe(df, feats, ["y"], levels=["NR", "NSP"], alpha=1e-3, group=None)
    r_u = s_u[s_u.metric == "pearson"].groupby("batch_level")["value"].mean()
    assert (r_u > 0.9).all(), r_u
    e, e_u = (p[(p.metric == "abs_error")].groupby("batch_level")["value"].mean() for p in (per, per_u))
    assert (e_u < 0.5 * e).all()
