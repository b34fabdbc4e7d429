"""The one task registry: every metric a task writes is declared (name, direction, kind)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate import TASKS as EXPORTED
from baselens.evaluate.registry import (
    KINDS,
    TASKS,
    Metric,
    headline_metric,
    item_metric_spec,
    metric_spec,
    metrics_table,
)
from baselens.profile.log import FilterLog
from baselens.run.tasks import _tasks, count_warnings, run_tasks


def synthetic_profiles(seed: int = 0):
    """A small screen: 4 plates in 2 batches / 2 sources, 24 compounds in 6 MoAs, each
    compound in one well per plate (random positions), 8 DMSO wells per plate; features =
    MoA signal + compound signal + plate offset + noise. Also the task inputs."""
    rng = np.random.default_rng(seed)
    n_comp, n_moa, n_feat = 24, 6, 16
    moa_sig = rng.normal(0, 1.0, (n_moa, n_feat))
    comp_sig = rng.normal(0, 0.7, (n_comp, n_feat))
    rows, x = [], []
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    for p in range(4):
        plate_off = rng.normal(0, 0.3, n_feat)
        pos = rng.permutation(len(wells))
        for i in range(n_comp + 8):
            negcon = i >= n_comp
            rows.append({"Metadata_Plate": f"P{p}", "Metadata_Batch": f"B{p // 2}",
                         "Metadata_Source": f"S{p % 2}", "Metadata_Well": wells[pos[i]],
                         "Metadata_Perturbation": "DMSO" if negcon else f"c{i}",
                         "Metadata_ControlType": "negcon" if negcon else "",
                         "Metadata_moa": "" if negcon else f"m{i % n_moa}"})
            sig = 0 if negcon else moa_sig[i % n_moa] + comp_sig[i]
            x.append(sig + plate_off + rng.normal(0, 0.8, n_feat))
    feats = [f"f{j}" for j in range(n_feat)]
    prof = pd.concat([pd.DataFrame(rows), pd.DataFrame(np.asarray(x), columns=feats)], axis=1)
    comps = [f"c{i}" for i in range(n_comp)]
    pairs = pd.DataFrame([(a, b) for i, a in enumerate(comps) for b in comps[i + 1:]
                          if int(a[1:]) % n_moa == int(b[1:]) % n_moa],
                         columns=["entity1", "entity2"]).assign(source="moa")
    bio = pd.DataFrame([{"Metadata_Perturbation": c, "assay": f"a{k}", "assay_type": "viability",
                         "active": int((int(c[1:]) + k) % 3 == 0)}
                        for c in comps for k in range(2)])
    targets = prof[["Metadata_Plate", "Metadata_Well"]].assign(
        t0=prof["f0"] + rng.normal(0, 0.5, len(prof)), t1=rng.normal(0, 1, len(prof)))
    return prof, feats, {"pairs": pairs, "bioactivity": bio, "targets": targets}


@pytest.fixture(scope="module")
def scored():
    prof, feats, inputs = synthetic_profiles()
    cfg = {name: {"enabled": True} for name in _tasks()}
    cfg["replicate_retrieval"]["null_size"] = 100
    cfg["moa_retrieval"]["null_size"] = 100
    cfg["morphohelm"]["moa_col"] = "Metadata_moa"
    cfg["morphohelm"]["n_resamples"] = 20
    cfg["control_retrieval"] = {"enabled": False}  # needs JUMP positive controls
    log, record = FilterLog(), {}
    scores, per = run_tasks(prof, feats, inputs, cfg, log, "synthetic", record=record)
    return pd.concat(scores, ignore_index=True), pd.concat(per, ignore_index=True), record


def test_every_metric_a_task_writes_is_declared(scored):
    scores, per, _ = scored
    ran = set(scores["task"])
    assert ran >= {"replicate_retrieval", "moa_retrieval", "relationship_recall", "knn_probe",
                   "bioactivity", "regression_probe", "batch_mixing", "morphohelm"}
    for task, metric in set(zip(scores["task"], scores["metric"])):
        m = metric_spec(task, metric)  # raises for an undeclared metric
        assert m.kind in KINDS
    for task, metric in set(zip(per["task"], per["metric"])):
        item_metric_spec(task, metric)
    # every task's headline was written
    for task in ran:
        assert headline_metric(task) in set(scores.loc[scores["task"] == task, "metric"])


def test_declared_kinds_of_the_metrics_that_must_never_be_beaten():
    assert metric_spec("knn_probe", "n_unseen_label").kind == "count"
    assert metric_spec("bioactivity", "n_actives_test:viability_1").kind == "count"
    assert metric_spec("knn_probe", "chance_accuracy").kind == "chance"
    assert metric_spec("batch_mixing", "batch_classification_chance").kind == "chance"
    assert metric_spec("bioactivity", "auc_roc:logistic_scrambled").kind == "null"
    assert metric_spec("bioactivity", "auprg:xgboost_scrambled:viability").kind == "null"
    assert metric_spec("bioactivity", "warning_small_test:a1").kind == "flag"
    r = metric_spec("relationship_recall", "recall_0.05_0.95:CORUM")
    assert (r.kind, r.higher_is_better, r.name) == ("score", True, "recall_0.05_0.95:CORUM")
    assert metric_spec("bioactivity", "auc_roc:logistic").kind == "score"
    assert not metric_spec("batch_mixing", "silhouette_batch").higher_is_better
    with pytest.raises(KeyError, match="does not declare"):
        metric_spec("knn_probe", "made_up")
    with pytest.raises(KeyError, match="unknown task"):
        metric_spec("nope", "accuracy")
    with pytest.raises(ValueError, match="kind"):
        Metric("x", True, "bogus")


def test_one_registry():
    assert EXPORTED is TASKS
    assert set(_tasks()) == {n for n, s in TASKS.items() if s.pipeline == "cell_painting"}
    assert TASKS["gene_expression"].pipeline == "tissue"
    import baselens.report.html as html
    import baselens.run.tasks as rt

    for gone in ("MAIN_METRIC", "DEFAULTS", "ENABLED_BY_DEFAULT"):
        assert not hasattr(rt, gone)
    assert not hasattr(html, "MAIN_METRIC")


def test_metrics_table_for_the_report():
    t = metrics_table([("knn_probe", "macro_f1"), ("knn_probe", "n_unseen_label"),
                       ("IDC", "pearson"), ("mystery", "score_x")],
                      task_alias={"IDC": "gene_expression"})
    t = t.set_index(["task", "metric"])
    assert t.loc[("knn_probe", "macro_f1"), "headline"]
    assert t.loc[("knn_probe", "macro_f1"), "paired_with"] == "correct|accuracy"
    assert t.loc[("knn_probe", "n_unseen_label"), "metric_kind"] == "count"
    assert t.loc[("IDC", "pearson"), "declared_task"] == "gene_expression"
    assert t.loc[("IDC", "pearson"), "headline"]
    assert not t.loc[("mystery", "score_x"), "declared"]


def test_warnings_are_counted_not_swallowed(scored):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("lbfgs failed to converge at NSB", RuntimeWarning)
        warnings.warn("lbfgs failed to converge at NSB", RuntimeWarning)
        warnings.warn("knn_probe: batch level NSS skipped: one source", UserWarning)
        warnings.warn("precision is ill-defined", UserWarning)
    c = count_warnings(caught)
    assert c[0] == {"batch_level": "NSB", "category": "RuntimeWarning",
                    "message": "lbfgs failed to converge at NSB", "count": 2}
    assert [w["message"] for w in c] == ["lbfgs failed to converge at NSB",
                                         "precision is ill-defined"]
    assert c[1]["batch_level"] == "all"
    _, _, record = scored
    assert isinstance(record.get("warnings", []), list)


def test_task_drops_become_filter_log_entries(monkeypatch):
    import baselens.run.tasks as rt

    def fake(profiles, features, **kw):
        s = pd.DataFrame({"metric": ["macro_f1"], "value": [0.5], "n": [3], "fold": [0],
                          "batch_level": ["NR"]})
        s.attrs["dropped"] = [{"what": "wells", "n_removed": 4, "n_kept": 10,
                               "reason": "label below min_per_label"}]
        s.attrs["fold_plan"] = "5 folds grouped by Metadata_Perturbation"
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        warnings.warn("did not converge", ConvergenceWarning)
        return s, pd.DataFrame(columns=["perturbation", "metric", "value"])

    monkeypatch.setattr(rt, "_tasks", lambda: {"knn_probe": fake})
    prof, feats, _ = synthetic_profiles()
    log, record = FilterLog(), {}
    rt.run_tasks(prof, feats, {}, {"knn_probe": {"label": "Metadata_moa"}}, log, "m/l",
                 record=record)
    ev = [e for e in log.to_records() if e["reason"] == "label below min_per_label"]
    assert ev and ev[0]["removed"] == 4 and ev[0]["kept"] == 10 and ev[0]["stage"] == "m/l: knn_probe"
    assert record["fold_plans"] == [{"method": "m/l", "task": "knn_probe",
                                     "fold_plan": "5 folds grouped by Metadata_Perturbation"}]
    assert record["warnings"][0]["category"] == "ConvergenceWarning"
    assert record["warnings"][0]["count"] == 1 and record["warnings"][0]["task"] == "knn_probe"
