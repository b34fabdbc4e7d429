"""ground_truth (reference): join of the synthetic screen's site phenotypes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.extract import DEFAULT_LAYER, SiteBatch, get_extractor, list_extractors


def _table() -> pd.DataFrame:
    rows = []
    for plate in ("P1", "P2"):
        for well in ("A01", "B02"):
            for site in (1, 2):
                rows.append(
                    dict(
                        Metadata_Source="synthetic",
                        Metadata_Batch="B1",
                        Metadata_Plate=plate,
                        Metadata_Well=well,
                        Metadata_Site=site,
                        Metadata_Perturbation=f"pert_{well}",
                        GT_size=float(len(rows)),
                        GT_texture=-10.0 * len(rows),
                        n_cells=50 + len(rows),
                    )
                )
    return pd.DataFrame(rows)


@pytest.fixture
def gt_dir(tmp_path):
    d = tmp_path / "ground_truth"
    d.mkdir()
    _table().to_parquet(d / "site_phenotypes.parquet")
    return d


def _meta(keys) -> pd.DataFrame:
    return pd.DataFrame(keys, columns=["Metadata_Plate", "Metadata_Well", "Metadata_Site"])


def test_join_returns_gt_columns_in_batch_order(gt_dir):
    # batch order differs from the table's, and Metadata_Site arrives as str
    meta = _meta([("P2", "B02", "2"), ("P1", "A01", "1"), ("P1", "B02", "2")])
    meta["Metadata_Perturbation"] = "x"
    ext = get_extractor("ground_truth", table=gt_dir / "site_phenotypes.parquet")
    assert ext.needs_images is False
    out = ext(SiteBatch(None, [], meta))[DEFAULT_LAYER]
    assert list(out.columns) == ["GT_size", "GT_texture"]
    assert all(out.dtypes == np.float64)
    table = _table()
    expected = [
        table.index[(table.Metadata_Plate == p) & (table.Metadata_Well == w) & (table.Metadata_Site == int(s))][0]
        for p, w, s in meta[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].itertuples(index=False)
    ]
    np.testing.assert_array_equal(out["GT_size"], np.asarray(expected, dtype=float))
    np.testing.assert_array_equal(out["GT_texture"], -10.0 * np.asarray(expected, dtype=float))


def test_missing_site_error_names_the_site(gt_dir):
    meta = _meta([("P1", "A01", 1), ("P9", "C03", 4)])
    ext = get_extractor("ground_truth", table=str(gt_dir / "site_phenotypes.parquet"))
    with pytest.raises(KeyError, match=r"P9.*C03.*4"):
        ext(SiteBatch(None, [], meta))


def test_table_from_context_ground_truth_dir(gt_dir):
    meta = _meta([("P1", "B02", 2)])
    out = get_extractor("ground_truth")(SiteBatch(None, [], meta, context={"ground_truth_dir": str(gt_dir)}))
    assert out[DEFAULT_LAYER]["GT_size"].item() == 3.0


def test_no_table_says_synthetic_only(tmp_path):
    meta = _meta([("P1", "A01", 1)])
    with pytest.raises(ValueError, match="synthetic"):
        get_extractor("ground_truth")(SiteBatch(None, [], meta))
    with pytest.raises(ValueError, match="synthetic"):
        get_extractor("ground_truth")(SiteBatch(None, [], meta, context={"ground_truth_dir": str(tmp_path)}))
    with pytest.raises(FileNotFoundError):
        get_extractor("ground_truth", table=tmp_path / "nope.parquet")(SiteBatch(None, [], meta))


def test_bad_tables_and_meta(tmp_path):
    dup = pd.concat([_table(), _table().iloc[:1]])
    dup.to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(ValueError, match="more than once"):
        get_extractor("ground_truth", table=tmp_path / "dup.parquet")(SiteBatch(None, [], _meta([("P1", "A01", 1)])))
    _table().drop(columns=["GT_size", "GT_texture"]).to_parquet(tmp_path / "nogt.parquet")
    with pytest.raises(ValueError, match="GT_"):
        get_extractor("ground_truth", table=tmp_path / "nogt.parquet")(SiteBatch(None, [], _meta([("P1", "A01", 1)])))
    _table().to_parquet(tmp_path / "ok.parquet")
    with pytest.raises(ValueError, match="Metadata_Site"):
        get_extractor("ground_truth", table=tmp_path / "ok.parquet")(
            SiteBatch(None, [], pd.DataFrame({"Metadata_Plate": ["P1"], "Metadata_Well": ["A01"]}))
        )
    with pytest.raises(TypeError):
        get_extractor("ground_truth", path="x")


def test_registered_as_reference():
    spec = {s.name: s for s in list_extractors()}["ground_truth"]
    assert spec.kind == "reference"
