"""Baselines without images: cell_count and classic from a profile table's columns, the
(cell_count, random) pair, embeddings joined with a CellProfiler table, and what inspect
says about counts (issue 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.data.profiles import (
    NO_COUNT_COST,
    classic_columns,
    find_count_column,
    read_profiles,
    write_profile_run,
)
from baselens.extract.cell_count import COUNT_FEATURE_NAMES, count_features

LINCS = "profiles/lincs_SQ00015054_normalized_feature_select.csv.gz"


def pycytominer_table(seed: int = 0, n_plates: int = 2) -> pd.DataFrame:
    """A pycytominer-style well table: 2 plates x 40 wells, 8 compounds x 4 wells + DMSO.

    Compounds c0-c3 are toxic (half the cells); every CellProfiler feature carries a
    compound signature plus noise; ``Cells_Number_Object_Number`` is the raw count."""
    rng = np.random.default_rng(seed)
    rows = []
    sig = rng.normal(size=(8, 6))
    for p in range(n_plates):
        wells = [f"{r}{c:02d}" for r in "ABCDE" for c in range(1, 9)]
        perts = ["DMSO"] * 8 + [f"c{k}" for k in range(8) for _ in range(4)]
        rng.shuffle(perts)
        for w, pert in zip(wells, perts):
            k = -1 if pert == "DMSO" else int(pert[1:])
            count = rng.poisson(60 if 0 <= k < 4 else 200)
            f = (sig[k] if k >= 0 else np.zeros(6)) + 0.3 * rng.normal(size=6)
            rows.append({"Metadata_Plate": f"P{p}", "Metadata_Well": w,
                         "Metadata_broad_sample": pert, "Cells_Number_Object_Number": float(count),
                         **{f"{cmp}_Feature_{j}": f[j] for j, cmp in
                            enumerate(["Cells", "Cells", "Nuclei", "Nuclei", "Cytoplasm", "Cytoplasm"])}})
    return pd.DataFrame(rows)


def test_count_column_becomes_metadata_cellcount_and_classic_is_detected():
    df = pycytominer_table()
    pt = read_profiles(df)
    assert pt.report["count_column"] == "Cells_Number_Object_Number"
    np.testing.assert_array_equal(pt.table["Metadata_CellCount"], df["Cells_Number_Object_Number"])
    # the object-number feature stays a feature; every feature is a CellProfiler feature
    assert "Cells_Number_Object_Number" in pt.features
    assert pt.report["classic_features"] == len(pt.features) == 7
    # preference order: an explicit well count first, image-level counts kept out of features
    df2 = df.assign(Image_Count_Cells=df["Cells_Number_Object_Number"] * 2)
    pt2 = read_profiles(df2)
    assert pt2.report["count_column"] == "Image_Count_Cells"
    assert "Image_Count_Cells" not in pt2.features
    np.testing.assert_array_equal(pt2.table["Metadata_CellCount"], df2["Image_Count_Cells"])
    assert find_count_column(["X_1", "Nuclei_Number_Object_Number"]) == "Nuclei_Number_Object_Number"
    assert find_count_column(["X_1"]) is None
    assert classic_columns(["Cells_a", "X_1", "Cytoplasm_b", "Image_c"]) == ["Cells_a", "Cytoplasm_b"]


def test_table_count_features_equal_the_image_route_transforms():
    from baselens.extract.profile_table import table_count_features

    n = np.array([0.0, 12.0, 150.0, 333.0])
    got = table_count_features(n)
    assert list(got.columns) == ["Count_Cells", *COUNT_FEATURE_NAMES]
    np.testing.assert_array_equal(got["Count_Cells"], n)
    np.testing.assert_allclose(got[list(COUNT_FEATURE_NAMES)].to_numpy(), count_features(n).to_numpy())
    # normalized (negative) values: only the polynomial family, by hand
    z = np.array([-1.5, 0.0, 2.0])
    gz = table_count_features(z)
    assert list(gz.columns) == ["count_z", "count_z2", "count_z3"]
    np.testing.assert_allclose(gz.to_numpy(), [[-1.5, 2.25, -3.375], [0, 0, 0], [2, 4, 8]])


def test_profile_table_extractor_joins_wells_and_reads_no_pixels(tmp_path):
    from baselens.extract import get_extractor
    from baselens.extract.registry import SiteBatch, get_spec

    df = pycytominer_table()
    df.to_csv(tmp_path / "prof.csv", index=False)
    assert get_spec("profile_table").kind == "baseline"
    cc = get_extractor("profile_table", path=str(tmp_path / "prof.csv"), derive="cell_count")
    cl = get_extractor("profile_table", path=str(tmp_path / "prof.csv"), derive="classic")
    assert cc.needs_images is False and cl.needs_images is False
    meta = df[["Metadata_Plate", "Metadata_Well"]].iloc[::-1].reset_index(drop=True)
    meta["Metadata_Site"] = 1
    got = cc(SiteBatch(None, [], meta))["default"]
    np.testing.assert_array_equal(got["Count_Cells"], df["Cells_Number_Object_Number"].to_numpy()[::-1])
    got = cl(SiteBatch(None, [], meta))["default"]
    assert list(got.columns) == [c for c in df.columns if c.startswith(("Cells_", "Nuclei_", "Cytoplasm_"))]
    with pytest.raises(ValueError, match="no count column"):
        get_extractor("profile_table", path=str(tmp_path / "prof.csv"), derive="cell_count",
                      count_column="Metadata_Nope")
    with pytest.raises(ValueError, match="derive must be"):
        get_extractor("profile_table", path=str(tmp_path / "prof.csv"), derive="counts")


def test_cellprofiler_table_is_the_classic_baseline_not_duplicated(tmp_path):
    cfg = write_profile_run(pycytominer_table(), tmp_path, label="my_cp", baselines=("plate_layout",))
    text = cfg.read_text()
    from baselens.run.config import RunConfig

    rc = RunConfig.from_toml(cfg)
    labels = [m.get("label", m["name"]) for m in rc.methods]
    # the CellProfiler profile is scored once, as classic; count and its random partner added
    assert labels == ["classic", "cell_count", "plate_layout", "random"]
    assert "my_cp" not in labels and "it is the classic baseline" in text
    ld = pd.read_parquet(tmp_path / "load_data.parquet")
    assert "Metadata_CellCount" in ld.columns


def test_embeddings_joined_with_a_cellprofiler_table(tmp_path):
    """A foundation model's embeddings next to classic and cell_count from the CP table."""
    df = pycytominer_table()
    rng = np.random.default_rng(1)
    emb = df[["Metadata_Plate", "Metadata_Well"]].copy()
    for j in range(4):
        emb[f"emb_{j}"] = rng.normal(size=len(emb))
    emb.to_parquet(tmp_path / "dino.parquet")
    cfg = write_profile_run(df, tmp_path / "run", embeddings=tmp_path / "dino.parquet")
    from baselens.run.config import RunConfig

    rc = RunConfig.from_toml(cfg)
    labels = [m.get("label", m["name"]) for m in rc.methods]
    assert labels == ["dino", "classic", "cell_count", "plate_layout", "random"]
    with pytest.raises(FileNotFoundError, match="--embeddings"):
        write_profile_run(df, tmp_path / "run2", embeddings=tmp_path / "nope.parquet")


