"""What the report draws is decided by diagnose: the per-perturbation best baseline, the best
baseline of every group, the representative of each tissue input and the tissue
sentences — on hand-built tables with known answers; and the report only renders them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd

from baselens.diagnose.differential import (
    DIFFERENTIAL_COLUMNS,
    best_baseline_table,
    item_metric,
    per_perturbation_table,
)
from baselens.diagnose.tissue import tissue_findings, tissue_inputs

SRC = Path(__file__).resolve().parents[1] / "src" / "baselens"


def _scores(values: dict[str, float], kinds: dict[str, str], *, task="replicate_retrieval",
            metric="mean_average_precision", levels=("NR",)) -> pd.DataFrame:
    return pd.DataFrame([dict(method=m, method_kind=kinds[m], layer="default", task=task,
                              batch_level=lv, metric=metric, fold=f, seed=0,
                              value=v - 0.1 * i, n=3)
                         for i, lv in enumerate(levels) for m, v in values.items()
                         for f in range(2)])


KINDS = {"cell_count": "baseline", "pixel_stats": "baseline", "vit": "model",
         "random": "null"}


def _per_item(values: dict[str, dict[str, float]], *, level="NR",
              metric="average_precision") -> pd.DataFrame:
    """``values[perturbation][method]``, plus a p-value metric that is never drawn."""
    rows = []
    for p, vals in values.items():
        for m, v in vals.items():
            for met, x in ((metric, v), ("p_value", 0.5)):
                rows.append(dict(method=m, method_kind=KINDS[m], layer="default",
                                 task="replicate_retrieval", batch_level=level, perturbation=p,
                                 metric=met, value=x, fold=0))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ per-perturbation table
def test_the_best_baseline_is_chosen_per_perturbation():
    """cell_count is the better baseline on A, pixel_stats on B: each perturbation's
    differential is against its own best baseline, not against the overall best."""
    s = _scores({"cell_count": 0.6, "pixel_stats": 0.3, "vit": 0.5}, KINDS)
    pp = _per_item({"A": {"cell_count": 0.9, "pixel_stats": 0.2, "vit": 0.5},
                    "B": {"cell_count": 0.1, "pixel_stats": 0.4, "vit": 0.7}})
    t = per_perturbation_table(s, pp)
    assert list(t.columns) == DIFFERENTIAL_COLUMNS
    assert set(t["metric"]) == {"average_precision"}  # the p-value is not a score to plot
    r = t.set_index("perturbation")
    assert r.loc["A", "best_baseline"] == "cell_count"
    assert r.loc["B", "best_baseline"] == "pixel_stats"
    assert np.isclose(r.loc["A", "improvement"], 0.5 - 0.9)
    assert np.isclose(r.loc["B", "improvement"], 0.7 - 0.4)
    assert t["perturbation"].tolist() == ["B", "A"]  # largest improvement first


def test_a_declared_lower_is_better_metric_picks_the_smallest_baseline():
    s = _scores({"cell_count": 0.6, "vit": 0.5}, KINDS, metric="distance")
    s = pd.concat([s, s.assign(method="pixel_stats", value=0.7)])
    pp = _per_item({"A": {"cell_count": 0.9, "pixel_stats": 0.2, "vit": 0.5}},
                   metric="distance")
    metrics = pd.DataFrame({"task": ["replicate_retrieval"], "metric": ["distance"],
                            "higher_is_better": [False], "headline": [True]})
    r = per_perturbation_table(s, pp, metrics).iloc[0]
    assert r["best_baseline"] == "pixel_stats" and not r["higher_is_better"]
    assert np.isclose(r["improvement"], 0.2 - 0.5)  # the model is 0.3 worse (higher)


def test_only_the_level_the_report_shows_first_is_kept():
    """Scores at NR and NSB (distinct): the strictest, NSB, is drawn; NR is not stored."""
    s = _scores({"cell_count": 0.6, "vit": 0.5}, KINDS, levels=("NR", "NSB"))
    pp = pd.concat([_per_item({"A": {"cell_count": 0.9, "vit": 0.5}}, level=lv)
                    for lv in ("NR", "NSB")])
    assert per_perturbation_table(s, pp)["batch_level"].unique().tolist() == ["NSB"]
    # the per-item table lacks the level the report shows: NR stands in for it
    assert per_perturbation_table(s, pp[pp["batch_level"] == "NR"])[
        "batch_level"].unique().tolist() == ["NR"]


def test_item_metric_prefers_the_headline_and_skips_p_values_and_predictions():
    assert item_metric(["p_value", "oof_pred", "n_items", "ap", "auc"], "auc") == "auc"
    assert item_metric(["p_value", "fdr", "ap"], "mean_average_precision") == "ap"
    assert item_metric(["p_value", "q_val"], "x") is None


# ------------------------------------------------------------------ best baseline table
def test_every_group_has_its_best_baseline_also_without_models():
    s = pd.concat([_scores({"cell_count": 0.6, "pixel_stats": 0.3}, KINDS),
                   _scores({"cell_count": 0.2, "pixel_stats": 0.3}, KINDS, metric="err")])
    metrics = pd.DataFrame({"task": ["replicate_retrieval"] * 2,
                            "metric": ["mean_average_precision", "err"],
                            "higher_is_better": [True, False]})
    t = best_baseline_table(s, metrics).set_index("metric")
    assert t.loc["mean_average_precision", "best_baseline"] == "cell_count"
    assert t.loc["err", "best_baseline"] == "cell_count"  # lower is better: 0.2 < 0.3
    assert not t.loc["err", "higher_is_better"]


# ------------------------------------------------------------------ tissue
TISSUE_KINDS = {"tissue_count": "baseline", "graph_net": "baseline", "tissue_points":
                "baseline", "uni": "model", "ground_truth": "reference", "random": "null"}


def _tissue_scores(values: dict[str, dict[str, float]], task="IDC") -> pd.DataFrame:
    """``values[method][metric]``."""
    return pd.DataFrame([dict(method=m, method_kind=TISSUE_KINDS[m], layer="default",
                              task=task, batch_level="NSPT", metric=met, fold=f, seed=0,
                              value=v, n=20)
                         for m, vals in values.items() for met, v in vals.items()
                         for f in range(2)])


TISSUE_METHODS = pd.DataFrame({"method": ["tissue_count", "graph_net", "tissue_points", "uni",
                                          "ground_truth", "random"],
                               "input": ["count", "image", "structure", "image",
                                            "reference", "null"]})


def test_inputs_come_from_the_pipeline_table_and_the_best_is_named():
    """graph_net would be guessed 'structure' from its name; the table says image."""
    s = _tissue_scores({"tissue_count": {"pearson": 0.3}, "graph_net": {"pearson": 0.6},
                        "tissue_points": {"pearson": 0.5}, "uni": {"pearson": 0.4},
                        "random": {"pearson": 0.0}})
    m = tissue_inputs(s, TISSUE_METHODS).set_index("method")
    assert m.loc["graph_net", "input"] == "image"
    assert m.loc["graph_net", "input_source"] == "tissue_methods"
    best = m[m["best_of_input"]]["input"]
    assert best.to_dict() == {"tissue_count": "count", "graph_net": "image",
                              "tissue_points": "structure", "random": "null"}
    # without the table the name decides (run folders merged by baselens compare)
    guessed = tissue_inputs(s).set_index("method")
    assert guessed.loc["graph_net", "input"] == "structure"
    assert guessed.loc["graph_net", "input_source"] == "name"


def test_tissue_finding_says_structure_trails_image_and_what_count_explains():
    s = _tissue_scores({
        "tissue_count": {"pearson": 0.3, "pearson_density": 0.86},
        "tissue_points": {"pearson": 0.481, "pearson_density": 0.84,
                          "pearson_clustering": 0.6, "pearson_appearance": -0.01,
                          "pearson_count_matched": 0.3},
        "uni": {"pearson": 0.551}})
    f = tissue_findings(s, tissue_methods=TISSUE_METHODS)
    assert (f["kind"] == "tissue").all()
    img = f[f["subject"] == "image"].iloc[0]
    assert img["verdict"] == "trails" and img["method"] == "tissue_points"
    assert img["sentence"] == ("On IDC, the best structure-only model tissue_points (r 0.481) "
                               "trails the best image model uni (r 0.551); see the gene-wise "
                               "panel.")
    drv = f[f["subject"] == "drivers"].iloc[0]
    assert drv["verdict"] == "structure over appearance"
    assert drv["sentence"] == ("Structure-driven genes are predicted from cell positions alone "
                               "(tissue_points: density 0.84, clustering 0.60), "
                               "appearance-driven ones are not (r −0.01).")
    cnt = f[f["subject"] == "count"].iloc[0]
    assert cnt["method"] == "tissue_count" and np.isclose(cnt["value"], 0.86)
    assert "with count held fixed, tissue_points keeps r 0.30" in cnt["sentence"]


def test_tissue_finding_beats_and_an_appearance_driven_structure_model_is_not_praised():
    s = _tissue_scores({
        "tissue_points": {"pearson": 0.6, "pearson_density": 0.2, "pearson_appearance": 0.5},
        "uni": {"pearson": 0.4}})
    f = tissue_findings(s, tissue_methods=TISSUE_METHODS).set_index("subject")
    assert f.loc["image", "verdict"] == "beats"
    assert " beats the best image model uni " in f.loc["image", "sentence"]
    assert f.loc["drivers", "verdict"] == "not structure over appearance"
    assert "are not all predicted better" in f.loc["drivers", "sentence"]
    assert "count" not in f.index  # no count baseline scored: nothing said about it


def test_no_tissue_findings_for_a_cell_painting_regression_probe():
    s = _tissue_scores({"tissue_points": {"pearson": 0.6}, "uni": {"pearson": 0.4}},
                       task="regression_probe")
    assert tissue_inputs(s).empty and tissue_findings(s).empty


# ------------------------------------------------------------------ the report renders
def _report_calls() -> dict[str, list[str]]:
    """Every name the report's modules call or import."""
    out = {}
    for p in sorted((SRC / "report").glob("*.py")):
        names = []
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.Name):
                names.append(node.id)
            elif isinstance(node, ast.Attribute):
                names.append(node.attr)
        out[p.name] = names
    return out


