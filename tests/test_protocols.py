"""The published protocols as built-in configs (``protocols/*.toml``), their new pieces
(``${data_dir}`` substitution, ``--data-dir``, the ``where`` task key, JUMP plate folds,
``control_retrieval``) and one end-to-end run of each protocol on a tiny dataset written in
the layout ``baselens download`` produces.

Known answers are worked out by hand in the comments; ``control_retrieval`` is checked
against copairs (the test oracle for average precision).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.control_retrieval import control_retrieval
from baselens.evaluate.fold_plans import (
    JUMP_384_SOURCES,
    JUMP_POSITIVE_CONTROLS,
    jump_plate_folds,
    plate_key,
)
from baselens.run.config import ConfigError, RunConfig
from baselens.run.pipeline import run_pipeline
from baselens.run.tasks import select_rows

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = ROOT / "protocols"
NAMES = ("jump_cp_controls", "rxrx3_core", "morphohelm_moa")
PERT = "Metadata_Perturbation"
JUMP_CH = ["DNA", "ER", "RNA", "AGP", "Mito"]
RXRX_CH = ["DNA", "ER", "Actin", "RNA", "Mito", "WGA"]
P1, P2 = "JCP2022_037716", "JCP2022_046054"  # AMG900, FK-866


# ----------------------------------------------------------------------------- fold plans


def _plate_table(n_per_source=12, sources=("source_2", "source_3"), n_target2=2):
    rows = []
    for s in sources:
        for i in range(n_per_source):
            rows.append((s, f"{s}_P{i:02d}", "COMPOUND"))
        for i in range(n_target2):
            rows.append((s, f"{s}_T{i}", "TARGET2"))
    return pd.DataFrame(rows, columns=["Metadata_Source", "Metadata_Plate", "Metadata_PlateType"])


def test_plate_key_is_sha256_of_seed_and_plate():
    want = int(hashlib.sha256(b"3:BR00126114").hexdigest()[:16], 16)
    assert plate_key("BR00126114", seed=3) == want


def test_jump_plate_folds_known_plan():
    t = _plate_table()
    plan = jump_plate_folds(t, n_folds=5, plates_per_source=2, seed=0)
    # by hand: per source, compound plates ordered by their sha256 key; the first 10 kept,
    # rank r -> fold r % 5
    for s in ("source_2", "source_3"):
        names = [f"{s}_P{i:02d}" for i in range(12)]
        order = sorted(names, key=lambda p: (plate_key(p, 0), p))[:10]
        got = plan[plan.Metadata_Source == s].set_index("Metadata_Plate")["fold"]
        assert got.to_dict() == {p: r % 5 for r, p in enumerate(order)}
    assert (plan.groupby(["fold", "Metadata_Source"]).size() == 2).all()
    assert plan.attrs["dropped_plate_types"] == 4  # the TARGET2 plates
    assert plan.attrs["unused_plates"] == 4        # 12 - 10 per source
    assert plan.attrs["short_sources"] == {}


def test_jump_plate_folds_is_stable_under_subsetting():
    """A download of exactly the planned plates re-derives the same folds."""
    t = _plate_table(n_per_source=30)
    plan = jump_plate_folds(t, n_folds=5, plates_per_source=4, seed=7)
    again = jump_plate_folds(t[t.Metadata_Plate.isin(plan.Metadata_Plate)], n_folds=5,
                             plates_per_source=4, seed=7)
    pd.testing.assert_frame_equal(plan, again)
    # a partial download (first 2 planned plates of each source) spreads over folds 0 and 1
    part = plan[plan["rank"] < 2]
    sub = jump_plate_folds(t[t.Metadata_Plate.isin(part.Metadata_Plate)], n_folds=5,
                           plates_per_source=4, seed=7)
    assert sorted(sub.fold.unique()) == [0, 1]
    assert sub.attrs["short_sources"] == {"source_2": 2, "source_3": 2}
    # another seed gives another selection
    other = jump_plate_folds(t, n_folds=5, plates_per_source=4, seed=8)
    assert set(other.Metadata_Plate) != set(plan.Metadata_Plate)


def test_jump_plate_folds_reports_missing_sources_and_rejects_ambiguous_plates():
    t = _plate_table()
    with pytest.warns(UserWarning, match="absent"):
        plan = jump_plate_folds(t, sources=JUMP_384_SOURCES)
    assert set(plan.Metadata_Source) == {"source_2", "source_3"}
    assert len(plan.attrs["missing_sources"]) == 5
    bad = pd.concat([t, pd.DataFrame([("source_5", "source_2_P00", "COMPOUND")], columns=t.columns)])
    with pytest.raises(ValueError, match="two sources"):
        jump_plate_folds(bad)


def test_jump_plan_on_the_real_plate_table(realdata):
    """arXiv 2603.13377 C.2 on JUMP's plate.csv.gz: 5 folds x 4 compound plates x 7 sources."""
    path = realdata / "metadata" / "jump" / "plate.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    plan = jump_plate_folds(pd.read_csv(path), sources=JUMP_384_SOURCES)
    assert len(plan) == 140
    assert (plan.groupby(["fold", "Metadata_Source"]).size() == 4).all()
    assert plan.attrs["missing_sources"] == [] and plan.attrs["short_sources"] == {}


