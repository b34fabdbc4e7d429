"""Design of the synthetic screen (no images): perturbations and their ground truth,
relationships, bioactivity labels, plates, plate layout, technical effects and the realized
phenotype of every site."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from baselens.data import JUMP_CHANNELS
from baselens.data.synthetic.config import (
    AXES,
    GT_COLUMNS,
    MORPHOLOGY_AXES,
    NEGCON,
    PHENOTYPE_CLASSES,
    POSCONS,
    SyntheticConfig,
    _COUNT_SCALE,
    _rng,
)
from baselens.data.wells import well_name


# ------------------------------------------ perturbations, relationships, bioactivity (no images)
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


# ----------------------------------------------------------------------------- plates and layout
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


# ---------------------------------------------------------------------- technical (batch) effects
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


# ----------------------------------------------------------------------------- realized phenotypes
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
