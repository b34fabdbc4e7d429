"""ComBat (own implementation) and Harmony (optional extra)."""

import numpy as np
import pandas as pd
import pytest

from baselens.profile.batch_correct import combat, combat_array
from baselens.profile.log import FilterLog


def _batches(n_per=(30, 40, 25), d=20, seed=0):
    rng = np.random.default_rng(seed)
    rows, labels, cond = [], [], []
    for b, n in enumerate(n_per):
        shift = rng.normal(0, 2, d)
        scale = rng.uniform(0.5, 2.0, d)
        c = rng.integers(0, 2, n)
        rows.append(rng.normal(0, 1, (n, d)) * scale + shift + c[:, None] * 1.5)
        labels += [f"B{b}"] * n
        cond += list(c)
    df = pd.DataFrame(np.vstack(rows), columns=[f"f{i}" for i in range(d)])
    df.insert(0, "Metadata_Batch", labels)
    df.insert(1, "Metadata_Condition", np.array(cond, dtype=float))
    return df, [f"f{i}" for i in range(d)]


def test_combat_removes_batch_location_and_scale():
    df, feats = _batches()
    out = combat(df, features=feats)
    means = out.groupby("Metadata_Batch")[feats].mean().to_numpy()
    sds = out.groupby("Metadata_Batch")[feats].std().to_numpy()
    before = df.groupby("Metadata_Batch")[feats].mean().to_numpy()
    assert np.ptp(means, axis=0).mean() < 0.15 * np.ptp(before, axis=0).mean()
    assert (np.ptp(sds, axis=0) < np.ptp(df.groupby("Metadata_Batch")[feats].std().to_numpy(), axis=0)).mean() > 0.9


def test_combat_keeps_covariate_effect():
    df, feats = _batches()
    out = combat(df, features=feats, covariates=["Metadata_Condition"])
    eff = out[out.Metadata_Condition == 1][feats].mean() - out[out.Metadata_Condition == 0][feats].mean()
    assert abs(eff.mean() - 1.5) < 0.3


def test_combat_mean_only_known_answer():
    # one feature pattern per batch, identical within-batch noise: mean-only ComBat with
    # t2 from many features shifting by the same amount -> t2 = 0 -> gamma* = gamma_bar
    # = the shift; every batch ends on the grand mean with its noise untouched.
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, (10, 1)) * np.ones((1, 8))
    noise -= noise.mean(0)
    y = np.vstack([noise + 0.0, noise + 3.0])  # batch 1 shifted by 3 on every feature
    codes = np.repeat([0, 1], 10)
    design = np.eye(2)[codes]
    out = combat_array(y, codes, design, mean_only=True)
    np.testing.assert_allclose(out[:10], noise + 1.5, atol=1e-12)
    np.testing.assert_allclose(out[10:], noise + 1.5, atol=1e-12)


def test_combat_reference_batch_rows_unchanged_and_checks():
    df, feats = _batches()
    out = combat(df, features=feats, reference_batch="B1")
    b1 = df.Metadata_Batch == "B1"
    np.testing.assert_array_equal(out.loc[b1, feats].to_numpy(), df.loc[b1, feats].to_numpy())
    df2 = df.copy()
    df2.loc[df2.Metadata_Batch == "B2", "f3"] = 7.0
    log = FilterLog()
    out = combat(df2, features=feats, log=log)
    assert "f3" not in out.columns and log.events[-1].examples == ["f3"]
    one = df.iloc[:31].copy()
    one.loc[30, "Metadata_Batch"] = "lonely"
    with pytest.raises(ValueError, match="mean_only"):
        combat(one, features=feats)
    assert np.isfinite(combat(one, features=feats, mean_only=True)[feats].to_numpy()).all()


def test_combat_equals_neurocombat():
    """neuroCombat (MIT, port of sva::ComBat) as the reference when it is installed."""
    nc = pytest.importorskip("neuroCombat", reason="neuroCombat (MIT, test oracle) not installed")
    df, feats = _batches()
    for mean_only in (False, True):
        theirs = nc.neuroCombat(dat=df[feats].to_numpy().T, covars=df[["Metadata_Batch", "Metadata_Condition"]],
                                batch_col="Metadata_Batch", continuous_cols=["Metadata_Condition"],
                                mean_only=mean_only)["data"].T
        ours = combat(df, features=feats, covariates=["Metadata_Condition"], mean_only=mean_only)
        np.testing.assert_allclose(ours[feats].to_numpy(), theirs, atol=1e-8)


def test_harmony_optional():
    pytest.importorskip("harmonypy")
    from baselens.profile.batch_correct import harmony
    df, feats = _batches(n_per=(60, 60), d=5)
    out = harmony(df, features=feats, max_iter_harmony=5)
    assert out[feats].shape == df[feats].shape and np.isfinite(out[feats].to_numpy()).all()
    gap = lambda t: np.abs(np.diff(t.groupby("Metadata_Batch")[feats].mean().to_numpy(), axis=0)).mean()
    assert gap(out) < gap(df)
