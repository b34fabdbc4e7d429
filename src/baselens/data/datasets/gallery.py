"""``cpgNNNN-<name>`` — any Cell Painting Gallery project folder (e.g. ``cpg0000-jump-pilot``)
by ``--source``, ``--batch`` and ``--plates`` (missing batch / plates are listed from
the bucket). Same steps 3–4 as jump-cp (``--wells controls`` included); metadata from
the project's platemaps
(``workspace/metadata/platemaps/<batch>/barcode_platemap.csv`` + ``platemap/<name>.txt``)
when present: ``Metadata_Perturbation`` is ``broad_sample`` (the solvent, e.g. DMSO, in
wells without one, which are then ``negcon``); otherwise no perturbation metadata.
"""

from __future__ import annotations



import numpy as np
import pandas as pd

from baselens.data.download import DownloadError, Downloader, mirror_url
from baselens.data.datasets.common import (
    DownloadReport,
    GALLERY_URL,
    _fetch_first,
    _finish,
    _gallery_spec,
    _plates_sites,
    _read_table,
    _s3_list,
)

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
