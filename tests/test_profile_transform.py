"""PCA, sphering and TVN: against sklearn, efaar-benchmarking and the defining properties."""

import sys
import types

import numpy as np
import pandas as pd
import pytest

from baselens.profile.log import FilterLog
from baselens.profile.transform import pca, pca_fit, spherize, tvn


def _table(n=120, d=6, seed=0, batches=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = np.repeat(np.arange(batches), n // batches)
    x = x + b[:, None] * rng.normal(0, 2, d)  # a per-batch shift
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(d)])
    df.insert(0, "Metadata_Batch", [f"B{i}" for i in b])
    df.insert(1, "Metadata_ControlType", np.where(np.arange(n) % 3 == 0, "negcon", ""))
    df.insert(2, "Metadata_Perturbation", np.where(np.arange(n) % 3 == 0, "DMSO", [f"p{i % 7}" for i in range(n)]))
    return df, [f"f{i}" for i in range(d)]


def test_pca_equals_sklearn_full_solver_and_is_deterministic():
    from sklearn.decomposition import PCA
    df, feats = _table()
    log = FilterLog()
    out = pca(df, 4, features=feats, log=log)
    ref = PCA(4, svd_solver="full").fit_transform(df[feats].to_numpy())
    np.testing.assert_allclose(out[[f"PC{i}" for i in range(1, 5)]].to_numpy(), ref, atol=1e-10)
    assert "Metadata_Batch" in out.columns and "f0" not in out.columns
    assert log.events[-1].kept == 4 and log.events[-1].removed == 2
    # the covariance solver gives the same projection (same sign convention)
    mean, comps, _ = pca_fit(df[feats].to_numpy(), 4, "covariance_eigh")
    np.testing.assert_allclose((df[feats].to_numpy() - mean) @ comps.T, ref, atol=1e-8)
    # more components than exist: all kept, shortfall logged
    out = pca(df, 64, features=feats, log=log)
    assert [c for c in out.columns if c.startswith("PC")] == [f"PC{i}" for i in range(1, 7)]
    assert "only 6 exist" in log.events[-1].reason


@pytest.mark.parametrize("method", ["ZCA", "ZCA-cor", "PCA", "PCA-cor"])
def test_spherize_whitens_the_fitting_rows(method):
    df, feats = _table(n=300, d=5)
    out = spherize(df, features=feats, method=method, reference="all", epsilon=0.0)
    cols = [c for c in out.columns if not c.startswith("Metadata_")]
    cov = np.cov(out[cols].to_numpy(), rowvar=False)
    np.testing.assert_allclose(cov, np.eye(5), atol=1e-8)
    if method.startswith("ZCA"):
        assert cols == feats


def test_spherize_rejects_constant_and_dependent_features():
    df, feats = _table(n=50, d=4)
    df["f3"] = 1.0
    with pytest.raises(ValueError, match="constant"):
        spherize(df, features=feats, method="ZCA-cor", reference="all")
    df["f3"] = df["f0"] + df["f1"]
    with pytest.raises(ValueError, match="not full rank"):
        spherize(df, features=feats, method="ZCA", reference="all")


@pytest.fixture(scope="module")
def efaar_tvn():
    """efaar-benchmarking's efaar module imports scvi at top level; stub it for the import."""
    pytest.importorskip("sklearn")
    saved = {k: sys.modules.get(k) for k in ("scvi", "scvi.model")}
    scvi = types.ModuleType("scvi")
    scvi.model = types.ModuleType("scvi.model")
    scvi.model.SCVI = object
    sys.modules.update({"scvi": scvi, "scvi.model": scvi.model})
    try:
        mod = pytest.importorskip("efaar_benchmarking.efaar")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod.tvn_on_controls


@pytest.mark.parametrize("coral", [False, True])
def test_tvn_equals_efaar(efaar_tvn, coral):
    df, feats = _table(n=240, d=6, batches=3)
    theirs = efaar_tvn(df[feats].to_numpy(), df, "Metadata_Perturbation", "DMSO",
                       "Metadata_Batch" if coral else None)
    out = tvn(df, features=feats, coral_by="Metadata_Batch" if coral else None)
    ours = out[[f"TVN{i}" for i in range(1, 7)]].to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_tvn_controls_become_standard_and_null_space_is_dropped():
    df, feats = _table(n=60, d=30, batches=2)  # 20 controls < 30 features
    log = FilterLog()
    out = tvn(df, features=feats, log=log)
    cols = [c for c in out.columns if c.startswith("TVN")]
    assert len(cols) == 19  # rank of 20 centred controls
    assert log.events[-1].removed == 11
    ctrl = out.loc[df["Metadata_ControlType"] == "negcon", cols].to_numpy()
    np.testing.assert_allclose(ctrl.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(np.cov(ctrl, rowvar=False, ddof=0), np.eye(19), atol=1e-6)


def test_pca_on_few_controls_keeps_n_controls_minus_one_components():
    """3 control wells, 10 features: centred controls span 2 directions, so at most 2
    components (a third had zero control variance and normalize scaled it to ~1e15)."""
    from baselens.profile.normalize import normalize

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(12, 10)), columns=[f"f{i}" for i in range(10)])
    df.insert(0, "Metadata_Plate", "P1")
    df.insert(1, "Metadata_ControlType", ["negcon"] * 3 + [""] * 9)
    log = FilterLog()
    out = pca(df, 64, reference="negcon", log=log)
    pcs = [c for c in out.columns if c.startswith("PC")]
    assert pcs == ["PC1", "PC2"]
    ev = log.events[-1]
    assert (ev.stage, ev.kept, ev.removed) == ("pca", 2, 8)
    assert "capped at 2 = 3 negcon rows - 1" in ev.reason
    normed = normalize(out, features=pcs, log=log)
    # 12 rows of unit-normal features projected on unit vectors, scaled by the controls'
    # std: bounded far below the ~1e15 of the zero-variance component
    assert np.abs(normed[pcs].to_numpy()).max() < 1e3
    np.testing.assert_allclose(normed.loc[:2, pcs].std(ddof=0), 1.0)
    with pytest.raises(ValueError, match="need ≥ 2"):
        pca(df.assign(Metadata_ControlType=["negcon"] + [""] * 11), 4, reference="negcon")
