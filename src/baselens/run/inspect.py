"""``baselens inspect PATH``: what baselens sees in a file or folder, before a run.

:func:`inspect_path` detects the kind of input and reports it:

* **load_data table** (``FileName_Orig*`` columns; CSV / Parquet): sites, plates, wells,
  channels found and, per site, files missing on disk (or remote), illumination files;
* **image folder** (per-channel TIFFs, :func:`baselens.data.microscopy.images_to_load_data`):
  the same, plus the pattern matched and sites missing a channel;
* **profile table** (``Metadata_*`` + numeric features; pycytominer / JUMP): rows,
  feature columns, NaN / constant features and which ones per-plate normalization drops;
* **embeddings file** (``.npy`` + metadata, ``.h5ad``, or a table of keys + numbers):
  keys, dimension, duplicates;
* **RxRx3-core metadata** (``metadata_rxrx3_core.csv``).

For every screen it reports the metadata columns, negative controls per plate (plates
without any flagged), replicate counts (single-well perturbations flagged), the batch
levels that can be formed, and what a run would do with it.

Bad input gets the error a run would give: errors raised by the readers a run uses are
raised unchanged; problems a run would hit later (a missing image, a missing
``Metadata_Perturbation`` column, a plate without negative controls) are collected in
:attr:`InspectReport.problems` as the exception a run raises (same class, same message)
— ``baselens inspect`` prints the report and then the first of them, and exits with 2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from baselens.data.load_data import ImageReadError, LoadData, read_load_data

__all__ = ["InspectReport", "detect_kind", "inspect_path", "build_run_inputs",
           "run_data_problems", "preflight", "image_header_problems"]

KINDS = ("load_data", "image_folder", "profiles", "embeddings", "rxrx3_metadata",
         "image", "platemap", "annotations", "metadata")

#: Single image files inspect describes (one site or one channel of one site).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".nd2", ".czi")

#: Columns holding a dose, looked for in this order.
DOSE_COLUMNS = ("Metadata_Concentration", "Metadata_mmoles_per_liter", "Metadata_dose",
                "Metadata_Dose", "Metadata_concentration", "Metadata_mg_per_ml")


@dataclass
class InspectReport:
    """What :func:`inspect_path` found: ``sections`` of text lines, ``info`` (numbers),
    ``problems`` (exceptions a run would raise), ``actions`` (what a run would do)."""

    kind: str
    path: Path
    info: dict = field(default_factory=dict)
    sections: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Exception] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def add(self, section: str, line: str) -> None:
        self.sections.setdefault(section, []).append(line)

    def text(self) -> str:
        out = [f"{self.path}: {self.kind.replace('_', ' ')}"]
        for name, lines in self.sections.items():
            out.append(f"\n{name}")
            out += [f"  {ln}" for ln in lines]
        if self.actions:
            out.append("\nwhat baselens would do")
            out += [f"  - {a}" for a in self.actions]
        if self.problems:
            out.append(f"\nproblems a run would stop at ({len(self.problems)})")
            out += [f"  ! {type(p).__name__}: {p}" for p in self.problems]
        else:
            out.append("\nno problem found")
        return "\n".join(out)

    def raise_first(self) -> None:
        if self.problems:
            raise self.problems[0]


# --------------------------------------------------------------------------- detection
def _columns(path: Path) -> list[str]:
    n = path.name.lower()
    if n.endswith(".txt"):  # relationship tables (CORUM.txt …) are comma-separated
        first = path.open(errors="replace").readline()
        return list(pd.read_csv(path, nrows=0, sep="\t" if "\t" in first else ",").columns)
    if n.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if n.endswith((".csv", ".csv.gz")):
        return list(pd.read_csv(path, nrows=0).columns)
    if n.endswith((".tsv", ".tsv.gz", ".txt")):
        return list(pd.read_csv(path, sep="\t", nrows=0).columns)
    raise ValueError(f"{path}: cannot inspect this kind of file (load_data / profile tables are "
                     ".csv, .csv.gz, .tsv or .parquet; embeddings also .npy or .h5ad)")


def detect_kind(path: str | os.PathLike) -> str:
    """One of :data:`KINDS` (raises FileNotFoundError / ValueError with the reason)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    if p.is_dir():
        if p.name.lower().endswith(".zarr"):
            raise ValueError(f"{p}: an OME-Zarr image; read it with "
                             "baselens.data.microscopy.read_microscopy (needs bioio-ome-zarr)")
        return "image_folder"
    if p.suffix.lower() in (".npy", ".h5ad"):
        return "embeddings"
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    cols = _columns(p)
    other = _other_table_kind(p, cols)
    if other is not None:
        return other
    from baselens.data.rxrx3 import is_rxrx3_metadata

    if any(re.match(r"^(Image_)?FileName_Orig", c) for c in cols):
        return "load_data"
    if is_rxrx3_metadata(cols):
        return "rxrx3_metadata"
    meta = [c for c in cols if c.startswith("Metadata_")]
    key_like = {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Source",
                "Metadata_Batch"}
    if any(c not in key_like for c in meta) and any(c in cols for c in
                                                    ("Metadata_Plate", "Metadata_Well")):
        return "profiles"
    return "embeddings"


# --------------------------------------------------------------------------- shared checks
def run_data_problems(table: pd.DataFrame) -> list[Exception]:
    """The errors the pipeline's data stage raises for a site table, in its words."""
    out: list[Exception] = []
    for col in ("Metadata_Perturbation", "Metadata_ControlType"):
        if col not in table.columns:
            out.append(ValueError(
                f"the load_data table needs a {col} column to score perturbations "
                "(join your platemap first; 'negcon' in Metadata_ControlType marks negative "
                "controls): for an image folder, `baselens load-data IMAGES --platemap "
                "platemap.csv --negcon DMSO`; for a JUMP / Cell Painting Gallery load_data, "
                "the JUMP metadata join (`baselens download jump-cp` writes it joined; "
                "Python: baselens.data.jump.annotate_jump)"))
    return out


def _normalize_problem(wells: pd.DataFrame) -> Exception | None:
    """The error per-plate normalization to negative controls raises (the run's default
    profile), obtained by running it on a stand-in feature."""
    from baselens.profile.normalize import normalize

    if "Metadata_ControlType" not in wells.columns:
        return None
    df = wells[["Metadata_Plate", "Metadata_ControlType"]].copy()
    df["__f"] = np.arange(len(df), dtype=float)
    try:
        normalize(df, features=["__f"])
    except ValueError as exc:
        return exc
    return None


