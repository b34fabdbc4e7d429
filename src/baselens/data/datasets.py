"""Download plans for public Cell Painting datasets (``baselens download DATASET``).

Each plan fetches through :class:`baselens.data.download.Downloader` (resume, retries,
checksums, ``DIR/manifest.json``) and writes ``DIR/load_data.parquet``: a load_data table
that :func:`baselens.data.load_data.read_load_data` reads, with ``PathName_*`` relative to
``DIR`` and the ``Metadata_*`` keys baselens expects. The metadata joins are the readers'
own — :func:`baselens.data.jump.annotate_jump`, :func:`baselens.data.rxrx3.read_rxrx3_metadata`
and :func:`baselens.data.rxrx3.rxrx3_load_data` — so a download and a table annotated by
hand follow the same conventions (documented in both modules: ``Metadata_Perturbation`` =
JCP2022 id / gene symbol in JUMP, gene / ``<name>@<dose>`` in RxRx3; lower-case
``Metadata_PerturbationType``; ``Metadata_ControlType`` ``negcon`` / ``poscon``).

``jump-cp`` — JUMP Cell Painting, ``cpg0016-jump`` in the Cell Painting Gallery
    (public S3 bucket ``cellpainting-gallery``, read over HTTPS from
    https://cellpainting-gallery.s3.amazonaws.com/, no credentials). Steps:

    1. metadata tables from github.com/jump-cellpainting/datasets (``metadata/``):
       plate.csv.gz, well.csv.gz, perturbation_control.csv, compound.csv.gz, orf.csv.gz,
       crispr.csv.gz → ``DIR/metadata/``;
    2. plates: ``--plates`` (looked up in plate.csv.gz for source and batch), else the
       first two plates of ``--source``, else :data:`DEFAULT_JUMP_PLATES`;
    3. per plate the load_data table,
       ``cpg0016-jump/<source>/workspace/load_data_csv/<batch>/<plate>/load_data_with_illum.parquet``
       (then ``.csv``, then ``load_data.parquet`` / ``load_data.csv`` without illumination);
    4. sites chosen per plate in the table's order: ``--wells`` (``all``, or ``controls``:
       only wells whose ``Metadata_ControlType`` is ``negcon`` / ``poscon`` — DMSO and the
       positive controls), then at most ``--sites-per-well`` per well, then the first
       ``--max-sites`` *per plate*; their per-channel TIFFs and the plate's illumination
       functions ``<plate>_Illum<Ch>.npy``, stored under
       ``DIR/cellpainting-gallery/<bucket key>``; S3 ETags that are plain MD5s are checked;
    5. ``DIR/load_data.parquet``. Sites are annotated *before* they are chosen, with
       :func:`baselens.data.jump.annotate_jump` on (source, plate, well): ``Metadata_JCP2022``,
       ``Metadata_Perturbation`` (the JCP2022 id for compounds, the gene symbol for
       ORF/CRISPR), ``Metadata_PerturbationType``, ``Metadata_ControlType`` (``negcon`` /
       ``poscon`` from perturbation_control.csv, the canonical control list; ``""``
       otherwise), ``Metadata_PlateType``; empty wells (JCP2022_999999) are dropped and
       counted, wells without metadata kept and counted;
    6. with ``--moa`` (or ``--moa-table PATH_OR_URL``): ``DIR/compound_moa.csv``
       (``Metadata_Perturbation`` = ``Metadata_JCP2022``, ``Metadata_moa``, ``|``-separated)
       for ``perturbation_metadata`` of protocols/morphohelm_moa.toml, by
       :func:`jump_compound_moa`. Default source: the Drug Repurposing Hub's 2020-03-24
       release (:data:`REPURPOSING_HUB_URL`, ``repurposing_drugs`` → ``moa`` per
       ``pert_iname``, ``repurposing_samples`` → ``InChIKey``; sha256-verified), joined on
       compound.csv.gz's ``Metadata_InChIKey`` (full key, then the first block). Its terms
       (the files' ``!Restrictions`` line): non-commercial use only; cite Corsello et al.
       2017. ``--moa-table`` takes a table keyed by JCP2022 id (e.g. MorphoHELM's
       ``feature-extraction/configs/labeled_moa_samples.csv``: Metadata_JCP2022 →
       Metadata_MoA per well) or by InChIKey (+ ``moa``).

    Full size: a cpg0016 384-well plate imaged at 9 sites per well has 3,456 sites; its 5
    Cell Painting channels are 17,280 TIFFs of 1080×1080 uint16 (≈ 2.3 MB each) ≈ 40 GB
    per plate (3,456 × 5 × 2.33 MB = 40.3 GB), brightfield planes not counted. All of
    cpg0016 is 126.8 TB (115 TiB) of images in 58.3 M TIFFs over 12 sources, 2.2 MB per
    TIFF on average (jump-cellpainting/datasets ``stats/cpg0016_source_images_size.csv``
    and ``…_tiff_count.csv``; e.g. source_4: 19.4 TB, 7.66 M TIFFs, 2.5 MB each).
    The metadata tables are a few MB.

``rxrx3-core`` — Recursion's RxRx3-core on Hugging Face (``recursionpharma/rxrx3-core``):
    ``metadata_rxrx3_core.csv`` (20.6 MB; one row per well: well_id, experiment_name,
    plate, address, gene, treatment, SMILES, concentration, perturbation_type, cell_type),
    ``OpenPhenom_rxrx3_core_embeddings.parquet`` (532 MB; well_id + 384 ``feature_*``
    columns) and the images: 35 Parquet shards ``data/train-000NN-of-00035.parquet``
    (``__key__`` = ``<experiment>/Plate<plate>/<address>_s<site>_<channel 1-6>``, ``jp2`` =
    the JPEG 2000 bytes; 1,335,606 single-channel images = 222,601 wells × 6 channels,
    17.4 GB in all, ≈ 0.5 GB per shard). The plan fetches the Hugging Face file listing
    (sizes and LFS sha256s, which are verified), the metadata, the embeddings (unless
    ``--no-embeddings``) and the shards named by ``--shards`` (default ``0``); writes the
    first ``--max-sites`` sites *in all* whose well is in the metadata (as read by
    :func:`baselens.data.rxrx3.read_rxrx3_metadata`, which drops ``CRISPR_control`` wells)
    as ``DIR/images/<experiment>/Plate<plate>/<address>_s1_<channel 1-6>.jp2`` (the
    original bytes, the release's own layout); ``DIR/load_data.parquet`` with 6 channels
    (:data:`RXRX3_CHANNELS`: w1 DNA/Hoechst, w2 ER/ConA, w3 Actin/phalloidin, w4 RNA/SYTO14,
    w5 Mito/MitoTracker, w6 WGA) from :func:`baselens.data.rxrx3.rxrx3_load_data`; and
    ``DIR/openphenom_embeddings.parquet`` (every well of the metadata: ``Metadata_WellId``,
    ``Metadata_Batch``, ``Metadata_Plate``, ``Metadata_Well`` + ``feature_*``, repeated
    well_ids averaged) for the ``precomputed`` extractor with ``keys = "well"``. Plates are
    named ``<experiment>_Plate<plate>``, batches are experiments, ``EMPTY_control`` wells
    are ``negcon``, compounds are ``<name>@<concentration>``. Unless ``--no-annotations``:
    efaar-benchmarking's gene–gene relationship tables CORUM, HuMAP, Reactome, SIGNOR,
    StringDB (``entity1,entity2``; 4.2 MB in all) and their LICENSE into
    ``DIR/annotations/`` (:data:`EFAAR_ANNOTATIONS_URL`), where protocols/rxrx3_core.toml's
    default ``${annotations_dir}`` finds them. CORUM and SIGNOR are CC-BY-NC 4.0 (HuMAP and
    StringDB CC-BY 4.0, Reactome CC0): fetched for local use, never to be redistributed —
    the printed summary says so.

``cpgNNNN-<name>`` — any Cell Painting Gallery project folder (e.g. ``cpg0000-jump-pilot``)
    by ``--source``, ``--batch`` and ``--plates`` (missing batch / plates are listed from
    the bucket). Same steps 3–4 as jump-cp (``--wells controls`` included); metadata from
    the project's platemaps
    (``workspace/metadata/platemaps/<batch>/barcode_platemap.csv`` + ``platemap/<name>.txt``)
    when present: ``Metadata_Perturbation`` is ``broad_sample`` (the solvent, e.g. DMSO, in
    wells without one, which are then ``negcon``); otherwise no perturbation metadata.

Mirrors and tests: ``base_url`` (``--base-url`` / ``BASELENS_MIRROR``) maps every URL
``https://HOST/PATH`` to ``BASE/HOST/PATH`` (:func:`baselens.data.download.mirror_url`).
"""

