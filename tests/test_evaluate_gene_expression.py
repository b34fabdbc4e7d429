"""Gene-expression probe (HEST-Benchmark protocol): known answers and reference equality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.gene_expression import (
    count_matched_pearson,
    count_strata,
    gene_expression_probe,
    hest_alpha,
    patient_folds,
)


def _data(n_patients=6, per=40, d=12, seed=0):
    rng = np.random.default_rng(seed)
    n = n_patients * per
    x = rng.normal(size=(n, d))
    groups = np.repeat([f"P{i}" for i in range(n_patients)], per)
    return x, groups, rng


def test_linear_target_is_predicted_and_noise_is_not():
    x, groups, rng = _data()
    w = rng.normal(size=x.shape[1])
    y = np.column_stack([x @ w, rng.normal(size=len(x))])
    res = gene_expression_probe(x, pd.DataFrame(y, columns=["linear", "noise"]), groups,
                                n_components=256)
    per = res.per_gene.groupby("gene")["pearson"].mean()
    assert per["linear"] > 0.999
    assert abs(per["noise"]) < 0.15
    # k is capped by the feature count; alpha is HEST's 100 / (k * genes)
    assert set(res.per_gene["n_components"]) == {x.shape[1]}
    assert np.allclose(res.per_gene["alpha"], hest_alpha(x.shape[1], 2))
    assert hest_alpha(256, 50) == pytest.approx(100 / 12800)


def test_no_patient_on_both_sides_and_every_spot_tested_once():
    x, groups, rng = _data(n_patients=9)
    y = rng.normal(size=(len(x), 3))
    res = gene_expression_probe(x, y, groups, n_splits=4, seed=3)
    assert len(res.folds) == 4
    seen = np.zeros(len(x), dtype=int)
    for tr, te in res.folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert (seen == 1).all()
    assert np.isfinite(res.predictions).all()
    # fewer patients than folds: leave-one-patient-out
    folds = patient_folds(groups[: 3 * 40], n_splits=5)
    assert [sorted(set(groups[te])) for _, te in folds] == [["P0"], ["P1"], ["P2"]]


def test_equals_sklearn_pipeline_pca_ridge():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, groups, rng = _data(n_patients=3, per=7, d=30, seed=1)  # n_train 14 < d: k = n_train
    x[:, 5] = 2.0  # a constant feature
    y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(len(x), 4))
    res = gene_expression_probe(x, y, groups, n_components=256)
    for fold, (tr, te) in enumerate(res.folds):
        k = min(256, len(tr), x.shape[1])
        pipe = Pipeline([("scaler", StandardScaler()), ("pca", PCA(n_components=k)),
                         ("ridge", Ridge(alpha=100 / (k * y.shape[1]), fit_intercept=False))])
        pipe.fit(x[tr], y[tr])
        ref = pipe.predict(x[te])
        np.testing.assert_allclose(res.predictions[te], ref, rtol=1e-6, atol=1e-8)
        r_ref = [np.corrcoef(y[te][:, j], ref[:, j])[0, 1] for j in range(y.shape[1])]
        got = res.per_gene[res.per_gene["fold"] == fold]["pearson"].to_numpy()
        np.testing.assert_allclose(got, r_ref, atol=1e-8)


def test_more_spots_than_features_equals_sklearn_and_pca_caps_at_n_components():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    x, groups, rng = _data(n_patients=3, per=50, d=20, seed=2)
    y = rng.normal(size=(len(x), 5)) + x[:, :1]
    splits = [(np.flatnonzero(groups != "P0"), np.flatnonzero(groups == "P0"))]
    res = gene_expression_probe(x, y, groups, n_components=8, splits=splits)
    tr, te = splits[0]
    sc = StandardScaler().fit(x[tr])
    pca = PCA(n_components=8, svd_solver="full").fit(sc.transform(x[tr]))
    reg = Ridge(alpha=100 / (8 * 5), fit_intercept=False).fit(pca.transform(sc.transform(x[tr])), y[tr])
    ref = reg.predict(pca.transform(sc.transform(x[te])))
    np.testing.assert_allclose(res.predictions[te], ref, rtol=1e-6, atol=1e-8)
    assert set(res.per_gene["n_components"]) == {8}
    # spots of the other patients were never tested
    assert np.isnan(res.predictions[tr]).all()


def test_given_splits_must_be_patient_stratified():
    x, groups, rng = _data(n_patients=3)
    y = rng.normal(size=(len(x), 2))
    leaky = [(np.arange(0, 60), np.arange(60, 120))]  # P1 spots 40..79 on both sides
    with pytest.raises(ValueError, match="P1.*both"):
        gene_expression_probe(x, y, groups, splits=leaky)
    with pytest.raises(ValueError, match="2 patients"):
        gene_expression_probe(x, y, np.zeros(len(x)))


def test_non_finite_values_are_named_not_dropped():
    x, groups, rng = _data()
    y = rng.normal(size=(len(x), 2))
    y[7, 1] = np.nan
    with pytest.raises(ValueError, match="Y: 1 spot.*row 7"):
        gene_expression_probe(x, y, groups)


def test_xgboost_option_learns_a_nonlinear_target():
    x, groups, rng = _data(n_patients=5, per=60, d=4, seed=4)
    y = np.column_stack([np.abs(x[:, 0]), rng.normal(size=len(x))])
    res = gene_expression_probe(x, y, groups, model="xgboost", n_splits=5,
                                xgb_params={"n_estimators": 40})
    ridge = gene_expression_probe(x, y, groups, n_splits=5)
    xg = res.per_gene.groupby("gene")["pearson"].mean()
    lin = ridge.per_gene.groupby("gene")["pearson"].mean()
    assert xg["gene0"] > 0.6 > lin["gene0"] + 0.3  # |x| is invisible to a linear head
    assert abs(xg["gene1"]) < 0.15
    assert res.per_gene["alpha"].isna().all()
    with pytest.raises(ValueError, match="ridge.*xgboost"):
        gene_expression_probe(x, y, groups, model="lasso")


def test_count_matched_pearson_known_answers():
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 10, size=2000)
    arrangement = rng.normal(size=2000)
    y = counts + arrangement  # density part + a part count cannot explain
    only_count = 3.0 * counts + 1.0
    both = counts + arrangement
    r = count_matched_pearson(np.column_stack([y, y, y]),
                              np.column_stack([only_count, both, arrangement]), counts)
    assert r[0] == 0.0  # constant within each count stratum: nothing beyond count
    assert r[1] == pytest.approx(1.0)
    assert r[2] == pytest.approx(1.0)  # the within-count part is all that is scored
    # plain Pearson, by contrast, rewards the count-only prediction
    assert np.corrcoef(y, only_count)[0, 1] > 0.9
    # hand formula on a tiny case: strata {0: rows 0,1}, {1: rows 2,3}
    yy = np.array([1.0, 3.0, 0.0, 4.0])
    pp = np.array([0.0, 1.0, 2.0, 1.0])
    c = np.array([0, 0, 1, 1])
    yc, pc = np.array([-1, 1, -2, 2.0]), np.array([-0.5, 0.5, 0.5, -0.5])
    expect = (yc @ pc) / np.sqrt((yc @ yc) * (pc @ pc))
    assert count_matched_pearson(yy, pp, c)[0] == pytest.approx(expect)


def test_count_strata_exact_where_tied_nearest_counts_otherwise():
    c = np.repeat([1, 2, 3], 10)
    assert len(np.unique(count_strata(c))) == 3  # exact matching
    s = count_strata(np.arange(10), size=2)  # all distinct: neighbouring pairs
    assert s.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    s = count_strata(np.array([5, 0, 1, 1, 1, 2, 9]), size=2)
    # 0 alone is short, so the three tied 1s join it; 2 and 5 pair; the lone 9 joins them
    assert s.tolist() == [1, 0, 0, 0, 0, 1, 1]
    assert count_strata(np.array([3, 3, 3, 4]), size=2).tolist() == [0, 0, 0, 0]  # short tail joins


def test_probe_reports_count_matched_and_fold_means():
    x, groups, rng = _data(n_patients=4, per=80, d=6)
    counts = rng.integers(0, 6, size=len(x))
    x[:, 0] = counts
    y = np.column_stack([counts + 0.1 * rng.normal(size=len(x)), x[:, 1]])
    res = gene_expression_probe(x, pd.DataFrame(y, columns=["density", "arrangement"]),
                                groups, counts=counts)
    cm = res.per_gene.groupby("gene")["pearson_count_matched"].mean()
    pr = res.per_gene.groupby("gene")["pearson"].mean()
    assert pr["density"] > 0.95 and abs(cm["density"]) < 0.2
    assert cm["arrangement"] > 0.95
    fs = res.fold_scores()
    assert len(fs) == 4 and (fs["n"] == 2).all()
    assert fs["value"].to_numpy() == pytest.approx(
        res.per_gene.groupby("fold")["pearson"].mean().to_numpy())
    only = res.fold_scores(genes=["density"])
    assert (only["n"] == 1).all()
