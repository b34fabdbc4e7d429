"""Microscopy files and folders of per-channel images → what baselens reads.

Two entry points:

* :func:`read_microscopy` — one multi-channel file as a ``(C, H, W)`` float32 array with
  channel names: OME-TIFF / TIFF through ``tifffile`` (channel names from the OME-XML
  ``<Channel Name=…>``), OME-Zarr, ND2, CZI … through ``bioio`` when it and the format's
  reader plugin are installed (``pip install bioio bioio-ome-zarr`` / ``bioio-nd2``; an
  optional extra, not a core dependency).
* :func:`images_to_load_data` — a folder of single-channel TIFFs named the usual ways
  (:data:`PATTERNS`: Opera Phenix / Operetta (Harmony), ImageXpress (MetaXpress), the
  baselens synthetic layout, or a regular expression with named groups) → a load_data
  table (one row per site, ``FileName_Orig<Ch>`` / ``PathName_Orig<Ch>``), joined to a
  plate map. :func:`write_load_data` writes it; :func:`baselens.data.load_data.read_load_data`
  reads it back like any Cell Painting Gallery table.

Channels
    Files name channels by number (``ch5``, ``w1``) or stain (``DAPI``); representations
    expect names (``DNA`` for nuclei segmentation). ``channel_map = {"DNA": "ch5", …}``
    maps names to the file channels (``{name: channel in the files}``), selects them and
    fixes their order; channels not in the map are left out and counted. Named maps for
    known layouts are in :data:`CHANNEL_MAPS`.

Missing channels
    A site without a file for one of the expected channels (those in ``channel_map``, else
    every channel seen in the folder) raises :class:`MissingChannelError` naming the site,
    the missing channel(s) and the files found; ``on_missing="drop"`` leaves such sites out
    and lists them in the report instead.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from baselens.data.load_data import ImageReadError
from baselens.data.wells import normalize_well, parse_well, well_name

__all__ = [
    "CHANNEL_MAPS", "PATTERNS", "ImageFolder", "MicroscopyImage", "MissingChannelError",
    "images_to_load_data", "normalize_well", "parse_channel_map", "read_microscopy",
    "read_platemap", "write_load_data",
]

#: Named channel maps ``{name: file channel}`` for known acquisition layouts.
CHANNEL_MAPS: dict[str, dict[str, str]] = {
    # JUMP on Opera Phenix (cpg0016 source_4, CPJUMP1): from the real
    # load_data_with_illum table of BR00126114 (FileName_OrigMito = …-ch1sk1fk1fl1.tiff, …)
    "jump_phenix": {"DNA": "ch5", "ER": "ch4", "RNA": "ch3", "AGP": "ch2", "Mito": "ch1"},
    # WayScience pediatric cancer atlas (Phenix, 6 channels): from its CellProfiler table
    # (Image_FileName_OrigDNA = …-ch5sk1fk1fl1.tiff, OrigBrightfield = ch1, …)
    "pediatric_atlas": {"DNA": "ch5", "ER": "ch2", "RNA": "ch6", "AGP": "ch3", "Mito": "ch4",
                        "Brightfield": "ch1"},
}

#: File-name patterns (regular expressions with named groups ``plate``, ``well`` or
#: ``row``/``col``, ``site``, ``plane``, ``channel``). ``channel_prefix`` turns the
#: channel number into the channel's name in the table (``5`` → ``ch5``).
PATTERNS: dict[str, dict] = {
    # Harmony export of Opera Phenix / Operetta: r01c01f01p01-ch1sk1fk1fl1.tiff
    "opera": {"regex": r"^r(?P<row>\d{2})c(?P<col>\d{2})f(?P<site>\d{2,})p(?P<plane>\d{2,})"
                       r"-ch(?P<channel>\d+)sk\d+fk\d+fl\d+\.tiff?$",
              "channel_prefix": "ch"},
    # MetaXpress export of ImageXpress: <plate>_<well>_s<site>_w<channel><GUID>.tif
    # (single-site acquisitions have no _s<site>; thumbnails (_thumb) do not match)
    "imagexpress": {"regex": r"^(?P<plate>.+?)_(?P<well>[A-Za-z]{1,2}\d{2})(?:_s(?P<site>\d+))?"
                             r"_w(?P<channel>\d+)(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
                             r"[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})?\.tiff?$",
                    "channel_prefix": "w"},
    # baselens synthetic screens: <plate>_<well>_s<site>_<channel>.tiff
    "baselens": {"regex": r"^(?P<plate>.+)_(?P<well>[A-Z]{1,2}\d{2})_s(?P<site>\d+)"
                          r"_(?P<channel>[A-Za-z][A-Za-z0-9]*)\.tiff?$",
                 "channel_prefix": ""},
}

_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jp2")


class MissingChannelError(ImageReadError):
    """A site lacks a file for one or more expected channels."""


# --------------------------------------------------------------------------- wells, maps
def parse_channel_map(spec: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """A channel map from a dict, a preset name (:data:`CHANNEL_MAPS`) or ``"DNA=ch5,ER=ch4"``."""
    if spec is None or isinstance(spec, Mapping):
        return None if spec is None else {str(k): str(v) for k, v in spec.items()}
    spec = str(spec).strip()
    if spec in CHANNEL_MAPS:
        return dict(CHANNEL_MAPS[spec])
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise ValueError(f"channel map {spec!r}: expected NAME=CHANNEL pairs separated by "
                             f"commas (e.g. DNA=ch5,ER=ch4) or one of {sorted(CHANNEL_MAPS)}")
        k, v = (x.strip() for x in part.split("=", 1))
        if k in out:
            raise ValueError(f"channel map {spec!r}: {k!r} is mapped twice")
        out[k] = v
    return out


# --------------------------------------------------------------------------- one file
@dataclass
class MicroscopyImage:
    """One multi-channel image: ``data`` (C, H, W) float32, ``channels`` names in order."""

    data: np.ndarray
    channels: list[str]
    path: Path
    reader: str
    pixel_size_um: float | None = None
    n_z: int = 1

    def channel(self, name: str) -> np.ndarray:
        return self.data[self.channels.index(name)]


def _ome_channel_names(ome_xml: str | None, series: int) -> list[str]:
    if not ome_xml:
        return []
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return []
    images = [el for el in root.iter() if el.tag.endswith("}Image") or el.tag == "Image"]
    if series >= len(images):
        return []
    names = []
    for el in images[series].iter():
        if el.tag.endswith("}Channel") or el.tag == "Channel":
            names.append(el.get("Name") or "")  # unnamed → ch1…chN (IDs are not names)
    return names


def _ome_pixel_size(ome_xml: str | None, series: int) -> float | None:
    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    pixels = [el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"]
    if series >= len(pixels) or pixels[series].get("PhysicalSizeX") is None:
        return None
    unit = pixels[series].get("PhysicalSizeXUnit", "µm")
    scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
    return float(pixels[series].get("PhysicalSizeX")) * scale if scale else None


def _to_cyx(arr: np.ndarray, axes: str, *, path: Path, t: int, z) -> tuple[np.ndarray, int]:
    """Any of TCZYX / S (samples) / Q, I (unnamed pages) → (C, Y, X); Z max-projected or picked."""
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{path}: axes {axes!r} have no Y/X plane")
    chan_axes = [a for a in axes if a in "CS"]
    if not chan_axes:  # pages of unknown meaning (Q/I) count as channels when nothing else does
        other = [a for a in axes if a in "QIP"]
        if len(other) > 1:
            raise ImageReadError(f"{path}: cannot tell channels from the axes {axes!r}")
        if other:
            axes = axes.replace(other[0], "C")
    for a in axes:
        if a not in "TCZYXS":
            raise ImageReadError(f"{path}: unsupported axis {a!r} in {axes!r}; export the file "
                                 "as one plane per channel (T, C, Z, Y, X)")
    n_z = arr.shape[axes.index("Z")] if "Z" in axes else 1
    if "T" in axes:
        k = axes.index("T")
        if not 0 <= t < arr.shape[k]:
            raise ImageReadError(f"{path}: time point t={t} requested; the file has {arr.shape[k]}")
        arr, axes = np.take(arr, t, axis=k), axes.replace("T", "")
    if "Z" in axes:
        k = axes.index("Z")
        if z == "max":
            arr = arr.max(axis=k)
        else:
            if not 0 <= int(z) < arr.shape[k]:
                raise ImageReadError(f"{path}: z-plane {z} requested; the file has {arr.shape[k]}")
            arr = np.take(arr, int(z), axis=k)
        axes = axes.replace("Z", "")
    if "C" in axes and "S" in axes:  # e.g. RGB samples inside channels: flatten
        arr = np.moveaxis(arr, [axes.index("C"), axes.index("S")], [0, 1])
        arr = arr.reshape((-1,) + arr.shape[2:])
        axes = "C" + axes.replace("C", "").replace("S", "")
    axes = axes.replace("S", "C")
    if "C" not in axes:
        arr, axes = arr[None], "C" + axes
    order = [axes.index(a) for a in "CYX"]
    return np.transpose(arr, order), n_z


def _select_channels(img: MicroscopyImage, channel_map: Mapping[str, str] | None) -> MicroscopyImage:
    if not channel_map:
        return img
    idx = []
    for name, src in channel_map.items():
        src = str(src)
        if src in img.channels:
            idx.append(img.channels.index(src))
            continue
        m = re.fullmatch(r"(?:ch|c|w)?(\d+)", src, flags=re.IGNORECASE)
        if m and 1 <= int(m.group(1)) <= len(img.channels):
            idx.append(int(m.group(1)) - 1)  # ch5 = the fifth channel (1-based, like Harmony)
            continue
        raise ImageReadError(
            f"{img.path}: channel_map[{name!r}] = {src!r}: no such channel; the file has "
            f"{img.channels} (name them, or ch1…ch{len(img.channels)} by position)")
    return MicroscopyImage(img.data[idx], list(channel_map), img.path, img.reader,
                           img.pixel_size_um, img.n_z)


def read_microscopy(path: str | os.PathLike, channel_map: Mapping[str, str] | str | None = None,
                    *, series: int = 0, t: int = 0, z: int | str = "max") -> MicroscopyImage:
    """Read one multi-channel microscopy file as (C, H, W) float32 with channel names.

    Parameters
    ----------
    path : path
        ``.tif`` / ``.tiff`` / ``.ome.tif(f)`` (tifffile); ``.zarr`` / ``.ome.zarr`` folders,
        ``.nd2``, ``.czi`` and other formats through ``bioio`` and its reader plugin.
    channel_map : dict or str, optional
        ``{name: channel}`` (see :func:`parse_channel_map`): a file channel by its name
        (OME ``Channel Name``) or by position ``ch1``…``chN`` (1-based). Selects and orders.
    series : int
        Image series / scene.
    t : int
        Time point.
    z : int or "max"
        Z-plane, or the maximum-intensity projection over Z (default).

    Channel names default to the file's (OME-XML ``Channel@Name``, bioio's
    ``channel_names``) or ``ch1``…``chN``.

    Raises
    ------
    ImageReadError
        Unreadable file, unsupported axes, or a mapped channel the file lacks.
    ImportError
        A format that needs ``bioio`` (or one of its plugins) which is not installed.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ImageReadError(f"microscopy file not found: {p}")
    cmap = parse_channel_map(channel_map)
    name = p.name.lower()
    if name.endswith((".tif", ".tiff")):
        img = _read_tiff(p, series=series, t=t, z=z)
    else:
        img = _read_bioio(p, series=series, t=t, z=z)
    return _select_channels(img, cmap)


