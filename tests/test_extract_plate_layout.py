"""plate_layout: well position features without images."""

import numpy as np
import pandas as pd
import pytest

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor, list_extractors
from baselens.data.wells import normalize_well, parse_well, well_name


def test_parse_well():
    assert parse_well("A01") == (1, 1)
    assert parse_well("P24") == (16, 24)
    assert parse_well("h7") == (8, 7)
    assert parse_well("AF48") == (32, 48)
    with pytest.raises(ValueError):
        parse_well("1A")
    assert parse_well("A001") == (1, 1) and parse_well("A00", default=(-1, -1)) == (-1, -1)


def test_well_name_round_trips_parse_well():
    assert well_name(1, 1) == "A01" and well_name(16, 24) == "P24" and well_name(32, 48) == "AF48"
    assert all(parse_well(well_name(r, c)) == (r, c) for r in range(1, 60) for c in (1, 9, 48))
    assert [normalize_well(w) for w in ("a1", "A001", "AF48", "junk")] == ["A01", "A01", "AF48", "junk"]
    with pytest.raises(ValueError):
        well_name(0, 1)


def test_features_from_row_col_and_from_well_names():
    meta = pd.DataFrame({"Metadata_Well": ["A01", "D06", "H12"], "Metadata_Row": [1, 4, 8], "Metadata_Col": [1, 6, 12],
                         "Metadata_Plate": ["p1", "p2", "p1"], "Metadata_Batch": ["b", "b", "b"]})
    ex = get_extractor("plate_layout", one_hot=["plate", "batch"])
    assert ex.needs_images is False
    f = ex(SiteBatch(None, [], meta))[DEFAULT_LAYER]
    assert f["Layout_DistToEdge"].tolist() == [0.0, 3.0, 0.0]
    assert f["Layout_IsEdge"].tolist() == [1.0, 0.0, 1.0]
    assert f["Layout_RowFrac"].tolist() == [0.0, 3 / 7, 1.0]
    assert f["Layout_Plate_p2"].tolist() == [0.0, 1.0, 0.0] and f["Layout_Batch_b"].tolist() == [1.0] * 3
    g = ex(SiteBatch(None, [], meta.drop(columns=["Metadata_Row", "Metadata_Col"])))[DEFAULT_LAYER]
    pd.testing.assert_frame_equal(f, g)
    # 384-well plate inferred from the positions; fixed categories give fixed columns
    big = get_extractor("plate_layout", one_hot=["plate"], categories={"plate": ["p1", "p9"]})
    h = big(SiteBatch(None, [], pd.DataFrame({"Metadata_Well": ["P24"], "Metadata_Plate": ["p1"]})))[DEFAULT_LAYER]
    assert h["Layout_DistToEdge"].item() == 0 and list(h.columns)[-2:] == ["Layout_Plate_p1", "Layout_Plate_p9"]
    with pytest.raises(ValueError):
        get_extractor("plate_layout", plate_format=100)
    with pytest.raises(ValueError, match="outside"):
        get_extractor("plate_layout", plate_format=96)(SiteBatch(None, [], pd.DataFrame({"Metadata_Well": ["P24"]})))
    assert {s.name: s.kind for s in list_extractors()}["plate_layout"] == "baseline"


def _screen():
    """Source S0: two full 96-well plates; source S1: one 384-well plate with a subset of
    wells. Negative controls sit in the corner columns of every plate."""
    rows = []
    for plate, src, batch, (nr, nc), step in [("p1", "S0", "b1", (8, 12), 1), ("p2", "S0", "b2", (8, 12), 1),
                                              ("q1", "S1", "b3", (16, 24), 3)]:
        for r in range(1, nr + 1, step):
            for c in range(1, nc + 1):
                ctrl = c in (1, nc) or (r == nr and c % 5 == 0)
                rows.append({"Metadata_Plate": plate, "Metadata_Source": src, "Metadata_Batch": batch,
                             "Metadata_Well": f"{chr(64 + r)}{c:02d}",
                             "Metadata_ControlType": "negcon" if ctrl else ""})
        rows.append({"Metadata_Plate": plate, "Metadata_Source": src, "Metadata_Batch": batch,
                     "Metadata_Well": f"{chr(64 + nr)}{nc:02d}", "Metadata_ControlType": "negcon"})
    return pd.DataFrame(rows).drop_duplicates(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)


def _by_chunks(ex, meta, size):
    """Features as the pipeline computes them: chunks of <= size sites of one plate."""
    parts = []
    for _, idx in meta.groupby("Metadata_Plate", sort=True).indices.items():
        for s in range(0, len(idx), size):
            rows = idx[s:s + size]
            f = ex(SiteBatch(None, [], meta.iloc[rows].reset_index(drop=True)))[DEFAULT_LAYER]
            parts.append(f.set_index(pd.Index(rows)))
    return pd.concat(parts).sort_index()


def test_features_do_not_depend_on_chunks_or_on_the_subset_kept():
    meta = _screen()
    ex = get_extractor("plate_layout", one_hot=["plate", "batch", "source"])
    ex.fit(meta)
    whole = ex(SiteBatch(None, [], meta))[DEFAULT_LAYER]
    assert (whole.loc[meta.Metadata_Well == "P24", "Layout_IsEdge"] == 1).all()
    for size in (1, 7, 64):
        pd.testing.assert_frame_equal(_by_chunks(ex, meta, size), whole, check_index_type=False)
    # a download that kept only the controls: fitted on the subset, same features
    ctrl = meta[meta.Metadata_ControlType == "negcon"].reset_index(drop=True)
    sub = get_extractor("plate_layout", one_hot=["plate", "batch", "source"])
    sub.fit(ctrl)
    got = _by_chunks(sub, ctrl, 7)
    want = whole[(meta.Metadata_ControlType == "negcon").to_numpy()].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    # without fit a one-well chunk cannot know its plate: the test above can fail
    bare = get_extractor("plate_layout", one_hot=["plate", "batch", "source"])
    one = bare(SiteBatch(None, [], meta.iloc[[5]].reset_index(drop=True)))[DEFAULT_LAYER]
    assert list(one.columns) != list(whole.columns) or not one.equals(whole.iloc[[5]].reset_index(drop=True))


def test_plate_format_column_and_parameter_override_the_inference():
    meta = pd.DataFrame({"Metadata_Plate": ["a", "a"], "Metadata_Well": ["A01", "B02"],
                         "Metadata_PlateFormat": [384, 384]})
    ex = get_extractor("plate_layout")
    ex.fit(meta)
    f = ex(SiteBatch(None, [], meta.iloc[[1]]))[DEFAULT_LAYER]
    assert f["Layout_ColFrac"].item() == 1 / 23
    ex96 = get_extractor("plate_layout", plate_format=96)
    ex96.fit(meta)
    assert ex96(SiteBatch(None, [], meta.iloc[[1]]))[DEFAULT_LAYER]["Layout_ColFrac"].item() == 1 / 11
