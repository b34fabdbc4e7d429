"""baselens.metrics.average_precision against copairs 0.5.5 (the test oracle).

AP must equal ``copairs.map.average_precision`` to 1e-9 (float64); mAP must equal
``copairs.map.mean_average_precision`` exactly for the same AP input; p-values agree within
Monte-Carlo error (different random streams) and exactly where they are clearly
1/(null_size+1) or clearly 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.metrics import (
    average_precision,
    benjamini_hochberg,
    fraction_retrieved,
    mean_average_precision,
)
from baselens.metrics.average_precision import _null_ap

copairs_map = pytest.importorskip("copairs.map", reason="copairs (test oracle) not installed")
from copairs import compute as copairs_compute  # noqa: E402
from copairs.map.normalization import expected_ap  # noqa: E402
from copairs.matching import assign_reference_index  # noqa: E402

TOL = 1e-9


def _copairs_ap(meta, feats, *rule, distance="cosine"):
    return copairs_map.average_precision(meta, feats, *rule, distance=distance, progress_bar=False)


def _copairs_map(ap, sameby, null_size, seed, tmp_path):
    # cache_dir: keep copairs from writing its null cache to ~/.copairs
    return copairs_map.mean_average_precision(
        ap, sameby, null_size=null_size, threshold=0.05, seed=seed, progress_bar=False,
        cache_dir=tmp_path,
    )


def _assert_same_ap(ref: pd.DataFrame, ours: pd.DataFrame) -> None:
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) == len(ref)
    np.testing.assert_array_equal(ours["n_pos_pairs"].to_numpy(), ref["n_pos_pairs"].to_numpy())
    np.testing.assert_array_equal(ours["n_total_pairs"].to_numpy(), ref["n_total_pairs"].to_numpy())
    for col in ("average_precision", "normalized_average_precision"):
        a, b = ours[col].to_numpy(float), ref[col].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=col)
        ok = ~np.isnan(a)
        assert np.max(np.abs(a[ok] - b[ok]), initial=0.0) <= TOL, col


def _screen(n=400, d=24, n_cpd=90, n_dmso=40, seed=0):
    """Compounds with replicate structure, DMSO controls, plates; some null compounds."""
    rng = np.random.default_rng(seed)
    cpd = rng.integers(0, n_cpd, n).astype(str)
    cpd = np.array([f"c{c}" for c in cpd], dtype=object)
    cpd[:n_dmso] = "DMSO"
    meta = pd.DataFrame({"cpd": cpd, "plate": rng.integers(0, 4, n).astype(str)})
    meta["negcon"] = meta["cpd"] == "DMSO"
    effect = {c: rng.normal(size=d) * rng.uniform(0, 1.2) for c in meta["cpd"].unique()}
    effect["DMSO"] = np.zeros(d)
    x = rng.normal(size=(n, d)) + np.stack([effect[c] for c in meta["cpd"]])
    return meta, x


# ----------------------------------------------------------------------------- hand-built
def test_hand_built_ap_with_ties_matches_hand_and_copairs():
    # q, p1, p2 share label A; n1, n2, n3 are three other labels.
    # p1 and n1 are the same vector (exact similarity ties), q and n3 are antipodal.
    feats = np.array(
        [
            [1.0, 0.0],  # q
            [0.8, 0.6],  # p1
            [0.0, 1.0],  # p2
            [0.8, 0.6],  # n1 (== p1)
            [0.6, 0.8],  # n2
            [-1.0, 0.0],  # n3
        ]
    )
    meta = pd.DataFrame({"label": ["A", "A", "A", "B", "C", "D"]})
    rule = (["label"], [], [], ["label"])
    ours = average_precision(meta, feats, *rule)
    # q : p1(.8) n1(.8) n2(.6) p2(0) n3(-1); tie p1/n1 -> positive first
    #     AP = (1/1 + 2/4) / 2
    # p1: n1(1) n2(.96) q(.8) p2(.6) n3(-.8)  -> AP = (1/3 + 2/4) / 2
    # p2: n2(.8) p1(.6)=n1(.6) q(0)=n3(-0)    -> ties broken positives first:
    #     AP = (1/2 + 2/4) / 2  (it would be (1/3 + 2/5)/2 with negatives first)
    expected = [(1 + 2 / 4) / 2, (1 / 3 + 2 / 4) / 2, (1 / 2 + 2 / 4) / 2]
    np.testing.assert_allclose(ours["average_precision"][:3], expected, rtol=0, atol=1e-12)
    assert ours["average_precision"][3:].isna().all()  # no positives: 0/0
    assert ours["n_pos_pairs"].tolist() == [2, 2, 2, 0, 0, 0]
    assert ours["n_total_pairs"].tolist() == [5, 5, 5, 5, 5, 5]
    _assert_same_ap(_copairs_ap(meta, feats, *rule), ours)


def test_no_negatives_gives_one_and_unpaired_rows_are_nan():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(7, 5))
    meta = pd.DataFrame(
        {
            "label": ["A", "A", "B", "B", "C", "A", "D"],
            "plate": ["p1", "p1", "p1", "p1", "p1", "p2", "p3"],
        }
    )
    # negatives only within a plate: row 5 (A on p2) has a positive but no negative,
    # row 6 (D on p3) has no pair at all
    rule = (["label"], [], ["plate"], ["label"])
    ours = average_precision(meta, feats, *rule)
    assert ours.loc[5, "average_precision"] == 1.0
    assert ours.loc[5, "n_total_pairs"] == ours.loc[5, "n_pos_pairs"] == 2
    assert ours.loc[6, "n_total_pairs"] == 0 and np.isnan(ours.loc[6, "average_precision"])
    _assert_same_ap(_copairs_ap(meta, feats, *rule), ours)


def test_output_is_a_copy_with_reset_index():
    meta, x = _screen(n=60, n_cpd=12, n_dmso=6)
    meta.index = np.arange(100, 160)
    before = meta.copy()
    out = average_precision(meta, x, ["cpd"], [], [], ["cpd"])
    pd.testing.assert_frame_equal(meta, before)
    assert out.index.equals(pd.RangeIndex(60))
    pd.testing.assert_frame_equal(out[meta.columns], before.reset_index(drop=True))


# ---------------------------------------------------------------------- synthetic vs copairs
RULES = {
    "replicates_vs_all": (["cpd"], [], [], ["cpd"]),
    "replicates_across_plates": (["cpd"], ["plate"], ["plate"], ["cpd"]),
    "vs_negcon_column": (["cpd"], [], ["plate"], ["cpd", "negcon"]),
    "multi_sameby": (["cpd", "plate"], [], [], ["cpd"]),
    "diffby_only_positives": ([], ["cpd", "plate"], [], ["plate"]),
}


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("quantized", [False, True], ids=["continuous", "ties"])
def test_synthetic_matches_copairs(rule_name, quantized):
    meta, x = _screen(seed=1)
    if quantized:  # coarse features -> many exactly tied similarities
        x = np.round(x)
        x[np.abs(x).sum(axis=1) == 0, 0] = 1.0
    rule = RULES[rule_name]
    # small batch_size: many blocks; DMSO queries (39 positives) take the sort path
    ours = average_precision(meta, x, *rule, batch_size=5000)
    _assert_same_ap(_copairs_ap(meta, x, *rule), ours)


def test_against_negative_controls_reference_index_recipe():
    meta, x = _screen(seed=2)
    meta = assign_reference_index(meta, "cpd == 'DMSO'", reference_col="Metadata_Reference_Index", default_value=-1)
    rule = (["cpd", "Metadata_Reference_Index"], [], ["plate"], ["cpd", "Metadata_Reference_Index"])
    ours = average_precision(meta, x, *rule)
    ref = _copairs_ap(meta, x, *rule)
    _assert_same_ap(ref, ours)
    # DMSO rows have no positives; compound rows rank replicates against DMSO only
    assert ours.loc[meta["cpd"] == "DMSO", "n_pos_pairs"].eq(0).all()


@pytest.mark.parametrize("distance", ["abs_cosine", "correlation", "euclidean", "manhattan", "chebyshev"])
def test_other_distances_match_copairs(distance):
    meta, x = _screen(n=250, n_cpd=60, n_dmso=20, seed=4)
    rule = RULES["replicates_across_plates"]
    _assert_same_ap(_copairs_ap(meta, x, *rule, distance=distance),
                    average_precision(meta, x, *rule, distance=distance))


def test_batch_size_does_not_change_results():
    meta, x = _screen(seed=5)
    rule = RULES["replicates_vs_all"]
    a = average_precision(meta, x, *rule, batch_size=1)
    b = average_precision(meta, x, *rule)
    pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------------------ real data
def _lincs():
    root = os.environ.get("BASELENS_TEST_DATA")
    if not root:
        pytest.skip("BASELENS_TEST_DATA is not set (point it at the shared realdata folder)")
    path = Path(root) / "profiles" / "lincs_SQ00015054_normalized_feature_select.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    df = pd.read_csv(path)
    meta_cols = [c for c in df.columns if c.startswith("Metadata_")]
    feats = df.drop(columns=meta_cols).to_numpy(dtype=np.float64)
    return df[meta_cols].reset_index(drop=True), feats


@pytest.mark.realdata
def test_lincs_plate_matches_copairs(tmp_path):
    meta, feats = _lincs()
    assert meta["Metadata_broad_sample"].eq("DMSO").sum() == 24

    # 1. replicate retrieval against DMSO (copairs' reference-index recipe)
    m1 = assign_reference_index(
        meta, "Metadata_broad_sample == 'DMSO'", reference_col="Metadata_Reference_Index", default_value=-1
    )
    rule1 = (
        ["Metadata_broad_sample", "Metadata_Reference_Index"], [],
        ["Metadata_Plate"], ["Metadata_broad_sample", "Metadata_Reference_Index"],
    )
    ref1 = _copairs_ap(m1, feats, *rule1)
    ours1 = average_precision(m1, feats, *rule1)
    _assert_same_ap(ref1, ours1)

    # 2. replicate retrieval against everything (DMSO queries have 23 positives)
    rule2 = (["Metadata_broad_sample"], [], [], ["Metadata_broad_sample"])
    _assert_same_ap(_copairs_ap(meta, feats, *rule2), average_precision(meta, feats, *rule2))

    # 3. MoA retrieval: same MoA, different compound; annotated wells only
    keep = meta["Metadata_moa"].notna().to_numpy()
    m3, f3 = meta[keep].reset_index(drop=True), feats[keep]
    rule3 = (["Metadata_moa"], ["Metadata_broad_sample"], [], ["Metadata_moa"])
    _assert_same_ap(_copairs_ap(m3, f3, *rule3), average_precision(m3, f3, *rule3))

    # mAP of (1): exact mAP, p-values within Monte-Carlo error
    null_size = 4000
    ref_map = _copairs_map(ref1, ["Metadata_broad_sample"], null_size, 0, tmp_path)
    ours_map = mean_average_precision(ours1, ["Metadata_broad_sample"], null_size=null_size, seed=0)
    same_input = mean_average_precision(ref1, ["Metadata_broad_sample"], null_size=null_size, seed=0)
    assert ours_map["Metadata_broad_sample"].tolist() == ref_map["Metadata_broad_sample"].tolist()
    np.testing.assert_array_equal(same_input["mean_average_precision"], ref_map["mean_average_precision"])
    assert np.max(np.abs(ours_map["mean_average_precision"] - ref_map["mean_average_precision"])) <= TOL
    _assert_p_values_agree(ours_map["p_value"], ref_map["p_value"], null_size)


# ---------------------------------------------------------------------------------- mAP
def _assert_p_values_agree(ours, ref, null_size, z_max=5.0):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    p = np.clip((ours + ref) / 2, 1.0 / null_size, 1 - 1.0 / null_size)
    se = np.sqrt(2 * p * (1 - p) / null_size)  # two independent Monte-Carlo estimates
    z = np.abs(ours - ref) / se
    assert z.max() < z_max, f"p-values differ beyond Monte-Carlo error (max z={z.max():.1f})"


def _map_screen():
    """Groups with strong, weak, absent and inverted replicate signal."""
    rng = np.random.default_rng(7)
    d, reps = 16, 4
    rows, labels = [], []
    for g in range(60):
        strength = [3.0, 0.6, 0.0][g % 3]
        center = rng.normal(size=d) * strength
        for _ in range(reps):
            rows.append(center + rng.normal(size=d))
            labels.append(f"g{g}")
    # an "inverted" pair: each replicate is the other's least similar profile
    v = rng.normal(size=d) * 50
    for s in (1, -1):
        rows.append(s * v + rng.normal(size=d) * 0.01)
        labels.append("inverted")
    meta = pd.DataFrame({"grp": labels})
    return meta, np.array(rows)


def test_mean_average_precision_matches_copairs(tmp_path):
    meta, x = _map_screen()
    rule = (["grp"], [], [], ["grp"])
    ref_ap = _copairs_ap(meta, x, *rule)
    null_size = 5000
    ref = _copairs_map(ref_ap, ["grp"], null_size, 0, tmp_path)
    ours = mean_average_precision(average_precision(meta, x, *rule), ["grp"], null_size=null_size, seed=0)
    exact = mean_average_precision(ref_ap, ["grp"], null_size=null_size, seed=0)

    for col in ("grp", "mean_average_precision", "mean_normalized_average_precision"):
        np.testing.assert_array_equal(exact[col], ref[col])  # same AP input -> identical mAP
    assert ours["grp"].tolist() == ref["grp"].tolist()
    assert np.max(np.abs(ours["mean_average_precision"] - ref["mean_average_precision"])) <= TOL
    for col in ("p_value", "corrected_p_value", "below_p", "below_corrected_p"):
        assert col in ours.columns
    _assert_p_values_agree(ours["p_value"], ref["p_value"], null_size)

    # strong groups: mAP = 1 -> no null draw is strictly greater -> p = 1/(null_size+1)
    perfect = ref["mean_average_precision"] == 1.0
    assert perfect.sum() >= 10
    np.testing.assert_array_equal(ours.loc[perfect, "p_value"], 1 / (null_size + 1))
    np.testing.assert_array_equal(ref.loc[perfect, "p_value"], 1 / (null_size + 1))
    # inverted group: positives ranked last -> p clearly ~1 in both
    inv = ours["grp"] == "inverted"
    assert ours.loc[inv, "p_value"].item() > 0.99 and ref.loc[inv, "p_value"].item() > 0.99
    # BH identical to copairs' (statsmodels) for identical p-values
    np.testing.assert_array_equal(benjamini_hochberg(ref["p_value"].to_numpy()), ref["corrected_p_value"])
    np.testing.assert_array_equal(ours["below_corrected_p"], ours["corrected_p_value"] < 0.05)
    # retrieval calls agree wherever the corrected p-value is not near the threshold
    decisive = (ref["corrected_p_value"] < 0.01) | (ref["corrected_p_value"] > 0.2)
    assert decisive.sum() >= 30
    np.testing.assert_array_equal(ours.loc[decisive, "below_corrected_p"], ref.loc[decisive, "below_corrected_p"])
    assert fraction_retrieved(ours) == ours["below_corrected_p"].mean()


def test_mean_average_precision_is_seeded_and_skips_queries_without_positives():
    meta, x = _map_screen()
    ap = average_precision(meta, x, ["grp"], [], [], ["grp"])
    ap.loc[0, "n_pos_pairs"] = 0  # a query without positives is ignored
    a = mean_average_precision(ap, ["grp"], null_size=500, seed=3)
    b = mean_average_precision(ap, ["grp"], null_size=500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[a["grp"] == "g0", "n_queries"].item() == 3
    assert a["p_value"].between(1 / 501, 1).all()


@pytest.mark.parametrize("num_pos,total", [(1, 3), (2, 5), (3, 40), (30, 40), (40, 40), (2, 70000)])
def test_null_sampler_matches_copairs_random_ap(num_pos, total):
    """Same support (bit-identical float32 AP values) and same distribution as copairs."""
    size = 4000 if total < 1000 else 300
    ours = _null_ap(num_pos, total, size, np.random.default_rng(0))
    ref = copairs_compute.random_ap(size, num_pos, total, seed=1)
    assert ours.dtype == ref.dtype == np.float32
    mu = expected_ap(num_pos, total - num_pos)  # exact E[AP] under random ranking
    sd = max(float(np.std(ref)), 1e-6)
    assert abs(ours.mean() - mu) < 5 * sd / np.sqrt(size)
    assert abs(ref.mean() - mu) < 5 * sd / np.sqrt(size)
    if total <= 5:  # tiny support: identical values, frequencies within MC error
        vals = np.union1d(ours, ref)
        assert set(np.unique(ours)) == set(np.unique(ref))
        for v in vals:
            f1, f2 = np.mean(ours == v), np.mean(ref == v)
            assert abs(f1 - f2) < 5 * np.sqrt(0.25 * 2 / size)


def test_benjamini_hochberg_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=200), rng.uniform(0, 1e-3, size=20), [1.0, 1.0, 0.5, 0.5]])
    np.testing.assert_array_equal(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1])


def test_fraction_retrieved():
    df = pd.DataFrame({"corrected_p_value": [0.01, 0.2, 0.04, 0.5], "below_corrected_p": [True, False, True, False]})
    assert fraction_retrieved(df) == 0.5
    assert fraction_retrieved(df, threshold=0.3) == 0.75
    assert np.isnan(fraction_retrieved(df.iloc[:0]))


# ---------------------------------------------------------------------------------- errors
@pytest.fixture
def small():
    meta, x = _screen(n=40, n_cpd=8, n_dmso=4, seed=9)
    return meta, x


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda m, x: (m, x[:-1]), "same profiles"),
        (lambda m, x: (m, np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x)), "NaN"),
        (lambda m, x: (m, np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x)), "infinite"),
        (lambda m, x: (m.assign(cpd=m["cpd"].where(m.index != 3)), x), "missing value"),
        (lambda m, x: (m.drop(columns="plate"), x), "missing column"),
        (lambda m, x: (m, x[:, 0]), "2-D"),
        (lambda m, x: (m, np.vstack([np.zeros(x.shape[1]), x[1:]])), "all-zero"),
    ],
)
def test_invalid_inputs_raise(small, mutate, match):
    meta, x = mutate(*small)
    with pytest.raises(ValueError, match=match):
        average_precision(meta, x, ["cpd"], ["plate"], [], ["cpd"])


def test_invalid_rules_raise(small):
    meta, x = small
    with pytest.raises(ValueError, match="both empty"):
        average_precision(meta, x, [], [], [], ["cpd"])
    with pytest.raises(ValueError, match="disjoint"):
        average_precision(meta, x, ["cpd"], ["cpd"], [], ["cpd"])
    with pytest.raises(ValueError, match="unsupported distance"):
        average_precision(meta, x, ["cpd"], [], [], ["cpd"], distance="cosin")
    with pytest.raises(ValueError, match="batch_size"):
        average_precision(meta, x, ["cpd"], [], [], ["cpd"], batch_size=0)
    with pytest.raises(ValueError, match="no positive pairs"):
        average_precision(meta.assign(u=np.arange(len(meta))), x, ["u"], [], [], ["cpd"])
    with pytest.raises(ValueError, match="no negative pairs"):
        average_precision(meta.assign(k=1), x, ["cpd"], [], [], ["k"])
    with pytest.raises(ValueError, match="constant"):
        average_precision(meta, np.where(np.arange(len(meta))[:, None] == 0, 1.0, x), ["cpd"], [], [], ["cpd"],
                          distance="correlation")
    with pytest.raises(TypeError):
        average_precision(x, x, ["cpd"], [], [], ["cpd"])


def test_mean_average_precision_invalid_inputs(small):
    meta, x = small
    ap = average_precision(meta, x, ["cpd"], [], [], ["cpd"])
    with pytest.raises(ValueError, match="missing column"):
        mean_average_precision(ap.drop(columns="n_total_pairs"), ["cpd"])
    with pytest.raises(ValueError, match="missing column"):
        mean_average_precision(ap, ["nope"])
    with pytest.raises(ValueError, match="at least one"):
        mean_average_precision(ap, [])
    with pytest.raises(ValueError, match="null_size"):
        mean_average_precision(ap, ["cpd"], null_size=0)
    with pytest.raises(ValueError, match="threshold"):
        mean_average_precision(ap, ["cpd"], threshold=0)


# ------------------------------------------------------- nulls: sampler, exact, shared cache
from math import comb  # noqa: E402

from baselens.metrics.average_precision import (  # noqa: E402
    NullCache,
    _random_subsets,
)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7], ids=lambda k: f"k{k}")
def test_random_subsets_are_uniform_over_all_subsets(k):
    """n = 8 exercises the sort/redraw (k=1,2), bitmap (k=3) and complement (k=5,7) paths:
    every k-subset must come out with frequency 1/C(8,k) (chi-square, 6 sigma)."""
    n, size = 8, 60_000
    r = _random_subsets(k, n, size, np.random.default_rng(k))
    assert r.shape == (size, k) and r.dtype == np.int64
    assert (np.diff(r, axis=1) > 0).all() and r.min() >= 0 and r.max() < n
    codes = (r * (n ** np.arange(k))).sum(axis=1)
    _, counts = np.unique(codes, return_counts=True)
    c = comb(n, k)
    assert counts.size == c  # every subset is reachable
    expected = size / c
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - (c - 1)) < 6 * np.sqrt(2 * (c - 1)) + 1


@pytest.mark.parametrize("k,n", [(17, 140), (30, 100), (4, 400), (60, 70)],
                         ids=["oversample", "bitmap", "sort", "complement"])
def test_random_subsets_match_exact_rank_laws(k, n):
    """Large supports: inclusion frequency k/n per rank, and the law of the smallest rank
    P(min >= t) = C(n-t, k) / C(n, k), against the exact values."""
    size = 40_000
    r = _random_subsets(k, n, size, np.random.default_rng(n))
    assert (np.diff(r, axis=1) > 0).all() and r.min() >= 0 and r.max() < n
    incl = np.bincount(r.ravel(), minlength=n) / size
    p = k / n
    assert np.max(np.abs(incl - p)) < 6 * np.sqrt(p * (1 - p) / size)
    t = np.arange(n)
    surv_exact = np.array([comb(n - s, k) / comb(n, k) for s in t])
    surv_obs = (r[:, :1] >= t[None, :]).mean(axis=0)
    assert np.max(np.abs(surv_obs - surv_exact)) < 6 * 0.5 / np.sqrt(size)


def test_null_is_exact_enumeration_when_rankings_are_few():
    # C(5, 2) = 10 rankings <= null_size: each appears exactly null_size / 10 times
    v = _null_ap(2, 5, 1000, np.random.default_rng(0))
    ranks = np.array([[a, b] for a in range(5) for b in range(a + 1, 5)])
    exact = ((np.arange(1, 3, dtype=np.float32) / (ranks.astype(np.uint16) + 1)).sum(axis=1) / 2
             ).astype(np.float32)
    vals, counts = np.unique(v, return_counts=True)
    # two rankings can share an AP value: compare the multiset
    ev, ec = np.unique(exact, return_counts=True)
    np.testing.assert_array_equal(vals, ev)
    np.testing.assert_array_equal(counts, ec * 100)
    # the exact mean is copairs' expected AP (to float32 rounding)
    assert abs(float(v.astype(np.float64).mean()) - float(expected_ap(2, 3))) < 1e-6
    # a remainder (null_size not a multiple of C) is spread: counts differ by at most 1
    w = _null_ap(1, 3, 10, np.random.default_rng(0))  # C = 3
    _, cw = np.unique(w, return_counts=True)
    assert sorted(cw) == [3, 3, 4]
    # a single possible ranking (all positives): the null is all ones
    np.testing.assert_array_equal(_null_ap(4, 4, 7, np.random.default_rng(0)), np.ones(7, np.float32))


def test_null_cache_shares_nulls_and_never_changes_p_values():
    meta, x = _map_screen()
    ap = average_precision(meta, x, ["grp"], [], [], ["grp"])
    cache = NullCache()
    a = mean_average_precision(ap, ["grp"], null_size=2000, seed=1, null_cache=cache)
    first = cache.stats()
    assert first["misses"] == ap[["n_pos_pairs", "n_total_pairs"]].drop_duplicates().shape[0]
    # a second representation with the same design reuses every null (no new draw)
    b = mean_average_precision(ap.assign(average_precision=ap["average_precision"] * 0.9),
                               ["grp"], null_size=2000, seed=1, null_cache=cache)
    assert cache.stats()["misses"] == first["misses"] and cache.stats()["hits"] >= first["misses"]
    # a fresh cache (a fresh process) gives identical p-values: nulls depend on the key only
    c = mean_average_precision(ap, ["grp"], null_size=2000, seed=1, null_cache=NullCache())
    pd.testing.assert_frame_equal(a, c)
    assert not b["p_value"].equals(a["p_value"])  # the cache did not freeze the answers
    # another seed, another null
    d = mean_average_precision(ap, ["grp"], null_size=2000, seed=2, null_cache=cache)
    assert not d["p_value"].equals(a["p_value"])
    # the LRU bound holds
    small = NullCache(max_bytes=3 * 2000 * 4)
    mean_average_precision(ap, ["grp"], null_size=2000, seed=1, null_cache=small)
    assert len(small) <= 3


def test_p_values_identical_to_copairs_under_a_shared_null(tmp_path, monkeypatch):
    """copairs handed our null vectors (its get_null_dists replaced) gives bit-identical
    p-values, corrected p-values and calls: the estimator is copairs' own."""
    meta, x = _map_screen()
    ap = _copairs_ap(meta, x, ["grp"], [], [], ["grp"])
    null_size, cache = 3000, NullCache()
    ours = mean_average_precision(ap, ["grp"], null_size=null_size, seed=0, null_cache=cache)

    def shared(confs, null_size, seed, cache_dir=None, progress_bar=True):
        return np.stack([cache.get(int(m), int(t), null_size, 0) for m, t in confs])

    import copairs.map.map as copairs_map_module

    monkeypatch.setattr(copairs_map_module.compute, "get_null_dists", shared)
    ref = _copairs_map(ap, ["grp"], null_size, 0, tmp_path)
    for col in ("mean_average_precision", "p_value", "corrected_p_value", "below_p",
                "below_corrected_p"):
        np.testing.assert_array_equal(ours[col].to_numpy(), ref[col].to_numpy(), err_msg=col)


