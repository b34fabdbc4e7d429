"""What every plan shares: the Cell Painting Gallery bucket (S3 listing over HTTPS, bucket
keys of load_data rows), load_data tables per plate, site selection, the final
``load_data.parquet`` and :class:`DownloadReport`.
"""

from __future__ import annotations


import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import pandas as pd

from baselens._io import write_parquet_atomic
from baselens.data import JUMP_CHANNELS
from baselens.data.download import DownloadError, Downloader, FileSpec
from baselens.data.wells import parse_well

GALLERY_BUCKET = "cellpainting-gallery"
GALLERY_URL = "https://cellpainting-gallery.s3.amazonaws.com"


#: ``--wells``: every well, or only the control wells (Metadata_ControlType negcon / poscon)
WELL_CHOICES: tuple[str, ...] = ("all", "controls")
CONTROL_TYPES: tuple[str, ...] = ("negcon", "poscon")

LOAD_DATA_NAMES = ("load_data_with_illum.parquet", "load_data_with_illum.csv",
                   "load_data.parquet", "load_data.csv")


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