def test_the_report_never_computes_a_per_perturbation_differential():
    used = {f: [n for n in names if n in ("per_perturbation_differential", "best_baselines",
                                          "best_baseline_table", "per_perturbation_table")]
            for f, names in _report_calls().items()}
    assert not any(used.values()), used


def test_the_report_draws_the_best_baseline_the_table_names():
    """A differential table naming pixel_stats as A's best baseline is drawn as is, although
    cell_count scored higher on A: the report recomputes nothing."""
    from baselens.report.html import render_report

    s = _scores({"cell_count": 0.6, "pixel_stats": 0.3, "vit": 0.5}, KINDS)
    pp = _per_item({"A": {"cell_count": 0.9, "pixel_stats": 0.2, "vit": 0.5}})
    t = per_perturbation_table(s, pp)
    t["best_baseline"], t["best_baseline_value"] = "pixel_stats", 0.2
    t["improvement"] = t["difference"] = 0.3
    html = render_report(s, pp, diagnostics={"per_perturbation_differential": t})
    sec = html[html.index('id="perturbations"'):html.index('id="assays"')]
    assert "<strong>A</strong>: 0.500 vs 0.200 (pixel_stats)" in sec
    # an older run folder without the table: the panel says what is missing
    old = render_report(s, pp)
    sec = old[old.index('id="perturbations"'):old.index('id="assays"')]
    assert "per_perturbation_differential.parquet</code> is not in this run folder" in sec


