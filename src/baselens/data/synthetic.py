"""Ground-truth synthetic Cell Painting screen with real image rendering.

The generator simulates a multi-source screen (sources, i.e. labs/microscopes → batches
→ plates of 96 or 384 wells → wells → sites) and renders five-channel uint16 images
(``DNA, ER, RNA, AGP, Mito``, JUMP order) of cells with nuclei, cytoplasm and
channel-specific organelle textures. Every perturbation has a known phenotype along
named latent axes, genes belong to complexes and compounds to mechanisms of action
(MoA), and compounds carry binary bioactivity labels, so that every downstream task
has a ground truth and an upper bound (the realized latent phenotype of each site).

Latent axes and what they do to the pixels
------------------------------------------
The axes are designed so that some phenotype classes are visible to the cell-count and
pixel-statistics baselines and others *only* to morphology/texture (Seal et al. 2026 (Nat. Commun.): cell
count predicts many bioactivity labels; “Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026), Appendix D.1: ``pixel_mean`` and
``pixel_stats`` baselines). Cells are rendered additively on a torus (no intensity is
lost at the image border) and the integrated intensity of every cell compartment is
normalized, so the channel totals depend only on the number of cells and on the
intensity axes.

``count``
    Number of cells per site, ``n ~ Poisson(cells_per_site * exp(0.5 * count))``.
    Negative = cytotoxic, positive = proliferative. Visible to cell count and, because
    intensity is additive per cell, to every channel's mean (``pixel_mean``).
``nuclear_size``
    Nuclear area multiplied by ``exp(0.4 * v)`` at constant integrated DNA intensity.
    Channel means are unchanged; the DNA intensity distribution changes (larger nuclei
    are dimmer), so ``pixel_stats`` sees part of it, morphology sees it fully.
``cell_shape``
    Cell axis ratio multiplied by ``exp(0.5 * v)`` at constant cell area (and
    integrated intensity). Invisible to count and to channel mean/std; visible to
    shape/morphology.
``intensity_<Ch>``
    Integrated intensity of channel ``Ch`` multiplied by ``exp(0.4 * v)``. Visible to
    ``pixel_mean``/``pixel_stats``; not to cell count.
``texture``
    Correlation length of every organelle texture multiplied by ``exp(0.5 * v)``
    (positive = coarser). Textures are Gaussian random fields, rank-transformed to a
    *fixed* marginal distribution, multiplied onto the compartment masks: channel mean
    and std are unchanged in expectation, cell count is unchanged. Only texture /
    spatial-correlation features see it.
``localization``
    Radial distribution of ER, cytoplasmic RNA and Mito between perinuclear and
    peripheral (positive = peripheral). Implemented as a per-cell weight
    ``w = 1 + A (cos(phi) h1 + sin(phi) h2)`` with ``h1, h2`` orthonormal, zero-mean
    radial profiles, so every cell keeps its total intensity *and* the second moment
    of its profile; only radial/morphology features see it.
``clustering``
    Spatial clustering of cells (probability that a cell is seeded near a cluster
    centre) at constant count and, thanks to toroidal additive rendering, exactly
    constant channel totals. Only spatial-arrangement (neighbour) features see it.

Phenotype classes (``Metadata_PhenotypeClass``): ``cytotoxic`` and ``proliferative``
(count axis), ``intensity``, ``nuclear_size``, ``shape``, ``texture``,
``localization``, ``clustering``, ``mixed`` (count plus several other axes) and
``inert`` (all zeros). Members of a complex/MoA share a group direction with a small
member-specific deviation (only on the group's non-zero axes, so pure classes stay
pure).

Technical variation
-------------------
One knob ``batch_effect`` (0 = none, 1 = realistic) multiplies every technical
component, each of which can be overridden: per-source gain, offset, blur,
illumination vignetting, extra read noise and seeding density; per-batch staining
(per channel); per-plate intensity drift along rows/columns; edge-well effects
(fewer, brighter cells); per-well seeding density. Biological per-well/per-site
variability (``bio_well_sd``, ``bio_site_sd``), per-cell heterogeneity (``cell_sd``),
Poisson cell counts and shot/read noise are configured separately and do not depend on
the knob.

Budget
------
``SyntheticConfig.demo()`` (2 sources x 2 batches x 2 plates of 96 wells = 768 wells,
2 sites per well of 160 px with ~45 cells, ~130 perturbations with 4 replicates on 4
plates in 4 batches) generates in about 60 s (single process; ~40 ms per site, rendering
plus five TIFFs); ``SyntheticConfig.quick()`` (6 plates, 234 sites of 64 px) in about 2 s.

Examples
--------
>>> from baselens.data.synthetic import SyntheticConfig, generate_screen
>>> load_data_path = generate_screen(SyntheticConfig.quick(), "runs/synthetic")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage, special

from baselens.data import JUMP_CHANNELS, SITE_KEYS
from baselens.data.wells import well_name

__all__ = [
    "AXES",
    "GT_COLUMNS",
    "PHENOTYPE_CLASSES",
    "MORPHOLOGY_AXES",
    "NEGCON",
    "POSCONS",
    "SyntheticConfig",
    "generate_screen",
    "make_perturbations",
    "make_relationships",
    "make_bioactivity",
    "make_plates",
    "make_layout",
    "realize_site_phenotypes",
    "gaussian_random_field",
    "place_cells",
    "render_site",
    "well_name",
]

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


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticConfig:
    """All knobs of the synthetic screen generator.

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

    # ---- (de)serialization ----------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SyntheticConfig":
        """Build a config from a mapping; unknown keys raise a ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown SyntheticConfig key(s): {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of all knobs."""
        return dataclasses.asdict(self)

    @property
    def n_plates(self) -> int:
        """Total number of plates."""
        return self.n_sources * self.n_batches_per_source * self.n_plates_per_batch