from __future__ import annotations

import os
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from baselens._io import write_parquet_atomic
from baselens.data import JUMP_CHANNELS
from baselens.data.download import (
    DownloadError,
    Downloader,
    FileSpec,
    mirror_url,
)
from baselens.data.rxrx3 import RXRX3_CHANNELS
from baselens.data.wells import parse_well

__all__ = [
    "ANNOTATION_LICENCES",
    "DATASETS",
    "DEFAULT_JUMP_PLATES",
    "DownloadError",
    "DownloadReport",
    "download_dataset",
    "EFAAR_ANNOTATIONS_URL",
    "GALLERY_URL",
    "JUMP_METADATA_URL",
    "HF_URL",
    "jump_compound_moa",
    "REPURPOSING_HUB_FILES",
    "REPURPOSING_HUB_URL",
    "repurposing_hub_moa",
    "RXRX3_CHANNELS",
    "WELL_CHOICES",
]

GALLERY_BUCKET = "cellpainting-gallery"
GALLERY_URL = "https://cellpainting-gallery.s3.amazonaws.com"
JUMP_METADATA_URL = "https://github.com/jump-cellpainting/datasets/raw/{rev}/metadata"
JUMP_METADATA_FILES = ("plate.csv.gz", "well.csv.gz", "perturbation_control.csv",
                       "compound.csv.gz", "orf.csv.gz", "crispr.csv.gz")
HF_URL = "https://huggingface.co"
RXRX3_REPO = "recursionpharma/rxrx3-core"
RXRX3_METADATA = "metadata_rxrx3_core.csv"
RXRX3_EMBEDDINGS = "OpenPhenom_rxrx3_core_embeddings.parquet"
RXRX3_N_SHARDS = 35

#: efaar-benchmarking's gene-gene relationship tables (``entity1,entity2``, both
#: directions), the files ``efaar_benchmarking.constants.BENCHMARK_SOURCES`` names; the
#: repository's default branch is ``trunk``.
EFAAR_ANNOTATIONS_URL = ("https://github.com/recursionpharma/EFAAR_benchmarking/raw/trunk/"
                         "efaar_benchmarking/benchmark_annotations")
#: per source, as efaar-benchmarking's ``benchmark_annotations/LICENSE`` (the copy shipped
#: in the efaar_benchmarking 1.0 wheel) states them
ANNOTATION_LICENCES: dict[str, str] = {"CORUM": "CC-BY-NC 4.0", "HuMAP": "CC-BY 4.0",
                                       "Reactome": "CC0 1.0", "SIGNOR": "CC-BY-NC 4.0",
                                       "StringDB": "CC-BY 4.0"}

#: The Drug Repurposing Hub's dated release (Corsello et al. 2017): drug annotations
#: (pert_iname, clinical_phase, moa, target, …) and samples (broad_id, pert_iname, …,
#: InChIKey, pubchem_cid); sha256 of the published files. Terms: non-commercial use only.
REPURPOSING_HUB_URL = "https://s3.amazonaws.com/data.clue.io/repurposing/downloads"
REPURPOSING_HUB_FILES: dict[str, str] = {
    "repurposing_drugs_20200324.txt":
        "9c3a08b9d4369fe4257dc9aa763d682fc5ef6b7dd0615534bb44f92b48bc287b",
    "repurposing_samples_20200324.txt":
        "3324dfac93d19ceaeafbe7d9e466127709328777cb2f6c5a465740cd327088e9",
}

#: ``--wells``: every well, or only the control wells (Metadata_ControlType negcon / poscon)
WELL_CHOICES: tuple[str, ...] = ("all", "controls")
CONTROL_TYPES: tuple[str, ...] = ("negcon", "poscon")

#: two TARGET2 replicate plates of source_4 (2021_08_23_Batch12): 302 annotated
#: compounds plus DMSO and positive controls on each
DEFAULT_JUMP_PLATES: tuple[str, ...] = ("BR00126114", "BR00126115")

LOAD_DATA_NAMES = ("load_data_with_illum.parquet", "load_data_with_illum.csv",
                   "load_data.parquet", "load_data.csv")

DATASETS = {
    "jump-cp": "JUMP Cell Painting (cpg0016-jump) images + JUMP metadata",
    "rxrx3-core": "RxRx3-core (Hugging Face recursionpharma/rxrx3-core): metadata, "
                  "OpenPhenom embeddings, images",
    "cpgNNNN-<name>": "any Cell Painting Gallery project by --source/--batch/--plates, "
                      "e.g. cpg0000-jump-pilot",
}

_CPG = re.compile(r"^cpg\d{4}(-[A-Za-z0-9_.-]+)?$")


@dataclass
class DownloadReport:
    """What a plan produced: paths, counts and the printed summary."""

    dataset: str
    out: Path
    load_data: Path | None = None
    embeddings: Path | None = None
    manifest: Path | None = None
    counts: dict = field(default_factory=dict)
    dry_run: bool = False
    text: str = ""
    notes: list = field(default_factory=list)  # lines appended to the printed summary
    annotations: Path | None = None
    compound_moa: Path | None = None


# ----------------------------------------------------------------------------- common


def _add_row_col(df: pd.DataFrame) -> pd.DataFrame:
    rc = [parse_well(w, default=(-1, -1)) for w in df["Metadata_Well"].astype(str)]
    df["Metadata_Row"] = [r for r, _ in rc]
    df["Metadata_Col"] = [c for _, c in rc]
    return df


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    sep = "\t" if path.name.endswith((".txt", ".tsv")) else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _s3_key(pathname: str, filename: str) -> str:
    """Bucket key of a load_data (PathName, FileName) pair in the Cell Painting Gallery."""
    p = str(pathname).strip()
    for prefix in (f"s3://{GALLERY_BUCKET}/", f"{GALLERY_URL}/",
                   f"https://{GALLERY_BUCKET}.s3.us-east-1.amazonaws.com/"):
        if p.startswith(prefix):
            p = p[len(prefix):]
            break
    else:
        raise DownloadError(
            f"PathName {pathname!r} is not a path in s3://{GALLERY_BUCKET}; this load_data "
            "table points at files this plan cannot map to a URL. Download the images "
            "yourself and use read_load_data(path_map=...).")
    return str(PurePosixPath(p.strip("/")) / str(filename))


