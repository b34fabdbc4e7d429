"""JUMP Cell Painting (cpg0016) metadata: read the tables and annotate sites or profiles.

The JUMP consortium publishes its metadata in ``jump-cellpainting/datasets``
(``metadata/``): ``plate.csv.gz`` (Metadata_Source, Metadata_Batch, Metadata_Plate,
Metadata_PlateType), ``well.csv.gz`` (Metadata_Source, Metadata_Plate, Metadata_Well,
Metadata_JCP2022), the perturbation tables ``compound.csv.gz`` (Metadata_JCP2022,
InChIKey, SMILES …; ``compound_source.csv.gz`` lists JCP2022 ids per source),
``orf.csv.gz`` and ``crispr.csv.gz`` (Metadata_JCP2022, Metadata_Symbol, …), the control
definitions ``perturbation_control.csv`` (Metadata_JCP2022, Metadata_pert_type
``negcon`` / ``poscon`` / ``empty``, Metadata_Name, Metadata_modality) and
``microscope_config.csv`` (per source). :func:`read_jump_metadata` reads whichever of them a
folder holds; :func:`annotate_jump` joins them onto a load_data or profile table keyed by
(Metadata_Source, Metadata_Plate, Metadata_Well).

The JUMP pilots (cpg0000 CPJUMP1, JUMP-Target) use the older platemap layout instead:
``JUMP-Target-1_compound_platemap.tsv`` (well_position, broad_sample, solvent) +
``JUMP-Target-1_compound_metadata.tsv`` (broad_sample, pert_iname or gene, pert_type,
control_type) — :func:`annotate_target_platemap`.

Columns added (the load_data contract of ``docs/architecture.md``):

* ``Metadata_Batch``, ``Metadata_PlateType`` (and ``Metadata_Source`` when absent) — plate.csv.gz
* ``Metadata_JCP2022`` — well.csv.gz
* ``Metadata_PerturbationType`` — ``compound`` / ``orf`` / ``crispr`` (the table the
  JCP2022 id is in; ``empty`` for JCP2022_999999)
* ``Metadata_Perturbation`` — the gene symbol for ORF/CRISPR (so gene–gene annotation
  tables match; ``perturbation="jcp"`` keeps the id), the JCP2022 id for compounds
  (DMSO is JCP2022_033924)
* ``Metadata_ControlType`` — ``negcon`` / ``poscon`` from ``perturbation_control.csv``
  (DMSO; no-guide / non-targeting; BFP, HcRed, LUCIFERASE, LacZ), ``""`` otherwise.

Rows that do not join (a plate not in plate.csv.gz, a well not in well.csv.gz, a JCP2022
id in no perturbation table) are an error with counts and examples; ``on_unmatched="keep"``
keeps them with empty annotations and counts them in the report. Empty wells
(JCP2022_999999) are dropped and counted unless ``keep_empty=True``.

Conventions shared with :mod:`baselens.data.rxrx3` (``baselens download`` calls these
readers, so downloaded tables follow them too): ``Metadata_Perturbation`` is what
replicates share — the gene symbol for genetic perturbations (ORF/CRISPR; RxRx3 pools a
gene's guides the same way), the compound's identifier for compounds (here the JCP2022 id:
cpg0016 screens a compound at one dose; RxRx3's compounds, screened at several doses, are
``<name>@<dose>``, Recursion's convention); ``Metadata_PerturbationType`` is lower-case
``compound`` / ``orf`` / ``crispr`` (``empty`` for JCP2022_999999), the column the rest of
baselens reads; ``Metadata_ControlType`` is ``negcon`` / ``poscon`` / ``""``; the source's own
identifier stays beside the name (``Metadata_JCP2022``, always a column here;
``Metadata_Treatment`` and ``Metadata_Concentration`` in RxRx3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from baselens.data.wells import normalize_well

__all__ = ["JUMP_FILES", "JumpJoinError", "JumpMetadata", "JumpAnnotation", "EMPTY_JCP",
           "read_jump_metadata", "perturbation_table", "annotate_jump",
           "annotate_target_platemap"]

JUMP_FILES: dict[str, str] = {
    "plate": "plate.csv.gz",
    "well": "well.csv.gz",
    "compound": "compound.csv.gz",
    "compound_source": "compound_source.csv.gz",
    "orf": "orf.csv.gz",
    "crispr": "crispr.csv.gz",
    "controls": "perturbation_control.csv",
    "microscope": "microscope_config.csv",
}

#: The JCP2022 id of empty wells (``perturbation_control.csv``: pert_type "empty").
EMPTY_JCP = "JCP2022_999999"


class JumpJoinError(ValueError):
    """Rows of a table that do not join to the JUMP metadata (counts and examples)."""


@dataclass
class JumpMetadata:
    """The JUMP metadata tables found in a folder (``None`` where a file is absent)."""

    root: Path
    plate: pd.DataFrame | None = None
    well: pd.DataFrame | None = None
    compound: pd.DataFrame | None = None
    compound_source: pd.DataFrame | None = None
    orf: pd.DataFrame | None = None
    crispr: pd.DataFrame | None = None
    controls: pd.DataFrame | None = None
    microscope: pd.DataFrame | None = None

    def available(self) -> list[str]:
        return [k for k in JUMP_FILES if getattr(self, k) is not None]


def read_jump_metadata(metadata_dir: str | os.PathLike) -> JumpMetadata:
    """Read every JUMP metadata table present in ``metadata_dir`` (see :data:`JUMP_FILES`).

    Identifiers are read as strings (plate barcodes such as ``"1086292837"`` keep their
    form); wells are normalized to ``A01``.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or holds none of the JUMP tables.
    """
    root = Path(metadata_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"JUMP metadata folder not found: {root}")
    meta = JumpMetadata(root=root)
    for key, name in JUMP_FILES.items():
        p = root / name
        if not p.exists():
            continue
        df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
        if key == "well" and "Metadata_Well" in df.columns:
            df["Metadata_Well"] = df["Metadata_Well"].map(normalize_well)
        setattr(meta, key, df)
    if not meta.available():
        raise FileNotFoundError(f"{root}: none of the JUMP metadata files {list(JUMP_FILES.values())}; "
                                "download them from github.com/jump-cellpainting/datasets (metadata/)")
    return meta


def perturbation_table(meta: JumpMetadata, *, perturbation: str = "symbol") -> pd.DataFrame:
    """One row per JCP2022 id: Metadata_JCP2022, Metadata_PerturbationType,
    Metadata_Perturbation, Metadata_ControlType (and Metadata_Symbol where known).

    ``perturbation="symbol"`` names ORF/CRISPR perturbations by gene symbol, ``"jcp"`` by id.
    """
    if perturbation not in ("symbol", "jcp"):
        raise ValueError(f"perturbation must be 'symbol' or 'jcp', got {perturbation!r}")
    parts = []
    for kind in ("orf", "crispr"):
        df = getattr(meta, kind)
        if df is not None:
            parts.append(pd.DataFrame({"Metadata_JCP2022": df["Metadata_JCP2022"],
                                       "Metadata_PerturbationType": kind,
                                       "Metadata_Symbol": df.get("Metadata_Symbol")}))
    cpd = meta.compound if meta.compound is not None else meta.compound_source
    if cpd is not None:
        ids = cpd["Metadata_JCP2022"].drop_duplicates()
        parts.append(pd.DataFrame({"Metadata_JCP2022": ids, "Metadata_PerturbationType": "compound",
                                   "Metadata_Symbol": None}))
    if meta.controls is not None:  # controls may be missing from the tables above (e.g. DMSO)
        c = meta.controls
        modality = c.get("Metadata_modality", pd.Series("", index=c.index)).replace("any", "")
        parts.append(pd.DataFrame({
            "Metadata_JCP2022": c["Metadata_JCP2022"],
            "Metadata_PerturbationType": np.where(c["Metadata_pert_type"] == "empty", "empty",
                                                  modality),
            "Metadata_Symbol": np.where(modality.isin(["orf", "crispr"]), c.get("Metadata_Name"), None)}))
    if not parts:
        raise FileNotFoundError(f"{meta.root}: no perturbation table (compound / orf / crispr / "
                                "perturbation_control)")
    table = pd.concat(parts, ignore_index=True)
    table = table[table["Metadata_JCP2022"].notna()]
    # the first definition wins (gene tables, then compounds, then controls)
    table = table.drop_duplicates("Metadata_JCP2022", keep="first").reset_index(drop=True)
    sym = table["Metadata_Symbol"].where(table["Metadata_Symbol"].notna()
                                         & (table["Metadata_Symbol"].astype(str) != ""))
    table["Metadata_Perturbation"] = (sym.fillna(table["Metadata_JCP2022"])
                                      if perturbation == "symbol" else table["Metadata_JCP2022"])
    ctrl = pd.Series("", index=table.index)
    if meta.controls is not None:
        kinds = meta.controls.set_index("Metadata_JCP2022")["Metadata_pert_type"]
        kinds = kinds[~kinds.index.duplicated()]
        got = table["Metadata_JCP2022"].map(kinds)
        ctrl = got.where(got.isin(["negcon", "poscon"]), "").fillna("")
    table["Metadata_ControlType"] = ctrl.astype(str)
    return table


@dataclass
class JumpAnnotation:
    """An annotated table and what the joins did (``report``: counts and examples)."""

    table: pd.DataFrame
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        r = self.report
        lines = [f"{r['rows_in']} rows in, {len(self.table)} out"]
        for step in ("plate", "well", "perturbation"):
            if step in r:
                s = r[step]
                lines.append(f"{step} join: {s['matched']} matched, {s['unmatched']} unmatched"
                             + (f" (e.g. {s['examples']})" if s["unmatched"] else ""))
        if r.get("empty_dropped"):
            lines.append(f"{r['empty_dropped']} empty well row(s) ({EMPTY_JCP}) dropped")
        if "controls" in r:
            lines.append("controls: " + ", ".join(f"{k} {v}" for k, v in r["controls"].items()))
        return "\n".join(lines)


def _str(s: pd.Series) -> pd.Series:
    """Values as text, missing ones as ``""`` (pandas keeps NaN through ``astype(str)``)."""
    return s.astype(object).where(s.notna(), "").astype(str)


def _keys_str(df: pd.DataFrame, keys: list[str]) -> pd.Series:
    return pd.concat([_str(df[k]) for k in keys], axis=1).agg("/".join, axis=1)


def _left_join(table: pd.DataFrame, right: pd.DataFrame, keys: list[str], cols: list[str],
               what: str, source: str, on_unmatched: str, report: dict) -> pd.DataFrame:
    right = right[keys + cols].copy()
    for k in keys:
        right[k] = _str(right[k])
    dup = right.duplicated(keys, keep=False)
    if dup.any():
        raise JumpJoinError(f"{source}: {int(dup.sum())} rows share {keys}, e.g. "
                            f"{_keys_str(right[dup], keys).unique()[:3].tolist()}")
    left = table.assign(**{f"__k{i}": _str(table[k]).replace("", "\x00missing") for i, k in enumerate(keys)})
    right = right.rename(columns={k: f"__k{i}" for i, k in enumerate(keys)})
    tmp = [f"__k{i}" for i in range(len(keys))]
    merged = left.drop(columns=[c for c in cols if c in left.columns]).merge(
        right, on=tmp, how="left", indicator="__m")
    miss = (merged["__m"] == "left_only").to_numpy()
    ex = _keys_str(table[miss], keys).unique()[:5].tolist() if miss.any() else []
    report[what] = {"matched": int((~miss).sum()), "unmatched": int(miss.sum()), "examples": ex}
    if miss.any() and on_unmatched == "error":
        raise JumpJoinError(
            f"{int(miss.sum())} of {len(table)} row(s) have no {what} in {source} (keys {keys}), "
            f"e.g. {ex}. Check the identifiers, use the metadata release that covers them, or "
            "pass on_unmatched='keep' to keep them unannotated (they are counted).")
    return merged.drop(columns=tmp + ["__m"])


def annotate_jump(
    table: pd.DataFrame,
    metadata: str | os.PathLike | JumpMetadata,
    *,
    well: str | os.PathLike | pd.DataFrame | None = None,
    perturbation: str = "symbol",
    on_unmatched: str = "error",
    keep_empty: bool = False,
) -> JumpAnnotation:
    """Join the JUMP plate, well, perturbation and control metadata onto ``table``.

    Parameters
    ----------
    table : DataFrame
        A load_data table or a profile table with ``Metadata_Plate``, ``Metadata_Well``
        (and ``Metadata_Source``; without it plates are matched by barcode alone, which is
        unique in cpg0016's plate.csv.gz).
    metadata : path or JumpMetadata
        Folder with the JUMP tables (:func:`read_jump_metadata`).
    well : path or DataFrame, optional
        The well table, when it is not ``well.csv.gz`` in the folder (e.g. a subset).
    perturbation : {"symbol", "jcp"}
        How ORF/CRISPR perturbations are named (see :func:`perturbation_table`).
    on_unmatched : {"error", "keep"}
    keep_empty : bool
        Keep empty wells (JCP2022_999999) instead of dropping them.

    Returns
    -------
    JumpAnnotation
        ``table`` with the columns of the module docstring; ``report`` with per-join counts.
    """
    if on_unmatched not in ("error", "keep"):
        raise ValueError(f"on_unmatched must be 'error' or 'keep', got {on_unmatched!r}")
    meta = metadata if isinstance(metadata, JumpMetadata) else read_jump_metadata(metadata)
    for col in ("Metadata_Plate", "Metadata_Well"):
        if col not in table.columns:
            raise ValueError(f"the table needs a {col} column to join JUMP metadata "
                             f"(columns: {list(table.columns)[:12]}…)")
    wt = well
    if isinstance(wt, (str, os.PathLike)):
        wt = pd.read_csv(wt, dtype=str) if not str(wt).endswith(".parquet") else pd.read_parquet(wt)
    if wt is None:
        wt = meta.well
    if wt is None:
        raise FileNotFoundError(
            f"{meta.root}: no well.csv.gz (Metadata_Source, Metadata_Plate, Metadata_Well, "
            "Metadata_JCP2022): download it from github.com/jump-cellpainting/datasets "
            "(metadata/well.csv.gz) or pass well= a table with those columns")
    out = table.copy()
    out["Metadata_Well"] = out["Metadata_Well"].map(normalize_well)
    report: dict = {"rows_in": len(table)}
    has_source = ("Metadata_Source" in out.columns
                  and not _str(out["Metadata_Source"]).isin(["unknown", "", "nan"]).all())
    # --- plates
    if meta.plate is None:
        raise FileNotFoundError(f"{meta.root}: plate.csv.gz is needed to join plates")
    pkeys = ["Metadata_Source", "Metadata_Plate"] if has_source else ["Metadata_Plate"]
    pcols = [c for c in ("Metadata_Source", "Metadata_Batch", "Metadata_PlateType")
             if c in meta.plate.columns and c not in pkeys]
    before = {c: _str(out[c]) for c in ("Metadata_Batch",) if c in out.columns}
    out = _left_join(out, meta.plate, pkeys, pcols, "plate", str(meta.root / JUMP_FILES["plate"]),
                     on_unmatched, report)
    for c, old in before.items():  # a batch the table already had wins over a missing join
        had = ~old.isin(["unknown", "", "nan"]).to_numpy()
        new = _str(out[c]).to_numpy()
        conflict = had & out[c].notna().to_numpy() & (new != old.to_numpy())
        if conflict.any():
            report["batch_conflicts"] = {"rows": int(conflict.sum()), "examples": [
                f"{a} (table) vs {b} (plate.csv.gz)" for a, b in
                list(dict.fromkeys(zip(old.to_numpy()[conflict], new[conflict])))[:3]]}
        keep = had & out[c].isna().to_numpy()
        out.loc[keep, c] = old[keep].to_numpy()
    # --- wells
    wt = wt.copy()
    wt["Metadata_Well"] = wt["Metadata_Well"].map(normalize_well)
    wkeys = ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]
    if not set(wkeys) <= set(out.columns) or (_str(out["Metadata_Source"]) == "").all():
        wkeys = ["Metadata_Plate", "Metadata_Well"]
    out = _left_join(out, wt, wkeys, ["Metadata_JCP2022"], "well", "the well table",
                     on_unmatched, report)
    # --- perturbations and controls
    pt = perturbation_table(meta, perturbation=perturbation)
    pcols = ["Metadata_PerturbationType", "Metadata_Perturbation", "Metadata_ControlType"]
    has_jcp = out["Metadata_JCP2022"].notna()
    annotated = _left_join(out[has_jcp], pt, ["Metadata_JCP2022"], pcols, "perturbation",
                           "the perturbation tables", on_unmatched, report)
    out = pd.concat([annotated, out[~has_jcp].drop(columns=[c for c in pcols if c in out.columns])],
                    ignore_index=True) if (~has_jcp).any() else annotated
    out["Metadata_ControlType"] = out["Metadata_ControlType"].fillna("").astype(str)
    empty = (out["Metadata_JCP2022"] == EMPTY_JCP).to_numpy()
    if empty.any() and not keep_empty:
        report["empty_dropped"] = int(empty.sum())
        out = out[~empty]
    report["controls"] = {k: int(v) for k, v in
                          out["Metadata_ControlType"].replace("", "treatment").value_counts().items()}
    return JumpAnnotation(out.reset_index(drop=True), report)


def annotate_target_platemap(
    table: pd.DataFrame,
    platemap: str | os.PathLike | pd.DataFrame,
    metadata: str | os.PathLike | pd.DataFrame,
    *,
    perturbation: str = "broad_sample",
    solvent_name: str = "DMSO",
    on_unmatched: str = "error",
) -> JumpAnnotation:
    """Annotate sites of JUMP-Target / CPJUMP1 plates from their platemap + metadata files.

    ``platemap`` (well_position, broad_sample[, solvent]) gives each well's sample; wells
    with an empty ``broad_sample`` hold only the solvent (``solvent`` column, else
    ``solvent_name``). ``metadata`` (broad_sample, pert_iname or gene, pert_type,
    control_type) names it; ``control_type`` ``negcon`` → ``negcon``, ``poscon*``
    (poscon_cp, poscon_diverse, poscon_orf) → ``poscon``. The layout applies to every
    plate of ``table``.

    Columns added: Metadata_broad_sample, Metadata_Perturbation (the broad_sample id, or
    the solvent; ``perturbation="name"`` uses pert_iname / gene instead), Metadata_PerturbationName,
    Metadata_Gene (ORF/CRISPR), Metadata_PerturbationType (trt/control),
    Metadata_ControlType, Metadata_control_type (the file's own value).
    """
    if perturbation not in ("broad_sample", "name"):
        raise ValueError(f"perturbation must be 'broad_sample' or 'name', got {perturbation!r}")
    pm = platemap if isinstance(platemap, pd.DataFrame) else pd.read_csv(
        platemap, sep="\t", dtype=str, keep_default_na=False)
    md = metadata if isinstance(metadata, pd.DataFrame) else pd.read_csv(
        metadata, sep="\t", dtype=str, keep_default_na=False)
    for need, df, src in ((["well_position", "broad_sample"], pm, platemap),
                          (["broad_sample", "pert_type", "control_type"], md, metadata)):
        miss = [c for c in need if c not in df.columns]
        if miss:
            raise ValueError(f"{src if not isinstance(src, pd.DataFrame) else 'table'}: missing "
                             f"column(s) {miss}; columns: {list(df.columns)}")
    name_col = "pert_iname" if "pert_iname" in md.columns else "gene" if "gene" in md.columns else None
    if name_col is None:
        raise ValueError(f"{metadata}: needs a pert_iname (compounds) or gene (ORF/CRISPR) column")
    pm = pm.copy()
    solvent = pm["solvent"] if "solvent" in pm.columns else pd.Series(solvent_name, index=pm.index)
    blank = pm["broad_sample"].str.strip().isin(["", "NA", "nan"])
    md = md.copy()
    md_blank = md["broad_sample"].str.strip().isin(["", "NA", "nan"])
    # the metadata names the solvent row with an empty broad_sample ("NA"): key it by name
    md.loc[md_blank, "broad_sample"] = md.loc[md_blank, name_col]
    pm.loc[blank, "broad_sample"] = solvent[blank]
    if md["broad_sample"].duplicated().any():
        d = md.loc[md["broad_sample"].duplicated(), "broad_sample"].tolist()[:3]
        raise ValueError(f"{metadata}: broad_sample values repeat: {d}")
    md = md.set_index("broad_sample")
    layout = pd.DataFrame({"Metadata_Well": pm["well_position"].map(normalize_well),
                           "Metadata_broad_sample": pm["broad_sample"].astype(str)})
    unknown = ~layout["Metadata_broad_sample"].isin(md.index)
    if unknown.any():
        raise JumpJoinError(f"{platemap}: {int(unknown.sum())} platemap sample(s) not in {metadata}, "
                            f"e.g. {layout.loc[unknown, 'Metadata_broad_sample'].unique()[:5].tolist()}")
    row = md.loc[layout["Metadata_broad_sample"]]
    ctl = row["control_type"].fillna("").astype(str).str.strip().to_numpy()
    layout["Metadata_PerturbationName"] = row[name_col].to_numpy()
    if name_col == "gene":
        layout["Metadata_Gene"] = row["gene"].to_numpy()
    layout["Metadata_PerturbationType"] = row["pert_type"].to_numpy()
    layout["Metadata_control_type"] = np.where(np.isin(ctl, ["NA", "nan"]), "", ctl)
    layout["Metadata_ControlType"] = np.where(np.char.startswith(ctl.astype(str), "negcon"), "negcon",
                                              np.where(np.char.startswith(ctl.astype(str), "poscon"),
                                                       "poscon", ""))
    layout["Metadata_Perturbation"] = (layout["Metadata_broad_sample"] if perturbation == "broad_sample"
                                       else layout["Metadata_PerturbationName"])
    out = table.copy()
    if "Metadata_Well" not in out.columns:
        raise ValueError("the table needs a Metadata_Well column")
    out["Metadata_Well"] = out["Metadata_Well"].map(normalize_well)
    report: dict = {"rows_in": len(table)}
    out = _left_join(out, layout, ["Metadata_Well"], [c for c in layout.columns if c != "Metadata_Well"],
                     "well", str(platemap), on_unmatched, report)
    out["Metadata_ControlType"] = out["Metadata_ControlType"].fillna("").astype(str)
    report["controls"] = {k: int(v) for k, v in
                          out["Metadata_ControlType"].replace("", "treatment").value_counts().items()}
    return JumpAnnotation(out.reset_index(drop=True), report)
