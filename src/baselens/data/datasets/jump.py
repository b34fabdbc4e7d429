"""``jump-cp`` — JUMP Cell Painting, ``cpg0016-jump`` in the Cell Painting Gallery
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
"""

from __future__ import annotations



import pandas as pd

from baselens.data.download import (
    DownloadError,
    Downloader,
    FileSpec,
    mirror_url,
)
from baselens.data.datasets.common import DownloadReport, GALLERY_URL, _finish, _plates_sites
from baselens.data.datasets.moa import _moa_plan, _write_compound_moa

JUMP_METADATA_URL = "https://github.com/jump-cellpainting/datasets/raw/{rev}/metadata"
JUMP_METADATA_FILES = ("plate.csv.gz", "well.csv.gz", "perturbation_control.csv",
                       "compound.csv.gz", "orf.csv.gz", "crispr.csv.gz")


#: two TARGET2 replicate plates of source_4 (2021_08_23_Batch12): 302 annotated
#: compounds plus DMSO and positive controls on each
DEFAULT_JUMP_PLATES: tuple[str, ...] = ("BR00126114", "BR00126115")


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
