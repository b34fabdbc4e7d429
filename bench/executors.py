"""Executors side by side: the same chunks and extractors on each executor, one process.

    python bench/executors.py                       # quick-preset screen, 2 workers
    python bench/executors.py --preset demo --workers 2 --repeat 2

For each executor the extraction stage of ``run_pipeline`` runs into a fresh folder (no
cache) and prints sites/s, and the ratio against the spawn process pool. Variants:

* ``processes``       spawn ProcessPoolExecutor (the peer);
* ``dask``            LocalCluster as baselens starts it (glibc malloc left to its defaults);
* ``dask-dask-env``   LocalCluster with dask's stock nanny environment
                      (``MALLOC_TRIM_THRESHOLD_=65536``: glibc then stops adapting its mmap
                      threshold, so every large temporary array is mmapped and page-faulted
                      afresh — the slowdown this bench was written to find);
* ``serial``          this process, one core.

Runs alternate executors within each repeat so that load from other processes on the
machine hits every executor alike.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

METHODS = [{"name": "pixel_stats"}, {"name": "cell_count"}, {"name": "single_conv"},
           {"name": "classic", "params": {
               "objects": ["Cells"], "groups": ["intensity", "texture", "radial"],
               "group_channels": {"texture": ["Mito"], "radial": ["RNA"]}, "gray_levels": 16,
               "edge_measurements": False, "aggregations": ["median"]}},
           {"name": "resnet50", "label": "resnet50_random",
            "params": {"weights": "random", "seed": 0, "channels": "expand",
                       "intensity": "image_percentile", "geometry": "resize", "input_size": 112}}]


def extract_once(ld_path: Path, out: Path, executor: str, workers: int) -> float:
    import dask

    from baselens.run.config import RunConfig
    from baselens.run.pipeline import _extract, _Progress
    from baselens.run.units import SiteUnits

    ex = {"executor": executor.split("-")[0], "workers": workers, "dashboard_address": ":0"}
    cfg = RunConfig.from_dict({"data": {"load_data": str(ld_path)}, "methods": METHODS,
                               "execution": ex})
    units = SiteUnits()
    units.load(cfg, out, _Progress(False), None)
    stock = executor == "dask-dask-env"
    with dask.config.set({"baselens.keep-dask-nanny-environ": stock}):
        t = time.perf_counter()
        _extract(cfg, units, out, _Progress(False))
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="quick", choices=["quick", "demo"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--executors", nargs="+",
                    default=["processes", "dask", "dask-dask-env", "serial"])
    ap.add_argument("--data", default=None, help="folder for the screen (default: a temp dir)")
    args = ap.parse_args()

    from baselens.data.synthetic import SyntheticConfig, generate_screen

    root = Path(args.data or tempfile.mkdtemp(prefix="baselens-bench-"))
    cfg = getattr(SyntheticConfig, args.preset)()
    ld_path = Path(generate_screen(cfg, root / "screen"))
    import pandas as pd

    n = len(pd.read_parquet(ld_path)) if ld_path.suffix == ".parquet" else len(pd.read_csv(ld_path))
    times: dict[str, list[float]] = {e: [] for e in args.executors}
    for r in range(args.repeat):
        for e in args.executors:
            out = root / f"run-{e}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            times[e].append(extract_once(ld_path, out, e, args.workers))
            print(f"  repeat {r}: {e:<14} {times[e][-1]:7.1f} s", flush=True)
    peer = min(times.get("processes", [float("nan")]))
    print(f"\n{n} sites, {len(METHODS)} methods, {args.workers} workers, best of {args.repeat}")
    print(f"{'executor':<14} {'seconds':>8} {'sites/s':>8} {'vs processes':>13}")
    for e, ts in times.items():
        b = min(ts)
        print(f"{e:<14} {b:8.1f} {n / b:8.1f} {peer / b:12.2f}x")


if __name__ == "__main__":
    main()
