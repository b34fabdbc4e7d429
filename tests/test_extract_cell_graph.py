"""cell_graph: structure-only features from nuclei centroids."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch", reason="torch is not installed (cell_graph's GCN/EGNN need it)")

from baselens.extract import SiteBatch, get_extractor  # noqa: E402
from baselens.extract.cell_graph import EGNNEncoder, GCNEncoder, knn_edges, point_features, render_graph  # noqa: E402


def _dna(centers, size=96):
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 100.0)
    for cy, cx in centers:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 12] = 3000
    return img.astype(np.float32)


def test_knn_render_and_point_features():
    pts = np.array([[10.0, 10.0], [10.0, 30.0], [40.0, 10.0], [80.0, 80.0]])
    e = knn_edges(pts, k=1)
    assert {tuple(x) for x in e} == {(0, 1), (0, 2), (2, 3)} or len(e) >= 3
    img = render_graph(pts, knn_edges(pts, 5), (96, 96), 48)
    assert img.shape == (48, 48) and set(np.unique(img)) <= {0.0, 1.0} and img[5, 10] == 1.0
    f = point_features(pts, (96, 96), k=2)
    assert f["Points_Count"] == 4 and f["Points_NN1_P50"] > 0
    grid = np.array([[y, x] for y in range(8, 96, 16) for x in range(8, 96, 16)], float)
    clump = np.random.default_rng(0).normal(48, 5, grid.shape)
    assert point_features(grid, (96, 96))["Points_ClarkEvans"] > point_features(clump, (96, 96))["Points_ClarkEvans"]
    assert point_features(np.zeros((0, 2)), (96, 96))["Points_Count"] == 0


def test_gnns_are_seeded_and_egnn_is_invariant():
    pts = np.random.default_rng(1).uniform(0, 100, (25, 2))
    th = 1.1
    rot = pts @ np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]).T + 7
    e1, e2 = knn_edges(pts), knn_edges(rot)
    egnn = EGNNEncoder(seed=3)
    np.testing.assert_allclose(egnn(pts, e1, (100, 100)), egnn(rot, e2, (100, 100)), atol=1e-4)
    np.testing.assert_array_equal(GCNEncoder(seed=3)(pts, e1, (100, 100)), GCNEncoder(seed=3)(pts, e1, (100, 100)))
    assert not np.allclose(GCNEncoder(seed=3)(pts, e1, (100, 100)), GCNEncoder(seed=4)(pts, e1, (100, 100)))


def test_extractor_layers_and_encoder_choice():
    centers = [(16 + 20 * (i // 4), 16 + 20 * (i % 4)) for i in range(12)]
    sites = np.stack([np.stack([_dna(centers), np.full((96, 96), 100.0, np.float32)]), np.stack([_dna(centers[:3])] * 2)])
    batch = SiteBatch(sites, ["DNA", "AGP"], pd.DataFrame(index=range(2)))
    out = get_extractor("cell_graph", encoder_params={"n_filters": 8}, hidden=16)(batch)
    assert set(out) == {"points", "image", "gcn", "egnn"}
    assert out["points"]["Points_Count"].tolist() == [12.0, 3.0]
    assert out["image"].shape == (2, 8) and out["gcn"].shape == (2, 16) and out["egnn"].shape == (2, 16)
    assert all(np.isfinite(df.to_numpy()).all() for df in out.values())
    pm = get_extractor("cell_graph", variants=["image"], encoder="pixel_mean", render_size=48)(batch)
    assert list(pm) == ["image"] and (pm["image"].to_numpy() > 0).all()
    with pytest.raises(ValueError):
        get_extractor("cell_graph", variants=["voronoi"])
