"""plate_layout: well position features without images."""

import numpy as np
import pandas as pd
import pytest

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor, list_extractors
from baselens.extract.plate_layout import parse_well


def test_parse_well():
    assert parse_well("A01") == (1, 1)
    assert parse_well("P24") == (16, 24)
    assert parse_well("h7") == (8, 7)
    assert parse_well("AF48") == (32, 48)
    with pytest.raises(ValueError):
        parse_well("1A")


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
