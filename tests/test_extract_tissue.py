"""Tissue representations of “Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377) §3.1, D.3, E.1, E.2, and the must-show of issue 9:
on synthetic tissue, structure-only representations predict structure-driven genes and
not appearance-driven ones; the cell-count baseline explains the density-driven genes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("torch")

from baselens.data.hest import dataset_from_arrays, read_hest, read_rgb  # noqa: E402
from baselens.data.tissue import SyntheticTissueConfig, generate_tissue  # noqa: E402
from baselens.extract.cell_count import count_features  # noqa: E402
from baselens.extract.cell_graph import EGNNEncoder, GCNEncoder, knn_edges  # noqa: E402
from baselens.extract.tissue import (  # noqa: E402
    gnn_embeddings,
    structure_image,
    tissue_count_features,
    tissue_representations,
    train_gnn,
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return read_hest(generate_tissue(SyntheticTissueConfig.quick(), tmp_path_factory.mktemp("tissue")))


def test_structure_image_draws_knn_edges_at_physical_scale():
    pts = np.array([[10.0, 10.0], [10.0, 100.0]])  # (row, col) patch px
    # 0.5 µm/px → (5, 5) and (5, 50) µm; canvas 112 µm × 2 px/µm = 224 px = size: exactly binary
    img = structure_image(pts, 0.5, size=224, px_per_um=2.0)
    assert img.shape == (224, 224) and set(np.unique(img)) == {0.0, 1.0}
    assert img.sum() == 91 and img[10, 10:101].all()
    # the same centroids at 1 µm/px are twice as far apart on the slide
    img2 = structure_image(pts, 1.0, size=224, px_per_um=2.0)
    assert img2.sum() == 181
    # default drawing scale 1 px/µm, resized linearly to the encoder's 224 px
    img3 = structure_image(pts, 0.5)
    assert img3.shape == (224, 224) and 0 < img3.max() <= 1.0 and img3[:, 150:].max() == 0
    # a larger (1NN) crop at the same drawing scale: the same graph looks smaller
    small = structure_image(pts, 0.5, patch_um=312.0)
    assert 0 < (small > 0.25).sum() < (img3 > 0.25).sum()
    assert structure_image(np.zeros((0, 2)), 0.5).max() == 0
    with pytest.raises(ValueError):
        structure_image(pts, 0.0)


def test_count_features_tiled_with_tiny_noise():
    n = np.array([0, 10, 55, 120])
    x = tissue_count_features(n)
    np.testing.assert_allclose(x, count_features(n).to_numpy())
    t = tissue_count_features(n, dim=256, noise=1e-3, seed=3)
    assert t.shape == (4, 256)
    dev = t - np.tile(x, (1, 16))
    assert 0.5e-3 < dev.std() < 2e-3
    np.testing.assert_array_equal(t, tissue_count_features(n, dim=256, noise=1e-3, seed=3))
    z = tissue_count_features(n, standardize=True)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)


def test_gnn_embeddings_equal_cell_graph_encoders(quick):
    nuc = quick.nuclei[:5] + [np.zeros((0, 2)), np.array([[3.0, 4.0]]), np.array([[3.0, 4.0], [10.0, 10.0]])]
    for kind, enc in (("gcn", GCNEncoder(64, 4, 2)), ("egnn", EGNNEncoder(64, 3, 2))):
        ref = np.stack([enc(p, knn_edges(p, 5), (112, 112)) for p in nuc])
        got = gnn_embeddings(nuc, [112] * len(nuc), kind, seed=2, batch_size=3)
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_train_gnn_moves_from_the_untrained_encoder(quick):
    cfg = SyntheticTissueConfig.quick(n_patients=2, grid_shape=(4, 4), seed=5)
    w0, info0 = train_gnn("gcn", epochs=0, train_config=cfg)
    np.testing.assert_allclose(gnn_embeddings(quick.nuclei[:4], [112] * 4, "gcn", weights=w0),
                               gnn_embeddings(quick.nuclei[:4], [112] * 4, "gcn"), atol=1e-6)
    w, info = train_gnn("gcn", epochs=2, train_config=cfg)
    assert info["n_train"] == 32 and set(info["classes"]) <= {"clustered", "dense-regular", "dense-disordered",
                                                               "sparse-regular", "sparse-disordered"}
    z = gnn_embeddings(quick.nuclei[:4], [112] * 4, "gcn", weights=w)
    assert z.shape == (4, 64) and not np.allclose(z, gnn_embeddings(quick.nuclei[:4], [112] * 4, "gcn"))


def test_dispatch_kinds_and_errors(quick):
    sub = quick.subset(np.arange(6))
    out = tissue_representations(sub, [
        {"name": "random", "params": {"n_features": 5}}, {"name": "ground_truth"}, {"name": "pixel_mean"},
        {"name": "tissue_count", "label": "count256", "params": {"dim": 256}}, {"name": "tissue_points"},
        {"name": "tissue_egnn", "params": {"hidden": 8}},
    ])
    assert {k: v["kind"] for k, v in out.items()} == {
        "random": "null", "ground_truth": "reference", "pixel_mean": "baseline", "count256": "baseline",
        "tissue_points": "baseline", "tissue_egnn": "baseline"}
    assert out["random"]["layers"]["default"].shape == (6, 5)
    assert out["count256"]["layers"]["default"].shape == (6, 256)
    assert out["tissue_egnn"]["layers"]["default"].shape == (6, 8)
    np.testing.assert_allclose(out["ground_truth"]["layers"]["default"], quick.latents.to_numpy()[:6])
    # random features follow the spot, not its position in the batch
    again = tissue_representations(quick.subset([5, 4]), [{"name": "random", "params": {"n_features": 5}}])
    np.testing.assert_array_equal(again["random"]["layers"]["default"], out["random"]["layers"]["default"][[5, 4]])
    img = sub.patches([2])[0].astype(float)
    np.testing.assert_allclose(out["pixel_mean"]["layers"]["default"][2], img.reshape(-1, 3).mean(0))
    with pytest.raises(ValueError, match="unknown tissue method"):
        tissue_representations(sub, [{"name": "nope"}])
    with pytest.raises(ValueError, match="unknown params"):
        tissue_representations(sub, [{"name": "tissue_count", "params": {"dims": 3}}])
    real = dataset_from_arrays(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="latent drivers"):
        tissue_representations(real, [{"name": "ground_truth"}])


def _probe_by_driver(x: np.ndarray, ds) -> dict[str, float]:
    """Leave-one-patient-out ridge (standardized features, alpha 10); per gene the mean
    over held-out patients of Pearson r; averaged over the genes of each driver."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.preprocessing import StandardScaler

    y = ds.targets.to_numpy()
    groups = ds.spots["Metadata_Patient"].to_numpy()
    rs = []
    for tr, te in LeaveOneGroupOut().split(x, y, groups):
        sc = StandardScaler().fit(x[tr])
        pred = Ridge(alpha=10.0).fit(sc.transform(x[tr]), y[tr]).predict(sc.transform(x[te]))
        rs.append([np.corrcoef(pred[:, g], y[te, g])[0, 1] for g in range(y.shape[1])])
    r = np.nanmean(np.asarray(rs), axis=0)
    drv = ds.gene_drivers.loc[list(ds.targets.columns), "driver"].to_numpy()
    return {d: float(r[drv == d].mean()) for d in np.unique(drv)}