def _knn_skip(wells: pd.DataFrame, min_per_label: int = 2) -> str | None:
    """Why a run would skip the default kNN probe (``run.tasks`` applies the same rule):
    the label is Metadata_moa when present, else Metadata_Perturbation; controls excluded."""
    label = "Metadata_moa" if "Metadata_moa" in wells.columns else "Metadata_Perturbation"
    if label not in wells.columns:
        return None
    df = wells
    keep = df[label].notna() & ~df[label].astype(str).isin(["", "nan", "None"])
    if "Metadata_ControlType" in df.columns:
        keep &= ~df["Metadata_ControlType"].astype(str).isin(["negcon", "poscon"])
    counts = df.loc[keep, label].astype(str).value_counts()
    n = int((counts >= min_per_label).sum())
    if n >= 2:
        return None
    return (f"the kNN probe will be skipped: it needs ≥ 2 labels in {label!r} with "
            f"≥ {min_per_label} wells; found {n}")


#: Negative-control wells the batch-mixing task needs (it measures batch signal on them;
#: :func:`baselens.evaluate.batch_mixing.batch_mixing` raises below this).
MIN_NEGCON_BATCH_MIXING = 4

#: How to score a screen without (enough) negative controls, per interface.
REFERENCE_ALL_FIX = ("to normalize each plate to all its wells instead: `baselens run CONFIG "
                     "--reference all` (config: [profile] reference = \"all\"; Python: "
                     "Benchmark(..., reference=\"all\"))")


def preflight(sites: pd.DataFrame, *, tasks: Sequence[str] = ("batch_mixing", "knn_probe"),
              reference: str = "negcon") -> tuple[list[Exception], dict[str, str]]:
    """The feasibility checks a run makes before it extracts anything (``inspect`` makes
    the same): ``(errors, skips)``.

    Parameters
    ----------
    sites : DataFrame
        The screen's sites or wells (``Metadata_*`` columns of the load_data table).
    tasks : sequence of str
        The tasks the run would score.
    reference : {"negcon", "all"}
        What per-plate normalization is fitted on (``[profile] reference``); ``None`` when
        the profile uses explicit ``steps`` (not checked here).

    Returns
    -------
    errors : list of Exception
        What would stop the run (missing perturbation / control columns; a plate without
        the negative controls its normalization needs), each naming the fix.
    skips : dict
        ``{task: reason}`` for tasks that lack their input (batch mixing with fewer than
        :data:`MIN_NEGCON_BATCH_MIXING` negative-control wells; the kNN probe without 2
        labels of 2 wells): the run skips them and records the reason in run.json.
    """
    errors = run_data_problems(sites)
    if errors:
        return errors, {}
    keys = [c for c in ("Metadata_Plate", "Metadata_Well") if c in sites.columns]
    wells = sites.drop_duplicates(keys) if len(keys) == 2 else sites
    if reference == "negcon":
        prob = _normalize_problem(wells)
        if prob is not None:
            errors.append(ValueError(f"{prob}; {REFERENCE_ALL_FIX}"))
    skips: dict[str, str] = {}
    ct = wells["Metadata_ControlType"].fillna("").astype(str)
    n_neg = int((ct == "negcon").sum())
    if "batch_mixing" in tasks and n_neg < MIN_NEGCON_BATCH_MIXING:
        skips["batch_mixing"] = (f"batch mixing needs ≥ {MIN_NEGCON_BATCH_MIXING} "
                                 f"negative-control wells (it measures batch signal on them); "
                                 f"the screen has {n_neg}")
    if "knn_probe" in tasks:
        why = _knn_skip(wells)
        if why is not None:
            skips["knn_probe"] = why.replace("the kNN probe will be skipped: it needs",
                                             "the kNN probe needs")
    return errors, skips


def _preflight_section(rep: InspectReport, wells: pd.DataFrame) -> None:
    """inspect's view of :func:`preflight` (the default tasks and profile; the
    normalization and kNN checks are already in :func:`_screen_sections`)."""
    _, skips = preflight(wells, tasks=("batch_mixing",), reference=None)
    for task, why in skips.items():
        rep.add("tasks", f"FLAG: a run skips {task}: {why}")
        rep.info.setdefault("skipped_tasks", {})[task] = why


