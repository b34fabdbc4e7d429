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

One module per data set: :mod:`.jump` (``jump-cp``, with :mod:`.moa` for ``--moa``),
:mod:`.rxrx3` (``rxrx3-core``), :mod:`.gallery` (``cpgNNNN-<name>``); :mod:`.common` holds
the S3 listing, site selection and :class:`DownloadReport`.

Mirrors and tests: ``base_url`` (``--base-url`` / ``BASELENS_MIRROR``) maps every URL
``https://HOST/PATH`` to ``BASE/HOST/PATH`` (:func:`baselens.data.download.mirror_url`).
"""

from __future__ import annotations


import os
import re
from pathlib import Path
from typing import Callable, Sequence


from baselens.data.download import DownloadError, Downloader
from baselens.data.rxrx3 import RXRX3_CHANNELS
from baselens.data.datasets.common import GALLERY_URL, WELL_CHOICES, DownloadReport
from baselens.data.datasets.gallery import _plan_cpg
from baselens.data.datasets.jump import DEFAULT_JUMP_PLATES, JUMP_METADATA_URL, _plan_jump
from baselens.data.datasets.moa import (
    REPURPOSING_HUB_FILES,
    REPURPOSING_HUB_URL,
    jump_compound_moa,
    repurposing_hub_moa,
)
from baselens.data.datasets.rxrx3 import (
    ANNOTATION_LICENCES,
    EFAAR_ANNOTATIONS_URL,
    HF_URL,
    _plan_rxrx3,
)

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

DATASETS = {
    "jump-cp": "JUMP Cell Painting (cpg0016-jump) images + JUMP metadata",
    "rxrx3-core": "RxRx3-core (Hugging Face recursionpharma/rxrx3-core): metadata, "
                  "OpenPhenom embeddings, images",
    "cpgNNNN-<name>": "any Cell Painting Gallery project by --source/--batch/--plates, "
                      "e.g. cpg0000-jump-pilot",
}

_CPG = re.compile(r"^cpg\d{4}(-[A-Za-z0-9_.-]+)?$")


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
    """Fetch a dataset into ``out``; each plan is described in its module
    (:mod:`.jump`, :mod:`.rxrx3`, :mod:`.gallery`).

    Parameters
    ----------
    dataset : str
        ``jump-cp``, ``rxrx3-core`` or a Cell Painting Gallery project ``cpgNNNN-<name>``.
    out : path, optional
        Target folder (default ``data/<dataset>``).
    plates, source, batch : optional
        Which plates (jump-cp, cpg*); missing batch / plates are listed from the bucket.
    max_sites : int or None
        At most this many sites per plate (jump-cp, cpg*) or in all (rxrx3-core); ``None``
        takes every site.
    sites_per_well : int or None
        At most this many sites per well.
    wells : {"all", "controls"}
        jump-cp, cpg*: every well, or only wells whose ``Metadata_ControlType`` is
        ``negcon`` / ``poscon``. Sites are chosen in the plate's table order: the well
        filter, then ``sites_per_well``, then ``max_sites``.
    channels : sequence of str, optional
        jump-cp, cpg*: channels to fetch (default: the five Cell Painting channels the
        load_data table has, else all of its channels).
    shards : sequence of int, optional
        rxrx3-core image shards (default ``[0]``).
    embeddings, annotations : bool
        rxrx3-core: fetch the OpenPhenom embeddings; the relationship tables into
        ``out/annotations/``.
    moa : bool
        jump-cp: write ``out/compound_moa.csv`` from the Drug Repurposing Hub.
    moa_table : path or URL, optional
        jump-cp: a MoA table to use instead of the Hub (implies ``moa``).
    base_url : str, optional
        Mirror in the ``<mirror>/<host>/<path>`` layout (else ``$BASELENS_MIRROR``).
    revision : str, optional
        Git revision of the JUMP metadata repository / the Hugging Face dataset (default
        ``main``).
    dry_run : bool
        Fetch only the index files a plan must read (metadata tables, load_data, the Hub
        listing) and print the rest with sizes.
    retries, backoff, timeout : optional
        :class:`baselens.data.download.Downloader` settings.
    log : callable
        Receives progress lines.

    Returns
    -------
    DownloadReport
        Paths written, counts and the printed summary.
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
