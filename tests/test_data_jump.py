"""JUMP metadata joins on the real cpg0016 tables and the JUMP-Target-1 platemaps."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from baselens.data.jump import (
    EMPTY_JCP,
    JumpJoinError,
    annotate_jump,
    annotate_target_platemap,
    perturbation_table,
    read_jump_metadata,
)

DMSO = "JCP2022_033924"


@pytest.fixture(scope="module")
def jump_dir(realdata):
    d = realdata / "metadata" / "jump"
    if not (d / "plate.csv.gz").exists():
        pytest.skip(f"{d} not in BASELENS_TEST_DATA")
    return d


@pytest.fixture(scope="module")
def meta(jump_dir):
    return read_jump_metadata(jump_dir)


def test_reads_the_real_tables(meta, jump_dir):
    assert set(meta.available()) >= {"plate", "orf", "crispr", "compound_source", "controls",
                                     "microscope"}
    assert meta.well is None  # not in the test data: joins need well= (below)
    assert len(meta.plate) == 2525 and meta.plate["Metadata_Source"].nunique() == 13
    raw = pd.read_csv(jump_dir / "perturbation_control.csv")
    pt = perturbation_table(meta).set_index("Metadata_JCP2022")
    for jcp, kind in zip(raw["Metadata_JCP2022"], raw["Metadata_pert_type"]):
        want = kind if kind in ("negcon", "poscon") else ""
        assert pt.loc[jcp, "Metadata_ControlType"] == want, jcp
    assert (pt["Metadata_ControlType"] == "negcon").sum() == (raw["Metadata_pert_type"] == "negcon").sum()
    assert pt.loc[DMSO, ["Metadata_PerturbationType", "Metadata_Perturbation"]].tolist() == ["compound", DMSO]
    assert pt.loc["JCP2022_805264", ["Metadata_PerturbationType", "Metadata_Perturbation",
                                     "Metadata_ControlType"]].tolist() == ["crispr", "PLK1", "poscon"]
    assert pt.loc["JCP2022_915130", "Metadata_Perturbation"] == "LUCIFERASE"
    assert pt.loc[EMPTY_JCP, "Metadata_PerturbationType"] == "empty"
    jcp_named = perturbation_table(meta, perturbation="jcp").set_index("Metadata_JCP2022")
    assert jcp_named.loc["JCP2022_805264", "Metadata_Perturbation"] == "JCP2022_805264"


def _well_table():
    # a tiny well.csv.gz in the real layout for the real plate BR00126114 (source_4, TARGET2)
    return pd.DataFrame({"Metadata_Source": ["source_4"] * 4,
                         "Metadata_Plate": ["BR00126114"] * 4,
                         "Metadata_Well": ["A01", "A2", "A03", "A04"],
                         "Metadata_JCP2022": [DMSO, "JCP2022_000007", "JCP2022_805264", EMPTY_JCP]})


def test_annotate_the_real_load_data_with_illum_table(realdata, meta):
    ld = pd.read_parquet(realdata / "load_data" / "test_BR00126114_load_data_with_illum.parquet")
    ann = annotate_jump(ld, meta, well=_well_table())
    t = ann.table
    assert len(t) == len(ld) == 2 and set(t["Metadata_Well"]) == {"A01"}
    row = t.iloc[0]
    assert row["Metadata_Batch"] == "2021_08_23_Batch12" and row["Metadata_PlateType"] == "TARGET2"
    assert (row["Metadata_JCP2022"], row["Metadata_Perturbation"], row["Metadata_ControlType"],
            row["Metadata_PerturbationType"]) == (DMSO, DMSO, "negcon", "compound")
    assert ann.report["controls"] == {"negcon": 2}
    assert t.filter(like="FileName_Orig").shape[1] == 5  # image columns untouched


def test_profile_table_without_source_unmatched_rows_and_empty_wells(meta, tmp_path):
    prof = pd.DataFrame({"Metadata_Plate": ["BR00126114"] * 4 + ["NOPLATE"],
                         "Metadata_Well": ["A1", "A02", "A03", "A04", "A01"],
                         "X_1": [0.1, 0.2, 0.3, 0.4, 0.5]})
    with pytest.raises(JumpJoinError, match=r"1 of 5 row\(s\) have no plate.*NOPLATE"):
        annotate_jump(prof, meta, well=_well_table())
    ann = annotate_jump(prof, meta, well=_well_table(), on_unmatched="keep")
    r = ann.report
    assert r["plate"] == {"matched": 4, "unmatched": 1, "examples": ["NOPLATE"]}
    assert r["well"]["unmatched"] == 1 and r["empty_dropped"] == 1
    t = ann.table.set_index("Metadata_Well")
    assert len(ann.table) == 4  # the empty well is gone, the unmatched row kept and counted
    assert t.loc["A03", "Metadata_Perturbation"] == "PLK1" and t.loc["A03", "Metadata_ControlType"] == "poscon"
    assert t.loc["A02", "Metadata_PerturbationType"] == "compound"
    assert t.loc["A02", "Metadata_Source"] == "source_4"  # filled from plate.csv.gz
    assert "1 unmatched" in ann.summary()
    # the well table from a file, and a clear message when there is none
    path = tmp_path / "well.csv.gz"
    _well_table().to_csv(path, index=False)
    assert len(annotate_jump(prof.iloc[:4], meta, well=path).table) == 3
    d = tmp_path / "meta"
    d.mkdir()
    shutil.copy(meta.root / "plate.csv.gz", d)
    with pytest.raises(FileNotFoundError, match="well.csv.gz"):
        annotate_jump(prof, d)


def test_jump_target_platemap_layout(jump_dir, realdata):
    pm_path = jump_dir / "JUMP-Target-1_compound_platemap.tsv"
    md_path = jump_dir / "JUMP-Target-1_compound_metadata.tsv"
    pm = pd.read_csv(pm_path, sep="\t", keep_default_na=False)
    md = pd.read_csv(md_path, sep="\t", keep_default_na=False)
    sites = pd.DataFrame({"Metadata_Plate": "P", "Metadata_Well": pm["well_position"]})
    ann = annotate_target_platemap(sites, pm_path, md_path)
    t = ann.table.set_index("Metadata_Well")
    # known answers from the files themselves
    n_solvent = int((pm["broad_sample"] == "").sum())
    ctl = pm.merge(md, on="broad_sample", how="left")["control_type"].fillna("")
    n_poscon = int(ctl.str.startswith("poscon").sum())
    assert ann.report["controls"]["negcon"] == n_solvent == 64
    assert ann.report["controls"]["poscon"] == n_poscon
    assert ann.report["controls"]["treatment"] == 384 - n_solvent - n_poscon
    assert t.loc["A01", "Metadata_PerturbationName"] == "gabapentin-enacarbil"
    assert t.loc["A01", "Metadata_Perturbation"] == "BRD-A86665761-001-01-1"
    assert t.loc["A02", ["Metadata_Perturbation", "Metadata_ControlType"]].tolist() == ["DMSO", "negcon"]
    byname = annotate_target_platemap(sites, pm_path, md_path, perturbation="name").table
    assert (byname["Metadata_Perturbation"] == "dexamethasone").sum() >= 2  # two samples, one name
    # the real JUMP site (BR00117006 A01) and a CRISPR metadata file read the same way
    cp = pd.read_parquet(realdata / "images" / "jump_cpjump1_BR00117006_A01_s1" / "BR00117006_shrunken.parquet")
    site = cp[["Metadata_Plate", "Metadata_Well"]].drop_duplicates()
    one = annotate_target_platemap(site, pm_path, md_path).table
    assert one.loc[0, "Metadata_broad_sample"] == "BRD-A86665761-001-01-1"
    cr = pd.read_csv(jump_dir / "JUMP-Target-1_crispr_metadata.tsv", sep="\t", keep_default_na=False)
    layout = pd.DataFrame({"well_position": ["A01", "A02"], "broad_sample": cr["broad_sample"][:2]})
    g = annotate_target_platemap(pd.DataFrame({"Metadata_Well": ["A01", "A02"]}), layout,
                                 jump_dir / "JUMP-Target-1_crispr_metadata.tsv").table
    assert g["Metadata_Gene"].tolist() == cr["gene"][:2].tolist()
    with pytest.raises(JumpJoinError, match="no well"):
        annotate_target_platemap(pd.DataFrame({"Metadata_Well": ["Z99"]}), layout,
                                 jump_dir / "JUMP-Target-1_crispr_metadata.tsv")