def _screen_sections(rep: InspectReport, sites: pd.DataFrame, *, unit: str = "site") -> pd.DataFrame:
    """Plates, wells, metadata, controls, replicates, batch levels; returns the wells."""
    meta_cols = [c for c in sites.columns if str(c).startswith("Metadata_")]
    has_site = "Metadata_Site" in sites.columns and unit == "site"
    wkeys = ["Metadata_Plate", "Metadata_Well"]
    n_plates = sites["Metadata_Plate"].nunique()
    wells = sites.drop_duplicates(wkeys)
    rep.info.update({"rows": len(sites), "plates": int(n_plates), "wells": len(wells)})
    line = f"{len(sites)} {unit}s, {n_plates} plate(s), {len(wells)} wells"
    if has_site:
        per_well = sites.groupby(wkeys, observed=True).size()
        line += (f", {per_well.min()} site(s) per well" if per_well.min() == per_well.max()
                 else f", {per_well.min()}–{per_well.max()} sites per well")
    for col, word in (("Metadata_Source", "source(s)"), ("Metadata_Batch", "batch(es)")):
        if col in sites.columns and not sites[col].astype(str).isin(["unknown"]).all():
            line += f", {sites[col].nunique()} {word}"
    rep.add("screen", line)
    plates = sites["Metadata_Plate"].astype(str).value_counts().sort_index()
    rep.add("screen", "per plate: " + ", ".join(f"{p} ({n})" for p, n in list(plates.items())[:8])
            + (f", … ({len(plates)} plates)" if len(plates) > 8 else ""))
    rep.add("metadata columns", ", ".join(meta_cols) if meta_cols else "none")
    for exc in run_data_problems(sites):
        rep.problems.append(exc)
    if "Metadata_ControlType" in wells.columns:
        ct = wells["Metadata_ControlType"].fillna("").astype(str)
        neg = wells.assign(_neg=(ct == "negcon")).groupby("Metadata_Plate", observed=True)["_neg"].sum()
        rep.info["negcon_wells"] = int(neg.sum())
        rep.info["poscon_wells"] = int((ct == "poscon").sum())
        rep.add("controls", f"{int(neg.sum())} negative-control wells, {int((ct == 'poscon').sum())} "
                            f"positive-control wells, {int((ct == '').sum())} treated wells")
        rep.add("controls", "negcon wells per plate: " + ", ".join(
            f"{p} {int(n)}" for p, n in list(neg.items())[:8]) + (" …" if len(neg) > 8 else ""))
        lacking = [str(p) for p, n in neg.items() if n < 2]
        rep.info["plates_without_negcon"] = lacking
        if lacking:
            rep.add("controls", f"FLAG: {len(lacking)} plate(s) with fewer than 2 negative-control "
                                f"wells: {lacking[:5]}")
        other = sorted(set(ct) - {"", "negcon", "poscon"})
        if other:
            rep.add("controls", f"FLAG: unknown Metadata_ControlType values {other[:5]} "
                                "(treated as perturbations)")
        prob = _normalize_problem(wells)
        if prob is not None:  # in the words the run stops with (preflight)
            rep.problems.append(ValueError(f"{prob}; {REFERENCE_ALL_FIX}"))
        skip = _knn_skip(wells)
        if skip is not None:
            rep.add("tasks", f"FLAG: {skip}")
        _preflight_section(rep, wells)
    if "Metadata_Perturbation" in wells.columns:
        trt = wells if "Metadata_ControlType" not in wells.columns else \
            wells[wells["Metadata_ControlType"].fillna("").astype(str) != "negcon"]
        reps = trt.groupby("Metadata_Perturbation", observed=True).size()
        single = reps[reps < 2]
        rep.info.update({"perturbations": int(len(reps)), "single_replicate": int(len(single)),
                         "scorable": int((reps >= 2).sum())})
        if len(reps):
            rep.add("replicates", f"{len(reps)} perturbations (controls excluded); wells per "
                                  f"perturbation: median {reps.median():g}, min {reps.min()}, max {reps.max()}")
        if len(single):
            rep.add("replicates", f"FLAG: {len(single)} perturbation(s) in a single well (no replicate "
                                  f"to retrieve), e.g. {single.index[:5].tolist()}")
        multi = trt[trt["Metadata_Perturbation"].map(reps).fillna(0).to_numpy() >= 2]
        if len(multi):
            pos = multi.groupby("Metadata_Perturbation", observed=True)["Metadata_Well"].nunique()
            same = int((pos == 1).sum())
            rep.info["same_position_replicates"] = same
            if same:
                rep.add("replicates", f"FLAG: {same} of {len(pos)} replicated perturbation(s) sit at "
                                      "one well position on every plate: plate position alone "
                                      "retrieves their replicates (compare with plate_layout; the "
                                      "NSL level removes same-position pairs)")
        dose = next((c for c in DOSE_COLUMNS if c in trt.columns), None)
        if dose is not None and len(trt):
            n_dose = trt.groupby("Metadata_Perturbation", observed=True)[dose].nunique()
            multi = n_dose[n_dose > 1]
            rep.info["multi_dose_perturbations"] = int(len(multi))
            if len(multi):
                rep.add("replicates", f"FLAG: {len(multi)} perturbation(s) span several {dose} "
                                      f"values (up to {int(multi.max())}): their 'replicates' pool "
                                      "doses; name perturbation and dose together to score one dose "
                                      "at a time")
        for col, what in (("Metadata_moa", "MoA"), ("Metadata_target", "target")):
            if col in wells.columns:
                n = wells[col].replace("", np.nan).dropna().nunique()
                rep.add("replicates", f"{what} annotation ({col}): {n} distinct values")
    try:
        from baselens.evaluate.batch_levels import levels_available

        lv = levels_available(wells)
        ok = lv[lv["available"]]["batch_level"].tolist()
        rep.add("batch levels", "formable: " + (", ".join(ok) if ok else "none"))
        no = lv[~lv["available"]]
        if len(no):
            rep.add("batch levels", "not formable: " + "; ".join(
                f"{r.batch_level} ({r.reason})" for r in no.itertuples()))
    except Exception as exc:  # pragma: no cover - informative only
        rep.add("batch levels", f"could not be determined: {exc}")
    return wells


def _score_actions(rep: InspectReport) -> None:
    i = rep.info
    if "scorable" in i:
        rep.actions.append(
            f"score replicate retrieval for {i['scorable']} perturbation(s) with ≥ 2 wells"
            + (f"; {i['single_replicate']} single-well perturbation(s) have no positive and are "
               "not queries" if i.get("single_replicate") else ""))
    if i.get("negcon_wells"):
        rep.actions.append("normalize each plate to its negative-control wells (standardize; "
                           "profile.reference = \"all\" normalizes to all wells instead)")


# --------------------------------------------------------------------------- load_data
def _site_paths(ld: LoadData, ch: str, kind: str = "Orig") -> tuple[list[Path | None], list[str]]:
    """Resolved paths of ``channel`` for every site (None where empty), and remote ones."""
    t = ld.table
    fcol, pcol = f"FileName_{kind}{ch}", f"PathName_{kind}{ch}"
    names = t[fcol].to_numpy() if fcol in t.columns else np.full(len(t), None)
    dirs = t[pcol].to_numpy() if pcol in t.columns else np.full(len(t), "")
    out, remote = [], []
    for d, f in zip(dirs, names):
        if f is None or (isinstance(f, float) and np.isnan(f)) or str(f) == "":
            out.append(None)
            continue
        d = "" if d is None or (isinstance(d, float) and np.isnan(d)) else str(d)
        for prefix, repl in ld.path_map.items():
            if d.startswith(prefix):
                d = repl + d[len(prefix):]
        if re.match(r"^[a-z0-9]+://", d):
            remote.append(f"{d}/{f}")
            out.append(None)
            continue
        p = Path(d) / str(f)
        out.append(p if p.is_absolute() else ld.root / p)
    return out, remote


def _image_header(p: Path) -> str:
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as tf:
                s = tf.series[0]
                return f"{'x'.join(map(str, s.shape))} {s.dtype}"
        import imageio.v3 as iio

        props = iio.improps(p)
        return f"{'x'.join(map(str, props.shape))} {props.dtype}"
    except Exception as exc:
        return f"unreadable ({exc})"


