"""Profile tables (pycytominer / JUMP) as a representation: the real LINCS plate, JUMP-style
Parquet, metadata-only screens, and a whole run scored from a profile table alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.data.load_data import ImageReadError, read_load_data
from baselens.data.profiles import feature_report, read_profiles, write_profile_run
from baselens.extract import get_extractor

LINCS = "profiles/lincs_SQ00015054_normalized_feature_select.csv.gz"


@pytest.fixture(scope="module")
def lincs(realdata):
    p = realdata / LINCS
    if not p.exists():
        pytest.skip(f"{p} not in BASELENS_TEST_DATA")
    return p


def test_lincs_plate_conventions(lincs):
    raw = pd.read_csv(lincs)
    pt = read_profiles(lincs)
    feats = [c for c in raw.columns if not c.startswith("Metadata_")]
    assert pt.features == feats and len(feats) == 454 and len(pt.table) == 384
    assert pt.report["perturbation_column"] == "Metadata_broad_sample"
    assert pt.report["negcon"] == int((raw["Metadata_broad_sample"] == "DMSO").sum()) == 24
    assert pt.report["features"]["nonfinite_any"] == 0 and pt.report["features"]["constant"] == 0
    np.testing.assert_array_equal(pt.table[feats].to_numpy(), raw[feats].to_numpy())
    by_type = read_profiles(lincs, perturbation="Metadata_pert_id",
                            negcon={"Metadata_broad_sample": "DMSO"})
    assert by_type.report["negcon"] == 24
    with pytest.raises(ValueError, match="no perturbation equals negcon"):
        read_profiles(lincs, negcon=["DMSO_typo"])


def test_lincs_well_level_precomputed_on_a_metadata_only_screen(lincs, tmp_path):
    cfg = write_profile_run(lincs, tmp_path, label="lincs_cp")
    ld = read_load_data(tmp_path / "load_data.parquet", channels=[])
    assert len(ld) == 384 and ld.channels == []
    assert set(ld.table["Metadata_Site"]) == {1}
    with pytest.raises(ImageReadError, match="no image channels"):
        ld.read_site(0)
    with pytest.raises(ValueError, match="no FileName_Orig"):
        read_load_data(tmp_path / "load_data.parquet")  # only an explicit [] means "no images"
    ex = get_extractor("precomputed", path=str(tmp_path / "profiles.parquet"), keys="well")
    ex.fit(ld)
    assert ex.coverage["default"] == {"sites": 384, "matched": 384, "unused_embeddings": 0}
    from baselens.extract.registry import SiteBatch

    got = ex(SiteBatch(None, [], ld.metadata.iloc[::-1].reset_index(drop=True)))["default"]
    raw = pd.read_csv(lincs).iloc[::-1]
    np.testing.assert_allclose(got.to_numpy(), raw[list(got.columns)].to_numpy())
    assert "channels = []" in cfg.read_text()


def test_a_run_scores_a_profile_table_alone(lincs, tmp_path):
    """No images: the profiles next to random, end to end. LINCS is a CellProfiler profile,
    so it is scored once, as the classic baseline (issue 14), not also as "lincs_cp"."""
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    cfg = write_profile_run(lincs, tmp_path / "in", label="lincs_cp", baselines=("random",))
    rc = RunConfig.from_toml(cfg)
    rc.tasks = {name: {"enabled": False} for name in
                ("moa_retrieval", "relationship_recall", "knn_probe")}
    rc.tasks["replicate_retrieval"] = {"null_size": 500}
    rc.execution = {"executor": "serial"}
    res = run_pipeline(rc, tmp_path / "out", progress=False)
    s = res.scores
    s = s[(s["task"] == "replicate_retrieval") & (s["metric"] == "mean_average_precision")
          & (s["batch_level"] == "NR")]
    m = s.groupby("method")["value"].mean()
    assert set(m.index) == {"classic", "random"}
    assert m["classic"] > m["random"] + 0.2  # real profiles retrieve their replicates
    assert (tmp_path / "out" / "report.html").exists()


def test_jump_style_parquet_profiles_joined_to_jump_metadata(realdata, tmp_path):
    from baselens.data.jump import annotate_jump

    jump = realdata / "metadata" / "jump"
    if not (jump / "plate.csv.gz").exists():
        pytest.skip("JUMP metadata not in BASELENS_TEST_DATA")
    rng = np.random.default_rng(0)
    wells = ["A01", "A02", "A03", "A04", "B01", "B02"]
    prof = pd.DataFrame({"Metadata_Source": "source_4", "Metadata_Plate": "BR00126114",
                         "Metadata_Well": wells})
    for j in range(5):
        prof[f"X_{j + 1}"] = rng.normal(size=len(wells))
    prof.to_parquet(tmp_path / "profiles.parquet")
    with pytest.raises(ValueError, match="annotate_jump"):
        read_profiles(tmp_path / "profiles.parquet")
    bare = read_profiles(tmp_path / "profiles.parquet", require_perturbation=False)
    assert bare.features == [f"X_{j}" for j in range(1, 6)]
    well = pd.DataFrame({"Metadata_Source": "source_4", "Metadata_Plate": "BR00126114",
                         "Metadata_Well": wells,
                         "Metadata_JCP2022": ["JCP2022_033924"] * 3 + ["JCP2022_000007"] * 2
                         + ["JCP2022_037716"]})
    ann = annotate_jump(bare.table, jump, well=well).table
    pt = read_profiles(ann)
    assert pt.report["negcon"] == 3 and pt.features == bare.features
    assert dict(zip(pt.table["Metadata_Well"], pt.table["Metadata_ControlType"]))["B02"] == "poscon"


def test_feature_report_and_errors(tmp_path):
    df = pd.DataFrame({"Metadata_Plate": ["p1"] * 3 + ["p2"] * 3,
                       "Metadata_Well": ["A01", "A02", "A03"] * 2,
                       "Metadata_Perturbation": ["DMSO", "DMSO", "x"] * 2,
                       "f_nan": [1.0, np.nan, 2, 3, 4, 5],
                       "f_const": [1.0] * 6,
                       "f_plate_const": [1.0, 1, 1, 2, 3, 4],
                       "f_ok": [0.1, 0.5, 0.2, 0.3, 0.9, 0.4]})
    r = feature_report(df, ["f_nan", "f_const", "f_plate_const", "f_ok"])
    assert (r["nonfinite_any"], r["rows_with_nonfinite"], r["constant"], r["constant_in_some_plate"]) == (1, 1, 1, 1)
    pt = read_profiles(df)
    assert pt.report["negcon"] == 4 and pt.features == ["f_nan", "f_const", "f_plate_const", "f_ok"]
    with pytest.raises(ValueError, match=r"2 rows share a \('Plate', 'Well'\)"):
        read_profiles(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) without a Metadata_ prefix.*'label'"):
        read_profiles(df.assign(label="a"))
    with pytest.raises(ValueError, match="no perturbation column"):
        read_profiles(df.drop(columns="Metadata_Perturbation"))
    with pytest.raises(ValueError, match="no negative controls found"):
        read_profiles(df.assign(Metadata_Perturbation="x"))
    # pycytominer-style Image_Metadata_ keys and a site column are recognized
    alias = df.rename(columns={"Metadata_Plate": "Image_Metadata_Plate", "Metadata_Well": "Image_Metadata_Well"})
    assert read_profiles(alias).keys == ["Metadata_Plate", "Metadata_Well"]
