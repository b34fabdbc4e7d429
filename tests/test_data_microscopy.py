"""Microscopy files and image folders → load_data: real sites, channel maps, missing channels."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from baselens.data.load_data import ImageReadError, read_load_data
from baselens.data.microscopy import (
    CHANNEL_MAPS,
    MissingChannelError,
    images_to_load_data,
    normalize_well,
    parse_channel_map,
    read_microscopy,
    read_platemap,
    write_load_data,
)

PEDIATRIC = "images/pediatric_atlas_BR00143976_C03_s3"
JUMP = "images/jump_cpjump1_BR00117006_A01_s1"
NF1_REGEX = r"(?P<well>[A-Z]\d+)_\d+_\d+_(?P<site>\d+)_(?P<channel>[A-Z]+)_\d+\.tif"


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} not in BASELENS_TEST_DATA")
    return path


def test_opera_folder_matches_the_sites_own_cellprofiler_table(realdata, tmp_path):
    """The pediatric-atlas site: 6 Phenix channels named by the preset map; the file each
    channel gets is the one CellProfiler used (the site's own Image_FileName_Orig* table)."""
    folder = _need(realdata / PEDIATRIC / "images" / "orig")
    built = images_to_load_data(folder, plate="BR00143976", channel_map="pediatric_atlas")
    t = built.table
    assert built.pattern == "opera" and len(t) == 1
    assert t.loc[0, ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].tolist() == ["BR00143976", "C03", 3]
    assert (t.loc[0, "Metadata_Row"], t.loc[0, "Metadata_Col"]) == (3, 3)
    cp = pd.read_parquet(realdata / PEDIATRIC / "BR00143976_shrunken.parquet").iloc[0]
    assert (cp["Image_Metadata_Well"], cp["Image_Metadata_Site"]) == ("C03", 3)
    for ch in CHANNEL_MAPS["pediatric_atlas"]:
        assert t.loc[0, f"FileName_Orig{ch}"] == cp[f"Image_FileName_Orig{ch}"], ch
    write_load_data(t, tmp_path / "ld.csv")
    ld = read_load_data(tmp_path / "ld.csv")
    assert ld.channels == ["DNA", "ER", "RNA", "AGP", "Mito", "Brightfield"]
    x = ld.read_site(0)
    assert x.shape == (6, 1080, 1080)
    dna = tifffile.imread(folder / "r03c03f03p01-ch5sk1fk1fl1.tiff").astype(np.float32)
    np.testing.assert_array_equal(x[0], dna)


def test_jump_site_with_three_of_five_channels(realdata):
    """The JUMP site has ch2, ch3, ch5 only: the error names the site and ER/Mito (ch4, ch1)."""
    folder = _need(realdata / JUMP / "images" / "orig")
    with pytest.raises(MissingChannelError) as info:
        images_to_load_data(folder, plate="BR00117006", channel_map="jump_phenix")
    msg = str(info.value)
    assert "plate=BR00117006 well=A01 site=1" in msg
    assert "['ER', 'Mito'] (ER=ch4, Mito=ch1)" in msg and "on_missing='drop'" in msg
    dropped = images_to_load_data(folder, plate="BR00117006", channel_map="jump_phenix",
                                  on_missing="drop")
    assert dropped.table.empty and len(dropped.report["dropped_sites"]) == 1
    # the channels the site has: same files as the site's own CellProfiler table
    present = images_to_load_data(folder, plate="BR00117006",
                                  channel_map={"DNA": "ch5", "AGP": "ch2", "RNA": "ch3"})
    cp = pd.read_parquet(realdata / JUMP / "BR00117006_shrunken.parquet").iloc[0]
    for ch in ("DNA", "AGP", "RNA"):
        assert present.table.loc[0, f"FileName_Orig{ch}"] == cp[f"Image_FileName_Orig{ch}"]
    # without a map every channel seen is expected, and the one site has all three
    assert images_to_load_data(folder, plate="BR00117006").channels == ["ch2", "ch3", "ch5"]


def test_nf1_plate_user_regex_and_plate_map(realdata, tmp_path):
    folder = _need(realdata / "images" / "nf1_plate2" / "Plate_2_images")
    with pytest.raises(ValueError, match="no file name matches a known pattern"):
        images_to_load_data(folder)
    built = images_to_load_data(folder, pattern=NF1_REGEX, plate="Plate_2",
                                channel_map="DNA=DAPI,GFP=GFP,RFP=RFP")
    t = built.table
    assert len(t) == 5 and built.channels == ["DNA", "GFP", "RFP"]
    # wells and sites agree with NF1's own CellProfiler image table
    cp = pd.read_parquet(realdata / "images" / "nf1_plate2" / "Plate_2_with_image_data_shrunken.parquet")
    want = {normalize_well(w): int(s) for w, s in zip(cp["Image_Metadata_Well_x"], cp["Image_Metadata_Site_x"])}
    assert dict(zip(t["Metadata_Well"], t["Metadata_Site"])) == want
    assert set(t["FileName_OrigDNA"]) == set(cp["Image_FileName_DAPI"])
    pm = tmp_path / "pm.csv"
    pd.DataFrame({"well": ["B7", "D6", "D7", "F7"], "perturbation": ["DMSO", "DMSO", "a", "a"]}).to_csv(pm, index=False)
    with pytest.raises(ValueError, match=r"negcon=\['DMSO'\]"):
        images_to_load_data(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm)
    with pytest.raises(ValueError, match=r"1 of 5 site\(s\) have no plate-map row.*Plate_2/H12/s1"):
        images_to_load_data(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm,
                            platemap_options={"negcon": ["DMSO"]})
    ok = images_to_load_data(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm,
                             platemap_options={"negcon": ["DMSO"]}, on_unmatched="drop")
    assert len(ok.table) == 4 and ok.report["platemap"]["unmatched_sites"] == 1
    assert dict(zip(ok.table["Metadata_Well"], ok.table["Metadata_ControlType"])) == {
        "B07": "negcon", "D06": "negcon", "D07": "", "F07": ""}


def _tif(path, value=1, shape=(4, 5)):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full(shape, value, np.uint16))