def image_header_problems(ld: LoadData, *, threads: int = 8,
                          max_examples: int = 5) -> list[ImageReadError]:
    """Decode the header of every local image file of ``ld`` (all channels; TIFF via
    tifffile, others via imageio): a file that cannot be decoded, or whose shape differs
    from its channel's first file, is an :class:`ImageReadError` naming the site, channel
    and file. Missing and remote files are left to the existence checks. Used by
    ``inspect`` and by ``run`` before any worker starts."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for ch in ld.channels:
        paths, _ = _site_paths(ld, ch, "Orig")
        jobs += [(i, ch, p) for i, p in enumerate(paths) if p is not None and p.exists()]
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        headers = list(pool.map(lambda job: _image_header(job[2]), jobs))
    bad, first_shape = [], {}
    for (i, ch, p), h in zip(jobs, headers):
        if h.startswith("unreadable"):
            bad.append((i, ImageReadError(f"{ld.site_label(i)}, channel {ch!r}: cannot decode "
                                      f"{p}: {h[len('unreadable '):].strip('()')}")))
            continue
        first = first_shape.setdefault(ch, (h, p))
        if h.split()[0] != first[0].split()[0]:
            bad.append((i, ImageReadError(
                f"{ld.site_label(i)}, channel {ch!r}: {p.name} is {h}, but {first[1].name} "
                f"is {first[0]}; every site of a channel needs the same image size")))
    bad = [e for _, e in sorted(bad, key=lambda t: t[0])]  # in site order
    if len(bad) > max_examples:
        head = bad[:max_examples]
        head[0] = ImageReadError(f"{len(bad)} image file(s) fail their header check; first: "
                                 f"{head[0]}")
        return head
    return bad


def _inspect_sites(rep: InspectReport, ld: LoadData, *, check_files: bool = True) -> None:
    t = ld.table
    from baselens.data.load_data import discover_channels

    found = discover_channels(t)
    rep.info["channels_found"] = found
    rep.info["channels"] = list(ld.channels)
    rep.add("channels", f"in the table: {found}; read: {list(ld.channels)}"
            + (" (illumination correction on)" if ld.illum else ""))
    illum = [c for c in found if f"FileName_Illum{c}" in t.columns]
    if illum:
        rep.add("channels", f"illumination functions for {illum}"
                + ("" if ld.illum else " (not applied: --illum applies them)"))
    if not check_files or not ld.channels:
        return
    missing: dict[int, list[str]] = {}
    first_missing: ImageReadError | None = None
    remote_all: list[str] = []
    header = None
    kinds = ["Orig"] + (["Illum"] if ld.illum else [])
    for kind in kinds:
        for ch in ld.channels:
            paths, remote = _site_paths(ld, ch, kind)
            remote_all += remote
            n_ok = 0
            for i, p in enumerate(paths):
                if p is None:
                    continue
                if p.exists():
                    n_ok += 1
                    if header is None and kind == "Orig":
                        header = (ch, p, _image_header(p))
                    continue
                missing.setdefault(i, []).append(ch if kind == "Orig" else f"{ch} (illum)")
                if first_missing is None:
                    what = "image" if kind == "Orig" else "illumination"
                    first_missing = ImageReadError(
                        f"{ld.site_label(i)}, channel {ch!r}: {what} file not found: {p}")
            rep.add("files", f"{kind} {ch}: {n_ok}/{len(paths)} sites have the file on disk"
                    + (f" ({len(remote)} remote)" if remote else ""))
    if header:
        rep.add("files", f"first {header[0]} image {header[1].name}: {header[2]}")
    _header_section(rep, ld)
    rep.info["sites_missing_files"] = len(missing)
    if missing:
        ex = [f"{ld.site_label(i)} lacks {chs}" for i, chs in list(missing.items())[:5]]
        rep.add("files", f"FLAG: {len(missing)} site(s) miss files: " + "; ".join(ex))
        rep.problems.append(first_missing)
    if remote_all:
        rep.info["remote_files"] = len(remote_all)
        rep.add("files", f"{len(remote_all)} file(s) on remote storage, e.g. {remote_all[0]}")
        try:
            ld.path(0, ld.channels[0])
        except ImageReadError as exc:
            rep.problems.append(exc)
        else:  # the first site is local but others are not
            rep.problems.append(ImageReadError(f"{len(remote_all)} file(s) are remote, e.g. "
                                               f"{remote_all[0]}; map the prefix with path_map"))


def _header_section(rep: InspectReport, ld: LoadData) -> None:
    """inspect's view of :func:`image_header_problems` (what ``run`` checks first)."""
    bad = image_header_problems(ld)
    rep.info["image_header_problems"] = len(bad)
    if bad:
        rep.add("files", f"FLAG: image headers: {bad[0]}")
        rep.problems.append(bad[0])
    else:
        rep.add("files", "every local image file's header decodes")


def _channel_actions(rep: InspectReport, channels: Sequence[str]) -> None:
    if not channels:
        rep.actions.append("no image channels: only representations that read no pixels run "
                           "(precomputed, plate_layout, random)")
        return
    rep.actions.append(f"read {len(channels)} channel(s) per site: {list(channels)}; pixel "
                       "baselines (pixel_mean, pixel_stats, single_conv) use all of them")
    if "DNA" not in channels:
        rep.actions.append("no channel named 'DNA': cell_count, classic and cell_graph segment "
                           "nuclei on 'DNA' — rename the nuclear channel (channel_map DNA=<channel>)")
    else:
        rep.actions.append("segment nuclei on 'DNA' for cell_count / classic / cell_graph")
    rep.actions.append("ground_truth runs on synthetic screens only; leave it out of real-data configs")


def _inspect_load_data(path: Path, rep: InspectReport, *, channels, illum, channel_map,
                       path_map, check_files) -> None:
    ld = read_load_data(path, channels=channels, illum=illum, channel_map=channel_map,
                        path_map=path_map)
    _screen_sections(rep, ld.table)
    _inspect_sites(rep, ld, check_files=check_files)
    _channel_actions(rep, ld.channels)
    rep.actions.append(f"aggregate {len(ld)} sites to {rep.info['wells']} wells (mean)")
    _score_actions(rep)


