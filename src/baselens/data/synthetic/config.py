"""Knobs and constants of the synthetic screen: latent axes, phenotype classes, controls,
:class:`SyntheticConfig`, and the seeded random streams every part draws from."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselens.data import JUMP_CHANNELS
from baselens.data.presets import PresetConfig


#: Version of the generator; bump when the output for a given config changes.
GENERATOR_VERSION = "1"

#: Named latent phenotype axes (ground-truth columns are ``GT_<axis>``).
AXES: tuple[str, ...] = (
    "count",
    "nuclear_size",
    "cell_shape",
    *(f"intensity_{ch}" for ch in JUMP_CHANNELS),
    "texture",
    "localization",
    "clustering",
)
GT_COLUMNS: tuple[str, ...] = tuple(f"GT_{a}" for a in AXES)

#: Axes that neither cell count nor channel intensity statistics see (fully).
MORPHOLOGY_AXES: tuple[str, ...] = (
    "nuclear_size",
    "cell_shape",
    "texture",
    "localization",
    "clustering",
)

#: Phenotype classes, in the order groups and singletons cycle through them.
PHENOTYPE_CLASSES: tuple[str, ...] = (
    "cytotoxic",
    "texture",
    "intensity",
    "localization",
    "shape",
    "clustering",
    "nuclear_size",
    "proliferative",
    "mixed",
)

#: Negative control (on every plate).
NEGCON = "DMSO"

#: Positive controls (on every plate): name -> (phenotype class, effects).
POSCONS: dict[str, tuple[str, dict[str, float]]] = {
    "POSCON_TOX": ("cytotoxic", {"count": -2.0, "intensity_DNA": 0.5, "intensity_Mito": -0.6}),
    "POSCON_MORPH": (
        "mixed",
        {"intensity_Mito": -1.0, "texture": 1.2, "localization": 1.5, "cell_shape": 1.2},
    ),
}

# How one latent unit maps to rendering parameters (documented in the module docstring).
_COUNT_SCALE = 0.5
_NUC_AREA_SCALE = 0.4
_SHAPE_SCALE = 0.5
_INTENSITY_SCALE = 0.4
_TEXTURE_SCALE = 0.5
_LOCALIZATION_SCALE = 0.7
_CLUSTER_SCALE = 1.5

# Baseline rendering constants.
_BASE_ELONGATION = 1.35  # axis ratio of an untreated cell
_BASE_PHI = np.pi / 4  # untreated ER/RNA/Mito profile: mostly perinuclear
_LOC_AMPLITUDE = 0.45
_BASE_CLUSTER_LOGIT = -1.0
#: Counts per pixel at unit compartment density, per channel (JUMP order).
_CHANNEL_LEVEL = np.array([2600.0, 1100.0, 900.0, 1000.0, 1200.0])
#: Correlation lengths (pixels) of the organelle textures at texture = 0.
_TEXTURE_LENGTH = {"DNA": 1.3, "ER": 1.8, "RNA": 2.2, "AGP": 1.4, "Mito": 1.6}


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class SyntheticConfig(PresetConfig):
    """All knobs of the synthetic screen generator.

    Built from a mapping by ``from_dict`` (unknown keys raise) or from a config table
    ``{"preset": "demo" | "quick", **overrides}`` by ``from_preset``
    (:class:`~baselens.data.presets.PresetConfig`).

    Parameters
    ----------
    seed : int
        Master seed; the same config and seed give byte-identical output.
    n_sources, n_batches_per_source, n_plates_per_batch : int
        Hierarchy sizes (sources are labs/microscopes).
    plate_format : {96, 384}
        Wells per plate.
    sites_per_well : int
        Imaging sites per well.
    image_size : int
        Height and width of each image (pixels).
    n_replicates : int
        Minimum number of wells per perturbation. Perturbations are spread over
        ``max(1, n_plates // n_replicates)`` plate maps, each repeated on several plates,
        so that replicates sit on different plates (and batches/sources) where possible.
    replicates_per_plate : int
        Wells of each perturbation on every plate it is on (1: replicates only across
        plates). With 2, replicate pairs share a plate, so the same-plate (SP) batch level
        can be formed and scores can be followed from same-plate to cross-source.
    randomize_layout : bool
        False: controls sit at the same wells on every plate and replicate plates of one
        plate map share the well positions. True: every plate is shuffled independently.
    n_negcon_per_plate, n_poscon_wells_per_plate : int
        Negative-control wells per plate, and wells per positive control per plate.
    empty_wells : {"negcon", "skip"}
        What to do with wells left over after the layout: extra negative controls, or
        leave them unused (not imaged).
    n_gene_complexes, n_compound_moas : int
        Number of gene complexes and compound MoAs.
    group_size_min, group_size_max : int
        Members per group (inclusive range).
    n_gene_singletons, n_compound_singletons : int
        Active perturbations without a group.
    n_inert_genes, n_inert_compounds : int
        Perturbations with an all-zero phenotype.
    member_sd : float
        Member-specific deviation from the group direction (latent units).
    cells_per_site : float
        Expected number of cells per untreated site.
    cell_radius, nucleus_radius : float
        Mean cell and nucleus radius (pixels).
    cell_sd : float
        Per-cell log-normal heterogeneity (size, elongation, intensity).
    bio_well_sd, bio_site_sd : float
        Biological variability of the latent phenotype per well and per site.
    poisson_cell_count : bool
        Draw the number of cells from a Poisson distribution (else round the mean).
    background : float
        Camera offset / background counts.
    shot_noise : float
        Scale of Poisson-like shot noise (``0`` disables it).
    read_noise : float
        Gaussian read-noise standard deviation (counts).
    batch_effect : float
        Strength knob of all technical components below (0 = none, 1 = realistic).
    source_gain_sd, source_offset, source_blur_sigma, source_vignetting, source_noise_sd,
    source_seeding_sd, batch_stain_sd, plate_drift, edge_effect, seeding_sd : float
        Magnitudes of the technical components at ``batch_effect = 1`` (each is
        multiplied by the knob): per-source log-gain sd per channel, maximum additive
        offset, maximum blur sigma (pixels), maximum vignetting depth, maximum extra read
        noise, log seeding-density sd; per-batch log-staining sd per channel; per-plate
        log-intensity gradient across the plate; edge-well log effect (fewer cells,
        brighter staining); per-well log seeding-density sd.
    n_viability_assays, n_specific_assays : int
        Bioactivity assays driven by the count axis / by morphology axes.
    assay_label_noise : float
        Probability that a bioactivity label is flipped.
    """

    seed: int = 0
    # hierarchy
    n_sources: int = 2
    n_batches_per_source: int = 2
    n_plates_per_batch: int = 2
    plate_format: int = 96
    sites_per_well: int = 2
    image_size: int = 160
    # layout
    n_replicates: int = 4
    replicates_per_plate: int = 1
    randomize_layout: bool = False
    n_negcon_per_plate: int = 8
    n_poscon_wells_per_plate: int = 2
    empty_wells: str = "negcon"
    # perturbations
    n_gene_complexes: int = 12
    n_compound_moas: int = 10
    group_size_min: int = 3
    group_size_max: int = 5
    n_gene_singletons: int = 12
    n_compound_singletons: int = 12
    n_inert_genes: int = 10
    n_inert_compounds: int = 10
    member_sd: float = 0.15
    # biology
    cells_per_site: float = 45.0
    cell_radius: float = 9.0
    nucleus_radius: float = 4.6
    cell_sd: float = 0.1
    bio_well_sd: float = 0.15
    bio_site_sd: float = 0.05
    poisson_cell_count: bool = True
    # acquisition (independent of the batch-effect knob)
    background: float = 100.0
    shot_noise: float = 1.0
    read_noise: float = 3.0
    # batch effects
    batch_effect: float = 1.0
    source_gain_sd: float = 0.15
    source_offset: float = 60.0
    source_blur_sigma: float = 0.8
    source_vignetting: float = 0.25
    source_noise_sd: float = 6.0
    source_seeding_sd: float = 0.1
    batch_stain_sd: float = 0.12
    plate_drift: float = 0.15
    edge_effect: float = 0.15
    seeding_sd: float = 0.1
    # bioactivity
    n_viability_assays: int = 3
    n_specific_assays: int = 4
    assay_label_noise: float = 0.02

    def __post_init__(self) -> None:
        errors = []
        if self.plate_format not in (96, 384):
            errors.append(f"plate_format must be 96 or 384, got {self.plate_format!r}")
        if self.empty_wells not in ("negcon", "skip"):
            errors.append(f"empty_wells must be 'negcon' or 'skip', got {self.empty_wells!r}")
        for name in (
            "n_sources",
            "n_batches_per_source",
            "n_plates_per_batch",
            "sites_per_well",
            "n_replicates",
            "replicates_per_plate",
            "n_negcon_per_plate",
            "n_poscon_wells_per_plate",
            "group_size_min",
        ):
            if int(getattr(self, name)) < 1:
                errors.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.group_size_max < self.group_size_min:
            errors.append("group_size_max must be >= group_size_min")
        if self.image_size < 32:
            errors.append(f"image_size must be >= 32, got {self.image_size!r}")
        if not 0 < self.nucleus_radius < self.cell_radius:
            errors.append("need 0 < nucleus_radius < cell_radius")
        if self.cells_per_site <= 0:
            errors.append("cells_per_site must be > 0")
        if self.batch_effect < 0:
            errors.append("batch_effect must be >= 0")
        if errors:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(errors))

    # ---- presets ------------------------------------------------------------------
    @classmethod
    def demo(cls, **overrides: Any) -> "SyntheticConfig":
        """Default dataset of ``baselens demo``: 8 plates x 96 wells, 2 sites of 160 px, ~45 cells each.

        Sized so that a Poisson cell count (CV ~15 % per site) lets the count axis
        separate cytotoxic perturbations from DMSO; ~60 s to generate on 2 cores. Layouts
        are randomized per plate, so replicates sit at different well positions and the
        not-same-layout batch levels (NSL, NSSL) can be formed; each perturbation has two
        wells on a plate of one source and two on a plate of the other, so every level from
        same-plate (SP) to not-same-source (NSS) can be formed.
        """
        return cls.from_dict({"randomize_layout": True, "replicates_per_plate": 2, **overrides})

    @classmethod
    def quick(cls, **overrides: Any) -> "SyntheticConfig":
        """Tiny screen for tests: 2 sources x 1 batch x 3 plates, 64 px, ~30 perturbations."""
        base = dict(
            n_sources=2,
            n_batches_per_source=1,
            n_plates_per_batch=3,
            sites_per_well=2,
            image_size=64,
            n_replicates=3,
            n_negcon_per_plate=4,
            n_poscon_wells_per_plate=1,
            empty_wells="skip",
            n_gene_complexes=2,
            n_compound_moas=2,
            group_size_min=3,
            group_size_max=3,
            n_gene_singletons=7,
            n_compound_singletons=4,
            n_inert_genes=2,
            n_inert_compounds=2,
            cells_per_site=10.0,
            cell_radius=8.0,
            nucleus_radius=4.0,
            n_viability_assays=2,
            n_specific_assays=2,
        )
        base.update(overrides)
        return cls.from_dict(base)

    # ---- (de)serialization (from_dict, from_preset: PresetConfig) -----------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of all knobs."""
        return dataclasses.asdict(self)

    @property
    def n_plates(self) -> int:
        """Total number of plates."""
        return self.n_sources * self.n_batches_per_source * self.n_plates_per_batch


# ----------------------------------------------------------------------------- randomness
def _key(part: int | str) -> int:
    return zlib.crc32(part.encode()) if isinstance(part, str) else int(part)


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """Independent, order-free random stream for ``(seed, *keys)``."""
    ss = np.random.SeedSequence(int(seed), spawn_key=tuple(_key(k) for k in keys))
    return np.random.default_rng(ss)
