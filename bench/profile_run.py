"""`baselens run` on a small profile table, start-up included, optionally against another
source tree side by side.

Usage::

    python bench/profile_run.py [--wells 2000] [--features 352] [--table FILE]
                                [--baseline-src /path/to/older/src] [--repeat 1]

Writes a JUMP-like profile table (:mod:`jump_like`; or uses ``--table``, e.g. a real
pycytominer CSV), builds the run with ``baselens load-data TABLE --out DIR`` (methods:
the profiles via ``precomputed``, ``plate_layout`` and ``random``; default tasks), then
times ``python -m baselens.run.cli run DIR/run.toml --out RUN`` as a subprocess: wall
seconds from process start to exit (interpreter start-up and imports included), and the
stage timings of ``run.json``. With ``--baseline-src`` the same command runs with that
``src`` folder first on ``PYTHONPATH`` (e.g. ``git archive <commit> src | tar -x -C /tmp/old``)
and the ratio is printed. The issue's target: under 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jump_like import jump_like_profiles  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(src: Path, args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(src))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "baselens.run.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"baselens {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc


def time_run(src: Path, work: Path, tag: str) -> dict:
    out = work / f"run-{tag}"
    wall, proc = _run(src, ["run", str(work / "inputs" / "run.toml"), "--out", str(out)], work)
    info = json.loads((out / "run.json").read_text())
    dask_lines = sum("distributed." in ln for ln in proc.stderr.splitlines())
    return {"wall": wall, "timings": info["timings_s"], "stderr_lines": len(proc.stderr.splitlines()),
            "dask_lines": dask_lines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells", type=int, default=2000)
    ap.add_argument("--features", type=int, default=352)
    ap.add_argument("--table", default=None, help="an existing profile table instead")
    ap.add_argument("--n-moa", type=int, default=60,
                    help="mechanisms in the synthetic table (few = large MoA groups: many "
                         "positives per query, the case that made the old null slow)")
    ap.add_argument("--moa-fraction", type=float, default=0.3)
    ap.add_argument("--baseline-src", default=None, help="another src/ folder to compare")
    ap.add_argument("--repeat", type=int, default=1, help="runs per source tree (best kept)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table = Path(args.table) if args.table else work / "profiles.parquet"
        if not args.table:
            df, _ = jump_like_profiles(args.wells, args.features, n_moa=args.n_moa,
                                       moa_fraction=args.moa_fraction)
            df.to_parquet(table, index=False)
        _run(SRC, ["load-data", str(table), "--out", str(work / "inputs")], work)
        trees = [("this tree", SRC)]
        if args.baseline_src:
            trees.insert(0, ("baseline", Path(args.baseline_src)))
        results = {}
        for name, src in trees:
            best = None
            for i in range(args.repeat):
                r = time_run(src, work, f"{name.replace(' ', '_')}-{i}")
                best = r if best is None or r["wall"] < best["wall"] else best
            results[name] = best
        what = (table if args.table else f"{args.wells} JUMP-like wells ({args.n_moa} MoAs on "
                f"{args.moa_fraction:.0%} of compounds)")
        print(f"profile table: {what} x "
              f"{args.features} features; methods profiles, plate_layout, random; default tasks")
        stages = ["data", "extract", "profile", "evaluate", "diagnose", "report"]
        print(f"{'':12s} {'wall s':>7} " + " ".join(f"{s:>9s}" for s in stages)
              + f" {'stderr lines':>13} {'dask lines':>11}")
        for name, r in results.items():
            print(f"{name:12s} {r['wall']:>7.1f} "
                  + " ".join(f"{r['timings'].get(s, float('nan')):>9.1f}" for s in stages)
                  + f" {r['stderr_lines']:>13d} {r['dask_lines']:>11d}")
        if len(results) == 2:
            a, b = results["baseline"]["wall"], results["this tree"]["wall"]
            print(f"ratio baseline / this tree: {a / b:.1f}x")
        print(f"load average: {os.getloadavg()}; cores: {os.cpu_count()} (target: < 15 s on 2 "
              "cores, start-up included)")


if __name__ == "__main__":
    main()
