"""RxRx3-core: metadata in its real format, 6-channel jp2 sites, the shipped OpenPhenom file.

The real data set is not in the test data: the fixtures are written in the published
format (the schema and example rows of recursionpharma/rxrx-datasets rxrx3-core/README.md;
``well_id`` + ``feature_0``…``feature_383`` embeddings).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.data.embeddings import EmbeddingJoinError, read_embeddings
from baselens.data.load_data import read_load_data
from baselens.data.rxrx3 import (
    OPENPHENOM_PARAMS,
    RXRX3_CHANNELS,
    read_rxrx3_embeddings,
    read_rxrx3_metadata,
    rxrx3_load_data,
)
from baselens.extract import get_extractor

# the README's example rows, verbatim, plus rows that give replicates and controls
README_ROWS = """\
well_id,experiment_name,plate,address,gene,treatment,SMILES,concentration,perturbation_type,cell_type
gene-079_8_H29,gene-079,8,H29,RPLP2,RPLP2_guide_4,,,CRISPR,HUVEC
gene-045_4_AD27,gene-045,4,AD27,RXRX3-43938,RXRX3-43938_guide_6,,,CRISPR,HUVEC
gene-060_9_P28,gene-060,9,P28,EMPTY_control,EMPTY_control,,,CRISPR,HUVEC
compound-001_19_D20,compound-001,19,D20,,Dequalinium,"CC1=[N+](CCCCCCCCCC[N+]2=C(C)C=C(N)C3=CC=CC=C23)C2=CC=CC=C2C(N)=C1 |c:1,13,21,29,31,35,t:16,19,23,27|",0.25,COMPOUND,HUVEC
compound-001_11_U08,compound-001,11,U08,,EMPTY_control,,,COMPOUND,HUVEC
compound-004_43_B08,compound-004,43,B08,,CRISPR_control,,,COMPOUND,HUVEC
gene-079_8_H30,gene-079,8,H30,RPLP2,RPLP2_guide_1,,,CRISPR,HUVEC
gene-079_8_A01,gene-079,8,A01,EMPTY_control,EMPTY_control,,,CRISPR,HUVEC
compound-001_19_D21,compound-001,19,D21,,Dequalinium,CC,2.5,COMPOUND,HUVEC
"""


@pytest.fixture
def meta_csv(tmp_path):
    p = tmp_path / "metadata_rxrx3_core.csv"
    p.write_text(README_ROWS)
    return p


def test_metadata_to_load_data_conventions(meta_csv):
    t = read_rxrx3_metadata(meta_csv)
    df = t.table.set_index("Metadata_WellId")
    assert t.report["crispr_control_dropped"] == 1 and "compound-004_43_B08" not in df.index
    assert t.report["negcon"] == 3 and t.report["anonymized_genes"] == 1
    row = df.loc["gene-079_8_H29"]
    assert (row["Metadata_Plate"], row["Metadata_Well"], row["Metadata_Batch"], row["Metadata_Site"]) == (
        "gene-079_Plate8", "H29", "gene-079", 1)
    # guides of a gene pool into the gene (Recursion: treatment.split("_")[0])
    assert df.loc[["gene-079_8_H29", "gene-079_8_H30"], "Metadata_Perturbation"].tolist() == ["RPLP2"] * 2
    assert df.loc["gene-079_8_H29", "Metadata_PerturbationType"] == "crispr"
    # a compound is a (name, dose); EMPTY_control on both kinds of plate is the negative control
    assert df.loc["compound-001_19_D20", "Metadata_Perturbation"] == "Dequalinium@0.25"
    assert df.loc["compound-001_19_D21", "Metadata_Perturbation"] == "Dequalinium@2.5"
    neg = df[df["Metadata_ControlType"] == "negcon"]
    assert sorted(neg.index) == ["compound-001_11_U08", "gene-060_9_P28", "gene-079_8_A01"]
    assert set(neg["Metadata_Perturbation"]) == {"EMPTY_control"}
    assert df.loc["gene-045_4_AD27", "Metadata_Well"] == "AD27"  # 1536-well rows AA..AF
    kept = read_rxrx3_metadata(meta_csv, keep_crispr_control=True, dose_in_perturbation=False)
    k = kept.table.set_index("Metadata_WellId")
    assert k.loc["compound-004_43_B08", ["Metadata_Perturbation", "Metadata_ControlType"]].tolist() == [
        "CRISPR_control", ""]
    assert k.loc["compound-001_19_D21", "Metadata_Perturbation"] == "Dequalinium"


def test_six_channel_jp2_sites(meta_csv, tmp_path):
    from PIL import Image, features

    if not features.check("jpg_2000"):
        pytest.skip("Pillow built without OpenJPEG (JPEG 2000)")
    t = rxrx3_load_data(meta_csv, image_root=tmp_path / "images")
    rng = np.random.default_rng(0)
    row = t.table[t.table["Metadata_WellId"] == "gene-079_8_H29"].iloc[0]
    planes = []
    for k, ch in enumerate(RXRX3_CHANNELS, start=1):
        assert row[f"FileName_Orig{ch}"] == f"H29_s1_{k}.jp2"
        d = tmp_path / "images" / "gene-079" / "Plate8"
        d.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        Image.fromarray(img).save(d / f"H29_s1_{k}.jp2", irreversible=False)  # lossless
        planes.append(img)
    t.table.to_parquet(tmp_path / "ld.parquet")
    ld = read_load_data(tmp_path / "ld.parquet")
    assert ld.channels == list(RXRX3_CHANNELS)
    i = int(np.flatnonzero(ld.table["Metadata_WellId"] == "gene-079_8_H29")[0])
    np.testing.assert_array_equal(ld.read_site(i), np.stack(planes).astype(np.float32))


def test_shipped_openphenom_embeddings(meta_csv, tmp_path):
    t = read_rxrx3_metadata(meta_csv).table
    rng = np.random.default_rng(1)
    x = rng.normal(size=(len(t), 384))
    emb = pd.DataFrame(x, columns=[f"feature_{j}" for j in range(384)])
    emb.insert(0, "well_id", t["Metadata_WellId"].to_numpy())
    extra = emb.iloc[[0]].copy()  # a well_id listed twice, as the notebook's groupby suggests
    extra.iloc[0, 1:] = x[0] + 2.0
    shuffled = pd.concat([emb, extra]).sample(frac=1.0, random_state=0)
    path = tmp_path / "OpenPhenom_rxrx3_core_embeddings.parquet"
    shuffled.to_parquet(path)
    with pytest.raises(EmbeddingJoinError, match="appear more than once"):
        read_embeddings(path, **OPENPHENOM_PARAMS)
    et = read_rxrx3_embeddings(path)
    assert et.n_averaged == 1 and et.dim == 384
    want = x.copy()
    want[0] += 1.0  # mean of the two rows of the repeated well
    np.testing.assert_allclose(et.lookup(t), want)
    emb.to_parquet(path)  # the precomputed extractor reads the file with the documented params
    ex = get_extractor("precomputed", path=str(path), **OPENPHENOM_PARAMS)
    ex.fit(t)
    assert ex.coverage["default"] == {"sites": len(t), "matched": len(t), "unused_embeddings": 0}


def test_run_inputs_for_embeddings_only(meta_csv, tmp_path):
    from baselens.run.inspect import build_run_inputs, inspect_path
    from baselens.run.config import RunConfig

    t = read_rxrx3_metadata(meta_csv).table
    emb = pd.DataFrame(np.ones((len(t), 4)), columns=[f"feature_{j}" for j in range(4)])
    emb.insert(0, "well_id", t["Metadata_WellId"].to_numpy())
    emb.to_parquet(tmp_path / "emb.parquet")
    cfg, summary = build_run_inputs(meta_csv, tmp_path / "run", embeddings=tmp_path / "emb.parquet")
    assert "1 CRISPR_control wells left out" in summary
    rc = RunConfig.from_toml(cfg)
    assert rc.data["channels"] == []
    assert [m["name"] for m in rc.methods] == ["precomputed", "plate_layout", "random"]
    assert rc.methods[0]["params"]["keys"] == ["Metadata_WellId"]
    ld = read_load_data(rc.resolve(rc.data["load_data"]), channels=[])
    assert len(ld) == 8 and ld.channels == []
    rep = inspect_path(meta_csv)
    assert rep.kind == "rxrx3_metadata" and rep.info["negcon_wells"] == 3
    assert inspect_path(tmp_path / "emb.parquet").info["keys"] == ["Metadata_WellId"]