# --------------------------------------------------------------------------------------
# randomness
# --------------------------------------------------------------------------------------
def _key(part: int | str) -> int:
    return zlib.crc32(part.encode()) if isinstance(part, str) else int(part)


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """Independent, order-free random stream for ``(seed, *keys)``."""
    ss = np.random.SeedSequence(int(seed), spawn_key=tuple(_key(k) for k in keys))
    return np.random.default_rng(ss)


# --------------------------------------------------------------------------------------
# perturbations, relationships, bioactivity (no images)
# --------------------------------------------------------------------------------------
def _class_direction(cls_name: str, rng: np.random.Generator) -> dict[str, float]:
    """A random phenotype direction (latent effects) typical of ``cls_name``."""
    sign = lambda: float(rng.choice([-1.0, 1.0]))  # noqa: E731
    if cls_name == "cytotoxic":
        return {"count": -rng.uniform(1.4, 2.2)}
    if cls_name == "proliferative":
        return {"count": rng.uniform(0.6, 1.0)}
    if cls_name == "intensity":
        chans = rng.choice(len(JUMP_CHANNELS), size=2, replace=False)
        eff = {f"intensity_{JUMP_CHANNELS[chans[0]]}": sign() * rng.uniform(0.9, 1.5)}
        if rng.random() < 0.5:
            eff[f"intensity_{JUMP_CHANNELS[chans[1]]}"] = sign() * rng.uniform(0.5, 1.0)
        return eff
    if cls_name == "nuclear_size":
        return {"nuclear_size": sign() * rng.uniform(0.9, 1.5)}
    if cls_name == "shape":
        return {"cell_shape": rng.uniform(1.0, 1.8)}
    if cls_name == "texture":
        return {"texture": sign() * rng.uniform(0.9, 1.5)}
    if cls_name == "localization":
        return {"localization": sign() * rng.uniform(0.9, 1.6)}
    if cls_name == "clustering":
        return {"clustering": (1.0 if rng.random() < 0.7 else -1.0) * rng.uniform(1.0, 2.0)}
    if cls_name == "mixed":
        eff = {"count": -rng.uniform(0.4, 1.0)}
        others = [a for a in AXES if a != "count"]
        for ax in rng.choice(others, size=3, replace=False):
            eff[str(ax)] = sign() * rng.uniform(0.5, 1.2)
        return eff
    if cls_name == "inert":
        return {}
    raise ValueError(f"unknown phenotype class {cls_name!r}")


