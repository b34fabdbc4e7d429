"""Which plates form which fold: the JUMP-CP positive-control benchmark.

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026),
Appendix C.2 ("Our JUMP-CP Subset Benchmark"): *"five folds, each composed of
four experimental compound plates from each [of] the seven laboratories providing
384-well plates"*; all control wells of those plates are used — the positive controls for
retrieval, DMSO for normalization.

:func:`jump_plate_folds` draws that plan from any table with ``Metadata_Source`` and
``Metadata_Plate`` (and, when present, ``Metadata_PlateType``): the JUMP metadata
``plate.csv.gz`` before downloading, or the downloaded sites / well profiles afterwards.

Selection rule (reproducible and *stable under subsetting*). Every plate gets a key
``k(p) = sha256(f"{seed}:{plate}")`` read as an integer. Within each source the plates
are ordered by key; the first ``n_folds × plates_per_source`` are kept and plate of rank
``r`` (0-based) goes to fold ``r mod n_folds``. Because a plate's key does not depend on
which other plates are in the table, a downloader that fetches exactly the planned plates
and the task that later re-derives the plan from the downloaded plates get the same folds;
a partial download (``--max-sites``) still spreads its plates over the folds round-robin.

The seven sources: JUMP's compound plates come from sources 1, 2, 3, 5, 6, 7, 8, 9, 10,
11 and 15 (``plate.csv.gz``); sources 1 and 9 use 1536-well plates. arXiv 2603.13377 does not list
its seven 384-well laboratories; :data:`JUMP_384_SOURCES` holds sources 2, 3, 5, 6, 8,
10 and 11 — the 384-well compound sources of the first cpg0016 release (sources 7 and 15
were added later). This is our reading, not the paper's statement; override it with
``sources`` (e.g. add ``"source_7"``, ``"source_15"``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["JUMP_384_SOURCES", "JUMP_POSITIVE_CONTROLS", "JUMP_DMSO", "plate_key",
           "jump_plate_folds", "describe_plan"]

SOURCE, PLATE, PLATE_TYPE = "Metadata_Source", "Metadata_Plate", "Metadata_PlateType"

#: 384-well compound sources (see the module docstring: our reading of arXiv 2603.13377 C.2).
JUMP_384_SOURCES: tuple[str, ...] = ("source_2", "source_3", "source_5", "source_6",
                                     "source_8", "source_10", "source_11")

#: The eight positive-control compounds on every JUMP compound plate
#: (jump-cellpainting/datasets ``metadata/perturbation_control.csv``, pert_type poscon,
#: modality compound; arXiv 2603.13377 C.2 and Fig. 3 name several of them).
JUMP_POSITIVE_CONTROLS: dict[str, str] = {
    "JCP2022_037716": "AMG900",
    "JCP2022_025848": "dexamethasone",
    "JCP2022_046054": "FK-866",
    "JCP2022_035095": "LY2109761",
    "JCP2022_064022": "NVS-PAK1-1",
    "JCP2022_050797": "quinidine",
    "JCP2022_012818": "TC-S-7004",
    "JCP2022_085227": "aloxistatin",
}

#: DMSO, the negative control of JUMP compound plates.
JUMP_DMSO = "JCP2022_033924"


def plate_key(plate: str, seed: int = 0) -> int:
    """The plate's selection key: ``int(sha256(f"{seed}:{plate}")[:16], 16)``."""
    return int(hashlib.sha256(f"{int(seed)}:{plate}".encode()).hexdigest()[:16], 16)