# --------------------------------------------------------------------------- folders
def _inspect_folder(path: Path, rep: InspectReport, *, pattern, plate, platemap, channel_map,
                    platemap_options) -> None:
    from baselens.data.microscopy import MissingChannelError, images_to_load_data

    kw = dict(pattern=pattern, plate=plate, platemap=platemap, channel_map=channel_map,
              platemap_options=platemap_options)
    try:
        folder = images_to_load_data(path, **kw)
    except MissingChannelError as exc:
        rep.problems.append(exc)
        folder = images_to_load_data(path, **{**kw, "on_missing": "drop", "on_unmatched": "drop"})
    except ValueError as exc:
        if "plate-map row" not in str(exc):
            raise
        rep.problems.append(exc)
        folder = images_to_load_data(path, **{**kw, "on_unmatched": "drop"})
    rep.info["pattern"] = folder.pattern
    for line in folder.summary().splitlines():
        rep.add("files", line)
    rep.info["channels"] = folder.channels
    if len(folder.table):
        _screen_sections(rep, folder.table)
    if platemap is None:
        rep.actions.append("no plate map given: `baselens load-data FOLDER --platemap MAP.csv` "
                           "adds Metadata_Perturbation / Metadata_ControlType")
    _channel_actions(rep, folder.channels)
    _score_actions(rep)


# --------------------------------------------------------------------------- profiles
def _inspect_profiles(path: Path, rep: InspectReport, *, perturbation=None, negcon=None) -> None:
    from baselens.data.profiles import read_profiles
    from baselens.profile.log import FilterLog
    from baselens.profile.normalize import normalize

    try:
        read_profiles(path, perturbation=perturbation, negcon=negcon)
    except ValueError as exc:
        rep.problems.append(exc)
    pt = read_profiles(path, perturbation=perturbation, negcon=negcon, require_perturbation=False)
    _screen_sections(rep, pt.table, unit="row")
    fr = pt.report["features"]
    rep.info["features"] = fr
    rep.add("features", f"{fr['n_features']} feature columns (e.g. {pt.features[:3]})")
    rep.add("features", f"non-finite: {fr['nonfinite_any']} column(s) with NaN/inf somewhere "
                        f"({fr['nonfinite_all']} entirely), in {fr['rows_with_nonfinite']} row(s)"
            + (f", e.g. {fr['examples_nonfinite'][:3]}" if fr["nonfinite_any"] else ""))
    rep.add("features", f"constant: {fr['constant']} column(s) overall, "
                        f"{fr['constant_in_some_plate']} more within some plate")
    _count_and_classic(rep, pt)
    if pt.report.get("perturbation_column"):
        rep.add("metadata columns", f"perturbation from {pt.report['perturbation_column']}; "
                                    f"negative controls: {pt.report.get('negcon_rule', 'Metadata_ControlType')}")
    if "Metadata_ControlType" in pt.table.columns:
        log = FilterLog()
        try:
            normalize(pt.table, features=pt.features, log=log)
            dropped = sum(e.removed for e in log.events if e.what == "features")
            rep.info["normalize_drops"] = dropped
            ex = [x for e in log.events for x in e.examples][:3]
            rep.actions.append(f"per-plate standardization to negative controls keeps "
                               f"{fr['n_features'] - dropped} feature(s) and drops {dropped} "
                               "(non-finite, or zero spread in the controls of some plate)"
                               + (f", e.g. {ex}" if ex else ""))
        except ValueError as exc:
            if str(exc) not in {str(p) for p in rep.problems}:
                rep.problems.append(exc)
    rep.actions.append("score the table as a representation with the precomputed extractor "
                       "(keys = \"well\"): `baselens load-data PROFILES --out DIR` writes the "
                       "metadata-only load_data, the features and DIR/run.toml")
    _score_actions(rep)


def _count_and_classic(rep: InspectReport, pt) -> None:
    """Which count column feeds cell_count / Metadata_CellCount (or what its absence costs),
    and whether the table is a CellProfiler profile (the classic baseline)."""
    from baselens.data.profiles import count_cost

    col = pt.report.get("count_column")
    rep.info["count_column"] = col
    line = count_cost(col)
    if col is not None and pt.report.get("count_normalized"):
        line += ("; its values are normalized (negative ones present): the cell_count baseline "
                 "gets the polynomial transforms only (roots and logs need raw counts)")
    if col is not None and pt.report.get("count_missing"):
        line += f"; {pt.report['count_missing']} row(s) have no count"
    rep.add("cell count", line)
    n_cp = int(pt.report.get("classic_features", 0))
    rep.info["classic_features"] = n_cp
    if n_cp == len(pt.features) and n_cp:
        rep.add("classic", f"all {n_cp} features are CellProfiler features (Cells_/Nuclei_/"
                           "Cytoplasm_): the table is the classic baseline and is scored as "
                           "`classic` (not duplicated); `load-data --embeddings EMB` scores a "
                           "model's embeddings of the same wells next to it")
    elif n_cp:
        rep.add("classic", f"{n_cp} of {len(pt.features)} features are CellProfiler features: "
                           "they make the classic baseline, the others your representation")
    else:
        rep.add("classic", "no CellProfiler features (Cells_/Nuclei_/Cytoplasm_): no classic "
                           "baseline from this table")


# --------------------------------------------------------------------------- embeddings
def _guess_keys(cols: Sequence[str]) -> str:
    """``site`` / ``well`` / ``perturbation`` from the key columns an embeddings table has."""
    low = {str(c).lower().removeprefix("metadata_") for c in cols}
    if {"plate", "well", "site"} <= low:
        return "site"
    if {"plate", "well"} <= low:
        return "well"
    if "perturbation" in low:
        return "perturbation"
    return "site"  # the run's default: its error names the missing key columns


