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
    # its Wilcoxon p was against foundation's cell_count, which is no longer the best: dropped
    assert np.isnan(r["wilcoxon_p"])
    gt = bb[(bb["method"] == "ground_truth") & (bb["batch_level"] == "NR")].iloc[0]
    assert gt["best_baseline"] == "baselines:cell_count"


def test_wilcoxon_kept_when_best_baseline_unchanged(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, methods in ((a, [("pixel_stats", "baseline", "default", 0.2)]), (b, USER_RUN)):
        (d / "diagnostics").mkdir(parents=True)
        _scores(methods).to_parquet(d / "scores.parquet")
    from baselens.diagnose.beyond_baseline import beyond_best_baseline

    beyond_best_baseline(_scores(USER_RUN)).assign(
        wilcoxon_p=0.004, n_paired=10, paired_over="perturbations"
    ).to_parquet(b / "diagnostics" / "beyond_baseline.parquet")
    bb = merge_runs([a, b])["beyond_baseline"]
    r = bb[(bb["method"] == "my_fm") & (bb["layer"] == "block12")].iloc[0]
    assert r["best_baseline"] == "cell_count" and r["wilcoxon_p"] == pytest.approx(0.004)


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
    assert "Cell count alone explains <strong>1 of 1</strong>" in html
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
