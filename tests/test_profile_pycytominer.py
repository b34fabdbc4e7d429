"""Equality with pycytominer 1.7.1 (BSD-3, test oracle only) on the real LINCS plate.

pycytominer fits ONE scaler on the whole table, so our side runs with ``by=None`` (one
plate here anyway). It infers features from Cells_/Nuclei_/Cytoplasm_ prefixes; we pass
the same explicit list to both.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.profile.aggregate import consensus
from baselens.profile.feature_select import feature_select, load_blocklist
from baselens.profile.log import FilterLog
from baselens.profile.normalize import normalize
from baselens.profile.transform import spherize

pytestmark = pytest.mark.realdata
pycytominer = pytest.importorskip("pycytominer")

DMSO = "Metadata_broad_sample == 'DMSO'"


@pytest.fixture(scope="module")
def plate():
    root = os.environ.get("BASELENS_TEST_DATA")
    if not root:
        pytest.skip("BASELENS_TEST_DATA is unset (point it at the shared realdata folder)")
    path = Path(root) / "profiles" / "lincs_SQ00015054_normalized_feature_select.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found under BASELENS_TEST_DATA")
    df = pd.read_csv(path)
    feats = [c for c in df.columns if c.startswith(("Cells_", "Nuclei_", "Cytoplasm_"))]
    ctrl = np.where(df["Metadata_broad_sample"] == "DMSO", "negcon", "")
    df = pd.concat([pd.DataFrame({"Metadata_ControlType": ctrl}, index=df.index), df], axis=1)
    return df, feats


@pytest.fixture(scope="module")
def raw_plate(plate):
    """The plate made to exercise every filter: NaNs, a near-constant feature, blocklisted
    names (copies of real columns), and a duplicated (r = 1) feature."""
    df, feats = plate
    df = df.copy()
    rng = np.random.default_rng(0)
    extra = {}
    for i, name in enumerate(load_blocklist()[:4]):
        extra[name] = df[feats[10 + i]].to_numpy() + rng.normal(0, 1e-3, len(df))
    extra["Cells_Test_NearConstant"] = 1.0 + rng.normal(0, 1e-4, len(df))
    extra["Nuclei_Test_Duplicate"] = 2.0 * df[feats[0]].to_numpy() + 1.0
    na = df[feats[1]].to_numpy().copy()
    na[rng.choice(len(df), 30, replace=False)] = np.nan  # 7.8 % NaN > 5 %
    extra["Cytoplasm_Test_Missing"] = na
    few = df[feats[2]].to_numpy().copy()
    few[rng.choice(len(df), 10, replace=False)] = np.nan  # 2.6 % NaN: kept
    extra["Cytoplasm_Test_FewMissing"] = few
    df = pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1)
    return df, feats + list(extra)


def _max_diff(a, b, cols):
    return float(np.abs(a[cols].to_numpy(dtype=float) - b[cols].to_numpy(dtype=float)).max())


@pytest.mark.parametrize("method", ["standardize", "robustize", "mad_robustize"])
@pytest.mark.parametrize("reference,samples", [("all", "all"), ("negcon", DMSO)])
def test_normalize_equals_pycytominer(plate, method, reference, samples):
    df, feats = plate
    theirs = pycytominer.normalize(df, features=feats, method=method, samples=samples)
    ours = normalize(df, method=method, reference=reference, by=None, features=feats)
    assert [f for f in feats if f in ours.columns] == feats  # nothing dropped on this plate
    assert _max_diff(theirs, ours, feats) < 1e-12
    # the per-plate path is the same on a single plate
    per_plate = normalize(df, method=method, reference=reference, features=feats)
    assert _max_diff(per_plate, ours, feats) == 0.0


def test_spherize_equals_pycytominer(plate):
    df, feats = plate
    # 24 DMSO wells < 454 features: exercises the n <= d padding of the singular values
    theirs = pycytominer.normalize(df, features=feats, method="spherize", samples=DMSO)
    ours = spherize(df, features=feats, method="ZCA-cor", reference="negcon")
    scale = float(np.abs(theirs[feats].to_numpy()).max())
    assert _max_diff(theirs, ours, feats) < 1e-12 * max(scale, 1.0) * 10


@pytest.mark.parametrize("operation,kwargs", [
    ("variance_threshold", {}),
    ("drop_na_columns", {}),
    ("blocklist", {}),
    ("correlation_threshold", {}),
    ("correlation_threshold", {"corr_threshold": 0.7}),
    ("frequency_threshold", {"freq_cut": 0.1, "unique_cut": 0.1}),
])
def test_feature_select_equals_pycytominer(raw_plate, operation, kwargs):
    df, feats = raw_plate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pycytominer.feature_select(df, features=feats, operation=operation, **kwargs)
    log = FilterLog()
    ours = feature_select(df, features=feats, operations=[operation], log=log, **kwargs)
    assert list(ours.columns) == list(theirs.columns)
    removed = len(df.columns) - len(ours.columns)
    assert removed > 0  # every operation has something to remove on this table
    assert log.events[-1].removed == removed


def test_feature_select_chain_and_samples_equal_pycytominer(raw_plate):
    df, feats = raw_plate
    ops = ["variance_threshold", "correlation_threshold", "drop_na_columns", "blocklist"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pycytominer.feature_select(df, features=feats, operation=ops, samples=DMSO)
    ours = feature_select(df, features=feats, operations=ops, reference="negcon")
    assert list(ours.columns) == list(theirs.columns)


def test_modz_consensus_equals_pycytominer(plate):
    df, feats = plate
    sub = df[df["Metadata_broad_sample"].isin(df["Metadata_broad_sample"].unique()[:40])]
    keys = ["Metadata_broad_sample", "Metadata_mmoles_per_liter"]
    theirs = pycytominer.consensus(sub, replicate_columns=keys, operation="modz", features=feats)
    ours = consensus(sub, by=keys, operation="modz", features=feats)
    assert (theirs[keys[0]].to_numpy() == ours[keys[0]].to_numpy()).all()
    assert _max_diff(theirs, ours, feats) < 1e-12
