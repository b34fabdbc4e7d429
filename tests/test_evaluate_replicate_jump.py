"""replicate_retrieval(protocol="jump"): the JUMP profiling recipe's negcon mAP, equal to
copairs 0.5.5 run exactly as broadinstitute/jump-profiling-recipe does
(``preprocessing/metrics.py``: ``average_precision_negcon`` then ``mean_average_precision``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.replicate_retrieval import replicate_retrieval

copairs_map = pytest.importorskip("copairs.map", reason="copairs (test oracle) not installed")

PERT = "Metadata_Perturbation"


def recipe_map(df: pd.DataFrame, feats: list[str], null_size: int, seed: int = 0) -> pd.DataFrame:
    """The recipe's code path with copairs (poscons dropped, 2..1000 replicates, every
    negcon its own id, negatives on the query's plate)."""
    meta = df[[PERT, "Metadata_Plate", "Metadata_ControlType"]].astype(str).copy()
    meta["Metadata_pert_type"] = np.where(meta["Metadata_ControlType"] == "negcon", "negcon", "trt")
    ix = (meta["Metadata_ControlType"] != "poscon").to_numpy().copy()
    counts = meta.loc[ix, PERT].value_counts()
    valid = set(counts[counts.between(2, 1000)].index) | set(meta.loc[meta.Metadata_pert_type == "negcon", PERT])
    ix &= meta[PERT].isin(valid).to_numpy()
    meta, vals = meta[ix].reset_index(drop=True), df.loc[ix, feats].to_numpy(dtype=np.float64)
    neg = (meta["Metadata_pert_type"] == "negcon").to_numpy()
    meta.loc[neg, PERT] = [f"negcon_{i}" for i in range(int(neg.sum()))]
    ap = copairs_map.average_precision(meta, vals, pos_sameby=[PERT], pos_diffby=[],
                                       neg_sameby=["Metadata_Plate"],
                                       neg_diffby=["Metadata_pert_type", PERT], batch_size=20000,
                                       progress_bar=False)
    ap = ap.query('Metadata_pert_type!="negcon"')
    return copairs_map.mean_average_precision(ap, [PERT], threshold=0.05, null_size=null_size,
                                              seed=seed, progress_bar=False)


def _p_values_agree(ours, ref, null_size, z_max=5.0):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    p = np.clip((ours + ref) / 2, 1.0 / null_size, 1 - 1.0 / null_size)
    z = np.abs(ours - ref) / np.sqrt(2 * p * (1 - p) / null_size)
    assert z.max() < z_max, f"p-values differ beyond Monte-Carlo error (max z={z.max():.1f})"


def _multi_plate(seed=0):
    """4 plates, DMSO on each, compounds replicated across plates, one poscon per plate,
    and plate effects so that same-plate negatives differ from screen-wide ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(4):
        for w in range(20):
            pert = "DMSO" if w < 4 else ("poscon_A" if w == 4 else f"c{(w + p) % 9}")
            rows.append({"Metadata_Plate": f"P{p}", "Metadata_Well": f"W{w:02d}", PERT: pert,
                         "Metadata_ControlType": {"DMSO": "negcon", "poscon_A": "poscon"}.get(pert, "")})
    df = pd.DataFrame(rows)
    feats = [f"f{i}" for i in range(6)]
    eff = {q: rng.normal(size=6) * 0.8 for q in df[PERT].unique()}
    plate = {q: rng.normal(size=6) for q in df["Metadata_Plate"].unique()}
    df[feats] = (np.stack([eff[q] for q in df[PERT]]) + np.stack([plate[q] for q in df.Metadata_Plate])
                 + rng.normal(size=(len(df), 6)))
    return df, feats


def _ours(df, feats, protocol, null_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, per = replicate_retrieval(df, feats, protocol=protocol, null_size=null_size, seed=0)
    return s, per.pivot(index="perturbation", columns="metric", values="value")


def test_jump_protocol_equals_the_recipe_with_copairs():
    df, feats = _multi_plate()
    ref = recipe_map(df, feats, null_size=2000).set_index(PERT).sort_index()
    s, got = _ours(df, feats, "jump", 2000)
    assert "poscon_A" not in got.index  # the recipe leaves positive controls out
    got = got.loc[ref.index]
    np.testing.assert_allclose(got["mean_average_precision"], ref["mean_average_precision"], atol=1e-12)
    # the null's random stream differs from copairs' (baselens.metrics): p within MC error
    _p_values_agree(got["p_value"], ref["p_value"], 2000)
    # ... and differs from the default rule (negatives from every plate)
    _, default = _ours(df, feats, "negcon", 2000)
    assert not np.allclose(default.loc[ref.index, "mean_average_precision"], ref["mean_average_precision"])
    # NSP contradicts "negatives on the query's plate": skipped with the reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s2, _ = replicate_retrieval(df, feats, protocol="jump", null_size=50, batch_level=["NR", "NSP"])
    assert set(s2.batch_level) == {"NR"} and "contradicts" in s2.attrs["skipped_batch_levels"]["NSP"]


def test_jump_protocol_on_the_real_lincs_plate(realdata):
    path = realdata / "profiles/lincs_SQ00015054_normalized_feature_select.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not in BASELENS_TEST_DATA")
    raw = pd.read_csv(path, low_memory=False)
    feats = [c for c in raw.columns if not c.startswith("Metadata_")]
    df = raw[feats].copy()
    df[PERT] = raw["Metadata_broad_sample"].fillna("DMSO").astype(str)
    df["Metadata_Plate"] = raw["Metadata_Plate"].astype(str)
    df["Metadata_Well"] = raw["Metadata_Well"].astype(str)
    df["Metadata_ControlType"] = np.where(df[PERT] == "DMSO", "negcon", "")
    ref = recipe_map(df, feats, null_size=1000).set_index(PERT).sort_index()
    _, got = _ours(df, feats, "jump", 1000)
    got = got.loc[ref.index]
    np.testing.assert_allclose(got["mean_average_precision"], ref["mean_average_precision"], atol=1e-9)
    _p_values_agree(got["p_value"], ref["p_value"], 1000)
    assert (got["mean_average_precision"] > 0).all() and len(got) == 58


def test_unknown_protocol_and_missing_plate_fail_with_the_options():
    df, feats = _multi_plate()
    with pytest.raises(ValueError, match="'jump'"):
        replicate_retrieval(df, feats, protocol="JUMP")
    with pytest.raises(ValueError, match="Metadata_Plate"):
        replicate_retrieval(df.drop(columns="Metadata_Plate"), feats, protocol="jump")
