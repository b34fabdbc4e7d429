"""Ours vs copairs / efaar-benchmarking on the same generated inputs, plus a scale run.

Usage::

    python bench/metrics.py [--n 3000] [--d 300] [--genes 1500] [--scale-n 100000]
                            [--scale-d 1000] [--skip-scale] [--skip-oracles]

Comparisons (same process, same arrays; wall time, ratio, max |difference|):

1. replicate retrieval AP (negcon reference-index recipe) at NR and NSB —
   ``copairs.map.average_precision`` vs ``baselens.metrics.average_precision``;
2. multilabel MoA AP — ``copairs.map.multilabel.average_precision`` vs
   ``baselens.metrics.multilabel_average_precision`` (per-label);
3. known-relationship recall — ``efaar_benchmarking.benchmarking.known_relationship_benchmark``
   vs ``baselens.metrics.known_relationship_recall`` (efaar imported with torch/geomloss
   stubbed, as in the tests).

Scale run (ours only): ``--scale-n`` profiles x ``--scale-d`` features, replicate-vs-all AP
(blocked; no N x N matrix held) and recall on the perturbation means; prints wall time and
peak memory (tracemalloc peak of Python/NumPy allocations, and the process max RSS).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
import types

import numpy as np
import pandas as pd


def make_screen(n: int, d: int, reps: int = 4, seed: int = 0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    n_dmso = n // 10
    n_cpd = (n - n_dmso) // reps
    cpd = np.r_[np.repeat(np.arange(n_cpd), reps), np.full(n - n_cpd * reps, -1)]
    labels = np.where(cpd < 0, "DMSO", np.char.add("cpd", cpd.astype(str)))
    moas = np.array(["a", "b", "c", "d", "e", "a|b", "c|d", "f"])
    meta = pd.DataFrame({
        "Metadata_Perturbation": labels,
        "Metadata_Batch": rng.integers(0, 6, n).astype(str),
        "Metadata_moa": np.where(cpd < 0, "", moas[np.maximum(cpd, 0) % len(moas)]),
    })
    x = rng.standard_normal((n, d), dtype=np.float32).astype(dtype)
    eff = rng.standard_normal((n_cpd + 1, d), dtype=np.float32) * 0.5
    eff[-1] = 0
    x += eff[cpd].astype(dtype)
    return meta, x


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def report(name, t_ref, t_ours, diff):
    print(f"{name:<44s} reference {t_ref:8.2f} s   ours {t_ours:7.2f} s   "
          f"ratio {t_ref / t_ours:6.1f}x   max|diff| {diff:.2e}", flush=True)


def bench_ap(n, d):
    import copairs.map as cm

    from baselens.evaluate.batch_levels import apply_level
    from baselens.metrics import average_precision
    meta, x = make_screen(n, d)
    negcon = (meta["Metadata_Perturbation"] == "DMSO").to_numpy()
    meta["ref"] = np.where(negcon, np.arange(n), -1)
    for level in ("NR", "NSB"):
        rules = apply_level(["Metadata_Perturbation", "ref"], [], [], ["Metadata_Perturbation", "ref"], level)
        ref, t_ref = timed(lambda: cm.average_precision(meta, x, **rules, progress_bar=False))
        ours, t_ours = timed(lambda: average_precision(meta, x, **rules))
        ref = ref.sort_index()
        diff = np.nanmax(np.abs(ref["average_precision"].to_numpy() - ours["average_precision"].to_numpy()))
        report(f"AP negcon {level} {n}x{d}", t_ref, t_ours, diff)


def bench_multilabel(n, d):
    from copairs.map.multilabel import average_precision as cml

    from baselens.metrics import multilabel_average_precision
    meta, x = make_screen(n, d, seed=1)
    keep = (meta["Metadata_moa"] != "").to_numpy()
    meta, x = meta[keep].reset_index(drop=True), x[keep]
    meta["rid"] = np.arange(len(meta))
    m2 = meta.assign(Metadata_moa=meta["Metadata_moa"].str.split("|"))
    ref, t_ref = timed(lambda: cml(m2, x, ["Metadata_moa"], ["Metadata_Perturbation"], [], ["Metadata_moa"],
                                   "Metadata_moa", progress_bar=False))
    ours, t_ours = timed(lambda: multilabel_average_precision(meta, x, "Metadata_moa",
                                                              pos_diffby=["Metadata_Perturbation"]))
    m = ref.merge(ours, on=["rid", "Metadata_moa"], suffixes=("_r", "_o"))
    assert len(m) == len(ref) == len(ours)
    diff = float(np.abs(m["average_precision_r"] - m["average_precision_o"]).max())
    report(f"multilabel AP {len(meta)}x{d}", t_ref, t_ours, diff)


def import_efaar():
    import scipy.stats  # noqa: F401
    import sklearn.metrics.pairwise  # noqa: F401
    import sklearn.utils  # noqa: F401
    stubs = {"torch": types.ModuleType("torch"), "geomloss": types.ModuleType("geomloss")}
    stubs["torch"].from_numpy = lambda a: a
    stubs["geomloss"].SamplesLoss = lambda *a, **k: None
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        import efaar_benchmarking.benchmarking as bench
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return bench


def bench_recall(n_genes, d):
    from baselens.metrics import known_relationship_recall
    bench = import_efaar()
    rng = np.random.default_rng(2)
    names = [f"G{i}" for i in range(n_genes)]
    x = rng.normal(size=(n_genes, d))
    groups = rng.integers(0, n_genes // 5, n_genes)
    x += rng.normal(size=(n_genes // 5 + 1, d))[groups] * 0.5
    e1, e2 = [], []
    for g in np.unique(groups):
        mem = np.flatnonzero(groups == g)
        for a in mem:
            for b in mem:
                if a != b:
                    e1.append(names[a]); e2.append(names[b])
    pairs = pd.DataFrame({"entity1": e1, "entity2": e2})
    feats = pd.DataFrame(x, index=pd.Index(names, name="gene"))
    meta = pd.DataFrame({"gene": names})

    def ref_fn():
        # efaar's compute_recall on its null/query construction (the part our metric replaces)
        from sklearn.metrics.pairwise import cosine_similarity
        sim = cosine_similarity(x, x)
        null = sim[np.triu_indices(n_genes, k=1)]
        rels = bench.filter_relationships(pairs.copy())
        idx = {g: i for i, g in enumerate(names)}
        q = sim[rels["entity1"].map(idx).to_numpy(), rels["entity2"].map(idx).to_numpy()]
        return bench.compute_recall(null, q, [(0.05, 0.95)])

    ref, t_ref = timed(ref_fn)
    ours, t_ours = timed(lambda: known_relationship_recall(x, names, pairs, thresholds=[(0.05, 0.95)],
                                                           upper_tail=None))
    diff = abs(ref["recall_0.05_0.95"] - ours["recall_0.05_0.95"])
    report(f"recall {n_genes} genes x{d} ({len(pairs)} pairs)", t_ref, t_ours, diff)
    del feats, meta


def bench_scale(n, d):
    from baselens.metrics import average_precision, known_relationship_recall
    print(f"\nscale run: {n} profiles x {d} features (float64), ours only", flush=True)
    meta, x = make_screen(n, d, reps=10)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ap, t = timed(lambda: average_precision(meta, x, ["Metadata_Perturbation"], [], [],
                                            ["Metadata_Perturbation"]))
    peak = tracemalloc.get_traced_memory()[1] - base
    print(f"  AP replicate-vs-all: {t:8.1f} s, tracemalloc peak {peak / 2**30:.2f} GiB above the "
          f"{x.nbytes / 2**30:.2f} GiB input; mean AP {ap['average_precision'].mean():.4f}", flush=True)
    tracemalloc.reset_peak()
    pp = pd.DataFrame(x).groupby(meta["Metadata_Perturbation"].to_numpy()).mean()
    rng = np.random.default_rng(3)
    names = pp.index.tolist()
    pairs = pd.DataFrame({"entity1": rng.choice(names, 20000), "entity2": rng.choice(names, 20000)})
    res, t = timed(lambda: known_relationship_recall(pp.to_numpy(), names, pairs))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print(f"  recall on {len(names)} perturbation means: {t:8.1f} s, tracemalloc peak "
          f"{peak / 2**30:.2f} GiB; recall_0.05_0.95 {res['recall_0.05_0.95']:.4f}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  process max RSS {rss:.2f} GiB", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--d", type=int, default=300)
    p.add_argument("--genes", type=int, default=1500)
    p.add_argument("--scale-n", type=int, default=100_000)
    p.add_argument("--scale-d", type=int, default=1000)
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--skip-oracles", action="store_true")
    a = p.parse_args()
    if not a.skip_oracles:
        bench_ap(a.n, a.d)
        bench_multilabel(a.n // 2, a.d)
        bench_recall(a.genes, a.d)
    if not a.skip_scale:
        bench_scale(a.scale_n, a.scale_d)


if __name__ == "__main__":
    main()
