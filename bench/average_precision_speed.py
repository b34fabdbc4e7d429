"""Time copairs vs baselens average precision on the same synthetic screen, same process.

Usage::

    python bench/average_precision_speed.py [--n 3000] [--d 300] [--reps 4] [--repeat 1]

Builds ``n`` profiles (``n // reps`` compounds with ``reps`` replicates, 10% DMSO wells), runs
``copairs.map.average_precision`` and ``baselens.metrics.average_precision`` with the
replicate-vs-everything recipe (pos_sameby=[compound], neg_diffby=[compound]) and prints
both wall times, the ratio and the maximum absolute AP difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def make_screen(n: int, d: int, reps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_dmso = n // 10
    n_cpd = (n - n_dmso) // reps
    labels = [f"cpd{i}" for i in range(n_cpd) for _ in range(reps)]
    labels += ["DMSO"] * (n - len(labels))
    meta = pd.DataFrame(
        {
            "Metadata_Compound": labels,
            "Metadata_Plate": rng.integers(0, 8, n).astype(str),
        }
    )
    effects = {c: rng.normal(scale=0.5, size=d) for c in set(labels)}
    effects["DMSO"] = np.zeros(d)
    x = rng.normal(size=(n, d)) + np.stack([effects[c] for c in labels])
    return meta, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--d", type=int, default=300)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per implementation (best is kept)")
    ap.add_argument("--skip-copairs", action="store_true")
    args = ap.parse_args()

    from baselens.metrics import average_precision

    meta, x = make_screen(args.n, args.d, args.reps)
    rule = dict(
        pos_sameby=["Metadata_Compound"], pos_diffby=[], neg_sameby=[], neg_diffby=["Metadata_Compound"]
    )
    print(f"{args.n} profiles x {args.d} features, {meta.Metadata_Compound.nunique()} groups")

    best_ours = np.inf
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = average_precision(meta, x, **rule)
        best_ours = min(best_ours, time.perf_counter() - t)
    print(f"baselens : {best_ours:8.2f} s")
    if args.skip_copairs:
        return

    import copairs.map

    best_ref = np.inf
    for _ in range(args.repeat):
        t = time.perf_counter()
        ref = copairs.map.average_precision(meta, x, **rule, progress_bar=False)
        best_ref = min(best_ref, time.perf_counter() - t)
    diff = np.nanmax(np.abs(ref["average_precision"].to_numpy() - ours["average_precision"].to_numpy()))
    print(f"copairs  : {best_ref:8.2f} s")
    print(f"ratio    : {best_ref / best_ours:8.1f}x faster (copairs / baselens)")
    print(f"max |AP difference| = {diff:.3g}")


if __name__ == "__main__":
    main()
