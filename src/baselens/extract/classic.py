"""Classic CellProfiler-style features (``classic``): segment, measure per object, aggregate.

MorphoHELM found CellProfiler features the most robust representation across
batch-effect levels; they are the baseline every learned representation must be
compared with. Pipeline per site:

1. :func:`baselens.extract.segmentation.segment_site` — Nuclei (DNA), Cells (grown from
   the nuclei on AGP, else RNA), Cytoplasm (cell − nucleus), shared labels.
2. Per object and channel, CellProfiler's own measurement code via cp_measure
   (pixels scaled to [0, 1] by 65535, as CellProfiler reads 16-bit images), in
   measurement groups selectable with ``groups``:

   ===============  ==========================================  ==========================
   group            cp_measure function                         CellProfiler module
   ===============  ==========================================  ==========================
   ``areashape``    sizeshape, zernike, feret                    MeasureObjectSizeShape
   ``intensity``    intensity (``legacy=True`` quantiles)        MeasureObjectIntensity
   ``texture``      texture (scale 3, 256 levels, 4 angles)      MeasureTexture (Haralick)
   ``granularity``  granularity (16 scales)                      MeasureGranularity
   ``radial``       radial_distribution (4 bins) [+ zernikes]    MeasureObjectIntensity-
                                                                 Distribution
   ``correlation``  pearson, manders_fold, rwc, overlap         MeasureColocalization
                    [+ costes]
   ``neighbors``    baselens (see below)                         MeasureObjectNeighbors
   ===============  ==========================================  ==========================

3. Objects → site: median (layer ``default``, CellProfiler names unchanged, like
   pycytominer's default aggregation) and mean (layer ``mean``), plus
   ``Image_Count_<Object>``.

Names follow CellProfiler: ``Cells_AreaShape_Area``, ``Nuclei_Intensity_MeanIntensity_DNA``,
``Cells_Texture_Contrast_Mito_3_00_256``, ``Cells_Granularity_1_DNA``,
``Cytoplasm_RadialDistribution_FracAtD_RNA_1of4``, ``Cells_Correlation_Correlation_ER_RNA``,
``Cells_Correlation_Manders_ER_RNA`` / ``…_RNA_ER``, ``Nuclei_Neighbors_NumberOfNeighbors_5``.

What cp_measure 0.3.0 lacks (see :data:`NOT_IN_CP_MEASURE`), and what baselens does:

* **Neighbors** — cp_measure's ``measureobjectneighbors`` reports 0-based object numbers
  and, for *Expand until adjacent*, compares expanded objects with unexpanded ones;
  baselens implements MeasureObjectNeighbors' documented definitions itself
  (:func:`baselens.extract.segmentation.object_neighbors`: Adjacent for cells, within
  ``neighbor_distance`` px for nuclei).
* **Correlation_Overlap / Correlation_K** — present in cp_measure but not in its bulk
  registry; baselens calls ``get_correlation_overlap`` directly, on labels relabelled
  1..k (:func:`contiguous_labels`): that function assumes contiguous labels and returns
  one value per label up to the largest, so gaps (a cell that is all nucleus has no
  Cytoplasm) would otherwise misalign objects.
* **Location** (Center, CenterMassIntensity, MaxIntensity) and AreaShape's
  Center/BoundingBox coordinates — positions in the field, not phenotypes; dropped
  from profiles (CellProfiler profiles drop them too before analysis).
* **Parent/Children relationships** (``Cells_Parent_Nuclei``,
  ``Cells_Children_Cytoplasm_Count``) — trivially 1:1 here by construction, not emitted.
* **Image-level measurements** (``Image_Granularity_*``, ``Image_Intensity_*``,
  ``Image_Correlation_*``) — not object measurements; not emitted.

:func:`time_classic` times measurement groups separately (for ``bench/extract_throughput.py``).
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, register
from baselens.extract.segmentation import (Segmentation, SegmentationParams, batch_nuclei,
                                          object_neighbors, segment_site)

__all__ = [
    "Classic",
    "GROUPS",
    "OBJECTS",
    "NOT_IN_CP_MEASURE",
    "measure_objects",
    "contiguous_labels",
    "per_object_values",
    "aggregate_objects",
    "time_classic",
]

UINT16_MAX = 65535.0

#: Measurement groups, in output order.
GROUPS: tuple[str, ...] = ("areashape", "intensity", "texture", "granularity", "radial", "correlation", "neighbors")
#: Object types, in output order.
OBJECTS: tuple[str, ...] = ("Nuclei", "Cells", "Cytoplasm")

#: CellProfiler measurements cp_measure 0.3.0 does not provide (or provides unusably),
#: with what baselens does about each.
NOT_IN_CP_MEASURE: dict[str, str] = {
    "Neighbors": "implemented in baselens (segmentation.object_neighbors), CellProfiler definitions",
    "Correlation_Overlap, Correlation_K": "not in cp_measure's bulk registry; called directly, on labels "
    "relabelled 1..k (it assumes contiguous labels)",
    "Location_*": "positions, not phenotypes: not emitted",
    "AreaShape_Center_*, AreaShape_BoundingBox{Minimum,Maximum}_*": "positions: dropped",
    "Parent_*, Children_*_Count": "1:1 by construction here: not emitted",
    "Image_* (image-level granularity, intensity, correlation)": "not object measurements: not emitted",
}

#: AreaShape outputs that are positions in the field, dropped from profiles.
_POSITIONAL = ("Center_X", "Center_Y", "Center_Z", "BoundingBoxMinimum_X", "BoundingBoxMaximum_X",
               "BoundingBoxMinimum_Y", "BoundingBoxMaximum_Y")

_NEIGHBOR_MEASURES = ("NumberOfNeighbors", "PercentTouching", "FirstClosestDistance",
                      "SecondClosestDistance", "AngleBetweenNeighbors")


def _cpm():
    from cp_measure.bulk import get_core_measurements, get_correlation_measurements

    return get_core_measurements(legacy=True), get_correlation_measurements()


def _channel_feature(obj: str, group: str, name: str, ch: str) -> str:
    """cp_measure name → CellProfiler column for a per-channel measurement."""
    if group == "intensity":  # Intensity_MeanIntensity → Intensity_MeanIntensity_DNA
        return f"{obj}_{name}_{ch}"
    if group == "texture":  # Contrast_3_00_256 → Texture_Contrast_DNA_3_00_256
        feat, rest = name.split("_", 1)
        return f"{obj}_Texture_{feat}_{ch}_{rest}"
    if group == "granularity":  # Granularity_1 → Granularity_1_DNA
        return f"{obj}_{name}_{ch}"
    if group == "radial":  # RadialDistribution_FracAtD_1of4 → RadialDistribution_FracAtD_DNA_1of4
        head, feat, rest = name.split("_", 2)
        return f"{obj}_{head}_{feat}_{ch}_{rest}"
    raise ValueError(group)


def _pair_names(obj: str, name: str, a: str, b: str) -> str:
    """Correlation_Pearson → Correlation_Correlation_A_B; Manders_1 → Manders_A_B, _2 → B_A."""
    feat = name.split("_", 1)[1]
    if feat == "Pearson":
        return f"{obj}_Correlation_Correlation_{a}_{b}"
    if feat in ("Slope", "Overlap"):
        return f"{obj}_Correlation_{feat}_{a}_{b}"
    base, idx = feat.rsplit("_", 1)
    return f"{obj}_Correlation_{base}_{a}_{b}" if idx == "1" else f"{obj}_Correlation_{base}_{b}_{a}"


def contiguous_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Present label ids and the label image relabelled to 1..k in id order.

    Returns ``(ids, dense)``: ``ids`` (sorted, int64) are the labels > 0 present in
    ``labels``; ``dense`` (int32) has ``dense == i + 1`` exactly where
    ``labels == ids[i]`` (background stays 0). Gaps in the ids arise from segmentation
    (e.g. Cytoplasm = Cells − Nuclei has no object for a cell that is all nucleus).
    """
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("label image has negative labels; objects must be labelled 1..n, background 0")
    labels = labels.astype(np.int64, copy=False)
    n = int(labels.max()) if labels.size else 0
    ids = np.flatnonzero(np.bincount(labels.ravel(), minlength=n + 1)[1:] > 0).astype(np.int64) + 1
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return ids, lut[labels]