def test_pycytominer_table_gives_cell_count_scores_and_an_assay_confound_table(tmp_path):
    """Must show (issue 14): Cells_Number_Object_Number → a cell_count method in
    scores.parquet (kind baseline, next to random) and diagnostics/assay_confounds.parquet
    flagging the assay whose actives are the toxic compounds."""
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    df = pycytominer_table()
    (tmp_path / "in").mkdir()
    labels = pd.DataFrame({"Metadata_Perturbation": [f"c{k}" for k in range(8)] * 2,
                           "assay": ["toxicity"] * 8 + ["other"] * 8,
                           "active": [1, 1, 1, 1, 0, 0, 0, 0] + [1, 0, 1, 0, 1, 0, 1, 0]})
    labels.to_csv(tmp_path / "in" / "bio.csv", index=False)
    cfg = write_profile_run(df, tmp_path / "in", baselines=())
    rc = RunConfig.from_toml(cfg)
    rc.data["bioactivity"] = "bio.csv"
    rc.tasks = {name: {"enabled": False} for name in
                ("moa_retrieval", "relationship_recall", "knn_probe", "bioactivity",
                 "regression_probe", "batch_mixing")}
    rc.tasks["replicate_retrieval"] = {"null_size": 200, "batch_level": ["NR"]}
    rc.execution = {"executor": "serial"}
    res = run_pipeline(rc, tmp_path / "out", progress=False)
    s = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    kinds = s.groupby("method")["method_kind"].first()
    assert set(kinds.index) == {"classic", "cell_count", "random"}
    assert kinds["cell_count"] == "baseline" and kinds["classic"] == "baseline"
    m = s[(s["metric"] == "mean_average_precision")].groupby("method")["value"].mean()
    assert m["classic"] > m["random"]
    a = pd.read_parquet(tmp_path / "out" / "diagnostics" / "assay_confounds.parquet")
    assert set(a["assay"]) == {"toxicity", "other"}
    flags = a.set_index("assay")["predictable_by_cell_count"]
    assert bool(flags["toxicity"]) and not bool(flags["other"])
    # the count also drives the residualization diagnostic (Metadata_CellCount)
    r = pd.read_parquet(tmp_path / "out" / "diagnostics" / "residualized.parquet")
    assert {"none", "cell_count"} <= set(r.loc[r["method"] == "classic", "confound"])
    assert res is not None


