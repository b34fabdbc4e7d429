"""Bring-your-own embeddings: formats, key joins, clear errors with counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.data.embeddings import EmbeddingJoinError, read_embeddings
from baselens.extract import SiteBatch, get_extractor
from baselens.extract.registry import get_spec


def _meta():
    return pd.DataFrame({
        "Metadata_Plate": ["P1", "P1", "P1", "P2"],
        "Metadata_Well": ["A01", "A01", "B02", "A01"],
        "Metadata_Site": [1, 2, 1, 1],
        "Metadata_Perturbation": ["DMSO", "DMSO", "g1", "DMSO"],
    })


def _emb(meta, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(meta), d))


def _batch(meta):
    return SiteBatch(None, [], meta.reset_index(drop=True))


def test_parquet_wide_shuffled_and_bare_key_names(tmp_path):
    meta, x = _meta(), _emb(_meta())
    df = pd.DataFrame({"plate": meta.Metadata_Plate, "Well": meta.Metadata_Well,
                       "site": meta.Metadata_Site.astype(float)})  # 1.0 == 1
    for j in range(3):
        df[f"f{j}"] = x[:, j]
    df = df.iloc[[3, 1, 0, 2]]
    df.to_parquet(tmp_path / "e.parquet")
    ex = get_extractor("precomputed", path=str(tmp_path / "e.parquet"))
    assert get_spec("precomputed").kind == "model" and ex.needs_images is False
    out = ex(_batch(meta))["default"]
    assert list(out.columns) == ["f0", "f1", "f2"]
    np.testing.assert_allclose(out.to_numpy(), x)


def test_list_column_csv_npy_and_feature_prefix(tmp_path):
    meta, x = _meta(), _emb(_meta(), 4)
    keys = meta[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]]
    keys.assign(embedding=list(x)).to_parquet(tmp_path / "l.parquet")
    got = read_embeddings(tmp_path / "l.parquet", list_column="embedding").lookup(meta)
    np.testing.assert_allclose(got, x)
    wide = keys.assign(**{f"emb_{j}": x[:, j] for j in range(4)}, other=1.0)
    wide.to_csv(tmp_path / "w.csv", index=False)
    t = read_embeddings(tmp_path / "w.csv", features="emb_")
    assert t.features == [f"emb_{j}" for j in range(4)]
    np.save(tmp_path / "e.npy", x)
    keys.to_csv(tmp_path / "idx.csv", index=False)
    ex = get_extractor("precomputed", path=str(tmp_path / "e.npy"), metadata=str(tmp_path / "idx.csv"),
                       layer="block12")
    np.testing.assert_allclose(ex(_batch(meta))["block12"].to_numpy(), x)


def test_h5ad_via_h5py(tmp_path):
    h5py = pytest.importorskip("h5py")
    meta, x = _meta(), _emb(_meta(), 5)
    p = tmp_path / "e.h5ad"
    with h5py.File(p, "w") as f:  # AnnData on-disk layout (obs dataframe + X + obsm)
        f.create_dataset("X", data=x.astype(np.float32))
        f.create_group("obsm").create_dataset("X_pca", data=x[:, :2])
        obs = f.create_group("obs")
        obs.attrs["encoding-type"] = "dataframe"
        obs.attrs["_index"] = "_index"
        obs.attrs["column-order"] = ["plate", "well", "site"]
        obs.create_dataset("_index", data=np.array([f"c{i}" for i in range(4)], dtype="S"))
        cat = obs.create_group("plate")
        cat.create_dataset("categories", data=np.array(["P1", "P2"], dtype="S"))
        cat.create_dataset("codes", data=np.array([0, 0, 0, 1], dtype=np.int8))
        obs.create_dataset("well", data=meta.Metadata_Well.to_numpy().astype("S"))
        obs.create_dataset("site", data=meta.Metadata_Site.to_numpy())
    t = read_embeddings(p)
    np.testing.assert_allclose(t.lookup(meta), x.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(read_embeddings(p, obsm="X_pca").lookup(meta), x[:, :2])


def test_perturbation_and_well_keys(tmp_path):
    meta = _meta()
    per = pd.DataFrame({"Metadata_Perturbation": ["DMSO", "g1"], "a": [1.0, 2.0], "b": [0.0, 5.0]})
    per.to_parquet(tmp_path / "p.parquet")
    out = get_extractor("precomputed", path=str(tmp_path / "p.parquet"), keys="perturbation")(_batch(meta))
    assert out["default"]["a"].tolist() == [1.0, 1.0, 2.0, 1.0]
    wells = pd.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"], "Metadata_Well": ["A01", "B02", "A01"],
                          "z": [1.0, 2.0, 3.0]})
    wells.to_csv(tmp_path / "w.csv", index=False)
    t = read_embeddings(tmp_path / "w.csv", keys="well")
    assert t.lookup(meta)[:, 0].tolist() == [1.0, 1.0, 2.0, 3.0]


def test_errors_name_counts(tmp_path):
    meta, x = _meta(), _emb(_meta())
    keys = meta[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]]
    dup = pd.concat([keys, keys.iloc[:2]]).assign(f=1.0)
    dup.to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(EmbeddingJoinError, match=r"2 key value\(s\) appear more than once \(4 rows\)"):
        read_embeddings(tmp_path / "dup.parquet")
    keys.iloc[:3].assign(f=1.0, g=2.0).to_parquet(tmp_path / "part.parquet")
    t = read_embeddings(tmp_path / "part.parquet")
    with pytest.raises(EmbeddingJoinError, match=r"1 of 4 site\(s\) have no embedding.*Plate=P2/Well=A01/Site=1"):
        t.lookup(meta)
    assert np.isnan(t.lookup(meta, on_missing="nan")[3]).all()
    keys.assign(f=[1.0, np.nan, 1.0, 1.0]).to_parquet(tmp_path / "nan.parquet")
    with pytest.raises(EmbeddingJoinError, match=r"1 row\(s\) have non-finite"):
        read_embeddings(tmp_path / "nan.parquet")
    keys.drop(columns="Metadata_Site").assign(f=1.0).to_parquet(tmp_path / "nokey.parquet")
    with pytest.raises(EmbeddingJoinError, match="no column for key 'Metadata_Site'.*column_map"):
        read_embeddings(tmp_path / "nokey.parquet")
    np.save(tmp_path / "e.npy", x)
    keys.iloc[:2].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(EmbeddingJoinError, match="4 rows but metadata"):
        read_embeddings(tmp_path / "e.npy", metadata=tmp_path / "short.csv")


def test_fit_checks_whole_screen_and_counts_unused(tmp_path):
    meta = _meta()
    keys = meta[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]]
    extra = pd.DataFrame({"Metadata_Plate": ["P9"], "Metadata_Well": ["H12"], "Metadata_Site": [1]})
    pd.concat([keys, extra]).assign(f=1.0).to_parquet(tmp_path / "e.parquet")
    ex = get_extractor("precomputed", layers={"a": str(tmp_path / "e.parquet"), "b": str(tmp_path / "e.parquet")})
    msgs = []
    ex.fit(meta, progress=msgs.append)
    assert ex.coverage["a"] == {"sites": 4, "matched": 4, "unused_embeddings": 1}
    assert "4/4 sites matched, 1 embedding row(s) not in the screen" in msgs[0]
    assert set(ex(_batch(meta))) == {"a", "b"}
    with pytest.raises(ValueError, match="exactly one"):
        get_extractor("precomputed")
