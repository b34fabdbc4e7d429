"""MorphoHELM metrics: hand-built answers, its query selection, OR/permutation definitions."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import permutation_test

from baselens.evaluate.morphohelm import choose_queries, enrichment_test, morphohelm, odds_ratio

PERT = "Metadata_Perturbation"


def line_profiles(sims, names, ctypes, **cols):
    ang = np.arccos(np.asarray(sims, dtype=float))
    df = pd.DataFrame({PERT: names, "Metadata_ControlType": ctypes, "f0": np.cos(ang), "f1": np.sin(ang)})
    for k, v in cols.items():
        df[k] = v
    return df


def test_choose_queries_matches_morphohelm_randomstate():
    comps = np.array(["b", "a", "b", "c", "a", "a"])
    names, idx = choose_queries(comps, 42)
    rng = np.random.RandomState(42)
    assert names == ["a", "b"]  # c has one well
    assert idx.tolist() == [rng.choice([1, 4, 5]), rng.choice([0, 2])]


def test_replicate_negcon_knn_hand_built():
    # compound A: wells at cos 1.0 and 0.6 from axis; B at 0.9 and 0.2; DMSO at 0.8, 0.5
    df = line_profiles([1.0, 0.6, 0.9, 0.2, 0.8, 0.5], ["A", "A", "B", "B", "DMSO", "DMSO"],
                       ["", "", "", "", "negcon", "negcon"],
                       Metadata_Plate="p", Metadata_Batch=["b1", "b2", "b1", "b2", "b1", "b2"],
                       Metadata_Source="s", Metadata_Well=["w1", "w2", "w3", "w4", "w5", "w6"])
    scores, per = morphohelm(df, ["f0", "f1"], batch_level="NR", metrics=("replicate_map", "knn_recall_at_1"))
    _, q = choose_queries(df[PERT].to_numpy()[:4], 42)
    ang = np.arccos([1.0, 0.6, 0.9, 0.2])

    def ap(qi):
        s = np.cos(ang - ang[qi])
        others = [j for j in range(4) if j != qi]
        order = sorted(others, key=lambda j: -s[j])
        rel = [df[PERT][j] == df[PERT][qi] for j in order]
        hits = np.cumsum(rel)
        return np.mean([hits[k] / (k + 1) for k in range(3) if rel[k]])

    want = np.mean([ap(i) for i in q])
    got = scores.set_index("metric").loc["replicate_map", "value"]
    assert got == pytest.approx(want)
    # kNN@1: every non-DMSO well; nearest other well
    sims = np.cos(ang[:, None] - ang[None, :])
    np.fill_diagonal(sims, -np.inf)
    comp = np.array(["A", "A", "B", "B"])
    knn = np.mean(comp[sims.argmax(1)] == comp)
    assert scores.set_index("metric").loc["knn_recall_at_1", "value"] == pytest.approx(knn)


def test_nsb_restricts_candidates():
    df = line_profiles([1.0, 0.95, 0.9, 0.2, 0.85, 0.5], ["A", "A", "B", "B", "DMSO", "DMSO"],
                       ["", "", "", "", "negcon", "negcon"], Metadata_Plate=list("pqpqpq"),
                       Metadata_Batch=["b1", "b2", "b1", "b2", "b1", "b2"], Metadata_Source="s",
                       Metadata_Well=list("uvwxyz"))
    scores, _ = morphohelm(df, ["f0", "f1"], batch_level=["NR", "NSB"], metrics=("negcon_map",))
    s = scores.set_index(["batch_level", "metric"])["value"]
    # NSB: the query's replicate (other batch) vs the one DMSO of the other batch
    assert ("NSB", "negcon_map") in s.index
    assert "NSS" not in scores.batch_level.values


def test_odds_ratio_haldane_only_when_a_cell_is_zero():
    assert odds_ratio([1, 1], [1, 0, 0, 0]) == pytest.approx((2.5 * 3.5) / (0.5 * 1.5))
    assert odds_ratio([1, 0], [1, 0, 0, 0]) == pytest.approx((1 * 3) / (1 * 1))


def test_enrichment_test_is_scipy_permutation_test():
    t, b = [1, 1, 0], [0, 0, 1, 0, 0, 0, 0, 1, 0]
    ref = permutation_test((t, b), statistic=odds_ratio, n_resamples=100, alternative="greater",
                           random_state=61)
    assert enrichment_test(t, b) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def test_enrichment_runs_with_majority_vote_levels():
    rng = np.random.default_rng(0)
    rows = []
    moa = {f"c{i}": "m" + str(i % 4) for i in range(24)}
    centers = {m: rng.normal(size=6) * 3 for m in set(moa.values())}
    for b in range(2):
        for c, m in moa.items():
            for r in range(2):
                rows.append({PERT: c, "Metadata_ControlType": "", "Metadata_moa": m,
                             "Metadata_Batch": f"b{b}", "Metadata_Plate": f"b{b}p{r}",
                             "Metadata_Source": "s", "Metadata_Well": f"w{r}",
                             **dict(zip([f"f{k}" for k in range(6)], centers[m] + rng.normal(size=6)))})
    df = pd.DataFrame(rows)
    feats = [f"f{k}" for k in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, per = morphohelm(df, feats, moa_col="Metadata_moa", batch_level=["NR", "NSB"],
                                 metrics=("enrichment",))
    s = scores.set_index(["batch_level", "metric"])["value"]
    assert s[("NR", "enrichment_geometric_mean_or")] > 1
    assert ("NSB", "enrichment_fraction_significant") in s.index
    assert set(per.metric) >= {"enrichment_odds_ratio", "enrichment_significant"}
