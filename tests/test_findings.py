"""diagnostics/findings.parquet: every conclusion decided once, by diagnose, on hand-built
tables with known answers; and the report imports no pipeline logic to decide its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from baselens.diagnose.findings import (
    FINDINGS_COLUMNS,
    design_summary,
    findings,
    level_groups,
    read_findings,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "baselens"


def scores(levels: dict[str, dict[str, float]], task="replicate_retrieval",
           metric="mean_average_precision") -> pd.DataFrame:
    """``levels[level][method] = value``; kinds from the method name."""
    kind = {"plate_layout": "baseline", "cell_count": "baseline", "pixel_stats": "baseline",
            "vit": "model", "gt": "reference", "random": "null"}
    rows = []
    for lv, vals in levels.items():
        for m, v in vals.items():
            for fold in range(2):
                rows.append(dict(method=m, method_kind=kind[m], layer="default", task=task,
                                 batch_level=lv, metric=metric, fold=fold, seed=0, value=v,
                                 n=10))
    return pd.DataFrame(rows)


def beyond(rows: list[tuple], task="replicate_retrieval", metric="mean_average_precision",
           hib=True) -> pd.DataFrame:
    """``(level, method, kind, value, best_baseline, best_value, verdict)`` rows."""
    out = []
    for lv, m, kind, v, b, bv, verdict in rows:
        d = v - bv
        out.append(dict(task=task, batch_level=lv, metric=metric, method=m, method_kind=kind,
                        layer="default", value_mean=v, best_baseline=b,
                        best_baseline_layer="default", best_baseline_mean=bv, difference=d,
                        improvement=d if hib else -d, higher_is_better=hib,
                        ci_low=d - 0.01, ci_high=d + 0.01, p_adjusted=0.001, n_paired=20,
                        paired_over="perturbation", verdict=verdict))
    return pd.DataFrame(out)


# ------------------------------------------------------------------ batch levels
def test_identical_levels_are_one_and_verdicts_are_stated_once():
    same = {"plate_layout": 0.9, "cell_count": 0.4, "vit": 0.95}
    s = scores({"SP": same, "NR": same, "NSL": same,
                "NSP": {"plate_layout": 0.1, "cell_count": 0.3, "vit": 0.5}})
    b = beyond([("SP", "vit", "model", 0.95, "plate_layout", 0.9, "not distinguishable"),
                ("NR", "vit", "model", 0.95, "plate_layout", 0.9, "not distinguishable"),
                ("NSL", "vit", "model", 0.95, "plate_layout", 0.9, "not distinguishable"),
                ("NSP", "vit", "model", 0.5, "cell_count", 0.3, "beats")])
    f = findings(s, b, design={"n_plates": 1})
    assert list(f.columns) == FINDINGS_COLUMNS
    ident = f[f["kind"] == "identical_levels"]
    assert ident["levels"].tolist() == ["SP|NR|NSL"] and ident["batch_level"].tolist() == ["NR"]
    assert "one plate" in ident["sentence"].iloc[0]
    lv = f[f["kind"] == "levels"].iloc[0]
    assert lv["batch_level"] == "NSP" and lv["levels"] == "NSP|NR"  # strictest first, NR beside
    v = f[f["kind"] == "verdict"]
    assert sorted(v["batch_level"]) == ["NR", "NSP"]  # SP and NSL are NR here: not repeated
    # every summary sentence names its level
    summ = f[f["kind"] == "model_summary"]
    assert set(summ["batch_level"]) == {"NR", "NSP"}
    for r in summ.itertuples():
        assert r.sentence.startswith(f"At {r.batch_level} (")
    nr = summ[summ["batch_level"] == "NR"].iloc[0]
    assert nr["verdict"] == "no" and "identical here to SP and NSL" in nr["sentence"]
    assert summ[summ["batch_level"] == "NSP"]["verdict"].iloc[0] == "beats"


def test_levels_that_differ_slightly_are_not_merged():
    s = scores({"SP": {"cell_count": 0.4, "vit": 0.5},
                "NR": {"cell_count": 0.4, "vit": 0.501}})
    g = level_groups(s.groupby(["task", "batch_level", "metric", "method", "layer"],
                               sort=False)["value"].mean().rename("value_mean").reset_index())
    assert g == [["SP"], ["NR"]]
    assert (findings(s)["kind"] == "identical_levels").sum() == 0


# ------------------------------------------------------------------ confounds
def test_plate_layout_best_names_the_levels_where_it_is_not():
    s = scores({"NR": {"plate_layout": 0.9, "cell_count": 0.4, "vit": 0.6},
                "NSP": {"plate_layout": 0.05, "cell_count": 0.3, "vit": 0.35}})
    b = beyond([("NR", "vit", "model", 0.6, "plate_layout", 0.9, "worse"),
                ("NSP", "vit", "model", 0.35, "cell_count", 0.3, "not distinguishable")])
    f = findings(s, b)
    c = f[f["kind"] == "confound"]
    pl = c[c["subject"] == "plate_layout"].iloc[0]
    assert pl["levels"] == "NR" and pl["severity"] == "warning"
    assert "at NR" in pl["sentence"] and "not the best baseline at NSP" in pl["sentence"]
    cc = c[c["subject"] == "cell_count"].iloc[0]
    assert cc["levels"] == "NSP" and "not the best baseline at NR" in cc["sentence"]


def test_no_confound_when_a_neutral_baseline_is_best():
    s = scores({"NR": {"pixel_stats": 0.5, "cell_count": 0.2, "vit": 0.6}})
    assert (findings(s)["kind"] == "confound").sum() == 0


def test_confound_without_models_follows_declared_direction():
    # lower is better: the smallest value is the best baseline
    s = scores({"NR": {"plate_layout": 0.1, "cell_count": 0.9}}, task="t", metric="err")
    m = pd.DataFrame({"task": ["t"], "metric": ["err"], "higher_is_better": [False],
                      "headline": [True]})
    c = findings(s, None, m)
    assert c.loc[c["kind"] == "confound", "subject"].tolist() == ["plate_layout"]
    assert c.loc[c["kind"] == "model_summary", "verdict"].tolist() == ["no models"]


# ------------------------------------------------------------------ sample size
@pytest.mark.parametrize("wells, expected", [
    # 4 perturbations × 2 wells, one plate: all three caveats
    ([("P1", f"c{i}", "trt") for i in range(4) for _ in range(2)]
     + [("P1", "DMSO", "negcon")] * 6, {"perturbations", "replicates", "plates"}),
    # 6 perturbations × 3 wells on two plates: none (controls are not perturbations)
    ([(f"P{j % 2}", f"c{i}", "trt") for i in range(6) for j in range(3)]
     + [("P1", "DMSO", "negcon")], set()),
])
def test_sample_size_caveats(wells, expected):
    w = pd.DataFrame(wells, columns=["Metadata_Plate", "Metadata_Perturbation",
                                     "Metadata_ControlType"])
    d = design_summary(w)
    f = findings(scores({"NR": {"cell_count": 0.4, "vit": 0.5}}), design=d)
    got = f[f["kind"] == "sample_size"]
    assert set(got["subject"]) == expected
    assert (got["severity"] == "caution").all()


# ------------------------------------------------------------------ assays
def test_assay_verdicts_and_their_count_agree():
    """The old contradiction: balanced accuracy 1.00 flagged 'not predictable' while the
    summary said 'every assay needs more than cell count'. An assay that reaches the
    threshold without significance is inconclusive, and the count says so."""
    asy = pd.DataFrame({
        "assay": ["tox", "tiny", "specific"], "assay_type": ["viability", "x", "x"],
        "n_actives": [40, 2, 30], "n_inactives": [60, 3, 50],
        "p_value": [1e-6, 0.2, 0.5], "p_value_bonferroni": [3e-6, 0.6, 1.0],
        "cell_count_balanced_accuracy": [0.9, 1.0, 0.55], "threshold": [0.1, 0.2, 0.3],
        "predictable_by_cell_count": [True, False, False]})
    f = findings(scores({"NR": {"cell_count": 0.4, "vit": 0.5}}), assay_confounds=asy)
    a = f[f["kind"] == "assay"].set_index("subject")
    assert a.loc["tox", "verdict"] == "predictable by cell count"
    assert a.loc["tiny", "verdict"] == "inconclusive"
    assert "not predictable" not in a.loc["tiny", "sentence"]
    assert a.loc["specific", "verdict"] == "not predictable by cell count"
    s = f[f["kind"] == "assays"].iloc[0]
    assert s["value"] == 1 and s["n"] == 3 and s["baseline_value"] == 1
    assert s["sentence"].startswith("Cell count alone predicts 1 of 3 bioactivity assays")
    assert "1 more reach" in s["sentence"] and "every assay" not in s["sentence"]


# ------------------------------------------------------------------ verdicts
def test_summary_counts_equal_the_verdict_rows_and_direction_is_in_words():
    s = pd.concat([scores({"NR": {"cell_count": 0.4, "vit": 0.6}}),
                   scores({"NR": {"cell_count": 2.0, "vit": 1.0}}, task="regression",
                          metric="mae")])
    m = pd.DataFrame({"task": ["replicate_retrieval", "regression"],
                      "metric": ["mean_average_precision", "mae"],
                      "higher_is_better": [True, False], "headline": [True, True]})
    b = pd.concat([beyond([("NR", "vit", "model", 0.6, "cell_count", 0.4, "beats")]),
                   beyond([("NR", "vit", "model", 1.0, "cell_count", 2.0, "not distinguishable")],
                          task="regression", metric="mae", hib=False)])
    f = findings(s, b, m)
    v = f[f["kind"] == "verdict"]
    summ = f[f["kind"] == "model_summary"].iloc[0]
    assert summ["value"] == (v["verdict"] == "beats").sum() == 1 and summ["n"] == 2
    assert summ["verdict"] == "partly"
    mae = v[v["task"] == "regression"].iloc[0]
    assert "mae (lower is better)" in mae["sentence"] and not mae["higher_is_better"]


def test_no_verdict_is_invented_without_beyond_baseline():
    f = findings(scores({"NR": {"cell_count": 0.4, "vit": 0.9}}))
    assert (f["kind"] == "verdict").sum() == 0
    assert (f["kind"] == "model_summary").sum() == 0  # a model, but nothing decided about it


def test_written_by_run_diagnostics_and_read_back(tmp_path):
    from baselens.diagnose.run import DIAGNOSTICS, _empty

    assert DIAGNOSTICS[-1] == "findings"
    assert list(_empty("findings").columns) == FINDINGS_COLUMNS
    s = scores({"NR": {"cell_count": 0.4, "vit": 0.5}})
    s.to_parquet(tmp_path / "scores.parquet")
    f = read_findings(tmp_path)  # a folder without the table: recomputed from its tables
    assert (f["kind"] == "levels").sum() == 1
    (tmp_path / "diagnostics").mkdir()
    f.iloc[:0].to_parquet(tmp_path / "diagnostics" / "findings.parquet")
    assert read_findings(tmp_path).empty  # the written table wins


# ------------------------------------------------------------------ import rule
def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_report_reads_tables_only():
    """report/ imports nothing of run, extract, profile, evaluate or diagnose."""
    bad = {}
    for p in sorted((SRC / "report").glob("*.py")):
        mods = [m for m in _imports(p) if m.split(".")[:2] in (
            ["baselens", "run"], ["baselens", "extract"], ["baselens", "profile"],
            ["baselens", "evaluate"], ["baselens", "diagnose"])]
        if mods:
            bad[p.name] = mods
    assert not bad, bad


def test_findings_module_imports_no_later_stage():
    mods = _imports(SRC / "diagnose" / "findings.py")
    assert not [m for m in mods if m.startswith(("baselens.report", "baselens.run"))]


def test_collapse_is_a_finding_at_the_declared_share():
    dim = pd.DataFrame({"method": ["cell_count", "vit"], "method_kind": ["baseline", "model"],
                        "layer": ["default", "default"], "metric": ["top1_variance"] * 2,
                        "component": [0, 0], "value": [0.97, 0.79]})
    f = findings(scores({"NR": {"cell_count": 0.4, "vit": 0.5}}), dimensionality=dim)
    c = f[f["kind"] == "collapse"]
    assert c["method"].tolist() == ["cell_count"] and c["value"].tolist() == [0.97]
    assert "97 %" in c["sentence"].iloc[0]


def test_levels_coincide_task_by_task():
    """Retrieval gives SP = NR = NSL on one plate, but a probe's NSL folds differ: NSL stays
    a level of its own for the probe, and the note names retrieval only."""
    same = {"cell_count": 0.4, "vit": 0.5}
    s = pd.concat([scores({"SP": same, "NR": same, "NSL": same}),
                   scores({"NR": {"cell_count": 0.3, "vit": 0.6},
                           "NSL": {"cell_count": 0.2, "vit": 0.25}}, task="knn_probe",
                          metric="macro_f1")])
    f = findings(s)
    ident = f[f["kind"] == "identical_levels"]
    assert ident["levels"].tolist() == ["SP|NR|NSL"]
    assert ident["subject"].tolist() == ["replicate_retrieval"]
    lv = f[f["kind"] == "levels"].set_index("task")["levels"]
    assert lv["replicate_retrieval"] == "NR" and lv["knn_probe"] == "NSL|NR"


def test_numbers_written_as_text_are_read_as_numbers():
    """An earlier writer stored object columns of floats as text; findings still decide."""
    pc = pd.DataFrame({"method": ["cell_count", "random"], "method_kind": ["baseline", "null"],
                       "layer": ["default"] * 2, "phenotype_class": ["cytotoxic"] * 2,
                       "batch_level": ["NR"] * 2, "metric": ["mean_average_precision"] * 2,
                       "value": ["0.6", "0.05"], "n": [4, 4]})
    f = findings(scores({"NR": {"cell_count": 0.4, "vit": 0.5}}), phenotype_classes=pc)
    cap = f[(f["kind"] == "class_capture") & (f["method"] == "cell_count")]
    assert cap["verdict"].tolist() == ["captures"] and cap["subject"].tolist() == ["cytotoxic"]


def test_parquet_safe_keeps_numbers_numeric():
    from baselens.diagnose.run import _parquet_safe

    df = pd.DataFrame({"value": pd.Series([0.5, None, 2], dtype=object),
                       "best_baseline": pd.Series(["a", None, 3], dtype=object)})
    out = _parquet_safe(df)
    assert out["value"].dtype == "float64" and out["value"].iloc[0] == 0.5
    assert [x if isinstance(x, str) else None for x in out["best_baseline"]] == ["a", None, "3"]
