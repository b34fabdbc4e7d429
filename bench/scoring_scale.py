"""Scoring at screen scale: baselens tasks on JUMP-like tables, against copairs 0.5.5.

Usage::

    python bench/scoring_scale.py                       # everything below, defaults
    python bench/scoring_scale.py --wells 20000 --features 1000 --sizes 2000 5000 10000 20000
    python bench/scoring_scale.py --skip-copairs --sizes 2000 5000

Three parts, one process, printed side by side:

1. **Screen run** (``--wells`` x ``--features``, 3 representations ``profiles``, ``batchy``,
   ``noise`` of :mod:`jump_like`): replicate retrieval and MoA retrieval (mAP with
   p-values, ``null_size`` 10,000), the kNN probe and batch mixing, at NR, NSP and NSB,
   through ``baselens.run.tasks.run_tasks`` (what ``baselens run`` calls). Wall time per
   representation and task, null-cache statistics, peak memory (process max RSS).
2. **Growth with N**: the same run for each of ``--sizes`` (one representation each, to
   keep it short), time per size and the observed exponent of a log-log fit.
3. **copairs 0.5.5** on the same input at NR (replicate retrieval vs DMSO, copairs'
   reference-index recipe: ``average_precision`` + ``mean_average_precision``) at the
   ``--copairs-wells`` sizes (whole replicate sets of plates; by default 5,000 and the full
   20,000 wells: copairs finishes this recipe within minutes). Its scaling exponent is
   measured between the sizes; a largest size below ``--wells`` is extrapolated, saying
   so. Prints the ratio, the maximum |AP difference| and the p-value comparison: identical
   under a shared null (copairs is handed baselens' null vectors), and, with each tool's
   own null, the largest difference.

Timings are wall seconds on whatever this machine is doing: on a shared machine run it
under ``nice -n -5`` if allowed, or repeat, and quote the load average printed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jump_like import jump_like_design, jump_like_features  # noqa: E402

LEVELS = ["NR", "NSP", "NSB"]
REPRESENTATIONS = ["profiles", "batchy", "noise"]


def _tasks_cfg(null_size: int) -> dict:
    off = {"enabled": False}
    return {
        "replicate_retrieval": {"batch_level": LEVELS, "null_size": null_size},
        "moa_retrieval": {"batch_level": LEVELS, "null_size": null_size},
        "knn_probe": {"levels": LEVELS},
        "batch_mixing": {"labels": ["Metadata_Plate", "Metadata_Batch"]},
        "relationship_recall": off, "bioactivity": off, "regression_probe": off,
        "morphohelm": off, "control_retrieval": off,
    }


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_screen(n_wells: int, n_features: int, representations, null_size: int,
                 verbose: bool = True) -> dict:
    """Run the tasks on every representation; returns timings and counts."""
    from baselens.metrics.average_precision import NULL_CACHE
    from baselens.profile.log import FilterLog
    from baselens.run.tasks import run_tasks

    meta = jump_like_design(n_wells)
    feats = [f"X_{i}" for i in range(n_features)]
    NULL_CACHE.clear()
    cfg = _tasks_cfg(null_size)
    per_task: dict[tuple[str, str], float] = {}
    t_all = time.perf_counter()
    for rep in representations:
        x = jump_like_features(meta, n_features, representation=rep)
        profiles = pd.concat([meta, pd.DataFrame(x, columns=feats)], axis=1)
        del x
        t_task = [time.perf_counter()]

        def step(task, scores, rep=rep, t_task=t_task):
            now = time.perf_counter()
            per_task[(rep, task)] = now - t_task[0]
            t_task[0] = now

        scores, _ = run_tasks(profiles, feats, {}, cfg, FilterLog(), rep, progress=step)
        if verbose:
            s = pd.concat(scores)
            head = s[(s.batch_level == "NR") & s.metric.isin(
                ["mean_average_precision", "macro_f1", "ilisi_scaled"])]
            print(f"  {rep:9s} " + ", ".join(f"{r.task}/{r.metric}={r.value:.3f}"
                                             for r in head.itertuples()), flush=True)
        del profiles
    total = time.perf_counter() - t_all
    return {"total": total, "per_task": per_task, "null": NULL_CACHE.stats(),
            "wells": len(meta), "rss": _max_rss_mib()}


def _replicate_inputs(meta: pd.DataFrame):
    """copairs' reference-index recipe: treated wells vs DMSO wells, at NR."""
    from copairs.matching import assign_reference_index

    m = meta[["Metadata_Perturbation", "Metadata_Plate", "Metadata_ControlType"]].copy()
    m = assign_reference_index(m, "Metadata_ControlType == 'negcon'",
                               reference_col="Metadata_Reference_Index", default_value=-1)
    rule = dict(pos_sameby=["Metadata_Perturbation", "Metadata_Reference_Index"],
                pos_diffby=[], neg_sameby=[],
                neg_diffby=["Metadata_Perturbation", "Metadata_Reference_Index"])
    return m, rule


