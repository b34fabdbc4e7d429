"""Known answers for baselens.diagnose.agreement (Spearman of similarity rankings, CKA)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group, spearmanr

from baselens.diagnose.agreement import (
    agreement,
    linear_cka,
    perturbation_matrix,
    similarity_ranking_spearman,
)
from baselens.diagnose.run import ProfileSet


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_cka_identity_rotation_scale_is_one():
    x = _rng().normal(size=(60, 8))
    q = ortho_group.rvs(8, random_state=1)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 3.5 * x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x + 7.0) == pytest.approx(1.0, abs=1e-12)  # centering


def test_cka_matches_feature_space_formula_and_noise_is_near_zero():
    rng = _rng(2)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 4))
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(ref, rel=1e-10)
    # independent representations: ≈ 0 (bias ~ sqrt(p q) / n)
    a, b = rng.normal(size=(3000, 5)), rng.normal(size=(3000, 5))
    assert linear_cka(a, b) < 0.01
    # a not-orthogonal linear map is not invariant
    assert linear_cka(a, a * np.array([10, 1, 1, 1, 1])) < 0.9


def test_spearman_of_similarity_rankings():
    rng = _rng(3)
    x = rng.normal(size=(30, 10))
    q = ortho_group.rvs(10, random_state=4)
    assert similarity_ranking_spearman(x, x) == pytest.approx(1.0)
    assert similarity_ranking_spearman(x, 2 * x @ q) == pytest.approx(1.0)  # cosine invariant
    y = rng.normal(size=(30, 10))
    # equals scipy's Spearman on the upper-triangle cosine similarities
    def cos(m):
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        return (m @ m.T)[np.triu_indices(len(m), 1)]
    ref = spearmanr(cos(x), cos(y)).statistic
    assert similarity_ranking_spearman(x, y) == pytest.approx(ref, abs=1e-12)
    assert abs(ref) < 0.15


def _ps(name, x, perts, layer="default"):
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    df.insert(0, "Metadata_Perturbation", perts)
    df.insert(1, "Metadata_ControlType", ["negcon" if p == "DMSO" else "" for p in perts])
    return ProfileSet(name, "baseline", layer, df, [f"f{i}" for i in range(x.shape[1])])


def test_agreement_table_over_profile_sets():
    rng = _rng(5)
    perts = [f"P{i:02d}" for i in range(20) for _ in range(2)] + ["DMSO"] * 6
    x = rng.normal(size=(len(perts), 6))
    a = _ps("a", x, perts)
    b = _ps("b", x @ ortho_group.rvs(6, random_state=6), perts)
    c = _ps("c", rng.normal(size=(len(perts), 6)), perts)
    out = agreement([a, b, c])
    assert list(out.columns) == ["method_a", "layer_a", "method_b", "layer_b", "spearman",
                                 "cka", "n_perturbations"]
    assert len(out) == 6  # upper triangle with the diagonal
    assert (out["n_perturbations"] == 20).all()  # controls left out
    row = out[(out.method_a == "a") & (out.method_b == "b")].iloc[0]
    assert row["spearman"] == pytest.approx(1.0) and row["cka"] == pytest.approx(1.0)
    diag = out[out.method_a == out.method_b]
    assert np.allclose(diag[["spearman", "cka"]].to_numpy(), 1.0)
    row = out[(out.method_a == "a") & (out.method_b == "c")].iloc[0]
    assert abs(row["spearman"]) < 0.3
    # perturbation profiles are means of the treated wells
    pm = perturbation_matrix(a.profiles, a.features)
    assert pm.shape == (20, 6)
    np.testing.assert_allclose(pm.loc["P00"].to_numpy(), x[:2].mean(0))
    # different perturbation sets: compared on the shared ones
    d = _ps("d", x[:20], perts[:20])
    out = agreement([a, d], include_diagonal=False)
    assert out["n_perturbations"].tolist() == [10]
    assert out["cka"].iat[0] == pytest.approx(1.0)
