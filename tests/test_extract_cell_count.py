"""cell_count: nuclei segmentation on hand-drawn and real images, and the 16 count features."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor
from baselens.extract.cell_count import COUNT_FEATURE_NAMES, background_level, count_features, segment_nuclei

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def _disks(centers, radius: float = 6.0, shape=(128, 128), fg=3000.0, bg=200.0, noise=30.0, seed=0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, bg)
    for cy, cx in centers:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = fg
    img += np.random.default_rng(seed).normal(0, noise, shape)
    return img.astype(np.float32)


def _site(dna: np.ndarray, other: float = 500.0) -> np.ndarray:
    site = np.full((5, *dna.shape), other, np.float32)
    site[0] = dna
    return site


def _grid_centers(k: int, step: int = 20, offset: int = 14) -> list[tuple[int, int]]:
    return [(offset + step * (i // 5), offset + step * (i % 5)) for i in range(k)]


@pytest.mark.parametrize("k", [1, 3, 7, 12, 25])
def test_counts_k_separate_disks(k):
    labels = segment_nuclei(_disks(_grid_centers(k), seed=k))
    assert labels.max() == k
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == set(range(k + 1))  # consecutive labels


def test_two_touching_disks_are_split_by_watershed():
    dna = _disks([(64, 55), (64, 66)], radius=6.5)  # overlapping disks: one blob after threshold
    assert ndi.label(dna > 1500)[1] == 1
    labels = segment_nuclei(dna)
    assert labels.max() == 2
    # the split runs between the two centres
    assert labels[64, 52] != labels[64, 69]


def test_ring_nucleus_hole_filled_counts_once():
    yy, xx = np.mgrid[:64, :64]
    r2 = (yy - 32) ** 2 + (xx - 32) ** 2
    dna = np.where((r2 <= 100) & (r2 >= 16), 3000.0, 100.0).astype(np.float32)
    labels = segment_nuclei(dna, sigma=0)
    assert labels.max() == 1
    assert labels[32, 32] == 1  # the hole belongs to the nucleus
    assert segment_nuclei(dna, sigma=0, fill_holes=False)[32, 32] == 0


def test_small_nucleus_next_to_a_large_one_is_kept():
    import baselens.extract.cell_count as cc

    dna = _disks([(64, 64)], radius=16, noise=0)
    yy, xx = np.mgrid[:128, :128]
    dna[(yy - 64) ** 2 + (xx - 84.5) ** 2 <= 2.6**2] = 3000  # small nucleus 2 px off the big one
    # with a wide seed window (min_distance 8) the small one has no window maximum of
    # its own (deeper pixels of the big one are in its window): the fallback seed keeps it
    comps, _ = ndi.label(dna > 1000)
    dist = ndi.distance_transform_edt(comps > 0)
    window_max = (ndi.maximum_filter(dist, size=17) == dist) & (comps > 0)
    assert set(np.unique(comps[window_max])) == {1}
    seeds = cc.watershed_seeds(dist, comps, 8)
    assert set(np.unique(comps[seeds > 0])) == {1, 2}
    assert segment_nuclei(dna, sigma=0, min_distance=8).max() == 2
    assert segment_nuclei(dna, sigma=0).max() == 2


def test_size_filters_and_border_exclusion():
    dna = _disks([(30, 30), (30, 70)], radius=6)
    yy, xx = np.mgrid[:128, :128]
    dna[(yy - 90) ** 2 + (xx - 30) ** 2 <= 1.5**2] = 3000  # debris, area ~9 px
    dna[80:126, 60:126] = 3000  # a huge blob, area ~3000 px
    assert segment_nuclei(dna, min_distance=50).max() == 3  # debris dropped, blob kept
    assert segment_nuclei(dna, min_distance=50, max_area=1000).max() == 2
    assert segment_nuclei(dna, min_distance=50, min_area=1).max() == 4
    edge = _disks([(3, 60), (60, 60)], radius=6)
    assert segment_nuclei(edge).max() == 2
    assert segment_nuclei(edge, exclude_border=True).max() == 1


def test_empty_and_constant_images_have_no_nuclei():
    assert segment_nuclei(np.zeros((32, 32), np.float32)).max() == 0
    assert segment_nuclei(np.full((32, 32), 500.0)).max() == 0
    # a fixed threshold above everything: nothing
    assert segment_nuclei(_disks([(40, 40)]), threshold=10000.0).max() == 0
    # a site with no cells, only background noise: Otsu alone splits the noise into
    # dozens of blobs; the contrast floor (default 5 noise SDs) or an absolute
    # min_threshold keeps the count at 0
    for seed in range(5):
        noise = _disks([], noise=30.0, seed=seed)
        assert segment_nuclei(noise).max() == 0
        assert segment_nuclei(noise, min_threshold=1000.0, min_contrast=0).max() == 0
    assert segment_nuclei(noise, min_contrast=0).max() > 10
    level, sd = background_level(ndi.gaussian_filter(noise, 1.0))
    assert level == pytest.approx(200 - 1.2816 * 30 / 2 / np.sqrt(np.pi), abs=5)  # smoothed noise SD = 30/(2 sqrt(pi))
    assert sd == pytest.approx(30 / 2 / np.sqrt(np.pi), rel=0.15)


def test_cell_count_extractor_columns_and_counts():
    dnas = [_disks(_grid_centers(k), seed=k) for k in (4, 0, 9)]
    dnas[1] = np.full((128, 128), 200.0, np.float32)
    batch = SiteBatch(np.stack([_site(d) for d in dnas]), CHANNELS, pd.DataFrame(index=range(3)))
    out = get_extractor("cell_count")(batch)[DEFAULT_LAYER]
    assert list(out.columns) == ["Count_Nuclei", *COUNT_FEATURE_NAMES]
    assert len(COUNT_FEATURE_NAMES) == 16
    assert out["Count_Nuclei"].tolist() == [4.0, 0.0, 9.0]
    assert all(out.dtypes == np.float64)
    assert np.isfinite(out.to_numpy()).all()
    pd.testing.assert_frame_equal(
        out.drop(columns="Count_Nuclei"), count_features(np.array([4.0, 0.0, 9.0]), count_scale=100.0)
    )


def test_nuclei_channel_param_and_missing_channel_error():
    site = np.full((2, 128, 128), 100.0, np.float32)
    site[1] = _disks(_grid_centers(5))
    batch = SiteBatch(site[None], ["Hoechst", "ER"], pd.DataFrame(index=[0]))
    with pytest.raises(ValueError, match=r"'DNA'.*\['Hoechst', 'ER'\]"):
        get_extractor("cell_count")(batch)
    assert get_extractor("cell_count", nuclei_channel="ER")(batch)[DEFAULT_LAYER]["Count_Nuclei"].item() == 5
    with pytest.raises(TypeError):
        get_extractor("cell_count", nuclei_chanel="DNA")
    with pytest.raises(ValueError):
        get_extractor("cell_count", count_scale=0)
    with pytest.raises(ValueError):
        get_extractor("cell_count", threshold="li")


def test_count_features_known_values():
    f = count_features(np.array([0.0, 100.0, 50.0]), count_scale=100.0)
    assert list(f.columns) == list(COUNT_FEATURE_NAMES)
    zero, one, half = (f.iloc[i] for i in range(3))
    expected_zero = dict.fromkeys(COUNT_FEATURE_NAMES, 0.0)
    expected_zero.update(count_inv_1p_x=1.0, count_exp_neg_x=1.0, count_cos_p1=1.0, count_cos_p2=1.0, count_cos_p4=1.0)
    np.testing.assert_allclose(zero.to_numpy(), [expected_zero[c] for c in COUNT_FEATURE_NAMES], atol=1e-15)
    np.testing.assert_allclose(one[["count_x", "count_x2", "count_x3", "count_sqrt_x", "count_cbrt_x"]], 1.0)
    assert one["count_log1p_n"] == pytest.approx(np.log(101.0))
    assert one["count_log1p_n_sq"] == pytest.approx(np.log(101.0) ** 2)
    assert one["count_log1p_x"] == pytest.approx(np.log(2.0))
    assert one["count_inv_1p_x"] == pytest.approx(0.5)
    assert one["count_exp_neg_x"] == pytest.approx(np.exp(-1.0))
    assert one["count_sin_p1"] == pytest.approx(0.0, abs=1e-12)
    assert one["count_cos_p2"] == pytest.approx(-1.0)
    assert one["count_sin_p4"] == pytest.approx(1.0)
    assert half["count_x2"] == pytest.approx(0.25)
    assert half["count_cbrt_x"] == pytest.approx(0.5 ** (1 / 3))
    # count_scale rescales x only
    g = count_features(np.array([50.0]), count_scale=50.0)
    assert g["count_x"].item() == 1.0 and g["count_log1p_n"].item() == pytest.approx(np.log(51.0))
    assert np.isfinite(count_features(np.array([1e4])).to_numpy()).all()
    with pytest.raises(ValueError):
        count_features(np.array([-1.0]))


def test_count_features_are_not_linearly_dependent():
    n = np.arange(0, 400, 7, dtype=float)
    f = count_features(n).to_numpy()
    design = np.column_stack([np.ones(len(n)), f])
    assert np.linalg.matrix_rank(design) == 17


@pytest.mark.realdata
def test_dsb2018_count_within_15_percent_of_125(dsb2018):
    img, mask = dsb2018
    truth = len(np.unique(mask[mask > 0]))  # labels are not consecutive (max is 183)
    assert truth == 125
    # default parameters (sigma 1, Otsu, min_distance 5, area 15..5000 px)
    labels = segment_nuclei(img)
    assert abs(labels.max() - truth) <= 0.15 * truth
    batch = SiteBatch(img[None, None], ["DNA"], pd.DataFrame(index=[0]))
    out = get_extractor("cell_count")(batch)[DEFAULT_LAYER]
    assert out["Count_Nuclei"].item() == labels.max()
    # and the count is right for the right reasons: most true nuclei are detected
    ids = np.unique(mask[mask > 0])
    centres = ndi.center_of_mass(mask > 0, mask, ids)
    hit = np.mean([labels[int(round(r)), int(round(c))] > 0 for r, c in centres])
    assert hit >= 0.9


def test_confounds_layer():
    dnas = [_disks(_grid_centers(k), seed=k) for k in (6, 12)]
    sites = np.stack([_site(d) for d in dnas])
    sites[:, 3] = np.where(sites[:, 0] > 1500, 1500.0, 100.0)  # AGP: cells = nuclei footprint
    batch = SiteBatch(sites, CHANNELS, pd.DataFrame(index=range(2)))
    out = get_extractor("cell_count", confounds=True, pixel_size_um=0.65)(batch)
    assert list(out) == [DEFAULT_LAYER, "confounds"]
    assert list(out[DEFAULT_LAYER].columns) == ["Count_Nuclei", *COUNT_FEATURE_NAMES]
    c = out["confounds"]
    assert c["Count_Nuclei"].tolist() == [6.0, 12.0] and c["Count_Cells"].tolist() == [6.0, 12.0]
    assert c["Density_Nuclei_per_10kpx"].iloc[1] == pytest.approx(12 / 128**2 * 1e4)
    assert "Density_Nuclei_per_mm2" in c and "MitoCount" in c
    assert "Cells_Neighbors_NumberOfNeighbors_Adjacent_mean" in c and "Nuclei_Neighbors_FirstClosestDistance_5_median" in c
    assert c["Nuclei_Neighbors_FirstClosestDistance_5_median"].tolist() == pytest.approx([20.0, 20.0], abs=0.5)
    assert np.isfinite(c.to_numpy()).all()
    assert list(get_extractor("cell_count")(batch)) == [DEFAULT_LAYER]
