"""Cell-count baseline: nuclei count per site and 16 hand-crafted transforms of it.

Cell count (confluency) is the strongest single confounder of image-based profiling:
it alone predicts much of compound bioactivity (Seal et al. 2026, Nat. Commun.) and, with 16 polynomial,
trigonometric and logarithmic transforms fed to a linear head, it is a competitive
baseline for spatial-transcriptomics regression (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026), Appendix E.1). A
representation that does not beat this baseline has not shown it learned more than
"how many cells are there".

Two pure functions are exposed for reuse: :func:`segment_nuclei` (DNA image → label
image, now in :mod:`baselens.extract.segmentation` and re-exported here) and
:func:`count_features` (counts → the 16 features). With ``confounds=True`` the extractor
adds a ``confounds`` layer (:func:`confound_features`): nuclei and cell counts, density
per area, confluency, CellProfiler-style neighbour statistics and a MitoCount-like
mitochondria-skeleton count — the confound axes the diagnostics regress out.
"""

from __future__ import annotations

import numbers
from typing import Literal

import numpy as np
import pandas as pd

from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, register
from baselens.extract.segmentation import (  # re-exported: they used to live here
    background_level,
    batch_nuclei,
    cytoplasm,
    mito_skeleton_count,
    object_neighbors,
    pick_cell_channel,
    segment_cells,
    segment_nuclei,
    watershed_seeds,
)

__all__ = [
    "CellCount",
    "segment_nuclei",
    "watershed_seeds",
    "background_level",
    "count_nuclei",
    "count_features",
    "confound_features",
    "COUNT_FEATURE_NAMES",
    "CONFOUNDS_LAYER",
]

#: Layer holding the extended confound features (see :func:`confound_features`).
CONFOUNDS_LAYER = "confounds"

#: Periods (in units of the scaled count ``x = n / count_scale``) of the sine/cosine features.
TRIG_PERIODS: tuple[int, ...] = (1, 2, 4)

#: Names of the 16 hand-crafted count features, in column order (see :func:`count_features`).
COUNT_FEATURE_NAMES: tuple[str, ...] = (
    "count_x",
    "count_x2",
    "count_x3",
    "count_sqrt_x",
    "count_cbrt_x",
    "count_log1p_n",
    "count_log1p_n_sq",
    "count_log1p_x",
    "count_inv_1p_x",
    "count_exp_neg_x",
    *(f"count_{fn}_p{p}" for p in TRIG_PERIODS for fn in ("sin", "cos")),
)


def count_nuclei(dna: np.ndarray, **params) -> int:
    """Number of nuclei :func:`segment_nuclei` finds in ``dna`` (same parameters)."""
    return int(segment_nuclei(dna, **params).max())


def count_features(n: np.ndarray, count_scale: float = 100.0) -> pd.DataFrame:
    """The 16 hand-crafted cell-count features (arXiv 2603.13377, Appendix E.1).

    The paper gives only the families (polynomial, trigonometric and logarithmic
    functions of the cell count per patch); this is baselens' explicit choice. With
    :math:`n \\ge 0` the count and :math:`x = n / s` the scaled count
    (:math:`s` = ``count_scale``, so polynomial terms stay O(1) for typical counts):

    ==  =====================  ==========================================
    #   column                 value
    ==  =====================  ==========================================
    1   ``count_x``            :math:`x`
    2   ``count_x2``           :math:`x^2`
    3   ``count_x3``           :math:`x^3`
    4   ``count_sqrt_x``       :math:`\\sqrt{x}`
    5   ``count_cbrt_x``       :math:`\\sqrt[3]{x}`
    6   ``count_log1p_n``      :math:`\\log(1 + n)`
    7   ``count_log1p_n_sq``   :math:`\\log(1 + n)^2`
    8   ``count_log1p_x``      :math:`\\log(1 + x)`
    9   ``count_inv_1p_x``     :math:`1 / (1 + x)`
    10  ``count_exp_neg_x``    :math:`\\exp(-x)`
    11  ``count_sin_p1``       :math:`\\sin(2\\pi x)`
    12  ``count_cos_p1``       :math:`\\cos(2\\pi x)`
    13  ``count_sin_p2``       :math:`\\sin(2\\pi x / 2)`
    14  ``count_cos_p2``       :math:`\\cos(2\\pi x / 2)`
    15  ``count_sin_p4``       :math:`\\sin(2\\pi x / 4)`
    16  ``count_cos_p4``       :math:`\\cos(2\\pi x / 4)`
    ==  =====================  ==========================================

    Parameters
    ----------
    n : array_like, shape (N,)
        Counts (non-negative; fractional values such as well means are allowed).
    count_scale : float
        Scale :math:`s > 0`; default 100 (periods of 100, 200 and 400 cells).

    Returns
    -------
    DataFrame
        N rows, the 16 float64 columns above, in that order.
    """
    if not count_scale > 0:
        raise ValueError(f"count_scale must be > 0, got {count_scale!r}")
    n = np.asarray(n, dtype=np.float64).reshape(-1)
    if np.any(n < 0):
        raise ValueError("cell counts must be non-negative")
    x = n / float(count_scale)
    log_n = np.log1p(n)
    cols = [x, x**2, x**3, np.sqrt(x), np.cbrt(x), log_n, log_n**2, np.log1p(x), 1.0 / (1.0 + x), np.exp(-x)]
    for p in TRIG_PERIODS:
        angle = 2.0 * np.pi * x / p
        cols += [np.sin(angle), np.cos(angle)]
    return pd.DataFrame(np.column_stack(cols), columns=list(COUNT_FEATURE_NAMES))


