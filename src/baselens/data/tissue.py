"""Synthetic H&E tissue with spatial-transcriptomics targets of known origin (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) E.3).

arXiv 2603.13377 asks whether structure-only representations (nuclei positions, nothing of
their appearance) capture more than cell count, and validates its encoders on synthetic
point sets from inhomogeneous Poisson processes and noisy adaptive grids (Appendix E.3).
This generator turns that into a whole HEST-style dataset whose genes have a *known*
driver, so a benchmark can check that each baseline explains exactly what it should:

Tissue (one slide per patient, µm coordinates, rendered at ``pixel_size_um``)
---------------------------------------------------------------------------
Four smooth landscapes per slide, independent Gaussian random fields of correlation
length ``corr_um`` (unit SD, :func:`baselens.data.synthetic.gaussian_random_field`):

``density``  intensity ``λ(x) = λ0 exp(σ g_d(x) − σ²/2)``, ``λ0`` = ``cells_per_patch``
             per 112 µm patch, ``σ`` = ``density_sd``;
``regularity``  ``r(x) = sigmoid(k g_r(x))`` — the weight of the *noisy adaptive grid*
             (E.3: square voxels of ``patch_um / voxels_per_patch`` µm, each holding a
             ``q × q`` grid, ``q`` one of the integers around ``side √λ`` drawn so that
             ``E[q²] = λ side²``, jittered by ``grid_jitter`` of the spacing) against the *inhomogeneous Poisson* process;
``clustering``  ``c(x) = sigmoid(k (g_c(x) − cluster_offset))`` — the weight of a
             Thomas cluster process (parents at ``λ/cluster_size``, offspring
             ``N(parent, cluster_sd_um²)``) — cell clumps;
``appearance``  ``g_a(x)`` — rendered into the nuclei (hematoxylin intensity, size,
             chromatin granularity) and nowhere else: invisible to centroids.

Points of the three processes are thinned by their weights ``r(1−c)``, ``(1−r)(1−c)``
and ``c`` (each process has intensity ``λ``), so arrangement changes at constant
expected density.

Spots, classes, genes
---------------------
Spots lie on a square or hexagonal grid (``grid``: ``"square"``, ``"hex"`` or
``"alternate"`` between patients) ``spot_spacing_um`` apart; each gets the
``patch_px``² patch centred on it and the nuclei inside (CellViT-style outlines).
``Metadata_Class`` is its regime: ``clustered`` when ``c > 0.5``, else
``{dense|sparse}-{regular|disordered}`` by ``g_d > 0`` and ``r > 0.5`` (patch means).
Per spot the standardized drivers are ``GT_density`` (z of ``log1p`` of the realized
nuclei count: the local count), ``GT_clustering``, ``GT_regularity``,
``GT_appearance`` (z of the landscapes' patch means). Gene ``g`` has counts
``Poisson(exp(log(base_g) + effect · w_g · z + ε))``, ``ε ~ N(0, noise_sd²)``, where
``w_g`` is one-hot for the ``density``, ``clustering``, ``regularity`` and
``appearance`` genes and, for ``mixed`` genes, random convex weights on density,
regularity and appearance.

On disk (HEST-1k layout, read by :func:`baselens.data.hest.read_hest`)::

    out/patches/<id>.h5, st/<id>.h5ad, metadata/<id>.json,
        cellvit_seg/<id>_cellvit_seg.geojson, var_50genes.json, splits/{train,test}_<k>.csv
        (leave one patient out), thumbnails/<id>.jpg,
        ground_truth/{spots,gene_drivers}.parquet, ground_truth/config.json (written last)

Budget: ``SyntheticTissueConfig.demo()`` (6 patients × 100 spots of 224 px) ~15 s;
``quick()`` (4 patients × 36 spots of 112 px at 1 µm/px) ~1 s.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from baselens._io import write_json_atomic, write_parquet_atomic
from baselens.data.hest import write_cellvit_geojson, write_h5ad, write_patches_h5
from baselens.data.presets import PresetConfig
from baselens.data.synthetic import gaussian_random_field

__all__ = [
    "SyntheticTissueConfig",
    "generate_tissue",
    "DRIVERS",
    "CLASSES",
    "simulate_points",
    "render_he",
    "landscapes",
    "synthetic_point_sets",
]

#: Gene drivers, in column order of ``gene_drivers`` weights.
DRIVERS: tuple[str, ...] = ("density", "clustering", "regularity", "appearance", "mixed")
#: Spot classes (``Metadata_Class``).
CLASSES: tuple[str, ...] = ("sparse-regular", "dense-regular", "sparse-disordered", "dense-disordered", "clustered")
GENERATOR_VERSION = "1"
_LATENT = ("density", "clustering", "regularity", "appearance")

#: Ruifrok & Johnston optical-density vectors (RGB) of hematoxylin and eosin.
H_VEC = np.array([0.65, 0.70, 0.29])
E_VEC = np.array([0.07, 0.99, 0.11])


@dataclass
class SyntheticTissueConfig(PresetConfig):
    """Knobs of the synthetic tissue (see the module docstring); ``from_preset`` reads a
    config table ``{"preset": "demo" | "quick", **overrides}``
    (:class:`~baselens.data.presets.PresetConfig`)."""

    n_patients: int = 6
    grid_shape: tuple = (10, 10)
    grid: str = "alternate"
    spot_spacing_um: float = 100.0
    patch_px: int = 224
    pixel_size_um: float = 0.5
    cells_per_patch: float = 60.0
    density_sd: float = 0.5
    corr_um: float = 70.0
    landscape_slope: float = 3.0
    cluster_offset: float = 0.6
    cluster_size: float = 8.0
    cluster_sd_um: float = 5.0
    voxels_per_patch: int = 2
    grid_jitter: float = 0.12
    nucleus_radius_um: float = 3.2
    appearance_strength: float = 1.0
    genes_per_driver: dict = field(default_factory=lambda: {d: 4 for d in DRIVERS})
    effect: float = 0.5
    noise_sd: float = 0.2
    base_counts: tuple = (15.0, 60.0)
    seed: int = 0

    @classmethod
    def demo(cls, **overrides: Any) -> "SyntheticTissueConfig":
        """6 patients × 100 spots (10 × 10, square and hexagonal grids alternating), 224 px
        patches at 0.5 µm/px (112 µm, HEST's 20x), ~60 nuclei per patch, 20 genes
        (4 per driver)."""
        return cls.from_dict(dict(overrides))

    @classmethod
    def quick(cls, **overrides: Any) -> "SyntheticTissueConfig":
        """Tests: 4 patients × 36 spots (6 × 6), 112 px patches at 1 µm/px (still 112 µm),
        10 genes (2 per driver)."""
        base = dict(n_patients=4, grid_shape=(6, 6), patch_px=112, pixel_size_um=1.0,
                    genes_per_driver={d: 2 for d in DRIVERS})
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SyntheticTissueConfig":
        cfg = super().from_dict(d)
        cfg.grid_shape = tuple(int(v) for v in cfg.grid_shape)
        cfg.base_counts = tuple(float(v) for v in cfg.base_counts)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grid_shape"] = list(self.grid_shape)
        d["base_counts"] = list(self.base_counts)
        return d

    def validate(self) -> None:
        if self.n_patients < 1:
            raise ValueError(f"n_patients must be >= 1, got {self.n_patients}")
        if len(self.grid_shape) != 2 or min(self.grid_shape) < 1:
            raise ValueError(f"grid_shape must be (rows, cols) >= 1, got {self.grid_shape}")
        if self.grid not in ("square", "hex", "alternate"):
            raise ValueError(f"grid must be 'square', 'hex' or 'alternate', got {self.grid!r}")
        bad = sorted(set(self.genes_per_driver) - set(DRIVERS))
        if bad:
            raise ValueError(f"genes_per_driver keys must be among {DRIVERS}, got {bad}")
        if self.patch_px < 16 or self.pixel_size_um <= 0 or self.cells_per_patch <= 0:
            raise ValueError("patch_px >= 16, pixel_size_um > 0 and cells_per_patch > 0 are required")

    @property
    def patch_um(self) -> float:
        return self.patch_px * self.pixel_size_um


# ------------------------------------------------------------------------------ geometry
def _spot_centres(cfg: SyntheticTissueConfig, grid: str) -> tuple[np.ndarray, np.ndarray]:
    """Spot centres (x, y) µm and (array_row, array_col) on a square or hexagonal grid."""
    rows, cols = cfg.grid_shape
    s = cfg.spot_spacing_um
    m = cfg.patch_um / 2 + 10.0
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    if grid == "square":
        x, y = m + cc * s, m + rr * s
        arr = np.column_stack([rr, cc])
    else:  # hexagonal: rows sqrt(3)/2 apart, odd rows shifted by half a spacing (Visium)
        x, y = m + cc * s + (rr % 2) * s / 2, m + rr * s * np.sqrt(3) / 2
        arr = np.column_stack([rr, 2 * cc + (rr % 2)])
    return np.column_stack([x, y]), arr


def landscapes(cfg: SyntheticTissueConfig, shape_um: tuple[float, float], rng: np.random.Generator,
               step_um: float = 4.0) -> dict[str, np.ndarray]:
    """The four unit-SD landscapes ``g`` on a ``step_um`` grid covering the slide (rows = y)."""
    h, w = int(np.ceil(shape_um[0] / step_um)) + 1, int(np.ceil(shape_um[1] / step_um)) + 1
    pad = int(np.ceil(3 * cfg.corr_um / step_um))
    f = gaussian_random_field((4, h + 2 * pad, w + 2 * pad), cfg.corr_um / step_um, rng)[:, pad:pad + h, pad:pad + w]
    f = (f - f.mean(axis=(1, 2), keepdims=True)) / (f.std(axis=(1, 2), keepdims=True) + 1e-12)
    return {name: f[k] for k, name in enumerate(_LATENT)} | {"step_um": np.array(step_um)}


def _at(field_: np.ndarray, step: float, xy: np.ndarray) -> np.ndarray:
    """Bilinear value of a landscape at points (x, y) µm."""
    return ndimage.map_coordinates(field_, [xy[:, 1] / step, xy[:, 0] / step], order=1, mode="nearest")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def simulate_points(cfg: SyntheticTissueConfig, land: dict, shape_um: tuple[float, float],
                    rng: np.random.Generator) -> np.ndarray:
    """Nuclei centres (x, y) µm of one slide: noisy adaptive grid, inhomogeneous Poisson and
    Thomas-cluster points, each thinned by its landscape weight (module docstring)."""
    step = float(land["step_um"])
    h_um, w_um = shape_um
    lam0 = cfg.cells_per_patch / cfg.patch_um**2
    sd = cfg.density_sd

    def lam(xy):
        return lam0 * np.exp(sd * _at(land["density"], step, xy) - sd**2 / 2)

    def weights(xy):
        r = _sigmoid(cfg.landscape_slope * _at(land["regularity"], step, xy))
        c = _sigmoid(cfg.landscape_slope * (_at(land["clustering"], step, xy) - cfg.cluster_offset))
        return r * (1 - c), (1 - r) * (1 - c), c

    lam_max = lam0 * np.exp(sd * max(float(land["density"].max()), 0.0) - sd**2 / 2) * 1.05
    area = h_um * w_um
    # noisy adaptive grid (E.3): per voxel a q x q grid, q from the local density
    side = cfg.patch_um / cfg.voxels_per_patch
    grid_pts = []
    for y0 in np.arange(0, h_um, side):
        for x0 in np.arange(0, w_um, side):
            v2 = side**2 * lam(np.array([[x0 + side / 2, y0 + side / 2]]))[0]  # expected points
            lo = max(1, int(np.floor(np.sqrt(v2))))
            p_hi = np.clip((v2 - lo**2) / ((lo + 1) ** 2 - lo**2), 0.0, 1.0)  # E[q²] = v2
            q = lo + int(rng.random() < p_hi)
            sp = side / q
            gy, gx = np.meshgrid((np.arange(q) + 0.5) * sp + y0, (np.arange(q) + 0.5) * sp + x0, indexing="ij")
            p = np.column_stack([gx.ravel(), gy.ravel()]) + rng.normal(0, cfg.grid_jitter * sp, (q * q, 2))
            grid_pts.append(p)
    g = np.vstack(grid_pts)
    g = g[rng.random(len(g)) < weights(np.clip(g, 0, [w_um, h_um]))[0]]
    # inhomogeneous Poisson by thinning
    p = rng.random((rng.poisson(lam_max * area), 2)) * [w_um, h_um]
    p = p[rng.random(len(p)) < lam(p) / lam_max * weights(p)[1]]
    # Thomas cluster process by thinning
    par = rng.random((rng.poisson(lam_max / cfg.cluster_size * area), 2)) * [w_um, h_um]
    kids = np.repeat(par, rng.poisson(cfg.cluster_size, len(par)), axis=0)
    kids = kids + rng.normal(0, cfg.cluster_sd_um, kids.shape)
    kids = kids[(kids >= 0).all(1) & (kids[:, 0] < w_um) & (kids[:, 1] < h_um)]
    kids = kids[rng.random(len(kids)) < lam(kids) / lam_max * weights(kids)[2]]
    pts = np.vstack([g, p, kids])
    return pts[(pts >= 0).all(1) & (pts[:, 0] < w_um) & (pts[:, 1] < h_um)]


# ------------------------------------------------------------------------------ slides
def _simulate_slide(cfg: SyntheticTissueConfig, p: int) -> dict:
    """Landscapes, nuclei and spots of patient ``p`` (own stream ``default_rng([seed, p])``);
    per spot the top-left patch corner (x, y px), its nuclei (row, col patch px) and the
    patch means of the landscapes."""
    rng = np.random.default_rng([cfg.seed, p])
    grid = cfg.grid if cfg.grid != "alternate" else ("square" if p % 2 == 0 else "hex")
    centres, arr = _spot_centres(cfg, grid)
    shape_um = (float(centres[:, 1].max() + cfg.patch_um / 2 + 10.0), float(centres[:, 0].max() + cfg.patch_um / 2 + 10.0))
    land = landscapes(cfg, shape_um, rng)
    pts = simulate_points(cfg, land, shape_um, rng)
    tl = np.round(centres / cfg.pixel_size_um - cfg.patch_px // 2).astype(np.int64)
    step = float(land["step_um"])
    span = int(round(cfg.patch_um / step))
    pts_px = pts / cfg.pixel_size_um
    lat: dict[str, list] = {k: [] for k in _LATENT}
    nuclei = []
    for t in tl:
        inside = ((pts_px[:, 0] >= t[0]) & (pts_px[:, 0] < t[0] + cfg.patch_px)
                  & (pts_px[:, 1] >= t[1]) & (pts_px[:, 1] < t[1] + cfg.patch_px))
        q = pts_px[inside]
        nuclei.append(np.column_stack([q[:, 1] - t[1], q[:, 0] - t[0]]))
        r0, c0 = int(t[1] * cfg.pixel_size_um / step), int(t[0] * cfg.pixel_size_um / step)
        for k in _LATENT:
            lat[k].append(float(land[k][r0:r0 + span, c0:c0 + span].mean()))
    return {"rng": rng, "grid": grid, "centres_um": centres, "array": arr, "shape_um": shape_um, "land": land,
            "points_um": pts, "topleft_px": tl, "nuclei": nuclei, "latent": {k: np.asarray(v) for k, v in lat.items()}}


def _classes(cfg: SyntheticTissueConfig, dens: np.ndarray, reg: np.ndarray, clu: np.ndarray):
    """Regime weights r, c and the class of each spot (module docstring)."""
    r = _sigmoid(cfg.landscape_slope * np.asarray(reg))
    c = _sigmoid(cfg.landscape_slope * (np.asarray(clu) - cfg.cluster_offset))
    cls = np.where(c > 0.5, "clustered",
                   np.where(np.asarray(dens) > 0, "dense-", "sparse-").astype(object)
                   + np.where(r > 0.5, "regular", "disordered"))
    return r, c, cls.astype(str)


def synthetic_point_sets(cfg: SyntheticTissueConfig) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Nuclei point sets of every spot without rendering or writing anything: the
    classification task of arXiv 2603.13377 E.3 used to pre-train the structure encoders.

    Returns
    -------
    nuclei : list of (k, 2) arrays, (row, col) patch px
    classes : ndarray of str, ``Metadata_Class`` of each spot
    patient : ndarray of int
    """
    nuclei, dens, reg, clu, pat = [], [], [], [], []
    for p in range(cfg.n_patients):
        sl = _simulate_slide(cfg, p)
        nuclei += sl["nuclei"]
        dens.append(sl["latent"]["density"])
        reg.append(sl["latent"]["regularity"])
        clu.append(sl["latent"]["clustering"])
        pat.append(np.full(len(sl["nuclei"]), p))
    _, _, cls = _classes(cfg, np.concatenate(dens), np.concatenate(reg), np.concatenate(clu))
    return nuclei, cls, np.concatenate(pat)


# ------------------------------------------------------------------------------ rendering
def render_he(cfg: SyntheticTissueConfig, pts_um: np.ndarray, land: dict, shape_um: tuple[float, float],
              rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """H&E-like RGB slide (uint8, rows = y) and each nucleus' outline (8 vertices, x/y px).

    Beer–Lambert: ``RGB = 255 exp(−(OD_H h + OD_E e))`` with Ruifrok's stain vectors.
    Eosin: a pink background with fibre-like texture, paler inside nuclei. Hematoxylin:
    one ellipse per nucleus (random axis ratio and angle) of radius
    ``nucleus_radius_um · exp(0.2 a)``, optical density ``0.9 exp(0.3 a)`` times a
    chromatin texture blending fine (1 px) and coarse (3 px) noise by ``sigmoid(2a)``,
    with ``a = appearance_strength · g_a`` at the nucleus: appearance changes what the
    nuclei look like, never where they are.
    """
    px = cfg.pixel_size_um
    h, w = int(round(shape_um[0] / px)), int(round(shape_um[1] / px))
    step = float(land["step_um"])
    fib = ndimage.gaussian_filter(rng.standard_normal((h, w)), (0.6 / px, 4.0 / px))
    fib = fib / (fib.std() + 1e-9)
    blot = ndimage.gaussian_filter(rng.standard_normal((h, w)), 12.0 / px)
    blot = blot / (blot.std() + 1e-9)
    e_od = np.clip(0.30 + 0.04 * fib + 0.06 * blot, 0.05, None).astype(np.float32)
    fine = ndimage.gaussian_filter(rng.standard_normal((h, w)), 0.5 / px)
    coarse = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.5 / px)
    fine /= fine.std() + 1e-9
    coarse /= coarse.std() + 1e-9
    h_od = np.zeros((h, w), np.float32)
    cover = np.zeros((h, w), np.float32)
    a = cfg.appearance_strength * _at(land["appearance"], step, pts_um) if len(pts_um) else np.zeros(0)
    outlines = []
    theta8 = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    for (x, y), ai in zip(pts_um, a):
        rad = cfg.nucleus_radius_um * np.exp(0.2 * ai) * rng.uniform(0.85, 1.15) / px
        ratio, ang = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
        ra, rb = rad / np.sqrt(ratio), rad * np.sqrt(ratio)
        cxp, cyp = x / px, y / px
        R = int(np.ceil(ra)) + 2
        r0, r1 = max(int(cyp) - R, 0), min(int(cyp) + R + 1, h)
        c0, c1 = max(int(cxp) - R, 0), min(int(cxp) + R + 1, w)
        if r1 <= r0 or c1 <= c0:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1]
        dx, dy = xx + 0.5 - cxp, yy + 0.5 - cyp
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / ra
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / rb
        m = np.clip((1.0 - np.sqrt(u * u + v * v)) * rb, 0.0, 1.0)  # ~1 px soft edge
        t = _sigmoid(2 * ai)
        tex = (1 - t) * fine[r0:r1, c0:c1] + t * coarse[r0:r1, c0:c1]
        od = 0.9 * np.exp(0.3 * ai) * np.clip(1.0 + 0.35 * tex, 0.2, None)
        h_od[r0:r1, c0:c1] = np.maximum(h_od[r0:r1, c0:c1], m * od)
        cover[r0:r1, c0:c1] = np.maximum(cover[r0:r1, c0:c1], m)
        ex = ra * np.cos(theta8)
        ey = rb * np.sin(theta8)
        outlines.append(np.column_stack([cxp + ex * np.cos(ang) - ey * np.sin(ang),
                                         cyp + ex * np.sin(ang) + ey * np.cos(ang)]))
    e_od = e_od * (1 - 0.6 * cover)
    od = h_od[..., None] * H_VEC + e_od[..., None] * E_VEC
    rgb = 255.0 * np.exp(-od) + rng.normal(0, 3.0, (h, w, 3))
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), outlines


