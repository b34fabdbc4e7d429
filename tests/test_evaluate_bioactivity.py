"""Bioactivity task (Seal et al. 2026): PRG metrics, threshold sweep, and the cell-count pattern.

The screen is built without rendering images (the simulator's layout and realized
latent phenotype): ``n_cells`` per well stands in for the ``cell_count`` extractor and
the ``GT_*`` columns for the ``ground_truth`` reference. The quick preset has ~20
compounds per assay, far too few for the pattern (and for rec. 4), so it is enlarged to
12 plates and ~190 compounds.
"""

import numpy as np
import pytest

from baselens.data import synthetic as S
from baselens.evaluate.bioactivity import (
    auprg,
    balanced_accuracy,
    bioactivity,
    precision_recall_gain_curve,
    threshold_sweep_balanced_accuracy,
)

BIG_SCREEN = dict(batch_effect=0.0, n_batches_per_source=2, n_plates_per_batch=3,
                  n_compound_moas=20, n_compound_singletons=100, n_inert_compounds=20,
                  group_size_max=4, n_gene_complexes=2, n_gene_singletons=4)


def image_free_screen(**overrides):
    """Well table (metadata, GT_* means, n_cells mean) and bioactivity labels, no images."""
    cfg = S.SyntheticConfig.quick(**overrides)
    perts = S.make_perturbations(cfg)
    plates = S.make_plates(cfg)
    layout = S.make_layout(cfg, perts, plates)
    wells, _ = S._technical_parameters(cfg, plates, layout)
    sites = S.realize_site_phenotypes(cfg, wells, plates, perts)
    gt = [c for c in sites.columns if c.startswith("GT_")]
    meta = ["Metadata_Source", "Metadata_Batch", "Metadata_Perturbation"]
    w = sites.groupby(["Metadata_Plate", "Metadata_Well"], sort=True).agg(
        {**{c: "first" for c in meta}, **{c: "mean" for c in gt}, "n_cells": "mean"}
    ).reset_index()
    w = w.merge(layout[["Metadata_Plate", "Metadata_Well", "Metadata_ControlType"]],
                on=["Metadata_Plate", "Metadata_Well"])
    return w, gt, S.make_bioactivity(perts, cfg)


@pytest.fixture(scope="module")
def big():
    return image_free_screen(**BIG_SCREEN)


# ----------------------------------------------------------------- PRG, hand computed
def test_prg_hand_computed_cases():
    # ranking 1,0,1,0 (P = N = 2): points (TP,FP) (1,0) (1,1) (2,1) (2,2) have
    # (recall gain, precision gain) = (0,1) (0,0) (1,0.5) (1,0) -> area 1 * 0.25
    assert auprg([1, 0, 1, 0], [4, 3, 2, 1]) == pytest.approx(0.25)
    # perfect ranking -> 1; constant score -> only the all-positive point -> 0
    assert auprg([1, 1, 0, 0, 0], [5, 4, 3, 2, 1]) == pytest.approx(1.0)
    assert auprg([1, 0, 1, 0], [1, 1, 1, 1]) == pytest.approx(0.0)
    # ranking 0,1,0,0 (P=1, N=3): recall gain jumps from -inf to 1 at (TP,FP)=(1,1);
    # crossing at TP = P²/(P+N) = 1/4, FP = 1: precision gain 1 - (1/3)(1/0.25) = -1/3;
    # (1,1) has precision gain 1 - 1/3 = 2/3 -> area 1 * (-1/3 + 2/3) / 2 = 1/6
    c = precision_recall_gain_curve([0, 1, 0, 0], [4, 3, 2, 1])
    cross = c[c["is_crossing"]].iloc[0]
    assert cross["tp"] == pytest.approx(0.25) and cross["precision_gain"] == pytest.approx(-1 / 3)
    assert auprg([0, 1, 0, 0], [4, 3, 2, 1]) == pytest.approx(1 / 6)
    # order of the rows does not matter, only the scores
    assert auprg([0, 1, 0, 1], [1, 2, 3, 4]) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        auprg([1, 1], [0.2, 0.3])


def test_prg_chance_is_zero_for_any_class_ratio():
    rng = np.random.default_rng(0)
    # (with few positives the spread is wide and skewed low: another reason for rec. 4)
    for n, pi in ((3000, 0.05), (600, 0.3)):
        vals = [auprg(rng.random(n) < pi, rng.random(n)) for _ in range(30)]
        assert abs(np.mean(vals)) < 0.1


def test_balanced_accuracy_and_threshold_sweep():
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.75)
    sweep = threshold_sweep_balanced_accuracy([1, 2, 3, 4], [1, 1, 0, 0])
    assert sweep.attrs["best"] == 1.0 and sweep.attrs["best_threshold"] == 2.0
    assert sweep.set_index("threshold").loc[1.0, "balanced_accuracy"] == pytest.approx(0.75)
    # actives with HIGH values: fixed direction gives BA 0, read as separation 1 (Seal et al. 2026)
    rev = threshold_sweep_balanced_accuracy([1, 2, 3, 4], [0, 0, 1, 1])
    assert rev["balanced_accuracy"].min() == 0.0 and rev.attrs["best"] == 1.0


# ------------------------------------------------------------- Seal et al. 2026 pattern
def _auc(scores, model):
    s = scores[(scores["model"] == model) & scores["metric"].str.startswith("auc_roc:")
               & (scores["assay"] != "")]
    return s.groupby("assay_type")["value"].mean()