# ------------------------------------------------------------- full-sort-free AP paths
def test_sparse_queries_score_against_their_candidates_only(monkeypatch):
    """Treated wells ranked against replicates + 5 % DMSO: similarities are computed for
    the candidates' columns only, and AP still equals copairs (ties included)."""
    import sys

    apm = sys.modules["baselens.metrics.average_precision"]  # the package exports a function of that name
    meta, x = _screen(n=600, n_cpd=140, n_dmso=30, seed=7)
    x = np.round(x * 2) / 2  # ties
    meta = assign_reference_index(meta, "cpd == 'DMSO'", reference_col="Metadata_Reference_Index",
                                  default_value=-1)
    rule = (["cpd", "Metadata_Reference_Index"], [], [], ["cpd", "Metadata_Reference_Index"])
    widths = []
    real = apm._similarity_cols

    def spy(xp, rows, cols, distance):
        out = real(xp, rows, cols, distance)
        widths.append(out.shape[1])
        return out

    monkeypatch.setattr(apm, "_similarity_cols", spy)
    monkeypatch.setattr(apm, "_FULL_KEYS_MAX_ENTRIES", 0)  # no whole-matrix reuse here
    ours = average_precision(meta, x, *rule, batch_size=600 * 50)
    # treated wells: pruned blocks; DMSO wells (no positive, AP undefined) are never ranked
    assert widths and max(widths) < 600 // 2
    _assert_same_ap(_copairs_ap(meta, x, *rule), ours)
    # repeated sparse calls (batch levels) keep pruning: no whole n x n matrix is built
    monkeypatch.setattr(apm, "_FULL_KEYS_MAX_ENTRIES", 10**8)
    apm._FULL_KEYS.clear()
    apm._LAST_CALL.clear()
    for _ in range(2):
        pd.testing.assert_frame_equal(average_precision(meta, x, *rule, batch_size=600 * 50), ours)
    assert len(apm._FULL_KEYS) == 0


