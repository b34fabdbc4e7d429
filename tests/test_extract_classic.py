"""classic: CellProfiler-named per-object features via cp_measure, aggregated to sites."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("cp_measure", reason="cp_measure is not installed (pip install cp_measure>=0.3)")

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor  # noqa: E402
from baselens.extract.classic import measure_objects  # noqa: E402

CH = ["DNA", "AGP", "Mito"]


def _site(seed=0, n=6, size=96):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    site = np.full((3, size, size), 100.0)
    for k in range(n):
        cy, cx = 16 + 30 * (k // 3), 16 + 30 * (k % 3)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        site[0][r2 <= 20] = 3000
        site[1][r2 <= 110] = 1200
        site[2][(r2 <= 110) & (rng.random((size, size)) < 0.5)] = 2000
    return (site + rng.normal(0, 10, site.shape)).astype(np.float32)


def test_names_layers_counts_and_stable_columns():
    ex = get_extractor("classic", groups=["areashape", "intensity", "texture", "neighbors"], gray_levels=16)
    batch = SiteBatch(np.stack([_site(0), _site(1, n=3)]), CH, pd.DataFrame(index=range(2)))
    out = ex(batch)
    assert set(out) == {DEFAULT_LAYER, "mean"}
    med = out[DEFAULT_LAYER]
    assert med["Image_Count_Nuclei"].tolist() == [6.0, 3.0]
    assert med["Image_Count_Cells"].tolist() == [6.0, 3.0]
    for col in ("Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA", "Cytoplasm_Intensity_MeanIntensity_Mito",
                "Cells_Texture_Contrast_Mito_3_00_16", "Nuclei_Neighbors_NumberOfNeighbors_5",
                "Cells_Neighbors_PercentTouching_Adjacent"):
        assert col in med.columns, col
    assert not any(c.endswith(("Center_X", "BoundingBoxMinimum_X")) for c in med.columns)
    assert med["Nuclei_AreaShape_Area"].iloc[0] == pytest.approx(np.pi * 20, rel=0.2)
    assert med["Nuclei_Intensity_MeanIntensity_DNA"].iloc[0] == pytest.approx(3000 / 65535, rel=0.05)
    assert np.isfinite(med.to_numpy()).all() and all(med.dtypes == np.float64)
    # same columns for an empty batch of sites and for nuclei-only
    empty = ex(SiteBatch(np.full((1, 3, 64, 64), 100.0, np.float32), CH, pd.DataFrame(index=[0])))
    assert list(empty[DEFAULT_LAYER].columns) == list(med.columns)
    assert empty[DEFAULT_LAYER]["Image_Count_Nuclei"].item() == 0


def test_group_and_channel_selection_and_errors():
    ex = get_extractor("classic", objects=["Cells"], groups=["intensity", "radial"],
                       group_channels={"radial": ["Mito"]}, aggregations=["median"])
    out = ex(SiteBatch(_site()[None], CH, pd.DataFrame(index=[0])))
    cols = out[DEFAULT_LAYER].columns
    assert set(out) == {DEFAULT_LAYER}
    assert any(c.startswith("Cells_RadialDistribution_FracAtD_Mito_") for c in cols)
    assert not any("RadialDistribution" in c and "_DNA_" in c for c in cols)
    assert not any(c.startswith("Nuclei_") for c in cols)
    with pytest.raises(ValueError):
        get_extractor("classic", groups=["haralick"])
    with pytest.raises(ValueError):
        get_extractor("classic", aggregations=["max"])
    with pytest.raises(ValueError, match="not in the batch"):
        get_extractor("classic", channels=["ER"])(SiteBatch(_site()[None], CH, pd.DataFrame(index=[0])))


def test_correlation_names_follow_cellprofiler():
    site = _site()
    lab = (site[0] > 1500).astype(np.int32)
    from scipy import ndimage as ndi

    lab = ndi.label(lab)[0]
    per = measure_objects(lab, site, CH, obj="Nuclei", groups=["correlation"], correlation_pairs=[("DNA", "AGP")])
    assert {"Nuclei_Correlation_Correlation_DNA_AGP", "Nuclei_Correlation_Slope_DNA_AGP", "Nuclei_Correlation_Manders_DNA_AGP",
            "Nuclei_Correlation_Manders_AGP_DNA", "Nuclei_Correlation_RWC_DNA_AGP", "Nuclei_Correlation_Overlap_DNA_AGP",
            "Nuclei_Correlation_K_AGP_DNA"} <= set(per.columns)


@pytest.mark.realdata
def test_nf1_measurements_on_cellprofiler_masks_agree_with_cellprofiler():
    """One nucleus per image (5 images) from the shipped CellProfiler parquet, measured on
    the shipped binary nucleus masks. Shape and texture match CellProfiler closely;
    intensities only up to a per-image gain (CellProfiler measured illumination-
    corrected images, we have the raw ones), so for those we require correlation."""
    root = os.environ.get("BASELENS_TEST_DATA")
    if not root:
        pytest.skip("BASELENS_TEST_DATA is unset (point it at the shared realdata folder)")
    d = Path(root) / "images" / "nf1_plate2"
    if not d.is_dir():
        pytest.skip(f"{d} not found under BASELENS_TEST_DATA")
    import tifffile
    from scipy import ndimage as ndi

    cp = pd.read_parquet(d / "Plate_2_with_image_data_shrunken.parquet").reset_index(drop=True)
    chans = ["DAPI", "GFP", "RFP"]
    rows = []
    for _, r in cp.iterrows():
        stem = r.Image_FileName_DAPI.replace(".tif", "")
        pre = stem.split("_1_")[0]
        site = np.stack([tifffile.imread(glob.glob(str(d / "Plate_2_images" / f"{pre}_*_{c}_001.tif"))[0]) for c in chans])
        lab = ndi.label(tifffile.imread(d / "Plate_2_masks" / f"{stem}_MaskNuclei.tiff") > 0)[0]
        one = (lab == lab[int(round(r.Nuclei_AreaShape_Center_Y)), int(round(r.Nuclei_AreaShape_Center_X))]).astype(np.int32)
        rows.append(measure_objects(one, site.astype(np.float32), chans, obj="Nuclei",
                                    groups=["areashape", "intensity", "texture"], shape_zernikes=False).iloc[0])
    ours = pd.DataFrame(rows).reset_index(drop=True)

    def rel(col):
        return float(np.max(np.abs(ours[col] - cp[col]) / np.abs(cp[col])))

    # the binary masks differ from CellProfiler's objects by <= 8 px of ~1000-4000 (0.8%)
    for f in ("Area", "Perimeter", "MajorAxisLength", "MinorAxisLength", "Eccentricity", "Solidity",
              "EquivalentDiameter", "MaxFeretDiameter", "FormFactor", "Extent", "MeanRadius"):
        assert rel(f"Nuclei_AreaShape_{f}") < 0.02, f
    tex = [c for c in ours.columns if c.startswith("Nuclei_Texture_") and c in cp.columns]
    assert len(tex) == 156
    within5 = np.mean([rel(c) < 0.05 for c in tex])
    assert within5 >= 0.7  # measured 0.75
    for ch in chans:
        a, b = ours[f"Nuclei_Intensity_MeanIntensity_{ch}"], cp[f"Nuclei_Intensity_MeanIntensity_{ch}"]
        assert np.corrcoef(a, b)[0, 1] > 0.99  # measured >= 0.997


def _gapped_cells():
    """Four 10x10 cells; nucleus 2 covers all of cell 2, so Cytoplasm has labels {1, 3, 4}.

    Channel DNA is a_L and ER is b_L, constant inside each cell (background 0), so every
    per-object value is known: MeanIntensity_ER = b_L / 65535, Overlap = 1,
    K_DNA_ER = b_L / a_L and K_ER_DNA = a_L / b_L (cp_measure's K1 = Σab/Σa², K2 = Σab/Σb²).
    """
    from baselens.extract.segmentation import Segmentation, cytoplasm

    a = {1: 1000.0, 2: 2000.0, 3: 3000.0, 4: 4000.0}
    b = {1: 500.0, 2: 7000.0, 3: 9000.0, 4: 12000.0}
    cells = np.zeros((40, 40), np.int32)
    nuc = np.zeros((40, 40), np.int32)
    site = np.zeros((2, 40, 40), np.float32)
    for k, (y, x) in enumerate([(2, 2), (2, 25), (25, 2), (25, 25)], start=1):
        cells[y:y + 10, x:x + 10] = k
        nuc[y + 3:y + 7, x + 3:x + 7] = k
        site[0, y:y + 10, x:x + 10] = a[k]
        site[1, y:y + 10, x:x + 10] = b[k]
    nuc[cells == 2] = 2
    return site, Segmentation(nuc, cells, cytoplasm(cells, nuc)), a, b


def test_gapped_labels_keep_each_value_on_its_own_object():
    """Regression: get_correlation_overlap returned one value per label 1..max (0 for the
    missing label 2), which raised '4 values for 3 objects' — or, had the counts matched,
    would have put cell 3's value on cell 4."""
    site, seg, a, b = _gapped_cells()
    cyto = seg.cytoplasm
    assert sorted(set(np.unique(cyto)) - {0}) == [1, 3, 4]
    per = measure_objects(cyto, site, ["DNA", "ER"], obj="Cytoplasm",
                          groups=["areashape", "intensity", "correlation"], correlation_pairs=[("DNA", "ER")])
    assert per.index.tolist() == [1, 3, 4]
    for k in (1, 3, 4):
        assert per.loc[k, "Cytoplasm_AreaShape_Area"] == 100 - 16
        assert per.loc[k, "Cytoplasm_Intensity_MeanIntensity_ER"] == pytest.approx(b[k] / 65535)
        assert per.loc[k, "Cytoplasm_Correlation_Overlap_DNA_ER"] == pytest.approx(1.0)
        assert per.loc[k, "Cytoplasm_Correlation_K_DNA_ER"] == pytest.approx(b[k] / a[k])
        assert per.loc[k, "Cytoplasm_Correlation_K_ER_DNA"] == pytest.approx(a[k] / b[k])
    # a label image with only a gap at the start (ids 3 and 7)
    lab = np.where(np.isin(seg.cells, [3, 4]), seg.cells * 2 - 3, 0).astype(np.int32)  # 3 -> 3, 4 -> 5
    lab[lab == 5] = 7
    per = measure_objects(lab, site, ["DNA", "ER"], obj="Cells", groups=["correlation", "neighbors"],
                          correlation_pairs=[("DNA", "ER")], neighbor_distance=50)
    assert per.index.tolist() == [3, 7]
    assert per["Cells_Correlation_K_DNA_ER"].tolist() == pytest.approx([b[3] / a[3], b[4] / a[4]])
    assert per["Cells_Neighbors_NumberOfNeighbors_50"].tolist() == [1, 1]


def test_site_with_an_all_nucleus_cell_counts_and_aggregates_present_objects():
    from baselens.extract.classic import Classic

    site, seg, a, b = _gapped_cells()
    ex = Classic(groups=["intensity", "correlation"], correlation_pairs=[["DNA", "ER"]])
    plan = ex._plan(["DNA", "ER"], has_cells=True)
    per = ex._measure_site(site, seg, ["DNA", "ER"], plan)
    assert per["Cells"].index.tolist() == [1, 2, 3, 4]
    assert per["Cytoplasm"].index.tolist() == [1, 3, 4]
    assert per["Cytoplasm"]["Cytoplasm_Correlation_K_DNA_ER"].median() == pytest.approx(b[3] / a[3])
    assert per["Cells"]["Cells_Correlation_K_DNA_ER"].tolist() == pytest.approx([b[k] / a[k] for k in range(1, 5)])


def test_noise_sites_with_empty_cytoplasms_run():
    """The reported crash: sparse-noise sites segment into cells that are all nucleus."""
    rng = np.random.default_rng(1)
    imgs = np.where(rng.random((1, 5, 128, 128)) < 0.01, 60000, 100).astype(np.uint16)
    ch = ["DNA", "ER", "RNA", "AGP", "Mito"]
    out = get_extractor("classic", groups=["intensity", "correlation"], channels=["DNA", "ER"],
                        aggregations=["median"])(SiteBatch(imgs, ch, pd.DataFrame(index=[0])))
    med = out[DEFAULT_LAYER]
    assert med["Image_Count_Cytoplasm"].item() < med["Image_Count_Cells"].item()  # some cytoplasm is empty
    assert np.isfinite(med.to_numpy()).all()