def test_the_report_renders_the_tissue_findings_rows():
    from baselens.diagnose.run import derived_tables
    from baselens.report.html import render_report

    s = _tissue_scores({"tissue_count": {"pearson": 0.3}, "tissue_points": {"pearson": 0.5},
                        "uni": {"pearson": 0.4}})
    tables = {"findings": pd.DataFrame()}
    tables.update(derived_tables(s, None, tables, TISSUE_METHODS))
    f = tables["findings"]
    assert f["sentence"].str.contains("tissue_points (r 0.500) beats", regex=False).any()
    f.loc[f["subject"] == "image", "sentence"] = "A sentence only the diagnostics wrote."
    html = render_report(s, diagnostics={**tables, "findings": f})
    summary = html[html.index('id="summary"'):html.index('id="leaderboard"')]
    assert "A sentence only the diagnostics wrote." in summary
    assert "beats the best image model" not in html


# ------------------------------------------------------------------ best layers
def _layer_scores(values: dict[tuple[str, str], float], *, metric="mean_average_precision",
                  task="replicate_retrieval", kind="model") -> pd.DataFrame:
    """``values[(method, layer)]``, two folds each (the mean is the value)."""
    return pd.DataFrame([dict(method=m, method_kind=kind, layer=la, task=task,
                              batch_level="NR", metric=metric, fold=f, seed=0,
                              value=v + (0.01 if f else -0.01), n=3)
                         for (m, la), v in values.items() for f in range(2)])