def _ours_replicate(meta, x, null_size, cache=None):
    from baselens import metrics

    m, rule = _replicate_inputs(meta)
    t = time.perf_counter()
    ap = metrics.average_precision(m, x, **rule)
    ap = ap[ap["n_pos_pairs"] > 0]
    maps = metrics.mean_average_precision(ap, ["Metadata_Perturbation"], null_size=null_size,
                                          seed=0, null_cache=cache)
    return time.perf_counter() - t, ap, maps


def _copairs_replicate(meta, x, null_size, cache_dir, null_from=None):
    import copairs.map as cm
    import copairs.map.map as cmm

    m, rule = _replicate_inputs(meta)
    real = cmm.compute.get_null_dists
    if null_from is not None:  # shared null: copairs gets baselens' null vectors
        cmm.compute.get_null_dists = lambda confs, null_size, seed, cache_dir=None, \
            progress_bar=True: np.stack([null_from.get(int(a), int(b), null_size, 0)
                                         for a, b in confs])
    try:
        t = time.perf_counter()
        ap = cm.average_precision(m, x, **rule, progress_bar=False)
        ap = ap[ap["n_pos_pairs"] > 0]
        maps = cm.mean_average_precision(ap, ["Metadata_Perturbation"], null_size=null_size,
                                         threshold=0.05, seed=0, progress_bar=False,
                                         cache_dir=cache_dir)
        return time.perf_counter() - t, ap, maps
    finally:
        cmm.compute.get_null_dists = real