@pytest.fixture(scope="module")
def lincs(realdata):
    p = realdata / LINCS
    if not p.exists():
        pytest.skip(f"{p} not in BASELENS_TEST_DATA")
    return p


def test_lincs_plate_runs_end_to_end_and_inspect_reports_its_counts(lincs, tmp_path):
    """Must show (issue 14): the LINCS plate has no count column (normalized, feature
    selected): inspect says so and what it costs; the run goes end to end with the table
    as the classic baseline next to plate_layout and random."""
    from baselens.run.inspect import inspect_path
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    rep = inspect_path(lincs)
    text = rep.text()
    assert "no count column" in text and NO_COUNT_COST in text
    assert rep.info["count_column"] is None
    assert "classic" in text
    cfg = write_profile_run(lincs, tmp_path / "in", label="lincs")
    rc = RunConfig.from_toml(cfg)
    labels = [m.get("label", m["name"]) for m in rc.methods]
    assert labels == ["classic", "plate_layout", "random"]  # no count: no cell_count
    rc.tasks = {name: {"enabled": False} for name in
                ("moa_retrieval", "relationship_recall", "knn_probe", "regression_probe",
                 "batch_mixing")}
    rc.tasks["replicate_retrieval"] = {"null_size": 200, "batch_level": ["NR"]}
    rc.execution = {"executor": "serial"}
    run_pipeline(rc, tmp_path / "out", progress=False)
    s = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert set(s["method"]) == {"classic", "plate_layout", "random"}
    m = s[s["metric"] == "mean_average_precision"].groupby("method")["value"].mean()
    assert m["classic"] > m["random"] + 0.2


def test_inspect_names_the_count_column_used(tmp_path):
    from baselens.run.inspect import inspect_path

    pycytominer_table().to_csv(tmp_path / "prof.csv", index=False)
    rep = inspect_path(tmp_path / "prof.csv")
    assert rep.info["count_column"] == "Cells_Number_Object_Number"
    assert "from Cells_Number_Object_Number, copied to Metadata_CellCount" in rep.text()