def test_the_best_layer_of_a_lower_is_better_metric_is_the_smallest():
    from baselens.diagnose.layers import BEST_LAYER_COLUMNS, best_layers

    vals = {("vit", "block3"): 0.5, ("vit", "block6"): 0.2, ("vit", "block12"): 0.4}
    s = pd.concat([_layer_scores(vals), _layer_scores(vals, metric="error")])
    metrics = pd.DataFrame({"task": ["replicate_retrieval"] * 2,
                            "metric": ["mean_average_precision", "error"],
                            "higher_is_better": [True, False], "metric_kind": "score"})
    t = best_layers(s, metrics)
    assert list(t.columns) == BEST_LAYER_COLUMNS
    t = t.set_index("metric")
    assert t.loc["mean_average_precision", "best_layer"] == "block3"
    assert t.loc["error", "best_layer"] == "block6"  # lower is better: 0.2 < 0.4 < 0.5
    assert np.isclose(t.loc["error", "value"], 0.2) and not t.loc["error", "higher_is_better"]
    assert t.loc["error", "n_layers"] == 3
    # a direction given by name (compare --lower-is-better) counts too
    u = best_layers(_layer_scores(vals, metric="error"), lower_is_better=["error"])
    assert u["best_layer"].tolist() == ["block6"]
    # without a declaration, higher is better
    assert best_layers(_layer_scores(vals, metric="error"))["best_layer"].tolist() == ["block3"]


def test_best_layer_ties_go_to_the_first_layer_and_non_scores_have_none():
    from baselens.diagnose.layers import best_layers

    vals = {("net", "layer2"): 0.3, ("net", "layer1"): 0.3, ("net", "layer3"): float("nan")}
    s = pd.concat([_layer_scores(vals), _layer_scores(vals, metric="n_items")])
    metrics = pd.DataFrame({"task": ["replicate_retrieval"] * 2,
                            "metric": ["mean_average_precision", "n_items"],
                            "higher_is_better": True, "metric_kind": ["score", "count"]})
    t = best_layers(s, metrics)
    assert t["metric"].tolist() == ["mean_average_precision"]  # a count has no best layer
    assert t["best_layer"].tolist() == ["layer2"]  # tie: the layer written first; NaN never


# ------------------------------------------------------------------ closest baseline
def _agreement(rows) -> pd.DataFrame:
    return pd.DataFrame([dict(method_a=a, layer_a="default", method_b=b, layer_b="default",
                              spearman=sp, cka=sp / 2, n_perturbations=20)
                         for a, b, sp in rows])


AG_KINDS = {("cell_count", "default"): "baseline", ("pixel_stats", "default"): "baseline",
            ("vit", "default"): "model", ("dino", "default"): "model",
            ("ground_truth", "default"): "reference", ("random", "default"): "null"}


def test_closest_baseline_is_the_baseline_a_model_agrees_most_with():
    from baselens.diagnose.agreement import CLOSEST_BASELINE_COLUMNS, closest_baselines

    ag = _agreement([("cell_count", "vit", 0.9), ("pixel_stats", "vit", 0.5),
                     ("vit", "dino", 0.99),  # another model is no baseline
                     ("ground_truth", "cell_count", 0.3), ("ground_truth", "pixel_stats", 0.8),
                     ("random", "pixel_stats", 0.95),  # a null gets no line
                     ("cell_count", "pixel_stats", 0.97),  # nor does a baseline
                     ("dino", "cell_count", float("nan")), ("dino", "pixel_stats", 0.1)])
    t = closest_baselines(ag, AG_KINDS)
    assert list(t.columns) == CLOSEST_BASELINE_COLUMNS
    got = {r.method: (r.baseline, r.value) for r in t.itertuples()}
    assert got == {"vit": ("cell_count", 0.9), "ground_truth": ("pixel_stats", 0.8),
                   "dino": ("pixel_stats", 0.1)}  # NaN is never closest
    r = t.set_index("method").loc["vit"]
    assert r["measure"] == "spearman" and np.isclose(r["cka"], 0.45)
    # without a Spearman column CKA decides
    c = closest_baselines(ag.drop(columns="spearman"), AG_KINDS).set_index("method")
    assert c.loc["vit", "measure"] == "cka" and c.loc["vit", "baseline"] == "cell_count"
    assert closest_baselines(None, AG_KINDS).empty


