"""Score a table of profiles (or embeddings) next to the baselines from Python.

Run as a plain script (it needs no main-module guard: in-memory tables are
scored in this process, no cluster is started)::

    .venv/bin/python examples/python_api.py                      # a small simulated plate
    .venv/bin/python examples/python_api.py profiles.csv.gz      # your pycytominer table
    .venv/bin/python examples/python_api.py profiles.csv.gz runs/api

With a file, its perturbation column is found by name (``Metadata_broad_sample``,
``Metadata_JCP2022``, …) and ``DMSO`` is the negative control. Without one, a two-plate
table is simulated: 24 compounds in four replicate wells and 32 DMSO wells per plate, a
per-plate offset (a batch effect), and compound effects in 3 of 6 mechanisms.
"""

import sys

import numpy as np
import pandas as pd

import baselens
from baselens.data.profiles import read_profile_file


def simulated_plates(n_features=40, seed=0):
    """Two 96-well plates of well-level profiles with Metadata_* columns."""
    rng = np.random.default_rng(seed)
    compounds = [f"cpd_{i:02d}" for i in range(24)]
    moa = {c: f"moa_{i % 6}" for i, c in enumerate(compounds)}
    effect = {c: rng.normal(0, 1.0, n_features) * (int(moa[c][-1]) < 3) for c in compounds}
    rows = []
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    for plate in ("P1", "P2"):
        offset = rng.normal(0, 0.5, n_features)
        layout = rng.permutation([c for c in compounds for _ in range(4)] + ["DMSO"] * 32)
        for well, pert in zip(wells, layout):
            x = offset + rng.normal(0, 1, n_features) + (effect[pert] if pert != "DMSO" else 0)
            rows.append({"Metadata_Plate": plate, "Metadata_Well": well,
                         "Metadata_broad_sample": pert,
                         "Metadata_moa": moa.get(pert, ""),
                         **{f"feature_{j}": v for j, v in enumerate(x)}})
    return pd.DataFrame(rows)


table = (read_profile_file(sys.argv[1]) if len(sys.argv) > 1
         else simulated_plates())
out = sys.argv[2] if len(sys.argv) > 2 else "runs/python_api"

bench = baselens.Benchmark(table, perturbation="Metadata_broad_sample", negcon="DMSO")
results = bench.run(progress=False)

print(results.leaderboard().round(3).to_string())  # headline metrics, strictest level formed
bb = results.beyond_baseline()
cols = [c for c in ("task", "batch_level", "metric", "method", "best_baseline", "difference",
                    "verdict") if c in bb.columns]
print(bb[cols].to_string(max_rows=20))
fig = results.plot_levels()
report = results.save(out)
fig.savefig(f"{out}/levels.png", dpi=100)
print(f"report: {report}")
