"""Synthetic tissue generator (arXiv 2603.13377 E.3) written in HEST-1k layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("h5py")

from baselens.data.hest import coarsen_1nn, read_hest  # noqa: E402
from baselens.data.tissue import CLASSES, DRIVERS, SyntheticTissueConfig, generate_tissue  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = generate_tissue(SyntheticTissueConfig.quick(), tmp_path_factory.mktemp("tissue"))
    return root, read_hest(root)


def test_layout_and_reader(quick):
    root, ds = quick
    for sub in ("patches/SYN00.h5", "st/SYN00.h5ad", "metadata/SYN00.json", "cellvit_seg/SYN00_cellvit_seg.geojson",
                "var_50genes.json", "splits/train_0.csv", "splits/test_3.csv", "ground_truth/spots.parquet"):
        assert (root / sub).is_file(), sub
    assert len(ds) == 4 * 36
    assert set(ds.spots["Metadata_Task"]) == {"synthetic"}
    assert ds.spots.groupby("Metadata_Sample")["Metadata_Patient"].nunique().max() == 1
    assert ds.spots["Metadata_Patient"].nunique() == 4
    assert set(ds.spots["Metadata_Class"]) <= set(CLASSES)
    assert ds.spots["Metadata_Class"].nunique() >= 4
    assert np.all(ds.pixel_size_um == 1.0)
    assert ds.targets.shape == (144, 10) and set(ds.gene_drivers["driver"]) == set(DRIVERS)
    assert list(ds.latents.columns) == ["GT_density", "GT_clustering", "GT_regularity", "GT_appearance"]
    p = ds.patches([0, 50])
    assert p.shape == (2, 112, 112, 3) and p.dtype == np.uint8
    # H&E-like: pink background (R and B above G), darker purple nuclei
    mean = p.reshape(-1, 3).mean(0)
    assert mean[0] > mean[1] and mean[2] > mean[1]
    # nuclei are where the image is dark: hematoxylin at the centroids
    grey = p[0].mean(-1)
    rc = np.clip(np.round(ds.nuclei[0]).astype(int), 0, 111)
    assert grey[rc[:, 0], rc[:, 1]].mean() < grey.mean() - 30


def test_density_gene_follows_count_appearance_gene_does_not(quick):
    _, ds = quick
    n = np.log1p(ds.n_cells)
    drv = ds.gene_drivers["driver"]
    r_density = [abs(np.corrcoef(n, ds.targets[g])[0, 1]) for g in drv.index[drv == "density"]]
    r_app = [abs(np.corrcoef(n, ds.targets[g])[0, 1]) for g in drv.index[drv == "appearance"]]
    assert min(r_density) > 0.6 and max(r_app) < 0.3
    # the latent density driver is the standardized log count
    np.testing.assert_allclose(ds.latents["GT_density"], (n - n.mean()) / n.std(), atol=1e-9)


def test_classes_follow_arrangement(quick):
    """Clustered spots have close neighbours; regular spots a larger Clark-Evans ratio."""
    from baselens.extract.cell_graph import point_features

    _, ds = quick
    f = [point_features(p, (112, 112)) for p in ds.nuclei]
    ce = np.array([x["Points_ClarkEvans"] for x in f])
    cls = ds.spots["Metadata_Class"].to_numpy()
    reg = np.isin(cls, ["dense-regular", "sparse-regular"])
    dis = np.isin(cls, ["dense-disordered", "sparse-disordered"])
    assert ce[reg].mean() > ce[dis].mean() + 0.1 and ce[dis].mean() > ce[cls == "clustered"].mean() + 0.1


def test_reuse_and_determinism(quick, tmp_path):
    root, ds = quick
    stamp = (root / "ground_truth" / "config.json").stat().st_mtime_ns
    assert generate_tissue(SyntheticTissueConfig.quick(), root) == root
    assert (root / "ground_truth" / "config.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    cfg = SyntheticTissueConfig.quick(n_patients=1, grid_shape=(3, 3))
    a = read_hest(generate_tissue(cfg, tmp_path / "a"))
    b = read_hest(generate_tissue(cfg, tmp_path / "b"))
    np.testing.assert_array_equal(a.targets.to_numpy(), b.targets.to_numpy())
    np.testing.assert_array_equal(a.patches([3]), b.patches([3]))
    meta = json.loads((tmp_path / "a" / "metadata" / "SYN00.json").read_text())
    assert meta["grid"] == "square" and meta["pixel_size_um_estimated"] == 1.0


def test_grids_alternate_and_coarsen(quick):
    _, ds = quick
    c = coarsen_1nn(ds)
    assert c.info["coarsen_grid"] == {"SYN00": "square", "SYN01": "hex", "SYN02": "square", "SYN03": "hex"}
    nn = c.spots.groupby("Metadata_Sample")["Metadata_NNeighbours"].max().to_dict()
    assert nn == {"SYN00": 9, "SYN01": 7, "SYN02": 9, "SYN03": 7}
    # coarsened crops hold more cells than single patches
    assert c.n_cells.mean() > 2 * ds.n_cells.mean()


def test_config_validation():
    with pytest.raises(ValueError, match="unknown SyntheticTissueConfig key"):
        SyntheticTissueConfig.from_dict({"n_patient": 2})
    with pytest.raises(ValueError, match="grid must be"):
        SyntheticTissueConfig.quick(grid="triangle")
    d = SyntheticTissueConfig.demo()
    assert d.patch_px * d.pixel_size_um == pytest.approx(112.0) and sum(d.genes_per_driver.values()) == 20


def test_config_from_preset():
    q = SyntheticTissueConfig.from_preset({"preset": "quick", "grid_shape": [3, 4], "seed": 2})
    assert q == SyntheticTissueConfig.quick(grid_shape=(3, 4), seed=2) and q.grid_shape == (3, 4)
    assert SyntheticTissueConfig.from_preset({}) == SyntheticTissueConfig.demo()
    with pytest.raises(ValueError, match="preset must be"):
        SyntheticTissueConfig.from_preset({"preset": "huge"})
    with pytest.raises(ValueError, match="unknown SyntheticTissueConfig key"):
        SyntheticTissueConfig.from_preset({"n_patient": 2})
