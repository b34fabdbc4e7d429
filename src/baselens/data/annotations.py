"""Known-relationship annotation tables (CORUM, HuMAP, Reactome, SIGNOR, StringDB format).

Each file is a CSV with columns ``entity1,entity2`` (efaar-benchmarking's format; both
directions are usually listed). baselens' synthetic screens export their complexes and
mechanisms of action in the same format (plus a ``source`` column).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def read_relationship_pairs(path: str | os.PathLike, *, source: str | None = None) -> pd.DataFrame:
    """Read a relationship table with ``entity1``, ``entity2`` (and optional ``source``).

    Parameters
    ----------
    path : path
        CSV/TSV file (``.txt``, ``.csv``, ``.tsv``, optionally gzipped).
    source : str, optional
        Value for the ``source`` column; default: the existing column, else the file stem.

    Returns
    -------
    DataFrame
        Columns ``entity1``, ``entity2``, ``source`` (strings), as in the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"relationship annotation file not found: {path}")
    sep = "\t" if ".tsv" in path.suffixes else ","
    df = pd.read_csv(path, sep=sep)
    missing = {"entity1", "entity2"} - set(df.columns)
    if missing:
        raise ValueError(
            f"{path}: relationship tables need columns entity1, entity2 "
            f"(CORUM/HuMAP/efaar format); missing {sorted(missing)}, found {list(df.columns)}"
        )
    out = df[["entity1", "entity2"]].astype(str)
    if source is not None:
        out["source"] = source
    elif "source" in df.columns:
        out["source"] = df["source"].astype(str)
    else:
        out["source"] = path.name.split(".")[0]
    return out.reset_index(drop=True)
