"""Tests of the ground-truth synthetic screen generator (quick preset, rendered TIFFs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from baselens.data import JUMP_CHANNELS, SITE_KEYS
from baselens.data.synthetic import (
    AXES,
    GT_COLUMNS,
    NEGCON,
    POSCONS,
    SyntheticConfig,
    generate_screen,
)

#: quick preset without technical or biological noise: isolates the phenotype axes
CLEAN = dict(
    batch_effect=0.0, bio_well_sd=0.0, bio_site_sd=0.0, cell_sd=0.0, poisson_cell_count=False
)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_site(root: Path, row: pd.Series) -> np.ndarray:
    return np.stack(
        [
            tifffile.imread(root / row[f"PathName_Orig{ch}"] / row[f"FileName_Orig{ch}"])
            for ch in JUMP_CHANNELS
        ]
    )


def _load(root: Path) -> dict[str, pd.DataFrame]:
    gt = root / "ground_truth"
    return {
        "load": pd.read_parquet(root / "load_data.parquet"),
        "perts": pd.read_parquet(gt / "perturbations.parquet"),
        "sites": pd.read_parquet(gt / "site_phenotypes.parquet"),
        "bio": pd.read_parquet(gt / "bioactivity.parquet"),
        "rel": pd.read_csv(gt / "relationships.csv", keep_default_na=False),
    }


def _channel_means(root: Path, load: pd.DataFrame) -> pd.DataFrame:
    means = np.array([_read_site(root, r).reshape(5, -1).mean(axis=1) for _, r in load.iterrows()])
    out = load[list(SITE_KEYS) + ["Metadata_Perturbation"]].copy()
    for c, ch in enumerate(JUMP_CHANNELS):
        out[ch] = means[:, c]
    return out


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick")
    generate_screen(SyntheticConfig.quick(), out)
    return out


@pytest.fixture(scope="module")
def clean_screen(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick_clean")
    generate_screen(SyntheticConfig.quick(**CLEAN), out)
    return out


@pytest.fixture(scope="module")
def tables(screen) -> dict[str, pd.DataFrame]:
    return _load(screen)


@pytest.fixture(scope="module")
def clean_stats(clean_screen) -> tuple[pd.DataFrame, pd.DataFrame]:
    t = _load(clean_screen)
    means = _channel_means(clean_screen, t["load"])
    means = means.merge(t["sites"][list(SITE_KEYS) + ["n_cells"]], on=list(SITE_KEYS))
    return means, t["perts"]


# ---- layout and tables ---------------------------------------------------------------
def test_output_layout(screen, tables):
    load, sites = tables["load"], tables["sites"]
    expected = {
        "Metadata_Source",
        "Metadata_Batch",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "Metadata_Row",
        "Metadata_Col",
        "Metadata_Perturbation",
        "Metadata_ControlType",
    } | {f"{k}_Orig{ch}" for k in ("FileName", "PathName") for ch in JUMP_CHANNELS}
    assert expected <= set(load.columns)
    assert load["Metadata_Well"].str.fullmatch(r"[A-H]\d\d").all()
    assert not load.duplicated(list(SITE_KEYS)).any()
    expected_gt = set(SITE_KEYS) | {"Metadata_Perturbation", "n_cells"} | set(GT_COLUMNS)
    assert set(sites.columns) >= expected_gt
    pd.testing.assert_frame_equal(
        load[list(SITE_KEYS) + ["Metadata_Perturbation"]],
        sites[list(SITE_KEYS) + ["Metadata_Perturbation"]],
    )
    perts = tables["perts"]
    assert set(perts["Metadata_PerturbationType"]) == {"gene", "compound", "control"}
    assert set(load["Metadata_Perturbation"]) <= set(perts["Metadata_Perturbation"])
    inert = perts[perts["Metadata_PhenotypeClass"] == "inert"]
    assert (inert[list(GT_COLUMNS)] == 0).all().all()
    assert (screen / "ground_truth" / "config.json").is_file()


def test_tiff_dtype_and_shape(screen, tables):
    cfg = SyntheticConfig.quick()
    img = _read_site(screen, tables["load"].iloc[0])
    assert img.dtype == np.uint16
    assert img.shape == (len(JUMP_CHANNELS), cfg.image_size, cfg.image_size)
    assert img.max() > img.min()


def test_every_plate_has_controls(tables):
    load = tables["load"]
    for _, plate in load.groupby("Metadata_Plate"):
        assert (plate["Metadata_ControlType"] == "negcon").any()
        assert (plate["Metadata_Perturbation"] == NEGCON).any()
        poscon = plate.loc[plate["Metadata_ControlType"] == "poscon", "Metadata_Perturbation"]
        assert set(POSCONS) <= set(poscon)


def test_replicates_spread_over_plates(tables):
    cfg = SyntheticConfig.quick()
    load = tables["load"]
    treated = load[(load["Metadata_ControlType"] == "") & (load["Metadata_Site"] == 1)]
    per_pert = treated.groupby("Metadata_Perturbation")["Metadata_Plate"].agg(["size", "nunique"])
    assert (per_pert["size"] >= cfg.n_replicates).all()
    assert (per_pert["nunique"] == per_pert["size"]).all()  # one replicate per plate
    n_sources = treated.groupby("Metadata_Perturbation")["Metadata_Source"].nunique()
    assert n_sources.min() == cfg.n_sources


def test_384_well_format(tmp_path):
    cfg = SyntheticConfig.quick(
        plate_format=384, n_sources=1, n_plates_per_batch=1, sites_per_well=1, image_size=48
    )
    load = pd.read_parquet(generate_screen(cfg, tmp_path))
    assert load["Metadata_Row"].max() > 8 or load["Metadata_Col"].max() > 12
    assert load["Metadata_Well"].str.fullmatch(r"[A-P](0[1-9]|1\d|2[0-4])").all()
    # one plate, three replicates: copies on the same plate
    treated = load[load["Metadata_ControlType"] == ""]
    assert treated["Metadata_Perturbation"].value_counts().min() >= cfg.n_replicates
    img = _read_site(tmp_path, load.iloc[-1])
    assert img.shape == (5, 48, 48) and img.dtype == np.uint16


def test_relationships_symmetric(tables):
    rel, perts = tables["rel"], tables["perts"]
    assert list(rel.columns) == ["entity1", "entity2", "source"]
    assert set(rel["source"]) == {"synthetic_complex", "synthetic_moa"}
    pairs = set(zip(rel["entity1"], rel["entity2"], rel["source"]))
    assert pairs == {(b, a, s) for a, b, s in pairs}
    group = perts.set_index("Metadata_Perturbation")["Metadata_Group"]
    assert (group[rel["entity1"]].to_numpy() == group[rel["entity2"]].to_numpy()).all()


def test_bioactivity_assay_types(tables):
    bio, perts = tables["bio"], tables["perts"]
    assert list(bio.columns) == ["Metadata_Perturbation", "assay", "assay_type", "active"]
    assert set(bio["assay_type"]) == {"viability", "specific"}
    assert set(bio["active"]) == {0, 1}
    is_compound = perts["Metadata_PerturbationType"] == "compound"
    compounds = set(perts.loc[is_compound, "Metadata_Perturbation"])
    assert set(bio["Metadata_Perturbation"]) == compounds
    m = bio.merge(perts, on="Metadata_Perturbation")
    via = m[m["assay_type"] == "viability"].groupby("active")["GT_count"].mean()
    assert via[1] < via[0] - 1.0  # viability actives are the cytotoxic compounds


# ---- config and caching -------------------------------------------------------------
def test_unknown_config_key_raises():
    with pytest.raises(ValueError, match="plate_fromat"):
        SyntheticConfig.from_dict({"seed": 1, "plate_fromat": 384})
    with pytest.raises(ValueError, match="plate_format"):
        SyntheticConfig(plate_format=48)
    assert SyntheticConfig.from_dict(SyntheticConfig.quick().to_dict()) == SyntheticConfig.quick()


def test_from_preset_is_the_preset_with_its_overrides():
    assert SyntheticConfig.from_preset({}) == SyntheticConfig.demo()
    assert (SyntheticConfig.from_preset({"preset": "quick", "seed": 5, "image_size": 48})
            == SyntheticConfig.quick(seed=5, image_size=48))
    with pytest.raises(ValueError, match="preset must be 'demo' or 'quick'"):
        SyntheticConfig.from_preset({"preset": "tiny"})
    with pytest.raises(ValueError, match="unknown SyntheticConfig key.*plate_fromat"):
        SyntheticConfig.from_preset({"preset": "quick", "plate_fromat": 384})


def test_deterministic(screen, tmp_path):
    generate_screen(SyntheticConfig.quick(), tmp_path)
    assert _tree_digest(tmp_path) == _tree_digest(screen)


def test_rendering_processes_do_not_change_the_bytes(screen, tmp_path):
    serial = tmp_path / "serial"
    generate_screen(SyntheticConfig.quick(), serial, n_jobs=1)
    generate_screen(SyntheticConfig.quick(), tmp_path / "two", n_jobs=2)
    assert _tree_digest(serial) == _tree_digest(tmp_path / "two") == _tree_digest(screen)


def test_existing_screen_is_reused(screen):
    load = screen / "load_data.parquet"
    before = load.stat().st_mtime_ns
    assert generate_screen(SyntheticConfig.quick(), screen) == load
    assert load.stat().st_mtime_ns == before


# ---- phenotypes as seen by simple baselines -------------------------------------------
def test_batch_effect_changes_plate_means(screen, tables, clean_screen):
    def plate_cv(root: Path, load: pd.DataFrame) -> float:
        neg = load[load["Metadata_ControlType"] == "negcon"]
        means = _channel_means(root, neg)
        plate_means = means.groupby("Metadata_Plate")[list(JUMP_CHANNELS)].mean()
        return float((plate_means.std() / plate_means.mean()).mean())

    with_batch = plate_cv(screen, tables["load"])
    without = plate_cv(clean_screen, pd.read_parquet(clean_screen / "load_data.parquet"))
    assert with_batch > 2 * without


def test_count_class_reduces_cells(tables):
    sites = tables["sites"].merge(tables["perts"], on="Metadata_Perturbation")
    neg = sites.loc[sites["Metadata_Perturbation"] == NEGCON, "n_cells"].mean()
    tox = sites.loc[sites["Metadata_PhenotypeClass"] == "cytotoxic", "n_cells"].mean()
    assert tox < 0.6 * neg


def _pure(perts: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    other = [f"GT_{a}" for a in AXES if a not in axes]
    on = [f"GT_{a}" for a in axes]
    return perts[(perts[other] == 0).all(axis=1) & (perts[on] != 0).any(axis=1)]


@pytest.mark.parametrize("axis", ["texture", "localization", "cell_shape", "clustering"])
def test_morphology_axes_invisible_to_count_and_means(clean_stats, axis):
    means, perts = clean_stats
    names = _pure(perts, [axis])["Metadata_Perturbation"]
    assert len(names) > 0
    neg = means[means["Metadata_Perturbation"] == NEGCON]
    hit = means[means["Metadata_Perturbation"].isin(names)]
    assert hit["n_cells"].median() == neg["n_cells"].median()
    ratio = hit[list(JUMP_CHANNELS)].mean() / neg[list(JUMP_CHANNELS)].mean()
    assert (ratio - 1).abs().max() < 0.06, ratio.to_dict()


def test_intensity_axis_changes_channel_mean(clean_stats):
    means, perts = clean_stats
    axes = [f"intensity_{ch}" for ch in JUMP_CHANNELS]
    intensity = _pure(perts, axes)
    assert len(intensity) > 0
    neg = means[means["Metadata_Perturbation"] == NEGCON]
    for _, p in intensity.iterrows():
        effects = p[[f"GT_{a}" for a in axes]].astype(float).to_numpy()
        c = int(np.argmax(np.abs(effects)))
        ch = JUMP_CHANNELS[c]
        hit = means[means["Metadata_Perturbation"] == p["Metadata_Perturbation"]]
        assert hit["n_cells"].median() == neg["n_cells"].median()
        ratio = hit[ch].mean() / neg[ch].mean()
        assert np.sign(ratio - 1) == np.sign(effects[c])
        assert abs(ratio - 1) > 0.15, (ch, ratio)


def test_texture_axis_visible_to_texture_feature(clean_screen, clean_stats):
    """Texture is invisible to means but changes the spatial correlation of the DNA channel."""
    from scipy import ndimage

    _, perts = clean_stats
    load = pd.read_parquet(clean_screen / "load_data.parquet")

    def autocorr(name: str) -> float:
        vals = []
        for _, row in load[load["Metadata_Perturbation"] == name].iterrows():
            dna = _read_site(clean_screen, row)[0].astype(float)
            hp = dna - ndimage.gaussian_filter(dna, 3, mode="wrap")
            vals.append((hp * np.roll(hp, 2, axis=1)).mean() / (hp * hp).mean())
        return float(np.mean(vals))

    neg = autocorr(NEGCON)
    texture = _pure(perts, ["texture"])
    for _, p in texture.iterrows():
        assert np.sign(autocorr(p["Metadata_Perturbation"]) - neg) == np.sign(p["GT_texture"])