def test_count_column_of_an_embeddings_file_feeds_cell_count_not_the_embedding(tmp_path):
    """A CP table without counts + embeddings carrying Image_Count_Cells: the count is kept
    out of the model's features and becomes the cell_count baseline and Metadata_CellCount."""
    from baselens.run.inspect import inspect_path
    from baselens.extract import get_extractor
    from baselens.extract.registry import SiteBatch
    from baselens.run.config import RunConfig

    df = pycytominer_table()
    cp = df.drop(columns=["Cells_Number_Object_Number"])
    rng = np.random.default_rng(2)
    emb = df[["Metadata_Plate", "Metadata_Well"]].copy()
    for j in range(3):
        emb[f"emb_{j}"] = rng.normal(size=len(emb))
    emb["Image_Count_Cells"] = df["Cells_Number_Object_Number"]
    emb.to_parquet(tmp_path / "model.parquet")
    rep = inspect_path(tmp_path / "model.parquet")
    assert rep.info["count_column"] == "Image_Count_Cells"
    assert "not an embedding dimension" in rep.text()
    cfg = write_profile_run(cp, tmp_path / "run", embeddings=tmp_path / "model.parquet")
    rc = RunConfig.from_toml(cfg)
    by = {m.get("label", m["name"]): m for m in rc.methods}
    assert list(by) == ["model", "classic", "cell_count", "plate_layout", "random"]
    assert by["model"]["params"]["features"] == ["emb_0", "emb_1", "emb_2"]
    ld = pd.read_parquet(tmp_path / "run" / "load_data.parquet")
    np.testing.assert_array_equal(ld["Metadata_CellCount"], df["Cells_Number_Object_Number"])
    ex = get_extractor("profile_table", **by["cell_count"]["params"])
    got = ex(SiteBatch(None, [], ld[["Metadata_Plate", "Metadata_Well"]]))["default"]
    np.testing.assert_array_equal(got["Count_Cells"], df["Cells_Number_Object_Number"])


def test_the_count_column_drives_the_cell_count_feature_filter():
    """Metadata_CellCount from the table is what the |r| > 0.95 filter (Seal et al. 2026)
    reads: the object-number feature (r = 1 with it) is dropped, the others stay."""
    from baselens.profile.feature_select import feature_select
    from baselens.profile.log import FilterLog

    pt = read_profiles(pycytominer_table())
    log = FilterLog()
    out = feature_select(pt.table, features=pt.features, operations=["cell_count"], log=log)
    kept = [f for f in pt.features if f in out.columns]
    assert "Cells_Number_Object_Number" not in kept
    assert len(kept) == len(pt.features) - 1


def test_wells_without_a_count_are_dropped_with_a_count_not_silently(tmp_path):
    from baselens.extract import get_extractor
    from baselens.extract.registry import SiteBatch

    df = pycytominer_table()
    df.loc[[3, 7], "Cells_Number_Object_Number"] = np.nan
    df.to_csv(tmp_path / "prof.csv", index=False)
    with pytest.raises(ValueError, match=r"2 row\(s\) have no finite .*on_missing"):
        get_extractor("profile_table", path=str(tmp_path / "prof.csv"))
    assert read_profiles(df).report["count_missing"] == 2
    cfg = write_profile_run(df, tmp_path / "run")
    assert 'on_missing = "nan"' in cfg.read_text()
    ex = get_extractor("profile_table", path=str(tmp_path / "prof.csv"), on_missing="nan")
    got = ex(SiteBatch(None, [], df[["Metadata_Plate", "Metadata_Well"]]))["default"]
    assert got.iloc[[3, 7]].isna().all(axis=None) and got.drop(index=[3, 7]).notna().all(axis=None)


def test_cli_load_data_joins_embeddings_to_a_profile_table(tmp_path, capsys):
    from baselens.run.cli import main

    df = pycytominer_table()
    df.to_csv(tmp_path / "cp.csv", index=False)
    emb = df[["Metadata_Plate", "Metadata_Well"]].assign(e0=1.0, e1=np.arange(len(df), dtype=float))
    emb.to_parquet(tmp_path / "fm.parquet")
    assert main(["load-data", str(tmp_path / "cp.csv"), "--embeddings", str(tmp_path / "fm.parquet"),
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "cell count: from Cells_Number_Object_Number" in out
    text = (tmp_path / "run" / "run.toml").read_text()
    assert 'label = "fm"' in text and 'label = "classic"' in text and 'label = "cell_count"' in text
