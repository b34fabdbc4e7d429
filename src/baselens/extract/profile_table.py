"""``profile_table``: the ``cell_count`` and ``classic`` baselines read from a profile table.

Most users arrive with a table (pycytominer / JUMP profiles), not images. Two baselines
need no pixels when the table carries their inputs::

    [[methods]]
    name = "profile_table"
    label = "cell_count"
    params = { path = "profiles.csv.gz", derive = "cell_count" }   # count column

    [[methods]]
    name = "profile_table"
    label = "classic"
    params = { path = "profiles.csv.gz", derive = "classic" }      # Cells_/Nuclei_/Cytoplasm_

``derive = "cell_count"`` reads the table's count column (``count_column``, default the
first of :data:`baselens.data.profiles.COUNT_COLUMNS`) and returns the image route's
features (:class:`baselens.extract.cell_count.CellCount`): the count ``n`` (``Count_Cells``
or ``count_name``) and the 16 transforms of :func:`~baselens.extract.cell_count.count_features`.
A column with negative values has been normalized already: roots, logs and the periodic
terms are meaningless there, so only ``count_z``, ``count_z2``, ``count_z3`` (the
polynomial family) are returned. ``derive = "classic"`` returns the CellProfiler features
(:data:`~baselens.data.profiles.CLASSIC_PREFIXES`).

Both are computed in-process from the table (no files are written) and join the screen by
plate + well (+ site when the table has ``Metadata_Site``) exactly as ``precomputed`` does:
every screen well must have a row (``on_missing = "nan"`` keeps missing ones as NaN,
dropped and counted by the profile stage; with it, rows whose count is missing are treated
as missing too — :func:`~baselens.data.profiles.write_profile_run` sets it when the table
has such rows). Kind ``baseline``; no pixels are read.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from baselens.data.embeddings import EmbeddingTable
from baselens.data.profiles import (
    CLASSIC_PREFIXES,
    COUNT_COLUMNS,
    classic_columns,
    find_count_column,
    read_profiles,
)
from baselens.extract.cell_count import count_features
from baselens.extract.precomputed import Precomputed
from baselens.extract.registry import DEFAULT_LAYER, register

__all__ = ["ProfileTableBaseline", "table_count_features"]


def table_count_features(n: np.ndarray, *, count_scale: float = 100.0,
                         name: str = "Count_Cells") -> pd.DataFrame:
    """Count features from a table's count column (see the module docstring).

    Parameters
    ----------
    n : array_like, shape (N,)
        The column's values (raw counts, or already normalized values with negatives).
    count_scale : float
        Scale of the transforms (:func:`~baselens.extract.cell_count.count_features`).
    name : str
        Name of the raw-count column.

    Returns
    -------
    DataFrame
        Raw counts: ``name`` + the 16 transforms (17 columns, as the image route).
        Normalized values: ``count_z, count_z2, count_z3``.
    """
    v = np.asarray(n, dtype=np.float64).reshape(-1)
    if np.any(v < 0):
        return pd.DataFrame({"count_z": v, "count_z2": v ** 2, "count_z3": v ** 3})
    feats = count_features(v, count_scale)
    feats.insert(0, name, v)
    return feats


@register("profile_table", kind="baseline",
          description="cell_count (count column + 16 transforms) or classic (CellProfiler "
                      "features) read from a profile table; no pixels")
class ProfileTableBaseline(Precomputed):
    """A no-pixel baseline derived from a profile table (see the module docstring).

    Parameters
    ----------
    path : str
        Profile table (CSV, CSV.GZ, TSV, Parquet) of the screen's wells.
    derive : {"cell_count", "classic"}
        Which baseline to build.
    count_column : str, optional
        Count column (``derive = "cell_count"``); default the first of ``COUNT_COLUMNS``.
    count_name : str
        Name of the raw-count feature (default ``Count_Cells``).
    count_scale : float
        Scale of the count transforms (default 100, as the image route).
    on_missing : {"error", "nan"}
        Screen wells without a row in the table.
    """

    PATH_PARAMS = ("path",)

    def __init__(self, *, path: str | os.PathLike, derive: str = "cell_count",
                 count_column: str | None = None, count_name: str = "Count_Cells",
                 count_scale: float = 100.0, on_missing: str = "error") -> None:
        if derive not in ("cell_count", "classic"):
            raise ValueError(f"profile_table: derive must be 'cell_count' or 'classic', got {derive!r}")
        if on_missing not in ("error", "nan"):
            raise ValueError(f"on_missing must be 'error' or 'nan', got {on_missing!r}")
        pt = read_profiles(path, require_perturbation=False)
        keys = pt.keys
        raw = pt.table
        if derive == "cell_count":
            col = count_column or find_count_column(raw.columns)
            if col is None or col not in raw.columns:
                raise ValueError(f"{path}: no count column for the cell_count baseline "
                                 f"(count_column = {count_column!r}; looked for {list(COUNT_COLUMNS)})")
            v = pd.to_numeric(raw[col], errors="coerce").to_numpy(dtype=np.float64)
            bad = ~np.isfinite(v)
            if bad.any():
                ex = raw.loc[bad, keys].astype(str).agg("/".join, axis=1).head(3).tolist()
                if on_missing == "error":
                    raise ValueError(f"{path}: {int(bad.sum())} row(s) have no finite {col}, e.g. "
                                     f"{ex}; fill or remove them, or set on_missing = \"nan\" "
                                     "(those wells are then dropped and counted by the profile stage)")
                # wells without a count get no row: NaN features, dropped and counted later
                raw, v = raw[~bad].reset_index(drop=True), v[~bad]
            feats = table_count_features(v, count_scale=count_scale, name=count_name)
        else:
            cols = classic_columns(pt.features)
            if not cols:
                raise ValueError(f"{path}: no CellProfiler features (columns starting with "
                                 f"{list(CLASSIC_PREFIXES)}) for the classic baseline")
            feats = raw[cols].astype(np.float64)
        table = pd.concat([raw[keys].reset_index(drop=True), feats.reset_index(drop=True)], axis=1)
        self.derive = derive
        self.on_missing = on_missing
        self.tables = {DEFAULT_LAYER: EmbeddingTable(keys, table, list(feats.columns),
                                                     f"{path} ({derive})")}
        self.coverage = {}