def _read_tiff(p: Path, *, series: int, t: int, z) -> MicroscopyImage:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tf:
            if series >= len(tf.series):
                raise ImageReadError(f"{p}: series {series} requested; the file has {len(tf.series)}")
            s = tf.series[series]
            arr, axes = s.asarray(), s.axes
            ome = tf.ome_metadata if tf.is_ome else None
            ij = tf.imagej_metadata if tf.is_imagej else None
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"could not read {p}: {exc}. The file is corrupt, truncated or "
                             "not a TIFF.") from exc
    data, n_z = _to_cyx(np.asarray(arr), axes, path=p, t=t, z=z)
    names = _ome_channel_names(ome, series)
    if not names and ij and isinstance(ij.get("Labels"), (list, tuple)):
        names = [str(x) for x in ij["Labels"]]
    if len(names) != data.shape[0] or len(set(names)) != len(names) or not all(names):
        names = [f"ch{i + 1}" for i in range(data.shape[0])]
    return MicroscopyImage(data.astype(np.float32, copy=False), names, p,
                           "tifffile" + ("/ome" if ome else ""), _ome_pixel_size(ome, series), n_z)


def _read_bioio(p: Path, *, series: int, t: int, z) -> MicroscopyImage:
    suffix = p.name.lower()
    plugin = ("bioio-ome-zarr" if ".zarr" in suffix else "bioio-nd2" if suffix.endswith(".nd2")
              else "bioio-czi" if suffix.endswith(".czi") else "a bioio reader plugin for this format")
    try:
        from bioio import BioImage  # type: ignore
    except ImportError:
        raise ImportError(
            f"reading {p} needs bioio and {plugin} (pip install bioio {plugin.split()[0]}); "
            "or export the image as (OME-)TIFF, which baselens reads with tifffile") from None
    try:
        bi = BioImage(p)
        if series:
            bi.set_scene(bi.scenes[series])
        dims = bi.dims
        n_t = getattr(dims, "T", 1)
        if not 0 <= t < n_t:
            raise ImageReadError(f"{p}: time point t={t} requested; the file has {n_t}")
        arr = np.asarray(bi.get_image_data("CZYX", T=t))
        names = [str(c) for c in (bi.channel_names or [])]
        px = getattr(bi.physical_pixel_sizes, "X", None)
    except ImageReadError:
        raise
    except Exception as exc:
        if type(exc).__name__ in ("UnsupportedFileFormatError",):
            raise ImportError(f"bioio cannot read {p}: install {plugin} ({exc})") from exc
        raise ImageReadError(f"could not read {p} with bioio: {exc}") from exc
    data, n_z = _to_cyx(arr, "CZYX", path=p, t=0, z=z)
    if len(names) != data.shape[0] or len(set(names)) != len(names) or not all(names):
        names = [f"ch{i + 1}" for i in range(data.shape[0])]
    return MicroscopyImage(data.astype(np.float32, copy=False), names, p, "bioio",
                           float(px) if px else None, n_z)