def _agg(values: np.ndarray, how: str, empty: float) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float(empty)
    return float(np.median(v) if how == "median" else np.mean(v))


def confound_features(
    site: np.ndarray,
    channels: list[str],
    *,
    nuclei: np.ndarray | None = None,
    nuclei_channel: str = "DNA",
    cell_channel: str | None = None,
    mito_channel: str | None = "Mito",
    neighbor_distance: int = 5,
    pixel_size_um: float | None = None,
    seg_params: dict | None = None,
    cell_params: dict | None = None,
    mito_params: dict | None = None,
) -> dict[str, float]:
    """Cell-count family of one (C, H, W) site: the confound axes.

    ======================================================  =================================
    column                                                  value
    ======================================================  =================================
    ``Count_Nuclei``, ``Count_Cells``                        objects found (cells need a
                                                            cytoplasmic channel)
    ``Density_Nuclei_per_10kpx`` (``_Cells_``)               count per 10,000 px² of site
    ``Density_Nuclei_per_mm2`` (``_Cells_``)                 with ``pixel_size_um`` only
    ``Confluency_Nuclei``, ``Confluency_Cells``              fraction of the site covered
    ``Nuclei_Neighbors_<M>_<d>_{mean,median}``              :func:`object_neighbors` within
                                                            ``d`` = ``neighbor_distance`` px
    ``Cells_Neighbors_<M>_Adjacent_{mean,median}``          touching cells
    ``MitoCount``, ``MitoSkeletonLength``                   :func:`mito_skeleton_count`
    ======================================================  =================================

    with ``<M>`` in NumberOfNeighbors, PercentTouching, FirstClosestDistance,
    SecondClosestDistance, AngleBetweenNeighbors. Sites with too few objects get 0
    neighbours / 0 % touching and, for distances, the site diagonal (no neighbour
    within the site); angles default to 0.
    """
    channels = list(channels)
    if nuclei_channel not in channels:
        raise ValueError(f"nuclei channel {nuclei_channel!r} not in the batch; available channels: {channels}")
    h, w = site.shape[-2:]
    area = float(h * w)
    diag = float(np.hypot(h, w))
    if nuclei is None:
        nuclei = segment_nuclei(site[channels.index(nuclei_channel)], **(seg_params or {}))
    out: dict[str, float] = {}
    n_nuc = float(nuclei.max())
    out["Count_Nuclei"] = n_nuc
    cell_ch = pick_cell_channel(channels, cell_channel)
    cells = None
    if cell_ch is not None:
        cells = segment_cells(nuclei, site[channels.index(cell_ch)], **(cell_params or {}))
        out["Count_Cells"] = float(len(np.unique(cells[cells > 0])))
    out["Density_Nuclei_per_10kpx"] = n_nuc / area * 1e4
    if cells is not None:
        out["Density_Cells_per_10kpx"] = out["Count_Cells"] / area * 1e4
    if pixel_size_um:
        mm2 = area * float(pixel_size_um) ** 2 * 1e-6
        out["Density_Nuclei_per_mm2"] = n_nuc / mm2
        if cells is not None:
            out["Density_Cells_per_mm2"] = out["Count_Cells"] / mm2
    out["Confluency_Nuclei"] = float((nuclei > 0).mean())
    if cells is not None:
        out["Confluency_Cells"] = float((cells > 0).mean())
    empty = {"NumberOfNeighbors": 0.0, "PercentTouching": 0.0, "FirstClosestDistance": diag,
             "SecondClosestDistance": diag, "AngleBetweenNeighbors": 0.0}
    objs = [("Nuclei", nuclei, int(neighbor_distance), str(int(neighbor_distance)))]
    if cells is not None:
        objs.append(("Cells", cells, None, "Adjacent"))
    for name, labels, dist, suffix in objs:
        nb = object_neighbors(labels, dist)
        for m, fill in empty.items():
            for how in ("mean", "median"):
                out[f"{name}_Neighbors_{m}_{suffix}_{how}"] = _agg(nb[m], how, fill)
    if mito_channel is not None and mito_channel in channels:
        k, length = mito_skeleton_count(site[channels.index(mito_channel)], **(mito_params or {}))
        out["MitoCount"] = float(k)
        out["MitoSkeletonLength"] = length
    return out


