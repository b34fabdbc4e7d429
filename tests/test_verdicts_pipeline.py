"""End to end on the synthetic demo screen: the reference beats the best baseline, an
untrained ResNet-50 under a made-up label is a baseline, and the verdicts, declarations,
warnings and fold plans reach run.json and the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from baselens.extract.registry import method_kind
from baselens.run.config import RunConfig
from baselens.run.pipeline import run_pipeline


def test_kind_follows_the_weights_not_the_name():
    assert method_kind("resnet50", {"weights": "random"}) == "baseline"
    assert method_kind("resnet50", {}) == "baseline"  # the default weights are random
    assert method_kind("resnet50", {"weights": "pretrained"}) == "model"
    assert method_kind("resnet50_random", {}) == "baseline"
    assert method_kind("network", {"arch": "vit_small_patch16_224", "weights": "random"}) \
        == "baseline"
    assert method_kind("network", {"arch": "resnet18", "weights": "timm:a1_in1k"}) == "model"
    assert method_kind("openphenom", {"weights": "random"}) == "baseline"
    assert method_kind("openphenom", {"weights": "hub"}) == "model"
    assert method_kind("pixel_stats") == "baseline"
    assert method_kind("random") == "null"
    assert method_kind("ground_truth") == "reference"
    assert method_kind("precomputed", {"path": "x.parquet"}) == "model"


@pytest.mark.slow
def test_demo_screen_verdicts_end_to_end(tmp_path):
    cfg = RunConfig.from_dict({
        "data": {"synthetic": {"preset": "quick", "seed": 0}},  # the quick demo's screen
        "methods": [
            {"name": "pixel_stats"}, {"name": "cell_count"}, {"name": "plate_layout"},
            {"name": "resnet50", "label": "my_foundation_model",
             "params": {"weights": "random", "input_size": 32, "layers": ["layer2"]}},
            {"name": "random"}, {"name": "ground_truth"},
        ],
        "tasks": {"replicate_retrieval": {"null_size": 200},
                  "moa_retrieval": {"null_size": 200},
                  "relationship_recall": {"enabled": False}, "bioactivity": {"enabled": False},
                  "batch_mixing": {"enabled": False}},
        "execution": {"workers": 1},
    })
    res = run_pipeline(cfg, tmp_path, progress=False)
    out = res.out_dir if hasattr(res, "out_dir") else tmp_path

    # untrained networks are baselines, whatever their label
    kinds = res.scores.drop_duplicates("method").set_index("method")["method_kind"]
    assert kinds["my_foundation_model"] == "baseline"
    bb = pd.read_parquet(tmp_path / "beyond_baseline.parquet")
    assert "my_foundation_model" not in set(bb["method"])  # baselines are not compared
    assert set(bb["verdict"]) <= {"beats", "not distinguishable", "worse", "no baseline"}
    # only declared score metrics are compared
    decl = pd.read_parquet(tmp_path / "diagnostics" / "metrics.parquet")
    kinds_of = dict(zip(zip(decl["task"], decl["metric"]), decl["metric_kind"]))
    assert {kinds_of[(t, m)] for t, m in zip(bb["task"], bb["metric"])} == {"score"}
    assert ("knn_probe", "n_unseen_label") in kinds_of and \
        ("knn_probe", "n_unseen_label") not in set(zip(bb["task"], bb["metric"]))

    # the reference beats the best baseline on a task's headline metric …
    head = decl[decl["headline"]]
    gt = bb[(bb["method"] == "ground_truth")].merge(head[["task", "metric"]])
    wins = gt[gt["verdict"] == "beats"]
    assert len(wins), gt[["task", "batch_level", "metric", "p_adjusted", "ci_low", "verdict"]]
    assert (wins["ci_low"] > 0).all() and (wins["p_adjusted"] < 0.05).all()
    # … and the chance-level null never does
    assert not (bb[bb["method"] == "random"]["verdict"] == "beats").any()

    info = json.loads((tmp_path / "run.json").read_text())
    assert isinstance(info["task_warnings"], list)
    assert isinstance(info["fold_plans"], dict)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "This run scored no learned model" in html  # the untrained ResNet is a baseline
    assert "my_foundation_model" in html
    assert "warnings in tasks" in html and "folds" in html
    print("ground_truth beats:", wins[["task", "batch_level", "metric", "difference", "ci_low",
                                       "ci_high", "p_adjusted"]].to_string())
