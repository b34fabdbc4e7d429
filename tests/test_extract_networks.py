"""Network extractors (arXiv 2603.13377 D.1/D.4): construction, dims, determinism, channel strategies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from baselens.extract import SiteBatch, get_extractor  # noqa: E402
from baselens.extract.networks import (  # noqa: E402
    ARCHITECTURES,
    Network,
    layer_dims,
    normalize_intensity,
    percentile_limits,
    site_geometry,
)
from baselens.extract.registry import get_spec  # noqa: E402

CH5 = ["DNA", "ER", "RNA", "AGP", "Mito"]
CH6 = CH5 + ["Brightfield"]
#: small enough to run for real on 2 shared CPU cores in seconds
SMALL = ["alexnet", "resnet18", "vit_small_patch16_224", "vit_small_patch14_dinov2"]


def _sites(n=3, c=5, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 800.0, size=(n, c, size, size))).astype(np.float32)


def _batch(images, channels=None):
    c = images.shape[1]
    meta = pd.DataFrame({"Metadata_Plate": ["P1"] * len(images), "Metadata_Well": ["A01"] * len(images),
                         "Metadata_Site": np.arange(len(images))})
    return SiteBatch(images, channels or (CH5 + ["X"])[:c], meta)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("n_channels", [5, 6])
def test_every_architecture_constructs_with_documented_dims(arch, n_channels):
    """All 13 architectures (incl. ViT-H/14 and DINOv2-g) for 5 and 6 channels, on the meta
    device: real timm/torchvision construction + channel expansion, shapes only."""
    a = ARCHITECTURES[arch]
    dims = layer_dims(arch, n_channels, 224)
    assert dims == dict(zip(a.layers, a.dims))
    net = Network(arch)
    model = net.model(n_channels, (224, 224), device="meta")
    first = {"vit": "patch_embed.proj", "resnet": "conv1", "alexnet": "features.0"}[a.family]
    assert model.get_submodule(first).weight.shape[1] == n_channels
    pc = layer_dims(arch, n_channels, 224, channels="per_channel")
    assert pc == {k: v * n_channels for k, v in dims.items()}


def test_registry_names_and_kinds():
    assert get_spec("resnet50").kind == "model"
    assert get_spec("resnet50_random").kind == "baseline"
    assert get_spec("network").kind == "model"
    assert get_spec("vit_small_patch16_224").kind == "model"
    with pytest.raises(TypeError, match="untrained"):
        get_extractor("resnet50_random", weights="pretrained")
    with pytest.raises(TypeError, match="fixes arch"):
        get_extractor("resnet50", arch="resnet18")
    with pytest.raises(ValueError, match="channels"):
        get_extractor("resnet18", channels="rgb")
    with pytest.raises(ValueError, match="needs weights='random'"):
        get_extractor("resnet18", weights="pretrained", channels="native")


@pytest.mark.parametrize("arch", SMALL)
def test_small_models_run_deterministic_and_seed_dependent(arch):
    x = _sites(2, 5, 64)
    kw = dict(geometry="native", n_threads=1)
    a = get_extractor(arch, weights="random", seed=0, **kw)(_batch(x))
    b = get_extractor(arch, weights="random", seed=0, **kw)(_batch(x))
    c = get_extractor(arch, weights="random", seed=1, **kw)(_batch(x))
    a_arch = ARCHITECTURES[arch]
    assert list(a) == list(a_arch.layers)
    for layer, d in zip(a_arch.layers, a_arch.dims):
        assert a[layer].shape == (2, d)
        assert a[layer].columns[0] == f"{layer}_0000"
        assert np.isfinite(a[layer].to_numpy()).all()
        np.testing.assert_array_equal(a[layer].to_numpy(), b[layer].to_numpy())
        assert not np.allclose(a[layer].to_numpy(), c[layer].to_numpy())
    # the global torch RNG is untouched by seeded construction
    torch.manual_seed(123)
    r1 = torch.rand(3)
    torch.manual_seed(123)
    get_extractor(arch, weights="random", seed=5, **kw).model(5, (64, 64))
    assert torch.equal(torch.rand(3), r1)


@pytest.mark.parametrize("arch,kw", [("resnet18", {}), ("vit_small_patch16_224", {}),
                                     ("resnet18", {"channels": "per_channel"}),
                                     ("vit_small_patch16_224", {"geometry": "tile", "input_size": 32})])
def test_results_independent_of_batch_size(arch, kw):
    x = _sites(5, 5, 64, seed=3)
    params = dict(geometry="resize", input_size=64, n_threads=1) | kw
    whole = Network(arch, batch_size=32, **params).embed(x)
    small = Network(arch, batch_size=2, **params)
    pieces = [small.embed(x[:2]), small.embed(x[2:3]), small.embed(x[3:])]
    for layer, v in whole.items():
        got = np.concatenate([p[layer] for p in pieces])
        np.testing.assert_allclose(got, v, rtol=1e-4, atol=1e-5 * np.abs(v).max())


def test_expand_copies_vit_filters_and_rescales_cnn():
    vit = Network("vit_small_patch16_224", seed=0).model(5, (32, 32))
    rgb = Network("vit_small_patch16_224", seed=0, channels="per_channel").model(5, (32, 32))
    w5, w3 = vit.patch_embed.proj.weight, rgb.patch_embed.proj.weight
    assert w5.shape[1] == 5
    for c in range(5):
        torch.testing.assert_close(w5[:, c], w3[:, c % 3])  # copied, no rescaling (D.4)
    torch.testing.assert_close(vit.patch_embed.proj.bias, rgb.patch_embed.proj.bias)
    cnn = Network("resnet18", seed=0).model(6, (32, 32)).conv1.weight
    cnn3 = Network("resnet18", seed=0, channels="per_channel").model(6, (32, 32)).conv1.weight
    torch.testing.assert_close(cnn[:, 3], cnn3[:, 0] * 3 / 6)  # timm adapt_input_conv: repeat, ×3/C
    native = Network("resnet18", seed=0, channels="native").model(6, (32, 32)).conv1.weight
    assert native.shape[1] == 6 and not torch.allclose(native[:, 3], native[:, 0])


def test_per_channel_embeds_each_channel_separately():
    x = _sites(2, 5, 48)
    net = Network("resnet18", channels="per_channel", geometry="native", layers=["layer1", "layer4"])
    out = net(_batch(x))
    assert list(out) == ["layer1", "layer4"]
    assert out["layer4"].shape == (2, 5 * 512)
    assert out["layer4"].columns[0] == "layer4_DNA_0000" and out["layer4"].columns[512] == "layer4_ER_0000"
    # channel k's block equals embedding that channel alone (one-channel site)
    single = Network("resnet18", channels="per_channel", geometry="native", layers=["layer4"]).embed(x[:, 1:2])
    np.testing.assert_allclose(out["layer4"].to_numpy()[:, 512:1024], single["layer4"], rtol=1e-5, atol=1e-6)


def test_vit_pooling_options():
    x = _sites(2, 5, 32)
    cls = Network("vit_small_patch16_224", geometry="native", layers=["block12"]).embed(x)["block12"]
    mean = Network("vit_small_patch16_224", geometry="native", layers=["block12"], pooling="mean").embed(x)["block12"]
    both = Network("vit_small_patch16_224", geometry="native", layers=["block12"], pooling="cls_mean").embed(x)["block12"]
    assert both.shape == (2, 768)
    np.testing.assert_allclose(both, np.concatenate([cls, mean], 1), rtol=1e-5, atol=1e-6)


def test_intensity_modes():
    x = _sites(4, 5, 32)
    lo, hi = percentile_limits(x[0], (0.05, 99.95))
    assert lo.shape == (5,) and (hi > lo).all()
    y = normalize_intensity(x[0], lo, hi)
    assert y.min() >= 0 and y.max() <= 1
    # image_percentile is invariant to an intensity gain per site; fixed is not
    net_p = Network("resnet18", geometry="native", layers=["layer2"])
    net_f = Network("resnet18", geometry="native", layers=["layer2"], intensity="fixed",
                    intensity_range=(0, 20000))
    a, b = net_p.embed(x[:1])["layer2"], net_p.embed(x[:1] * 1.5)["layer2"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(net_f.embed(x[:1])["layer2"], net_f.embed(x[:1] * 1.5)["layer2"])
    # plate percentiles: must be fitted; then same-plate gain differences survive
    net = Network("resnet18", geometry="native", layers=["layer2"], intensity="plate_percentile")
    with pytest.raises(RuntimeError, match="fit"):
        net(_batch(x))
    net.fit_images(x, ["P1"] * 4)
    assert np.isfinite(net(_batch(x))["layer2"].to_numpy()).all()


def test_plate_percentile_fit_from_load_data(tmp_path):
    from baselens.data.load_data import read_load_data
    from baselens.data.synthetic import SyntheticConfig, generate_screen

    ld = read_load_data(generate_screen(SyntheticConfig.quick(n_plates_per_batch=1, n_sources=1), tmp_path))
    net = Network("resnet18", geometry="native", layers=["layer1"], intensity="plate_percentile", fit_sites=3)
    net.fit(ld)
    assert set(net._plate_limits) == set(ld.table["Metadata_Plate"].astype(str))
    idx = np.arange(4)
    out = net(SiteBatch(ld.read_sites(idx), ld.channels, ld.metadata.iloc[idx].reset_index(drop=True)))
    assert out["layer1"].shape == (4, 64)


def test_geometry_policy():
    assert site_geometry(160, 160, "native", 224, 16)["size"] == (160, 160)
    assert site_geometry(1080, 1080, "native", 224, 16)["size"] == (1072, 1072)
    g = site_geometry(1080, 1080, "tile", 224)
    assert len(g["tiles"]) == 16
    assert g["tiles"][0] == ((1080 - 4 * 224) // 2,) * 2
    with pytest.raises(ValueError, match="at least"):
        site_geometry(100, 100, "tile", 224)
    # resize: output does not depend on the site size beyond resampling
    out = Network("resnet18", geometry="resize", input_size=48, layers=["layer1"]).embed(_sites(1, 5, 96))
    assert out["layer1"].shape == (1, 64)


def test_bfloat16_close_to_float32():
    x = _sites(2, 5, 32)
    a = Network("resnet18", geometry="native", layers=["layer2"]).embed(x)["layer2"]
    b = Network("resnet18", geometry="native", layers=["layer2"], dtype="bfloat16").embed(x)["layer2"]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


REAL = os.environ.get("BASELENS_TEST_DATA")


@pytest.mark.realdata
@pytest.mark.skipif(not REAL, reason="BASELENS_TEST_DATA not set (points to shared/realdata)")
def test_real_six_channel_site_all_small_models_finite():
    """The 1080×1080, 6-channel pediatric-atlas site through every *small* architecture
    family (AlexNet, ResNet18, ViT-S/16, DINOv2-S/14, OpenPhenom) with both channel
    strategies. Larger members of each family share the code path (their construction
    for 6 channels is checked above on the meta device)."""
    import tifffile

    from baselens.extract.openphenom import OpenPhenom

    files = sorted((Path(REAL) / "images/pediatric_atlas_BR00143976_C03_s3/images/orig").glob("*.tiff"))
    assert len(files) == 6
    site = np.stack([tifffile.imread(f).astype(np.float32) for f in files])[None]
    assert site.shape == (1, 6, 1080, 1080)
    batch = _batch(site, CH6)
    for arch in SMALL:
        for channels in ("expand", "per_channel"):
            out = Network(arch, geometry="resize", input_size=112, channels=channels, n_threads=2)(batch)
            for layer, df in out.items():
                assert df.shape[0] == 1 and np.isfinite(df.to_numpy()).all(), (arch, channels, layer)
    out = Network("resnet18", geometry="tile", input_size=224, layers=["layer4"], n_threads=2)(batch)
    assert np.isfinite(out["layer4"].to_numpy()).all()
    op = OpenPhenom(weights="random", input_size=128, n_threads=2)(batch)
    assert all(np.isfinite(df.to_numpy()).all() and df.shape == (1, 384) for df in op.values())


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not REAL, reason="BASELENS_TEST_DATA not set (points to shared/realdata)")
def test_real_six_channel_site_every_architecture_finite():
    """Every registered architecture, ViT-H/14 and DINOv2-g included, runs on the real
    6-channel site (random weights, ``expand``, 56 px input to keep CI fast: about 45 s
    for all 13 on 2 cores, ViT-H and DINOv2-g dominating) and returns finite embeddings
    with the documented dimensions for all four layers."""
    import tifffile

    files = sorted((Path(REAL) / "images/pediatric_atlas_BR00143976_C03_s3/images/orig").glob("*.tiff"))
    site = np.stack([tifffile.imread(f).astype(np.float32) for f in files])[None]
    batch = _batch(site, CH6)
    for arch in ARCHITECTURES:
        net = Network(arch, geometry="resize", input_size=56, channels="expand", n_threads=2)
        out = net(batch)
        assert len(out) == 4, arch
        for layer, df in out.items():
            assert df.shape[0] == 1 and np.isfinite(df.to_numpy()).all(), (arch, layer)
        del net, out


@pytest.mark.slow
def test_pipeline_scores_every_layer_and_fit_hook(tmp_path):
    """End to end on the quick screen: each network layer is its own `layer` in
    scores.parquet; the plate_percentile fit hook runs; features are cached; batch size
    does not change the features."""
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    methods = [
        {"name": "pixel_mean"},
        {"name": "vit_small_patch16_224", "label": "vit_s16_random",
         "params": {"weights": "random", "seed": 0, "geometry": "native", "layers": ["block3", "block12"],
                    "n_threads": 1}},
        {"name": "resnet18_random", "label": "resnet18_random",
         "params": {"geometry": "native", "intensity": "plate_percentile", "fit_sites": 2,
                    "layers": ["layer1", "layer4"], "n_threads": 1}},
    ]
    syn = {"preset": "quick", "n_sources": 1, "n_plates_per_batch": 2}
    runs = {}
    for bs in (16, 7):
        cfg = RunConfig.from_dict({"data": {"synthetic": syn}, "methods": methods,
                                   "execution": {"batch_size": bs}})
        runs[bs] = run_pipeline(cfg, tmp_path / f"bs{bs}", progress=False)
    scores = runs[16].scores
    layers = scores.groupby("method")["layer"].unique().map(sorted).to_dict()
    assert layers["vit_s16_random"] == ["block12", "block3"]
    assert layers["resnet18_random"] == ["layer1", "layer4"]
    kinds = scores.drop_duplicates("method").set_index("method")["method_kind"].to_dict()
    # untrained networks are baselines whatever the registered name (kind follows weights)
    assert kinds == {"pixel_mean": "baseline", "vit_s16_random": "baseline",
                     "resnet18_random": "baseline"}
    for label, layer in [("vit_s16_random", "block12"), ("resnet18_random", "layer4")]:
        a = pd.read_parquet(tmp_path / "bs16" / "features" / f"{label}.{layer}.parquet")
        b = pd.read_parquet(tmp_path / "bs7" / "features" / f"{label}.{layer}.parquet")
        feats = [c for c in a.columns if not c.startswith("Metadata_")]
        np.testing.assert_allclose(a[feats].to_numpy(), b[feats].to_numpy(), rtol=1e-4,
                                   atol=1e-5 * np.abs(a[feats].to_numpy()).max())