# ------------------------------------------------------------------ residualization panels
def _residualized(asis: dict[str, float], kinds: dict[str, str], classes=True) -> pd.DataFrame:
    rows = []
    for m, v in asis.items():
        for conf, keep in (("none", 1.0), ("pixel_stats", 0.9), ("cell_count", 0.5)):
            for p, cls in (("P1", "tox"), ("P2", "tex")):
                rows.append(dict(method=m, method_kind=kinds[m], layer="default", confound=conf,
                                 task="replicate_retrieval", batch_level="NR",
                                 metric="mean_average_precision", perturbation=p,
                                 phenotype_class=cls if classes else "", stratum="",
                                 value=v * keep))
    return pd.DataFrame(rows)


def test_residualization_panels_are_the_strongest_models_then_baselines():
    from baselens.diagnose.confounds import PANEL_COLUMNS, residualization_panels

    asis = {"b1": 0.2, "b2": 0.6, "b3": 0.4, "m1": 0.1, "m2": 0.5, "m3": 0.3, "m4": 0.7,
            "m5": 0.2, "gt": 0.9, "random": 0.05}
    kinds = {m: "baseline" if m[0] == "b" else "model" for m in asis}
    kinds.update(gt="reference", random="null")
    t = residualization_panels(_residualized(asis, kinds),
                               {(m, "default"): k for m, k in kinds.items()})
    assert list(t.columns) == PANEL_COLUMNS
    # the reference, then the 3 strongest models (4 in all), then 2 baselines (6 in all)
    assert t["method"].tolist() == ["gt", "m4", "m2", "m3", "b2", "b3"]
    assert t["panel"].tolist() == list(range(6))
    assert set(t["confound"]) == {"cell_count"}  # preferred over pixel_stats
    assert np.isclose(t.set_index("method").loc["m4", "value"], 0.7)
    # a screen without phenotype classes gets no per-class panels
    assert residualization_panels(_residualized(asis, kinds, classes=False)).empty


# ------------------------------------------------------------------ the report renders them
def test_the_report_names_the_best_layer_and_reference_the_table_names():
    """The table names block3 and the reference's nothing-special layer although block12 and
    the other reference layer score higher: the report draws the table."""
    from baselens.diagnose.layers import best_layers
    from baselens.report.html import render_report

    s = pd.concat([
        _layer_scores({("vit", "block3"): 0.3, ("vit", "block12"): 0.6}),
        _layer_scores({("cell_count", "default"): 0.2}, kind="baseline"),
        _layer_scores({("gt", "layer1"): 0.8, ("gt", "layer2"): 0.9}, kind="reference")])
    t = best_layers(s)
    assert t.set_index("method").loc["vit", "best_layer"] == "block12"
    t.loc[t["method"] == "vit", ["best_layer", "value"]] = ["block3", 0.3]
    t.loc[t["method"] == "gt", ["best_layer", "value"]] = ["layer1", 0.8]
    html = render_report(s, diagnostics={"best_layers": t})
    sec = html[html.index('id="layers"'):html.index('id="classes"')]
    assert ('<td>Replicate retrieval</td><td class="num">layer1 <span class=sd>0.800</span>'
            '</td><td class="num">block3 <span class=sd>0.300</span>') in sec
    assert ">gt/layer1 (reference)<" in sec and "gt/layer2 (reference)" not in sec
    old = render_report(s)
    sec = old[old.index('id="layers"'):old.index('id="classes"')]
    assert "best_layers.parquet</code> is not in this run folder" in sec
    assert "Best layer of each network" not in sec and "(reference)" not in sec