def test_imagexpress_baselens_and_plane_patterns(tmp_path):
    guid = "C1F9E3A6-0000-4C5B-9F1D-1234567890AB"
    for w in (1, 2):
        _tif(tmp_path / "ix" / f"Screen1_B03_s2_w{w}{guid}.tif", w)
        _tif(tmp_path / "ix" / f"Screen1_B03_s2_w{w}_thumb{guid}.tif")  # thumbnails: ignored
        _tif(tmp_path / "ix" / f"Screen1_C12_w{w}.tif", 10 + w)  # single-site acquisition
    ix = images_to_load_data(tmp_path / "ix")
    assert ix.pattern == "imagexpress" and ix.channels == ["w1", "w2"]
    assert ix.report["files_ignored"] == 2
    assert ix.table[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].values.tolist() == [
        ["Screen1", "B03", 2], ["Screen1", "C12", 1]]
    # the baselens synthetic layout: images/<plate>/<plate>_<well>_s<site>_<channel>.tiff
    for ch in ("DNA", "Mito"):
        _tif(tmp_path / "syn" / "P1" / f"P1_A01_s1_{ch}.tiff")
    assert images_to_load_data(tmp_path / "syn").pattern == "baselens"
    # two z-planes of one (site, channel): an error that says how to pick one
    for p in (1, 2):
        _tif(tmp_path / "z" / "PL7__2024-01-01T10_00_00-Measurement1" / "Images"
             / f"r02c05f01p0{p}-ch1sk1fk1fl1.tiff", p)
    with pytest.raises(ValueError, match="z-planes: pick one with plane=1"):
        images_to_load_data(tmp_path / "z")
    z = images_to_load_data(tmp_path / "z", plane=2)
    assert z.table.loc[0, ["Metadata_Plate", "Metadata_Well"]].tolist() == ["PL7", "B05"]
    assert z.table.loc[0, "FileName_Origch1"].endswith("p02-ch1sk1fk1fl1.tiff")


def test_read_microscopy_ome_tiff_names_and_channel_map(realdata, tmp_path):
    folder = _need(realdata / PEDIATRIC / "images" / "orig")
    names = ["Brightfield", "ER", "AGP", "Mito", "DNA", "RNA"]  # ch1..ch6 of the atlas
    arr = np.stack([tifffile.imread(folder / f"r03c03f03p01-ch{k}sk1fk1fl1.tiff") for k in range(1, 7)])
    tifffile.imwrite(tmp_path / "site.ome.tif", arr, ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": names}, "PhysicalSizeX": 0.6})
    img = read_microscopy(tmp_path / "site.ome.tif")
    assert img.channels == names and img.data.shape == (6, 1080, 1080) and img.pixel_size_um == 0.6
    mapped = read_microscopy(tmp_path / "site.ome.tif", {"DNA": "DNA", "Mito": "ch4"})
    assert mapped.channels == ["DNA", "Mito"]
    np.testing.assert_array_equal(mapped.data[0], arr[4].astype(np.float32))
    np.testing.assert_array_equal(mapped.data[1], arr[3].astype(np.float32))
    with pytest.raises(ImageReadError, match=r"'Hoechst': no such channel.*ch1…ch6"):
        read_microscopy(tmp_path / "site.ome.tif", {"DNA": "Hoechst"})
    # a z-stack: max projection by default, one plane on request; unnamed channels → ch1..
    z = np.stack([arr[:2], arr[:2] + 7])
    tifffile.imwrite(tmp_path / "z.ome.tif", z, ome=True, metadata={"axes": "ZCYX"})
    zi = read_microscopy(tmp_path / "z.ome.tif")
    assert zi.channels == ["ch1", "ch2"] and zi.n_z == 2
    np.testing.assert_array_equal(zi.data[1], (arr[1] + 7).astype(np.float32))
    np.testing.assert_array_equal(read_microscopy(tmp_path / "z.ome.tif", z=0).data, arr[:2])
    tifffile.imwrite(tmp_path / "plain.tif", arr)  # a plain multi-page TIFF: pages are channels
    assert read_microscopy(tmp_path / "plain.tif", "DNA=ch5").channels == ["DNA"]


def test_bioio_formats_need_the_plugin(tmp_path, monkeypatch):
    (tmp_path / "x.nd2").write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "bioio", None)  # as on a machine without bioio
    with pytest.raises(ImportError, match=r"pip install bioio bioio-nd2"):
        read_microscopy(tmp_path / "x.nd2")


