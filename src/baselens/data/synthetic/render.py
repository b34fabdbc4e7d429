"""Rendering of one synthetic site: cell placement, textures and five-channel images."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np
from scipy import ndimage, special

from baselens.data import JUMP_CHANNELS
from baselens.data.synthetic.config import (
    AXES,
    SyntheticConfig,
    _BASE_CLUSTER_LOGIT,
    _BASE_ELONGATION,
    _BASE_PHI,
    _CHANNEL_LEVEL,
    _CLUSTER_SCALE,
    _INTENSITY_SCALE,
    _LOCALIZATION_SCALE,
    _LOC_AMPLITUDE,
    _NUC_AREA_SCALE,
    _SHAPE_SCALE,
    _TEXTURE_LENGTH,
    _TEXTURE_SCALE,
)


# ----------------------------------------------------------------------------- rendering
def gaussian_random_field(
    shape: tuple[int, ...], corr_length: np.ndarray | float, rng: np.random.Generator
) -> np.ndarray:
    """Periodic Gaussian random field(s) with a Gaussian correlation of given length.

    Parameters
    ----------
    shape : tuple of int
        ``(..., H, W)``; leading dimensions are independent fields.
    corr_length : float or ndarray
        Correlation length in pixels, broadcast against the leading dimensions.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray
        Zero-mean, unit-variance fields of ``shape`` (periodic boundaries).
    """
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[-2])[:, None]
    fx = np.fft.rfftfreq(shape[-1])[None, :]
    ell = np.asarray(corr_length, dtype=float).reshape(np.shape(corr_length) + (1, 1))
    filt = np.exp(-2.0 * np.pi**2 * ell**2 * (fy**2 + fx**2))
    field = np.fft.irfft2(np.fft.rfft2(white) * filt, s=shape[-2:])
    field -= field.mean(axis=(-2, -1), keepdims=True)
    field /= field.std(axis=(-2, -1), keepdims=True) + 1e-12
    return field


@lru_cache(maxsize=32)
def _marginal(kind: str, n: int) -> np.ndarray:
    """Sorted, mean-1 texture values: the fixed marginal of an organelle texture."""
    g = special.ndtri((np.arange(n) + 0.5) / n)
    if kind == "DNA":  # chromatin: log-normal speckle
        t = np.exp(0.45 * g)
    elif kind == "ER":  # reticular network at the zero crossings of a smooth field
        t = 0.25 + np.exp(-(g**2) / (2 * 0.4**2))
    elif kind == "RNA":  # smooth cytoplasmic granularity
        t = np.exp(0.35 * g)
    elif kind == "AGP":  # fibrous cortex
        t = 0.3 + np.logaddexp(0.0, 3.0 * (g - 0.3)) / 3.0
    elif kind == "Mito":  # punctate / filamentous
        t = 0.1 + np.logaddexp(0.0, 4.0 * (g - 0.6)) / 4.0
    else:
        raise ValueError(kind)
    t = t / t.mean()
    return np.sort(t)


def _fixed_marginal(fields: np.ndarray) -> np.ndarray:
    """Rank-transform each field (C, H, W) to its channel's fixed marginal."""
    c, h, w = fields.shape
    flat = fields.reshape(c, -1)
    order = np.argsort(flat.astype(np.float32), axis=1)
    out = np.empty_like(flat)
    for i, ch in enumerate(JUMP_CHANNELS):
        out[i, order[i]] = _marginal(ch, h * w)
    return out.reshape(c, h, w)


