"""CI: the table route end to end in an environment with the core only (``pip install .``).

Run with the core environment's Python (``.ci/run`` creates it)::

    CORE/bin/python .ci/core_env_check.py LINCS_TABLE WORKDIR

Checks, each failing the step with a message:

1. no extra is importable (the environment really is the core: torch, skimage, ...);
2. ``baselens load-data TABLE`` then ``baselens run run.toml`` on the real LINCS plate
   writes scores for the table and its baselines and a report;
3. the Python API (``baselens.Benchmark``, when this version has it) scores the same table;
4. a config naming ``vit_s16_random`` fails at validation with one line naming
   ``pip install "baselens[...networks...]"``, no traceback, and writes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

EXTRA_MODULES = ("torch", "torchvision", "timm", "safetensors", "skimage", "tifffile",
                 "imagecodecs", "cp_measure", "xgboost", "h5py")


def fail(msg: str) -> None:
    print(f"core env check FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def baselens(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("baselens")
    p = subprocess.run([str(exe), *args], capture_output=True, text=True)
    print(f"$ baselens {' '.join(args)}  -> rc {p.returncode}")
    return p


def main(table: str, work: str) -> None:
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    present = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is not None]
    if present:
        fail(f"the core environment has extras installed: {', '.join(present)}")
    print("core environment: no extra importable")

    if table and Path(table).exists():
        p = baselens("load-data", table, "--out", str(work_dir / "lincs"))
        if p.returncode:
            fail(f"load-data: {p.stderr.strip()}")
        print(p.stdout.strip())
        p = baselens("run", str(work_dir / "lincs" / "run.toml"), "--out",
                     str(work_dir / "lincs_run"), "--quiet")
        if p.returncode:
            fail(f"run: {p.stderr.strip()[-2000:]}")
        import pandas as pd

        scores = pd.read_parquet(work_dir / "lincs_run" / "scores.parquet")
        methods = set(scores["method"])
        for m in ("plate_layout", "random"):
            if m not in methods:
                fail(f"run: no scores for {m} (methods: {sorted(methods)})")
        if len(methods) < 3:
            fail(f"run: expected the table and two baselines, got {sorted(methods)}")
        if not (work_dir / "lincs_run" / "report.html").exists():
            fail("run: no report.html")
        print(f"profile-table route: {len(scores)} scores for {sorted(methods)}")

        import baselens as bl

        if hasattr(bl, "Benchmark"):
            t = pd.read_csv(table)
            res = bl.Benchmark(t, perturbation="Metadata_broad_sample", negcon="DMSO").run()
            if len(res.scores) == 0:
                fail("Python API: no scores")
            res.save(str(work_dir / "api_run"))
            print(f"Python API: {len(res.scores)} scores, saved to {work_dir / 'api_run'}")
        else:
            print("Python API: baselens.Benchmark not in this version; skipped")
    else:
        print(f"LINCS table not found ({table!r}): profile-table route skipped")

    cfg = work_dir / "vit.toml"
    cfg.write_text('[data]\nload_data = "load_data.parquet"\nchannels = []\n\n'
                   '[[methods]]\nname = "vit_small_patch16_224"\nlabel = "vit_s16_random"\n'
                   'params = { weights = "random", seed = 0 }\n\n'
                   '[[methods]]\nname = "plate_layout"\n')
    p = baselens("run", str(cfg), "--out", str(work_dir / "vit_run"))
    err = p.stderr.strip()
    if p.returncode != 2:
        fail(f"vit_s16_random config: expected a config error (rc 2), got rc {p.returncode}: {err}")
    if "Traceback" in err or "ImportError" in err or len(err.splitlines()) != 1:
        fail(f"vit_s16_random config: expected one line, got:\n{err}")
    if 'pip install "baselens[' not in err or "networks" not in err or "vit_s16_random" not in err:
        fail(f"vit_s16_random config: the message does not name the extra: {err}")
    if (work_dir / "vit_run").exists():
        fail("vit_s16_random config: the run started (vit_run/ was written)")
    print(f"missing extra: {err}")
    print("core env check passed")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main(sys.argv[1], sys.argv[2])