def _gallery_spec(root: str, key: str, kind: str = "data") -> FileSpec:
    url = f"{root.rstrip('/')}/{urllib.parse.quote(key, safe='/-_.~')}"
    return FileSpec(url=url, rel=f"{GALLERY_BUCKET}/{key}", etag_md5=True, kind=kind)


def _fetch_first(dl: Downloader, specs: Sequence[FileSpec]) -> tuple[FileSpec, Path]:
    """Fetch the first spec that exists upstream (404/403 → try the next)."""
    errors = []
    for s in specs:
        try:
            return s, dl.get(s)
        except DownloadError as exc:
            if "HTTP 404" in str(exc) or "HTTP 403" in str(exc):
                errors.append(s.url)
                continue
            raise
    raise DownloadError("none of these exist upstream (HTTP 404/403): " + ", ".join(errors)
                        + ". Check the project, source, batch and plate names.")


def _s3_list(dl: Downloader, root: str, prefix: str) -> list[str]:
    """Sub-folders directly under ``prefix`` (S3 ListObjectsV2 with delimiter ``/``)."""
    from baselens.data.download import check_url_allowed, _open

    out: list[str] = []
    token = None
    while True:
        q = {"list-type": "2", "prefix": prefix, "delimiter": "/"}
        if token:
            q["continuation-token"] = token
        url = f"{root.rstrip('/')}/?{urllib.parse.urlencode(q)}"
        check_url_allowed(url)
        try:
            with _open(url, {}, dl.timeout) as resp:
                body = resp.read()
        except Exception as exc:
            raise DownloadError(f"cannot list {prefix} in the bucket ({url}): {exc}") from None
        tree = ET.fromstring(body)
        ns = tree.tag.split("}")[0] + "}" if tree.tag.startswith("{") else ""
        for cp in tree.iter(f"{ns}CommonPrefixes"):
            pre = cp.findtext(f"{ns}Prefix") or ""
            out.append(pre[len(prefix):].strip("/"))
        if (tree.findtext(f"{ns}IsTruncated") or "false").lower() != "true":
            return out
        token = tree.findtext(f"{ns}NextContinuationToken")


def _select_sites(table: pd.DataFrame, max_sites: int | None,
                  sites_per_well: int | None, wells: str = "all") -> tuple[pd.DataFrame, int]:
    """Choose sites in table order: the well filter first (``wells="controls"`` keeps
    ``Metadata_ControlType`` ``negcon`` / ``poscon``), then at most ``sites_per_well`` per
    well, then the first ``max_sites``. Returns (chosen sites, sites the well filter left out)."""
    t = table
    if wells not in WELL_CHOICES:
        raise ValueError(f"wells must be one of {WELL_CHOICES}, got {wells!r}")
    if wells == "controls":
        if "Metadata_ControlType" not in t.columns:
            raise DownloadError("--wells controls needs the control annotation "
                                "(Metadata_ControlType), which this plate's metadata lacks")
        t = t[t["Metadata_ControlType"].isin(CONTROL_TYPES)]
    n_filtered = len(table) - len(t)
    if sites_per_well is not None:
        t = t[t.groupby("Metadata_Well", sort=False).cumcount() < sites_per_well]
    if max_sites is not None:
        t = t.head(max_sites)
    return t.reset_index(drop=True), n_filtered


def _plates_sites(dl, gallery, project, plates, opts, log, annotate, report):
    """:func:`_plate_sites` of every ``(source, batch, plate)``: the chosen sites of all
    plates and the files to fetch; each plate's counts go into ``report``."""
    frames, specs = [], []
    for source, batch, plate in plates:
        df, sp, c = _plate_sites(dl, gallery, project, source, batch, plate,
                                 max_sites=opts["max_sites"],
                                 sites_per_well=opts.get("sites_per_well"),
                                 channels=opts.get("channels"), log=log,
                                 wells=opts.get("wells", "all"), annotate=annotate)
        frames.append(df)
        specs += sp
        report.counts.setdefault("plates", []).append(c)
    return pd.concat(frames, ignore_index=True), specs


def _plate_sites(dl: Downloader, gallery: str, project: str, source: str, batch: str,
                 plate: str, *, max_sites, sites_per_well, channels, log, wells: str = "all",
                 annotate: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                 ) -> tuple[pd.DataFrame, list[FileSpec], dict]:
    """Fetch one plate's load_data, annotate every site (``annotate`` may drop some, e.g.
    empty wells), choose sites (:func:`_select_sites`: well filter, sites per well, max
    sites); return (local site table, file specs, counts)."""
    base = f"{project}/{source}/workspace/load_data_csv/{batch}/{plate}"
    spec, path = _fetch_first(dl, [_gallery_spec(gallery, f"{base}/{n}", kind="index")
                                   for n in LOAD_DATA_NAMES])
    ld = _read_table(path)
    ld = ld.rename(columns={c: c.removeprefix("Image_") for c in ld.columns
                            if c.startswith(("Image_FileName_", "Image_PathName_"))})
    for col in ("Metadata_Plate", "Metadata_Well"):
        if col not in ld.columns:
            raise DownloadError(f"{path}: no {col} column; not a load_data table")
    if "Metadata_Site" not in ld.columns:
        ld["Metadata_Site"] = 1
    available = [c.removeprefix("FileName_Orig") for c in ld.columns if c.startswith("FileName_Orig")]
    if channels:
        missing = [c for c in channels if c not in available]
        if missing:
            raise DownloadError(f"{path}: channel(s) {missing} not in the table, which has "
                                f"{available}")
        chans = list(channels)
    else:
        chans = [c for c in JUMP_CHANNELS if c in available] or available
    has_illum = all(f"FileName_Illum{c}" in ld.columns for c in chans)
    kinds = ("Orig", "Illum") if has_illum else ("Orig",)
    file_cols = [f"{a}_{k}{c}" for k in kinds for c in chans for a in ("FileName", "PathName")]
    meta = ld[[c for c in ld.columns if c.startswith("Metadata_")]].copy()
    meta["Metadata_Source"], meta["Metadata_Batch"] = source, batch
    meta["Metadata_Plate"] = str(plate)
    meta["Metadata_Well"] = meta["Metadata_Well"].astype(str)
    n_all = len(meta)
    sites = pd.concat([meta, ld[file_cols]], axis=1)
    if annotate is not None:
        sites = annotate(sites)
    chosen, n_filtered = _select_sites(sites, max_sites, sites_per_well, wells)
    specs: list[FileSpec] = []
    local = chosen[[c for c in chosen.columns if c.startswith("Metadata_")]].copy()
    for k in kinds:
        for c in chans:
            names, dirs = [], []
            for pn, fn in zip(chosen[f"PathName_{k}{c}"], chosen[f"FileName_{k}{c}"]):
                s = _gallery_spec(gallery, _s3_key(pn, fn))
                specs.append(s)
                rel = PurePosixPath(s.rel)
                names.append(rel.name)
                dirs.append(str(rel.parent))
            local[f"FileName_{k}{c}"] = names
            local[f"PathName_{k}{c}"] = dirs
    counts = {"plate": plate, "sites_in_table": n_all, "sites_annotated": len(sites),
              "sites_outside_wells": n_filtered, "sites_selected": len(chosen),
              "channels": chans, "illum": has_illum, "load_data": spec.rel}
    dropped = [c for c in available if c not in chans]
    why = ([f"{n_all - len(sites)} dropped by the metadata join"] if len(sites) != n_all else []) \
        + ([f"{n_filtered} outside the control wells"] if n_filtered else [])
    if wells != "all" and chosen.empty:
        log(f"plate {plate}: no control wells (negcon/poscon) in the annotated load_data: "
            "nothing to fetch")
    log(f"plate {plate}: {len(chosen)} of {n_all} site(s)" + (f" ({'; '.join(why)})" if why else "")
        + f", channels {chans}" + (f" (not fetched: {dropped})" if dropped else "")
        + ("" if has_illum else "; no illumination functions in this table"))
    return local, specs, counts


