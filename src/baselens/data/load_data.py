"""Read load_data / load_data_with_illum tables and the per-channel images they point to.

The format is CellProfiler's LoadData module table as used by the Cell Painting Gallery
and JUMP: one row per imaging site, ``Metadata_*`` columns, and for each channel ``Ch``
a ``FileName_Orig<Ch>`` / ``PathName_Orig<Ch>`` pair (optionally ``FileName_Illum<Ch>`` /
``PathName_Illum<Ch>`` pointing to a ``.npy`` illumination function). baselens writes
its synthetic screens in the same format, so real and synthetic data share one reader.

Errors name the site and the file, and say what to do; nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from baselens.data import SITE_KEYS

_ORIG = re.compile(r"^FileName_Orig(?P<ch>.+)$")


class ImageReadError(RuntimeError):
    """An image of a site could not be read (missing channel, missing or corrupt file)."""


@dataclass
class LoadData:
    """A validated load_data table.

    Attributes
    ----------
    table : DataFrame
        One row per site; ``Metadata_*`` columns plus FileName/PathName columns.
    channels : list of str
        Channels read, in order (``FileName_Orig<Ch>`` present for each).
    root : Path
        Folder that relative ``PathName_*`` values are resolved against.
    path_map : dict
        Prefix replacements applied to ``PathName_*`` (e.g. an ``s3://`` prefix to a
        local mirror).
    illum : bool
        Whether to divide each channel by its illumination function.
    """

    table: pd.DataFrame
    channels: list[str]
    root: Path
    path_map: dict[str, str] = field(default_factory=dict)
    illum: bool = False

    def __len__(self) -> int:
        return len(self.table)

    @property
    def metadata(self) -> pd.DataFrame:
        cols = [c for c in self.table.columns if c.startswith("Metadata_")]
        return self.table[cols]

    def site_label(self, i: int) -> str:
        row = self.table.iloc[i]
        parts = [f"{k.removeprefix('Metadata_')}={row[k]}" for k in SITE_KEYS if k in row.index]
        return f"row {i} (" + ", ".join(parts) + ")"

    def path(self, i: int, channel: str, kind: str = "Orig") -> Path:
        """Resolved file path of ``channel`` at site ``i``."""
        row = self.table.iloc[i]
        fcol, pcol = f"FileName_{kind}{channel}", f"PathName_{kind}{channel}"
        if fcol not in row.index or pd.isna(row[fcol]) or str(row[fcol]) == "":
            raise ImageReadError(
                f"{self.site_label(i)} has no {kind.lower()} file for channel {channel!r} "
                f"(column {fcol} missing or empty). Drop the channel from `channels` or "
                f"supply the file."
            )
        directory = str(row[pcol]) if pcol in row.index and not pd.isna(row[pcol]) else ""
        for prefix, replacement in self.path_map.items():
            if directory.startswith(prefix):
                directory = replacement + directory[len(prefix):]
        if re.match(r"^[a-z0-9]+://", directory):
            raise ImageReadError(
                f"{self.site_label(i)}: channel {channel!r} lives at remote path "
                f"{directory}/{row[fcol]}. baselens reads local files: download the images and "
                f"map the prefix with path_map={{'{directory.split('/')[0]}//…': '/local/dir'}}."
            )
        p = Path(directory) / str(row[fcol])
        return p if p.is_absolute() else self.root / p

    def read_site(self, i: int) -> np.ndarray:
        """Read site ``i`` as a float32 array of shape (C, H, W) in raw intensity units."""
        if not self.channels:
            raise ImageReadError(
                f"{self.site_label(i)}: this screen has no image channels (channels = []); "
                "only representations that read no pixels (precomputed, plate_layout, random) "
                "can run on it. Give the table FileName_Orig<Channel> columns to use others.")
        planes = []
        for ch in self.channels:
            img = read_image(self.path(i, ch), site=self.site_label(i), channel=ch)
            if self.illum:
                illum = _read_illum(self.path(i, ch, kind="Illum"), self.site_label(i), ch)
                if illum.shape != img.shape:
                    raise ImageReadError(
                        f"{self.site_label(i)}: illumination function for {ch!r} has shape "
                        f"{illum.shape}, image has {img.shape}"
                    )
                img = img / np.where(illum > 0, illum, 1.0).astype(np.float32)
            planes.append(img)
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise ImageReadError(
                f"{self.site_label(i)}: channels have different shapes "
                + ", ".join(f"{c}={p.shape}" for c, p in zip(self.channels, planes))
            )
        return np.stack(planes)

    def read_sites(self, indices: Sequence[int]) -> np.ndarray:
        """Read several sites into one (N, C, H, W) float32 array."""
        stack = [self.read_site(int(i)) for i in indices]
        shapes = {s.shape for s in stack}
        if len(shapes) > 1:
            raise ImageReadError(
                f"sites in one batch have different image shapes {sorted(shapes)}; "
                "resize or crop them to one size before extraction"
            )
        return np.stack(stack)


def discover_channels(table: pd.DataFrame) -> list[str]:
    """Channels with a ``FileName_Orig<Ch>`` column, in column order."""
    return [m.group("ch") for c in table.columns if (m := _ORIG.match(c))]


def read_load_data(
    path: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    path_map: Mapping[str, str] | None = None,
    illum: bool = False,
    channel_map: Mapping[str, str] | None = None,
) -> LoadData:
    """Read and validate a load_data table (CSV, CSV.GZ or Parquet).

    Parameters
    ----------
    path : path
        The table.
    channels : list of str, optional
        Channels to read, in this order. Default: every ``FileName_Orig<Ch>`` column.
    root : path, optional
        Folder that relative ``PathName_*`` values are resolved against. Default: the
        table's folder.
    path_map : dict, optional
        Prefix replacements for ``PathName_*`` values, e.g. ``{"s3://cellpainting-gallery":
        "/data/cpg"}``.
    illum : bool
        Divide by the ``FileName_Illum<Ch>`` illumination function (CellProfiler
        ``CorrectIlluminationApply`` "Divide").
    channel_map : dict, optional
        ``{name: channel_in_table}``: rename channels whose names in the table differ from
        the ones the representations expect (e.g. ``{"DNA": "HOECHST", "Mito": "ch1"}``);
        the ``Orig`` and ``Illum`` columns are renamed together. Without ``channels``, the
        channels read are the map's names, in the map's order. See
        :func:`apply_channel_map`.

    ``channels=[]`` (explicitly empty) accepts a metadata-only table without image
    columns: a screen scored only by representations that read no pixels
    (``precomputed`` profiles or embeddings, ``plate_layout``, ``random``).

    Raises
    ------
    FileNotFoundError, ValueError
        With the offending column/channel named.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_data table not found: {path}")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    elif path.name.endswith((".csv", ".csv.gz")):
        table = pd.read_csv(path)
    else:
        raise ValueError(f"{path}: load_data tables are .csv, .csv.gz or .parquet")
    table = table.reset_index(drop=True)
    # The pediatric atlas and CytoDataFrame exports use "Image_FileName_*"; accept both.
    table = table.rename(
        columns={c: c.removeprefix("Image_") for c in table.columns
                 if c.startswith(("Image_FileName_", "Image_PathName_"))}
    )
    if channel_map:
        table = apply_channel_map(table, channel_map, source=str(path))
        if channels is None:
            channels = list(channel_map)
    available = discover_channels(table)
    metadata_only = channels is not None and len(channels) == 0
    if not available and not metadata_only:
        raise ValueError(
            f"{path}: no FileName_Orig<Channel> columns; is this a load_data table? "
            f"columns: {list(table.columns)[:12]}…"
        )
    if channels is None:
        channels = available
    missing = [c for c in channels if f"FileName_Orig{c}" not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: channel(s) {missing} requested but the table only has {available}"
        )
    for key in ("Metadata_Plate", "Metadata_Well"):
        if key not in table.columns:
            raise ValueError(f"{path}: required column {key} is missing")
    if "Metadata_Site" not in table.columns:
        table["Metadata_Site"] = 1
    table["Metadata_Site"] = _to_int_if_possible(table["Metadata_Site"])
    for key in ("Metadata_Source", "Metadata_Batch"):
        if key not in table.columns:
            table[key] = "unknown"
    dup = table.duplicated(["Metadata_Plate", "Metadata_Well", "Metadata_Site"], keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        raise ValueError(
            f"{path}: {int(dup.sum())} rows share a (plate, well, site), e.g. "
            f"{first['Metadata_Plate']}/{first['Metadata_Well']}/{first['Metadata_Site']}"
        )
    if illum:
        no_illum = [c for c in channels if f"FileName_Illum{c}" not in table.columns]
        if no_illum:
            raise ValueError(f"{path}: illum=True but no FileName_Illum column for {no_illum}")
    return LoadData(
        table=table,
        channels=list(channels),
        root=Path(root) if root is not None else path.parent,
        path_map=dict(path_map or {}),
        illum=illum,
    )


def apply_channel_map(table: pd.DataFrame, channel_map: Mapping[str, str], *,
                      source: str = "") -> pd.DataFrame:
    """Rename channel columns: ``{new_name: old_name}``.

    ``FileName_/PathName_`` ``Orig<old>`` and ``Illum<old>`` become ``...<new>``. Swaps
    (``{"A": "B", "B": "A"}``) are allowed; a new name that is already another,
    unmapped channel of the table is an error, as is an ``old`` channel the table lacks.
    """
    where = f"{source}: " if source else ""
    available = discover_channels(table)
    missing = [old for old in channel_map.values() if str(old) not in available]
    if missing:
        raise ValueError(f"{where}channel_map names channel(s) {missing} that the table does not "
                         f"have; its channels are {available}")
    olds = [str(v) for v in channel_map.values()]
    if len(set(olds)) != len(olds):
        raise ValueError(f"{where}channel_map maps two names to the same channel: {dict(channel_map)}")
    clash = [new for new in channel_map if new in available and new not in olds]
    if clash:
        raise ValueError(f"{where}channel_map renames a channel to {clash}, which the table "
                         "already has as another channel; map that one too or pick another name")
    rename = {}
    for new, old in channel_map.items():
        for kind in ("FileName_Orig", "PathName_Orig", "FileName_Illum", "PathName_Illum"):
            if f"{kind}{old}" in table.columns:
                rename[f"{kind}{old}"] = f"{kind}{new}"
    return table.rename(columns=rename)


def _to_int_if_possible(s: pd.Series) -> pd.Series:
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all() and (num == num.round()).all():
        return num.astype("int64")
    return s.astype(str)


def read_image(path: Path, *, site: str = "", channel: str = "") -> np.ndarray:
    """Read one single-channel image (TIFF or PNG/JPEG) as float32 (H, W).

    Raises
    ------
    ImageReadError
        If the file is missing, cannot be decoded, or is not a 2-D image.
    """
    where = f"{site}, channel {channel!r}: " if site else ""
    if not path.exists():
        raise ImageReadError(f"{where}image file not found: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            img = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            img = iio.imread(path)
    except Exception as exc:  # decoder errors come in many types
        if "imagecodecs" in str(exc):
            raise ImageReadError(f"{where}{path} is compressed with a codec that needs the "
                                 f"'imagecodecs' package: pip install imagecodecs ({exc})") from exc
        raise ImageReadError(f"{where}could not read image {path}: {exc}. "
                             "The file is corrupt or truncated; re-download or regenerate it.") from exc
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] in (3, 4) and path.suffix.lower() not in (".tif", ".tiff"):
        img = img[..., :3].mean(axis=-1)
    img = np.squeeze(img)
    if img.ndim != 2:
        raise ImageReadError(f"{where}{path} has shape {img.shape}; expected one 2-D plane per file")
    return img.astype(np.float32, copy=False)


def _read_illum(path: Path, site: str, channel: str) -> np.ndarray:
    if not path.exists():
        raise ImageReadError(f"{site}, channel {channel!r}: illumination file not found: {path}")
    try:
        return np.load(path).astype(np.float32)
    except Exception as exc:
        raise ImageReadError(f"{site}, channel {channel!r}: could not read {path}: {exc}") from exc
