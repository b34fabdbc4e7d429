"""MoA labels for JUMP compounds (``--moa`` / ``--moa-table``): the Drug Repurposing Hub's
release joined on InChIKey, or a table keyed by JCP2022 id (details in :mod:`.jump`, step 6).
"""

from __future__ import annotations


import os
import re
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Sequence

import pandas as pd

from baselens.data.download import (
    DownloadError,
    Downloader,
    FileSpec,
    mirror_url,
)
from baselens.data.datasets.common import DownloadReport

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
