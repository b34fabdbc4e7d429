"""Download plans for public Cell Painting datasets (``baselens download DATASET``).

Each plan fetches through :class:`baselens.data.download.Downloader` (resume, retries,
checksums, ``DIR/manifest.json``) and writes ``DIR/load_data.parquet``: a load_data table
that :func:`baselens.data.load_data.read_load_data` reads, with ``PathName_*`` relative to
``DIR`` and the ``Metadata_*`` keys baselens expects.

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
    4. the first ``--max-sites`` sites *per plate* (optionally at most
       ``--sites-per-well`` per well), their per-channel TIFFs and the plate's
       illumination functions ``<plate>_Illum<Ch>.npy``, stored under
       ``DIR/cellpainting-gallery/<bucket key>``; S3 ETags that are plain MD5s are checked;
    5. ``DIR/load_data.parquet``. Sites are annotated *before* they are chosen, with
       :func:`baselens.data.jump.annotate_jump` on (source, plate, well): ``Metadata_JCP2022``,
       ``Metadata_Perturbation`` (the JCP2022 id for compounds, the gene symbol for
       ORF/CRISPR), ``Metadata_PerturbationType``, ``Metadata_ControlType`` (``negcon`` /
       ``poscon`` from perturbation_control.csv, the canonical control list; ``""``
       otherwise), ``Metadata_PlateType``; empty wells (JCP2022_999999) are dropped and
       counted, wells without metadata kept and counted.

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
    are ``negcon``, compounds are ``<name>@<concentration>``.

``cpgNNNN-<name>`` — any Cell Painting Gallery project folder (e.g. ``cpg0000-jump-pilot``)
    by ``--source``, ``--batch`` and ``--plates`` (missing batch / plates are listed from
    the bucket). Same steps 3–4 as jump-cp; metadata from the project's platemaps
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

__all__ = [
    "DATASETS",
    "DEFAULT_JUMP_PLATES",
    "DownloadReport",
    "download_dataset",
    "GALLERY_URL",
    "JUMP_METADATA_URL",
    "HF_URL",
    "RXRX3_CHANNELS",
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


# ----------------------------------------------------------------------------- common


def _well_row_col(well: str) -> tuple[int, int]:
    """``"B07"`` → (2, 7); ``"AC02"`` → (29, 2) (rows A–Z then AA–AF for 1536 wells)."""
    m = re.match(r"^([A-Za-z]+)0*(\d+)$", str(well).strip())
    if not m:
        return (-1, -1)
    letters, col = m.group(1).upper(), int(m.group(2))
    row = 0
    for ch in letters:
        row = row * 26 + (ord(ch) - 64)
    return row, col


def _add_row_col(df: pd.DataFrame) -> pd.DataFrame:
    rc = [_well_row_col(w) for w in df["Metadata_Well"].astype(str)]
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
                  sites_per_well: int | None) -> pd.DataFrame:
    """First sites in table order; at most ``sites_per_well`` per well first."""
    t = table
    if sites_per_well is not None:
        t = t[t.groupby("Metadata_Well", sort=False).cumcount() < sites_per_well]
    if max_sites is not None:
        t = t.head(max_sites)
    return t.reset_index(drop=True)


def _plate_sites(dl: Downloader, gallery: str, project: str, source: str, batch: str,
                 plate: str, *, max_sites, sites_per_well, channels, log,
                 annotate: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                 ) -> tuple[pd.DataFrame, list[FileSpec], dict]:
    """Fetch one plate's load_data, annotate every site (``annotate`` may drop some, e.g.
    empty wells), choose sites; return (local site table, file specs, counts)."""
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
    chosen = _select_sites(sites, max_sites, sites_per_well)
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
              "sites_selected": len(chosen), "channels": chans, "illum": has_illum,
              "load_data": spec.rel}
    dropped = [c for c in available if c not in chans]
    log(f"plate {plate}: {len(chosen)} of {n_all} site(s)"
        + (f" ({n_all - len(sites)} dropped by the metadata join)" if len(sites) != n_all else "")
        + f", channels {chans}" + (f" (not fetched: {dropped})" if dropped else "")
        + ("" if has_illum else "; no illumination functions in this table"))
    return local, specs, counts


def _finish(dl: Downloader, report: DownloadReport, sites: pd.DataFrame, log) -> None:
    if dl.dry_run:
        report.text = dl.dry_run_report()
        log(report.text)
        return
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
    report.text = dl.summary() + f"\nload_data: {report.load_data} ({len(sites)} site(s))"
    log(report.text)


# ----------------------------------------------------------------------------- JUMP


def _jump_annotator(meta_dir: Path, report: DownloadReport, log):
    """``annotate(sites)`` with :func:`baselens.data.jump.annotate_jump` (wells without
    metadata kept and counted; empty wells, JCP2022_999999, dropped and counted)."""
    from baselens.data.jump import annotate_jump, read_jump_metadata

    meta = read_jump_metadata(meta_dir)

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
    gallery = mirror_url(GALLERY_URL, opts["base_url"])
    meta_root = mirror_url(JUMP_METADATA_URL.format(rev=opts.get("revision") or "main"),
                           opts["base_url"])
    report = DownloadReport("jump-cp", dl.out, dry_run=dl.dry_run)
    for name in JUMP_METADATA_FILES:
        dl.get(FileSpec(url=f"{meta_root}/{name}", rel=f"metadata/{name}", kind="index"),
               label="metadata ")
    meta = dl.out / "metadata"
    plate_tab = pd.read_csv(meta / "plate.csv.gz", dtype=str, keep_default_na=False)
    plates = _jump_plates(plate_tab, opts.get("plates"), opts.get("source"), log)
    annotate = _jump_annotator(meta, report, log)
    frames, specs = [], []
    for _, p in plates.iterrows():
        df, sp, c = _plate_sites(dl, gallery, "cpg0016-jump", p["Metadata_Source"],
                                 p["Metadata_Batch"], p["Metadata_Plate"],
                                 max_sites=opts["max_sites"],
                                 sites_per_well=opts.get("sites_per_well"),
                                 channels=opts.get("channels"), log=log, annotate=annotate)
        frames.append(df)
        specs += sp
        report.counts.setdefault("plates", []).append(c)
    sites = pd.concat(frames, ignore_index=True)
    dl.get_many(specs)
    _finish(dl, report, sites, log)
    return report


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
    frames, specs = [], []
    for plate in plates:
        df, sp, c = _plate_sites(dl, gallery, project, source, batch, str(plate),
                                 max_sites=opts["max_sites"],
                                 sites_per_well=opts.get("sites_per_well"),
                                 channels=opts.get("channels"), log=log)
        frames.append(df)
        specs += sp
        report.counts.setdefault("plates", []).append(c)
    sites = pd.concat(frames, ignore_index=True)
    pm = _cpg_platemap(dl, gallery, project, source, batch, [str(p) for p in plates], log)
    dl.get_many(specs)
    if not dl.dry_run:
        sites, c = _cpg_annotate(sites, pm)
        report.counts.update(c)
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

    from baselens.data.microscopy import normalize_well

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
    dl.get_many(specs)
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
    channels: Sequence[str] | None = None,
    shards: Sequence[int] | None = None,
    embeddings: bool = True,
    base_url: str | None = None,
    revision: str | None = None,
    dry_run: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> DownloadReport:
    """Fetch a dataset into ``out`` (default ``data/<dataset>``); see the module docstring.

    ``max_sites`` counts sites per plate (jump-cp, cpg*) or in all (rxrx3-core); ``None``
    fetches every site. ``base_url`` (else ``$BASELENS_MIRROR``) is a mirror in the
    ``<mirror>/<host>/<path>`` layout. ``dry_run`` fetches only the index files a plan
    must read (metadata tables, load_data, the Hub listing) and prints the rest with sizes.
    """
    if dataset not in ("jump-cp", "rxrx3-core") and not _CPG.match(dataset):
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: "
                         + "; ".join(f"{k} ({v})" for k, v in DATASETS.items()))
    base = base_url if base_url is not None else os.environ.get("BASELENS_MIRROR", "")
    out = Path(out) if out is not None else Path("data") / dataset
    if max_sites is not None and max_sites < 1:
        raise ValueError(f"max_sites must be ≥ 1 or None (all), got {max_sites}")
    dl = Downloader(out, dataset=dataset, base_url=base, retries=retries, backoff=backoff,
                    timeout=timeout, dry_run=dry_run, log=log)
    dl.manifest.data.setdefault("runs", []).append({
        "plates": list(plates) if plates else None, "source": source, "batch": batch,
        "max_sites": max_sites, "sites_per_well": sites_per_well,
        "channels": list(channels) if channels else None,
        "shards": list(shards) if shards else None, "dry_run": dry_run})
    opts = {"plates": list(plates) if plates else None, "source": source, "batch": batch,
            "max_sites": max_sites, "sites_per_well": sites_per_well,
            "channels": list(channels) if channels else None,
            "shards": list(shards) if shards else None, "embeddings": embeddings,
            "base_url": base, "revision": revision}
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