# ----------------------------------------------------------------------------- control_retrieval


def _hand_fold_table():
    """Fold 0: a1=(1,0) a2=(0,1) b1=(1,.05) b2=(.05,1); fold 1: well separated.

    Fold 0 by hand (cosine): a1 ranks b1 (.999), b2 (.050), a2 (0) -> AP 1/3; a2 likewise
    1/3; b1 ranks a1 (.999), b2 (.0998), a2 (.0499) -> AP 1/2; b2 likewise 1/2. So
    mAP(A) = 1/3, mAP(B) = 1/2, fold mean 5/12. Fold 1: every AP is 1.
    """
    x = [(1, 0), (0, 1), (1, .05), (.05, 1),          # fold 0
         (1, 0), (1, .1), (0, 1), (.1, 1)]            # fold 1
    pert = ["A", "A", "B", "B"] * 2
    return pd.DataFrame({
        PERT: pert, "Metadata_ControlType": "poscon",
        "Metadata_Plate": ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3"],
        "Metadata_Source": "s", "fold": [0] * 4 + [1] * 4,
        "f1": [v[0] for v in x], "f2": [v[1] for v in x]})


def test_control_retrieval_known_answer():
    df = _hand_fold_table()
    scores, per = control_retrieval(df, ["f1", "f2"], fold_col="fold", null_size=100,
                                    batch_level="NR")
    m = scores[scores.metric == "mean_average_precision"].set_index("fold")["value"]
    assert m[0] == pytest.approx(5 / 12) and m[1] == pytest.approx(1.0)
    assert (scores[scores.metric == "mean_average_precision"]["n"] == 2).all()
    pm = per[per.metric == "mean_average_precision"].set_index(["fold", "perturbation"])["value"]
    assert pm[(0, "A")] == pytest.approx(1 / 3) and pm[(0, "B")] == pytest.approx(1 / 2)
    assert (per[per.metric == "n_wells"]["value"] == 2).all()
    assert set(per.metric) == {"mean_average_precision", "p_value", "corrected_p_value", "n_wells"}


