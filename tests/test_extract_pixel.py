"""pixel_mean / pixel_stats (arXiv 2603.13377 §3.1) against numpy/scipy on hand-built sites."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor, list_extractors
from baselens.extract.pixel import channel_moments

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def _batch(images: np.ndarray, channels: list[str] = CHANNELS) -> SiteBatch:
    return SiteBatch(images.astype(np.float32), list(channels), pd.DataFrame({"Metadata_Site": range(len(images))}))


def test_registry_lists_all_builtin_extractors_with_kinds():
    kinds = {spec.name: spec.kind for spec in list_extractors()}
    assert kinds["pixel_mean"] == "baseline"
    assert kinds["pixel_stats"] == "baseline"
    assert kinds["cell_count"] == "baseline"
    assert kinds["single_conv"] == "baseline"
    assert kinds["ground_truth"] == "reference"
    for spec in list_extractors():
        assert spec.description


def test_pixel_stats_known_values():
    # channel 0: three 0s and one 4 per 2x2 site -> mean 1, std sqrt(3), skew 2/sqrt(3)
    img = np.zeros((1, 2, 2, 2), dtype=np.float32)
    img[0, 0, 1, 1] = 4.0
    img[0, 1] = [[1.0, 2.0], [3.0, 4.0]]  # symmetric -> skew 0
    out = get_extractor("pixel_stats")(_batch(img, ["DNA", "ER"]))[DEFAULT_LAYER]
    assert list(out.columns) == [
        "pixel_mean_DNA", "pixel_mean_ER", "pixel_std_DNA", "pixel_std_ER", "pixel_skew_DNA", "pixel_skew_ER",
    ]
    np.testing.assert_allclose(
        out.iloc[0].to_numpy(), [1.0, 2.5, np.sqrt(3.0), np.sqrt(1.25), 2.0 / np.sqrt(3.0), 0.0], atol=1e-12
    )


def test_pixel_stats_matches_numpy_scipy_on_random_sites():
    rng = np.random.default_rng(1)
    images = rng.gamma(2.0, 300.0, size=(3, 5, 24, 31)).astype(np.float32)
    out = get_extractor("pixel_stats")(_batch(images))[DEFAULT_LAYER]
    assert out.shape == (3, 15)
    assert all(out.dtypes == np.float64)
    flat = images.astype(np.float64).reshape(3, 5, -1)
    for i in range(3):
        for c, ch in enumerate(CHANNELS):
            x = flat[i, c]
            assert out.loc[i, f"pixel_mean_{ch}"] == pytest.approx(x.mean(), rel=1e-12)
            assert out.loc[i, f"pixel_std_{ch}"] == pytest.approx(x.std(), rel=1e-10)
            assert out.loc[i, f"pixel_skew_{ch}"] == pytest.approx(stats.skew(x, bias=True), rel=1e-8)


def test_constant_channel_has_zero_std_and_skew_not_nan():
    images = np.full((2, 2, 8, 8), 123.0, dtype=np.float32)
    images[1, 1] = 0.0
    out = get_extractor("pixel_stats")(_batch(images, ["DNA", "ER"]))[DEFAULT_LAYER]
    assert np.isfinite(out.to_numpy()).all()
    assert (out[["pixel_std_DNA", "pixel_std_ER", "pixel_skew_DNA", "pixel_skew_ER"]] == 0).all().all()
    mean, std, skew = channel_moments(np.full((1, 4, 4), 7.0))
    assert (mean, std, skew) == (7.0, 0.0, 0.0)


def test_pixel_mean_equals_pixel_stats_means_in_batch_order():
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 60000, size=(4, 5, 16, 16))
    images[2] += 1000.0
    batch = _batch(images)
    means = get_extractor("pixel_mean")(batch)[DEFAULT_LAYER]
    assert list(means.columns) == [f"pixel_mean_{ch}" for ch in CHANNELS]
    np.testing.assert_allclose(means.to_numpy(), images.astype(np.float32).astype(np.float64).mean(axis=(2, 3)))
    stats_means = get_extractor("pixel_stats")(batch)[DEFAULT_LAYER][means.columns]
    np.testing.assert_allclose(means.to_numpy(), stats_means.to_numpy())


def test_unknown_parameter_and_bad_batch():
    with pytest.raises(TypeError):
        get_extractor("pixel_mean", foo=1)
    with pytest.raises(TypeError):
        get_extractor("pixel_stats", channels=["DNA"])
    with pytest.raises(ValueError, match="channels"):
        get_extractor("pixel_mean")(SiteBatch(np.zeros((1, 2, 4, 4), np.float32), ["DNA"], pd.DataFrame(index=[0])))
    with pytest.raises(ValueError, match="None"):
        get_extractor("pixel_stats")(SiteBatch(None, ["DNA"], pd.DataFrame(index=[0])))
    assert get_extractor("pixel_mean").needs_images is True