# --------------------------------------------------------------------------- plate maps
_WELL_ALIASES = ("Metadata_Well", "well", "Well", "well_position", "Metadata_well_position",
                 "WellName", "address")
_PLATE_ALIASES = ("Metadata_Plate", "plate", "Plate", "Metadata_plate", "plate_barcode")
_PERT_ALIASES = ("Metadata_Perturbation", "perturbation", "Perturbation")
_CTRL_ALIASES = ("Metadata_ControlType", "control_type", "ControlType")


def _find(cols, aliases) -> str | None:
    return next((a for a in aliases if a in cols), None)


def read_platemap(path: str | os.PathLike | pd.DataFrame, *, perturbation: str | None = None,
                  negcon: Sequence[str] | None = None, poscon: Sequence[str] | None = None,
                  fill_empty: str | None = None) -> pd.DataFrame:
    """Read a plate map (CSV / TSV / Parquet) into ``Metadata_*`` columns, one row per well.

    Recognized columns: the well (``Metadata_Well``, ``well``, ``well_position``, …; ``A1``
    and ``A01`` alike), optionally the plate (``Metadata_Plate``, ``plate``; a map without
    one applies to every plate), the perturbation (``Metadata_Perturbation`` /
    ``perturbation``, or the column named by ``perturbation``), the control type
    (``Metadata_ControlType`` / ``control_type`` with ``negcon`` / ``poscon`` / empty). Every
    other column is kept with a ``Metadata_`` prefix. Without a control-type column,
    ``negcon`` (and ``poscon``) list the perturbation values that are controls, e.g.
    ``negcon=["DMSO"]``. ``fill_empty`` names the perturbation of wells whose
    perturbation is empty (e.g. ``"DMSO"`` for solvent-only wells).

    Raises
    ------
    ValueError
        No well column, duplicate wells, empty perturbations (without ``fill_empty``), no
        way to tell negative controls — each naming the file, the rows and what to do.
    """
    if isinstance(path, pd.DataFrame):
        df, src = path.copy(), "plate map"
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"plate map not found: {p}")
        n = p.name.lower()
        df = (pd.read_parquet(p) if n.endswith((".parquet", ".pq"))
              else pd.read_csv(p, sep="\t" if n.endswith((".tsv", ".txt", ".tsv.gz")) else ",",
                               dtype=str, keep_default_na=False))
        src = str(p)
    cols = list(df.columns)
    wcol = _find(cols, _WELL_ALIASES)
    if wcol is None:
        raise ValueError(f"{src}: no well column (looked for {list(_WELL_ALIASES)}); columns: {cols}")
    pcol = _find(cols, _PLATE_ALIASES)
    pert = perturbation or _find(cols, _PERT_ALIASES)
    if pert is None or pert not in cols:
        looked = (f"named {perturbation!r}" if perturbation
                  else "Metadata_Perturbation or perturbation")
        raise ValueError(f"{src}: no perturbation column ({looked}); columns: {cols}. Name the "
                         "column that says what each well received (e.g. perturbation='broad_sample').")
    ctrl = _find(cols, _CTRL_ALIASES)
    rename = {wcol: "Metadata_Well", pert: "Metadata_Perturbation"}
    if pcol:
        rename[pcol] = "Metadata_Plate"
    if ctrl:
        rename[ctrl] = "Metadata_ControlType"
    out = df.rename(columns=rename)
    out.columns = [c if str(c).startswith("Metadata_") else f"Metadata_{c}" for c in out.columns]
    if out.columns.duplicated().any():
        dup = list(out.columns[out.columns.duplicated()])
        raise ValueError(f"{src}: columns {dup} appear twice once prefixed with Metadata_; rename one")
    out["Metadata_Well"] = out["Metadata_Well"].map(normalize_well)
    pv = out["Metadata_Perturbation"]
    empty = pv.isna() | (pv.astype(str).str.strip().isin(["", "nan", "NA", "None"]))
    if empty.any():
        if fill_empty is None:
            ex = out.loc[empty, "Metadata_Well"].head(5).tolist()
            raise ValueError(f"{src}: {int(empty.sum())} well(s) have no perturbation, e.g. {ex}; "
                             "fill them (fill_empty='DMSO' for solvent-only wells) or remove them")
        out.loc[empty, "Metadata_Perturbation"] = fill_empty
    out["Metadata_Perturbation"] = out["Metadata_Perturbation"].astype(str)
    keys = ["Metadata_Plate", "Metadata_Well"] if pcol else ["Metadata_Well"]
    dup = out.duplicated(keys, keep=False)
    if dup.any():
        ex = out.loc[dup, keys].astype(str).agg("/".join, axis=1).unique()[:5].tolist()
        raise ValueError(f"{src}: {int(dup.sum())} rows share a well ({ex}); one row per well")
    if "Metadata_ControlType" in out.columns:
        ct = out["Metadata_ControlType"].fillna("").astype(str).str.strip()
        ct = ct.where(~ct.str.lower().str.startswith("negcon"), "negcon")
        ct = ct.where(~ct.str.lower().str.startswith("poscon"), "poscon")
        ct = ct.where(ct.isin(["negcon", "poscon"]), "")
        out["Metadata_ControlType"] = ct
    elif negcon:
        neg, pos = set(map(str, negcon)), set(map(str, poscon or ()))
        out["Metadata_ControlType"] = np.where(out["Metadata_Perturbation"].isin(neg), "negcon",
                                               np.where(out["Metadata_Perturbation"].isin(pos),
                                                        "poscon", ""))
        if not out["Metadata_Perturbation"].isin(neg).any():
            raise ValueError(f"{src}: none of the negcon values {sorted(neg)} is a perturbation of "
                             f"the plate map (e.g. {out['Metadata_Perturbation'].unique()[:5].tolist()})")
    else:
        raise ValueError(f"{src}: no control-type column (Metadata_ControlType / control_type) and "
                         "no negcon=[...] values: baselens normalizes to negative controls, say "
                         "which perturbation they are (e.g. negcon=['DMSO'])")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- folders