def test_must_show_structure_predicts_structure_genes_and_count_the_density_genes(quick):
    """Issue 9's must-show on the quick synthetic tissue (4 patients × 36 spots)."""
    reps = tissue_representations(quick, [
        {"name": "tissue_count"},
        {"name": "tissue_points"},
        {"name": "structure_image", "params": {"encoder": "resnet18", "render_size": 112,
                                               "encoder_params": {"input_size": 112, "layers": ["layer1"]}}},
        {"name": "pixel_stats"},
    ])
    res = {k: _probe_by_driver(v["layers"][next(iter(v["layers"]))], quick) for k, v in reps.items()}
    print({k: {d: round(v, 2) for d, v in r.items()} for k, r in res.items()})
    for m in ("tissue_points", "structure_image"):
        r = res[m]
        assert abs(r["appearance"]) < 0.2, m  # structure only: blind to appearance
        for d in ("density", "clustering", "regularity"):
            assert r[d] > r["appearance"] + 0.25, (m, d)
    c = res["tissue_count"]
    assert c["density"] > 0.7  # the count baseline explains the density-driven genes ...
    assert max(abs(c["clustering"]), abs(c["regularity"]), abs(c["appearance"])) < 0.2  # ... and nothing else
    assert res["pixel_stats"]["appearance"] > 0.5  # appearance is in the pixels, not in the centroids


def test_image_encoder_smoke_on_real_he_patch(realdata):
    path = realdata / "images" / "nuclei_dsb2018" / "histo.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    img = read_rgb(path)
    h, w = img.shape[:2]
    s = min(h, w, 224)
    ds = dataset_from_arrays(np.stack([img[:s, :s], img[h - s:, w - s:]]))
    out = tissue_representations(ds, [
        {"name": "resnet18", "params": {"weights": "random", "input": "image", "layers": ["layer2", "layer4"]}},
        {"name": "pixel_stats"},
    ])
    f = out["resnet18"]["layers"]
    assert out["resnet18"]["kind"] == "baseline"  # random weights: a baseline
    assert f["layer2"].shape == (2, 128) and f["layer4"].shape == (2, 512)
    assert np.isfinite(f["layer4"]).all() and not np.allclose(f["layer2"][0], f["layer2"][1])
    ps = out["pixel_stats"]["layers"]["default"]
    assert ps.shape == (2, 9)
    # H&E: eosin-pink background, so red and blue means exceed green
    assert ps[0, 0] > ps[0, 1] and ps[0, 2] > ps[0, 1]


def test_tissue_extractors_register_with_their_modality(quick):
    """One registry: the tissue representations are listed with modality ``tissue``, the
    names that mean other code on a screen are ``tissue_*`` (old names aliased in tissue
    configs), and a screen config naming a tissue representation is refused."""
    from baselens.extract.registry import get_spec, list_extractors
    from baselens.extract.tissue import TISSUE_ALIASES
    from baselens.run.config import ConfigError, RunConfig

    tissue = {s.name: s.kind for s in list_extractors("tissue")}
    assert tissue == {"structure_image": "baseline", "tissue_gcn": "baseline",
                      "tissue_egnn": "baseline", "tissue_points": "baseline",
                      "tissue_count": "baseline", "tissue_pixel_stats": "baseline",
                      "tissue_pixel_mean": "baseline", "tissue_random": "null",
                      "tissue_ground_truth": "reference"}
    assert get_spec("pixel_stats").modality == "screen"  # the screen's, uint16 channels
    assert set(tissue).isdisjoint(s.name for s in list_extractors("screen"))
    sub = quick.subset(np.arange(4))
    for old, new in TISSUE_ALIASES.items():
        a = tissue_representations(sub, [{"name": old}])[old]
        b = tissue_representations(sub, [{"name": new}])[new]
        assert a["kind"] == b["kind"] == tissue[new]
        np.testing.assert_array_equal(a["layers"]["default"], b["layers"]["default"])
    with pytest.raises(ConfigError, match="tissue representation"):
        RunConfig.from_dict({"data": {"synthetic": {"preset": "quick"}},
                             "methods": [{"name": "tissue_count"}]})