def per_object_values(values, n_objects: int, name: str) -> np.ndarray:
    """One measurement's values as a float vector with one entry per object (labels 1..k).

    Raises instead of guessing when the count differs: a vector of another length
    cannot be assigned to objects without risking a value on the wrong object.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != n_objects:
        raise RuntimeError(
            f"{name}: {v.size} values for {n_objects} objects labelled 1..{n_objects}; the measurement "
            "did not return one value per object (a cp_measure change?) — please report it"
        )
    return v


def measure_objects(
    labels: np.ndarray,
    site: np.ndarray,
    channels: list[str],
    *,
    obj: str,
    groups: Iterable[str] = GROUPS,
    measure_channels: Iterable[str] | None = None,
    correlation_pairs: Iterable[tuple[str, str]] | None = None,
    texture_scale: int = 3,
    gray_levels: int = 256,
    radial_bins: int = 4,
    radial_zernikes: bool = False,
    shape_zernikes: bool = True,
    advanced_shape: bool = True,
    costes: bool = False,
    edge_measurements: bool = True,
    granular_spectrum_length: int = 16,
    neighbor_distance: int | None = None,
    timings: dict | None = None,
) -> pd.DataFrame:
    """Per-object CellProfiler measurements of one object type on one site.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Objects 1..n (gaps allowed: absent labels are dropped from the output).
    site : ndarray, shape (C, H, W)
        Raw uint16-unit intensities; scaled to [0, 1] by 65535 for cp_measure.
    obj : str
        Object name used as the column prefix (``Nuclei``, ``Cells``, ``Cytoplasm``).
    groups, measure_channels, correlation_pairs
        What to measure: groups from :data:`GROUPS`; channels (default all);
        channel pairs for ``correlation`` (default all pairs of ``measure_channels``).
    neighbor_distance : int or None
        ``None`` = Adjacent (suffix ``Adjacent``), else within that many px.
    timings : dict, optional
        Accumulates seconds per group.

    Returns
    -------
    DataFrame
        One row per present object (index = the caller's label id, gaps kept: labels
        {1, 3, 4} give rows 1, 3, 4), CellProfiler-named float columns. Objects are
        relabelled 1..k before measuring (:func:`contiguous_labels`), because some
        cp_measure entry points called directly (``get_correlation_overlap``) return one
        value per label 1..max and 0 for absent labels, which would shift every later
        object onto the wrong row. Frames of one object type measured separately
        (per group) join on this index, so an object absent from one of them gets NaN.
    """
    core, corr = _cpm()
    channels = list(channels)
    chans = list(channels if measure_channels is None else measure_channels)
    present, labels = contiguous_labels(labels)
    cols: dict[str, np.ndarray] = {}
    if len(present) == 0:
        return pd.DataFrame(index=pd.Index([], name="ObjectNumber"))
    # every measurement below sees labels 1..k (k = len(present)), so value i belongs to
    # object present[i]; the rows are indexed by the caller's label ids
    px = {c: site[channels.index(c)].astype(np.float64) / UINT16_MAX for c in set(chans) | {x for p in (correlation_pairs or []) for x in p}}

    def tick(group: str, t0: float) -> None:
        if timings is not None:
            timings[group] = timings.get(group, 0.0) + time.perf_counter() - t0

    def put(name: str, values) -> None:
        cols[name] = per_object_values(values, len(present), name)

    groups = list(groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if "areashape" in groups:
            t0 = time.perf_counter()
            any_px = px[chans[0]] if chans else None
            shape = core["sizeshape"](labels, any_px, calculate_advanced=advanced_shape)
            if shape_zernikes:
                shape.update(core["zernike"](labels, any_px))
            shape.update(core["feret"](labels, any_px))
            for k, v in shape.items():
                if k not in _POSITIONAL:
                    put(f"{obj}_AreaShape_{k}", v)
            tick("areashape", t0)
        for group, fn in (("intensity", core["intensity"]), ("texture", core["texture"]),
                          ("granularity", core["granularity"]), ("radial", core["radial_distribution"])):
            if group not in groups:
                continue
            t0 = time.perf_counter()
            for c in chans:
                if group == "texture":
                    res = fn(labels, px[c], scale=texture_scale, gray_levels=gray_levels)
                elif group == "radial":
                    res = fn(labels, px[c], bin_count=radial_bins)
                    if radial_zernikes:
                        res.update(core["radial_zernikes"](labels, px[c]))
                elif group == "intensity":
                    res = fn(labels, px[c], edge_measurements=edge_measurements)
                elif group == "granularity":
                    res = fn(labels, px[c], granular_spectrum_length=granular_spectrum_length)
                else:
                    res = fn(labels, px[c])
                for k, v in res.items():
                    if group == "intensity" and k.startswith("Location_"):
                        continue
                    put(_channel_feature(obj, group, k, c), v)
            tick(group, t0)
        if "correlation" in groups:
            t0 = time.perf_counter()
            from cp_measure.core.measurecolocalization import get_correlation_overlap

            pairs = list(correlation_pairs) if correlation_pairs is not None else [
                (a, b) for i, a in enumerate(chans) for b in chans[i + 1:]
            ]
            fns: list[Callable] = [corr["pearson"], corr["manders_fold"], corr["rwc"], get_correlation_overlap]
            for a, b in pairs:
                for fn in fns:
                    for k, v in fn(px[a], px[b], labels).items():
                        put(_pair_names(obj, k, a, b), v)
                if costes:
                    for k, v in corr["costes"](px[a], px[b], labels, scale_max=int(UINT16_MAX)).items():
                        put(_pair_names(obj, k, a, b), v)
            tick("correlation", t0)
        if "neighbors" in groups:
            t0 = time.perf_counter()
            suffix = "Adjacent" if neighbor_distance is None else str(int(neighbor_distance))
            nb = object_neighbors(labels, neighbor_distance)
            for m in _NEIGHBOR_MEASURES:
                put(f"{obj}_Neighbors_{m}_{suffix}", nb[m])
            tick("neighbors", t0)
    return pd.DataFrame(cols, index=pd.Index(present, name="ObjectNumber"))


def aggregate_objects(per_object: pd.DataFrame, columns: list[str], how: str) -> np.ndarray:
    """Site value per column: nan-median or nan-mean over objects; NaN when no object
    has a finite value (filled later)."""
    if len(per_object) == 0:
        return np.full(len(columns), np.nan)
    x = np.array(per_object.reindex(columns=columns).to_numpy(np.float64), dtype=np.float64, copy=True)
    x[~np.isfinite(x)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=0) if how == "median" else np.nanmean(x, axis=0)


def _template_site(channels: list[str]) -> tuple[np.ndarray, Segmentation]:
    """A tiny two-cell site, used once to learn the full column list."""
    rng = np.random.default_rng(0)
    h = w = 48
    yy, xx = np.mgrid[:h, :w]
    nuc = np.zeros((h, w), np.int32)
    cel = np.zeros((h, w), np.int32)
    for k, (cy, cx) in enumerate([(14, 14), (32, 30)], start=1):
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        cel[r2 <= 81] = k
        nuc[r2 <= 16] = k
    site = (rng.uniform(100, 4000, (len(channels), h, w))).astype(np.float32)
    return site, Segmentation(nuc, cel, np.where(nuc > 0, 0, cel).astype(np.int32))


@register(
    "classic",
    kind="baseline",
    description="CellProfiler features via cp_measure (AreaShape, Intensity, Texture, Granularity, "
    "RadialDistribution, Correlation, Neighbors), per object, median/mean per site",
)
class Classic:
    """CellProfiler-style per-object features aggregated to sites.

    Parameters
    ----------
    groups : list of str
        Measurement groups (:data:`GROUPS`); default all.
    objects : list of str
        Object types (:data:`OBJECTS`); default all three. Cells and Cytoplasm need a
        cytoplasmic channel (AGP, RNA, ER or Mito).
    channels : list of str or None
        Channels measured by per-channel groups; default all.
    group_channels : dict or None
        Per-group channel override, e.g. ``{"texture": ["Mito", "ER"]}``.
    group_objects : dict or None
        Per-group object override, e.g. ``{"texture": ["Cells"]}``.
    correlation_pairs : list of [a, b] or None
        Channel pairs for ``correlation``; default all pairs of the channels.
    aggregations : list of str
        ``"median"`` (layer ``default``) and/or ``"mean"`` (layer ``mean``; layer
        ``default`` when it is the only one). Default both.
    texture_scale, gray_levels, radial_bins, radial_zernikes, shape_zernikes, advanced_shape, costes, edge_measurements, granular_spectrum_length
        Measurement options (CellProfiler defaults: 3, 256, 4, 16 granularity scales,
        edge intensities on; zernikes of the intensity distribution and Costes
        thresholds are off by default: slow). ``gray_levels=16`` makes Texture ~3x
        faster; ``edge_measurements=False`` halves Intensity.
    n_workers : int
        Sites measured in parallel by this many forked processes (1 = in process).
    neighbor_distance : int
        Nuclei neighbours within this many px (Cells/Cytoplasm: Adjacent). Default 5.
    segmentation : dict
        :class:`~baselens.extract.segmentation.SegmentationParams` fields
        (``nuclei_channel``, ``cell_channel``, ``nuclei``, ``cells``, ``backend``, ...).
    fill_value : float
        Replaces NaN site values (no objects, undefined measurement). Default 0.

    Columns: ``Image_Count_<Object>`` then every ``<Object>_<Module>_<Feature>[_<Ch>]``
    column, identical for every batch (learned once from a template site).
    """

    needs_images: bool = True

    def __init__(
        self,
        *,
        groups: list[str] | tuple[str, ...] = GROUPS,
        objects: list[str] | tuple[str, ...] = OBJECTS,
        channels: list[str] | None = None,
        group_channels: dict | None = None,
        group_objects: dict | None = None,
        correlation_pairs: list | None = None,
        aggregations: list[str] | tuple[str, ...] = ("median", "mean"),
        texture_scale: int = 3,
        gray_levels: int = 256,
        radial_bins: int = 4,
        radial_zernikes: bool = False,
        shape_zernikes: bool = True,
        advanced_shape: bool = True,
        costes: bool = False,
        edge_measurements: bool = True,
        granular_spectrum_length: int = 16,
        neighbor_distance: int = 5,
        segmentation: dict | None = None,
        fill_value: float = 0.0,
        n_workers: int = 1,
    ) -> None:
        bad = [g for g in groups if g not in GROUPS]
        if bad or not groups:
            raise ValueError(f"groups must be a non-empty subset of {GROUPS}, got {list(groups)!r}")
        bad = [o for o in objects if o not in OBJECTS]
        if bad or not objects:
            raise ValueError(f"objects must be a non-empty subset of {OBJECTS}, got {list(objects)!r}")
        aggs = list(aggregations)
        if not aggs or any(a not in ("median", "mean") for a in aggs):
            raise ValueError(f"aggregations must be a non-empty subset of ['median', 'mean'], got {aggs!r}")
        for name, d in (("group_channels", group_channels), ("group_objects", group_objects)):
            if d and any(k not in GROUPS for k in d):
                raise ValueError(f"{name} keys must be groups {GROUPS}, got {sorted(d)}")
        self.groups = [g for g in GROUPS if g in groups]
        self.objects = [o for o in OBJECTS if o in objects]
        self.channels = None if channels is None else list(channels)
        self.group_channels = {k: list(v) for k, v in (group_channels or {}).items()}
        self.group_objects = {k: list(v) for k, v in (group_objects or {}).items()}
        self.correlation_pairs = None if correlation_pairs is None else [tuple(p) for p in correlation_pairs]
        if self.correlation_pairs and any(len(p) != 2 for p in self.correlation_pairs):
            raise ValueError("correlation_pairs must be pairs of channel names")
        self.aggregations = aggs
        self.options = dict(
            texture_scale=int(texture_scale), gray_levels=int(gray_levels), radial_bins=int(radial_bins),
            radial_zernikes=bool(radial_zernikes), shape_zernikes=bool(shape_zernikes),
            advanced_shape=bool(advanced_shape), costes=bool(costes),
            edge_measurements=bool(edge_measurements), granular_spectrum_length=int(granular_spectrum_length),
        )
        if int(n_workers) < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers!r}")
        self.n_workers = int(n_workers)
        self.neighbor_distance = int(neighbor_distance)
        self.seg_params = SegmentationParams.from_any(segmentation)
        self.fill_value = float(fill_value)
        self._columns: dict[tuple, list[str]] = {}
        self.timings: dict[str, float] = {}

    # -- helpers
    def _plan(self, channels: list[str], has_cells: bool) -> list[tuple[str, list[str], list[str]]]:
        """[(object, groups, channels)] to measure."""
        chans = list(channels if self.channels is None else self.channels)
        missing = [c for c in chans + [c for v in self.group_channels.values() for c in v] if c not in channels]
        if missing:
            raise ValueError(f"classic: channels {sorted(set(missing))} not in the batch; available: {channels}")
        plan = []
        for obj in self.objects:
            if obj != "Nuclei" and not has_cells:
                continue
            for g in self.groups:
                if obj in self.group_objects.get(g, self.objects):
                    plan.append((obj, g, self.group_channels.get(g, chans)))
        return plan

    def _measure_site(self, site: np.ndarray, seg: Segmentation, channels: list[str], plan, timings=None) -> dict[str, pd.DataFrame]:
        objs = seg.objects()
        per_obj: dict[str, list[pd.DataFrame]] = {}
        for obj, g, chans in plan:
            per_obj.setdefault(obj, []).append(
                measure_objects(
                    objs[obj], site, channels, obj=obj, groups=[g], measure_channels=chans,
                    correlation_pairs=self.correlation_pairs,
                    neighbor_distance=self.neighbor_distance if obj == "Nuclei" else None,
                    timings=timings, **self.options,
                )
            )
        return {obj: pd.concat(frames, axis=1) for obj, frames in per_obj.items()}

    def _site_rows(self, site, channels, plan, columns, nuclei=None) -> tuple[dict, dict]:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        need_cells = any(o != "Nuclei" for o, _, _ in plan)
        seg = segment_site(site, channels, self.seg_params, cells=need_cells, nuclei=nuclei)
        timings["segmentation"] = time.perf_counter() - t0
        per = self._measure_site(site, seg, channels, plan, timings=timings)
        counts = {f"Image_Count_{o}": float(len(df)) for o, df in per.items()}
        rows = {}
        for a in self.aggregations:
            vals = dict(counts)
            for o, df in per.items():
                oc = [c for c in columns if c.startswith(f"{o}_")]
                vals.update(zip(oc, aggregate_objects(df, oc, a)))
            rows[a] = [vals.get(c, np.nan) for c in columns]
        return rows, timings

    def _columns_for(self, channels: list[str], plan) -> list[str]:
        key = (tuple(channels), tuple((o, g, tuple(c)) for o, g, c in plan))
        if key not in self._columns:
            site, seg = _template_site(channels)
            per = self._measure_site(site, seg, channels, plan)
            cols = [f"Image_Count_{o}" for o in per]
            for o in per:
                cols += list(per[o].columns)
            self._columns[key] = cols
        return self._columns[key]

    def _batch_nuclei(self, batch: SiteBatch) -> list:
        """The batch's nuclei, shared with cell_count / cell_graph when the classic
        backend segments them with the same parameters (``batch_nuclei``)."""
        p = self.seg_params
        if p.backend != "classic" or p.nuclei_channel not in list(batch.channels):
            return [None] * len(batch.images)  # segment_site segments (or names the error)
        return batch_nuclei(batch, p.nuclei_channel, p.nuclei)

    def segment(self, batch: SiteBatch) -> list[Segmentation]:
        channels = list(batch.channels)
        need_cells = any(o != "Nuclei" for o in self.objects)
        return [segment_site(site, channels, self.seg_params, cells=need_cells, nuclei=nuc)
                for site, nuc in zip(batch.images, self._batch_nuclei(batch))]

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        if batch.images is None:
            raise ValueError("classic needs images, but batch.images is None")
        channels = list(batch.channels)
        need_cells = any(o != "Nuclei" for o in self.objects)
        has_cells = need_cells and any(c in channels for c in ("AGP", "RNA", "ER", "Mito")) or (
            need_cells and self.seg_params.cell_channel is not None)
        plan = self._plan(channels, has_cells)
        columns = self._columns_for(channels, plan)
        rows = {a: [] for a in self.aggregations}
        jobs = [(site, channels, plan, columns, nuc)
                for site, nuc in zip(batch.images, self._batch_nuclei(batch))]
        if self.n_workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(min(self.n_workers, len(jobs))) as pool:
                results = pool.starmap(self._site_rows, jobs)
        else:
            results = [self._site_rows(*job) for job in jobs]
        for site_rows, timings in results:
            for a in self.aggregations:
                rows[a].append(site_rows[a])
            for k, v in timings.items():
                self.timings[k] = self.timings.get(k, 0.0) + v
        out = {}
        for a in self.aggregations:
            df = pd.DataFrame(np.asarray(rows[a], dtype=np.float64).reshape(len(jobs), len(columns)), columns=columns)
            df = df.fillna(self.fill_value)
            layer = DEFAULT_LAYER if (a == "median" or len(self.aggregations) == 1) else a
            out[layer] = df
        return out


def time_classic(
    images: np.ndarray, channels: list[str], *, groups: Iterable[str] = GROUPS, **params
) -> dict:
    """Seconds per site for segmentation and for each measurement group separately.

    Runs :class:`Classic` on ``images`` (N, C, H, W) once per group (after one warm-up
    site, which absorbs cp_measure's first-call cost) and returns
    ``{"n_sites", "segmentation_s_per_site", "<group>_s_per_site" ..., "total_s_per_site",
    "sites_per_second"}``. For ``bench/extract_throughput.py``.
    """
    channels = list(channels)
    meta = pd.DataFrame(index=range(len(images)))
    warm = Classic(groups=list(groups), aggregations=["median"], **params)
    warm(SiteBatch(images[:1], channels, meta.iloc[:1]))
    ex = Classic(groups=list(groups), aggregations=["median"], **params)
    t0 = time.perf_counter()
    ex(SiteBatch(images, channels, meta))
    total = time.perf_counter() - t0
    n = max(len(images), 1)
    out = {"n_sites": len(images)}
    for k, v in ex.timings.items():
        out[f"{k}_s_per_site"] = v / n
    out["total_s_per_site"] = total / n
    out["sites_per_second"] = n / total if total > 0 else float("inf")
    return out