def _finish(dl: Downloader, report: DownloadReport, sites: pd.DataFrame, log) -> None:
    if dl.dry_run:
        report.text = "\n".join([dl.dry_run_report(), *report.notes])
        log(report.text)
        return
    if sites.empty:
        raise DownloadError("no site was selected on any plate (see the per-plate lines "
                            "above: --wells, --max-sites, --sites-per-well); nothing written")
    if "Metadata_Site" in sites:
        num = pd.to_numeric(sites["Metadata_Site"], errors="coerce")
        if num.notna().all():
            sites["Metadata_Site"] = num.astype("int64")
    sites = _add_row_col(sites)
    report.load_data = write_parquet_atomic(sites, dl.out / "load_data.parquet")
    dl.manifest.data["outputs"]["load_data"] = {"path": "load_data.parquet", "sites": len(sites),
                                                **{k: v for k, v in report.counts.items()
                                                   if isinstance(v, (int, str))}}
    dl.manifest.save()
    report.manifest = dl.manifest.path
    report.text = "\n".join([dl.summary(), f"load_data: {report.load_data} ({len(sites)} site(s))",
                             *report.notes])
    log(report.text)


# ----------------------------------------------------------------------------- JUMP


def _jump_annotator(meta, report: DownloadReport, log):
    """``annotate(sites)`` with :func:`baselens.data.jump.annotate_jump` (wells without
    metadata kept and counted; empty wells, JCP2022_999999, dropped and counted).
    ``meta``: a :class:`baselens.data.jump.JumpMetadata`."""
    from baselens.data.jump import annotate_jump

    def annotate(sites: pd.DataFrame) -> pd.DataFrame:
        ann = annotate_jump(sites, meta, on_unmatched="keep")
        plate = str(sites["Metadata_Plate"].iloc[0]) if len(sites) else "?"
        log(f"plate {plate}: " + ann.summary().replace("\n", "; "))
        c = report.counts.setdefault("metadata", {})
        c[plate] = {k: v for k, v in ann.report.items() if k != "rows_in"}
        return ann.table

    return annotate


def _jump_plates(plate_tab: pd.DataFrame, plates, source, log) -> pd.DataFrame:
    if plates:
        want = [str(p) for p in plates]
        sel = plate_tab[plate_tab["Metadata_Plate"].isin(want)]
        if source:
            sel = sel[sel["Metadata_Source"] == source]
        unknown = [p for p in want if p not in set(sel["Metadata_Plate"])]
        if unknown:
            import difflib
            hints = {p: difflib.get_close_matches(p, plate_tab["Metadata_Plate"].tolist(), 3)
                     for p in unknown}
            raise DownloadError(
                f"plate(s) {unknown} not in plate.csv.gz"
                + (f" for {source}" if source else "") + "; close matches: "
                + "; ".join(f"{p}: {h or 'none'}" for p, h in hints.items()))
        dup = sel["Metadata_Plate"].duplicated(keep=False)
        if dup.any():
            raise DownloadError(f"plate(s) {sorted(set(sel.loc[dup, 'Metadata_Plate']))} exist "
                                "in several sources; give --source")
        return sel.set_index("Metadata_Plate").loc[want].reset_index()
    if source:
        sel = plate_tab[plate_tab["Metadata_Source"] == source]
        if sel.empty:
            raise DownloadError(f"no plates of {source!r} in plate.csv.gz; sources: "
                                f"{sorted(plate_tab['Metadata_Source'].unique())}")
        log(f"no --plates: the first 2 plates of {source}")
        return sel.head(2).reset_index(drop=True)
    log(f"no --plates or --source: the default plates {list(DEFAULT_JUMP_PLATES)}")
    return _jump_plates(plate_tab, DEFAULT_JUMP_PLATES, None, log)