@register(
    "cell_count",
    kind="baseline",
    description="nuclei count per site + 16 hand-crafted count transforms (arXiv 2603.13377 App. E.1, Seal et al. 2026)",
)
class CellCount:
    """Nuclei count per site and 16 hand-crafted transforms of it.

    Nuclei are segmented on channel ``nuclei_channel`` with :func:`segment_nuclei`
    (Otsu + fill holes + distance-transform watershed + size filters).
    Columns: ``Count_Nuclei`` (raw count n) followed by the 16 features of
    :func:`count_features` (``count_x`` … ``count_cos_p4``), 17 in all.

    Parameters
    ----------
    nuclei_channel : str
        Name (in ``batch.channels``) of the nuclear stain. Default ``"DNA"``.
    count_scale : float
        Scale of the count transforms (see :func:`count_features`). Default 100.
    sigma, threshold, min_threshold, min_contrast, fill_holes, min_distance, min_area, max_area, exclude_border
        Segmentation parameters, passed to :func:`segment_nuclei` (same defaults).
    confounds : bool
        Also return layer ``"confounds"`` (:func:`confound_features`: nuclei and cell
        counts, density, confluency, neighbour statistics, MitoCount). Default False,
        so the default layer stays the arXiv 2603.13377 count baseline and runs stay cheap.
    cell_channel, mito_channel, neighbor_distance, pixel_size_um, cell_params, mito_params
        Options of :func:`confound_features` (cells on AGP, else RNA/ER/Mito; Mito
        skeleton on ``"Mito"``; nuclei neighbours within 5 px; density per mm² only
        with a pixel size; ``cell_params`` go to :func:`segment_cells`).
    """

    needs_images: bool = True

    def __init__(
        self,
        *,
        nuclei_channel: str = "DNA",
        count_scale: float = 100.0,
        sigma: float = 1.0,
        threshold: float | Literal["otsu"] = "otsu",
        min_threshold: float = 0.0,
        min_contrast: float = 5.0,
        fill_holes: bool = True,
        min_distance: int = 5,
        min_area: int = 15,
        max_area: int | None = 5000,
        exclude_border: bool = False,
        confounds: bool = False,
        cell_channel: str | None = None,
        mito_channel: str | None = "Mito",
        neighbor_distance: int = 5,
        pixel_size_um: float | None = None,
        cell_params: dict | None = None,
        mito_params: dict | None = None,
    ) -> None:
        if not count_scale > 0:
            raise ValueError(f"count_scale must be > 0, got {count_scale!r}")
        if threshold != "otsu" and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
            raise ValueError(f"threshold must be 'otsu' or a number, got {threshold!r}")
        self.nuclei_channel = nuclei_channel
        self.count_scale = float(count_scale)
        self.seg_params = dict(
            sigma=sigma,
            threshold=threshold,
            min_threshold=min_threshold,
            min_contrast=min_contrast,
            fill_holes=fill_holes,
            min_distance=min_distance,
            min_area=min_area,
            max_area=max_area,
            exclude_border=exclude_border,
        )
        if int(neighbor_distance) < 1:
            raise ValueError(f"neighbor_distance must be >= 1, got {neighbor_distance!r}")
        self.confounds = bool(confounds)
        self.confound_params = dict(
            cell_channel=cell_channel,
            mito_channel=mito_channel,
            neighbor_distance=int(neighbor_distance),
            pixel_size_um=pixel_size_um,
            cell_params=dict(cell_params or {}),
            mito_params=dict(mito_params or {}),
        )

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        if batch.images is None:
            raise ValueError("cell_count needs images, but batch.images is None")
        channels = list(batch.channels)
        if self.nuclei_channel not in channels:
            raise ValueError(
                f"cell_count: nuclei channel {self.nuclei_channel!r} not in the batch; "
                f"available channels: {channels} (set nuclei_channel=...)"
            )
        if self.confounds and self.confound_params["cell_channel"] is not None:
            pick_cell_channel(channels, self.confound_params["cell_channel"])  # fail early
        labels = batch_nuclei(batch, self.nuclei_channel, self.seg_params)
        counts = np.array([lab.max() for lab in labels], dtype=np.float64)
        feats = count_features(counts, self.count_scale)
        feats.insert(0, "Count_Nuclei", counts)
        out = {DEFAULT_LAYER: feats}
        if self.confounds:
            rows = [
                confound_features(site, channels, nuclei=lab, nuclei_channel=self.nuclei_channel, **self.confound_params)
                for site, lab in zip(batch.images, labels)
            ]
            out[CONFOUNDS_LAYER] = pd.DataFrame(rows, dtype=np.float64)
        return out