def place_cells(
    n: int,
    size: int,
    min_dist: float,
    cluster_prob: float,
    cluster_sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Cell centres on a periodic ``size x size`` field with a minimum distance.

    Parameters
    ----------
    n : int
        Number of cells (always returned exactly; the minimum distance is relaxed if the
        field is too crowded).
    size : int
        Field size in pixels.
    min_dist : float
        Minimum centre-to-centre distance (periodic).
    cluster_prob : float
        Probability that a candidate is drawn around one of ``~n/6`` cluster centres
        (Gaussian, sd ``cluster_sigma``) instead of uniformly.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n, 2)
        ``(y, x)`` coordinates in ``[0, size)``.
    """
    pts = np.empty((n, 2))
    if n == 0:
        return pts
    centres = rng.uniform(0, size, size=(max(1, round(n / 6)), 2))
    m, d2 = 0, min_dist**2
    for _attempt in range(12):
        n_cand = 20 * (n - m) + 20
        clustered = rng.random(n_cand) < cluster_prob
        cand = rng.uniform(0, size, size=(n_cand, 2))
        which = rng.integers(0, len(centres), size=n_cand)
        cand[clustered] = (
            centres[which[clustered]] + rng.normal(0, cluster_sigma, size=(clustered.sum(), 2))
        ) % size
        for p in cand:
            if m:
                diff = np.abs(pts[:m] - p)
                diff = np.minimum(diff, size - diff)
                if (diff[:, 0] ** 2 + diff[:, 1] ** 2).min() < d2:
                    continue
            pts[m] = p
            m += 1
            if m == n:
                return pts
        d2 *= 0.7  # too crowded: relax
    pts[m:] = rng.uniform(0, size, size=(n - m, 2))
    return pts


def _weighted_standardize(x: np.ndarray, w: np.ndarray, wsum: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance (weighted by ``w``) over the last two axes, per cell."""
    mean = (x * w).sum(axis=(1, 2), keepdims=True) / wsum
    x = x - mean
    sd = np.sqrt((x**2 * w).sum(axis=(1, 2), keepdims=True) / wsum)
    return x / (sd + 1e-9)


def _normalized(x: np.ndarray) -> np.ndarray:
    return x / (x.sum(axis=(1, 2), keepdims=True) + 1e-12)