def _member_effect(
    direction: Mapping[str, float], member_sd: float, rng: np.random.Generator
) -> dict[str, float]:
    """Group direction scaled per member plus a small deviation on the same axes."""
    scale = rng.uniform(0.8, 1.2)
    out = {}
    for ax, v in direction.items():
        e = v * scale + rng.normal(0.0, member_sd)
        out[ax] = float(np.sign(v) * max(abs(e), 0.3 * abs(v)))  # keep the direction
    return out


def make_perturbations(config: SyntheticConfig) -> pd.DataFrame:
    """Perturbation table with ground-truth effects.

    Parameters
    ----------
    config : SyntheticConfig

    Returns
    -------
    DataFrame
        One row per perturbation (controls included): ``Metadata_Perturbation``,
        ``Metadata_PerturbationType`` (gene|compound|control), ``Metadata_ControlType``
        (negcon|poscon|""), ``Metadata_Group`` (complex/MoA name or ""),
        ``Metadata_PhenotypeClass`` and ``GT_<axis>`` effects (latent units).
    """
    rng = _rng(config.seed, "perturbations")
    rows: list[dict[str, Any]] = []

    def add(name: str, ptype: str, ctrl: str, group: str, cls_name: str, eff: Mapping[str, float]):
        row = {
            "Metadata_Perturbation": name,
            "Metadata_PerturbationType": ptype,
            "Metadata_ControlType": ctrl,
            "Metadata_Group": group,
            "Metadata_PhenotypeClass": cls_name,
        }
        row.update({f"GT_{a}": float(eff.get(a, 0.0)) for a in AXES})
        rows.append(row)

    add(NEGCON, "control", "negcon", "", "inert", {})
    for name, (cls_name, eff) in POSCONS.items():
        add(name, "control", "poscon", "", cls_name, eff)

    for ptype, n_groups, n_single, n_inert, prefix, gprefix in (
        ("gene", config.n_gene_complexes, config.n_gene_singletons, config.n_inert_genes,
         "GENE", "complex"),
        ("compound", config.n_compound_moas, config.n_compound_singletons,
         config.n_inert_compounds, "CPD", "moa"),
    ):
        members: list[tuple[str, str, dict[str, float]]] = []  # (group, class, effect)
        k = 0
        for g in range(n_groups):
            cls_name = PHENOTYPE_CLASSES[k % len(PHENOTYPE_CLASSES)]
            k += 1
            direction = _class_direction(cls_name, rng)
            size = int(rng.integers(config.group_size_min, config.group_size_max + 1))
            for _ in range(size):
                eff = _member_effect(direction, config.member_sd, rng)
                members.append((f"{gprefix}_{g + 1:02d}", cls_name, eff))
        for _ in range(n_single):
            cls_name = PHENOTYPE_CLASSES[k % len(PHENOTYPE_CLASSES)]
            k += 1
            members.append(("", cls_name, _class_direction(cls_name, rng)))
        members += [("", "inert", {}) for _ in range(n_inert)]
        # opaque names: the identifier must not reveal the group or class
        order = rng.permutation(len(members))
        width = max(3, len(str(len(members))))
        for i, j in enumerate(order):
            group, cls_name, eff = members[j]
            add(f"{prefix}{i + 1:0{width}d}", ptype, "", group, cls_name, eff)
    return pd.DataFrame(rows)


def make_relationships(perturbations: pd.DataFrame) -> pd.DataFrame:
    """Known pairs (members of one complex or MoA), both directions listed.

    Returns
    -------
    DataFrame
        ``entity1, entity2, source`` with source ``synthetic_complex`` (genes) or
        ``synthetic_moa`` (compounds), like CORUM/HuMAP pair files.
    """
    rows = []
    grouped = perturbations[perturbations["Metadata_Group"] != ""]
    for group, sub in grouped.groupby("Metadata_Group", sort=True):
        is_gene = sub["Metadata_PerturbationType"].iat[0] == "gene"
        source = "synthetic_complex" if is_gene else "synthetic_moa"
        names = sorted(sub["Metadata_Perturbation"])
        rows += [(a, b, source) for a in names for b in names if a != b]
    out = pd.DataFrame(rows, columns=["entity1", "entity2", "source"])
    return out.sort_values(["source", "entity1", "entity2"], ignore_index=True)