def test_cell_count_matches_rich_features_on_viability_only(big):
    wells, gt, labels = big
    cc, _ = bioactivity(wells, ["n_cells"], labels, n_splits=3, models=("logistic", "xgboost"))
    rich, per = bioactivity(wells, gt, labels, n_splits=3, models=("logistic", "xgboost"))
    for model in ("logistic", "xgboost"):
        a_cc, a_rich = _auc(cc, model), _auc(rich, model)
        assert a_cc["viability"] > 0.8 and a_rich["viability"] > 0.8
        assert abs(a_cc["viability"] - a_rich["viability"]) < 0.08   # matches
        assert a_cc["specific"] < 0.62                                  # ~chance
        assert a_rich["specific"] > 0.8                                 # rich features see it
        for s in (cc, rich):  # y-scrambled ~ chance (AUC 0.5, AUPRG 0)
            scr = s[(s["model"] == f"{model}_scrambled") & (s["assay"] != "")]
            assert abs(scr[scr.metric.str.startswith("auc_roc:")]["value"].mean() - 0.5) < 0.1
            assert abs(scr[scr.metric.str.startswith("auprg:")]["value"].mean()) < 0.5
    # aggregated rows: mean over assays and per assay type, one per fold
    agg = rich[rich["metric"] == "auc_roc:xgboost"]
    assert len(agg) == 3 and (agg["n"] == labels["assay"].nunique()).all()
    assert {"auc_roc:xgboost:viability", "auprg:logistic:specific", "auc_pr:xgboost",
            "balanced_accuracy_train_threshold:logistic"} <= set(rich["metric"])
    # contract: unique (batch_level, metric, fold), finite values
    assert not rich.duplicated(["batch_level", "metric", "fold"]).any()
    assert np.isfinite(rich["value"]).all()
    assert set(per["metric"].str.split(":").str[0]) == {"oof_probability"}
    assert per["value"].between(0, 1).all()


def test_small_test_splits_warn_in_the_results(big):
    wells, gt, labels = big
    s, _ = bioactivity(wells, ["n_cells"], labels, n_splits=3, models=("logistic",),
                       scramble=False)
    n_act = s[s["metric"].str.startswith("n_actives_test:")].set_index(["metric", "fold"])["value"]
    flag = s[s["metric"].str.startswith("warning_small_test:")]
    assert len(flag) == len(n_act)
    assert (n_act < 20).any()  # ~13–40 actives per assay over 3 folds
    for r in flag.itertuples():
        assay = r.metric.split(":", 1)[1]
        ina = s[(s.metric == f"n_inactives_test:{assay}") & (s.fold == r.fold)]["value"].iat[0]
        small = min(n_act[(f"n_actives_test:{assay}", r.fold)], ina) < 20
        assert r.value == float(small)
        assert ("rec. 4" in r.warning) == small
    model_rows = s[s["metric"].str.startswith("auc_roc:logistic:specific_")]
    assert model_rows["warning"].str.contains("unreliable").all()
    summary = s[s["metric"] == "n_assays_small_test"]
    assert len(summary) == 3 and (summary["value"] >= 1).all()
    assert any("rec. 4" in w for w in s.attrs["warnings"])


def test_grouped_levels_cross_design_and_skips():
    wells, gt, labels = image_free_screen(batch_effect=0.0, n_compound_moas=6,
                                          n_compound_singletons=30, n_sources=1,
                                          n_plates_per_batch=4)
    s, per = bioactivity(wells, gt, labels, levels=("NR", "NSP", "NSS"), models=("logistic",),
                         n_splits=3, scramble=False)
    assert set(s["batch_level"]) == {"NR", "NSP"}
    assert "Metadata_Source" in s.attrs["skipped_levels"]["NSS"]
    nsp = s[(s.batch_level == "NSP") & (s.metric == "auc_roc:logistic:viability")]
    assert len(nsp) >= 2 and nsp["value"].mean() > 0.7
    # every labelled compound gets an out-of-fold probability per level and assay
    n_comp = labels["Metadata_Perturbation"].nunique()
    oof = per[per.metric == "oof_probability:logistic:viability_1"]
    per_level = oof.groupby("batch_level").size()
    assert (per_level == n_comp).all()


def test_compounds_given_the_training_prevalence_are_counted():
    """Leave-plate-out: every well of plate P1 is inactive, so the fold that holds out P0
    trains on one class and predicts nothing; P0's compounds get the training prevalence,
    and attrs["dropped"] counts them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for c in range(20):
        plate = "P0" if c < 10 else "P1"
        for r in range(3):
            rows.append({"Metadata_Plate": plate, "Metadata_Well": f"W{c:02d}{r}",
                         "Metadata_Perturbation": f"c{c}", "f0": rng.normal(), "f1": rng.normal()})
    wells = pd.DataFrame(rows)
    labels = pd.DataFrame({"Metadata_Perturbation": [f"c{c}" for c in range(20)],
                           "assay": "a", "active": [int(c < 10 and c % 2 == 0) for c in range(20)]})
    s, _ = bioactivity(wells, ["f0", "f1"], labels, levels=("NSP",), models=("logistic",),
                       n_splits=2, scramble=False, min_test_class=1)
    d = s.attrs["dropped"]
    assert len(d) == 1 and d[0]["what"] == "compound predictions"
    assert d[0]["n_removed"] == 10 and d[0]["n_kept"] == 10
    assert "training prevalence" in d[0]["reason"] and "NSP" in d[0]["reason"]
    assert "leave-plate-out" in s.attrs["fold_plan"]["NSP"]
