"""Named profiles, step parsing, apply_profile and MorphoHELM's QC."""

import numpy as np
import pandas as pd
import pytest

from baselens.profile.log import FilterLog
from baselens.profile.protocols import (
    PROFILES, apply_profile, expand_steps, parse_step, qc_cell_count, qc_negcon_distance)


def _wells(seed=0, d=80):
    rng = np.random.default_rng(seed)
    rows = []
    for batch in ("B1", "B2"):
        for plate in (f"{batch}_P1", f"{batch}_P2"):
            for w in range(40):
                ctrl = w < 8
                rows.append({"Metadata_Batch": batch, "Metadata_Plate": plate, "Metadata_Well": f"W{w:02d}",
                             "Metadata_ControlType": "negcon" if ctrl else "",
                             "Metadata_Perturbation": "DMSO" if ctrl else f"p{w % 16}",
                             "Metadata_CellCount": float(rng.integers(50, 400))})
    meta = pd.DataFrame(rows)
    x = rng.normal(size=(len(meta), d)) + (meta["Metadata_Batch"] == "B2").to_numpy()[:, None] * 0.5
    feats = [f"Cells_f{i}" for i in range(d)]
    return pd.concat([meta, pd.DataFrame(x, columns=feats)], axis=1), feats


def test_parse_step_strings_and_tables():
    assert parse_step("pca:64") == ("pca", {"n_components": 64})
    assert parse_step("normalize:mad_robustize:negcon:none") == (
        "normalize", {"method": "mad_robustize", "reference": "negcon", "by": None})
    assert parse_step("feature_select:variance_threshold+blocklist")[1] == {
        "operations": "variance_threshold+blocklist"}
    assert parse_step({"step": "combat", "covariates": ["Metadata_Perturbation"]}) == (
        "combat", {"covariates": ["Metadata_Perturbation"]})
    with pytest.raises(ValueError, match="unknown profile step"):
        parse_step("pcaa:64")
    with pytest.raises(ValueError, match="at most"):
        parse_step("pca:64:all:full:extra")
    assert expand_steps("morphohelm") == PROFILES["morphohelm"]
    assert expand_steps(["profile:morphohelm_noqc", "tvn"])[-1] == "tvn"


def test_morphohelm_profile():
    df, feats = _wells()
    out, f2 = apply_profile(df, feats, "morphohelm_noqc")
    assert f2 == [f"PC{i}" for i in range(1, 65)]
    # MAD-robustized per plate on controls: control medians are 0 on every plate
    ctrl = out[out.Metadata_ControlType == "negcon"]
    med = ctrl.groupby("Metadata_Plate")[f2].median().to_numpy()
    np.testing.assert_allclose(med, 0, atol=1e-9)
    log = FilterLog()
    out, f2 = apply_profile(df, feats, "morphohelm", log)
    stages = [e.stage for e in log.events]
    assert stages[:3] == ["normalize", "pca", "normalize"] and "qc_cell_count" in stages
    qc = next(e for e in log.events if e.stage == "qc_cell_count")
    assert qc.removed == int((df.Metadata_CellCount < df.Metadata_CellCount.quantile(0.05)).sum()) > 0
    assert len(out) == len(df) - qc.removed - next(e for e in log.events if e.stage == "qc_negcon_distance"
                                                    and e.what == "rows").removed


def test_step_list_with_tables_and_baselens_default():
    df, feats = _wells()
    steps = ["normalize:standardize:negcon", "feature_select", "pca:16",
             {"step": "combat", "batch": "Metadata_Batch"}, "tvn:Metadata_Batch"]
    out, f2 = apply_profile(df, feats, steps)
    assert f2 == [f"TVN{i}" for i in range(1, 17)] and np.isfinite(out[f2].to_numpy()).all()
    out, f3 = apply_profile(df, feats, "baselens")
    assert f3 == feats
    with pytest.raises(ValueError, match="unexpected keyword"):
        apply_profile(df, feats, [{"step": "pca", "n_components": 4, "bogus": 1}])


