"""run_diagnostics orchestration and the confound helpers, on small hand-built inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.diagnose import confounds as cf
from baselens.diagnose.run import DIAGNOSTICS, ProfileSet, run_diagnostics
from baselens.profile.log import FilterLog


def test_residualize_equals_per_feature_ols():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(50, 2))
    x = 3.0 + c @ rng.normal(size=(2, 4)) + rng.normal(size=(50, 4))
    d = np.column_stack([np.ones(50), c])
    ref = x - d @ np.linalg.lstsq(d, x, rcond=None)[0]
    np.testing.assert_allclose(cf.residualize(x, c), ref, atol=1e-12)
    # constant and duplicated confound columns change nothing
    c2 = np.column_stack([c, np.ones(50), 2 * c[:, 0]])
    np.testing.assert_allclose(cf.residualize(x, c2), ref, atol=1e-12)
    # a feature that is a linear function of the confound is removed entirely
    assert np.abs(cf.residualize(2 * c[:, :1] - 1, c[:, 0])).max() < 1e-12


def _screen(seed=0, n_plates=2):
    """4 perturbations x 2 wells per plate + 4 DMSO wells per plate; A and B kill cells."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_plates):
        k = 0
        for pert, ct, count in [("DMSO", "negcon", 40)] * 4 + [("A", "", 10), ("A", "", 12),
                                ("B", "", 25), ("B", "", 22), ("C", "", 41), ("C", "", 39),
                                ("D", "", 55), ("D", "", 50)]:
            rows.append((f"P{p}", f"W{k:02d}", pert, ct, float(count)))
            k += 1
    meta = pd.DataFrame(rows, columns=["Metadata_Plate", "Metadata_Well",
                                       "Metadata_Perturbation", "Metadata_ControlType",
                                       "Metadata_CellCount"])
    wc = meta[["Metadata_Plate", "Metadata_Well", "Metadata_CellCount"]]
    return meta, wc, rng


def test_cell_count_change_and_strata():
    meta, wc, _ = _screen()
    change = cf.cell_count_change(meta.drop(columns="Metadata_CellCount"), wc)
    assert change.index.tolist() == ["A", "B", "C", "D"]
    assert change["A"] == pytest.approx(np.mean(np.log([10 / 40, 12 / 40])))
    strata = cf.cell_count_strata(change)
    assert strata.to_dict() == {"A": "q4", "B": "q3", "C": "q1", "D": "q2"}
    assert (cf.cell_count_strata(change.iloc[:2]) == "").all()  # too few to bin


def test_cell_count_residualization_on_a_tiny_screen():
    meta, wc, rng = _screen(n_plates=4)
    count = meta["Metadata_CellCount"].to_numpy()
    texture = meta["Metadata_Perturbation"].map({"A": 0, "B": 0, "C": 3, "D": 0, "DMSO": 0})
    x = np.column_stack([np.log(count / 40) * 3, texture, rng.normal(size=(len(meta), 3)) * 0.3])
    prof = pd.concat([meta, pd.DataFrame(x, columns=list("abcde"))], axis=1)
    ps = ProfileSet("m", "model", "default", prof, list("abcde"))
    r = cf.residualized_retrieval([ps], well_cell_counts=wc,
                                  phenotype_classes=pd.Series({"A": "tox", "C": "tex"}))
    assert list(r.columns) == cf.RESIDUALIZED_COLUMNS
    v = r[r.perturbation != cf.STRATUM_MEAN].set_index(["confound", "perturbation"])["value"]
    assert v["none", "A"] > 0.9 and v["cell_count", "A"] < v["none", "A"] - 0.3
    assert v["cell_count", "C"] > 0.9
    assert set(r["confound"]) == {"none", "cell_count"}  # no pixel_stats set: skipped
    assert r.set_index("perturbation").loc["C", "phenotype_class"].iloc[0] == "tex"
    means = r[r.perturbation == cf.STRATUM_MEAN]
    assert len(means) == 8 and set(means["stratum"]) == {"q1", "q2", "q3", "q4"}


def test_run_diagnostics_without_inputs_writes_empty_tables(tmp_path):
    meta, _, rng = _screen()
    prof = pd.concat([meta.drop(columns="Metadata_CellCount"),
                      pd.DataFrame(rng.normal(size=(len(meta), 3)), columns=list("abc"))], axis=1)
    sets = [ProfileSet("a", "baseline", "default", prof, list("abc")),
            ProfileSet("b", "model", "default", prof, list("abc"))]
    scores = pd.DataFrame({"method": ["a", "b"], "method_kind": ["baseline", "model"],
                           "layer": "default", "task": "replicate_retrieval",
                           "batch_level": "NR", "metric": "mean_average_precision",
                           "fold": 0, "seed": 0, "value": [0.3, 0.5], "n": 4, "warning": ""})
    per = pd.DataFrame(columns=["method", "method_kind", "layer", "task", "batch_level",
                                "perturbation", "metric", "value", "fold"])
    log = FilterLog()
    out = run_diagnostics(sets, scores, per, inputs={}, well_cell_counts=None,
                          phenotype_classes=None, out_dir=tmp_path, log=log, strict=True)
    assert list(out) == list(DIAGNOSTICS)
    assert out["assay_confounds"].empty and out["phenotype_classes"].empty
    assert set(out["residualized"]["confound"]) == {"none"}
    b = out["beyond_baseline"].iloc[0]
    assert b["paired_over"] == "fold" and b["n_paired"] == 1
    for name in DIAGNOSTICS:
        back = pd.read_parquet(tmp_path / "diagnostics" / f"{name}.parquet")
        assert list(back.columns) == list(out[name].columns)
    assert (tmp_path / "diagnostics" / "curated_tasks.csv").read_text().startswith("assay,")
    assert any("no bioactivity labels" in e.reason for e in log.events)


def test_a_failing_diagnostic_is_logged_not_fatal(monkeypatch):
    meta, _, rng = _screen()
    prof = pd.concat([meta, pd.DataFrame(rng.normal(size=(len(meta), 3)), columns=list("abc"))],
                     axis=1)
    sets = [ProfileSet("a", "baseline", "default", prof, list("abc"))]
    import baselens.diagnose.agreement as ag

    def boom(*a, **k):
        raise RuntimeError("broken")

    monkeypatch.setattr(ag, "agreement", boom)
    log = FilterLog()
    scores = pd.DataFrame(columns=["method", "method_kind", "task", "metric", "value"])
    out = run_diagnostics(sets, scores, None, inputs={}, well_cell_counts=None,
                          phenotype_classes=None, log=log)
    assert out["agreement"].empty and list(out["agreement"].columns)[:2] == ["method_a", "layer_a"]
    assert any("broken" in e.reason for e in log.events)
    with pytest.raises(RuntimeError):
        run_diagnostics(sets, scores, None, inputs={}, well_cell_counts=None,
                        phenotype_classes=None, strict=True)
