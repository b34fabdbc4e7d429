"""single_conv (arXiv 2603.13377 §3.2): random filters + ReLU + global pooling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import correlate

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor
from baselens.extract.single_conv import conv2d_relu_pool, kaiming_uniform_filters, scale_images

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def _batch(images: np.ndarray) -> SiteBatch:
    return SiteBatch(np.asarray(images, np.float32), CHANNELS[: images.shape[1]], pd.DataFrame(index=range(len(images))))


def _blobs(rng: np.random.Generator, n_sites: int = 2, size: int = 48) -> np.ndarray:
    from scipy import ndimage as ndi

    noise = rng.random((n_sites, 5, size, size))
    return (ndi.gaussian_filter(noise, (0, 0, 2, 2)) * 20000).astype(np.float32)


def _features(images: np.ndarray, **params) -> pd.DataFrame:
    return get_extractor("single_conv", **params)(_batch(images))[DEFAULT_LAYER]


def test_shape_names_and_nonnegative():
    images = _blobs(np.random.default_rng(0), n_sites=3)
    out = _features(images)
    assert out.shape == (3, 64)
    assert list(out.columns[:2]) == ["single_conv_000", "single_conv_001"]
    assert out.columns[-1] == "single_conv_063"
    assert all(out.dtypes == np.float64)
    assert (out.to_numpy() >= 0).all()
    mm = _features(images, n_filters=8, kernel_size=3, pooling="mean_max")
    assert list(mm.columns) == [f"single_conv_mean_{i:03d}" for i in range(8)] + [
        f"single_conv_max_{i:03d}" for i in range(8)
    ]
    mean_only = _features(images, n_filters=8, kernel_size=3, pooling="mean")
    max_only = _features(images, n_filters=8, kernel_size=3, pooling="max")
    np.testing.assert_array_equal(mm.to_numpy()[:, :8], mean_only.to_numpy())
    np.testing.assert_array_equal(mm.to_numpy()[:, 8:], max_only.to_numpy())


def test_same_seed_identical_different_seed_differs():
    images = _blobs(np.random.default_rng(1))
    a = _features(images, seed=0)
    b = _features(images, seed=0)
    c = _features(images, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())
    np.testing.assert_array_equal(kaiming_uniform_filters(4, 5, 7, 3), kaiming_uniform_filters(4, 5, 7, 3))


def test_kaiming_uniform_bound():
    w = kaiming_uniform_filters(256, 5, 7, seed=0)
    bound = 1 / np.sqrt(5 * 49)
    assert w.shape == (256, 5, 7, 7) and w.dtype == np.float32
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound


def test_matches_direct_cross_correlation():
    rng = np.random.default_rng(2)
    site = rng.random((3, 23, 19)).astype(np.float32)
    w = rng.standard_normal((6, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ref = np.stack(
        [
            np.maximum(sum(correlate(site[c].astype(float), w[f, c].astype(float), mode="valid") for c in range(3)) + b[f], 0)
            for f in range(6)
        ]
    )
    out = conv2d_relu_pool(site, w, b, pooling="mean_max")
    np.testing.assert_allclose(out, np.r_[ref.mean(axis=(1, 2)), ref.max(axis=(1, 2))], atol=1e-5)


def test_row_blocking_gives_same_answer(monkeypatch):
    import baselens.extract.single_conv as sc

    rng = np.random.default_rng(3)
    site = rng.random((5, 40, 33)).astype(np.float32)
    w = kaiming_uniform_filters(8, 5, 7)
    whole = conv2d_relu_pool(site, w, pooling="mean_max")
    monkeypatch.setattr(sc, "_PATCH_ELEMENTS", 5 * 49 * 27 * 3)  # 3 output rows per block
    np.testing.assert_allclose(conv2d_relu_pool(site, w, pooling="mean_max"), whole, rtol=1e-6)


def test_global_pooling_is_translation_invariant_for_isolated_objects():
    # an object on a zero background, moved but kept >= k px from the border: the valid
    # conv response is the same set of values, so mean and max pooling are unchanged
    rng = np.random.default_rng(4)
    obj = rng.uniform(100, 30000, size=(5, 12, 10))
    a = np.zeros((1, 5, 64, 64), np.float32)
    b = np.zeros((1, 5, 64, 64), np.float32)
    a[0, :, 8:20, 9:19] = obj
    b[0, :, 40:52, 30:40] = obj
    fa = _features(np.concatenate([a, b]), pooling="mean_max")
    np.testing.assert_allclose(fa.iloc[0], fa.iloc[1], rtol=1e-5, atol=1e-9)


def test_circular_shift_changes_mean_features_little():
    rng = np.random.default_rng(5)
    images = _blobs(rng, n_sites=1, size=96)
    shifted = np.roll(images, (9, -13), axis=(2, 3))
    other = _blobs(rng, n_sites=1, size=96) * 1.5
    f = _features(np.concatenate([images, shifted, other])).to_numpy()
    shift_err = np.abs(f[0] - f[1]).max() / np.abs(f[0]).max()
    other_err = np.abs(f[0] - f[2]).max() / np.abs(f[0]).max()
    assert shift_err < 0.05
    assert other_err > 5 * shift_err


def test_fixed_scale_keeps_intensity_per_image_removes_it():
    images = _blobs(np.random.default_rng(6), n_sites=1)
    both = np.concatenate([images, 2 * images])
    fixed = _features(both, n_filters=16).to_numpy()
    # no bias: ReLU(conv) is positively homogeneous, features double with intensity
    np.testing.assert_allclose(fixed[1], 2 * fixed[0], rtol=1e-5)
    np.testing.assert_allclose(fixed[0], _features(images / 65535.0 * 65535.0, n_filters=16).to_numpy()[0])
    per_image = _features(np.concatenate([images, 2 * images + 500]), n_filters=16, scale="per_image").to_numpy()
    np.testing.assert_allclose(per_image[1], per_image[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scale_images(np.full((1, 4, 4), 65535.0), "fixed"), 1.0)
    assert np.isfinite(scale_images(np.full((1, 4, 4), 3.0), "per_image")).all()


def test_bias_option_and_parameter_errors():
    images = _blobs(np.random.default_rng(7), n_sites=1)
    with_bias = _features(images, n_filters=8, bias=True)
    without = _features(images, n_filters=8)
    assert not np.allclose(with_bias.to_numpy(), without.to_numpy())
    np.testing.assert_allclose(_features(images, n_filters=8, n_threads=None), without, rtol=1e-5)
    with pytest.raises(TypeError):
        get_extractor("single_conv", n_filter=8)
    with pytest.raises(ValueError, match="pooling"):
        get_extractor("single_conv", pooling="median")
    with pytest.raises(ValueError, match="scale"):
        get_extractor("single_conv", scale="minmax")
    with pytest.raises(ValueError, match="smaller than kernel"):
        _features(np.zeros((1, 5, 4, 4)), kernel_size=7)


def test_more_filters_than_three_digits_named_consistently():
    out = _features(np.ones((1, 1, 8, 8)), n_filters=1200, kernel_size=1)
    assert out.columns[0] == "single_conv_0000" and out.columns[-1] == "single_conv_1199"