def make_bioactivity(perturbations: pd.DataFrame, config: SyntheticConfig) -> pd.DataFrame:
    """Binary bioactivity labels per (non-control) compound, as in Seal et al. 2026.

    Viability assays are active iff the compound's ``count`` effect is below an
    assay-specific threshold (cytotoxicity). Specific assays are driven by a direction
    in the morphology axes (:data:`MORPHOLOGY_AXES`): preferably the direction of a MoA
    with a morphological phenotype (a "target" assay), else a random direction; active
    iff the projection exceeds half the direction's norm. Labels are flipped with
    probability ``assay_label_noise``.

    Returns
    -------
    DataFrame
        ``Metadata_Perturbation, assay, assay_type (viability|specific), active (0/1)``.
    """
    rng = _rng(config.seed, "bioactivity")
    cpd = perturbations[perturbations["Metadata_PerturbationType"] == "compound"]
    names = cpd["Metadata_Perturbation"].to_numpy()
    count = cpd["GT_count"].to_numpy()
    morph = cpd[[f"GT_{a}" for a in MORPHOLOGY_AXES]].to_numpy()
    frames = []
    thresholds = np.linspace(-0.5, -1.1, max(config.n_viability_assays, 1))
    for i in range(config.n_viability_assays):
        active = count < thresholds[i]
        frames.append((f"viability_{i + 1}", "viability", active))
    # candidate directions: group means of MoAs with a morphology phenotype
    dirs = []
    moa = cpd[cpd["Metadata_Group"] != ""]
    for _, sub in moa.groupby("Metadata_Group", sort=True):
        d = sub[[f"GT_{a}" for a in MORPHOLOGY_AXES]].to_numpy().mean(axis=0)
        if np.linalg.norm(d) > 0.5 and sub["GT_count"].abs().mean() < 0.3:
            dirs.append(d)
    for i in range(config.n_specific_assays):
        if i < len(dirs):
            d = dirs[i]
        else:
            d = rng.normal(size=len(MORPHOLOGY_AXES))
            d *= 1.2 / np.linalg.norm(d)
        proj = morph @ (d / np.linalg.norm(d))
        frames.append((f"specific_{i + 1}", "specific", proj > 0.5 * np.linalg.norm(d)))
    rows = []
    for assay, atype, active in frames:
        flip = rng.random(len(active)) < config.assay_label_noise
        rows.append(
            pd.DataFrame(
                {
                    "Metadata_Perturbation": names,
                    "assay": assay,
                    "assay_type": atype,
                    "active": (active ^ flip).astype("int64"),
                }
            )
        )
    cols = ["Metadata_Perturbation", "assay", "assay_type", "active"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------------------
# plates and layout
# --------------------------------------------------------------------------------------
def _plate_shape(plate_format: int) -> tuple[int, int]:
    return (8, 12) if plate_format == 96 else (16, 24)


def make_plates(config: SyntheticConfig) -> pd.DataFrame:
    """Plates with their source, batch and plate-map index.

    Returns
    -------
    DataFrame
        ``Metadata_Source, Metadata_Batch, Metadata_Plate, plate_index, source_index,
        batch_index, plate_map`` — plate maps are assigned so that the plates of one
        map fall in different batches and sources where possible.
    """
    n_maps = max(1, config.n_plates * config.replicates_per_plate // config.n_replicates)
    rows = []
    g = 0
    for s in range(config.n_sources):
        for b in range(config.n_batches_per_source):
            for p in range(config.n_plates_per_batch):
                rows.append(
                    {
                        "Metadata_Source": f"source_{s + 1}",
                        "Metadata_Batch": f"S{s + 1}_batch_{b + 1}",
                        "Metadata_Plate": f"S{s + 1}B{b + 1}P{p + 1:02d}",
                        "plate_index": g,
                        "source_index": s,
                        "batch_index": s * config.n_batches_per_source + b,
                        "plate_map": g % n_maps,
                    }
                )
                g += 1
    return pd.DataFrame(rows)


def make_layout(
    config: SyntheticConfig, perturbations: pd.DataFrame, plates: pd.DataFrame
) -> pd.DataFrame:
    """Assign perturbations to wells.

    Each plate map holds its share of the treatments ``copies`` times (``copies > 1``
    only when there are fewer plates than replicates), ``n_negcon_per_plate`` negative
    controls and ``n_poscon_wells_per_plate`` wells of every positive control.

    Returns
    -------
    DataFrame
        One row per used well: ``Metadata_Plate, Metadata_Well, Metadata_Row,
        Metadata_Col`` (1-based ints), ``Metadata_Perturbation, Metadata_ControlType``.

    Raises
    ------
    ValueError
        If the perturbations do not fit on the plates.
    """
    rng = _rng(config.seed, "layout")
    n_rows, n_cols = _plate_shape(config.plate_format)
    n_wells = n_rows * n_cols
    n_maps = int(plates["plate_map"].max()) + 1
    plates_per_map = plates["plate_map"].value_counts()
    copies = max(config.replicates_per_plate,
                 int(np.ceil(config.n_replicates / plates_per_map.min())))

    ctrl = perturbations["Metadata_ControlType"]
    treat = perturbations.loc[ctrl == "", "Metadata_Perturbation"].to_numpy()
    treat = treat[rng.permutation(len(treat))]
    poscons = perturbations.loc[ctrl == "poscon", "Metadata_Perturbation"]
    controls = [NEGCON] * config.n_negcon_per_plate + [
        p for p in poscons for _ in range(config.n_poscon_wells_per_plate)
    ]
    maps = [list(treat[m::n_maps]) * copies for m in range(n_maps)]
    capacity = n_wells - len(controls)
    worst = max(len(m) for m in maps)
    if worst > capacity:
        raise ValueError(
            f"{len(treat)} perturbations x {copies} copies do not fit on {n_maps} plate map(s) "
            f"of {capacity} free wells ({config.plate_format}-well plates): add plates, "
            "use 384-well plates, or reduce perturbations/replicates"
        )

    ctrl_type = {NEGCON: "negcon", **{p: "poscon" for p in poscons}}
    fill = NEGCON if config.empty_wells == "negcon" else None
    # fixed layout: controls at the same wells on every plate, spread over the plate
    ctrl_pos = np.sort(rng.choice(n_wells, size=len(controls), replace=False))
    free_pos = np.setdiff1d(np.arange(n_wells), ctrl_pos)
    map_perm = [rng.permutation(free_pos) for _ in range(n_maps)]

    rows = []
    for plate in plates.itertuples(index=False):
        m = plate.plate_map
        content = maps[m] + [fill] * (capacity - len(maps[m]))
        if config.randomize_layout:
            prng = _rng(config.seed, "layout", plate.plate_index)
            pos = prng.permutation(n_wells)
            assign = dict(zip(pos, controls + content))
        else:
            assign = dict(zip(ctrl_pos, controls))
            assign.update(zip(map_perm[m], content))
        for idx in range(n_wells):
            pert = assign[idx]
            if pert is None:
                continue
            r, c = divmod(idx, n_cols)
            rows.append(
                {
                    "Metadata_Plate": plate.Metadata_Plate,
                    "Metadata_Well": well_name(r + 1, c + 1),
                    "Metadata_Row": r + 1,
                    "Metadata_Col": c + 1,
                    "Metadata_Perturbation": pert,
                    "Metadata_ControlType": ctrl_type.get(pert, ""),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# technical (batch) effects
# --------------------------------------------------------------------------------------
def _technical_parameters(
    config: SyntheticConfig, plates: pd.DataFrame, layout: pd.DataFrame
) -> tuple[pd.DataFrame, dict[int, dict[str, Any]]]:
    """Per-well intensity/count multipliers and per-source acquisition parameters.

    Returns
    -------
    wells : DataFrame
        ``layout`` plus ``gain_<Ch>`` (multiplicative) and ``count_mult`` columns.
    sources : dict
        source index -> ``{"offset": (C,), "blur": float, "vignetting": float,
        "noise": float}``.
    """
    k = float(config.batch_effect)
    n_ch = len(JUMP_CHANNELS)
    rng = _rng(config.seed, "technical")
    src_gain = np.exp(k * config.source_gain_sd * rng.normal(size=(config.n_sources, n_ch)))
    src_offset = k * config.source_offset * rng.uniform(0, 1, size=(config.n_sources, n_ch))
    src_blur = k * config.source_blur_sigma * rng.uniform(0.3, 1.0, size=config.n_sources)
    src_vig = k * config.source_vignetting * rng.uniform(0.5, 1.0, size=config.n_sources)
    src_noise = k * config.source_noise_sd * rng.uniform(0.5, 1.0, size=config.n_sources)
    src_seed = np.exp(k * config.source_seeding_sd * rng.normal(size=config.n_sources))
    n_batches = config.n_sources * config.n_batches_per_source
    batch_stain = np.exp(k * config.batch_stain_sd * rng.normal(size=(n_batches, n_ch)))
    drift = rng.normal(size=(len(plates), 2, n_ch))  # row and column gradients

    n_rows, n_cols = _plate_shape(config.plate_format)
    pl = plates.set_index("Metadata_Plate")
    w = layout.copy()
    pidx = pl.loc[w["Metadata_Plate"], "plate_index"].to_numpy()
    sidx = pl.loc[w["Metadata_Plate"], "source_index"].to_numpy()
    bidx = pl.loc[w["Metadata_Plate"], "batch_index"].to_numpy()
    rfrac = (w["Metadata_Row"].to_numpy() - 1) / max(n_rows - 1, 1) - 0.5
    cfrac = (w["Metadata_Col"].to_numpy() - 1) / max(n_cols - 1, 1) - 0.5
    edge = (
        (w["Metadata_Row"].to_numpy() == 1)
        | (w["Metadata_Row"].to_numpy() == n_rows)
        | (w["Metadata_Col"].to_numpy() == 1)
        | (w["Metadata_Col"].to_numpy() == n_cols)
    ).astype(float)
    log_drift = k * config.plate_drift * (
        rfrac[:, None] * drift[pidx, 0] + cfrac[:, None] * drift[pidx, 1]
    )
    gain = (
        src_gain[sidx]
        * batch_stain[bidx]
        * np.exp(log_drift)
        * np.exp(0.5 * k * config.edge_effect * edge)[:, None]
    )
    for c, ch in enumerate(JUMP_CHANNELS):
        w[f"gain_{ch}"] = gain[:, c]
    well_rng = _rng(config.seed, "seeding")
    seeding = np.exp(k * config.seeding_sd * well_rng.normal(size=len(w)))
    w["count_mult"] = src_seed[sidx] * seeding * np.exp(-k * config.edge_effect * edge)
    w["source_index"] = sidx
    sources = {
        s: {
            "offset": src_offset[s],
            "blur": float(src_blur[s]),
            "vignetting": float(src_vig[s]),
            "noise": float(src_noise[s]),
        }
        for s in range(config.n_sources)
    }
    return w, sources


# --------------------------------------------------------------------------------------
# realized phenotypes
# --------------------------------------------------------------------------------------
def _max_cells(config: SyntheticConfig) -> int:
    return int(1.1 * config.image_size**2 / (np.pi * config.cell_radius**2))


def realize_site_phenotypes(
    config: SyntheticConfig,
    wells: pd.DataFrame,
    plates: pd.DataFrame,
    perturbations: pd.DataFrame,
) -> pd.DataFrame:
    """Realized latent phenotype and cell number of every site.

    ``GT_<axis>`` = perturbation effect + well-level + site-level biological noise
    (before rendering and technical noise). ``n_cells`` additionally includes Poisson
    sampling and technical seeding variation (``wells["count_mult"]`` when present).

    Returns
    -------
    DataFrame
        SITE_KEYS + ``Metadata_Perturbation`` + ``GT_<axis>`` + ``n_cells``.
    """
    rng = _rng(config.seed, "biology")
    eff = perturbations.set_index("Metadata_Perturbation")[list(GT_COLUMNS)]
    n_w, n_s, n_a = len(wells), config.sites_per_well, len(AXES)
    well_noise = rng.normal(0.0, config.bio_well_sd, size=(n_w, 1, n_a))
    site_noise = rng.normal(0.0, config.bio_site_sd, size=(n_w, n_s, n_a))
    base = eff.loc[wells["Metadata_Perturbation"]].to_numpy()[:, None, :]
    gt = (base + well_noise + site_noise).reshape(n_w * n_s, n_a)

    pl = plates.set_index("Metadata_Plate")
    rep = np.repeat(np.arange(n_w), n_s)
    out = pd.DataFrame(
        {
            "Metadata_Source": pl.loc[wells["Metadata_Plate"], "Metadata_Source"].to_numpy()[rep],
            "Metadata_Batch": pl.loc[wells["Metadata_Plate"], "Metadata_Batch"].to_numpy()[rep],
            "Metadata_Plate": wells["Metadata_Plate"].to_numpy()[rep],
            "Metadata_Well": wells["Metadata_Well"].to_numpy()[rep],
            "Metadata_Site": np.tile(np.arange(1, n_s + 1), n_w),
            "Metadata_Perturbation": wells["Metadata_Perturbation"].to_numpy()[rep],
        }
    )
    for j, col in enumerate(GT_COLUMNS):
        out[col] = gt[:, j]
    mult = wells["count_mult"].to_numpy()[rep] if "count_mult" in wells else 1.0
    lam = config.cells_per_site * np.exp(_COUNT_SCALE * out["GT_count"].to_numpy()) * mult
    n = rng.poisson(lam) if config.poisson_cell_count else np.rint(lam)
    out["n_cells"] = np.clip(n, 0, _max_cells(config)).astype("int64")
    return out


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------
def _config_digest(config: SyntheticConfig) -> str:
    payload = json.dumps(
        {"generator_version": GENERATOR_VERSION, "config": config.to_dict()}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    _atomic_write(path, lambda p: df.to_parquet(p, index=False))


def _write_text(text: str, path: Path) -> None:
    _atomic_write(path, lambda p: p.write_text(text))


_MARKER = ".complete"


def _is_complete(out_dir: Path, config: SyntheticConfig) -> bool:
    marker = out_dir / _MARKER
    cfg = out_dir / "ground_truth" / "config.json"
    if not (marker.is_file() and cfg.is_file() and (out_dir / "load_data.parquet").is_file()):
        return False
    try:
        same = json.loads(cfg.read_text()) == json.loads(json.dumps(config.to_dict()))
    except (OSError, ValueError):
        return False
    return same and marker.read_text().strip() == _config_digest(config)


def _n_jobs(n_jobs: int | None, n_sites: int) -> int:
    if n_jobs is None:
        n_jobs = min(4, os.cpu_count() or 1)
    return max(1, min(int(n_jobs), max(1, n_sites // 64)))


def _render_sites(config: SyntheticConfig, sources: list, jobs: list) -> None:
    """Render and write the sites in ``jobs`` (one process's share of the screen)."""
    import tifffile  # baselens[images]

    for well, site, plate_i, gt_row, n_cells, gain, src_i, paths in jobs:
        rng = _rng(config.seed, "site", plate_i, well, site)
        img = render_site(dict(zip(AXES, gt_row)), n_cells, config, rng, gain=gain,
                          source=sources[src_i])
        for c, path in enumerate(paths):
            _atomic_write(
                path,
                lambda p, a=img[c]: tifffile.imwrite(p, a, photometric="minisblack", metadata=None),
            )


def generate_screen(config: SyntheticConfig, out_dir: str | os.PathLike, *,
                    n_jobs: int | None = None) -> Path:
    """Generate (or reuse) a synthetic screen on disk.

    Parameters
    ----------
    config : SyntheticConfig
    out_dir : path
        Output folder (layout in ``docs/architecture.md``). If it already holds a
        complete screen generated with the same config (``ground_truth/config.json`` and
        the completion marker), nothing is regenerated. Every file is written to a
        temporary name and moved into place; the marker is written last.
    n_jobs : int, optional
        Processes rendering sites (default: one per core, at most 4). Every site draws
        from its own seeded stream, so the files are byte-identical for any ``n_jobs``.

    Returns
    -------
    pathlib.Path
        Path of ``load_data.parquet``.
    """
    out = Path(out_dir)
    load_path = out / "load_data.parquet"
    if _is_complete(out, config):
        return load_path
    out.mkdir(parents=True, exist_ok=True)
    marker = out / _MARKER
    if marker.exists():
        marker.unlink()
    if (out / "ground_truth" / "config.json").is_file() and (out / "images").is_dir():
        shutil.rmtree(out / "images")  # stale screen from another config

    perts = make_perturbations(config)
    plates = make_plates(config)
    layout = make_layout(config, perts, plates)
    wells, sources = _technical_parameters(config, plates, layout)
    sites = realize_site_phenotypes(config, wells, plates, perts)

    rep = np.repeat(np.arange(len(wells)), config.sites_per_well)
    gains = wells[[f"gain_{ch}" for ch in JUMP_CHANNELS]].to_numpy()[rep]
    src_idx = wells["source_index"].to_numpy()[rep]
    plate_idx = plates.set_index("Metadata_Plate").loc[sites["Metadata_Plate"], "plate_index"]
    plate_idx = plate_idx.to_numpy()
    gt = sites[list(GT_COLUMNS)].to_numpy()

    load = sites[list(SITE_KEYS)].copy()
    load["Metadata_Row"] = wells["Metadata_Row"].to_numpy()[rep]
    load["Metadata_Col"] = wells["Metadata_Col"].to_numpy()[rep]
    load["Metadata_Perturbation"] = sites["Metadata_Perturbation"]
    load["Metadata_ControlType"] = wells["Metadata_ControlType"].to_numpy()[rep]
    for ch in JUMP_CHANNELS:
        load[f"FileName_Orig{ch}"] = [
            f"{pl}_{w}_s{s}_{ch}.tiff"
            for pl, w, s in zip(
                load["Metadata_Plate"], load["Metadata_Well"], load["Metadata_Site"]
            )
        ]
        load[f"PathName_Orig{ch}"] = "images/" + load["Metadata_Plate"]

    jobs = [
        (
            str(sites["Metadata_Well"].iat[i]),
            int(sites["Metadata_Site"].iat[i]),
            int(plate_idx[i]),
            gt[i],
            int(sites["n_cells"].iat[i]),
            gains[i],
            int(src_idx[i]),
            [out / load["PathName_OrigDNA"].iat[i] / load[f"FileName_Orig{ch}"].iat[i]
             for ch in JUMP_CHANNELS],
        )
        for i in range(len(sites))
    ]
    n_jobs = _n_jobs(n_jobs, len(jobs))
    if n_jobs == 1:
        _render_sites(config, sources, jobs)
    else:  # every site has its own random stream: the same bytes whatever the split
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        chunks = [jobs[k::n_jobs * 4] for k in range(n_jobs * 4)]
        with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn")) as pool:
            for f in [pool.submit(_render_sites, config, sources, c) for c in chunks if c]:
                f.result()

    gt_dir = out / "ground_truth"
    _write_parquet(perts, gt_dir / "perturbations.parquet")
    _write_parquet(sites, gt_dir / "site_phenotypes.parquet")
    _write_parquet(make_bioactivity(perts, config), gt_dir / "bioactivity.parquet")
    rel = make_relationships(perts)
    _atomic_write(gt_dir / "relationships.csv", lambda p: rel.to_csv(p, index=False))
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    _write_text(config_json, gt_dir / "config.json")
    _write_parquet(load, load_path)
    _write_text(_config_digest(config) + "\n", marker)
    return load_path