def test_control_retrieval_reports_controls_left_out():
    df = _hand_fold_table()
    # a poscon present only in fold 1 is not shared: left out and named
    extra = df.iloc[[4, 5]].assign(**{PERT: "C", "f1": [3.0, 3.1]})
    with pytest.warns(UserWarning, match="not in every fold"):
        scores, per = control_retrieval(pd.concat([df, extra]), ["f1", "f2"], fold_col="fold",
                                        null_size=50, batch_level="NR")
    assert "C" not in set(per.perturbation)
    assert scores.attrs["dropped_controls_not_shared"] == ["C"]
    assert scores["warning"].str.contains("C").all()
    # an explicit list: absent controls are named, the others scored
    with pytest.warns(UserWarning, match="absent"):
        scores, per = control_retrieval(df, ["f1", "f2"], fold_col="fold", null_size=50,
                                        controls=["A", "B", "Z"], batch_level="NR")
    assert set(per.perturbation) == {"A", "B"} and scores.attrs["absent_controls"] == ["Z"]
    # not-same-plate: every compound's two wells share a plate -> no positive, level skipped
    with pytest.warns(UserWarning, match="NSP"):
        scores, _ = control_retrieval(df, ["f1", "f2"], fold_col="fold", null_size=50,
                                      batch_level=["NR", "NSP"])
    assert set(scores.batch_level) == {"NR"}
    assert "NSP/fold0" in scores.attrs["skipped_batch_levels"]


