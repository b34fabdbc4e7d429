"""Batch-effect levels: exact copairs rules, availability, and per-level equality with copairs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.batch_levels import (
    LEVELS,
    allowed_candidates,
    apply_level,
    levels_available,
)
from baselens.evaluate.replicate_retrieval import replicate_retrieval
from baselens.metrics import average_precision

copairs_map = pytest.importorskip("copairs.map", reason="copairs (test oracle) not installed")

PERT = "Metadata_Perturbation"


def screen(n_sources=2, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sources):
        for b in range(2):
            for p in range(2):
                for w in range(16):
                    pert = "DMSO" if w < 5 else f"c{w % 6}"
                    rows.append({"Metadata_Source": f"s{s}", "Metadata_Batch": f"s{s}b{b}",
                                 "Metadata_Plate": f"s{s}b{b}p{p}",
                                 "Metadata_Well": f"W{(w + 3 * p + b) % 16:02d}",
                                 PERT: pert,
                                 "Metadata_ControlType": "negcon" if pert == "DMSO" else ""})
    df = pd.DataFrame(rows)
    feats = [f"f{i}" for i in range(8)]
    eff = {p: rng.normal(size=8) for p in df[PERT].unique()}
    x = rng.normal(size=(len(df), 8)) + np.stack([eff[p] for p in df[PERT]])
    # quantize: exact ties exercise the tie-breaking
    df[feats] = np.round(x, 1)
    return df, feats


def morphohelm_mask(meta, level, q):
    """MorphoHELM's definition: drop candidates sharing the restricted attribute(s)."""
    n = len(meta)
    keep = np.ones(n, dtype=bool)
    keep[q] = False
    cols = {"NSP": ["Metadata_Plate"], "NSB": ["Metadata_Batch"], "NSS": ["Metadata_Source"],
            "NSL": ["Metadata_Well"], "NSSL": ["Metadata_Source", "Metadata_Well"]}.get(level, [])
    for c in cols:  # shares ANY restricted attribute -> removed
        keep &= meta[c].to_numpy() != meta[c].to_numpy()[q]
    if level == "SP":
        keep &= meta["Metadata_Plate"].to_numpy() == meta["Metadata_Plate"].to_numpy()[q]
    return keep


@pytest.mark.parametrize("level", list(LEVELS))
def test_level_rules_equal_morphohelm_candidate_removal(level):
    df, _ = screen()
    meta = df.reset_index(drop=True)
    mask = allowed_candidates(meta, level, np.arange(len(meta)))
    for q in range(0, len(meta), 7):
        assert np.array_equal(mask[q], morphohelm_mask(meta, level, q))


@pytest.mark.parametrize("level", list(LEVELS))
def test_replicate_retrieval_each_level_equals_copairs(level):
    df, feats = screen()
    negcon = (df["Metadata_ControlType"] == "negcon").to_numpy()
    meta = df[[PERT, "Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"]].copy()
    meta["ref"] = np.where(negcon, np.arange(len(df)), -1)
    rules = apply_level([PERT, "ref"], [], [], [PERT, "ref"], level=level)
    x = df[feats].to_numpy()
    try:
        ref = copairs_map.average_precision(meta, x, **rules, progress_bar=False)
    except Exception as exc:  # copairs raises when a level leaves no pairs
        with pytest.raises(ValueError):
            average_precision(meta, x, **rules)
        pytest.skip(f"no pairs at {level}: {exc}")
    ours = average_precision(meta, x, **rules)
    ref = ref.sort_index()
    np.testing.assert_array_equal(ours["n_pos_pairs"], ref["n_pos_pairs"])
    np.testing.assert_array_equal(ours["n_total_pairs"], ref["n_total_pairs"])
    np.testing.assert_allclose(ours["average_precision"], ref["average_precision"], atol=1e-9,
                               equal_nan=True)
    # and the task reports the same per-perturbation mAP (mean of the treated queries' AP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, per = replicate_retrieval(df, feats, null_size=50, batch_level=level)
    if scores.empty:
        return
    got = per[per.metric == "mean_average_precision"].set_index("perturbation")["value"]
    want = ref[(~negcon) & (ref["n_pos_pairs"] > 0)].groupby(PERT)["average_precision"].mean()
    np.testing.assert_allclose(got.sort_index(), want.sort_index(), atol=1e-9)
    assert set(scores["batch_level"]) == {level}


def test_levels_available_reports_reasons():
    df, _ = screen(n_sources=1)
    av = levels_available(df).set_index("batch_level")
    assert not av.loc["NSS", "available"] and "single source" in av.loc["NSS", "reason"]
    assert not av.loc["NSSL", "available"]
    assert av.loc[["NR", "SP", "NSP", "NSB", "NSL"], "available"].all()
    av2 = levels_available(df.drop(columns="Metadata_Well")).set_index("batch_level")
    assert av2.loc["NSL", "reason"] == "column Metadata_Well is missing"


def test_unformable_levels_are_skipped_with_reason_not_silently():
    df, feats = screen(n_sources=1)
    with pytest.warns(UserWarning, match="NSS skipped"):
        scores, _ = replicate_retrieval(df, feats, null_size=20, batch_level="all")
    assert "NSS" not in set(scores["batch_level"])
    assert "single source" in scores.attrs["skipped_batch_levels"]["NSS"]
    assert {"NR", "NSP", "NSB", "NSL"} <= set(scores["batch_level"])


def test_default_is_nr_and_old_signature_works():
    df, feats = screen()
    scores, per = replicate_retrieval(df, feats, null_size=50)
    assert set(scores["batch_level"]) == {"NR"}
    assert list(scores["metric"]) == ["mean_average_precision", "fraction_retrieved"]
    assert {"perturbation", "metric", "value"} <= set(per.columns)


def test_jump_poscon_protocol_folds_and_equality():
    df, feats = screen()
    df = df.copy()
    df.loc[df[PERT].isin(["c0", "c1", "c2"]), "Metadata_ControlType"] = "poscon"
    scores, per = replicate_retrieval(df, feats, null_size=50, protocol="jump_poscon", n_folds=2)
    assert sorted(scores["fold"].unique()) == [0, 1]
    assert set(per["perturbation"]) == {"c0", "c1", "c2"}
    # fold 0 equals copairs on that fold's positive-control wells (replicates vs other controls)
    from baselens.evaluate.replicate_retrieval import assign_plate_folds
    pos = df[df["Metadata_ControlType"] == "poscon"]
    f = assign_plate_folds(pos, 2, 0)
    sub = pos[(f == 0).to_numpy()]
    ref = copairs_map.average_precision(sub[[PERT]], sub[feats].to_numpy(), [PERT], [], [], [PERT],
                                        progress_bar=False)
    want = ref.groupby(PERT)["average_precision"].mean()
    got = per[(per.fold == 0) & (per.metric == "mean_average_precision")].set_index("perturbation")["value"]
    np.testing.assert_allclose(got.sort_index(), want.sort_index(), atol=1e-9)
    # every fold holds plates of every source
    assert pos.assign(f=f.to_numpy()).groupby("f")["Metadata_Source"].nunique().min() == 2
