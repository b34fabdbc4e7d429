"""Known answers for baselens.diagnose.dimensionality on hand-built spectra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.diagnose.dimensionality import dimensionality, singular_values, spectrum_metrics
from baselens.diagnose.run import ProfileSet


def test_flat_spectrum():
    m = spectrum_metrics([2.0, 2.0, 2.0, 2.0])
    assert m["effective_rank"] == pytest.approx(4.0)
    assert m["participation_ratio"] == pytest.approx(4.0)
    assert m["n_components_90"] == 4
    assert m["top1_variance"] == pytest.approx(0.25)


def test_two_component_spectrum():
    m = spectrum_metrics([3.0, 1.0, 0.0])
    p = np.array([0.75, 0.25])
    assert m["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert m["participation_ratio"] == pytest.approx(100.0 / 82.0)  # λ = 9, 1
    assert m["n_components_90"] == 1  # 9 / 10 = 0.9 reaches 90 %
    assert m["top1_variance"] == pytest.approx(0.9)
    collapsed = spectrum_metrics([1.0])
    assert collapsed["effective_rank"] == pytest.approx(1.0)
    assert collapsed["participation_ratio"] == pytest.approx(1.0)
    assert np.isnan(spectrum_metrics([0.0, 0.0])["effective_rank"])


def test_table_from_a_matrix_with_known_singular_values():
    rng = np.random.default_rng(0)
    n, d = 40, 5
    a = rng.normal(size=(n, d))
    a -= a.mean(0)
    u, _ = np.linalg.qr(a)  # orthonormal columns, each summing to 0
    v, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s = np.array([5.0, 3.0, 2.0, 1.0, 0.5])
    x = u @ np.diag(s) @ v.T + 10.0  # offset removed by centering
    np.testing.assert_allclose(singular_values(x), s, atol=1e-10)
    df = pd.DataFrame(x, columns=list("abcde"))
    df.insert(0, "Metadata_Perturbation", "P")
    out = dimensionality([ProfileSet("m", "model", "layer1", df, list("abcde"))])
    assert list(out.columns) == ["method", "method_kind", "layer", "metric", "component", "value"]
    evr = out[out.metric == "explained_variance_ratio"].sort_values("component")
    assert evr["component"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(evr["value"], s ** 2 / (s ** 2).sum())
    cum = out[out.metric == "cumulative_explained_variance"]["value"].to_numpy()
    np.testing.assert_allclose(cum, np.cumsum(s ** 2) / (s ** 2).sum())
    scal = out[out.component == 0].set_index("metric")["value"]
    assert scal["participation_ratio"] == pytest.approx((s ** 2).sum() ** 2 / (s ** 4).sum())
    assert scal["n_components_90"] == 3  # (25 + 9) / 39.25 = 0.866 < 0.9; + 4 → 0.968
    # components are capped at min(n, d, 64)
    big = pd.DataFrame(rng.normal(size=(80, 100)), columns=[f"f{i}" for i in range(100)])
    out = dimensionality([ProfileSet("r", "null", "default", big, list(big.columns))])
    assert out[out.metric == "explained_variance_ratio"]["component"].max() == 64