def copairs_comparison(n_wells: int, n_features: int, sub_wells: list[int], null_size: int,
                       tmp: Path) -> None:
    from baselens.metrics.average_precision import NullCache

    meta_full = jump_like_design(n_wells)
    x_full = jump_like_features(meta_full, n_features)
    print(f"\n== copairs 0.5.5 vs baselens: replicate retrieval vs DMSO at NR, null_size "
          f"{null_size} ==")
    print(f"{'wells':>7} {'copairs s':>10} {'baselens s':>11} {'ratio':>7} "
          f"{'max|dAP|':>9} {'p shared null':>14} {'max|dp| own nulls':>18}")
    times = []
    for n in sub_wells:
        # a subsample of whole plates keeps the design: the first K plate slots of each of
        # the 4 replicate sets (a compound's replicates sit per_set plates apart)
        plates = np.sort(meta_full["Metadata_Plate"].unique())
        first = meta_full.loc[meta_full["Metadata_Perturbation"] == "C000000", "Metadata_Plate"]
        pidx = np.sort(np.searchsorted(plates, first.to_numpy()))
        per_set = int(pidx[1] - pidx[0])
        k = max(1, int(round(per_set * n / len(meta_full))))
        keep_pl = [p for i, p in enumerate(plates) if i % per_set < k]
        keep = meta_full["Metadata_Plate"].isin(keep_pl).to_numpy()
        meta, x = meta_full[keep].reset_index(drop=True), x_full[keep]
        cache = NullCache()
        t_ours, ap_ours, map_ours = _ours_replicate(meta, x, null_size, cache)
        t_ref, ap_ref, map_ref = _copairs_replicate(meta, x, null_size, tmp / "own")
        _, _, map_shared = _copairs_replicate(meta, x, null_size, tmp / "shared", null_from=cache)
        d_ap = float(np.nanmax(np.abs(ap_ours["average_precision"].to_numpy()
                                      - ap_ref["average_precision"].to_numpy())))
        same_p = bool(np.array_equal(map_ours["p_value"].to_numpy(),
                                     map_shared["p_value"].to_numpy()))
        d_p = float(np.max(np.abs(map_ours["p_value"].to_numpy() - map_ref["p_value"].to_numpy())))
        times.append((len(meta), t_ref, t_ours))
        print(f"{len(meta):>7} {t_ref:>10.2f} {t_ours:>11.2f} {t_ref / t_ours:>6.1f}x "
              f"{d_ap:>9.1e} {('identical' if same_p else 'DIFFER'):>14} {d_p:>18.4f}", flush=True)
    (n1, c1, _), (n2, c2, _) = times[0], times[-1]
    k = np.log(c2 / c1) / np.log(n2 / n1) if n2 != n1 else 2.0
    print(f"copairs scaling exponent (measured {n1} -> {n2} wells): {k:.2f}")
    if n2 < len(meta_full):
        t_ours_full, _, _ = _ours_replicate(meta_full, x_full, null_size, NullCache())
        extrap = c2 * (len(meta_full) / n2) ** k
        print(f"copairs extrapolated to {len(meta_full)} wells: {extrap:.0f} s (not run); "
              f"baselens on all {len(meta_full)} wells: {t_ours_full:.2f} s  ->  "
              f"{extrap / t_ours_full:.0f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells", type=int, default=20_000)
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--null-size", type=int, default=10_000)
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 5000, 10000, 20000],
                    help="wells for the growth table (one representation each)")
    ap.add_argument("--copairs-wells", type=int, nargs="*", default=[5000, 20000],
                    help="sizes copairs runs on (whole replicate sets of plates; the largest "
                         "below --wells is extrapolated with the measured exponent)")
    ap.add_argument("--skip-screen", action="store_true")
    ap.add_argument("--skip-copairs", action="store_true")
    args = ap.parse_args()
    import tempfile

    if not args.skip_screen:
        print(f"== {args.wells} wells x {args.features} features x {len(REPRESENTATIONS)} "
              f"representations: replicate + MoA retrieval (p-values), kNN probe, batch "
              f"mixing at {', '.join(LEVELS)} ==", flush=True)
        r = score_screen(args.wells, args.features, REPRESENTATIONS, args.null_size)
        tasks = sorted({t for _, t in r["per_task"]})
        print(f"{'task':22s} " + " ".join(f"{rep:>9s}" for rep in REPRESENTATIONS))
        for t in tasks:
            print(f"{t:22s} " + " ".join(f"{r['per_task'].get((rep, t), float('nan')):>8.1f}s"
                                         for rep in REPRESENTATIONS))
        print(f"total {r['total']:.1f} s for {r['wells']} wells (target < 180 s); null cache "
              f"{r['null']}; peak memory (max RSS) {r['rss']:.0f} MiB", flush=True)
    if args.sizes:
        print("\n== growth with N (1 representation, same tasks and levels) ==")
        rows = []
        for n in args.sizes:
            r = score_screen(n, args.features, ["profiles"], args.null_size, verbose=False)
            rows.append((r["wells"], r["total"]))
            print(f"{r['wells']:>7} wells {r['total']:>8.1f} s  (max RSS so far "
                  f"{r['rss']:.0f} MiB)", flush=True)
        if len(rows) > 1:
            n, t = np.log([a for a, _ in rows]), np.log([b for _, b in rows])
            slope = np.polyfit(n, t, 1)[0]
            print(f"observed exponent (log-log fit of time on wells): {slope:.2f}")
    if not args.skip_copairs:
        with tempfile.TemporaryDirectory() as tmp:
            copairs_comparison(args.wells, args.features, args.copairs_wells, args.null_size,
                               Path(tmp))
    print(f"\nload average at the end: {os.getloadavg()}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
