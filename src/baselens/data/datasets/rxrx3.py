"""``rxrx3-core`` — Recursion's RxRx3-core on Hugging Face (``recursionpharma/rxrx3-core``):
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
"""

from __future__ import annotations


import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from baselens._io import write_parquet_atomic
from baselens.data.download import (
    DownloadError,
    Downloader,
    FileSpec,
    mirror_url,
)
from baselens.data.rxrx3 import RXRX3_CHANNELS
from baselens.data.datasets.common import DownloadReport, _finish

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