def jump_plate_folds(
    table: pd.DataFrame,
    n_folds: int = 5,
    plates_per_source: int | None = 4,
    seed: int = 0,
    sources: Sequence[str] | None = None,
    plate_types: Iterable[str] | None = ("COMPOUND",),
) -> pd.DataFrame:
    """Plates per fold for the JUMP-CP control benchmark (arXiv 2603.13377 C.2).

    Parameters
    ----------
    table : DataFrame
        Rows with ``Metadata_Source`` and ``Metadata_Plate`` (any number of rows per
        plate), optionally ``Metadata_PlateType``.
    n_folds : int
        Number of folds (arXiv 2603.13377: 5).
    plates_per_source : int or None
        Plates of each source in each fold (arXiv 2603.13377: 4); ``None`` keeps every plate
        (dealt round-robin).
    seed : int
        Selection seed (the key of every plate changes with it).
    sources : list of str, optional
        Sources to use (arXiv 2603.13377: the seven 384-well laboratories,
        :data:`JUMP_384_SOURCES`); ``None`` uses every source in ``table``.
    plate_types : list of str, optional
        Plate types kept when ``table`` has ``Metadata_PlateType`` (arXiv 2603.13377: compound
        plates, ``"COMPOUND"``); ignored without that column; ``None`` keeps every type.

    Returns
    -------
    DataFrame
        One row per selected plate: ``Metadata_Source``, ``Metadata_Plate``, ``fold``
        (0 … n_folds-1), ``rank`` (within its source), sorted by source, fold, plate.
        ``attrs`` records what was left out and why: ``plates_available`` (per source,
        after the type filter), ``missing_sources`` (asked for, absent),
        ``dropped_plate_types`` (plates of other types), ``unused_plates`` (beyond
        ``n_folds × plates_per_source``), ``short_sources`` (sources with fewer plates
        than the plan needs: ``{source: n}``), ``plate_type_column`` (bool).
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if plates_per_source is not None and plates_per_source < 1:
        raise ValueError(f"plates_per_source must be >= 1 or None, got {plates_per_source}")
    missing_cols = [c for c in (SOURCE, PLATE) if c not in table.columns]
    if missing_cols:
        raise ValueError(f"jump_plate_folds needs columns {missing_cols} (one row per plate or site)")
    cols = [SOURCE, PLATE] + ([PLATE_TYPE] if PLATE_TYPE in table.columns else [])
    pairs = table[[SOURCE, PLATE]].astype(str).drop_duplicates()
    if pairs[PLATE].duplicated().any():
        bad = pairs.loc[pairs[PLATE].duplicated(), PLATE].iloc[0]
        raise ValueError(f"plate {bad!r} appears under two sources; plate barcodes must be unique")
    plates = table[cols].astype(str).drop_duplicates(PLATE)
    dropped_types = 0
    if PLATE_TYPE in plates.columns and plate_types is not None:
        keep = plates[PLATE_TYPE].isin([str(t) for t in plate_types])
        dropped_types = int((~keep).sum())
        plates = plates[keep]
    missing_sources: list[str] = []
    if sources is not None:
        wanted = [str(s) for s in sources]
        missing_sources = [s for s in wanted if s not in set(plates[SOURCE])]
        plates = plates[plates[SOURCE].isin(wanted)]
    need = None if plates_per_source is None else n_folds * int(plates_per_source)
    rows, available, short = [], {}, {}
    unused = 0
    for src, sub in plates.groupby(SOURCE, sort=True):
        names = sub[PLATE].to_numpy()
        keys = np.array([plate_key(p, seed) for p in names], dtype=np.uint64)
        order = names[np.lexsort((names, keys))]
        available[str(src)] = int(len(order))
        if need is not None:
            if len(order) < need:
                short[str(src)] = int(len(order))
            unused += max(0, len(order) - need)
            order = order[:need]
        for r, p in enumerate(order):
            rows.append((str(src), str(p), r % n_folds, r))
    out = pd.DataFrame(rows, columns=[SOURCE, PLATE, "fold", "rank"])
    out = out.sort_values([SOURCE, "fold", PLATE], kind="stable").reset_index(drop=True)
    out.attrs.update({
        "plates_available": available, "missing_sources": missing_sources,
        "dropped_plate_types": dropped_types, "unused_plates": int(unused),
        "short_sources": short, "plate_type_column": PLATE_TYPE in table.columns,
    })
    if missing_sources:
        warnings.warn(f"jump_plate_folds: {len(missing_sources)} source(s) absent: "
                      f"{', '.join(missing_sources)}", UserWarning, stacklevel=2)
    return out


def describe_plan(plan: pd.DataFrame) -> str:
    """One line on what a plan left out (for the scores' ``warning`` column); ``""`` if all."""
    a = plan.attrs
    parts = []
    if a.get("missing_sources"):
        parts.append(f"{len(a['missing_sources'])} source(s) absent ({', '.join(a['missing_sources'])})")
    if a.get("short_sources"):
        parts.append("sources with too few plates for the plan: "
                     + ", ".join(f"{s} {n}" for s, n in a["short_sources"].items()))
    if a.get("plate_type_column") is False:
        parts.append("no Metadata_PlateType column: every plate taken as a compound plate")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m baselens.evaluate.fold_plans plate.csv.gz``: print the arXiv 2603.13377 plan.

    CSV (source, plate, fold, rank) by default; ``--list`` prints the plate barcodes
    space-separated, for ``baselens download jump-cp --plates ...``.
    """
    ap = argparse.ArgumentParser(prog="python -m baselens.evaluate.fold_plans",
                                 description="JUMP-CP plate folds of arXiv 2603.13377 C.2")
    ap.add_argument("plate_table", help="JUMP metadata plate.csv.gz (or any table with "
                                        "Metadata_Source, Metadata_Plate[, Metadata_PlateType])")
    ap.add_argument("--n-folds", type=int, default=5)
    ap.add_argument("--plates-per-source", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", nargs="+", default=list(JUMP_384_SOURCES),
                    help="default: the seven 384-well compound sources; 'all' for every source")
    ap.add_argument("--folds", nargs="+", type=int, default=None, help="only these folds")
    ap.add_argument("--list", action="store_true", help="plate barcodes only, space-separated")
    args = ap.parse_args(argv)
    table = pd.read_csv(args.plate_table, dtype=str, keep_default_na=False)
    sources = None if args.sources == ["all"] else args.sources
    plan = jump_plate_folds(table, n_folds=args.n_folds, plates_per_source=args.plates_per_source,
                            seed=args.seed, sources=sources)
    if args.folds is not None:
        plan = plan[plan["fold"].isin(args.folds)]
    if args.list:
        print(" ".join(plan["Metadata_Plate"]))
    else:
        plan.to_csv(sys.stdout, index=False)
    note = describe_plan(plan)
    if note:
        print(f"# {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