@dataclass
class ImageFolder:
    """A load_data table built from a folder (``table``) and what was found (``report``)."""

    table: pd.DataFrame
    channels: list[str]
    pattern: str
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        r = self.report
        lines = [f"{r['files_matched']} image files matched pattern {self.pattern!r} "
                 f"({r['files_ignored']} other files ignored"
                 + (f", e.g. {r['ignored_examples'][:3]}" if r["ignored_examples"] else "") + ")",
                 f"{len(self.table)} sites, {self.table['Metadata_Plate'].nunique()} plate(s), "
                 f"{self.table.groupby(['Metadata_Plate', 'Metadata_Well']).ngroups} wells, "
                 f"channels {self.channels}"]
        if r.get("unmapped_channels"):
            lines.append(f"channels not in channel_map, left out: {r['unmapped_channels']}")
        if r.get("dropped_sites"):
            lines.append(f"{len(r['dropped_sites'])} site(s) dropped for missing channels: "
                         + "; ".join(r["dropped_sites"][:5]))
        if r.get("platemap"):
            pm = r["platemap"]
            lines.append(f"plate map: {pm['matched_sites']} sites matched, "
                         f"{pm['unmatched_sites']} without a plate-map row"
                         + (f" (dropped: {pm['unmatched_examples']})" if pm["unmatched_sites"] else "")
                         + f", {pm['wells_without_images']} plate-map wells without images")
        return "\n".join(lines)


