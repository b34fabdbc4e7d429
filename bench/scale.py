"""Scale: wall time per stage and peak memory on synthetic screens of growing size.

    python bench/scale.py                      # 500, 2000, 8000 sites x 1, 2 workers
    python bench/scale.py --sites 500 2000 --workers 1 2 --out /tmp/scale

Each (screen, workers) runs ``run_pipeline`` in a fresh process (cheap methods: pixel_stats,
cell_count, single_conv with 8 filters; 64 px images; dask LocalCluster with ``workers``
single-threaded worker processes; chunks of 128 sites). Peak memory is ``ru_maxrss`` of
the client process and the largest of its children (the dask worker processes), read
after the cluster has shut down. Screens are generated once per size and not timed.
Time should grow about linearly with sites; peak memory of a worker should stay flat
(it holds one chunk), the client's grows only with the per-site feature tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = [{"name": "pixel_stats"}, {"name": "cell_count"},
           {"name": "single_conv", "params": {"n_filters": 8}}]
STAGES = ["data", "extract", "profile", "evaluate", "diagnose", "report"]


def screen_config(n_sites: int):
    """A quick-preset screen with about ``n_sites`` sites (4 sites per well, 64 px)."""
    from baselens.data.synthetic import (SyntheticConfig, make_layout, make_perturbations,
                                         make_plates)

    spw = 4

    def size(g, plates):
        c = SyntheticConfig.quick(sites_per_well=spw, n_gene_singletons=g, image_size=64,
                                  n_plates_per_batch=plates, plate_format=384)
        try:
            return c, len(make_layout(c, make_perturbations(c), make_plates(c))) * spw
        except ValueError:  # does not fit on the plates
            return c, -1

    for plates in range(1, 200):
        lo, hi = 1, 4000
        while lo < hi:  # smallest number of singleton genes reaching n_sites
            mid = (lo + hi) // 2
            if size(mid, plates)[1] >= n_sites:
                hi = mid
            else:
                lo = mid + 1
        c, n = size(lo, plates)
        if n >= n_sites:
            return c
    raise ValueError(f"no quick-preset screen of {n_sites} sites")


def child(load_data: str, out: str, workers: int) -> None:
    import baselens.report.html as html
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    real = html.write_report

    def write_report(out_dir, **kw):  # a report bug must not hide the timings of the rest
        try:
            return real(out_dir, **kw)
        except Exception as exc:  # noqa: BLE001
            print(f"report failed ({exc!r}); timings without it", file=sys.stderr)
            return Path(out_dir) / "report.html"

    html.write_report = write_report

    cfg = RunConfig.from_dict({
        "data": {"load_data": load_data}, "methods": METHODS,
        "tasks": {"replicate_retrieval": {"null_size": 2000}},
        "execution": {"executor": "dask", "workers": workers, "chunk_size": 128,
                      "dashboard_address": ":0"}})
    t = time.perf_counter()
    res = run_pipeline(cfg, out, progress=False)
    wall = time.perf_counter() - t
    kib = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    print(json.dumps({
        "wall_s": wall, "timings_s": res.timings,
        "client_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 1024,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 1024,
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sites", type=int, nargs="+", default=[500, 2000, 8000])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default="/tmp/baselens_scale")
    p.add_argument("--child", nargs=3, metavar=("LOAD_DATA", "OUT", "WORKERS"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]))
        return
    from baselens.data.synthetic import generate_screen

    root = Path(a.out)
    rows = []
    head = ("| sites | workers | " + " | ".join(STAGES) + " | total s | sites/s extract "
            "| client peak MiB | worker peak MiB |")
    print(head + "\n|" + "---|" * (len(STAGES) + 6), flush=True)
    for n in a.sites:
        cfg = screen_config(n)
        t = time.perf_counter()
        ld = generate_screen(cfg, root / f"screen_{n}")
        gen = time.perf_counter() - t
        import pandas as pd

        n_sites = len(pd.read_parquet(ld))
        print(f"<!-- screen {n}: {n_sites} sites generated in {gen:.0f} s -->", flush=True)
        for w in a.workers:
            out = root / f"run_{n}_w{w}"
            if out.exists():
                import shutil

                shutil.rmtree(out)  # time extraction, not the cache
            r = subprocess.run([sys.executable, __file__, "--child", str(ld), str(out), str(w)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                raise SystemExit(r.returncode)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            tm = res["timings_s"]
            rows.append({"sites": n_sites, "workers": w, **res})
            print(f"| {n_sites} | {w} | " + " | ".join(f"{tm.get(s, 0):.1f}" for s in STAGES)
                  + f" | {res['wall_s']:.1f} | {n_sites / max(tm['extract'], 1e-9):.0f}"
                  f" | {res['client_peak_mib']:.0f} | {res['worker_peak_mib']:.0f} |", flush=True)
    (root / "scale.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
