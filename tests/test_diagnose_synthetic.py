"""Diagnostics on the synthetic ground-truth screen: the planted truth comes back.

One small pipeline run (cheap extractors only), then ``run_diagnostics`` on its profiles.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from baselens.diagnose.run import DIAGNOSTICS, ProfileSet, run_diagnostics
from baselens.extract.registry import get_spec
from baselens.profile.log import FilterLog
from baselens.run.config import RunConfig
from baselens.run.pipeline import run_pipeline
from baselens.run.units import profile_wells, well_cell_counts

pytestmark = pytest.mark.slow

SCREEN = {  # = tests/test_pipeline.py GROUND_TRUTH_SCREEN
    "preset": "quick", "batch_effect": 0.0, "image_size": 112, "cells_per_site": 35,
    "sites_per_well": 2, "n_negcon_per_plate": 8, "n_gene_complexes": 6,
    "n_compound_moas": 4, "group_size_max": 4,
}
OFF = {"enabled": False}


@pytest.fixture(scope="module")
def diag(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag_synthetic")
    cfg = RunConfig.from_dict({
        "data": {"synthetic": SCREEN},
        "methods": [{"name": "cell_count"}, {"name": "pixel_stats"}, {"name": "pixel_mean"},
                    {"name": "ground_truth"}, {"name": "random"}],
        "tasks": {"replicate_retrieval": {"null_size": 200, "batch_level": ["NR"]},
                  "moa_retrieval": OFF, "relationship_recall": OFF, "knn_probe": OFF,
                  "bioactivity": OFF, "regression_probe": OFF, "batch_mixing": OFF},
        "execution": {"workers": 1},
    })
    res = run_pipeline(cfg, out, progress=False)
    # the pipeline's profiles, rebuilt from its cached features
    feats = {}
    for man in sorted((out / "features").glob("*.json")):
        info = json.loads(man.read_text())
        if "method" not in info or "layers" not in info:
            continue  # not a method's manifest (e.g. the extraction plan)
        feats[man.stem] = (info["method"]["name"],
                           {layer: pd.read_parquet(out / "features" / f)
                            for layer, f in info["layers"]})
    wc = well_cell_counts({k: v for k, (_, v) in feats.items()})
    log = FilterLog()
    sets = []
    for label, (name, layers) in feats.items():
        for layer, df in layers.items():
            p, f = profile_wells(df, {}, log, f"{label}/{layer}", wc)
            sets.append(ProfileSet(label, get_spec(name).kind, layer, p, list(f)))
    gt = out / "data" / "ground_truth"
    classes = (pd.read_parquet(gt / "perturbations.parquet")
               .set_index("Metadata_Perturbation")["Metadata_PhenotypeClass"])
    tables = run_diagnostics(sets, res.scores, res.per_perturbation,
                             inputs={"bioactivity": pd.read_parquet(gt / "bioactivity.parquet")},
                             well_cell_counts=wc, phenotype_classes=classes,
                             out_dir=out / "again", log=log, strict=True)
    return out, res, tables, classes


def _class_map(r, method, confound, cls):
    sel = r[(r.method == method) & (r.confound == confound) & (r.phenotype_class == cls)]
    assert len(sel), (method, confound, cls)
    return sel["value"].mean()


def test_residualizing_on_cell_count_removes_cytotoxic_not_texture(diag):
    _, _, t, _ = diag
    r = t["residualized"]
    r = r[r.perturbation != "(stratum mean)"]
    for method in ("ground_truth", "pixel_stats", "cell_count"):
        before = _class_map(r, method, "none", "cytotoxic")
        after = _class_map(r, method, "cell_count", "cytotoxic")
        print(f"{method} cytotoxic mAP {before:.2f} -> {after:.2f} after cell count removal")
        assert before > 0.6 and after < 0.35 and before - after > 0.45
    before = _class_map(r, "ground_truth", "none", "texture")
    after = _class_map(r, "ground_truth", "cell_count", "texture")
    print(f"ground_truth texture mAP {before:.2f} -> {after:.2f}")
    assert before > 0.8 and after > 0.8
    # the intensity signal of pixel_stats survives cell count removal
    assert _class_map(r, "pixel_stats", "cell_count", "intensity") > 0.6
    # ... but not removal of pixel_stats from a pixel representation
    assert _class_map(r, "pixel_mean", "pixel_stats", "intensity") < 0.35
    assert not ((r.method == "pixel_stats") & (r.confound == "pixel_stats")).any()


def test_unresidualized_rows_equal_the_pipeline_scores(diag):
    _, res, t, _ = diag
    r = t["residualized"]
    r = r[(r.confound == "none") & (r.perturbation != "(stratum mean)")]
    per = res.per_perturbation
    per = per[(per.task == "replicate_retrieval") & (per.metric == "mean_average_precision")
              & (per.batch_level == "NR")]
    m = r.merge(per, on=["method", "layer", "perturbation"], suffixes=("", "_pipe"))
    assert len(m) == len(r) > 100
    np.testing.assert_allclose(m["value"], m["value_pipe"], atol=1e-12)


def test_matched_strata_and_classes(diag):
    _, _, t, _ = diag
    r = t["residualized"]
    s = r[(r.perturbation == "(stratum mean)") & (r.confound == "none")]
    cc = s[s.method == "cell_count"].set_index("stratum")["value"]
    assert list(cc.index) == ["q1", "q2", "q3", "q4"]
    assert cc["q4"] > cc["q1"] + 0.4  # cell count only retrieves the strongest count changes
    gt = s[s.method == "ground_truth"].set_index("stratum")["value"]
    assert gt["q1"] > 0.6  # ground truth retrieves at matched (low) cytotoxicity too
    pc = t["phenotype_classes"]
    assert list(pc.columns) == ["method", "method_kind", "layer", "phenotype_class",
                                "batch_level", "metric", "value", "n"]
    v = pc[(pc.batch_level == "NR")].set_index(["method", "phenotype_class"])["value"]
    assert v["cell_count", "cytotoxic"] > 0.6 and v["cell_count", "texture"] < 0.25
    assert v["pixel_stats", "intensity"] > 0.6
    assert v["ground_truth", "texture"] > 0.8


def test_tables_written_with_their_columns(diag):
    out, _, t, _ = diag
    d = out / "again" / "diagnostics"
    for name in DIAGNOSTICS:
        back = pd.read_parquet(d / f"{name}.parquet")
        assert list(back.columns) == list(t[name].columns), name
        assert len(back) == len(t[name]) > 0, name
    assert (d / "curated_tasks.csv").exists()
    b = t["beyond_baseline"]
    row = b[(b.method == "ground_truth") & (b.task == "replicate_retrieval")
            & (b.metric == "mean_average_precision")].iloc[0]
    assert row["paired_over"] == "perturbation" and row["n_paired"] > 30
    assert row["beats_best_baseline"] and row["wilcoxon_p"] < 0.01
    a = t["agreement"]
    assert np.allclose(a[a.method_a == a.method_b][["spearman", "cka"]], 1.0)
    dim = t["dimensionality"]
    er = dim[(dim.metric == "effective_rank")].set_index("method")["value"]
    assert er["random"] > er["cell_count"]
    ac = t["assay_confounds"]
    assert set(ac["assay_type"]) == {"viability", "specific"}
    assert not ac.loc[ac.assay_type == "specific", "predictable_by_cell_count"].any()