@pytest.mark.parametrize("quantized", [False, True], ids=["continuous", "ties"])
def test_many_positive_rows_match_copairs(quantized):
    """Queries with > 24 positives (binary search among positives) equal copairs."""
    rng = np.random.default_rng(3)
    n = 500
    grp = rng.integers(0, 6, n).astype(str)  # ~80 positives per query
    meta = pd.DataFrame({"grp": grp, "plate": rng.integers(0, 3, n).astype(str)})
    x = rng.normal(size=(n, 16)) + (pd.factorize(grp)[0][:, None] == np.arange(16)) * 1.5
    if quantized:
        x = np.round(x)
        x[np.abs(x).sum(axis=1) == 0, 0] = 1.0
    rule = (["grp"], ["plate"], ["plate"], ["grp"])
    ours = average_precision(meta, x, *rule)
    assert ours["n_pos_pairs"].min() > 24
    _assert_same_ap(_copairs_ap(meta, x, *rule), ours)
    import sys

    apm = sys.modules["baselens.metrics.average_precision"]
    # dense rule called again on the same profiles (another batch level): the whole rank-key
    # matrix is built once and reused, with the same AP
    apm._FULL_KEYS.clear()
    apm._LAST_CALL.clear()
    first = average_precision(meta, x, *rule)
    assert len(apm._FULL_KEYS) == 0
    second = average_precision(meta, x, *rule)
    assert len(apm._FULL_KEYS) == 1
    pd.testing.assert_frame_equal(first, second)
    _assert_same_ap(_copairs_ap(meta, x, *rule), second)