def _inspect_embeddings(path: Path, rep: InspectReport, *, metadata=None) -> None:
    from baselens.data.embeddings import read_embeddings, resolve_keys

    if path.suffix.lower() == ".npy":
        if metadata is None:
            arr = np.load(path, mmap_mode="r")
            rep.add("embeddings", f"array {arr.shape} {arr.dtype}")
            read_embeddings(path)  # raises the run's error: a .npy needs its metadata table
        keys = _guess_keys(_columns(Path(metadata)))
        t = read_embeddings(path, metadata=metadata, keys=keys)
        rep.actions.append(f"score them with the precomputed extractor: params = {{ path = "
                           f"\"{path}\", metadata = \"{metadata}\", keys = \"{keys}\" }}")
    else:
        cols = _columns(path) if path.suffix.lower() != ".h5ad" else []
        if "well_id" in cols and any(str(c).startswith("feature_") for c in cols):
            from baselens.data.rxrx3 import OPENPHENOM_PARAMS, read_rxrx3_embeddings

            rep.add("embeddings", "RxRx3-core layout (well_id + feature_*), e.g. OpenPhenom")
            try:
                read_embeddings(path, **OPENPHENOM_PARAMS)
            except ValueError as exc:
                rep.problems.append(exc)
            t = read_rxrx3_embeddings(path)
            if getattr(t, "n_averaged", 0):
                rep.add("embeddings", f"{t.n_averaged} repeated well_id row(s): "
                                      "baselens.data.rxrx3.read_rxrx3_embeddings averages them")
            rep.actions.append("score them with precomputed params " + repr(
                {"path": str(path), **OPENPHENOM_PARAMS})
                               + " on a load_data table from baselens.data.rxrx3 (Metadata_WellId)")
        else:
            keys = _guess_keys(cols)
            t = read_embeddings(path, keys=keys)
            rep.actions.append(f"score them with the precomputed extractor: params = "
                               f"{{ path = \"{path}\", keys = \"{keys}\" }}")
            if keys == "perturbation":
                rep.actions.append("perturbation keys: every well of a perturbation gets the same "
                                   "vector, so replicate retrieval is trivially perfect — use them "
                                   "for relationship recall only")
    from baselens.data.profiles import count_cost, find_count_column

    ccol = find_count_column(t.features) if path.suffix.lower() != ".npy" else None
    rep.info["count_column"] = ccol
    if ccol is not None:
        rep.add("cell count", f"{ccol} is a count, not an embedding dimension: "
                              "`baselens load-data PROFILES --embeddings THIS` keeps it out of "
                              "the embedding and, when the profile table has no count, "
                              f"builds cell_count from it ({count_cost(ccol)})")
    else:
        rep.add("cell count", count_cost(None))
    rep.info.update({"rows": len(t.table), "dim": t.dim, "keys": t.keys})
    rep.add("embeddings", f"{len(t.table)} rows × {t.dim} dimensions, keys {t.keys}; features "
                          f"{t.features[:3]}{'…' if t.dim > 3 else ''}")
    if "Metadata_Plate" in t.keys:
        rep.add("embeddings", f"{t.table['Metadata_Plate'].nunique()} plate(s)")


# --------------------------------------------------------------------------- rxrx3
def _inspect_rxrx3(path: Path, rep: InspectReport) -> None:
    from baselens.data.rxrx3 import read_rxrx3_metadata

    t = read_rxrx3_metadata(path)
    r = t.report
    rep.add("rxrx3", f"{r['wells_in']} wells in the metadata; {r['negcon']} EMPTY_control (negcon)"
            + (f"; {r['crispr_control_dropped']} CRISPR_control wells left out (Recursion removes "
               "them from maps)" if r.get("crispr_control_dropped") else "")
            + (f"; {r['anonymized_genes']} wells of anonymized genes (RXRX3-…)"
               if r["anonymized_genes"] else ""))
    _screen_sections(rep, t.table, unit="well")
    rep.actions.append("`baselens load-data METADATA --embeddings OpenPhenom_rxrx3_core_embeddings.parquet "
                       "[--image-root DIR] --out DIR` writes the load_data table and a run config "
                       "scoring Recursion's OpenPhenom embeddings next to the baselines")
    _score_actions(rep)


# --------------------------------------------------------------------------- entry point
def inspect_path(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    channels: Sequence[str] | None = None,
    illum: bool = False,
    channel_map: Mapping[str, str] | str | None = None,
    path_map: Mapping[str, str] | None = None,
    pattern: str = "auto",
    plate: str | None = None,
    platemap: str | os.PathLike | None = None,
    platemap_options: Mapping | None = None,
    perturbation: str | None = None,
    negcon: Sequence[str] | None = None,
    metadata: str | os.PathLike | None = None,
    check_files: bool = True,
) -> InspectReport:
    """Inspect a load_data table, an image folder, a profile table or an embeddings file.

    Parameters
    ----------
    kind : str, optional
        Force one of :data:`KINDS` instead of detecting it (:func:`detect_kind`).
    channels, illum, channel_map, path_map
        As for :func:`baselens.data.load_data.read_load_data` (load_data tables).
    pattern, plate, platemap, platemap_options
        As for :func:`baselens.data.microscopy.images_to_load_data` (image folders).
    perturbation, negcon
        As for :func:`baselens.data.profiles.read_profiles` (profile tables).
    metadata : path, optional
        The metadata table of a ``.npy`` embeddings file.
    check_files : bool
        Check that every image file of a load_data table exists.

    Returns
    -------
    InspectReport
        ``text()`` for people, ``info`` for code, ``problems`` for what a run would stop at.

    Raises
    ------
    FileNotFoundError, ValueError, ImageReadError, EmbeddingJoinError
        What the run's readers raise on the same input.
    """
    from baselens.data.microscopy import parse_channel_map

    p = Path(path).expanduser()
    kind = kind or detect_kind(p)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rep = InspectReport(kind=kind, path=p)
    cmap = parse_channel_map(channel_map)
    if kind == "load_data":
        _inspect_load_data(p, rep, channels=channels, illum=illum, channel_map=cmap,
                           path_map=path_map, check_files=check_files)
    elif kind == "image_folder":
        _inspect_folder(p, rep, pattern=pattern, plate=plate, platemap=platemap,
                        channel_map=cmap, platemap_options=platemap_options)
    elif kind == "profiles":
        _inspect_profiles(p, rep, perturbation=perturbation, negcon=negcon)
    elif kind == "embeddings":
        _inspect_embeddings(p, rep, metadata=metadata)
    elif kind in ("image", "platemap", "annotations", "metadata"):
        _inspect_other(kind, p, rep, perturbation=perturbation, negcon=negcon,
                       fill_empty=(platemap_options or {}).get("fill_empty"))
    else:
        _inspect_rxrx3(p, rep)
    return rep


# --------------------------------------------------------------------------- other inputs
_WELL_NAMES = ("metadata_well", "well", "well_position", "metadata_well_position", "wellname",
               "well_name", "image_metadata_well")
_PLATE_NAMES = ("metadata_plate", "plate", "image_metadata_plate", "barcode", "plate_barcode")