def _resolve_pattern(pattern: str, names: list[str]) -> tuple[str, re.Pattern, str]:
    if pattern in PATTERNS:
        spec = PATTERNS[pattern]
        return pattern, re.compile(spec["regex"], re.IGNORECASE), spec["channel_prefix"]
    if pattern == "auto":
        best = max(PATTERNS, key=lambda k: sum(bool(re.match(PATTERNS[k]["regex"], n, re.IGNORECASE))
                                              for n in names))
        if not any(re.match(PATTERNS[best]["regex"], n, re.IGNORECASE) for n in names):
            ex = names[:5]
            raise ValueError(f"no file name matches a known pattern ({', '.join(PATTERNS)}), e.g. "
                             f"{ex}; give pattern = a regular expression with named groups "
                             "(?P<well>…) or (?P<row>…)(?P<col>…), (?P<channel>…), optional "
                             "(?P<site>…), (?P<plate>…)")
        return _resolve_pattern(best, names)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r} is neither one of {list(PATTERNS)} nor a valid "
                         f"regular expression: {exc}") from None
    groups = set(rx.groupindex)
    if "channel" not in groups or not ({"well"} <= groups or {"row", "col"} <= groups):
        raise ValueError(f"pattern {pattern!r} needs named groups (?P<channel>…) and (?P<well>…) "
                         f"(or (?P<row>…) and (?P<col>…)); it has {sorted(groups)}")
    return "custom", rx, ""


