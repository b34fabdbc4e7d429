"""Parity of evaluate/morphohelm.py with MorphoHELM's code (microsoft/MorphoHELM, commit
098e624), issue 14.

The references below are written from MorphoHELM's definitions (not copied), each citing
the file and function it follows:

* RM = benchmarks/replicate_analysis/run_replicate_analysis_sweep.py
  (``run_map`` + ``_ap_from_sorted``: query draw, level masks, positive ranks;
  ``run_knn``: pools and eligibility; ``subsample_cpg``, ``cpg_compound_eligible``,
  ``_has_match_at_all_stringencies``: the cpg-compound selection);
* NC = benchmarks/replicate_analysis/negative_control_map.py
  (``_choose_queries``, ``_build_relevant_by_query``, ``DmsoPoolCache.get``,
  ``_ap_from_negative_controls``);
* CPG = benchmarks/enrichment/cpg_moa/run_cpg_moa_enrichment.py (``get_odds_ratio``,
  ``permutation_pvalue``, ``aggregate_by_compound``, ``run_enrichment``,
  ``compute_aggregate``, ``compute_aggregate_majority_vote``, ``main``: the single cutoff
  and the four paradigms); BMP = benchmarks/enrichment/cpg_moa/build_moa_profiles.py
  (``build_profiles_for_model``: (compound, source, batch) means);
* BB = benchmarks/enrichment/moa/run_moa_enrichment.py (``run_moa_enrichment_for_model``:
  cutoff ``max(2, len // 100)``; ``main``: ``--randomize-labels``);
* QC = benchmarks/qc/cell_count_qc.py (``_stratified_sample``, ``make_cell_count_qc_mask``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact, permutation_test

from baselens.evaluate.morphohelm import (
    cell_count_qc_mask,
    cpg_compound_selection,
    enrichment_cutoff,
    morphohelm,
    stratified_sample,
)

PERT = "Metadata_Perturbation"
PARADIGMS = {"NR": "No Restriction", "NSB": "Not Same Batch", "NSS": "Not Same Source",
             "NSL": "Not Same Layout", "NSSL": "Not Same Source Layout"}


# --------------------------------------------------------------------------- references
def _excluded(lv, i, batch, source, well):
    """Candidates a level removes for query i (RM run_map's masks; NSSL: source OR well)."""
    n = len(batch)
    if lv == "NR":
        m = np.zeros(n, bool)
        m[i] = True
        return m
    if lv == "NSB":
        return batch == batch[i]
    if lv == "NSS":
        return source == source[i]
    if lv == "NSL":
        return well == well[i]
    return (source == source[i]) | (well == well[i])


def ref_queries(comp):
    """RM run_map / NC _choose_queries: sorted compounds with >= 2 rows, RandomState(42)."""
    idx = {}
    for i, c in enumerate(comp):
        idx.setdefault(c, []).append(i)
    rng = np.random.RandomState(42)
    return [rng.choice(idx[c]) for c in sorted(c for c, v in idx.items() if len(v) >= 2)]


def ref_replicate_map(x, comp, batch, source, well, lv, tie_bug=False):
    """RM run_map: AP = mean_k k / rank_k; rank = 1 + #candidates with a higher similarity
    (``_ap_from_sorted``). ``tie_bug=False`` breaks exact ties among positives by order."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    aps = []
    for q in ref_queries(comp):
        allowed = ~_excluded(lv, q, batch, source, well)
        rel = np.flatnonzero(allowed & (comp == comp[q]))
        rel = rel[rel != q]
        if not len(rel):
            continue
        s = xn[q] @ xn.T
        cand = s[allowed]
        ranks = np.sort([1 + np.sum(cand > s[j]) for j in rel])
        if not tie_bug:
            ranks = ranks + np.array([np.sum(ranks[:k] == ranks[k]) for k in range(len(ranks))])
        aps.append(np.mean(np.arange(1, len(rel) + 1) / ranks))
    return np.mean(aps), len(aps)


def ref_knn(x, comp, batch, source, well, lv):
    """RM run_knn: every well; pool = allowed candidates; eligible when the pool holds the
    same compound; hit when the most similar pool member is the same compound."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = []
    for i in range(len(comp)):
        allowed = ~_excluded(lv, i, batch, source, well)
        allowed[i] = False
        if not (allowed & (comp == comp[i])).any():
            continue
        s = np.where(allowed, xn[i] @ xn.T, -np.inf)
        hits.append(comp[np.argmax(s)] == comp[i])
    return np.mean(hits), len(hits)


def ref_negcon_map(x, comp, dmso, batch, source, well, lv):
    """NC: queries among non-DMSO compounds (row order of the whole table); relevant = the
    query's replicates the level allows; DMSO pool restricted alike; positive k (sorted by
    similarity, descending) has rank = #DMSO strictly above it + k."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    comp_q = np.where(dmso, "\0DMSO", comp)
    idx = {}
    for i, c in enumerate(comp_q):
        if not dmso[i]:
            idx.setdefault(c, []).append(i)
    rng = np.random.RandomState(42)
    aps = []
    for c in sorted(k for k, v in idx.items() if len(v) >= 2):
        q = rng.choice(idx[c])
        ex = _excluded(lv, q, batch, source, well)
        rel = np.array([j for j in idx[c] if j != q and not ex[j]], dtype=int)
        pool = np.flatnonzero(dmso & ~ex) if lv != "NR" else np.flatnonzero(dmso)
        if not len(rel) or not len(pool):
            continue
        s = xn[q] @ xn.T
        pos = np.sort(s[rel])[::-1]
        ranks = np.array([np.sum(s[pool] > v) for v in pos]) + np.arange(1, len(pos) + 1)
        aps.append(np.mean(np.arange(1, len(pos) + 1) / ranks))
    return np.mean(aps), len(aps)


def jump_like(seed=0, n_comp=14, dim=8):
    """3 sources x 2 batches x 2 plates; compounds with 2-5 wells scattered; DMSO wells."""
    rng = np.random.default_rng(seed)
    rows = []
    plates = [(f"s{s}", f"s{s}b{b}", f"s{s}b{b}p{p}") for s in range(3) for b in range(2) for p in range(2)]
    centers = rng.normal(size=(n_comp, dim))
    for c in range(n_comp):
        for _ in range(rng.integers(2, 6)):
            src, bat, pl = plates[rng.integers(len(plates))]
            rows.append({PERT: f"JCP{c:02d}", "Metadata_ControlType": "", "Metadata_Source": src,
                         "Metadata_Batch": bat, "Metadata_Plate": pl,
                         "Metadata_Well": f"W{rng.integers(6)}", "v": centers[c] + rng.normal(size=dim)})
    for src, bat, pl in plates:
        rows.append({PERT: "DMSO", "Metadata_ControlType": "negcon", "Metadata_Source": src,
                     "Metadata_Batch": bat, "Metadata_Plate": pl, "Metadata_Well": f"W{rng.integers(6)}",
                     "v": rng.normal(size=dim)})
    rng.shuffle(rows)
    df = pd.DataFrame(rows)
    feats = [f"f{j}" for j in range(dim)]
    df[feats] = np.stack(df.pop("v").to_numpy())
    return df, feats


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lv", list(PARADIGMS))
def test_replicate_negcon_knn_equal_morphohelm_code(seed, lv):
    df, feats = jump_like(seed)
    scores, _ = morphohelm(df, feats, batch_level=[lv],
                           metrics=("replicate_map", "negcon_map", "knn_recall_at_1"))
    got = scores.set_index("metric")
    neg = (df["Metadata_ControlType"] == "negcon").to_numpy()
    t = df[~neg].reset_index(drop=True)
    cols = [t[c].to_numpy() for c in (PERT, "Metadata_Batch", "Metadata_Source", "Metadata_Well")]
    x = t[feats].to_numpy()
    want, n = ref_replicate_map(x, *cols, lv)
    assert got.loc["replicate_map", "value"] == pytest.approx(want, abs=1e-12)
    assert got.loc["replicate_map", "n"] == n
    want, n = ref_knn(x, *cols, lv)
    assert got.loc["knn_recall_at_1", "value"] == pytest.approx(want, abs=1e-12)
    assert got.loc["knn_recall_at_1", "n"] == n
    allc = [df[c].to_numpy() for c in ("Metadata_Batch", "Metadata_Source", "Metadata_Well")]
    want, n = ref_negcon_map(df[feats].to_numpy(), df[PERT].to_numpy(), neg, *allc, lv)
    assert got.loc["negcon_map", "value"] == pytest.approx(want, abs=1e-12)
    assert got.loc["negcon_map", "n"] == n


def test_tied_positives_ap_stays_at_most_one_unlike_morphohelm():
    """MorphoHELM bug 1 (RM _ap_from_sorted): A's three wells are identical, so whichever is
    the query its two positives tie at the top, both get rank 1 and AP = (1/1 + 2/1) / 2 =
    1.5. baselens ranks them 1 and 2: AP = 1."""
    v = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    df = pd.DataFrame({PERT: ["A", "A", "A", "B", "B"], "Metadata_ControlType": "",
                       "f0": v[:, 0], "f1": v[:, 1]})
    comp = df[PERT].to_numpy()
    z = np.zeros(5)
    bug_a = np.mean(np.arange(1, 3) / np.array([1, 1]))  # ranks 1, 1 by hand
    assert bug_a == 1.5
    bug, _ = ref_replicate_map(v, comp, z, z, np.arange(5), "NR", tie_bug=True)
    fixed, _ = ref_replicate_map(v, comp, z, z, np.arange(5), "NR")
    assert bug == pytest.approx((1.5 + 1.0) / 2) and fixed == pytest.approx(1.0)
    scores, per = morphohelm(df, ["f0", "f1"], batch_level=["NR"], metrics=("replicate_map",))
    assert per.set_index("perturbation").loc["A", "value"] == pytest.approx(1.0)
    assert scores["value"].iloc[0] == pytest.approx(fixed)


def test_one_candidate_pool_knn_does_not_crash():
    """MorphoHELM bug 2 (RM run_knn): argpartition(kth=1) over a one-member pool raises."""
    df = pd.DataFrame({PERT: ["A", "A"], "Metadata_ControlType": "", "Metadata_Source": ["s1", "s2"],
                       "Metadata_Batch": ["b1", "b2"], "Metadata_Plate": ["p1", "p2"],
                       "Metadata_Well": ["A01", "A02"], "f0": [1.0, 0.9], "f1": [0.0, 0.1]})
    with pytest.raises(ValueError):
        np.argpartition(-np.array([0.5]), 1)  # what MorphoHELM's NSS pool of one does
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, _ = morphohelm(df, ["f0", "f1"], batch_level=["NSS"], metrics=("knn_recall_at_1",))
    assert scores.set_index("metric").loc["knn_recall_at_1", "value"] == 1.0


# --------------------------------------------------------------------------- enrichment
def ref_or(t, b):
    """CPG get_odds_ratio: a d / (b c), +0.5 to every cell only when one is zero."""
    t, b = np.asarray(t), np.asarray(b)
    a_, b_, c_, d_ = (t == 1).sum(), (t == 0).sum(), (b == 1).sum(), (b == 0).sum()
    if min(a_, b_, c_, d_) == 0:
        a_, b_, c_, d_ = a_ + .5, b_ + .5, c_ + .5, d_ + .5
        return a_ * d_ / (b_ * c_)
    return fisher_exact([[a_, b_], [c_, d_]])[0]


def ref_p(t, b):
    """CPG permutation_pvalue (both sides >= 2: scipy's permutation_test, random_state 61)."""
    if len(t) >= 2 and len(b) >= 2:
        r = permutation_test((t, b), statistic=ref_or, n_resamples=100, alternative="greater",
                             random_state=61)
        return r.statistic, r.pvalue
    obs = ref_or(t, b)
    comb = np.array(list(t) + list(b), dtype=np.int8)
    rng = np.random.default_rng(61)
    ex = sum(ref_or(p[:len(t)], p[len(t):]) >= obs for p in (rng.permutation(comb) for _ in range(100)))
    return obs, (ex + 1) / 101


def ref_run_enrichment(q, c, feats, cutoff_rule, fixed=None, queries=None):
    """CPG run_enrichment (exact MoA strings, each candidate compound by its best row)."""
    qx = q[feats].to_numpy() / np.linalg.norm(q[feats].to_numpy(), axis=1, keepdims=True)
    cx = c[feats].to_numpy() / np.linalg.norm(c[feats].to_numpy(), axis=1, keepdims=True)
    sim = qx @ cx.T
    out = []
    for i in range(len(q)):
        name, moa = q[PERT].iat[i], q["moa"].iat[i]
        if queries is not None and name not in queries:
            continue
        seen, m = set(), []
        for j in np.argsort(sim[i])[::-1]:
            cj = c[PERT].iat[j]
            if cj == name or cj in seen:
                continue
            seen.add(cj)
            m.append(int(c["moa"].iat[j] == moa))
        n = len(m)
        if cutoff_rule == "cpg":
            k, need = fixed, fixed + 1
        else:  # BB run_moa_enrichment_for_model
            k = max(2, n // 100)
            need = k + 2
        if n < need or sum(m) == 0:
            continue
        o, p = ref_p(m[:k], m[k:])
        out.append((name, o, p))
    return out


def moa_screen(seed=0):
    rng = np.random.default_rng(seed)
    moas = ["m0", "m1", "m2", "m3", "m0|m1"]
    centers = {m: rng.normal(size=6) * 1.5 for m in moas}
    rows = []
    for ci in range(40):
        m = moas[ci % 5]
        for s in range(2):
            for b in range(2):
                for _ in range(rng.integers(1, 4)):  # unequal wells per batch
                    rows.append({PERT: f"c{ci:02d}", "Metadata_ControlType": "", "moa": m,
                                 "Metadata_Source": f"s{s}", "Metadata_Batch": f"s{s}b{b}",
                                 "Metadata_Plate": f"s{s}b{b}p", "Metadata_Well": "A01",
                                 "v": centers[m] + rng.normal(size=6)})
    df = pd.DataFrame(rows)
    feats = [f"f{j}" for j in range(6)]
    df[feats] = np.stack(df.pop("v").to_numpy())
    return df, feats


def _csb(df, feats):
    """BMP: (compound, source, batch) means, MoA first."""
    return df.groupby([PERT, "Metadata_Source", "Metadata_Batch"]).agg(
        {**{f: "mean" for f in feats}, "moa": "first"}).reset_index()


def _agg(rows, feats):
    """CPG aggregate_by_compound: mean of the rows per compound."""
    a = rows.groupby(PERT)[feats].mean().reset_index()
    a["moa"] = a[PERT].map(rows.drop_duplicates(PERT).set_index(PERT)["moa"])
    return a


def _run(df, feats, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return morphohelm(df, feats, moa_col="moa", metrics=("enrichment",),
                          protocol="morphohelm", **kw)


def test_morphohelm_protocol_enrichment_equals_cpg_script_at_every_paradigm():
    """Global (mean of (compound, source, batch) means), Within Source (pooled), Not Same
    Batch / Not Same Source (each (c, s, b) row a query, majority vote), one cutoff
    max(1, int((N - 1) * 0.01)) — CPG main — with exact MoA strings."""
    df, feats = moa_screen()
    scores, per = _run(df, feats, batch_level=["NR", "NSB", "NSS"], cutoff_rule="cpg",
                       shuffled_baseline=False)
    s = scores.set_index(["batch_level", "metric"])["value"]
    rows = _csb(df, feats)
    glob = _agg(rows, feats)
    fixed = max(1, int((len(glob) - 1) * 0.01))
    out = ref_run_enrichment(glob, glob, feats, "cpg", fixed)
    assert s[("NR", "enrichment_fraction_significant")] == pytest.approx(np.mean([p < .05 for *_, p in out]))
    assert s[("NR", "enrichment_geometric_mean_or")] == pytest.approx(np.exp(np.mean(np.log([o for _, o, _ in out]))))
    p_nr = per[(per.batch_level == "NR") & (per.metric == "enrichment_p_value")].set_index("perturbation")["value"]
    assert p_nr.to_dict() == pytest.approx({n: p for n, _, p in out})
    # Within Source: per source aggregate, compute_aggregate pooling
    odds, sig = [], []
    for src in sorted(rows["Metadata_Source"].unique()):
        a = _agg(rows[rows["Metadata_Source"] == src], feats)
        res = ref_run_enrichment(a, a, feats, "cpg", fixed)
        odds += [o for _, o, _ in res]
        sig += [p < .05 for *_, p in res]
    assert s[("NR", "enrichment_fraction_significant:within_source")] == pytest.approx(np.mean(sig))
    assert s[("NR", "enrichment_geometric_mean_or:within_source")] == pytest.approx(np.exp(np.mean(np.log(odds))))
    # Not Same Batch / Source: compute_aggregate_majority_vote
    for lv, col in (("NSB", "Metadata_Batch"), ("NSS", "Metadata_Source")):
        tot, sg, all_o = {}, {}, []
        for g in sorted(rows[col].unique()):
            q, c = rows[rows[col] == g], rows[rows[col] != g]
            if c[PERT].nunique() < 3:
                continue
            for name, o, p in ref_run_enrichment(q, c, feats, "cpg", fixed):
                tot[name] = tot.get(name, 0) + 1
                sg[name] = sg.get(name, 0) + (p < .05)
                all_o.append(o)
        frac = np.mean([sg[k] / tot[k] > .5 for k in tot])
        assert s[(lv, "enrichment_fraction_significant")] == pytest.approx(frac)
        assert s[(lv, "enrichment_geometric_mean_or")] == pytest.approx(np.exp(np.mean(np.log(all_o))))


def test_bbbc036_cutoff_and_shuffled_label_baseline():
    """BB: cutoff max(2, n // 100), n >= cutoff + 2; the shuffled-label baseline permutes
    the compounds' MoA labels (sorted compounds) with default_rng(42).shuffle; queries stay
    the compounds testable under the true labels."""
    df, feats = moa_screen(1)
    scores, _ = _run(df, feats, batch_level=["NR"], within_source=False)
    s = scores.set_index("metric")["value"]
    glob = _agg(_csb(df, feats), feats)
    out = ref_run_enrichment(glob, glob, feats, "bbbc036")
    assert s["enrichment_fraction_significant"] == pytest.approx(np.mean([p < .05 for *_, p in out]))
    testable = set(glob[PERT][glob["moa"].map(glob["moa"].value_counts()) >= 2])
    shuffled = glob.copy()
    labels = glob["moa"].tolist()
    np.random.default_rng(42).shuffle(labels)
    shuffled["moa"] = labels
    out = ref_run_enrichment(shuffled, shuffled, feats, "bbbc036", queries=testable)
    assert s["enrichment_fraction_significant_shuffled"] == pytest.approx(np.mean([p < .05 for *_, p in out]))
    assert s["enrichment_geometric_mean_or_shuffled"] == pytest.approx(np.exp(np.mean(np.log([o for _, o, _ in out]))))
    assert s["enrichment_fraction_significant"] > s["enrichment_fraction_significant_shuffled"]


def test_cutoff_rules_by_hand():
    assert enrichment_cutoff(29) == (1, 2)               # baselens: max(1, int(0.29))
    assert enrichment_cutoff(29, "bbbc036") == (2, 4)     # max(2, 29 // 100), n >= cutoff + 2
    assert enrichment_cutoff(450, "bbbc036") == (4, 6)
    assert enrichment_cutoff(450) == (4, 5)
    assert enrichment_cutoff(10, "cpg", fixed=3) == (3, 4)


def test_the_four_choices_differ_from_baselens_as_documented():
    """Exact strings: "m0|m1" is no partner of "m0" under morphohelm, is under baselens;
    mean-of-means differs from the well mean when batches hold unequal well counts."""
    df, feats = moa_screen(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base, pb = morphohelm(df, feats, moa_col="moa", metrics=("enrichment",), batch_level=["NR"])
        mh, pm = morphohelm(df, feats, moa_col="moa", metrics=("enrichment",), batch_level=["NR"],
                            protocol="morphohelm", cutoff_rule="baselens")
    ors_b = pb[pb.metric == "enrichment_odds_ratio"].set_index("perturbation")["value"]
    ors_m = pm[pm.metric == "enrichment_odds_ratio"].set_index("perturbation")["value"]
    assert not np.allclose(ors_b.loc[ors_m.index], ors_m)
    with pytest.raises(ValueError, match="protocol must be one of"):
        morphohelm(df, feats, protocol="helm")


# --------------------------------------------------------------------------- data preparation
def test_cell_count_qc_equals_the_stratified_quantile():
    """QC: n = 5 from strata of 6 and 4 wells -> 3 + 2 rows, DataFrame.sample(random_state
    42 + i); threshold = the 5 % quantile of the sample; keep count >= threshold."""
    df = pd.DataFrame({"Metadata_Plate": ["p1"] * 6 + ["p2"] * 4,
                       "Metadata_Well": [f"A{i:02d}" for i in range(10)],
                       "Metadata_CellCount": [50, 10, 80, 30, 70, 60, 5, 90, 40, 20.0]})
    sample = stratified_sample(df, 5, 42, ["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])
    want = pd.concat([df.iloc[:6].sample(n=3, random_state=42), df.iloc[6:].sample(n=2, random_state=43)])
    assert sorted(sample["Metadata_Well"]) == sorted(want["Metadata_Well"])
    keep, thr = cell_count_qc_mask(df, sample_wells=5)
    assert thr == pytest.approx(want["Metadata_CellCount"].quantile(0.05))
    np.testing.assert_array_equal(keep, df["Metadata_CellCount"].to_numpy() >= thr)
    keep_all, thr_all = cell_count_qc_mask(df)  # 5000 >= 10 wells: all of them
    assert thr_all == pytest.approx(np.quantile(df["Metadata_CellCount"], 0.05))
    assert keep_all.sum() == 9  # the bottom 5 % of wells: the 5-cell well
    scores, _ = morphohelm(df.assign(**{PERT: list("AABBCCDDEE"), "Metadata_ControlType": "",
                                        "f0": np.arange(10.0), "f1": 1.0}),
                           ["f0", "f1"], batch_level=["NR"], metrics=("replicate_map",),
                           cell_count_qc=True)
    d = scores.attrs["dropped"][0]
    assert (d["n_removed"], d["n_kept"]) == (1, 9) and "cell-count QC" in d["reason"]


def test_cpg_compound_selection_by_hand():
    """RM cpg_compound_eligible + subsample_cpg on a hand-built screen."""
    rows = []

    def add(c, s, b, w, n=1, ct=""):
        for _ in range(n):
            rows.append({PERT: c, "Metadata_ControlType": ct, "Metadata_Source": s,
                         "Metadata_Batch": b, "Metadata_Plate": b + "p", "Metadata_Well": w})

    add("BIG", "s1", "b1", "A01", 150)
    add("BIG", "s2", "b2", "A02", 60)                      # 210 wells > 200: out
    add("JCP2022_999999", "s1", "b1", "A03")
    add("JCP2022_999999", "s2", "b2", "A04")              # excluded id
    add("Y", "s1", "b1", "B01")
    add("Y", "s1", "b1", "B02")
    add("Y", "s1", "b1", "B03")                            # 3 in s1: 2 drawn
    add("Y", "s2", "b2", "B04")                            # matchable everywhere
    add("Z", "s1", "b1", "C01")
    add("Z", "s1", "b1", "C02")                            # one source only: NSS fails
    add("DMSO", "s1", "b1", "D01", 3, "negcon")
    df = pd.DataFrame(rows)
    out, info = cpg_compound_selection(df)
    assert info == {"excluded": 2, "high_replicate": 1, "not_matchable": 1,
                    "wells_in": len(df) - 3, "wells_kept": 3}
    assert out[PERT].tolist() == ["Y", "Y", "Y", "DMSO", "DMSO", "DMSO"]
    y = df.index[df[PERT] == "Y"]
    pick = np.random.RandomState(42).choice(y[:3].to_numpy(), 2, replace=False)
    assert out["Metadata_Well"].iloc[:2].tolist() == df.loc[pick, "Metadata_Well"].tolist()
    assert out["Metadata_Well"].iloc[2] == "B04"
