"""baselens.metrics.known_relationship_recall against efaar-benchmarking 1.0 (test oracle).

Recalls must equal ``known_relationship_benchmark`` / ``compute_recall`` to 1e-9.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import baselens.metrics.relationship_recall as rr_module
from baselens.metrics import filter_relationship_pairs, known_relationship_recall

TOL = 1e-9
SOURCES_ON_DISK = ("CORUM", "Reactome", "SIGNOR")  # the three quickest for efaar to parse


def _efaar_benchmark(efaar, features, names, data_dir, sources, thresholds):
    from sklearn.utils import Bunch

    md = pd.DataFrame({"pert": list(names)})
    res = efaar.known_relationship_benchmark(
        Bunch(features=pd.DataFrame(features), metadata=md), "pert",
        benchmark_sources=list(sources), recall_thr_pairs=list(thresholds),
        benchmark_data_dir=str(data_dir),
    )
    return {row["source"]: row for _, row in res.iterrows()}


def _assert_matches(ours: dict, ref_row, thresholds):
    assert ours["null_distribution_size"] == ref_row["null_distribution_size"]
    assert ours["query_distribution_size"] == ref_row["query_distribution_size"]
    for lo, hi in thresholds:
        key = f"recall_{lo}_{hi}"
        assert abs(ours[key] - ref_row[key]) <= TOL, key


def _random_map(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"G{i:04d}" for i in range(n)]
    x = rng.normal(size=(n, d))
    return rng, names, x


def _random_pairs(rng, names, k, extra_names=()):
    pool = np.array(list(names) + list(extra_names), dtype=object)
    a, b = rng.choice(pool, k), rng.choice(pool, k)
    df = pd.DataFrame({"entity1": a, "entity2": b})
    # both directions and self pairs, like the shipped files
    return pd.concat([df, df.rename(columns={"entity1": "entity2", "entity2": "entity1"})], ignore_index=True)


THRESHOLDS = [(0.05, 0.95), (0.1, 0.9)]


def test_random_features_and_pairs_match_efaar(efaar, tmp_path):
    rng, names, x = _random_map()
    # make some known pairs genuinely similar so recall is not at chance
    pairs = _random_pairs(rng, names, 400, extra_names=["NOT_IN_MAP1", "NOT_IN_MAP2"])
    for a, b in pairs.iloc[:60].itertuples(index=False):
        if a in names and b in names:
            x[names.index(b)] = x[names.index(a)] + rng.normal(size=x.shape[1]) * 0.3
    pairs.to_csv(tmp_path / "RANDOM.txt", index=False)
    ref = _efaar_benchmark(efaar, x, names, tmp_path, ["RANDOM"], THRESHOLDS)["RANDOM"]
    ours = known_relationship_recall(x, names, pairs, thresholds=THRESHOLDS)
    _assert_matches(ours, ref, THRESHOLDS)
    assert set(ours) == {"null_distribution_size", "query_distribution_size",
                         "recall_0.05_0.95", "recall_0.1_0.9", "recall_top_0.05"}
    assert ours["recall_0.05_0.95"] > 0.2  # planted signal

    # compute_recall directly on efaar's own null and queries (sklearn cosine matrix)
    from sklearn.metrics.pairwise import cosine_similarity

    sim = pd.DataFrame(cosine_similarity(x, x), index=names, columns=names)
    null = sim.values[np.triu_indices(len(names), k=1)]
    rels = efaar.filter_relationships(pairs.copy())
    rels = rels[rels.entity1.isin(names) & rels.entity2.isin(names)]
    query = np.array([sim.loc[a, b] for a, b in rels.itertuples(index=False)])
    direct = efaar.compute_recall(null, query, THRESHOLDS)
    for k in ("recall_0.05_0.95", "recall_0.1_0.9", "null_distribution_size", "query_distribution_size"):
        assert abs(ours[k] - direct[k]) <= TOL, k
    # upper tail only (arXiv 2603.13377's recall@5%): efaar's right-hand condition alone
    s = np.sort(null)
    top = np.mean(np.searchsorted(s, query, side="left") / len(s) >= 0.95)
    assert abs(ours["recall_top_0.05"] - top) <= TOL


def test_null_with_ties_matches_efaar(efaar, tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    names = [f"T{i}" for i in range(n)]
    x = rng.integers(0, 2, size=(n, 4)).astype(float)  # 15 distinct vectors -> heavy ties
    x[x.sum(axis=1) == 0, 0] = 1.0
    x[:5] = x[5]  # exact duplicate profiles under different names
    pairs = _random_pairs(rng, names, 300)
    pairs.to_csv(tmp_path / "TIES.txt", index=False)
    thresholds = THRESHOLDS + [(0.3, 0.6)]
    ref = _efaar_benchmark(efaar, x, names, tmp_path, ["TIES"], thresholds)["TIES"]
    ours = known_relationship_recall(x, names, pairs, thresholds=thresholds)
    sim = x / np.linalg.norm(x, axis=1)[:, None] @ (x / np.linalg.norm(x, axis=1)[:, None]).T
    assert len(np.unique(np.round(sim[np.triu_indices(n, 1)], 12))) < 50  # the null is tied
    _assert_matches(ours, ref, thresholds)


@pytest.mark.realdata
def test_real_annotation_files_match_efaar(efaar):
    root = os.environ.get("BASELENS_TEST_DATA")
    if not root:
        pytest.skip("BASELENS_TEST_DATA is not set (point it at the shared realdata folder)")
    data_dir = Path(root) / "annotations"
    if not (data_dir / "CORUM.txt").exists():
        pytest.skip(f"{data_dir}/CORUM.txt not found")
    files = {s: pd.read_csv(data_dir / f"{s}.txt") for s in SOURCES_ON_DISK}
    genes = sorted(set().union(*[set(f.entity1) | set(f.entity2) for f in files.values()]))
    rng = np.random.default_rng(2)
    names = list(rng.choice(genes, 800, replace=False))
    x = rng.normal(size=(len(names), 24))
    ref = _efaar_benchmark(efaar, x, names, data_dir, SOURCES_ON_DISK, THRESHOLDS)
    for src, pairs in files.items():
        ours = known_relationship_recall(x, names, pairs, thresholds=THRESHOLDS)
        assert ours["query_distribution_size"] > 100
        _assert_matches(ours, ref[src], THRESHOLDS)
    # filtering equals efaar's filter_relationships on a real file (order aside)
    mine = filter_relationship_pairs(files["SIGNOR"])
    theirs = efaar.filter_relationships(files["SIGNOR"].copy())
    key = ["entity1", "entity2"]
    pd.testing.assert_frame_equal(mine.sort_values(key).reset_index(drop=True),
                                  theirs.sort_values(key).reset_index(drop=True))


def test_blocked_path_equals_full_matrix(monkeypatch):
    rng, names, x = _random_map(n=400, seed=5)
    pairs = _random_pairs(rng, names, 600)
    full = known_relationship_recall(x, names, pairs, thresholds=THRESHOLDS)
    monkeypatch.setattr(rr_module, "_FULL_MATRIX_MAX", 10)
    monkeypatch.setattr(rr_module, "_BLOCK_ENTRIES", 5000)
    assert known_relationship_recall(x, names, pairs, thresholds=THRESHOLDS) == full


def test_random_features_give_chance_recall():
    rng, names, x = _random_map(n=1500, d=32, seed=11)
    idx = rng.permutation(len(names))
    # 3,000 disjoint-ish random pairs
    a = rng.integers(0, len(names), 3000)
    b = (a + rng.integers(1, len(names), 3000)) % len(names)
    pairs = pd.DataFrame({"entity1": np.array(names)[idx[a]], "entity2": np.array(names)[idx[b]]})
    res = known_relationship_recall(x, names, pairs, thresholds=THRESHOLDS)
    q = res["query_distribution_size"]
    assert q > 2900
    for key, chance in (("recall_0.05_0.95", 0.10), ("recall_0.1_0.9", 0.20), ("recall_top_0.05", 0.05)):
        sd = np.sqrt(chance * (1 - chance) / q)
        assert abs(res[key] - chance) < 4 * sd, (key, res[key])


def test_no_overlap_gives_nan_and_zero_queries():
    _, names, x = _random_map(n=20)
    res = known_relationship_recall(x, names, pd.DataFrame({"entity1": ["A"], "entity2": ["B"]}))
    assert res["query_distribution_size"] == 0 and res["null_distribution_size"] == 190
    assert np.isnan(res["recall_0.05_0.95"]) and np.isnan(res["recall_top_0.05"])
    assert "recall_top_0.05" not in known_relationship_recall(x, names, pd.DataFrame(
        {"entity1": ["A"], "entity2": ["B"]}), upper_tail=None)


def test_filter_does_not_mutate_input():
    pairs = pd.DataFrame({"entity1": ["B", "A", "A", "C"], "entity2": ["A", "B", "A", "D"]})
    before = pairs.copy()
    out = filter_relationship_pairs(pairs)
    pd.testing.assert_frame_equal(pairs, before)
    assert out.values.tolist() == [["A", "B"], ["C", "D"]]


def test_errors_raise():
    _, names, x = _random_map(n=30)
    pairs = pd.DataFrame({"entity1": names[:5], "entity2": names[5:10]})
    with pytest.raises(ValueError, match="unique"):
        known_relationship_recall(x, names[:-1] + [names[0]], pairs)
    with pytest.raises(ValueError, match="names were given"):
        known_relationship_recall(x, names[:-1], pairs)
    with pytest.raises(ValueError, match="NaN"):
        known_relationship_recall(np.where(np.eye(30, 16) == 1, np.nan, x), names, pairs)
    with pytest.raises(ValueError, match="entity1"):
        known_relationship_recall(x, names, pairs.rename(columns={"entity1": "a"}))
    with pytest.raises(ValueError, match="at least 2"):
        known_relationship_recall(x[:1], names[:1], pairs)
    with pytest.raises(ValueError, match="threshold"):
        known_relationship_recall(x, names, pairs, thresholds=[(0.05, 1.5)])
    with pytest.raises(ValueError, match="upper_tail"):
        known_relationship_recall(x, names, pairs, upper_tail=1.0)
    with pytest.raises(ValueError, match="2-D"):
        known_relationship_recall(x[:, 0], names, pairs)