def _plate_from_path(rel: Path, folder: Path) -> str:
    """The first sub-folder under ``folder`` (a plate's folder; Harmony's ``<plate>__<date>``
    measurement folders give ``<plate>``), else the folder's own name."""
    parts = rel.parts[:-1]
    name = parts[0] if parts else folder.resolve().name
    return name.split("__")[0]


def images_to_load_data(
    folder: str | os.PathLike,
    *,
    pattern: str = "auto",
    plate: str | None = None,
    platemap: str | os.PathLike | pd.DataFrame | None = None,
    channel_map: Mapping[str, str] | str | None = None,
    plane: int | None = None,
    on_missing: str = "error",
    on_unmatched: str = "error",
    recursive: bool = True,
    platemap_options: Mapping | None = None,
) -> ImageFolder:
    """Build a load_data table from a folder of single-channel image files.

    Parameters
    ----------
    folder : path
        Searched recursively (``recursive``) for ``.tif/.tiff/.png/.jp2`` files.
    pattern : str
        ``"auto"`` (the preset of :data:`PATTERNS` matching most files), a preset name, or
        a regular expression with named groups (see :data:`PATTERNS`), matched against the
        file name.
    plate : str, optional
        Plate name for every file, when the names do not carry one. Default: the
        ``plate`` group, else the first sub-folder (``<plate>__<date>`` → ``<plate>``), else
        the folder's name.
    platemap : path or DataFrame, optional
        Joined on (plate,) well — see :func:`read_platemap` (``platemap_options`` go there).
    channel_map : dict or str, optional
        ``{name: file channel}`` (``"DNA=ch5,ER=ch4"`` or a :data:`CHANNEL_MAPS` name).
    plane : int, optional
        Keep only this z-plane (``plane`` group); without it, two files for one
        (site, channel) are an error.
    on_missing : {"error", "drop"}
        A site without some expected channel: :class:`MissingChannelError`, or leave the
        site out (listed in ``report["dropped_sites"]``).
    on_unmatched : {"error", "drop"}
        Sites whose well is not in the plate map.
    """
    if on_missing not in ("error", "drop") or on_unmatched not in ("error", "drop"):
        raise ValueError("on_missing / on_unmatched must be 'error' or 'drop'")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(f for f in (root.rglob("*") if recursive else root.glob("*"))
                   if f.is_file() and f.name.lower().endswith(_IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"{root}: no image files (.tif, .tiff, .png, .jp2)")
    name, rx, prefix = _resolve_pattern(pattern, [f.name for f in files])
    cmap = parse_channel_map(channel_map)
    rows, ignored = [], []
    for f in files:
        m = rx.match(f.name)
        if not m:
            ignored.append(f.name)
            continue
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        if "well" in g:
            well = normalize_well(g["well"])
        else:
            well = well_name(int(g['row']), int(g['col']))
        ch = g["channel"]
        ch = f"{prefix}{int(ch)}" if prefix and ch.isdigit() else ch
        rows.append({"plate": plate or g.get("plate") or _plate_from_path(f.relative_to(root), root),
                     "well": well, "site": int(g.get("site", 1)), "plane": int(g.get("plane", 1)),
                     "channel": ch, "file": f})
    if not rows:
        raise ValueError(f"{root}: no file name matches pattern {name!r} ({rx.pattern}); "
                         f"e.g. {ignored[:5]}")
    df = pd.DataFrame(rows)
    if plane is not None:
        df = df[df["plane"] == int(plane)]
        if df.empty:
            raise ValueError(f"{root}: no file of plane {plane}")
    report: dict = {"files_matched": int(len(df)), "files_ignored": len(ignored),
                    "ignored_examples": ignored[:5]}
    seen = sorted(df["channel"].unique(), key=_natural_key)
    if cmap:
        unmapped = df[~df["channel"].isin(set(cmap.values()))]
        report["unmapped_channels"] = {c: int(n) for c, n in unmapped["channel"].value_counts().items()}
        df = df[df["channel"].isin(set(cmap.values()))].copy()
        inv = {v: k for k, v in cmap.items()}
        df["channel"] = df["channel"].map(inv)
        channels = list(cmap)
    else:
        channels = sorted(df["channel"].unique(), key=_natural_key)
    key = ["plate", "well", "site"]
    dup = df.duplicated(key + ["channel"], keep=False)
    if dup.any():
        ex = df[dup].sort_values(key + ["channel"]).head(2)
        raise ValueError(
            f"{root}: {int(dup.sum())} files share a (plate, well, site, channel), e.g. "
            f"{[str(p.name) for p in ex['file']]}" + (
                "; they are z-planes: pick one with plane=1" if df.loc[dup, "plane"].nunique() > 1
                else "; give plate= or a pattern with a (?P<plate>…) group to tell plates apart"))
    wide = df.pivot(index=key, columns="channel", values="file").reindex(columns=channels)
    missing = wide.isna()
    if missing.any(axis=1).any():
        bad = missing.any(axis=1)
        msgs = []
        for idx in wide.index[bad.to_numpy()]:
            absent = [c for c in channels if pd.isna(wide.loc[idx, c])]
            found = [Path(wide.loc[idx, c]).name for c in channels if not pd.isna(wide.loc[idx, c])]
            src = f" ({', '.join(f'{c}={cmap[c]}' for c in absent)})" if cmap else ""
            msgs.append(f"plate={idx[0]} well={idx[1]} site={idx[2]} has no file for channel(s) "
                        f"{absent}{src}; found {found}")
        nowhere = [f"{c}={cmap[c]}" if cmap else c for c in channels if missing[c].all()]
        if on_missing == "error":
            raise MissingChannelError(
                f"{root}: {int(bad.sum())} of {len(wide)} site(s) miss a channel: {msgs[0]}"
                + (f" (and {len(msgs) - 1} more)" if len(msgs) > 1 else "")
                + (f"; no site has {nowhere} (the files have channels {seen})" if nowhere else "")
                + ". Choose channels every site has (channel_map), supply the files, or pass "
                "on_missing='drop' to leave these sites out.")
        report["dropped_sites"] = msgs
        wide = wide[~bad.to_numpy()]
    table = wide.reset_index().rename(columns={"plate": "Metadata_Plate", "well": "Metadata_Well",
                                               "site": "Metadata_Site"})
    rc = table["Metadata_Well"].map(lambda w: parse_well(w, default=(np.nan, np.nan)))
    table.insert(3, "Metadata_Row", rc.map(lambda t: t[0]))
    table.insert(4, "Metadata_Col", rc.map(lambda t: t[1]))
    for c in channels:
        paths = table.pop(c)
        table[f"FileName_Orig{c}"] = [Path(p).name for p in paths]
        table[f"PathName_Orig{c}"] = [str(Path(p).resolve().parent) for p in paths]
    table.columns.name = None
    if platemap is not None:
        table, report["platemap"] = _join_platemap(table, platemap, on_unmatched,
                                                   dict(platemap_options or {}))
    table = table.sort_values(["Metadata_Plate", "Metadata_Well", "Metadata_Site"]).reset_index(drop=True)
    return ImageFolder(table, channels, name, report)


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def _join_platemap(table: pd.DataFrame, platemap, on_unmatched: str, opts: dict):
    pm = read_platemap(platemap, **opts)
    keys = ["Metadata_Plate", "Metadata_Well"] if "Metadata_Plate" in pm.columns else ["Metadata_Well"]
    pm = pm.assign(**{k: pm[k].astype(str) for k in keys})
    clash = [c for c in pm.columns if c in table.columns and c not in keys]
    pm = pm.drop(columns=clash)
    merged = table.merge(pm, on=keys, how="left", indicator=True)
    miss = (merged["_merge"] == "left_only").to_numpy()
    site_ids = (merged["Metadata_Plate"].astype(str) + "/" + merged["Metadata_Well"].astype(str)
                + "/s" + merged["Metadata_Site"].astype(str))
    info = {"matched_sites": int((~miss).sum()), "unmatched_sites": int(miss.sum()),
            "unmatched_examples": site_ids[miss].head(5).tolist(),
            "wells_without_images": int(len(pm.merge(table[keys].drop_duplicates(), on=keys,
                                                     how="left", indicator=True)
                                            .query("_merge == 'left_only'"))),
            "ignored_columns": clash}
    if miss.any() and on_unmatched == "error":
        raise ValueError(f"{int(miss.sum())} of {len(merged)} site(s) have no plate-map row "
                         f"(joined on {keys}), e.g. {info['unmatched_examples']}; complete the "
                         "plate map or pass on_unmatched='drop' to leave them out")
    return merged[~miss].drop(columns="_merge").reset_index(drop=True), info


def write_load_data(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a load_data table atomically as ``.csv`` or ``.parquet``."""
    from baselens._io import write_parquet_atomic, write_text_atomic

    p = Path(path)
    if p.suffix == ".parquet":
        return write_parquet_atomic(table, p)
    if p.name.endswith(".csv"):
        return write_text_atomic(table.to_csv(index=False), p)
    raise ValueError(f"{p}: write load_data as .csv or .parquet")