def _cell_parameters(
    pheno: Mapping[str, float], n: int, config: SyntheticConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-cell geometry and intensities for a site with latent phenotype ``pheno``."""
    sd = config.cell_sd
    R = config.cell_radius * np.exp(rng.normal(0, sd, n))
    k = _BASE_ELONGATION * np.exp(_SHAPE_SCALE * pheno["cell_shape"] + rng.normal(0, 1.5 * sd, n))
    k = np.clip(k, 1.0, 4.0)
    rn = config.nucleus_radius * np.exp(
        0.5 * _NUC_AREA_SCALE * pheno["nuclear_size"] + rng.normal(0, sd, n)
    )
    rn = np.minimum(rn, 0.8 * R)
    kn = 1.0 + 0.4 * (k - 1.0)
    off = rng.uniform(0, 0.15, n) * R
    off_ang = rng.uniform(0, 2 * np.pi, n)
    phi = np.clip(
        _BASE_PHI + _LOCALIZATION_SCALE * pheno["localization"] + rng.normal(0, 0.1, n), 0, np.pi
    )
    log_int = np.array([_INTENSITY_SCALE * pheno[f"intensity_{ch}"] for ch in JUMP_CHANNELS])
    jitter = rng.normal(0, sd, (n, 1)) + rng.normal(0, 0.8 * sd, (n, len(JUMP_CHANNELS)))
    # nucleoli: 1-3 per nucleus, inside the nucleus
    nl_r = 0.5 * rng.uniform(0, 1, (n, 3)) ** 0.5
    nl_a = rng.uniform(0, 2 * np.pi, (n, 3))
    nl_w = (rng.random((n, 3)) < 0.6).astype(float)
    nl_w[:, 0] = 1.0
    return {
        "R": R,
        "k": k,
        "theta": rng.uniform(0, np.pi, n),
        "rn": rn,
        "kn": kn,
        "nuc_du": off * np.cos(off_ang),
        "nuc_dv": off * np.sin(off_ang),
        "harm_amp": rng.normal(0, 0.05, (n, 3)),
        "harm_phase": rng.uniform(0, 2 * np.pi, (n, 3)),
        "phi": phi,
        "intensity": np.exp(log_int[None, :] + jitter),
        "nl_u": nl_r * np.cos(nl_a),
        "nl_v": nl_r * np.sin(nl_a),
        "nl_w": nl_w,
    }


def _render_compartments(
    centres: np.ndarray, cells: Mapping[str, np.ndarray], size: int, config: SyntheticConfig
) -> dict[str, np.ndarray]:
    """Scatter per-cell compartment densities (all cells at once) onto the torus.

    Returns
    -------
    dict
        name -> (size, size) float image, for ``dna, er, rna_cyto, rna_nuc, agp_ring,
        agp_cortex, mito``; each cell contributes its per-channel total intensity.
    """
    n = len(centres)
    names = ("dna", "er", "rna_cyto", "rna_nuc", "agp_ring", "agp_cortex", "mito")
    if n == 0:
        return {k: np.zeros((size, size)) for k in names}
    R, k = cells["R"], cells["k"]
    a, b = R * np.sqrt(k), R / np.sqrt(k)
    h = int(np.ceil(min(a.max() * 1.15 + 3, size / 2 - 1)))
    offs = np.arange(-h, h + 1, dtype=float)
    iy = np.rint(centres[:, 0]).astype(int)
    ix = np.rint(centres[:, 1]).astype(int)
    Y = offs[None, :, None] - (centres[:, 0] - iy)[:, None, None]
    X = offs[None, None, :] - (centres[:, 1] - ix)[:, None, None]
    cos_t = np.cos(cells["theta"])[:, None, None]
    sin_t = np.sin(cells["theta"])[:, None, None]
    u = cos_t * X + sin_t * Y
    v = -sin_t * X + cos_t * Y
    col = lambda x: x[:, None, None]  # noqa: E731

    # cell body: ellipse with a wobbly outline, soft edge
    un, vn = u / col(a), v / col(b)
    rho = np.hypot(un, vn)
    psi = np.arctan2(vn, un)
    outline = 1.0 + sum(
        col(cells["harm_amp"][:, j]) * np.cos((j + 2) * psi + col(cells["harm_phase"][:, j]))
        for j in range(3)
    )
    rc = rho / outline
    body = special.expit((1.0 - rc) * col(R) / 0.7)
    # nucleus
    rn, kn = cells["rn"], cells["kn"]
    an, bn = rn * np.sqrt(kn), rn / np.sqrt(kn)
    rhon = np.hypot((u - col(cells["nuc_du"])) / col(an), (v - col(cells["nuc_dv"])) / col(bn))
    nuc = special.expit((1.0 - rhon) * col(rn) / 0.5)
    cyto = body * (1.0 - nuc)

    # localization: w = 1 + A (cos phi h1 + sin phi h2), h1/h2 orthonormal radial profiles
    q = col(rn / R)
    rad = np.clip((rc - q) / (1.0 - q), 0.0, 1.0)
    wsum = cyto.sum(axis=(1, 2), keepdims=True) + 1e-9
    h1 = _weighted_standardize(-rad, cyto, wsum)
    h2 = -((rad - 0.5) ** 2)
    h2 = h2 - (h2 * h1 * cyto).sum(axis=(1, 2), keepdims=True) / wsum * h1
    h2 = _weighted_standardize(h2, cyto, wsum)
    phi = cells["phi"]
    w = 1.0 + _LOC_AMPLITUDE * (col(np.cos(phi)) * h1 + col(np.sin(phi)) * h2)
    cyto_loc = _normalized(cyto * np.clip(w, 0.05, None))

    nuc_n = _normalized(nuc)
    ring = _normalized(np.exp(-(((rc - 1.0) * col(R) / 1.2) ** 2)))
    body_n = _normalized(body)
    nucleoli = sum(
        col(cells["nl_w"][:, j])
        * np.exp(
            -(
                (u - col(cells["nuc_du"] + cells["nl_u"][:, j] * an)) ** 2
                + (v - col(cells["nuc_dv"] + cells["nl_v"][:, j] * bn)) ** 2
            )
            / (2 * 0.9**2)
        )
        for j in range(3)
    )
    nucleoli_n = _normalized(nucleoli * nuc)

    # per-cell totals: density 1 over the reference compartment area times channel level
    area_nuc = np.pi * config.nucleus_radius**2
    area_cell = np.pi * config.cell_radius**2
    area_cyto = area_cell - area_nuc
    tot = cells["intensity"] * _CHANNEL_LEVEL[None, :]
    dens = {
        "dna": nuc_n * col(tot[:, 0] * area_nuc),
        "er": cyto_loc * col(tot[:, 1] * area_cyto),
        "rna_cyto": cyto_loc * col(tot[:, 2] * area_cyto * 0.7),
        "rna_nuc": (0.6 * nucleoli_n + 0.4 * nuc_n) * col(tot[:, 2] * area_nuc * 1.5),
        "agp_ring": ring * col(tot[:, 3] * area_cell * 0.45),
        "agp_cortex": body_n * col(tot[:, 3] * area_cell * 0.55),
        "mito": cyto_loc * col(tot[:, 4] * area_cyto),
    }
    yy = (iy[:, None, None] + offs.astype(int)[None, :, None]) % size
    xx = (ix[:, None, None] + offs.astype(int)[None, None, :]) % size
    flat = (yy * size + xx).ravel()
    return {
        name: np.bincount(flat, weights=d.ravel(), minlength=size * size).reshape(size, size)
        for name, d in dens.items()
    }


def render_site(
    pheno: Mapping[str, float],
    n_cells: int,
    config: SyntheticConfig,
    rng: np.random.Generator,
    gain: np.ndarray | None = None,
    source: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Render one five-channel site.

    Parameters
    ----------
    pheno : mapping
        Realized latent phenotype, axis name (see :data:`AXES`) -> value.
    n_cells : int
        Number of cells to draw.
    config : SyntheticConfig
    rng : numpy.random.Generator
    gain : ndarray, shape (5,), optional
        Technical per-channel intensity multipliers (staining, drift, edge, source gain).
    source : mapping, optional
        Acquisition parameters: ``offset`` (5,), ``blur``, ``vignetting``, ``noise``.

    Returns
    -------
    ndarray, shape (5, H, W), uint16
        Channels in :data:`baselens.data.JUMP_CHANNELS` order.
    """
    size = config.image_size
    p = {a: float(pheno.get(a, 0.0)) for a in AXES}
    cluster_prob = special.expit(_BASE_CLUSTER_LOGIT + _CLUSTER_SCALE * p["clustering"])
    centres = place_cells(
        int(n_cells),
        size,
        1.4 * config.cell_radius,
        cluster_prob,
        1.6 * config.cell_radius,
        rng,
    )
    cells = _cell_parameters(p, len(centres), config, rng)
    maps = _render_compartments(centres, cells, size, config)

    lengths = np.array([_TEXTURE_LENGTH[ch] for ch in JUMP_CHANNELS])
    lengths = lengths * np.exp(_TEXTURE_SCALE * p["texture"])
    tex = _fixed_marginal(gaussian_random_field((len(JUMP_CHANNELS), size, size), lengths, rng))
    img = np.stack(
        [
            maps["dna"] * tex[0],
            maps["er"] * tex[1],
            maps["rna_cyto"] * tex[2] + maps["rna_nuc"],
            maps["agp_ring"] + maps["agp_cortex"] * tex[3],
            maps["mito"] * tex[4],
        ]
    )
    if gain is not None:
        img *= np.asarray(gain, dtype=float)[:, None, None]
    src = source or {}
    if src.get("blur", 0.0) > 0.05:
        img = ndimage.gaussian_filter(img, sigma=(0, src["blur"], src["blur"]), mode="wrap")
    if src.get("vignetting", 0.0) > 0:
        # radial fall-off: 1 at the centre, 1 - vignetting in the corners
        r2 = ((np.arange(size) - (size - 1) / 2) / (size / np.sqrt(2))) ** 2
        img *= 1.0 - src["vignetting"] * (r2[:, None] + r2[None, :])
    img += config.background + np.asarray(src.get("offset", 0.0), dtype=float).reshape(-1, 1, 1)
    if config.shot_noise > 0:
        img += config.shot_noise * np.sqrt(np.maximum(img, 0.0)) * rng.standard_normal(img.shape)
    noise_sd = config.read_noise + float(src.get("noise", 0.0))
    if noise_sd > 0:
        img += noise_sd * rng.standard_normal(img.shape)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)