# ------------------------------------------------------------------------------ genes
def _gene_table(cfg: SyntheticTissueConfig, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for d in DRIVERS:
        for k in range(int(cfg.genes_per_driver.get(d, 0))):
            w = dict.fromkeys(_LATENT, 0.0)
            if d == "mixed":
                mix = rng.dirichlet([1.0, 1.0, 1.0])
                w["density"], w["regularity"], w["appearance"] = mix
            else:
                w[d] = 1.0
            sign = rng.choice([-1.0, 1.0])
            rows.append({"gene": f"{d.upper()}_{k + 1}", "driver": d, **{f"w_{n}": sign * v for n, v in w.items()},
                         "base": float(rng.uniform(*cfg.base_counts))})
    return pd.DataFrame(rows)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    s = x.std()
    return (x - x.mean()) / (s if s > 0 else 1.0)


# ------------------------------------------------------------------------------ writer
_MARKER = "ground_truth/config.json"


def _config_record(cfg: SyntheticTissueConfig) -> dict:
    return {"generator": "baselens.data.tissue", "version": GENERATOR_VERSION, "config": cfg.to_dict()}


def _is_complete(out: Path, cfg: SyntheticTissueConfig) -> bool:
    p = out / _MARKER
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()) == json.loads(json.dumps(_config_record(cfg)))
    except (OSError, ValueError):
        return False