def test_qc_cell_count_threshold():
    df = pd.DataFrame({"Metadata_Well": list("ABCDEFGHIJKLMNOPQRST"),
                       "Metadata_CellCount": np.arange(20.0), "f": 0.0})
    out = qc_cell_count(df, quantile=0.1)  # Q0.1 of 0..19 = 1.9: drops 0 and 1
    assert list(out.Metadata_Well) == list("CDEFGHIJKLMNOPQRST")


def test_qc_negcon_distance_drops_the_odd_batch():
    rng = np.random.default_rng(0)
    base = rng.normal(size=16) + 5
    rows, x = [], []
    for b, noise in (("B1", 0.1), ("B2", 0.1), ("B3", 0.12), ("B4", 3.0)):
        for i in range(6):
            rows.append({"Metadata_Batch": b, "Metadata_ControlType": "negcon"})
            x.append(base + rng.normal(0, noise, 16))
    df = pd.concat([pd.DataFrame(rows), pd.DataFrame(x, columns=[f"f{i}" for i in range(16)])], axis=1)
    log = FilterLog()
    out = qc_negcon_distance(df, max_deviation=0.2, log=log)
    assert sorted(out.Metadata_Batch.unique()) == ["B1", "B2", "B3"]
    assert log.events[-1].removed == 6 and log.events[-1].examples[0].startswith("B4")


# ------------------------------------------------------------------ fit_on and probe warnings
def test_each_step_declares_what_it_is_fitted_on():
    from baselens.profile.protocols import step_fit_on

    assert step_fit_on("normalize:standardize:negcon") == "negcon"
    assert step_fit_on("normalize:standardize:all:Metadata_Plate") == "all"
    assert step_fit_on("pca:64") == "all" and step_fit_on("pca:64:negcon") == "negcon"
    assert step_fit_on("tvn") == "negcon" and step_fit_on("spherize") == "negcon"
    assert step_fit_on("combat") == "all"
    assert step_fit_on({"step": "combat", "covariates": ["Metadata_Perturbation"]}) == "all+perturbation"
    assert step_fit_on("aggregate") == "none" and step_fit_on("qc_negcon_distance") == "negcon"
    # fit_on in a table is the step's reference ...
    assert parse_step({"step": "pca", "n_components": 8, "fit_on": "negcon"}) == (
        "pca", {"n_components": 8, "reference": "negcon"})
    # ... and cannot claim what the step does not do
    with pytest.raises(ValueError, match="cannot be fitted on 'negcon'"):
        parse_step({"step": "combat", "fit_on": "negcon"})
    with pytest.raises(ValueError, match="contradicts"):
        parse_step({"step": "pca", "reference": "all", "fit_on": "negcon"})


def test_probe_warning_names_the_steps_that_see_held_out_wells():
    from baselens.profile.protocols import probe_warning

    assert probe_warning("baselens") == ""          # negcon normalization + validity filters
    assert probe_warning(["normalize:standardize:negcon", "pca:16:negcon", "tvn"]) == ""
    w = probe_warning("morphohelm")
    assert "normalize:standardize:all:Metadata_Plate (all)" in w and "pca:64:all:full (all)" in w
    assert "labels" not in w
    w2 = probe_warning([{"step": "combat", "covariates": ["Metadata_Perturbation"]}])
    assert "perturbation labels" in w2 and "(all+perturbation)" in w2
    assert "correlation_threshold" in probe_warning("pycytominer")  # pycytominer's samples="all"


def test_pipeline_stamps_the_warning_on_grouped_probes_only():
    from baselens.run.units import warn_probes

    frames = [pd.DataFrame({"task": ["knn_probe"] * 2, "warning": ["", "x"]}),
              pd.DataFrame({"task": ["replicate_retrieval"], "warning": [""]})]
    out = warn_probes(frames, {"steps": ["pca:8:all"]})
    assert out[0]["warning"].str.contains("pca:8:all").all() and out[0]["warning"][1].startswith("x; ")
    assert out[1]["warning"].tolist() == [""]
    assert warn_probes(frames, {})[0] is frames[0]  # legacy normalize to negcon: no warning
