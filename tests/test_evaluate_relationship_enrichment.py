"""Gene-relationship enrichment (MorphoHELM's CRISPR pathway enrichment), issue 14:
a hand-computed hypergeometric case, its Monte-Carlo p, per-source results, a grouped
level against a loop following MorphoHELM's batchwise mode
(microsoft/MorphoHELM benchmarks/enrichment/crispr/run_crispr_enrichment.py:
``_enrichment_from_hits``, ``_compute_not_same_batch_rankings``,
``_enrichment_from_batchwise_rankings``), the task wiring and real annotations."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.relationship_enrichment import (
    enrichment_p_values,
    odds_ratio_from_counts,
    relationship_enrichment,
)

PERT = "Metadata_Perturbation"


def angle_screen(angles_deg, wells=1):
    rows = []
    for g, a in enumerate(angles_deg):
        for _ in range(wells):
            t = np.deg2rad(a)
            rows.append({PERT: f"G{g}", "Metadata_ControlType": "", "f0": np.cos(t), "f1": np.sin(t)})
    rows.append({PERT: "non-targeting", "Metadata_ControlType": "negcon", "f0": 1.0, "f1": 0.0})
    return pd.DataFrame(rows)


def hyper_sf(a, n, K, k):
    """P(X >= a), X ~ Hypergeom(n candidates, K partners, k drawn), by counting."""
    return sum(comb(K, x) * comb(n - K, k - x) for x in range(a, min(K, k) + 1)) / comb(n, k)


def haldane(a, k, K, n):
    b, c = k - a, K - a
    d = n - k - c
    if 0 in (a, b, c, d):
        a, b, c, d = a + .5, b + .5, c + .5, d + .5
    return a * d / (b * c)


def test_hand_computed_hypergeometric_case():
    """Seven genes on a circle (0, 10, 25, 45, 70, 100, 150 deg); k = int(6 * 0.4) = 2 of
    N = 6 candidates. G0: top {G1, G2}, partners {G1, G5, G4} -> a = 1, K = 3; G1: top
    {G0, G2}, partner G0 -> a = 1, K = 1; G4 (top {G3, G5}) and G5 (top {G4, G6}): their
    partner G0 is not in the target -> a = 0, K = 1."""
    df = angle_screen([0, 10, 25, 45, 70, 100, 150])
    pairs = pd.DataFrame({"entity1": ["G0", "G5", "G0"], "entity2": ["G1", "G0", "G4"],
                          "source": ["CORUM", "CORUM", "StringDB"]})
    scores, per = relationship_enrichment(df, ["f0", "f1"], pairs, batch_level=["NR"],
                                          cutoff_fraction=0.4, alpha=0.5)
    assert scores.attrs["cutoff"] == 2
    s = scores.set_index(["source", "metric"])
    want = {"G0": (1, 3), "G1": (1, 1), "G4": (0, 1), "G5": (0, 1)}
    p = {g: hyper_sf(a, 6, K, 2) for g, (a, K) in want.items()}
    assert p["G0"] == pytest.approx(1 - 3 / 15) and p["G1"] == pytest.approx(1 / 3)
    o = {g: haldane(a, 2, K, 6) for g, (a, K) in want.items()}
    assert o["G1"] == pytest.approx(9.0) and o["G0"] == pytest.approx(1.0)
    assert s.loc[("all", "fraction_significant"), "value"] == pytest.approx(
        np.mean([p[g] < 0.5 for g in want]))  # only G1
    assert s.loc[("all", "fraction_significant"), "n"] == 4
    assert s.loc[("all", "geometric_mean_or"), "value"] == pytest.approx(
        np.exp(np.mean(np.log(list(o.values())))))
    # per source: CORUM has G0-G1 and G0-G5 only -> G0: a = 1, K = 2
    assert s.loc[("CORUM", "fraction_significant"), "n"] == 3
    assert s.loc[("CORUM", "geometric_mean_or"), "value"] == pytest.approx(
        np.exp(np.mean(np.log([haldane(1, 2, 2, 6), o["G1"], o["G5"]]))))
    assert s.loc[("StringDB", "fraction_significant"), "n"] == 2  # G0 and G4
    got = per[per.metric == "enrichment_odds_ratio"].set_index("perturbation")["value"]
    assert got.to_dict() == pytest.approx(o)
    assert enrichment_p_values([1], 2, [3], [6])[0] == pytest.approx(p["G0"])


def test_permutation_p_follows_morphohelm_monte_carlo():
    """MorphoHELM's default: default_rng(61); per resample one hypergeometric draw of the
    target hits for every tested gene; p = (1 + #{OR* >= OR}) / 101."""
    rng = np.random.default_rng(3)
    n, k = 40, 4
    total = rng.integers(1, 10, size=25)
    a = np.array([rng.integers(0, min(t, k) + 1) for t in total])
    got = enrichment_p_values(a, k, total, np.full(25, n), method="permutation")
    ref_rng = np.random.default_rng(61)
    obs = np.array([haldane(int(x), k, int(t), n) for x, t in zip(a, total)])
    exceed = np.zeros(25)
    for _ in range(100):
        draw = ref_rng.hypergeometric(total, n - total, k)
        exceed += np.array([haldane(int(x), k, int(t), n) for x, t in zip(draw, total)]) >= obs
    np.testing.assert_allclose(got, (exceed + 1) / 101)
    np.testing.assert_allclose(odds_ratio_from_counts(a, k, total, n), obs)
    with pytest.raises(ValueError, match="p_value must be one of"):
        enrichment_p_values(a, k, total, np.full(25, n), method="fisher")


def test_not_same_batch_follows_morphohelm_batchwise_mode():
    """Each (gene, batch) profile queries the genes of the other batches, a candidate gene
    scores its best profile there; K counts partners among those candidates; k is the
    global cutoff; a gene is significant by majority vote over its batch queries."""
    rng = np.random.default_rng(0)
    genes = [f"g{i:02d}" for i in range(30)]
    cent = {g: rng.normal(size=5) for g in genes}
    rows = []
    for b in range(3):
        for g in genes:
            if rng.random() < 0.15:
                continue  # not every gene in every batch
            for _ in range(2):
                rows.append({PERT: g, "Metadata_ControlType": "", "Metadata_Batch": f"b{b}",
                             "Metadata_Plate": f"b{b}p", **dict(zip([f"f{j}" for j in range(5)],
                                                                     cent[g] + 0.8 * rng.normal(size=5)))})
    df = pd.DataFrame(rows)
    feats = [f"f{j}" for j in range(5)]
    pairs = pd.DataFrame({"entity1": [genes[i] for i in range(0, 30, 2)],
                          "entity2": [genes[i + 1] for i in range(0, 30, 2)]})
    # make partners similar: pull odd genes toward their even partner
    for i in range(1, 30, 2):
        m = df[PERT] == genes[i]
        df.loc[m, feats] = df.loc[m, feats].to_numpy() * 0.3 + 0.7 * cent[genes[i - 1]]
    scores, per = relationship_enrichment(df, feats, pairs, batch_level=["NSB"], cutoff_fraction=0.1,
                                          alpha=0.2)
    k = max(1, int(29 * 0.1))
    prof = df.groupby([PERT, "Metadata_Batch"])[feats].mean()
    part = {(a, b) for a, b in zip(pairs.entity1, pairs.entity2)} | {(b, a) for a, b in zip(pairs.entity1, pairs.entity2)}
    tot, sig, ors = {}, {}, []
    for bt in sorted(df["Metadata_Batch"].unique()):
        here = prof.xs(bt, level=1)
        other = prof[prof.index.get_level_values(1) != bt]
        on = other.to_numpy() / np.linalg.norm(other.to_numpy(), axis=1, keepdims=True)
        for g in sorted(here.index):
            v = here.loc[g].to_numpy()
            sims = on @ (v / np.linalg.norm(v))
            best = pd.Series(sims, index=other.index.get_level_values(0)).groupby(level=0).max()
            best = best.drop(g, errors="ignore")
            if len(best) < k + 1:
                continue
            top = best.sort_values(ascending=False).index[:k]
            K = sum((g, c) in part for c in best.index)
            if K == 0:
                continue
            a = sum((g, c) in part for c in top)
            p = hyper_sf(a, len(best), K, k)
            tot[g] = tot.get(g, 0) + 1
            sig[g] = sig.get(g, 0) + (p < 0.2)
            ors.append(haldane(a, k, K, len(best)))
    s = scores.set_index("metric")["value"]
    assert s["fraction_significant"] == pytest.approx(np.mean([sig[g] / tot[g] > 0.5 for g in tot]))
    assert s["geometric_mean_or"] == pytest.approx(np.exp(np.mean(np.log(ors))))
    assert s["fraction_significant"] > 0.3  # the planted partners are found


def test_runs_as_a_task_on_real_annotations(realdata):
    """Registered in run/tasks.py: pairs come from the run's annotations, per source."""
    from baselens.profile.log import FilterLog
    from baselens.run.tasks import run_tasks

    ann = realdata / "annotations"
    if not (ann / "CORUM.txt").exists():
        pytest.skip("annotations not in BASELENS_TEST_DATA")
    from baselens.data.annotations import read_relationship_pairs

    pairs = pd.concat([read_relationship_pairs(ann / f"{src}.txt", source=src)
                       for src in ("CORUM", "StringDB")], ignore_index=True)
    genes = sorted(set(pairs.entity1) | set(pairs.entity2))[:300]
    rng = np.random.default_rng(0)
    x = {g: rng.normal(size=8) for g in genes}
    for a, b in pairs[pairs.entity1.isin(genes) & pairs.entity2.isin(genes)].to_numpy()[:, :2]:
        x[b] = 0.5 * x[b] + 0.5 * x[a]  # partners look alike
    rows = [{PERT: g, "Metadata_ControlType": "", "Metadata_Plate": f"p{i % 2}",
             "Metadata_Well": "A01", **{f"f{j}": v for j, v in enumerate(x[g] + 0.1 * rng.normal(size=8))}}
            for i, g in enumerate(genes) for _ in range(2)]
    prof = pd.DataFrame(rows)
    scores, per = run_tasks(prof, [f"f{j}" for j in range(8)], {"pairs": pairs},
                            {name: {"enabled": False} for name in
                             ("replicate_retrieval", "moa_retrieval", "relationship_recall",
                              "knn_probe", "bioactivity", "regression_probe", "batch_mixing")}
                            | {"relationship_enrichment": {"enabled": True, "batch_level": ["NR"]}},
                            FilterLog(), "toy")
    s = pd.concat(scores)
    assert set(s["task"]) == {"relationship_enrichment"}
    assert {"fraction_significant", "fraction_significant:CORUM",
            "fraction_significant:StringDB", "geometric_mean_or"} <= set(s["metric"])
    assert s.iloc[0]["metric"] == "fraction_significant"  # the headline first
    assert s.set_index("metric").loc["geometric_mean_or", "value"] > 1