def generate_tissue(cfg: SyntheticTissueConfig, out_dir: str | Path) -> Path:
    """Write (or reuse) a synthetic tissue dataset in HEST-1k layout; returns its root.

    A folder holding a finished dataset of the same config (``ground_truth/config.json``,
    written last) is reused as is; any other content of the generator's subfolders is
    replaced. Every patient draws from its own seeded stream
    (``default_rng([seed, patient])``), so the output is deterministic.
    """
    out = Path(out_dir)
    if _is_complete(out, cfg):
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).unlink(missing_ok=True)
    for sub in ("patches", "st", "metadata", "cellvit_seg", "splits", "thumbnails", "ground_truth"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    genes = _gene_table(cfg, np.random.default_rng([cfg.seed, 10_000]))
    ids = [f"SYN{p:02d}" for p in range(cfg.n_patients)]
    per_spot = []
    sample_data = []
    for p, sid in enumerate(ids):
        sl = _simulate_slide(cfg, p)
        slide, outlines = render_he(cfg, sl["points_um"], sl["land"], sl["shape_um"], sl["rng"])
        tl = sl["topleft_px"]
        imgs = np.stack([slide[t[1]:t[1] + cfg.patch_px, t[0]:t[0] + cfg.patch_px] for t in tl])
        barcodes = [f"r{a:02d}c{b:02d}" for a, b in sl["array"]]
        df = pd.DataFrame({"Metadata_Spot": [f"{sid}_{b}" for b in barcodes], "Metadata_Sample": sid,
                           "n_cells": [len(q) for q in sl["nuclei"]],
                           **{f"L_{k}": sl["latent"][k] for k in _LATENT}})
        per_spot.append(df)
        sample_data.append((sid, sl["grid"], imgs, tl, barcodes, sl["array"], sl["centres_um"] / cfg.pixel_size_um,
                            outlines, slide))
    spots = pd.concat(per_spot, ignore_index=True)
    r, c, cls = _classes(cfg, spots["L_density"].to_numpy(), spots["L_regularity"].to_numpy(),
                         spots["L_clustering"].to_numpy())
    gt = pd.DataFrame({
        "Metadata_Spot": spots["Metadata_Spot"], "Metadata_Sample": spots["Metadata_Sample"],
        "Metadata_Class": cls.astype(str),
        "GT_density": _zscore(np.log1p(spots["n_cells"].to_numpy())),
        "GT_clustering": _zscore(c), "GT_regularity": _zscore(r),
        "GT_appearance": _zscore(spots["L_appearance"].to_numpy()),
        "n_cells": spots["n_cells"], "density_field": spots["L_density"],
    })
    z = gt[[f"GT_{k}" for k in _LATENT]].to_numpy()
    w = genes[[f"w_{k}" for k in _LATENT]].to_numpy()
    erng = np.random.default_rng([cfg.seed, 20_000])
    mu = np.log(genes["base"].to_numpy())[None, :] + cfg.effect * z @ w.T + erng.normal(0, cfg.noise_sd, (len(gt), len(genes)))
    counts = erng.poisson(np.exp(mu)).astype(np.float32)
    gene_names = genes["gene"].tolist()
    row0 = 0
    for p, (sid, grid, imgs, tl, barcodes, arr, cpx, outlines, slide) in enumerate(sample_data):
        n = len(barcodes)
        write_patches_h5(out / "patches" / f"{sid}.h5", imgs, tl, barcodes)
        obs = pd.DataFrame({"in_tissue": np.ones(n, np.int64), "array_row": arr[:, 0], "array_col": arr[:, 1]})
        write_h5ad(out / "st" / f"{sid}.h5ad", counts[row0:row0 + n], barcodes, gene_names, obs=obs,
                   obsm={"spatial": cpx})
        row0 += n
        write_json_atomic({
            "id": sid, "task": "synthetic", "patient": f"Patient {p + 1}", "dataset_title": "baselens synthetic tissue",
            "oncotree_code": "SYN", "species": "synthetic", "st_technology": "synthetic",
            "pixel_size_um_estimated": cfg.pixel_size_um, "pixel_size_um_embedded": cfg.pixel_size_um,
            "patch_pixel_size_um": cfg.pixel_size_um, "magnification": "20x",
            "inter_spot_dist": cfg.spot_spacing_um, "spot_diameter": 55.0, "grid": grid,
            "fullres_px_width": int(slide.shape[1]), "fullres_px_height": int(slide.shape[0]),
            "spots_under_tissue": n,
        }, out / "metadata" / f"{sid}.json")
        write_cellvit_geojson(out / "cellvit_seg" / f"{sid}_cellvit_seg.geojson", outlines)
        _write_thumbnail(slide, out / "thumbnails" / f"{sid}.jpg")
    write_json_atomic({"genes": gene_names}, out / "var_50genes.json")
    for k, sid in enumerate(ids):
        for name, members in (("train", [s for s in ids if s != sid]), ("test", [sid])):
            df = pd.DataFrame({"sample_id": members, "patches_path": [f"patches/{s}.h5" for s in members],
                               "expr_path": [f"st/{s}.h5ad" for s in members]})
            (out / "splits").mkdir(parents=True, exist_ok=True)
            df.to_csv(out / "splits" / f"{name}_{k}.csv", index=False)
    write_parquet_atomic(gt, out / "ground_truth" / "spots.parquet")
    write_parquet_atomic(genes.drop(columns=["base"]).assign(base=genes["base"]), out / "ground_truth" / "gene_drivers.parquet")
    write_json_atomic(_config_record(cfg), out / _MARKER)
    return out


def _write_thumbnail(slide: np.ndarray, path: Path, max_side: int = 512) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(slide)
    s = max_side / max(slide.shape[:2])
    if s < 1:
        img = img.resize((max(1, int(slide.shape[1] * s)), max(1, int(slide.shape[0] * s))), Image.BILINEAR)
    tmp = path.with_name(f".{path.name}.tmp.jpg")
    img.save(tmp, quality=85)
    tmp.replace(path)
