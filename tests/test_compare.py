"""``baselens compare``: two small hand-made runs merged into one report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.run.cli import main
from baselens.run.compare import compare_runs, merge_runs


def _scores(methods, level_values=None):
    rows = []
    for method, kind, layer, v in methods:
        for level in ["NR", "NSB"]:
            for fold in range(2):
                rows.append(dict(method=method, method_kind=kind, layer=layer,
                                 task="replicate_retrieval", batch_level=level,
                                 metric="mean_average_precision", fold=fold, seed=0,
                                 value=v * (1 if level == "NR" else 0.7) + 0.001 * fold, n=10,
                                 warning=""))
    return pd.DataFrame(rows)


def _per_pert(methods):
    rows = []
    for i in range(10):
        for method, kind, layer, v in methods:
            rows.append(dict(method=method, method_kind=kind, layer=layer,
                             task="replicate_retrieval", batch_level="NR",
                             perturbation=f"P{i}", metric="mean_average_precision",
                             value=float(np.clip(v + 0.03 * (i - 5), 0, 1)), fold=0))
    return pd.DataFrame(rows)


BASE_RUN = [("cell_count", "baseline", "default", 0.40), ("pixel_stats", "baseline",
                                                          "default", 0.30),
            ("ground_truth", "reference", "default", 0.90)]
USER_RUN = [("cell_count", "baseline", "default", 0.38), ("my_fm", "model", "block12", 0.55),
            ("my_fm", "model", "block6", 0.45)]


@pytest.fixture
def runs(tmp_path):
    a, b = tmp_path / "baselines", tmp_path / "foundation"
    for d, methods in ((a, BASE_RUN), (b, USER_RUN)):
        (d / "diagnostics").mkdir(parents=True)
        _scores(methods).to_parquet(d / "scores.parquet")
        _per_pert(methods).to_parquet(d / "per_perturbation.parquet")
    # diagnostics in one run only; agreement names methods in two columns
    from baselens.diagnose.beyond_baseline import beyond_best_baseline

    bb = beyond_best_baseline(_scores(USER_RUN)).assign(wilcoxon_p=0.004, n_paired=10,
                                                        paired_over="perturbations")
    bb.to_parquet(b / "diagnostics" / "beyond_baseline.parquet")
    pd.DataFrame([dict(method_a="cell_count", layer_a="default", method_b="my_fm",
                       layer_b="block12", spearman=0.4, cka=0.3, n_perturbations=10)]
                 ).to_parquet(b / "diagnostics" / "agreement.parquet")
    pd.DataFrame([dict(assay="tox", assay_type="viability", n_actives=10, n_inactives=40,
                       t_statistic=-5.0, p_value=1e-4, cell_count_balanced_accuracy=0.9,
                       threshold=0.7, predictable_by_cell_count=True)]
                 ).to_parquet(a / "diagnostics" / "assay_confounds.parquet")
    return a, b


def test_merge_prefixes_only_colliding_methods(runs):
    a, b = runs
    t = merge_runs([a, b])
    s = t["scores"]
    assert set(s["method"]) == {"baselines:cell_count", "foundation:cell_count", "pixel_stats",
                                "ground_truth", "my_fm"}
    assert set(s["run"]) == {"baselines", "foundation"}
    assert (s.loc[s["method"] == "my_fm", "run"] == "foundation").all()
    assert len(s) == len(_scores(BASE_RUN)) + len(_scores(USER_RUN))
    pp = t["per_perturbation"]
    assert set(pp["method"]) == set(s["method"]) and "run" in pp.columns
    ag = t["agreement"]
    assert ag.iloc[0]["method_a"] == "foundation:cell_count" and ag.iloc[0]["method_b"] == "my_fm"
    assert list(t["assay_confounds"]["run"]) == ["baselines"]


def test_beyond_baseline_is_recomputed_over_all_runs(runs):
    a, b = runs
    bb = merge_runs([a, b])["beyond_baseline"]
    r = bb[(bb["method"] == "my_fm") & (bb["layer"] == "block12") & (bb["batch_level"] == "NR")]
    r = r.iloc[0]
    # the best baseline now comes from the other run: baselines:cell_count (0.40 > 0.38)
    assert r["best_baseline"] == "baselines:cell_count"
    assert r["improvement"] == pytest.approx(0.55 - 0.40, abs=2e-3)
    # the paired test is recomputed against the merged best baseline, over the 10
    # perturbations both runs scored (not carried from the run it was computed in)
    assert r["paired_over"] == "perturbation" and r["n_paired"] == 10
    assert r["wilcoxon_p"] == pytest.approx(2 / 2 ** 10)  # all 10 differences positive
    assert r["verdict"] == "beats" and r["ci_low"] > 0
    gt = bb[(bb["method"] == "ground_truth") & (bb["batch_level"] == "NR")].iloc[0]
    assert gt["best_baseline"] == "baselines:cell_count"


def test_source_run_tests_are_not_carried_into_the_merge(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, methods in ((a, [("pixel_stats", "baseline", "default", 0.2)]), (b, USER_RUN)):
        (d / "diagnostics").mkdir(parents=True)
        _scores(methods).to_parquet(d / "scores.parquet")
    from baselens.diagnose.beyond_baseline import beyond_best_baseline

    beyond_best_baseline(_scores(USER_RUN)).assign(
        wilcoxon_p=0.004, n_paired=10, paired_over="perturbations", verdict="beats"
    ).to_parquet(b / "diagnostics" / "beyond_baseline.parquet")
    bb = merge_runs([a, b])["beyond_baseline"]
    r = bb[(bb["method"] == "my_fm") & (bb["layer"] == "block12")].iloc[0]
    # without per-perturbation values the merge pairs over 2 folds, which no test can call
    # significant: the source's stored "beats" must not survive
    assert r["best_baseline"] == "cell_count" and r["paired_over"] == "fold"
    assert r["wilcoxon_p"] != pytest.approx(0.004)
    assert r["verdict"] == "not distinguishable"


def test_compare_cli_writes_tables_and_report(runs, tmp_path, capsys):
    a, b = runs
    out = tmp_path / "merged"
    assert main(["compare", str(a), str(b), "--out", str(out), "--title", "FM vs baselines"]) == 0
    assert "report:" in capsys.readouterr().out
    for name in ["scores.parquet", "per_perturbation.parquet", "report.html",
                 "diagnostics/beyond_baseline.parquet", "diagnostics/agreement.parquet",
                 "diagnostics/assay_confounds.parquet"]:
        assert (out / name).is_file(), name
    s = pd.read_parquet(out / "scores.parquet")
    assert "run" in s.columns and "foundation:cell_count" in set(s["method"])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>FM vs baselines</title>" in html
    assert "foundation:cell_count" in html and "baselines:cell_count" in html
    assert "my_fm" in html and 'id="agreement"' in html
    assert "Cell count alone predicts 1 of 1 bioactivity assays" in html
    assert (out / "diagnostics" / "findings.parquet").is_file()
    # inputs untouched
    assert not (a / "report.html").exists() and not (b / "report.html").exists()


def test_compare_refuses_bad_input(runs, tmp_path, capsys):
    a, b = runs
    assert main(["compare", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
    assert "no scores.parquet" in capsys.readouterr().err
    with pytest.raises(ValueError, match="one of the runs"):
        compare_runs([a, b], a)


def test_same_folder_names_stay_apart(tmp_path):
    a, b = tmp_path / "x" / "run", tmp_path / "y" / "run"
    for d in (a, b):
        d.mkdir(parents=True)
        _scores(BASE_RUN[:1]).to_parquet(d / "scores.parquet")
    s = merge_runs([a, b])["scores"]
    assert set(s["run"]) == {"x/run", "y/run"}
    assert set(s["method"]) == {"x/run:cell_count", "y/run:cell_count"}


# ----------------------------------------------------------------- same screen or not
def _run_with_screen(d, methods, perts, wells=None, tasks=("replicate_retrieval",)):
    d.mkdir(parents=True)
    s = _scores(methods)
    extra = [s.assign(task=t) for t in tasks if t != "replicate_retrieval"]
    pd.concat([s, *extra], ignore_index=True).to_parquet(d / "scores.parquet")
    wells = wells or [f"A{i + 1:02d}" for i in range(len(perts))]
    pd.DataFrame({"Metadata_Plate": "P1", "Metadata_Well": wells,
                  "Metadata_Perturbation": perts, "Metadata_ControlType": ""}
                 ).to_parquet(d / "screen.parquet")
    return d


def test_compare_refuses_runs_of_different_screens(tmp_path, capsys):
    a = _run_with_screen(tmp_path / "lincs", BASE_RUN, ["DMSO", "c1", "c2", "c3"])
    b = _run_with_screen(tmp_path / "jump", USER_RUN, ["DMSO", "c1", "k9", "k8"])
    with pytest.raises(ValueError, match=r"different perturbations \(4 vs 4; 2 only in lincs, "
                                         r"e\.g\. c2, c3; 2 only in jump, e\.g\. k8, k9\)"):
        merge_runs([a, b])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "--allow-different-screens" in err and "not the same screen" in err
    assert not (tmp_path / "m" / "report.html").exists()


def test_well_level_tasks_need_the_same_wells(tmp_path):
    perts = ["DMSO", "c1", "c2"]
    a = _run_with_screen(tmp_path / "a", BASE_RUN, perts, tasks=("replicate_retrieval", "knn_probe"))
    b = _run_with_screen(tmp_path / "b", USER_RUN, perts, wells=["B01", "B02", "B03"],
                         tasks=("replicate_retrieval", "knn_probe"))
    with pytest.raises(ValueError, match=r"different wells .* well-level task\(s\) knn_probe"):
        merge_runs([a, b])
    # the same perturbations on other wells are fine when no well-level task is shared
    c = _run_with_screen(tmp_path / "c", USER_RUN, perts, wells=["B01", "B02", "B03"])
    assert set(merge_runs([a, c])["scores"]["run"]) == {"a", "c"}


def test_same_screen_is_merged_and_names_the_baselines_run(tmp_path):
    perts = ["DMSO", "c1", "c2"]
    a = _run_with_screen(tmp_path / "baselines", BASE_RUN, perts)
    b = _run_with_screen(tmp_path / "foundation", USER_RUN, perts)
    bb = merge_runs([a, b])["beyond_baseline"]
    r = bb[(bb["method"] == "my_fm") & (bb["layer"] == "block12") & (bb["batch_level"] == "NR")]
    assert r.iloc[0]["best_baseline"] == "baselines:cell_count"
    assert r.iloc[0]["baseline_run"] == "baselines"


def test_override_compares_each_run_with_its_own_baselines(tmp_path):
    a = _run_with_screen(tmp_path / "lincs", BASE_RUN, ["DMSO", "c1"])
    b = _run_with_screen(tmp_path / "jump", USER_RUN, ["DMSO", "k1"])
    t = merge_runs([a, b], allow_different_screens=True)
    # every method carries its run
    assert all(":" in m for m in t["scores"]["method"])
    bb = t["beyond_baseline"]
    fm = bb[(bb["method"] == "jump:my_fm") & (bb["layer"] == "block12")
            & (bb["batch_level"] == "NR")].iloc[0]
    # lincs' cell_count (0.40) is the better baseline overall, but not of this screen
    assert fm["best_baseline"] == "jump:cell_count" and fm["baseline_run"] == "jump"
    assert fm["improvement"] == pytest.approx(0.55 - 0.38, abs=2e-3)
    gt = bb[(bb["method"] == "lincs:ground_truth") & (bb["batch_level"] == "NR")].iloc[0]
    assert gt["baseline_run"] == "lincs"
    out = tmp_path / "m"
    assert main(["compare", str(a), str(b), "--out", str(out), "--allow-different-screens"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "different screens" in html and "jump:my_fm" in html


def test_merged_verdicts_follow_the_merged_best_baseline(tmp_path):
    perts = ["DMSO", "c1", "c2"]
    b = _run_with_screen(tmp_path / "b", USER_RUN, perts)
    from baselens.diagnose.beyond_baseline import beyond_best_baseline

    (b / "diagnostics").mkdir()
    beyond_best_baseline(_scores(USER_RUN)).assign(
        verdict="beats", p_adjusted=0.01, ci_low=0.1, ci_high=0.2
    ).to_parquet(b / "diagnostics" / "beyond_baseline.parquet")
    # a baseline from the other run now wins: the source verdict no longer applies
    a2 = _run_with_screen(tmp_path / "a2", [("pixel_stats", "baseline", "default", 0.5)], perts)
    bb = merge_runs([a2, b])["beyond_baseline"]
    r = bb[(bb["method"] == "my_fm") & (bb["layer"] == "block12")].iloc[0]
    assert r["best_baseline"] == "pixel_stats" and r["baseline_run"] == "a2"
    assert r["verdict"] != "beats"