def _random_control_screen(seed=0):
    """2 sources x 5 compound plates (2 batches each), 3 poscons x 2 wells + 4 DMSO per plate."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in ("source_2", "source_3"):
        for p in range(5):
            for w in range(10):
                pert = [P1, P1, P2, P2, "JCP2022_012818", "JCP2022_012818"] + ["DMSO"] * 4
                rows.append({"Metadata_Source": s, "Metadata_Batch": f"{s}_b{p % 2}",
                             "Metadata_Plate": f"{s}_P{p}", "Metadata_Well": f"W{w:02d}",
                             "Metadata_PlateType": "COMPOUND", PERT: pert[w],
                             "Metadata_ControlType": "negcon" if pert[w] == "DMSO" else "poscon"})
    df = pd.DataFrame(rows)
    centers = {P1: rng.normal(size=6), P2: rng.normal(size=6), "JCP2022_012818": rng.normal(size=6),
               "DMSO": np.zeros(6)}
    x = np.stack([centers[p] for p in df[PERT]]) + rng.normal(scale=1.2, size=(len(df), 6))
    feats = [f"f{i}" for i in range(6)]
    return pd.concat([df, pd.DataFrame(x, columns=feats)], axis=1), feats


@pytest.mark.parametrize("level", ["NR", "NSP"])
def test_control_retrieval_equals_copairs_per_fold(level, tmp_path):
    copairs_map = pytest.importorskip("copairs.map", reason="copairs (test oracle) not installed")
    df, feats = _random_control_screen()
    with pytest.warns(UserWarning, match="5 listed control"):
        scores, per = control_retrieval(df, feats, controls=list(JUMP_POSITIVE_CONTROLS),
                                        n_folds=5, plates_per_source=4, null_size=200,
                                        batch_level=level)
    assert sorted(scores.fold.unique()) == [0, 1, 2, 3, 4]
    plan = jump_plate_folds(df, n_folds=5, plates_per_source=4)
    extra = ["Metadata_Plate"] if level == "NSP" else []
    for f in range(5):
        sub = df[df.Metadata_Plate.isin(plan.loc[plan.fold == f, "Metadata_Plate"])
                 & (df.Metadata_ControlType == "poscon")].reset_index(drop=True)
        ref = copairs_map.average_precision(sub[[PERT, "Metadata_Plate"]], sub[feats].to_numpy(),
                                            [PERT], extra, [], [PERT, *extra], progress_bar=False)
        want = ref.dropna(subset=["average_precision"]).groupby(PERT)["average_precision"].mean()
        got = per[(per.fold == f) & (per.metric == "mean_average_precision")
                  & (per.batch_level == level)].set_index("perturbation")["value"]
        np.testing.assert_allclose(got.sort_index(), want.sort_index(), atol=1e-9)
        assert len(got) == 3
    # 5 of the 8 listed controls are absent: named in the warning column
    assert scores["warning"].str.contains("5 listed control").all()


# ----------------------------------------------------------------------------- config pieces


def test_data_dir_substitution_defaults_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = {"dataset": "jump-cp", "data": {"load_data": "${data_dir}/load_data.parquet",
                                         "annotations": ["${annotations_dir}/CORUM.txt"]}}
    cfg = RunConfig.from_dict(d)
    default = tmp_path.resolve() / "data" / "jump-cp"  # data/<dataset> under the cwd
    assert cfg.data["load_data"] == str(default / "load_data.parquet")
    assert cfg.data["annotations"] == [str(default / "annotations" / "CORUM.txt")]
    cfg = RunConfig.from_dict(d, variables={"data_dir": "elsewhere", "annotations_dir": "/ann"})
    assert cfg.data["load_data"] == str(tmp_path.resolve() / "elsewhere" / "load_data.parquet")
    assert cfg.data["annotations"] == [str(Path("/ann").resolve() / "CORUM.txt")]
    with pytest.raises(ConfigError, match="--data-dir"):
        RunConfig.from_dict({"data": {"load_data": "${data_dir}/x.parquet"}})
    with pytest.raises(ConfigError, match=r"data\.load_data: unknown variable \$\{dta_dir\}"):
        RunConfig.from_dict({"dataset": "a", "data": {"load_data": "${dta_dir}/x.parquet"}})


def test_cli_run_passes_data_dir(tmp_path, monkeypatch):
    from baselens.run import cli

    seen = {}

    class _Res:
        report = tmp_path / "report.html"

    def fake_run(cfg, out, progress=True):
        seen["cfg"] = cfg
        return _Res()

    monkeypatch.setattr("baselens.run.pipeline.run_pipeline", fake_run)
    rc = cli.main(["run", str(PROTOCOLS / "rxrx3_core.toml"), "--out", str(tmp_path / "o"),
                   "--data-dir", str(tmp_path / "dl"), "--annotations-dir", str(tmp_path / "ann"),
                   "--quiet"])
    assert rc == 0
    cfg = seen["cfg"]
    assert cfg.data["load_data"] == str((tmp_path / "dl" / "load_data.parquet").resolve())
    assert cfg.data["annotations"][0] == str((tmp_path / "ann" / "CORUM.txt").resolve())
    emb = next(m for m in cfg.methods if m["name"] == "precomputed")["params"]["path"]
    assert emb == str((tmp_path / "dl" / "openphenom_embeddings.parquet").resolve())


def test_where_selects_rows_and_is_validated():
    df = pd.DataFrame({"Metadata_PerturbationType": ["CRISPR", "COMPOUND", "crispr", ""],
                       "v": [1, 2, 3, 4]})
    assert select_rows(df, {"Metadata_PerturbationType": ["crispr"]})["v"].tolist() == [1, 3]
    assert select_rows(df, {"Metadata_PerturbationType": {"not": ["compound"]}})["v"].tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="lack"):
        select_rows(df, {"Metadata_Nope": ["x"]})
    with pytest.raises(ConfigError, match="only 'not'"):
        RunConfig.from_dict({"tasks": {"relationship_recall": {"where": {"Metadata_X": {"no": [1]}}}}})
    with pytest.raises(ConfigError, match="must be a table"):
        RunConfig.from_dict({"tasks": {"relationship_recall": {"where": ["x"]}}})


# ----------------------------------------------------------------------------- the TOMLs


@pytest.mark.parametrize("name", NAMES)
def test_protocol_parses_validates_and_documents_itself(name, tmp_path):
    path = PROTOCOLS / f"{name}.toml"
    text = path.read_text()
    cfg = RunConfig.from_toml(path, variables={"data_dir": tmp_path})
    assert cfg.data["load_data"] == str(tmp_path.resolve() / "load_data.parquet")
    enabled = [t for t, v in cfg.tasks.items() if v.get("enabled")]
    assert len(enabled) == 1
    for needle in ("baselens download", "baselens run", "FULL run", "TB" if name != "rxrx3_core" else "GB"):
        assert needle in text, needle
    # the default data folder is data/<dataset>, what `baselens download` writes
    assert cfg.title and tomllib.loads(text)["dataset"] in ("jump-cp", "rxrx3-core")


def test_protocol_keys_follow_seed_004():
    jump = tomllib.loads((PROTOCOLS / "jump_cp_controls.toml").read_text())["tasks"]["control_retrieval"]
    assert (jump["n_folds"], jump["plates_per_source"], len(jump["sources"])) == (5, 4, 7)
    assert sorted(jump["controls"]) == sorted(JUMP_POSITIVE_CONTROLS)
    rx = tomllib.loads((PROTOCOLS / "rxrx3_core.toml").read_text())
    t = rx["tasks"]["relationship_recall"]
    assert (t["n_folds"], t["n_per_perturbation"], t["upper_tail"]) == (3, 10, 0.05)
    assert sorted(Path(a).stem for a in rx["data"]["annotations"]) == [
        "CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB"]


# ----------------------------------------------------------------------------- tiny datasets


def _tiff(path: Path, img: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img)


def _nuclei(rng, size: int) -> np.ndarray:
    """1-4 bright discs (radius 4) at quadrant centres: something for cell_count to count."""
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    q = size // 4
    for cy, cx in [(q, q), (q, 3 * q), (3 * q, q), (3 * q, 3 * q)][: rng.integers(1, 5)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 3000.0
    return img


def _write_jump(root: Path, plates, wells, effects, rng, size=16, nuclei=False) -> None:
    """A jump-cp download: images/<plate>/…tiff, illum/<plate>_Illum<Ch>.npy, load_data.parquet."""
    rows = []
    for source, batch, plate in plates:
        for ch in JUMP_CH:
            (root / "illum").mkdir(parents=True, exist_ok=True)
            np.save(root / "illum" / f"{plate}_Illum{ch}.npy", np.ones((size, size), np.float32))
        gain = rng.uniform(0.8, 1.2)  # a plate effect, removed by per-plate normalization
        for well, pert, ctype in wells:
            r = {"Metadata_Source": source, "Metadata_Batch": batch, "Metadata_Plate": plate,
                 "Metadata_Well": well, "Metadata_Site": 1, PERT: pert,
                 "Metadata_ControlType": ctype, "Metadata_PlateType": "COMPOUND",
                 "Metadata_PertType": ctype or "trt"}
            for ch in JUMP_CH:
                img = rng.gamma(4.0, 100.0, (size, size)) * gain * effects.get(pert, {}).get(ch, 1.0)
                if nuclei and ch == "DNA":
                    img = img + _nuclei(rng, size)
                name = f"{plate}_{well}_s1_{ch}.tiff"
                _tiff(root / "images" / plate / name, img.astype(np.uint16))
                r |= {f"FileName_Orig{ch}": name, f"PathName_Orig{ch}": f"images/{plate}",
                      f"FileName_Illum{ch}": f"{plate}_Illum{ch}.npy", f"PathName_Illum{ch}": "illum"}
            rows.append(r)
    pd.DataFrame(rows).to_parquet(root / "load_data.parquet")
    (root / "manifest.json").write_text(json.dumps({"dataset": "jump-cp"}))


def _run(name: str, data_dir: Path, out: Path, methods: list[dict], tasks: dict | None = None):
    """Load a protocol, swap in cheap methods (and task tweaks), run it serially."""
    d = tomllib.loads((PROTOCOLS / f"{name}.toml").read_text())
    d["methods"] = methods
    for task, kw in (tasks or {}).items():
        d["tasks"][task].update(kw)
    d["execution"] = {"executor": "serial"}
    cfg = RunConfig.from_dict(d, base_dir=PROTOCOLS, variables={"data_dir": data_dir})
    return run_pipeline(cfg, out, progress=False)


def test_jump_cp_controls_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "jump-cp"
    plates = [(s, f"{s}_b{p % 2}", f"{s}P{p}") for s in ("source_2", "source_3") for p in range(5)]
    wells = ([(f"A{i:02d}", "JCP2022_033924", "negcon") for i in range(1, 5)]
             + [("B01", P1, "poscon"), ("B02", P1, "poscon"), ("B03", P2, "poscon"), ("B04", P2, "poscon")])
    _write_jump(data, plates, wells, {P1: {"DNA": 3.0}, P2: {"Mito": 3.0}}, rng)
    res = _run("jump_cp_controls", data, tmp_path / "run",
               [{"name": "pixel_mean"}, {"name": "pixel_stats"}],
               {"control_retrieval": {"null_size": 500}})
    s = res.scores
    assert set(s.task) == {"control_retrieval"}
    nr = s[(s.batch_level == "NR") & (s.metric == "mean_average_precision")]
    assert sorted(nr.fold.unique()) == [0, 1, 2, 3, 4]           # five folds of plates
    assert set(nr.method) == {"pixel_mean", "pixel_stats"}
    # AMG900 brightens DNA, FK-866 Mito, 3x: after per-plate DMSO standardization every
    # well retrieves its replicate first, per fold and per compound
    assert (nr.value == 1.0).all()
    p = res.per_perturbation
    pc = p[(p.metric == "mean_average_precision") & (p.batch_level == "NR")]
    assert set(pc.perturbation) == {P1, P2}
    assert len(pc) == 2 * 5 * 2                                    # compounds x folds x methods
    assert nr.warning.str.contains("6 listed control").all()     # 6 of the 8 JUMP poscons absent
    assert nr.warning.str.contains("source_5").all()             # 5 of the 7 sources absent
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["data"]["load_data"] == str(data.resolve() / "load_data.parquet")


def test_morphohelm_moa_end_to_end(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "jump-cp"
    plates = [("source_2", "b1", "S2P1"), ("source_2", "b2", "S2P2"),
              ("source_3", "b3", "S3P1"), ("source_3", "b4", "S3P2")]
    cpds = [f"JCP2022_{i:06d}" for i in range(1, 7)]
    wells = [(f"A{i:02d}", "JCP2022_033924", "negcon") for i in range(1, 7)]
    wells += [(f"{'BC'[k]}{i + 1:02d}", c, "") for i, c in enumerate(cpds) for k in range(2)]
    chans = {0: "DNA", 1: "DNA", 2: "ER", 3: "ER", 4: "Mito", 5: "Mito"}  # MoA -> channel
    effects = {c: {chans[i]: 2.5 + 0.3 * (i % 2)} for i, c in enumerate(cpds)}
    _write_jump(data, plates, wells, effects, rng, size=32, nuclei=True)
    moas = ["m0", "m0", "m1", "m1", "m2", "m2|m0"]
    pd.DataFrame({PERT: cpds, "Metadata_moa": moas}).to_csv(data / "compound_moa.csv", index=False)
    res = _run("morphohelm_moa", data, tmp_path / "run",
               [{"name": "cell_count"}, {"name": "pixel_mean"}, {"name": "pixel_stats"}])
    s = res.scores
    assert set(s.task) == {"morphohelm"}
    px = s[s.method == "pixel_stats"]
    for lv in ("NR", "NSB", "NSS"):
        got = set(px[px.batch_level == lv].metric)
        assert {"replicate_map", "negcon_map", "knn_recall_at_1",
                "enrichment_fraction_significant", "enrichment_geometric_mean_or"} <= got, lv
    # the MorphoHELM profile ran, QC included (the cell count came from cell_count)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    stages = " ".join(e["stage"] for e in info["filters"])
    assert "qc_cell_count" in stages and "qc_negcon_distance" in stages
    # a query well has 7 replicates among 47 candidate wells: a random ranking scores
    # AP ≈ 7/47 ≈ 0.15; the compounds' channel effects lift it well above
    nr = px[(px.batch_level == "NR") & (px.metric == "replicate_map")]
    assert nr.value.iloc[0] > 2 * 7 / 47


def _write_rxrx3(root: Path, rng, n_genes=10, wells_per_batch=6, size=16):
    """An rxrx3-core download: images, load_data, openphenom_embeddings, annotations/."""
    genes = [f"G{i}" for i in range(n_genes)]
    base = rng.normal(size=(n_genes, 16))
    base[1] = base[0] + 0.05 * rng.normal(size=16)  # G0-G1 and G2-G3: the annotated pairs,
    base[3] = base[2] + 0.05 * rng.normal(size=16)  # far more alike than any other pair
    rows, emb = [], []
    for b in ("gene-001", "gene-002"):
        plate = f"{b}_Plate1"
        wells = ([(g, "CRISPR", "") for g in genes for _ in range(wells_per_batch)]
                 + [("EMPTY_control", "COMPOUND", "negcon")] * 4
                 + [("cpd-1", "COMPOUND", "")] * 3)
        for i, (pert, ptype, ctype) in enumerate(wells):
            well = f"W{i:03d}"
            r = {"Metadata_Source": "rxrx3-core", "Metadata_Batch": b, "Metadata_Plate": plate,
                 "Metadata_Well": well, "Metadata_Site": 1, PERT: pert, "Metadata_ControlType": ctype,
                 "Metadata_PerturbationType": ptype, "Metadata_WellId": f"{plate}_{well}"}
            for ch in RXRX_CH:
                name = f"{well}_s1_{ch}.tiff"
                _tiff(root / "images" / b / "Plate1" / name,
                      rng.integers(0, 255, (size, size), dtype=np.uint8))
                r |= {f"FileName_Orig{ch}": name, f"PathName_Orig{ch}": f"images/{b}/Plate1"}
            rows.append(r)
            v = base[genes.index(pert)] if pert in genes else rng.normal(size=16)
            emb.append({"Metadata_WellId": r["Metadata_WellId"], "Metadata_Batch": b,
                        "Metadata_Plate": plate, "Metadata_Well": well,
                        **{f"feature_{k}": float(x) for k, x in enumerate(v + 0.05 * rng.normal(size=16))}})
    pd.DataFrame(rows).to_parquet(root / "load_data.parquet")
    pd.DataFrame(emb).to_parquet(root / "openphenom_embeddings.parquet")
    ann = root / "annotations"
    ann.mkdir()
    pairs = {"CORUM": [("G0", "G1"), ("G2", "G3")], "HuMAP": [("G0", "G1")],
             "Reactome": [("G2", "G3")], "SIGNOR": [("G0", "G1")], "StringDB": [("G2", "G3")]}
    for src, pp in pairs.items():
        both = pp + [(b_, a) for a, b_ in pp]
        pd.DataFrame(both, columns=["entity1", "entity2"]).to_csv(ann / f"{src}.txt", index=False)


def test_rxrx3_core_end_to_end(tmp_path):
    rng = np.random.default_rng(2)
    data = tmp_path / "rxrx3-core"
    data.mkdir()
    _write_rxrx3(data, rng)
    res = _run("rxrx3_core", data, tmp_path / "run",
               [{"name": "precomputed", "label": "openphenom_rxrx3",
                 "params": {"path": "${data_dir}/openphenom_embeddings.parquet", "keys": "well",
                            "features": "feature_"}},
                {"name": "pixel_mean"}])
    s = res.scores
    assert set(s.task) == {"relationship_recall"}
    op = s[(s.method == "openphenom_rxrx3") & (s.batch_level == "NR")]
    assert sorted(op.fold.unique()) == [0, 1, 2]                  # three folds
    for src in ("CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB"):
        top = op[op.metric == f"recall_top_0.05:{src}"]
        assert len(top) == 3, src
        # 10 genes -> 45 pairs in the null; the two annotated pairs are the two most similar,
        # ranks 43 and 44 of 45 (>= 0.95): every annotated pair is recalled, in every fold
        assert (top.value == 1.0).all(), src
    assert set(s[s.method == "pixel_mean"].fold) == {0, 1, 2}
    # compound wells left the profiles before the null was formed (3 per batch, logged)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    where = [e for e in info["filters"] if "where" in e["reason"]]
    assert where and all(e["removed"] == 14 for e in where)   # 6 cpd + 8 EMPTY_control wells