def _other_table_kind(path: Path, cols: Sequence[str]) -> str | None:
    """``annotations`` (entity1/entity2 pairs), ``platemap`` (wells and their treatment, no
    features, no images) or ``metadata`` (a table without wells, e.g. JUMP's plate.csv.gz);
    ``None`` for the tables :func:`detect_kind` already knows."""
    low = {str(c).lower(): c for c in cols}
    if {"entity1", "entity2"} <= set(low):
        return "annotations"
    if any(re.match(r"^(Image_)?(FileName|PathName)_", str(c)) for c in cols):
        return None
    from baselens.data.rxrx3 import is_rxrx3_metadata

    if is_rxrx3_metadata(cols):
        return None
    sample = _head(path, 200)
    feats = [c for c in sample.columns if not str(c).startswith(("Metadata_", "Image_Metadata_"))
             and str(c).lower() not in _WELL_NAMES + _PLATE_NAMES
             and pd.api.types.is_float_dtype(sample[c])]
    has_well = any(c in low for c in _WELL_NAMES)
    if not has_well:
        # a numeric feature block keyed by its own id column (e.g. RxRx3's well_id) is an
        # embeddings table; without one it is a metadata table
        return None if len(feats) >= 3 else "metadata"
    # a plate map has a handful of descriptive columns and no numeric feature block
    keys = _WELL_NAMES + _PLATE_NAMES
    named = [c for c in sample.columns if str(c).lower() not in keys
             and not pd.api.types.is_numeric_dtype(sample[c])]
    if named and len(feats) < 3 and not any(str(c).startswith("Metadata_") for c in cols
                                            if str(c).lower() not in keys):
        return "platemap"  # treatments named in text columns, no feature block
    return None


def _head(path: Path, n: int) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path).head(n)
    sep = "\t" if name.endswith((".tsv", ".tsv.gz", ".txt")) else ","
    return pd.read_csv(path, sep=sep, nrows=n, low_memory=False)


def _inspect_other(kind: str, path: Path, rep: InspectReport, *, perturbation=None,
                   negcon=None, fill_empty=None) -> None:
    """Describe a single image, a plate map, a relationship table or a metadata table, and
    say which command uses it. Nothing here raises on a well-formed file."""
    if kind == "image":
        _inspect_image_file(path, rep)
    elif kind == "annotations":
        from baselens.data.annotations import read_relationship_pairs

        pairs = read_relationship_pairs(path)
        ents = pd.unique(pd.concat([pairs["entity1"], pairs["entity2"]]).astype(str))
        rep.info.update({"pairs": len(pairs), "entities": len(ents)})
        rep.add("relationships", f"{len(pairs)} pairs over {len(ents)} entities, sources: "
                                 f"{', '.join(sorted(pairs['source'].astype(str).unique())[:5])}")
        rep.add("relationships", "e.g. " + "; ".join(
            f"{a}–{b}" for a, b in pairs[["entity1", "entity2"]].head(3).to_numpy()))
        rep.actions.append("score known-relationship recall against these pairs: [data] "
                           f"annotations = [\"{path}\"] in a run config (Python: "
                           "Benchmark(..., annotations=[path])); entities are matched to "
                           "Metadata_Perturbation")
    elif kind == "platemap":
        from baselens.data.microscopy import read_platemap

        opts = {"perturbation": perturbation, "negcon": negcon, "fill_empty": fill_empty}
        try:
            try:
                pm = read_platemap(path, **{k: v for k, v in opts.items() if v})
            except ValueError:
                guess = None if perturbation else _guess_perturbation(_head(path, 5).columns)
                if guess is None:
                    raise
                pm = read_platemap(path, **{**{k: v for k, v in opts.items() if v},
                                            "perturbation": guess})
                perturbation = guess
                rep.add("plate map", f"perturbation taken from {guess!r} (name another with "
                                     "--perturbation)")
        except ValueError as exc:
            df = _head(path, 100000)
            rep.info.update({"rows": len(df), "columns": list(df.columns)})
            rep.add("plate map", f"{len(df)} rows; columns {list(df.columns)[:10]}")
            rep.problems.append(ValueError(
                f"{exc} (on the command line: --perturbation COLUMN --negcon VALUE "
                "--fill-empty VALUE, e.g. baselens inspect/load-data ... --platemap "
                f"{path} --fill-empty DMSO)"))
            return
        ct = pm.get("Metadata_ControlType", pd.Series("", index=pm.index)).astype(str)
        rep.info.update({"wells": len(pm), "perturbations": int(pm["Metadata_Perturbation"].nunique())
                         if "Metadata_Perturbation" in pm.columns else 0,
                         "negcon_wells": int((ct == "negcon").sum())})
        rep.add("plate map", f"{len(pm)} wells, {rep.info['perturbations']} perturbations, "
                             f"{rep.info['negcon_wells']} negative-control wells"
                             + (f", {pm['Metadata_Plate'].nunique()} plate(s)"
                                if "Metadata_Plate" in pm.columns else " (applies to every plate)"))
        rep.add("plate map", "columns: " + ", ".join(map(str, pm.columns)))
        rep.actions.append(f"join it to an image folder: baselens load-data IMAGES --platemap "
                           f"{path}" + (f" --perturbation {perturbation}" if perturbation else "")
                           + (" --negcon " + " ".join(negcon) if negcon else "")
                           + (f" --fill-empty {fill_empty}" if fill_empty else ""))
    else:  # metadata without wells
        df = _head(path, 10 ** 6)
        rep.info.update({"rows": len(df), "columns": list(map(str, df.columns))})
        rep.add("metadata table", f"{len(df)} rows; columns: "
                                  + ", ".join(map(str, df.columns[:12]))
                                  + (" …" if len(df.columns) > 12 else ""))
        for c in df.columns[:12]:
            rep.add("metadata table", f"{c}: {df[c].nunique()} distinct, e.g. "
                                      + ", ".join(map(str, df[c].dropna().unique()[:3])))
        rep.actions.append(
            "a table without wells is joined, not scored: per-perturbation columns "
            "(Metadata_Perturbation + Metadata_*) with [data] perturbation_metadata; JUMP's "
            "plate/compound/source tables with baselens download jump-cp (or "
            "baselens.data.jump.annotate_jump)")


def _guess_perturbation(cols) -> str | None:
    """A plate-map column that names treatments (``broad_sample``, ``pert_iname`` …)."""
    for word in ("perturbation", "broad_sample", "pert_iname", "compound", "gene", "treatment",
                 "jcp2022", "pert", "sample"):
        hit = [c for c in cols if word in str(c).lower()]
        if hit:
            return str(hit[0])
    return None