def test_the_report_names_the_closest_baseline_the_table_names():
    from baselens.diagnose.agreement import closest_baselines
    from baselens.report.html import render_report

    s = _scores({"cell_count": 0.6, "pixel_stats": 0.3, "vit": 0.5}, KINDS)
    ag = _agreement([("cell_count", "vit", 0.9), ("pixel_stats", "vit", 0.5),
                     ("cell_count", "pixel_stats", 0.4)])
    c = closest_baselines(ag, AG_KINDS)
    assert c["baseline"].tolist() == ["cell_count"]
    c["baseline"], c["value"] = "pixel_stats", 0.5  # not what the agreement says
    html = render_report(s, diagnostics={"agreement": ag, "closest_baseline": c})
    sec = html[html.index('id="agreement"'):html.index('id="dimensionality"')]
    assert "<strong>vit</strong> agrees most with <strong>pixel_stats</strong> (ρ = 0.50" in sec
    assert "agrees most with <strong>cell_count" not in sec
    old = render_report(s, diagnostics={"agreement": ag})
    sec = old[old.index('id="agreement"'):old.index('id="dimensionality"')]
    assert "agrees most with" not in sec and "closest_baseline.parquet</code> is not" in sec
    assert "<svg" in sec  # the heat maps stay


def test_the_report_draws_the_residualization_panels_the_table_names():
    from baselens.diagnose.confounds import residualization_panels
    from baselens.report.html import render_report

    asis = {"cell_count": 0.6, "pixel_stats": 0.3, "vit": 0.5}
    res = _residualized(asis, KINDS)
    s = _scores(asis, KINDS)
    p = residualization_panels(res, {(m, "default"): k for m, k in KINDS.items()})
    assert p["method"].tolist() == ["vit", "cell_count", "pixel_stats"]
    p = p[p["method"] == "pixel_stats"].assign(confound="pixel_stats", panel=0)
    html = render_report(s, diagnostics={"residualized": res, "residualization_panels": p})
    sec = html[html.index('id="residualization"'):html.index('id="agreement"')]
    assert re.findall(r'<figure id="(resid-[^"]+)"', sec) == ["resid-pixel_stats-default"]
    assert "after residualizing on pixel_stats" in sec
    old = render_report(s, diagnostics={"residualized": res})
    sec = old[old.index('id="residualization"'):old.index('id="agreement"')]
    assert "<figure" not in sec and "residualization_panels.parquet</code> is not" in sec
    assert "Every method and class (mAP as is and residualized)" in sec  # the numbers stay


def test_the_tissue_count_matched_panel_draws_each_method_at_the_layer_the_table_names():
    from baselens.report.html import render_report

    s = pd.concat([
        _tissue_scores({"tissue_count": {"pearson": 0.3, "pearson_count_matched": 0.0},
                        "tissue_points": {"pearson": 0.5, "pearson_count_matched": 0.2}}),
        _tissue_scores({"uni": {"pearson": 0.4, "pearson_count_matched": 0.35}}).assign(
            layer="block6"),
        _tissue_scores({"uni": {"pearson": 0.6, "pearson_count_matched": 0.1}}).assign(
            layer="block12")])
    from baselens.diagnose.run import derived_tables

    tables = {"findings": pd.DataFrame()}
    tables.update(derived_tables(s, None, tables, TISSUE_METHODS))
    bl = tables["best_layers"]
    sel = (bl["method"] == "uni") & (bl["metric"] == "pearson")
    assert bl.loc[sel, "best_layer"].tolist() == ["block12"]
    bl.loc[sel, "best_layer"] = "block6"
    html = render_report(s, diagnostics=tables)
    fig = html[html.index('id="tissue-count-matched-IDC"'):]
    fig = fig[:fig.index("</figure>")]
    assert "uni/block6" in fig and "uni/block12" not in fig
    old = render_report(s, diagnostics={k: v for k, v in tables.items() if k != "best_layers"})
    fig = old[old.index('id="tissue-count-matched-IDC"'):]
    assert fig[:fig.index("</figure>")].count("best_layers.parquet</code> (each method") == 1


def test_the_report_picks_no_maximum_itself():
    """No diagnose chooser is called and no idxmax/idxmin is left in the report."""
    used = {f: [n for n in names if n in ("best_layers", "closest_baselines",
                                          "residualization_panels", "idxmax", "idxmin")]
            for f, names in _report_calls().items()}
    assert not any(used.values()), used
