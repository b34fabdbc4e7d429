"""RxRx3-core (Hugging Face ``recursionpharma/rxrx3-core``): metadata, images, embeddings.

Layout of the release (``recursionpharma/rxrx-datasets`` ``rxrx3-core/README.md`` and the
dataset card):

* ``metadata_rxrx3_core.csv`` — one row per well: ``well_id`` (``<experiment>_<plate>_<address>``,
  e.g. ``gene-079_8_H29``), ``experiment_name`` (``gene-079``, ``compound-001``), ``plate``
  (1–48, numbered within an experiment), ``address`` (``A01`` … ``AF48``, 1536-well plates),
  ``gene`` (symbol, an anonymized ``RXRX3-…`` id, ``EMPTY_control``, or empty for
  compounds), ``treatment`` (``<gene>_guide_<k>``, a compound name, ``EMPTY_control`` or
  ``CRISPR_control``), ``SMILES``, ``concentration`` (µM, compounds), ``perturbation_type``
  (``CRISPR`` / ``COMPOUND``), ``cell_type`` (HUVEC).
* images — WebDataset shards of 512×512 8-bit JPEG 2000 center crops, one site per well,
  six channels, files ``<address>_s1_<channel>.jp2`` (channel 1–6). Unpacked locally they
  are read from ``image_layout`` (default
  ``<experiment_name>/Plate<plate>/<address>_s1_<channel>.jp2``).
* ``OpenPhenom_rxrx3_core_embeddings.parquet`` — ``well_id`` + ``feature_0`` …
  ``feature_383``: OpenPhenom (Recursion's channel-agnostic MAE ViT-S/16, 384-d) per well.
  Recursion's own benchmark notebook averages rows per ``well_id`` before use.

Conventions taken from Recursion's RxRx3-core benchmark notebook
(EFAAR_benchmarking ``RxRx3-core_benchmarks/rxrx3_core_benchmarks_openphenom.ipynb``):
the perturbation of a CRISPR well is its gene (``treatment.split("_")[0]``: guides of a
gene are pooled), a compound is identified by name *and* concentration, the negative
control is ``EMPTY_control`` (the ``control_key`` of its PCA-center-scale step, fitted per
``experiment_name``), and ``*_control`` wells of compound experiments other than that are
removed from the map. Here: ``EMPTY_control`` → ``Metadata_ControlType = "negcon"``;
``CRISPR_control`` wells (compound experiments) are dropped and counted unless
``keep_crispr_control=True`` (then a perturbation with ControlType ``""``).

Channels (the RxRx Cell Painting protocol as described for RxRx1: w1 Hoechst, w2
concanavalin A, w3 phalloidin, w4 SYTO14, w5 MitoTracker, w6 wheat germ agglutinin) are
named :data:`RXRX3_CHANNELS`. One third-party description lists w5/w6 the other way
round; nothing in RxRx3-core's own files names them, so check before relying on ``Mito``
(pass ``channels`` to rename).

Scoring Recursion's embeddings next to the baselines::

    [[methods]]
    name = "precomputed"
    label = "openphenom_rxrx3"
    params = { path = "OpenPhenom_rxrx3_core_embeddings.parquet", keys = ["Metadata_WellId"],
               column_map = { well_id = "Metadata_WellId" }, features = "feature_" }

(:data:`OPENPHENOM_PARAMS`; the load_data table from :func:`rxrx3_load_data` carries
``Metadata_WellId``). :func:`read_rxrx3_embeddings` reads the file the same way, averaging
repeated ``well_id`` rows as Recursion does (counted).

Conventions shared with :mod:`baselens.data.jump` (``baselens download rxrx3-core`` calls
:func:`read_rxrx3_metadata` and :func:`rxrx3_load_data`, so downloads follow them too):
``Metadata_Perturbation`` is what replicates share — the gene for CRISPR wells (guides
pooled), ``<treatment>@<concentration>`` for compounds (``dose_in_perturbation=True``, the
default: Recursion's name-and-dose convention; JUMP names a compound by its JCP2022 id, one
dose per compound in cpg0016); ``Metadata_PerturbationType`` is lower-case ``crispr`` /
``compound``, the column the rest of baselens reads (task ``where`` filters compare it
case-insensitively); ``Metadata_ControlType`` is ``negcon`` / ``poscon`` / ``""``; the
source's own fields stay beside the name (``Metadata_Treatment``, ``Metadata_Concentration``,
``Metadata_Gene``; ``Metadata_JCP2022`` in JUMP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from baselens.data.embeddings import EmbeddingTable, read_embeddings
from baselens.data.wells import normalize_well

__all__ = ["RXRX3_COLUMNS", "RXRX3_CHANNELS", "OPENPHENOM_PARAMS", "IMAGE_LAYOUT", "RxRx3Table",
           "is_rxrx3_metadata", "read_rxrx3_metadata", "rxrx3_load_data", "read_rxrx3_embeddings"]

RXRX3_COLUMNS: tuple[str, ...] = ("well_id", "experiment_name", "plate", "address", "gene",
                                  "treatment", "SMILES", "concentration", "perturbation_type",
                                  "cell_type")

#: Channel names in file order (``_s1_1.jp2`` … ``_s1_6.jp2``); see the module docstring.
RXRX3_CHANNELS: tuple[str, ...] = ("DNA", "ER", "Actin", "RNA", "Mito", "WGA")

IMAGE_LAYOUT = "{experiment_name}/Plate{plate}/{address}_s1_{channel}.jp2"

#: ``precomputed`` extractor params for the shipped OpenPhenom embeddings.
OPENPHENOM_PARAMS: dict = {"keys": ["Metadata_WellId"], "column_map": {"well_id": "Metadata_WellId"},
                           "features": "feature_"}

NEGCON = "EMPTY_control"


def _text(s: pd.Series) -> pd.Series:
    """Values as text, missing ones ``""`` (an all-empty column is read as float NaN)."""
    return s.astype(object).where(s.notna(), "").astype(str)


def is_rxrx3_metadata(columns: Sequence[str]) -> bool:
    """Whether a table's columns are RxRx3(-core)'s metadata schema."""
    return {"well_id", "experiment_name", "plate", "address", "treatment"} <= set(columns)


@dataclass
class RxRx3Table:
    """RxRx3 wells in load_data style (``table``) and what was changed (``report``)."""

    table: pd.DataFrame
    report: dict = field(default_factory=dict)


def read_rxrx3_metadata(path: str | os.PathLike | pd.DataFrame, *, keep_crispr_control: bool = False,
                        dose_in_perturbation: bool = True) -> RxRx3Table:
    """RxRx3-core metadata → one row per well with ``Metadata_*`` columns.

    Columns: Metadata_Source (``rxrx3-core``), Metadata_Batch (experiment_name),
    Metadata_Plate (``<experiment_name>_Plate<plate>``: plate numbers repeat across
    experiments; the same names as ``baselens download rxrx3-core``),
    Metadata_Well (address), Metadata_Site (1), Metadata_WellId (well_id),
    Metadata_Perturbation, Metadata_PerturbationType (``crispr`` / ``compound``),
    Metadata_ControlType, Metadata_Gene, Metadata_Treatment, Metadata_Concentration,
    Metadata_SMILES, Metadata_CellType.

    ``Metadata_Perturbation``: the gene for CRISPR wells (guides pooled, Recursion's
    convention); for compounds the treatment name, with ``@<concentration>`` appended when
    ``dose_in_perturbation`` (replicates are wells of one compound at one dose);
    ``EMPTY_control`` for negative controls.

    Raises
    ------
    ValueError
        Missing columns, duplicate ``well_id``, or rows without a treatment (named).
    """
    if isinstance(path, pd.DataFrame):
        df, src = path.copy(), "RxRx3 metadata"
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"RxRx3 metadata not found: {p}")
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, low_memory=False)
        src = str(p)
    missing = [c for c in ("well_id", "experiment_name", "plate", "address", "gene", "treatment",
                           "perturbation_type") if c not in df.columns]
    if missing:
        raise ValueError(f"{src}: not RxRx3 metadata, missing column(s) {missing} "
                         f"(columns: {list(df.columns)[:12]})")
    dup = df["well_id"].duplicated(keep=False)
    if dup.any():
        raise ValueError(f"{src}: {int(dup.sum())} rows share a well_id, e.g. "
                         f"{df.loc[dup, 'well_id'].unique()[:3].tolist()}")
    treat = _text(df["treatment"]).str.strip()
    if (treat == "").any():
        raise ValueError(f"{src}: {int((treat == '').sum())} row(s) without a treatment, e.g. "
                         f"{df.loc[treat == '', 'well_id'].head(3).tolist()}")
    gene = _text(df["gene"]).str.strip()
    ptype = _text(df["perturbation_type"]).str.upper()
    conc = pd.to_numeric(df.get("concentration"), errors="coerce") if "concentration" in df.columns \
        else pd.Series(np.nan, index=df.index)
    plate_no = df["plate"].astype(str).str.replace(r"\.0$", "", regex=True)
    is_ctrl = treat.str.endswith("_control")
    is_neg = (treat == NEGCON) | (gene == NEGCON)
    crispr_like = (ptype == "CRISPR") & ~is_ctrl
    pert = np.where(crispr_like, np.where(gene != "", gene, treat.str.split("_").str[0]), treat)
    pert = pd.Series(pert, index=df.index).where(~is_neg, NEGCON)
    if dose_in_perturbation:
        dosed = (ptype == "COMPOUND") & ~is_ctrl & conc.notna()
        pert = pert.where(~dosed, pert + "@" + conc.map(lambda c: f"{c:g}"))
    out = pd.DataFrame({
        "Metadata_Source": "rxrx3-core",
        "Metadata_Batch": df["experiment_name"].astype(str),
        "Metadata_Plate": df["experiment_name"].astype(str) + "_Plate" + plate_no,
        "Metadata_Well": df["address"].map(normalize_well),
        "Metadata_Site": 1,
        "Metadata_WellId": df["well_id"].astype(str),
        "Metadata_Perturbation": pert.astype(str),
        "Metadata_PerturbationType": np.where(ptype == "CRISPR", "crispr",
                                              np.where(ptype == "COMPOUND", "compound", ptype.str.lower())),
        "Metadata_ControlType": np.where(is_neg, "negcon", ""),
        "Metadata_Gene": gene,
        "Metadata_Treatment": treat,
        "Metadata_Concentration": conc,
        "Metadata_SMILES": _text(df["SMILES"]) if "SMILES" in df.columns else "",
        "Metadata_CellType": df["cell_type"].astype(str) if "cell_type" in df.columns else "",
        "Metadata_plate_number": plate_no,
    })
    report = {"wells_in": len(df), "negcon": int(is_neg.sum()),
              "anonymized_genes": int(gene.str.startswith("RXRX3-").sum())}
    crispr_ctrl = (treat == "CRISPR_control").to_numpy()
    if crispr_ctrl.any() and not keep_crispr_control:
        report["crispr_control_dropped"] = int(crispr_ctrl.sum())
        out = out[~crispr_ctrl]
    return RxRx3Table(out.reset_index(drop=True), report)


def rxrx3_load_data(metadata: str | os.PathLike | pd.DataFrame | RxRx3Table, *,
                    image_root: str | os.PathLike | None = None, image_layout: str = IMAGE_LAYOUT,
                    channels: Sequence[str] = RXRX3_CHANNELS, **kwargs) -> RxRx3Table:
    """RxRx3 wells as a load_data table: the metadata plus ``FileName_Orig<Ch>`` /
    ``PathName_Orig<Ch>`` for the six channels under ``image_root`` (``image_layout`` with
    ``{experiment_name}``, ``{plate}``, ``{address}``, ``{channel}`` = 1…6). Without
    ``image_root`` a metadata-only table (read with ``channels = []``) for embeddings-only
    runs. Files are not checked here: ``baselens inspect`` does."""
    t = metadata if isinstance(metadata, RxRx3Table) else read_rxrx3_metadata(metadata, **kwargs)
    table = t.table.copy()
    if image_root is None:
        return RxRx3Table(table, dict(t.report))
    if len(channels) != 6:
        raise ValueError(f"RxRx3 images have 6 channels; {len(channels)} names given: {list(channels)}")
    root = Path(image_root).expanduser()
    fields = {"experiment_name": table["Metadata_Batch"], "plate": table["Metadata_plate_number"],
              "address": table["Metadata_Well"]}
    for k, name in enumerate(channels, start=1):
        rel = [image_layout.format(experiment_name=e, plate=p, address=a, channel=k)
               for e, p, a in zip(*fields.values())]
        table[f"FileName_Orig{name}"] = [Path(r).name for r in rel]
        table[f"PathName_Orig{name}"] = [str(root / Path(r).parent) for r in rel]
    return RxRx3Table(table, dict(t.report))


def read_rxrx3_embeddings(path: str | os.PathLike, *, average_repeats: bool = True) -> EmbeddingTable:
    """The shipped OpenPhenom embeddings (``well_id`` + ``feature_*``) keyed on
    ``Metadata_WellId``, as the ``precomputed`` extractor reads them with
    :data:`OPENPHENOM_PARAMS`. Repeated ``well_id`` rows are averaged (Recursion's notebook
    does ``groupby("well_id").mean()``) and counted in ``n_unused``-style attribute
    ``n_averaged``; with ``average_repeats=False`` they are an error."""
    p = Path(path).expanduser()
    if not average_repeats:
        return read_embeddings(p, **OPENPHENOM_PARAMS)
    if not p.exists():
        raise FileNotFoundError(f"embeddings file {p} does not exist")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    if "well_id" not in df.columns:
        raise ValueError(f"{p}: no well_id column (columns: {list(df.columns)[:8]}…)")
    feats = [c for c in df.columns if str(c).startswith("feature_")]
    if not feats:
        raise ValueError(f"{p}: no feature_* columns")
    n_rows = len(df)
    df = df.groupby("well_id", sort=False)[feats].mean().reset_index()
    table = pd.concat([df[["well_id"]].rename(columns={"well_id": "Metadata_WellId"}),
                       df[feats].astype(np.float64)], axis=1)
    et = EmbeddingTable(["Metadata_WellId"], table, feats, str(p))
    et.n_averaged = n_rows - len(df)  # type: ignore[attr-defined]
    return et