def _plan_jump(dl: Downloader, opts: dict, log) -> DownloadReport:
    from baselens.data.jump import read_jump_metadata

    gallery = mirror_url(GALLERY_URL, opts["base_url"])
    meta_root = mirror_url(JUMP_METADATA_URL.format(rev=opts.get("revision") or "main"),
                           opts["base_url"])
    report = DownloadReport("jump-cp", dl.out, dry_run=dl.dry_run)
    for name in JUMP_METADATA_FILES:
        dl.get(FileSpec(url=f"{meta_root}/{name}", rel=f"metadata/{name}", kind="index"),
               label="metadata ")
    meta = read_jump_metadata(dl.out / "metadata")
    plates = _jump_plates(meta.plate.fillna(""), opts.get("plates"), opts.get("source"), log)
    annotate = _jump_annotator(meta, report, log)
    moa_specs, moa_table = _moa_plan(opts)
    sites, specs = _plates_sites(
        dl, gallery, "cpg0016-jump",
        plates[["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]].itertuples(index=False),
        opts, log, annotate, report)
    dl.get_many(list(moa_specs) + specs)
    if opts.get("moa") and not dl.dry_run:
        _write_compound_moa(dl, report, meta, moa_specs, moa_table, sites)
    _finish(dl, report, sites, log)
    return report


# ----------------------------------------------------------------------------- JUMP MoA labels


def _read_hub_table(path: Path, need: Sequence[str]) -> pd.DataFrame:
    """A Drug Repurposing Hub table: ``!``-prefixed header lines, then a tab-separated table."""
    n_bang = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith("!"):
                break
            n_bang += 1
    df = pd.read_csv(path, sep="\t", skiprows=n_bang, dtype=str, keep_default_na=False)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DownloadError(f"{path}: not a Drug Repurposing Hub table, missing column(s) "
                            f"{missing} (columns: {list(df.columns)[:12]})")
    return df


def repurposing_hub_moa(drugs: str | os.PathLike, samples: str | os.PathLike) -> pd.DataFrame:
    """The Drug Repurposing Hub's MoAs per InChIKey: ``samples`` (``pert_iname``,
    ``InChIKey``, one row per physical sample) joined to ``drugs`` (``pert_iname``, ``moa``,
    ``|``-separated) on ``pert_iname`` (Corsello et al. 2017, Nat. Med. 23:405).

    Returns
    -------
    DataFrame
        ``InChIKey``, ``pert_iname``, ``moa``: one row per (key, compound) with an MoA.
    """
    d = _read_hub_table(Path(drugs), ["pert_iname", "moa"])
    s = _read_hub_table(Path(samples), ["pert_iname", "InChIKey"])
    d = d[d["moa"].str.strip() != ""][["pert_iname", "moa"]].drop_duplicates("pert_iname")
    s = s[s["InChIKey"].str.strip() != ""][["pert_iname", "InChIKey"]].drop_duplicates()
    return s.merge(d, on="pert_iname", how="inner")[["InChIKey", "pert_iname", "moa"]]


def _first_of(columns, names: Sequence[str]) -> str | None:
    return next((c for c in names if c in columns), None)


def _moa_sets(values: pd.Series) -> pd.Series:
    """``"a|b"`` → ``{"a", "b"}``; empty, ``nan`` and ``negative_control`` labels dropped."""
    def one(v) -> frozenset:
        parts = (p.strip() for p in str(v).split("|"))
        return frozenset(p for p in parts if p and p.lower() not in ("nan", "none", "negative_control"))
    return values.map(one)


def jump_compound_moa(labels: pd.DataFrame, meta, *, source: str = "the MoA table",
                      ) -> tuple[pd.DataFrame, dict]:
    """MoA labels for JUMP compounds, keyed as baselens keys JUMP compounds.

    ``labels`` is either keyed by JCP2022 id (a ``Metadata_JCP2022`` or
    ``Metadata_Perturbation`` column, e.g. MorphoHELM's ``labeled_moa_samples.csv``, one
    row per well) or by InChIKey (``InChIKey`` / ``Metadata_InChIKey``, e.g.
    :func:`repurposing_hub_moa`), with an MoA column (``Metadata_moa``, ``Metadata_MoA``,
    ``moa`` or ``MoA``; several MoAs ``|``-separated). InChIKeys are joined through
    ``compound.csv.gz`` (``Metadata_JCP2022``, ``Metadata_InChIKey``): the full key first;
    a compound whose full key has no label is then matched on the first block (the 14
    characters of the connectivity layer: a stereoisomer's label), counted separately.
    A compound's label is the union of the MoAs of every row that matches it, sorted and
    ``|``-joined. Negative controls (``perturbation_control.csv``: DMSO) get no label.

    Parameters
    ----------
    labels : DataFrame
    meta : baselens.data.jump.JumpMetadata
        Needs ``compound`` (InChIKey tables) and uses ``controls``.

    Returns
    -------
    (DataFrame, dict)
        ``Metadata_Perturbation`` (= ``Metadata_JCP2022``: baselens' JUMP compound key,
        :func:`baselens.data.jump.perturbation_table`), ``Metadata_JCP2022``,
        ``Metadata_moa``; and the counts of every step.
    """
    moa_col = _first_of(labels.columns, ("Metadata_moa", "Metadata_MoA", "moa", "MoA"))
    jcp_col = _first_of(labels.columns, ("Metadata_JCP2022", "Metadata_Perturbation"))
    key_col = _first_of(labels.columns, ("InChIKey", "Metadata_InChIKey"))
    if moa_col is None or (jcp_col is None and key_col is None):
        raise DownloadError(
            f"{source}: needs an MoA column (Metadata_moa, Metadata_MoA, moa) and either a "
            "JCP2022 id (Metadata_JCP2022 / Metadata_Perturbation) or an InChIKey column; "
            f"found {list(labels.columns)[:12]}")
    lab = pd.DataFrame({"moa": _moa_sets(labels[moa_col])})
    report: dict = {"label_rows": len(labels), "label_rows_without_moa": int((lab["moa"].map(len) == 0).sum())}
    if jcp_col is not None:
        lab["Metadata_JCP2022"] = labels[jcp_col].astype(str).str.strip()
        report["joined_on"] = jcp_col
        matched = lab[lab["moa"].map(len) > 0]
        if meta.compound is not None:  # ids JUMP does not list: kept, but counted
            known = set(meta.compound["Metadata_JCP2022"])
            report["label_ids_not_in_compound_table"] = int(
                matched.loc[~matched["Metadata_JCP2022"].isin(known), "Metadata_JCP2022"].nunique())
    else:
        if meta.compound is None or "Metadata_InChIKey" not in meta.compound.columns:
            raise DownloadError(f"{meta.root}: compound.csv.gz with Metadata_InChIKey is needed "
                                f"to join {source} by InChIKey")
        lab["key"] = labels[key_col].astype(str).str.strip().str.upper()
        lab = lab[(lab["moa"].map(len) > 0) & (lab["key"] != "")]
        cpd = meta.compound[["Metadata_JCP2022", "Metadata_InChIKey"]].dropna().copy()
        cpd["key"] = cpd["Metadata_InChIKey"].astype(str).str.strip().str.upper()
        full = cpd.merge(lab[["key", "moa"]], on="key", how="inner")
        rest = cpd[~cpd["Metadata_JCP2022"].isin(full["Metadata_JCP2022"])].copy()
        rest["block"], lab["block"] = rest["key"].str[:14], lab["key"].str[:14]
        part = rest.merge(lab[["block", "moa"]], on="block", how="inner")
        report.update({"joined_on": f"{key_col} via compound.csv.gz",
                       "compounds_matched_full_inchikey": int(full["Metadata_JCP2022"].nunique()),
                       "compounds_matched_first_block": int(part["Metadata_JCP2022"].nunique())})
        matched = pd.concat([full[["Metadata_JCP2022", "moa"]], part[["Metadata_JCP2022", "moa"]]],
                            ignore_index=True)
    per = matched.groupby("Metadata_JCP2022", sort=True)["moa"].agg(lambda v: frozenset().union(*v))
    per = per[per.map(len) > 0]
    negcon = set()
    if meta is not None and meta.controls is not None:
        c = meta.controls
        negcon = set(c.loc[c["Metadata_pert_type"] == "negcon", "Metadata_JCP2022"])
    report["negcon_unlabelled"] = int(per.index.isin(list(negcon)).sum())
    per = per[~per.index.isin(list(negcon))]
    out = pd.DataFrame({"Metadata_Perturbation": per.index.astype(str),
                        "Metadata_JCP2022": per.index.astype(str),
                        "Metadata_moa": ["|".join(sorted(m)) for m in per]})
    report["compounds_labelled"] = len(out)
    report["moas"] = int(len(frozenset().union(*per))) if len(per) else 0
    return out.reset_index(drop=True), report


def _moa_plan(opts: dict) -> tuple[list[FileSpec], str | None]:
    """The files ``--moa`` needs: the Drug Repurposing Hub tables, or ``--moa-table`` (a URL
    is fetched as given, a path read in place). Returns (specs, local table path or None)."""
    if not opts.get("moa"):
        return [], None
    table = opts.get("moa_table")
    if table:
        if re.match(r"^https?://", str(table)):
            name = PurePosixPath(urllib.parse.urlsplit(str(table)).path).name or "moa_table"
            return [FileSpec(url=str(table), rel=f"moa/{name}")], None
        p = Path(table).expanduser()
        if not p.is_file():
            raise DownloadError(f"--moa-table {table}: no such file (give a path or an http(s) URL)")
        return [], str(p)
    root = mirror_url(REPURPOSING_HUB_URL, opts["base_url"])
    return [FileSpec(url=f"{root}/{name}", rel=f"moa/{name}", sha256=sha)
            for name, sha in REPURPOSING_HUB_FILES.items()], None


def _read_moa_labels(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    sep = "\t" if path.name.endswith((".tsv", ".txt", ".tsv.gz")) else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _write_compound_moa(dl: Downloader, report: DownloadReport, meta, specs: list[FileSpec],
                        table: str | None, sites: pd.DataFrame) -> None:
    """``DIR/compound_moa.csv`` (:func:`jump_compound_moa`) and what it covers."""
    from baselens._io import write_text_atomic

    if table is None and specs and specs[0].rel.startswith("moa/repurposing_"):
        paths = {PurePosixPath(s.rel).name: dl.path(s) for s in specs}
        d, sm = (paths[n] for n in REPURPOSING_HUB_FILES)
        labels, what = repurposing_hub_moa(d, sm), "the Drug Repurposing Hub (2020-03-24)"
        note = ("MoA labels from the Drug Repurposing Hub (Corsello et al. 2017, "
                "doi:10.1038/nm.4306): for non-commercial research use only (the files' own "
                "'!Restrictions' line); do not redistribute them")
    else:
        src = Path(table) if table is not None else dl.path(specs[0])
        try:
            labels = _read_moa_labels(src)
        except (ValueError, OSError) as exc:
            raise DownloadError(f"--moa-table {src}: cannot read it as a table ({exc})") from None
        what = str(table or specs[0].url)
        note = f"MoA labels from {what}: check its licence before redistributing"
    moa, c = jump_compound_moa(labels, meta, source=what)
    dest = dl.out / "compound_moa.csv"
    write_text_atomic(moa.to_csv(index=False), dest)
    ids = set()
    if {"Metadata_PerturbationType", "Metadata_ControlType", "Metadata_Perturbation"} <= set(sites.columns):
        cpd = sites[(sites["Metadata_PerturbationType"] == "compound")
                    & (sites["Metadata_ControlType"] != "negcon")]
        ids = set(cpd["Metadata_Perturbation"].dropna().astype(str))
    c["downloaded_compounds"] = len(ids)
    c["downloaded_compounds_labelled"] = len(ids & set(moa["Metadata_Perturbation"]))
    dl.manifest.data["outputs"]["compound_moa"] = {"path": dest.name, "source": what, **c}
    report.compound_moa = dest
    report.counts["compound_moa"] = c
    report.notes.append(
        f"compound_moa: {dest} ({c['compounds_labelled']} compound(s), {c['moas']} MoA(s); "
        f"{c['downloaded_compounds_labelled']} of the {c['downloaded_compounds']} compound(s) "
        "on the downloaded sites labelled)")
    report.notes.append(note)
    if not len(moa):
        report.notes.append(f"no compound got an MoA from {what}: check that it names JUMP "
                            "compounds (JCP2022 ids or InChIKeys) and has an MoA column")


# ----------------------------------------------------------------------------- generic CPG


def _cpg_platemap(dl: Downloader, gallery: str, project: str, source: str, batch: str,
                  plates: list[str], log) -> pd.DataFrame | None:
    base = f"{project}/{source}/workspace/metadata/platemaps/{batch}"
    try:
        _, bp = _fetch_first(dl, [_gallery_spec(gallery, f"{base}/barcode_platemap.csv",
                                                kind="index")])
    except DownloadError as exc:
        log(f"no platemaps for {batch} ({exc}); load_data gets no perturbation metadata")
        return None
    bmap = _read_table(bp)
    if not {"Assay_Plate_Barcode", "Plate_Map_Name"} <= set(bmap.columns):
        log(f"{bp}: unexpected columns {list(bmap.columns)}; no perturbation metadata")
        return None
    frames = []
    for plate in plates:
        hit = bmap.loc[bmap["Assay_Plate_Barcode"] == plate, "Plate_Map_Name"]
        if hit.empty:
            log(f"{plate} is not in {bp}; no perturbation metadata for it")
            continue
        _, pm = _fetch_first(dl, [_gallery_spec(gallery, f"{base}/platemap/{hit.iloc[0]}.txt",
                                                kind="index")])
        t = _read_table(pm)
        wcol = "well_position" if "well_position" in t else ("Metadata_Well" if "Metadata_Well" in t else None)
        if wcol is None:
            log(f"{pm}: no well_position column; no perturbation metadata for {plate}")
            continue
        t = t.rename(columns={c: c if c.startswith("Metadata_") else f"Metadata_{c}"
                              for c in t.columns})
        t = t.rename(columns={f"Metadata_{wcol}" if not wcol.startswith("Metadata_") else wcol:
                              "Metadata_Well"})
        t["Metadata_Plate"] = plate
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else None


def _cpg_annotate(sites: pd.DataFrame, pm: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    if pm is None:
        sites["Metadata_Perturbation"] = ""
        sites["Metadata_ControlType"] = ""
        return sites, {"sites_without_platemap": len(sites)}
    pm = pm.drop_duplicates(["Metadata_Plate", "Metadata_Well"])
    keep = [c for c in pm.columns if c not in sites.columns or c in ("Metadata_Plate", "Metadata_Well")]
    out = sites.merge(pm[keep], how="left", on=["Metadata_Plate", "Metadata_Well"])
    missing = int(out[keep[-1]].isna().sum()) if len(keep) > 2 else 0
    sample = out.get("Metadata_broad_sample", pd.Series("", index=out.index)).fillna("")
    solvent = out.get("Metadata_solvent", pd.Series("", index=out.index)).fillna("")
    if "Metadata_Perturbation" not in out:
        out["Metadata_Perturbation"] = np.where(sample != "", sample, solvent)
    if "Metadata_ControlType" not in out:
        ctl = out.get("Metadata_control_type", pd.Series("", index=out.index)).fillna("")
        out["Metadata_ControlType"] = np.where(
            ctl.isin(["negcon", "poscon"]), ctl,
            np.where((sample == "") & (solvent != ""), "negcon", ""))
    return out, {"sites_without_platemap": missing,
                 "negcon_sites": int((out["Metadata_ControlType"] == "negcon").sum())}


def _plan_cpg(dl: Downloader, project: str, opts: dict, log) -> DownloadReport:
    gallery = mirror_url(GALLERY_URL, opts["base_url"])
    report = DownloadReport(project, dl.out, dry_run=dl.dry_run)
    source, batch, plates = opts.get("source"), opts.get("batch"), opts.get("plates")
    if not source:
        found = _s3_list(dl, gallery, f"{project}/")
        raise DownloadError(f"{project}: give --source (the bucket has: {found})")
    if not batch:
        found = _s3_list(dl, gallery, f"{project}/{source}/workspace/load_data_csv/")
        if len(found) != 1:
            raise DownloadError(f"{project}/{source}: give --batch (batches with load_data: "
                                f"{found})")
        batch = found[0]
        log(f"the only batch with load_data: {batch}")
    if not plates:
        found = _s3_list(dl, gallery, f"{project}/{source}/workspace/load_data_csv/{batch}/")
        if not found:
            raise DownloadError(f"{project}/{source}/{batch}: no plates with load_data")
        plates = found[:2]
        log(f"no --plates: the first {len(plates)} of {len(found)} plate(s) in {batch}: {plates}")
    pm = _cpg_platemap(dl, gallery, project, source, batch, [str(p) for p in plates], log)

    def annotate(sites: pd.DataFrame) -> pd.DataFrame:  # before choosing: --wells needs it
        out, c = _cpg_annotate(sites, pm)
        for k, v in c.items():
            if k != "negcon_sites":  # counted on the chosen sites below
                report.counts[k] = report.counts.get(k, 0) + v
        return out

    sites, specs = _plates_sites(dl, gallery, project,
                                 [(source, batch, str(plate)) for plate in plates],
                                 opts, log, annotate, report)
    report.counts["negcon_sites"] = int((sites.get("Metadata_ControlType") == "negcon").sum()) \
        if "Metadata_ControlType" in sites else 0
    dl.get_many(specs)
    _finish(dl, report, sites, log)
    return report


# ----------------------------------------------------------------------------- RxRx3-core


_RXRX_KEY = re.compile(r"^(?P<exp>[^/]+)/Plate(?P<plate>[^/]+)/(?P<well>[A-Za-z]+\d+)"
                       r"_s(?P<site>\d+)_(?P<ch>\d+)$")


def _hf_listing(dl: Downloader, hf: str, rev: str, log) -> dict[str, dict]:
    """``{path: {"size", "sha256"}}`` from the Hub's tree API (LFS files carry a sha256)."""
    import json

    url = f"{hf}/api/datasets/{RXRX3_REPO}/tree/{rev}?recursive=true"
    try:
        p = dl.get(FileSpec(url=url, rel="hf_tree.json", kind="index"), label="listing ")
    except DownloadError as exc:
        log(f"no file listing from the Hub ({exc}); sizes and checksums are not verified")
        return {}
    try:
        entries = json.loads(p.read_text())
    except ValueError as exc:
        raise DownloadError(f"{p}: not JSON ({exc}); delete it and re-run") from None
    out = {}
    for e in entries:
        if e.get("type") != "file":
            continue
        lfs = e.get("lfs") or {}
        out[e["path"]] = {"size": lfs.get("size", e.get("size")), "sha256": lfs.get("oid")}
    return out


def _hf_spec(hf: str, rev: str, path: str, listing: dict, kind: str = "data") -> FileSpec:
    info = listing.get(path, {})
    return FileSpec(url=f"{hf}/datasets/{RXRX3_REPO}/resolve/{rev}/{path}", rel=path,
                    size=info.get("size"), sha256=info.get("sha256"), kind=kind)


def _rxrx3_images(shards: list[Path], out: Path, max_sites: int | None,
                  wells: set[tuple[str, str]], log) -> list[tuple[str, str]]:
    """Write the first ``max_sites`` complete 6-channel sites of the shards whose
    (Metadata_Plate, Metadata_Well) is in ``wells`` as ``out/images/`` + the release's
    layout (:data:`baselens.data.rxrx3.IMAGE_LAYOUT`, the original JPEG 2000 bytes).
    Returns the (plate, well) keys written, in shard order."""
    import pyarrow.parquet as pq

    from baselens.data.wells import normalize_well

    done: list[tuple[str, str]] = []
    partial: dict[tuple, dict[int, bytes]] = {}
    bad = not_in_meta = other_site = 0
    full = max_sites is not None
    for shard in shards:
        pf = pq.ParquetFile(shard)
        names = pf.schema_arrow.names
        if "__key__" not in names or "jp2" not in names:
            raise DownloadError(f"{shard}: expected columns __key__ and jp2, found {names}")
        for batch in pf.iter_batches(columns=["__key__", "jp2"], batch_size=256):
            for k, img in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                m = _RXRX_KEY.match(str(k))
                if not m:
                    bad += 1
                    continue
                key = (f"{m['exp']}_Plate{m['plate']}", normalize_well(m["well"]))
                if int(m["site"]) != 1:
                    other_site += 1  # RxRx3-core has one site per well; the table keys wells
                    continue
                if key not in wells:
                    not_in_meta += 1
                    continue
                sk = (m["exp"], m["plate"], key[1], 1)
                chans = partial.setdefault(sk, {})
                chans[int(m["ch"])] = img.get("bytes") if isinstance(img, dict) else img
                if len(chans) == len(RXRX3_CHANNELS):
                    _write_site(out, sk, partial.pop(sk))
                    done.append(key)
                    if full and len(done) >= max_sites:
                        break
            if full and len(done) >= max_sites:
                break
        if full and len(done) >= max_sites:
            break
    if bad:
        log(f"{bad} image key(s) not of the form <experiment>/Plate<p>/<well>_s<site>_<ch>: skipped")
    if other_site:
        log(f"{other_site} image(s) of sites other than s1 skipped (one site per well)")
    if not_in_meta:
        log(f"{not_in_meta} image(s) of wells not in the metadata table (e.g. CRISPR_control "
            "wells, which baselens.data.rxrx3 drops) skipped")
    if partial and not (full and len(done) >= max_sites):
        log(f"{len(partial)} site(s) without all 6 channels in the shard(s): not used")
    return done


def _write_site(out: Path, sk: tuple, chans: dict[int, bytes]) -> None:
    from baselens.data.rxrx3 import IMAGE_LAYOUT

    exp, plate, well, _site = sk
    for ch in range(1, len(RXRX3_CHANNELS) + 1):
        rel = IMAGE_LAYOUT.format(experiment_name=exp, plate=plate, address=well, channel=ch)
        dest = out / "images" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = chans[ch]
        if not (dest.exists() and dest.stat().st_size == len(data)):
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)


def _rxrx3_embeddings(src: Path, wells: pd.DataFrame, dest: Path, log) -> dict:
    """The shipped embeddings re-keyed by (Metadata_Plate, Metadata_Well), float32, with
    repeated ``well_id`` rows averaged (:func:`baselens.data.rxrx3.read_rxrx3_embeddings`)."""
    from baselens.data.rxrx3 import read_rxrx3_embeddings

    et = read_rxrx3_embeddings(src)
    t = et.table
    keys = wells[["Metadata_WellId", "Metadata_Batch", "Metadata_Plate", "Metadata_Well"]]
    out = keys.merge(t, on="Metadata_WellId", how="inner")
    out[et.features] = out[et.features].astype(np.float32)
    write_parquet_atomic(out, dest)
    c = {"embedding_rows": int(len(t) + getattr(et, "n_averaged", 0)),
         "embedding_wells": int(len(t)), "embedding_wells_written": int(len(out)),
         "embedding_wells_without_metadata": int(len(t) - len(out)),
         "embedding_dim": len(et.features)}
    log(f"embeddings: {c['embedding_wells_written']} well(s) × {len(et.features)} from "
        f"{c['embedding_rows']} row(s)"
        + (f"; {c['embedding_wells_without_metadata']} well(s) not in the metadata table left out"
           if c["embedding_wells_without_metadata"] else "") + f" → {dest}")
    return c


def _annotation_specs(opts: dict) -> list[FileSpec]:
    root = mirror_url(EFAAR_ANNOTATIONS_URL, opts["base_url"])
    return [FileSpec(url=f"{root}/{name}", rel=f"annotations/{name}")
            for name in (*(f"{src}.txt" for src in ANNOTATION_LICENCES), "LICENSE")]


def _annotation_notes(dl: Downloader, report: DownloadReport, specs: list[FileSpec],
                      log) -> list[str]:
    """Check each relationship table reads (``entity1,entity2``), count its pairs, and say
    under which terms each may be used."""
    from baselens.data.annotations import read_relationship_pairs

    folder = dl.out / "annotations"
    report.annotations = folder
    lic = ", ".join(f"{k} {v}" for k, v in ANNOTATION_LICENCES.items())
    notes = [f"annotations: {len(ANNOTATION_LICENCES)} relationship tables from "
             f"efaar-benchmarking in {folder}; licences: {lic}. CORUM and SIGNOR are "
             "CC-BY-NC 4.0: fetched for your local, non-commercial use — do not redistribute "
             "them (terms: annotations/LICENSE). Skip them with --no-annotations."]
    if dl.dry_run:
        return notes
    counts = {}
    for s in specs:
        if s.rel.endswith(".txt"):
            try:
                counts[PurePosixPath(s.rel).stem] = len(read_relationship_pairs(dl.path(s)))
            except (ValueError, OSError) as exc:
                raise DownloadError(f"{dl.path(s)} ({s.url}) is not a relationship table: {exc}. "
                                    "Delete it and re-run, or pass --no-annotations.") from None
    dl.manifest.data["outputs"]["annotations"] = {"path": "annotations", "pairs": counts,
                                                  "licences": dict(ANNOTATION_LICENCES)}
    report.counts["annotation_pairs"] = counts
    log("annotations: " + ", ".join(f"{k} {v:,} pairs" for k, v in counts.items()))
    return notes


def _plan_rxrx3(dl: Downloader, opts: dict, log) -> DownloadReport:
    from baselens.data.rxrx3 import RxRx3Table, read_rxrx3_metadata, rxrx3_load_data

    hf = mirror_url(HF_URL, opts["base_url"])
    rev = opts.get("revision") or "main"
    report = DownloadReport("rxrx3-core", dl.out, dry_run=dl.dry_run)
    listing = _hf_listing(dl, hf, rev, log)
    meta_path = dl.get(_hf_spec(hf, rev, RXRX3_METADATA, listing, kind="index"), label="metadata ")
    shard_names = sorted(p for p in listing if re.match(r"^data/train-\d+-of-\d+\.parquet$", p))
    n_total = len(shard_names) or RXRX3_N_SHARDS
    shards = opts.get("shards") or [0]
    bad = [i for i in shards if not 0 <= i < n_total]
    if bad:
        raise DownloadError(f"--shards {bad}: RxRx3-core has shards 0–{n_total - 1}")
    specs = [_hf_spec(hf, rev, f"data/train-{i:05d}-of-{n_total:05d}.parquet", listing)
             for i in shards]
    if opts.get("embeddings", True):
        specs.insert(0, _hf_spec(hf, rev, RXRX3_EMBEDDINGS, listing))
    ann_specs = _annotation_specs(opts) if opts.get("annotations", True) else []
    try:
        dl.get_many(ann_specs)
    except DownloadError as exc:
        raise DownloadError(f"{exc} (the relationship annotations: --no-annotations skips "
                            "them)") from None
    dl.get_many(specs)
    if ann_specs:
        report.notes += _annotation_notes(dl, report, ann_specs, log)
    if dl.dry_run:
        _finish(dl, report, pd.DataFrame(), log)
        return report
    meta = read_rxrx3_metadata(meta_path)
    wells = meta.table
    report.counts.update({f"metadata_{k}": v for k, v in meta.report.items()})
    keys = set(zip(wells["Metadata_Plate"], wells["Metadata_Well"]))
    done = _rxrx3_images([dl.path(s) for s in specs if s.rel.startswith("data/")], dl.out,
                         opts["max_sites"], keys, log)
    if not done:
        raise DownloadError("no complete 6-channel site of a well in the metadata found in "
                            f"shard(s) {shards}")
    order = pd.DataFrame(done, columns=["Metadata_Plate", "Metadata_Well"])
    chosen = order.merge(wells, on=["Metadata_Plate", "Metadata_Well"], how="left")
    ld = rxrx3_load_data(RxRx3Table(chosen, dict(meta.report)), image_root="images",
                         channels=RXRX3_CHANNELS).table
    report.counts.update({"sites": len(ld),
                          "negcon_sites": int((ld["Metadata_ControlType"] == "negcon").sum())})
    if opts.get("embeddings", True):
        src = dl.path(specs[0])
        dest = dl.out / "openphenom_embeddings.parquet"
        sha = dl.manifest.files.get(specs[0].rel, {}).get("sha256")
        prev = dl.manifest.data["outputs"].get("embeddings", {})
        if dest.exists() and sha and prev.get("source_sha256") == sha:
            log(f"embeddings: {dest} is up to date")
        else:
            c = _rxrx3_embeddings(src, wells, dest, log)
            dl.manifest.data["outputs"]["embeddings"] = {
                "path": dest.name, "source_sha256": sha, **c}
            report.counts.update(c)
        report.embeddings = dest
    _finish(dl, report, ld, log)
    if report.embeddings is not None:
        log("score the shipped OpenPhenom embeddings with:\n"
            "  [[methods]]\n  name = \"precomputed\"\n  label = \"openphenom_rxrx3\"\n"
            f"  params = {{ path = \"{report.embeddings}\", keys = \"well\", "
            "features = \"feature_\" }")
    return report


# ----------------------------------------------------------------------------- entry


def download_dataset(
    dataset: str,
    out: str | os.PathLike | None = None,
    *,
    plates: Sequence[str] | None = None,
    source: str | None = None,
    batch: str | None = None,
    max_sites: int | None = 64,
    sites_per_well: int | None = None,
    wells: str = "all",
    channels: Sequence[str] | None = None,
    shards: Sequence[int] | None = None,
    embeddings: bool = True,
    annotations: bool = True,
    moa: bool = False,
    moa_table: str | os.PathLike | None = None,
    base_url: str | None = None,
    revision: str | None = None,
    dry_run: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> DownloadReport:
    """Fetch a dataset into ``out`` (default ``data/<dataset>``); see the module docstring.

    ``wells`` (jump-cp, cpg*): ``"all"`` or ``"controls"`` (only wells whose
    ``Metadata_ControlType`` is ``negcon`` / ``poscon``). Sites are chosen in the plate's
    table order: the well filter, then at most ``sites_per_well`` per well, then the first
    ``max_sites`` — per plate (jump-cp, cpg*) or in all (rxrx3-core); ``None`` takes every
    site. ``annotations`` (rxrx3-core): fetch the relationship tables into
    ``out/annotations/``. ``moa`` (jump-cp): write ``out/compound_moa.csv`` from the Drug
    Repurposing Hub, or from ``moa_table`` (a path or an http(s) URL; implies ``moa``).
    ``base_url`` (else ``$BASELENS_MIRROR``) is a mirror in the ``<mirror>/<host>/<path>``
    layout. ``dry_run`` fetches only the index files a plan must read (metadata tables,
    load_data, the Hub listing) and prints the rest with sizes.
    """
    if dataset not in ("jump-cp", "rxrx3-core") and not _CPG.match(dataset):
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: "
                         + "; ".join(f"{k} ({v})" for k, v in DATASETS.items()))
    if wells not in WELL_CHOICES:
        raise ValueError(f"wells must be one of {WELL_CHOICES}, got {wells!r}")
    if wells != "all" and dataset == "rxrx3-core":
        raise ValueError("--wells controls is for jump-cp and cpg* plates (rxrx3-core has one "
                         "site per well; its controls are the EMPTY_control wells)")
    moa = bool(moa or moa_table)
    if moa and dataset != "jump-cp":
        raise ValueError(f"--moa / --moa-table label JUMP compounds: use them with jump-cp, "
                         f"not {dataset}")
    base = base_url if base_url is not None else os.environ.get("BASELENS_MIRROR", "")
    out = Path(out) if out is not None else Path("data") / dataset
    if max_sites is not None and max_sites < 1:
        raise ValueError(f"max_sites must be ≥ 1 or None (all), got {max_sites}")
    if sites_per_well is not None and sites_per_well < 1:
        raise ValueError(f"sites_per_well must be ≥ 1 or None, got {sites_per_well}")
    dl = Downloader(out, dataset=dataset, base_url=base, retries=retries, backoff=backoff,
                    timeout=timeout, dry_run=dry_run, log=log)
    opts = {"plates": list(plates) if plates else None, "source": source, "batch": batch,
            "max_sites": max_sites, "sites_per_well": sites_per_well, "wells": wells,
            "channels": list(channels) if channels else None,
            "shards": list(shards) if shards else None, "embeddings": embeddings,
            "annotations": annotations, "moa": moa,
            "moa_table": str(moa_table) if moa_table else None,
            "base_url": base, "revision": revision}
    dl.manifest.data.setdefault("runs", []).append(
        {k: v for k, v in opts.items() if k != "base_url"} | {"dry_run": dry_run})
    try:
        if dataset == "jump-cp":
            return _plan_jump(dl, opts, log)
        if dataset == "rxrx3-core":
            return _plan_rxrx3(dl, opts, log)
        if dataset.startswith("cpg0016"):
            log("cpg0016: use `baselens download jump-cp` to get the JUMP metadata joined")
        return _plan_cpg(dl, dataset, opts, log)
    finally:
        dl.manifest.save()