def _inspect_image_file(path: Path, rep: InspectReport) -> None:
    """One image file: its header (shape, dtype, channels) decoded, and how a folder of
    such files becomes a load_data table."""
    from baselens.data.microscopy import PATTERNS

    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            shape, dtype, axes = tuple(series.shape), str(series.dtype), series.axes
    except Exception:  # not a TIFF: decode it fully with imageio
        try:
            import imageio.v3 as iio

            arr = iio.imread(path)
            shape, dtype, axes = tuple(arr.shape), str(arr.dtype), ""
        except Exception as exc:
            rep.problems.append(ValueError(f"{path}: cannot decode the image header ({exc})"))
            return
    rep.info.update({"shape": list(shape), "dtype": dtype, "axes": axes})
    rep.add("image", f"shape {shape}" + (f" ({axes})" if axes else "") + f", {dtype}, "
                     f"{path.stat().st_size / 1e6:.1f} MB")
    matched = [name for name, spec in PATTERNS.items() if re.search(spec["regex"], path.name)]
    if matched:
        rep.add("image", f"file name matches the {matched[0]!r} pattern")
    rep.actions.append(f"a single file is one site (or one channel of it): score the folder "
                       f"with baselens inspect {path.parent} / baselens load-data {path.parent} "
                       "--platemap PLATEMAP --out DIR")


# --------------------------------------------------------------------------- builder
_IMAGE_BASELINES = ("pixel_mean", "pixel_stats", "cell_count", "single_conv", "plate_layout", "random")


def _toml_str(s) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _image_config(title: str, load_data: str, channels: Sequence[str], extra_methods=()) -> str:
    lines = [f"title = {_toml_str(title)}", "", "[data]", f"load_data = {_toml_str(load_data)}",
             "channels = [" + ", ".join(_toml_str(c) for c in channels) + "]", ""]
    for m in extra_methods:
        lines += m
    for b in _IMAGE_BASELINES:
        if b == "cell_count" and "DNA" not in channels:
            lines += ["# cell_count needs a channel named DNA (rename with --channel-map DNA=<channel>)",
                      "# [[methods]]", '# name = "cell_count"', ""]
            continue
        lines += ["[[methods]]", f"name = {_toml_str(b)}", ""]
    lines += ["# a model: an untrained network, OpenPhenom, or your own embeddings, e.g.",
              "# [[methods]]", '# name = "precomputed"', '# label = "my_model"',
              '# params = { path = "/abs/path/embeddings.parquet", keys = "site" }', ""]
    return "\n".join(lines)


def build_run_inputs(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pattern: str = "auto",
    plate: str | None = None,
    platemap: str | os.PathLike | None = None,
    platemap_options: Mapping | None = None,
    channel_map: Mapping[str, str] | str | None = None,
    plane: int | None = None,
    on_missing: str = "error",
    perturbation: str | None = None,
    negcon: Sequence[str] | None = None,
    embeddings: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    title: str | None = None,
) -> tuple[Path, str]:
    """Make a run folder's inputs from an image folder, a profile table or RxRx3 metadata.

    Writes into ``out_dir`` a load_data table and ``run.toml`` (see
    ``baselens load-data --help``); returns (config path, a summary to print).
    """
    from baselens._io import write_text_atomic
    from baselens.data.microscopy import images_to_load_data, write_load_data

    src = Path(source).expanduser()
    out = Path(out_dir).expanduser()
    kind = detect_kind(src)
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "run.toml"
    if kind == "image_folder":
        folder = images_to_load_data(src, pattern=pattern, plate=plate, platemap=platemap,
                                     channel_map=channel_map, plane=plane, on_missing=on_missing,
                                     platemap_options=platemap_options)
        write_load_data(folder.table, out / "load_data.csv")
        write_text_atomic(_image_config(title or f"{src.name} vs baselines", "load_data.csv",
                                        folder.channels), cfg)
        summary = folder.summary()
    elif kind == "profiles":
        from baselens.data.profiles import read_profiles, write_profile_run

        pt = read_profiles(src, perturbation=perturbation, negcon=negcon)
        cfg = write_profile_run(pt, out, label=src.name.split(".")[0], title=title,
                                embeddings=embeddings)
        from baselens.data.profiles import count_cost

        summary = (f"{len(pt.table)} rows, {len(pt.features)} features; perturbation from "
                   f"{pt.report['perturbation_column']}, {pt.report.get('negcon', 0)} negcon rows"
                   f"\ncell count: {count_cost(pt.report.get('count_column'))}")
    elif kind == "rxrx3_metadata":
        from baselens.data.rxrx3 import OPENPHENOM_PARAMS, RXRX3_CHANNELS, rxrx3_load_data

        t = rxrx3_load_data(src, image_root=image_root)
        from baselens._io import write_parquet_atomic

        write_parquet_atomic(t.table, out / "load_data.parquet")
        methods = []
        if embeddings is not None:
            emb = Path(embeddings).expanduser().resolve()
            if not emb.exists():
                raise FileNotFoundError(f"embeddings file not found: {emb}")
            methods.append(["[[methods]]", 'name = "precomputed"', 'label = "openphenom_rxrx3"',
                            f"params = {{ path = {_toml_str(emb)}, keys = [\"Metadata_WellId\"], "
                            f"column_map = {{ well_id = \"Metadata_WellId\" }}, "
                            f"features = \"{OPENPHENOM_PARAMS['features']}\" }}", ""])
        if image_root is None:
            lines = [f"title = {_toml_str(title or 'RxRx3-core: OpenPhenom vs baselines')}", "",
                     "[data]", 'load_data = "load_data.parquet"',
                     "channels = []   # no images: representations that read no pixels", ""]
            for m in methods:
                lines += m
            lines += ["[[methods]]", 'name = "plate_layout"', "", "[[methods]]", 'name = "random"', ""]
            write_text_atomic("\n".join(lines), cfg)
        else:
            write_text_atomic(_image_config(title or "RxRx3-core vs baselines", "load_data.parquet",
                                            list(RXRX3_CHANNELS), methods), cfg)
        summary = (f"{len(t.table)} wells, {t.table['Metadata_Plate'].nunique()} plates; "
                   f"{t.report['negcon']} EMPTY_control wells (negcon)"
                   + (f"; {t.report['crispr_control_dropped']} CRISPR_control wells left out"
                      if t.report.get("crispr_control_dropped") else ""))
    else:
        raise ValueError(f"{src}: {kind.replace('_', ' ')} — load-data builds inputs from an image "
                         "folder, a profile table or RxRx3 metadata; a load_data table is used "
                         "as it is ([data] load_data = …), embeddings through the precomputed method")
    return cfg, summary
