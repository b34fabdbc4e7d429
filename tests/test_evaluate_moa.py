"""MoA retrieval: multilabel AP vs copairs' multilabel AP, hand-built cases, real LINCS data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.moa_retrieval import moa_retrieval
from baselens.metrics import average_precision, multilabel_average_precision

multilabel = pytest.importorskip("copairs.map.multilabel", reason="copairs (test oracle) not installed")
PERT = "Metadata_Perturbation"


def toy(seed=0, n=72):
    rng = np.random.default_rng(seed)
    moas = [["a"], ["b"], ["a", "b"], ["c"], ["b", "c"], ["d"]]
    cpd = rng.integers(0, 12, n)
    meta = pd.DataFrame({PERT: [f"c{c}" for c in cpd], "Metadata_Plate": rng.integers(0, 3, n).astype(str),
                         "rid": np.arange(n)})
    meta["moa"] = [moas[c % 6] for c in cpd]
    x = rng.normal(size=(n, 8)) + rng.normal(size=(12, 8))[cpd]
    return meta, np.round(x, 1)


def test_per_label_equals_copairs_multilabel():
    meta, x = toy()
    for extra in ([], ["Metadata_Plate"]):
        ref = multilabel.average_precision(meta, x, ["moa"], [PERT, *extra], [], ["moa", *extra], "moa",
                                           progress_bar=False)
        ours = multilabel_average_precision(meta, x, "moa", pos_diffby=[PERT, *extra],
                                            neg_diffby=extra, mode="per_label")
        m = ref.merge(ours, on=["rid", "moa"], suffixes=("_r", "_o"))
        assert len(m) == len(ref) == len(ours)
        for c in ("n_pos_pairs", "n_total_pairs"):
            np.testing.assert_array_equal(m[c + "_r"].astype(int), m[c + "_o"].astype(int))
        for c in ("average_precision", "normalized_average_precision"):
            np.testing.assert_allclose(m[c + "_r"], m[c + "_o"], atol=1e-9)


def test_any_mode_hand_built():
    # query q=[a,b]; partners: p1 [a] sim .9, n1 [c] sim .8, p2 [b] sim .7, n2 [d] sim .1
    meta = pd.DataFrame({PERT: ["q", "p1", "n1", "p2", "n2"], "moa": ["a|b", "a", "c", "b", "d"]})
    ang = np.arccos([1.0, 0.9, 0.8, 0.7, 0.1])
    x = np.c_[np.cos(ang), np.sin(ang)]
    out = multilabel_average_precision(meta, x, "moa", pos_diffby=[PERT], mode="any")
    # ranks: p1 (1), n1, p2 (3) -> AP = (1/1 + 2/3) / 2
    assert out.loc[0, "average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert out.loc[0, "n_pos_pairs"] == 2 and out.loc[0, "n_total_pairs"] == 4


def test_single_label_any_equals_plain_average_precision():
    meta, x = toy()
    meta["m1"] = [m[0] for m in meta["moa"]]
    ours = multilabel_average_precision(meta, x, "m1", pos_diffby=[PERT], mode="any", sep=None)
    ref = average_precision(meta, x, ["m1"], [PERT], [], ["m1"])
    np.testing.assert_allclose(ours["average_precision"], ref["average_precision"], atol=1e-12,
                               equal_nan=True)


def test_task_levels_and_aggregate():
    meta, x = toy()
    df = meta.assign(Metadata_ControlType="", moa=["|".join(m) for m in meta["moa"]],
                     Metadata_Batch="b" + meta["Metadata_Plate"])
    feats = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"]
    df[feats] = x
    scores, per = moa_retrieval(df, feats, moa_col="moa", batch_level=["NR", "NSP"], null_size=50)
    assert set(scores.batch_level) == {"NR", "NSP"}
    assert set(per.metric) == {"mean_average_precision", "p_value", "corrected_p_value"}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        s2, _ = moa_retrieval(df, feats, moa_col="moa", aggregate="perturbation",
                              batch_level=["NR", "NSP"], null_size=50)
    assert set(s2.batch_level) == {"NR"} and "NSP" in s2.attrs["skipped_batch_levels"]


def test_lincs_moa_retrieval_equals_copairs():
    root = os.environ.get("BASELENS_TEST_DATA")
    if not root:
        pytest.skip("BASELENS_TEST_DATA is not set (real LINCS plate unavailable)")
    path = Path(root) / "profiles" / "lincs_SQ00015054_normalized_feature_select.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} missing")
    df = pd.read_csv(path)
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    df = df[df["Metadata_moa"].notna() & (df["Metadata_broad_sample"] != "DMSO")].reset_index(drop=True)
    df = df.assign(Metadata_Perturbation=df["Metadata_broad_sample"], Metadata_ControlType="")
    scores, per = moa_retrieval(df, feats, moa_col="Metadata_moa", multilabel_mode="per_label",
                                null_size=100)
    meta = df[[PERT, "Metadata_moa"]].copy()
    meta["Metadata_moa"] = meta["Metadata_moa"].str.split("|")
    ref = multilabel.average_precision(meta, df[feats].to_numpy(), ["Metadata_moa"], [PERT], [],
                                       ["Metadata_moa"], "Metadata_moa", progress_bar=False)
    ref = ref[ref["n_pos_pairs"] > 0]
    want = ref.groupby(PERT)["average_precision"].mean()
    got = per[per.metric == "mean_average_precision"].set_index("perturbation")["value"]
    np.testing.assert_allclose(got.sort_index(), want.sort_index(), atol=1e-9)
    assert 0 < scores.loc[scores.metric == "mean_average_precision", "value"].iloc[0] < 1