def test_ome_zarr_through_bioio(tmp_path):
    pytest.importorskip("bioio", reason="bioio (optional extra) not installed")
    writers = pytest.importorskip("bioio_ome_zarr.writers",
                                  reason="bioio-ome-zarr (optional extra) not installed")
    arr = (np.arange(2 * 3 * 8 * 9).reshape(1, 3, 2, 8, 9) % 251).astype(np.uint16)
    path = tmp_path / "site.ome.zarr"
    w = writers.OMEZarrWriter(str(path), level_shapes=[arr.shape], dtype=arr.dtype,
                              channels=[writers.Channel(label=n, color="FFFFFF")
                                        for n in ("DNA", "ER", "Mito")])
    w.write_full_volume(arr)
    img = read_microscopy(path, {"Mito": "Mito", "DNA": "DNA"})
    assert img.reader == "bioio" and img.channels == ["Mito", "DNA"] and img.n_z == 2
    np.testing.assert_array_equal(img.data[0], arr[0, 2].max(axis=0))


def test_read_load_data_channel_map(realdata, tmp_path):
    """Channel names in a table that differ from the representations' names."""
    folder = _need(realdata / PEDIATRIC / "images" / "orig")
    raw = images_to_load_data(folder, plate="BR00143976")  # channels ch1..ch6
    write_load_data(raw.table, tmp_path / "ld.parquet")
    ld = read_load_data(tmp_path / "ld.parquet", channel_map=CHANNEL_MAPS["jump_phenix"] | {"DNA": "ch5"})
    assert ld.channels == ["DNA", "ER", "RNA", "AGP", "Mito"]
    dna = read_load_data(tmp_path / "ld.parquet", channel_map={"DNA": "ch5", "ch5": "ch1"})
    assert dna.channels == ["DNA", "ch5"]  # a swap-like rename is allowed
    np.testing.assert_array_equal(dna.read_site(0)[0], ld.read_site(0)[0])
    with pytest.raises(ValueError, match=r"\['ch9'\] that the table does not have"):
        read_load_data(tmp_path / "ld.parquet", channel_map={"DNA": "ch9"})
    with pytest.raises(ValueError, match="already has as another channel"):
        read_load_data(tmp_path / "ld.parquet", channel_map={"ch2": "ch5"})
    # the illumination columns follow the rename (the real load_data_with_illum table)
    real = read_load_data(realdata / "load_data" / "test_BR00126114_load_data_with_illum.parquet",
                          channel_map={"Hoechst": "DNA", "Phalloidin": "AGP"}, illum=True)
    assert real.channels == ["Hoechst", "Phalloidin"]
    assert real.table.loc[0, "FileName_IllumHoechst"] == "BR00126114_IllumDNA.npy"


def test_plate_map_parsing(tmp_path):
    p = tmp_path / "pm.tsv"
    pd.DataFrame({"well_position": ["A1", "A02", "B1"], "broad_sample": ["", "BRD-1", "BRD-2"],
                  "control_type": ["", "", "poscon_diverse"]}).to_csv(p, sep="\t", index=False)
    with pytest.raises(ValueError, match="no perturbation column"):
        read_platemap(p)
    with pytest.raises(ValueError, match=r"1 well\(s\) have no perturbation.*fill_empty"):
        read_platemap(p, perturbation="broad_sample")
    pm = read_platemap(p, perturbation="broad_sample", fill_empty="DMSO")
    assert pm["Metadata_Well"].tolist() == ["A01", "A02", "B01"]
    assert pm["Metadata_ControlType"].tolist() == ["", "", "poscon"]
    assert pm["Metadata_Perturbation"].tolist() == ["DMSO", "BRD-1", "BRD-2"]
    assert parse_channel_map("DNA=ch5, ER=ch4") == {"DNA": "ch5", "ER": "ch4"}
    with pytest.raises(ValueError, match="NAME=CHANNEL"):
        parse_channel_map("DNA:ch5")
