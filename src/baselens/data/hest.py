"""HEST-1k / HEST-Benchmark reader and the coarsened HEST-1k-1NN variant (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) C.3, E.2).

arXiv 2603.13377 scores tissue representations on spatial transcriptomics: H&E patches of
112 µm (224 px at 0.5 µm/px, "20x") centred on ST spots, paired with the expression of
the 50 most variable genes of each task, plus CellViT nuclei segmentations whose
centroids feed the structure-only baselines.

On-disk layout read here (HEST-1k as published by mahmoodlab/HEST; the benchmark folder
``bench_data/<TASK>/`` is the same with ``adata/`` instead of ``st/``)::

    <task dir>/
      patches/<id>.h5            img (N, H, W, 3) uint8, coords (N, 2) top-left corner of
                                 each patch in full-resolution WSI px (x, y), barcode (N, 1)
      st/<id>.h5ad | adata/<id>.h5ad
                                 raw counts X (dense or CSR), obs index = barcodes,
                                 obsm/spatial = spot centres (x, y) in full-res px
      metadata/<id>.json         optional: pixel_size_um_estimated (µm per full-res px),
                                 patient, dataset_title, oncotree_code, ...
                                 (baselens extension: patch_pixel_size_um, default 0.5)
      cellvit_seg/<id>_cellvit_seg.parquet | .geojson
                                 optional: nuclei polygons in full-res px (x, y); GeoParquet
                                 WKB ``geometry`` or plain x/y columns, GeoJSON features
      var_50genes.json           optional: {"genes": [...]} (else ``genes=`` or the 50 most
                                 variable log1p genes are chosen and reported)
      splits/train_<k>.csv, test_<k>.csv
                                 optional: sample_id, patches_path, expr_path (patient folds)
      ground_truth/              synthetic data only (:mod:`baselens.data.tissue`)

``root`` may be such a task folder, or a folder holding task folders (``task=`` picks
one; ``bench_data/`` is looked into too).

Targets follow the HEST-Benchmark (``hest.bench.st_dataset.load_adata(normalize=True)``):
``log1p`` of the raw counts of the selected genes. Nuclei centroids are binned into each
patch's footprint in the full-res slide (arXiv 2603.13377 E.2) and given in patch pixels
(row, col). A spot's patient comes from ``metadata/<id>.json`` (``dataset_title`` +
``patient``, the grouping HEST uses to build its splits), else from the test split that
holds the sample, else the sample itself.
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "TissueDataset",
    "read_hest",
    "coarsen_1nn",
    "grid_neighbours",
    "dataset_from_arrays",
    "read_rgb",
    "write_patches_h5",
    "write_h5ad",
    "write_cellvit_geojson",
    "nuclei_centroids",
    "HEST_PATCH_PIXEL_SIZE_UM",
]

#: HEST patches are resampled to 0.5 µm/px (``HESTData.dump_patches`` target_pixel_size).
HEST_PATCH_PIXEL_SIZE_UM = 0.5


# ------------------------------------------------------------------------------ dataset
class ArrayPatchReader:
    """Patches held in memory, (N, H, W, 3) uint8."""

    def __init__(self, images: np.ndarray) -> None:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"patches must have shape (N, H, W, 3), got {images.shape}")
        self.images = images

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.images[idx], dtype=np.uint8)


class SubsetPatchReader:
    """Patches ``idx`` of another reader (a dataset's :meth:`TissueDataset.subset`);
    a class, not a closure, so that a dataset pickles to worker processes."""

    def __init__(self, base: Callable[[np.ndarray], np.ndarray], idx: np.ndarray) -> None:
        self.base, self.idx = base, np.asarray(idx, dtype=np.int64)

    def __call__(self, j: np.ndarray) -> np.ndarray:
        return self.base(self.idx[np.asarray(j, dtype=np.int64)])


class H5PatchReader:
    """Patches read lazily from HEST ``patches/<id>.h5`` files (``img`` dataset)."""

    def __init__(self, files: Sequence[str | Path], file_index: np.ndarray, row: np.ndarray) -> None:
        self.files = [str(f) for f in files]
        self.file_index = np.asarray(file_index, dtype=np.int64)
        self.row = np.asarray(row, dtype=np.int64)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        import h5py

        idx = np.asarray(idx, dtype=np.int64)
        out: np.ndarray | None = None
        for f in np.unique(self.file_index[idx]):
            pos = np.flatnonzero(self.file_index[idx] == f)
            rows = self.row[idx[pos]]
            uniq, inv = np.unique(rows, return_inverse=True)  # h5py wants increasing indices
            with h5py.File(self.files[f], "r") as h5:
                img = _img_dataset(h5, self.files[f])
                block = np.asarray(img[uniq.tolist()], dtype=np.uint8)
            if out is None:
                out = np.zeros((len(idx),) + block.shape[1:], np.uint8)
            if block.shape[1:] != out.shape[1:]:
                raise ValueError(f"{self.files[f]}: patches of {block.shape[1:]} differ from "
                                 f"{out.shape[1:]} of other samples; read tasks one at a time")
            out[pos] = block[inv]
        return out if out is not None else np.zeros((0, 0, 0, 3), np.uint8)


class MosaicPatchReader:
    """Coarsened (1NN) patches: the member patches pasted at their slide positions on a
    canvas covering the square crop, uncovered pixels filled with the members' mean
    colour, resized (bilinear, antialiased) to ``out_size``."""

    def __init__(self, base: Callable[[np.ndarray], np.ndarray], members: list[np.ndarray],
                 offsets: list[np.ndarray], canvas: np.ndarray, out_size: int) -> None:
        self.base, self.members, self.offsets = base, members, offsets
        self.canvas = np.asarray(canvas, dtype=np.int64)  # canvas side in source-patch px
        self.out_size = int(out_size)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        from PIL import Image

        idx = np.asarray(idx, dtype=np.int64)
        out = np.zeros((len(idx), self.out_size, self.out_size, 3), np.uint8)
        for k, i in enumerate(idx):
            tiles = self.base(self.members[i])
            side = int(self.canvas[i])
            canvas = np.empty((side, side, 3), np.float32)
            canvas[:] = tiles.reshape(-1, 3).mean(0)
            h, w = tiles.shape[1:3]
            for t, (r0, c0) in zip(tiles, self.offsets[i]):
                r0, c0 = int(round(r0)), int(round(c0))
                ra, ca = max(r0, 0), max(c0, 0)
                rb, cb = min(r0 + h, side), min(c0 + w, side)
                if rb > ra and cb > ca:
                    canvas[ra:rb, ca:cb] = t[ra - r0:rb - r0, ca - c0:cb - c0]
            img = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
            if side != self.out_size:
                img = img.resize((self.out_size, self.out_size), Image.BILINEAR, reducing_gap=None)
            out[k] = np.asarray(img)
        return out


@dataclass
class TissueDataset:
    """Spots of H&E patches paired with gene expression (one row per spot).

    Attributes
    ----------
    spots : DataFrame
        ``Metadata_Spot`` (unique str), ``Metadata_Sample``, ``Metadata_Patient``,
        ``Metadata_Task``, ``Metadata_X``, ``Metadata_Y`` (spot centre, full-res px of the
        sample), ``Metadata_Barcode``, ``Metadata_Fold`` (test split holding the sample,
        -1 if none), ``Metadata_PatchSize`` (patch side, px),
        ``Metadata_FullresPixelSize`` (µm per full-res px), ``Metadata_NCells``, and
        ``Metadata_ArrayRow`` / ``Metadata_ArrayCol`` when the expression file has
        ``array_row`` / ``array_col``; synthetic data add ``Metadata_Class``; coarsened
        data ``Metadata_NNeighbours``.
    targets : DataFrame
        Same row order; one float column per gene: ``log1p`` expression.
    pixel_size_um : ndarray (n,)
        µm per patch pixel.
    nuclei : list of ndarray
        Per spot, (k, 2) nuclei centroids (row, col) in patch pixels.
    root : Path or None
    gene_drivers : DataFrame or None
        Synthetic only: index gene; ``driver`` in {density, clustering, regularity,
        appearance, mixed} and the weights ``w_<driver>`` of each latent driver.
    latents : DataFrame or None
        Synthetic only: per spot (same row order) the standardized latent drivers
        ``GT_density``, ``GT_clustering``, ``GT_regularity``, ``GT_appearance``.
    info : dict
        Counts of everything dropped or assumed while reading (never silent).
    """

    spots: pd.DataFrame
    targets: pd.DataFrame
    pixel_size_um: np.ndarray
    nuclei: list
    root: Path | None
    gene_drivers: pd.DataFrame | None = None
    latents: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)
    reader: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.spots)
        if len(self.targets) != n or len(self.pixel_size_um) != n or len(self.nuclei) != n:
            raise ValueError(f"TissueDataset: spots ({n}), targets ({len(self.targets)}), pixel_size_um "
                             f"({len(self.pixel_size_um)}) and nuclei ({len(self.nuclei)}) must have one row per spot")
        if not self.spots["Metadata_Spot"].is_unique:
            dup = self.spots["Metadata_Spot"][self.spots["Metadata_Spot"].duplicated()].iloc[0]
            raise ValueError(f"TissueDataset: Metadata_Spot must be unique, {dup!r} repeats")
        self.pixel_size_um = np.asarray(self.pixel_size_um, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.spots)

    def patches(self, idx: Sequence[int]) -> np.ndarray:
        """(len(idx), H, W, 3) uint8 RGB patches, read on demand."""
        if self.reader is None:
            raise RuntimeError("this TissueDataset has no patch images")
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"spot index out of range 0..{len(self) - 1}")
        return self.reader(idx)

    @property
    def n_cells(self) -> np.ndarray:
        """Nuclei per spot."""
        return np.array([len(p) for p in self.nuclei], dtype=np.float64)

    @property
    def genes(self) -> list[str]:
        return list(self.targets.columns)

    def subset(self, idx: Sequence[int]) -> "TissueDataset":
        """The spots ``idx`` (in that order) as a new dataset sharing the patch files."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        base = self.reader
        reader = None if base is None else SubsetPatchReader(base, idx)
        return replace(
            self,
            spots=self.spots.iloc[idx].reset_index(drop=True),
            targets=self.targets.iloc[idx].reset_index(drop=True),
            pixel_size_um=self.pixel_size_um[idx],
            nuclei=[self.nuclei[i] for i in idx],
            latents=None if self.latents is None else self.latents.iloc[idx].reset_index(drop=True),
            info=dict(self.info),
            reader=reader,
        )


def dataset_from_arrays(images: np.ndarray, *, targets: pd.DataFrame | None = None,
                        pixel_size_um: float | np.ndarray = HEST_PATCH_PIXEL_SIZE_UM,
                        nuclei: list | None = None, sample: str = "sample0", patient: str | None = None,
                        task: str = "images") -> TissueDataset:
    """A :class:`TissueDataset` over in-memory RGB patches (N, H, W, 3) uint8, e.g. a
    real H&E image (:func:`read_rgb`) for a smoke test; spots laid out on a row."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    n, h = len(images), images.shape[1]
    px = np.broadcast_to(np.asarray(pixel_size_um, dtype=np.float64), (n,)).copy()
    spots = pd.DataFrame({
        "Metadata_Spot": [f"{sample}_{i}" for i in range(n)],
        "Metadata_Sample": sample,
        "Metadata_Patient": patient or sample,
        "Metadata_Task": task,
        "Metadata_X": (np.arange(n) + 0.5) * images.shape[2],
        "Metadata_Y": h / 2.0,
        "Metadata_Barcode": [str(i) for i in range(n)],
        "Metadata_Fold": -1,
        "Metadata_PatchSize": h,
        "Metadata_FullresPixelSize": px,
    })
    nuc = nuclei if nuclei is not None else [np.zeros((0, 2)) for _ in range(n)]
    spots["Metadata_NCells"] = [len(p) for p in nuc]
    tg = targets if targets is not None else pd.DataFrame(index=range(n))
    return TissueDataset(spots, tg.reset_index(drop=True), px, [np.asarray(p, float).reshape(-1, 2) for p in nuc],
                         None, reader=ArrayPatchReader(images))


def read_rgb(path: str | Path) -> np.ndarray:
    """An RGB image file (JPEG/PNG/TIFF) as (H, W, 3) uint8 (grey repeated, alpha dropped)."""
    import imageio.v3 as iio

    img = np.asarray(iio.imread(path))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise ValueError(f"{path}: expected an RGB image, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        hi = float(img.max()) or 1.0
        img = np.clip(img.astype(np.float64) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img


# ------------------------------------------------------------------------------ writers
def write_patches_h5(path: str | Path, img: np.ndarray, coords: np.ndarray, barcodes: Sequence[str]) -> Path:
    """A HEST ``patches/<id>.h5``: ``img`` (N, H, W, 3) uint8, ``coords`` (N, 2) int top-left
    (x, y) full-res px, ``barcode`` (N, 1) bytes. Written to a temp name, then moved."""
    import os

    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("img", data=np.asarray(img, np.uint8), chunks=(1,) + tuple(np.shape(img)[1:]),
                         compression="gzip", compression_opts=1)
        f.create_dataset("coords", data=np.asarray(coords, np.int64))
        f.create_dataset("barcode", data=np.asarray([[str(b).encode()] for b in barcodes]))
    os.replace(tmp, path)
    return path


def _write_h5_frame(group, df: pd.DataFrame, index: Sequence[str]) -> None:
    import h5py

    str_dt = h5py.string_dtype()
    group.attrs["encoding-type"] = "dataframe"
    group.attrs["encoding-version"] = "0.2.0"
    group.attrs["_index"] = "_index"
    group.attrs["column-order"] = np.array([str(c) for c in df.columns], dtype=object).astype(str_dt)
    ds = group.create_dataset("_index", data=np.array([str(i) for i in index], dtype=object), dtype=str_dt)
    ds.attrs["encoding-type"] = "string-array"
    ds.attrs["encoding-version"] = "0.2.0"
    for col in df.columns:
        v = df[col].to_numpy()
        if v.dtype.kind in "OUS":
            d = group.create_dataset(col, data=v.astype(str).astype(object), dtype=str_dt)
            d.attrs["encoding-type"] = "string-array"
        else:
            d = group.create_dataset(col, data=v)
            d.attrs["encoding-type"] = "array"
        d.attrs["encoding-version"] = "0.2.0"


def write_h5ad(path: str | Path, X: np.ndarray, obs_names: Sequence[str], var_names: Sequence[str], *,
               obs: pd.DataFrame | None = None, obsm: dict | None = None) -> Path:
    """A minimal AnnData ``.h5ad`` (dense ``X``, obs/var frames, ``obsm``) with h5py only,
    in the on-disk encoding anndata >= 0.8 reads."""
    import os

    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    X = np.asarray(X)
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        x = f.create_dataset("X", data=X)
        x.attrs["encoding-type"] = "array"
        x.attrs["encoding-version"] = "0.2.0"
        _write_h5_frame(f.create_group("obs"), obs if obs is not None else pd.DataFrame(index=range(len(obs_names))),
                        obs_names)
        _write_h5_frame(f.create_group("var"), pd.DataFrame(), var_names)
        g = f.create_group("obsm")
        g.attrs["encoding-type"] = "dict"
        g.attrs["encoding-version"] = "0.1.0"
        for k, v in (obsm or {}).items():
            d = g.create_dataset(k, data=np.asarray(v))
            d.attrs["encoding-type"] = "array"
            d.attrs["encoding-version"] = "0.2.0"
        for name in ("uns", "layers", "varm", "obsp", "varp"):
            grp = f.create_group(name)
            grp.attrs["encoding-type"] = "dict"
            grp.attrs["encoding-version"] = "0.1.0"
    os.replace(tmp, path)
    return path


def write_cellvit_geojson(path: str | Path, polygons: Sequence[np.ndarray]) -> Path:
    """Nuclei outlines as a GeoJSON FeatureCollection (CellViT/HEST style): one Polygon per
    nucleus, ``polygons[i]`` an (m, 2) array of (x, y) full-res px vertices."""
    from baselens._io import write_text_atomic

    feats = []
    for i, p in enumerate(polygons):
        ring = np.round(np.asarray(p, float), 2).tolist()
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        feats.append({"type": "Feature", "id": str(i), "properties": {"objectType": "nucleus"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return write_text_atomic(json.dumps({"type": "FeatureCollection", "features": feats}, separators=(",", ":")), path)


# ------------------------------------------------------------------------------ nuclei
def _ring_centroid(ring: np.ndarray) -> tuple[np.ndarray, float]:
    """Area centroid (x, y) and |area| of a closed or open ring (shoelace)."""
    ring = np.asarray(ring, float)[:, :2]
    if len(ring) == 0:
        return np.array([np.nan, np.nan]), 0.0
    x, y = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-12:
        return ring.mean(0), 0.0
    return np.array([((x + x1) * cross).sum() / (6 * a), ((y + y1) * cross).sum() / (6 * a)]), abs(a)


def _geometry_centroid(geom: dict) -> np.ndarray:
    t = geom.get("type")
    c = geom.get("coordinates")
    if t == "Point":
        return np.asarray(c[:2], float)
    if t == "Polygon":
        return _ring_centroid(np.asarray(c[0], float))[0]
    if t == "MultiPolygon":
        cs = [_ring_centroid(np.asarray(p[0], float)) for p in c]
        w = np.array([a for _, a in cs])
        pts = np.array([p for p, _ in cs])
        return pts.mean(0) if w.sum() <= 0 else (pts * w[:, None]).sum(0) / w.sum()
    raise ValueError(f"unsupported GeoJSON geometry {t!r}")


def _wkb_centroid(buf: bytes) -> np.ndarray:
    """Centroid of a WKB Point / Polygon / MultiPolygon (what GeoParquet stores)."""
    def parse(off: int):
        order = "<" if buf[off] == 1 else ">"
        (gtype,) = struct.unpack_from(order + "I", buf, off + 1)
        gtype &= 0xFFFF
        has_z = gtype > 1000
        gtype %= 1000
        dim = 3 if has_z else 2
        off += 5
        if gtype == 1:
            xy = struct.unpack_from(order + "d" * dim, buf, off)
            return [(np.array(xy[:2]), 0.0)], off + 8 * dim
        if gtype == 3:
            (nr,) = struct.unpack_from(order + "I", buf, off)
            off += 4
            out = None
            for r in range(nr):
                (npts,) = struct.unpack_from(order + "I", buf, off)
                off += 4
                pts = np.frombuffer(buf, dtype=np.dtype(order + "f8"), count=npts * dim, offset=off).reshape(npts, dim)
                off += 8 * npts * dim
                if r == 0:
                    out = _ring_centroid(pts)
            return [out], off
        if gtype == 6 or gtype == 4:
            (n,) = struct.unpack_from(order + "I", buf, off)
            off += 4
            parts = []
            for _ in range(n):
                p, off = parse(off)
                parts += p
            return parts, off
        raise ValueError(f"unsupported WKB geometry type {gtype}")

    parts, _ = parse(0)
    pts = np.array([p for p, _ in parts])
    w = np.array([a for _, a in parts])
    return pts.mean(0) if w.sum() <= 0 else (pts * w[:, None]).sum(0) / w.sum()


def nuclei_centroids(path: str | Path) -> np.ndarray:
    """(n, 2) nuclei centroids (x, y) in full-res px from a CellViT segmentation file:
    GeoJSON (FeatureCollection or a list of features; Polygon / MultiPolygon / Point),
    GeoParquet with a WKB ``geometry`` column, or a Parquet/CSV table with ``x``/``y``
    (or ``centroid_x``/``centroid_y``) columns."""
    path = Path(path)
    if path.suffix in (".geojson", ".json"):
        data = json.loads(path.read_text())
        feats = data.get("features", []) if isinstance(data, dict) else data
        pts = [_geometry_centroid(f["geometry"] if "geometry" in f else f) for f in feats]
        return np.asarray(pts, float).reshape(-1, 2)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for cx, cy in (("x", "y"), ("centroid_x", "centroid_y"), ("X", "Y")):
        if cx in df.columns and cy in df.columns:
            return df[[cx, cy]].to_numpy(np.float64)
    if "geometry" in df.columns:
        return np.asarray([_wkb_centroid(bytes(g)) for g in df["geometry"]], float).reshape(-1, 2)
    raise ValueError(f"{path}: no 'geometry' (WKB) nor x/y centroid columns; columns are {list(df.columns)[:10]}")


def _bin_nuclei(cent_xy: np.ndarray, left: np.ndarray, top: np.ndarray, foot: np.ndarray,
                patch_px: np.ndarray) -> list[np.ndarray]:
    """Nuclei (x, y full-res) inside each footprint [left, left+foot) × [top, top+foot),
    as (row, col) patch px (arXiv 2603.13377 E.2: cells binned by estimated patch)."""
    out = []
    if len(cent_xy) == 0:
        return [np.zeros((0, 2)) for _ in left]
    order = np.argsort(cent_xy[:, 0])
    xs = cent_xy[order, 0]
    for l, t, f, p in zip(left, top, foot, patch_px):
        a, b = np.searchsorted(xs, [l, l + f])
        c = cent_xy[order[a:b]]
        c = c[(c[:, 1] >= t) & (c[:, 1] < t + f)]
        s = p / f
        out.append(np.column_stack([(c[:, 1] - t) * s, (c[:, 0] - l) * s]))
    return out


# ------------------------------------------------------------------------------ reader
def _img_dataset(h5, path):
    for key in ("img", "imgs", "images"):
        if key in h5:
            return h5[key]
    raise ValueError(f"{path}: no 'img' dataset (found {list(h5.keys())}); is this a HEST patches .h5?")


def _decode(a) -> np.ndarray:
    a = np.asarray(a).reshape(len(a), -1)[:, 0] if np.ndim(a) > 1 else np.asarray(a)
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a], dtype=object)


def _is_task_dir(p: Path) -> bool:
    return (p / "patches").is_dir() and ((p / "st").is_dir() or (p / "adata").is_dir())


def _task_dir(root: Path, task: str | None) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"HEST root {root} does not exist")
    if task is not None:
        for cand in (root / task, root / "bench_data" / task):
            if _is_task_dir(cand):
                return cand
        if _is_task_dir(root):
            return root
        raise FileNotFoundError(f"no task folder {task!r} under {root} (need patches/ and st/ or adata/ in it)")
    if _is_task_dir(root):
        return root
    base = root / "bench_data" if (root / "bench_data").is_dir() else root
    tasks = sorted(p.name for p in base.iterdir() if _is_task_dir(p))
    if len(tasks) == 1:
        return base / tasks[0]
    raise ValueError(f"{root} is not a HEST task folder (patches/ + st/ or adata/); "
                     + (f"it holds tasks {tasks}: pass task=..." if tasks else "found no task folders in it"))


def _read_expression(path: Path, barcodes: np.ndarray, genes: Sequence[str] | None):
    """(counts (n, g) float64 of the rows ``barcodes`` and columns ``genes``, var names,
    spatial (n, 2) or None, obs frame)."""
    import h5py

    from baselens.data.embeddings import _h5_frame

    with h5py.File(path, "r") as f:
        var = _h5_frame(f["var"])
        var_names = var["obs_names"].astype(str).to_numpy() if "obs_names" in var else np.array(
            [str(i) for i in range(len(var))])
        obs = _h5_frame(f["obs"])
        obs_names = obs["obs_names"].astype(str).to_numpy()
        pos = pd.Series(np.arange(len(obs_names)), index=obs_names)
        missing = [b for b in barcodes if b not in pos.index]
        if missing:
            raise ValueError(f"{path}: {len(missing)} patch barcodes not in obs (e.g. {missing[:3]}); "
                             "patches and expression must come from the same sample")
        rows = pos.loc[list(barcodes)].to_numpy()
        cols = np.arange(len(var_names)) if genes is None else None
        if genes is not None:
            vpos = pd.Series(np.arange(len(var_names)), index=var_names)
            vpos = vpos[~vpos.index.duplicated()]
            absent = [g for g in genes if g not in vpos.index]
            if absent:
                raise ValueError(f"{path}: genes {absent[:5]} ({len(absent)} in all) not in var; "
                                 "pass genes= present in every sample")
            cols = vpos.loc[list(genes)].to_numpy()
        node = f["X"]
        if isinstance(node, h5py.Group):
            from scipy import sparse

            enc = node.attrs.get("encoding-type", b"")
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            shape = tuple(int(s) for s in node.attrs["shape"])
            cls = sparse.csr_matrix if enc.startswith("csr") else sparse.csc_matrix
            m = cls((node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape)
            x = np.asarray(m[rows][:, cols].toarray(), np.float64)
        else:
            x = np.asarray(node[()], np.float64)[rows][:, cols]
        spatial = np.asarray(f["obsm"]["spatial"][()], np.float64)[rows] if "obsm" in f and "spatial" in f["obsm"] else None
    return x, var_names[cols], spatial, obs.iloc[rows].reset_index(drop=True)


def _top_variable(x: np.ndarray, names: np.ndarray, k: int) -> list[str]:
    v = np.log1p(x).var(0)
    keep = np.argsort(-v, kind="stable")[:k]
    return [str(names[i]) for i in keep]


def read_hest(root: str | Path, task: str | None = None, *, genes: Sequence[str] | None = None,
              sample_ids: Sequence[str] | None = None, n_genes: int = 50) -> TissueDataset:
    """Read a HEST-1k / HEST-Benchmark task folder (layout in the module docstring).

    Parameters
    ----------
    root : path
        A task folder, or a folder (or its ``bench_data/``) holding task folders.
    task : str, optional
        Task folder name (``IDC``, ``PRAD``, ... or ``synthetic``); needed when ``root``
        holds several.
    genes : list of str, optional
        Target genes; default ``var_50genes.json`` of the task, else the ``n_genes`` genes
        of highest variance of log1p counts over all spots (recorded in ``info``).
    sample_ids : list of str, optional
        Samples to read (default: every ``patches/*.h5`` with an expression file).

    Returns
    -------
    TissueDataset
        Patches stay on disk (read by :meth:`TissueDataset.patches`).
    """
    import h5py

    tdir = _task_dir(Path(root), task)
    task_name = task or tdir.name
    expr_dir = tdir / "st" if (tdir / "st").is_dir() else tdir / "adata"
    info: dict = {"layout": "hest-1k" if expr_dir.name == "st" else "hest-bench", "task_dir": str(tdir)}
    available = sorted(p.stem for p in (tdir / "patches").glob("*.h5"))
    if sample_ids is None:
        ids = [s for s in available if (expr_dir / f"{s}.h5ad").is_file()]
        no_expr = sorted(set(available) - set(ids))
        if no_expr:
            info["samples_without_expression"] = no_expr
            warnings.warn(f"{tdir}: {len(no_expr)} patch files without {expr_dir.name}/<id>.h5ad skipped: {no_expr[:5]}")
    else:
        ids = [str(s) for s in sample_ids]
        bad = [s for s in ids if not (tdir / "patches" / f"{s}.h5").is_file() or not (expr_dir / f"{s}.h5ad").is_file()]
        if bad:
            raise FileNotFoundError(f"{tdir}: samples {bad} lack patches/<id>.h5 or {expr_dir.name}/<id>.h5ad")
    if not ids:
        raise FileNotFoundError(f"{tdir}: no samples (patches/<id>.h5 with {expr_dir.name}/<id>.h5ad)")

    # folds from the benchmark splits: the test split holding each sample
    fold_of: dict[str, int] = {}
    for p in sorted((tdir / "splits").glob("test_*.csv")) if (tdir / "splits").is_dir() else []:
        try:
            k = int(p.stem.split("_")[-1])
        except ValueError:
            continue
        for s in pd.read_csv(p)["sample_id"].astype(str):
            fold_of.setdefault(s, k)
    if genes is None and (tdir / "var_50genes.json").is_file():
        genes = list(json.loads((tdir / "var_50genes.json").read_text())["genes"])
        info["genes_from"] = "var_50genes.json"

    frames, counts, nuclei, px, files, file_idx, rows = [], [], [], [], [], [], []
    no_meta, no_seg = [], []
    for si, sid in enumerate(ids):
        meta_path = tdir / "metadata" / f"{sid}.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if not meta:
            no_meta.append(sid)
        h5_path = tdir / "patches" / f"{sid}.h5"
        with h5py.File(h5_path, "r") as h5:
            img = _img_dataset(h5, h5_path)
            n, psize = int(img.shape[0]), int(img.shape[1])
            coords = np.asarray(h5["coords"][()], np.float64).reshape(n, 2)
            if "barcode" in h5 or "barcodes" in h5:
                barcodes = _decode(h5["barcode" if "barcode" in h5 else "barcodes"][()])
            else:
                raise ValueError(f"{h5_path}: no 'barcode' dataset; cannot pair patches with expression")
        fullres_um = float(meta.get("pixel_size_um_estimated") or meta.get("pixel_size_um_embedded") or np.nan)
        patch_um = float(meta.get("patch_pixel_size_um", HEST_PATCH_PIXEL_SIZE_UM))
        if not np.isfinite(fullres_um):
            fullres_um = patch_um
        foot = psize * patch_um / fullres_um  # patch side in full-res px
        x, var_names, spatial, obs = _read_expression(expr_dir / f"{sid}.h5ad", barcodes, genes)
        if genes is None:
            counts.append((x, var_names))
        else:
            counts.append(x)
        centre = spatial if spatial is not None else coords + foot / 2.0
        pat = meta.get("patient")
        pat = None if pat is None or (isinstance(pat, float) and np.isnan(pat)) or str(pat) == "" else str(pat)
        if pat is not None and meta.get("dataset_title"):
            patient = f"{meta['dataset_title']}: {pat}"
        elif pat is not None:
            patient = pat
        elif sid in fold_of:
            patient = f"{task_name}_fold{fold_of[sid]}"
        else:
            patient = sid
        df = pd.DataFrame({
            "Metadata_Spot": [f"{sid}_{b}" for b in barcodes],
            "Metadata_Sample": sid,
            "Metadata_Patient": patient,
            "Metadata_Task": task or str(meta.get("task") or task_name),
            "Metadata_X": centre[:, 0],
            "Metadata_Y": centre[:, 1],
            "Metadata_Barcode": barcodes.astype(str),
            "Metadata_Fold": fold_of.get(sid, -1),
            "Metadata_PatchSize": psize,
            "Metadata_FullresPixelSize": fullres_um,
        })
        for c in ("array_row", "array_col"):
            if c in obs.columns:
                df[f"Metadata_{c.title().replace('_', '')}"] = obs[c].to_numpy()
        frames.append(df)
        px.append(np.full(n, patch_um))
        files.append(h5_path)
        file_idx.append(np.full(n, si))
        rows.append(np.arange(n))
        seg = None
        for d in (tdir / "cellvit_seg", Path(root) / "cellvit_seg"):
            for ext in (".parquet", ".geojson"):
                if (d / f"{sid}_cellvit_seg{ext}").is_file():
                    seg = d / f"{sid}_cellvit_seg{ext}"
                    break
            if seg is not None:
                break
        if seg is None:
            no_seg.append(sid)
            nuclei += [np.zeros((0, 2)) for _ in range(n)]
        else:
            cent = nuclei_centroids(seg)
            nuclei += _bin_nuclei(cent, coords[:, 0], coords[:, 1], np.full(n, foot), np.full(n, psize))

    if genes is None:
        common = set(counts[0][1])
        for _, v in counts[1:]:
            common &= set(v)
        names = np.array([g for g in counts[0][1] if g in common])
        mats = [pd.DataFrame(x, columns=v)[list(names)].to_numpy() for x, v in counts]
        genes = _top_variable(np.vstack(mats), names, n_genes)
        info["genes_from"] = f"top {len(genes)} variance of log1p counts over {len(names)} shared genes"
        counts = [pd.DataFrame(m, columns=names)[genes].to_numpy() for m in mats]
    spots = pd.concat(frames, ignore_index=True)
    targets = pd.DataFrame(np.log1p(np.vstack(counts)), columns=[str(g) for g in genes])
    if no_meta:
        info["samples_without_metadata"] = no_meta
    if no_seg:
        info["samples_without_nuclei"] = no_seg
        warnings.warn(f"{tdir}: no cellvit_seg for {len(no_seg)} sample(s) {no_seg[:5]}: their spots have no nuclei")
    info["has_nuclei"] = len(no_seg) < len(ids)
    info["target_transform"] = "log1p"
    spots["Metadata_NCells"] = [len(p) for p in nuclei]

    gene_drivers = latents = None
    gt = tdir / "ground_truth"
    if (gt / "spots.parquet").is_file():
        g = pd.read_parquet(gt / "spots.parquet").set_index("Metadata_Spot")
        missing = sorted(set(spots["Metadata_Spot"]) - set(g.index))
        if missing:
            raise ValueError(f"{gt / 'spots.parquet'}: {len(missing)} spots missing (e.g. {missing[:3]})")
        g = g.loc[spots["Metadata_Spot"]].reset_index()
        if "Metadata_Class" in g.columns:
            spots["Metadata_Class"] = g["Metadata_Class"].astype(str).to_numpy()
        latents = g[[c for c in g.columns if c.startswith("GT_")]].reset_index(drop=True)
        if (gt / "gene_drivers.parquet").is_file():
            gene_drivers = pd.read_parquet(gt / "gene_drivers.parquet").set_index("gene")
    reader = H5PatchReader(files, np.concatenate(file_idx), np.concatenate(rows))
    return TissueDataset(spots, targets, np.concatenate(px), nuclei, tdir, gene_drivers, latents, info, reader)


# ------------------------------------------------------------------------------ 1NN
def grid_neighbours(xy: np.ndarray, grid: str = "auto") -> tuple[list[np.ndarray], str]:
    """Each spot's grid neighbourhood (itself included) and the grid found.

    With ``d`` the median nearest-neighbour distance between spot centres: on a square
    grid the 8 neighbours lie within ``1.5 d`` (diagonals at ``√2 d``), up to 9 spots; on
    a hexagonal grid the 6 neighbours lie at ``d``, taken within ``1.2 d``, up to 7 spots
    (arXiv 2603.13377 C.3). ``"auto"``: hexagonal when >= 5 neighbours lie within
    ``1.2 d`` for the 10 % best-surrounded spots (square grids have at most 4; small
    hexagonal sections have many edge spots).
    """
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, float)
    n = len(xy)
    if n < 2:
        return [np.arange(n)], "square" if grid == "auto" else grid
    tree = cKDTree(xy)
    d1, _ = tree.query(xy, 2)
    d = float(np.median(d1[:, 1]))
    if d <= 0:
        raise ValueError("coarsen_1nn: spots share the same centre; check Metadata_X/Metadata_Y")
    g = {"hexagonal": "hex", "hex": "hex", "square": "square", "auto": "auto"}.get(grid)
    if g is None:
        raise ValueError(f"grid must be 'auto', 'square' or 'hex', got {grid!r}")
    if g == "auto":
        near = tree.query_ball_point(xy, 1.2 * d, return_length=True) - 1
        g = "hex" if np.percentile(near, 90) >= 5 else "square"
    r = 1.5 * d if g == "square" else 1.2 * d
    return [np.sort(np.asarray(m, dtype=np.int64)) for m in tree.query_ball_point(xy, r)], g


def coarsen_1nn(ds: TissueDataset, grid: str = "auto", *, out_size: int | None = None,
                drop_empty: bool = True) -> TissueDataset:
    """HEST-1k-1NN (arXiv 2603.13377 C.3, E.2): bin every spot with its grid neighbours.

    For each spot of each sample (never across samples, hence never across patients):

    * neighbourhood: the spot and its grid neighbours (:func:`grid_neighbours`: up to 9
      on square, 7 on hexagonal grids; edge spots keep incomplete neighbourhoods);
    * crop: the bounding box of the member patches (full-res px), padded to a square
      around its centre so that one µm/px holds on both axes (E.2 scales coordinates by
      the largest bbox side), built from the member patches at their slide positions
      (uncovered corners filled with their mean colour) and resized to ``out_size``
      (default: the source patch size) — the HEST-Benchmark ships patches, not WSIs;
    * nuclei: the union of the members' nuclei (duplicates of overlapping patches
      merged), in crop pixels;
    * targets: counts averaged over the members, ``log1p(mean(expm1(t)))``;
    * crops without any nucleus are dropped when nuclei are known (C.3), counted in
      ``info["coarsen_dropped_empty"]``.

    ``Metadata_Spot`` keeps the centre spot's id; ``Metadata_NNeighbours`` = members.
    """
    n = len(ds)
    spots = ds.spots
    psize = spots["Metadata_PatchSize"].to_numpy(np.float64)
    full = spots["Metadata_FullresPixelSize"].to_numpy(np.float64)
    foot = psize * ds.pixel_size_um / full  # full-res px per patch side
    cx, cy = spots["Metadata_X"].to_numpy(np.float64), spots["Metadata_Y"].to_numpy(np.float64)
    left, top = cx - foot / 2, cy - foot / 2
    members: list[np.ndarray] = [np.zeros(0, np.int64)] * n
    grids: dict[str, str] = {}
    for s, idx in spots.groupby("Metadata_Sample", sort=False).indices.items():
        idx = np.asarray(idx)
        nb, g = grid_neighbours(np.column_stack([cx[idx], cy[idx]]), grid)
        grids[str(s)] = g
        for i, m in zip(idx, nb):
            members[i] = idx[m]
    expr = np.expm1(ds.targets.to_numpy(np.float64))
    out_px = int(out_size or int(np.max(psize)))
    new_nuc, new_px, offsets, canvas, rows_x, rows_y, tg, nn = [], [], [], [], [], [], [], []
    for i in range(n):
        m = members[i]
        x0, y0 = left[m].min(), top[m].min()
        x1, y1 = (left[m] + foot[m]).max(), (top[m] + foot[m]).max()
        side = max(x1 - x0, y1 - y0)
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        sx, sy = mx - side / 2, my - side / 2
        # nuclei: back to full-res, union, dedupe, into crop px
        pts = [np.column_stack([left[j] + ds.nuclei[j][:, 1] * foot[j] / psize[j],
                                top[j] + ds.nuclei[j][:, 0] * foot[j] / psize[j]]) for j in m if len(ds.nuclei[j])]
        if pts:
            allp = np.unique(np.round(np.vstack(pts), 2), axis=0)
            rc = np.column_stack([(allp[:, 1] - sy) * out_px / side, (allp[:, 0] - sx) * out_px / side])
            rc = rc[(rc >= 0).all(1) & (rc < out_px).all(1)]
        else:
            rc = np.zeros((0, 2))
        new_nuc.append(rc)
        new_px.append(side * full[i] / out_px)
        scale = psize[i] / foot[i]  # source patch px per full-res px
        offsets.append(np.column_stack([(top[m] - sy) * scale, (left[m] - sx) * scale]))
        canvas.append(int(np.ceil(side * scale)))
        rows_x.append(mx)
        rows_y.append(my)
        tg.append(np.log1p(expr[m].mean(0)))
        nn.append(len(m))
    keep = np.arange(n)
    info = dict(ds.info)
    info["coarsen_grid"] = grids
    if drop_empty and info.get("has_nuclei", any(len(p) for p in ds.nuclei)):
        keep = np.array([i for i in range(n) if len(new_nuc[i]) > 0], dtype=np.int64)
    info["coarsen_dropped_empty"] = int(n - len(keep))
    new_spots = spots.copy()
    new_spots["Metadata_X"], new_spots["Metadata_Y"] = rows_x, rows_y
    new_spots["Metadata_NNeighbours"] = nn
    new_spots["Metadata_PatchSize"] = out_px
    new_spots["Metadata_NCells"] = [len(p) for p in new_nuc]
    base = ds.reader
    reader = None
    if base is not None:
        reader = MosaicPatchReader(base, [members[i] for i in keep], [offsets[i] for i in keep],
                                   np.array([canvas[i] for i in keep]), out_px)
    targets = pd.DataFrame(np.asarray(tg)[keep] if len(keep) else np.zeros((0, ds.targets.shape[1])),
                           columns=ds.targets.columns)
    latents = None
    if ds.latents is not None:
        lat = ds.latents.to_numpy(np.float64)
        latents = pd.DataFrame(np.array([lat[members[i]].mean(0) for i in keep]).reshape(len(keep), -1),
                               columns=ds.latents.columns)
    return TissueDataset(new_spots.iloc[keep].reset_index(drop=True), targets, np.asarray(new_px)[keep],
                         [new_nuc[i] for i in keep], ds.root, ds.gene_drivers, latents, info, reader)
