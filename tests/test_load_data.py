"""The load_data reader: real tables, clear errors for missing/corrupt channel files."""

import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from baselens.data.load_data import ImageReadError, discover_channels, read_load_data

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def _site_table(tmp_path, n_sites=2, shape=(16, 20)):
    rows = []
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    for s in range(n_sites):
        row = {"Metadata_Plate": "P1", "Metadata_Well": "A01", "Metadata_Site": s + 1}
        for c, ch in enumerate(CHANNELS):
            name = f"s{s}_{ch}.tiff"
            tifffile.imwrite(img_dir / name, (rng.random(shape) * 1000 + c).astype(np.uint16))
            row[f"FileName_Orig{ch}"] = name
            row[f"PathName_Orig{ch}"] = "images"
        rows.append(row)
    path = tmp_path / "load_data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_reads_sites_in_channel_order(tmp_path):
    path = _site_table(tmp_path)
    ld = read_load_data(path)
    assert ld.channels == CHANNELS
    x = ld.read_sites([0, 1])
    assert x.shape == (2, 5, 16, 20) and x.dtype == np.float32
    direct = tifffile.imread(tmp_path / "images" / "s1_RNA.tiff").astype(np.float32)
    np.testing.assert_array_equal(x[1, 2], direct)
    # defaults filled in, with no silent change to what was given
    assert set(ld.table["Metadata_Source"]) == {"unknown"}
    ld2 = read_load_data(path, channels=["Mito", "DNA"])
    np.testing.assert_array_equal(ld2.read_site(0)[1], x[0, 0])


def test_missing_channel_file_names_the_file(tmp_path):
    path = _site_table(tmp_path)
    os.remove(tmp_path / "images" / "s1_AGP.tiff")
    ld = read_load_data(path)
    ld.read_site(0)
    with pytest.raises(ImageReadError, match=r"s1_AGP\.tiff") as info:
        ld.read_site(1)
    assert "Site=2" in str(info.value) and "AGP" in str(info.value)


def test_corrupt_file_names_the_file(tmp_path):
    path = _site_table(tmp_path)
    bad = tmp_path / "images" / "s0_ER.tiff"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    ld = read_load_data(path)
    with pytest.raises(ImageReadError, match=r"s0_ER\.tiff.*corrupt"):
        ld.read_site(0)


def test_unknown_channel_and_duplicates_rejected(tmp_path):
    path = _site_table(tmp_path)
    with pytest.raises(ValueError, match="Brightfield"):
        read_load_data(path, channels=["DNA", "Brightfield"])
    df = pd.read_csv(path)
    pd.concat([df, df.iloc[:1]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match="share a"):
        read_load_data(tmp_path / "dup.csv")


def test_remote_paths_need_a_path_map(tmp_path):
    path = _site_table(tmp_path, n_sites=1)
    df = pd.read_csv(path)
    for ch in CHANNELS:
        df[f"PathName_Orig{ch}"] = "s3://bucket/images"
    df.to_csv(path, index=False)
    with pytest.raises(ImageReadError, match="path_map"):
        read_load_data(path).read_site(0)
    ld = read_load_data(path, path_map={"s3://bucket": str(tmp_path)})
    assert ld.read_site(0).shape == (5, 16, 20)


def test_real_load_data_with_illum_table(realdata):
    ld = read_load_data(realdata / "load_data" / "test_BR00126114_load_data_with_illum.parquet")
    assert set(ld.channels) == {"AGP", "DNA", "ER", "Mito", "RNA"}
    assert ld.table["Metadata_Site"].dtype.kind == "i"
    # images live on S3: the reader says how to map them instead of failing obscurely
    with pytest.raises(ImageReadError, match="s3://cellpainting-gallery"):
        ld.read_site(0)
    ld_illum = read_load_data(realdata / "load_data" / "test_BR00126114_load_data_with_illum.parquet",
                              illum=True)
    assert ld_illum.illum


def test_real_jump_site_with_missing_channels(realdata, tmp_path):
    """The JUMP site in the test data has 3 of 5 channels: the error names the absent file."""
    site = realdata / "images" / "jump_cpjump1_BR00117006_A01_s1" / "images" / "orig"
    # JUMP CPJUMP1 channel numbering: ch1 Mito, ch2 AGP, ch3 RNA, ch4 ER, ch5 DNA
    chmap = {"Mito": 1, "AGP": 2, "RNA": 3, "ER": 4, "DNA": 5}
    row = {"Metadata_Plate": "BR00117006", "Metadata_Well": "A01", "Metadata_Site": 1}
    for ch, k in chmap.items():
        row[f"FileName_Orig{ch}"] = f"r01c01f01p01-ch{k}sk1fk1fl1.tiff"
        row[f"PathName_Orig{ch}"] = str(site)
    pd.DataFrame([row]).to_csv(tmp_path / "ld.csv", index=False)
    ld = read_load_data(tmp_path / "ld.csv")
    with pytest.raises(ImageReadError, match=r"ch[14]sk1fk1fl1\.tiff"):
        ld.read_site(0)
    present = read_load_data(tmp_path / "ld.csv", channels=["AGP", "RNA", "DNA"]).read_site(0)
    assert present.shape == (3, 1080, 1080) and present.max() > 0


def test_image_prefixed_columns_are_accepted(realdata):
    table = pd.read_parquet(realdata / "images" / "pediatric_atlas_BR00143976_C03_s3"
                            / "BR00143976_shrunken.parquet")
    assert "Image_FileName_OrigDNA" in table.columns
    renamed = table.rename(columns=lambda c: c.removeprefix("Image_"))
    assert "DNA" in discover_channels(renamed)
