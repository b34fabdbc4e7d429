"""Profiling: aggregation and per-plate normalization, with hand-computed answers."""

import numpy as np
import pandas as pd
import pytest

from baselens.profile.aggregate import aggregate
from baselens.profile.log import FilterLog
from baselens.profile.normalize import normalize


def _sites():
    return pd.DataFrame({
        "Metadata_Plate": ["P1"] * 6,
        "Metadata_Well": ["A01", "A01", "A02", "A02", "A03", "A03"],
        "Metadata_Site": [1, 2, 1, 2, 1, 2],
        "Metadata_Perturbation": ["DMSO", "DMSO", "DMSO", "DMSO", "g1", "g1"],
        "f": [1.0, 3.0, 5.0, 7.0, 10.0, 30.0],
        "g": [0.0, 0.0, 2.0, 2.0, 1.0, 5.0],
    })


def test_aggregate_mean_and_median():
    w = aggregate(_sites())
    assert list(w["Metadata_Well"]) == ["A01", "A02", "A03"]
    assert list(w["f"]) == [2.0, 6.0, 20.0]
    assert "Metadata_Site" not in w.columns  # varies within a well
    assert list(w["Metadata_Perturbation"]) == ["DMSO", "DMSO", "g1"]
    assert list(w["Metadata_n_sites"]) == [2, 2, 2]
    med = aggregate(_sites().iloc[[0, 1, 4]], operation="median")
    assert list(med["f"]) == [2.0, 10.0]


def test_aggregate_counts_sites_whose_nan_features_the_mean_skips():
    sites = _sites()
    sites.loc[1, "f"] = np.nan          # partial: the A01 mean of f is site 1's alone
    sites.loc[4, ["f", "g"]] = np.nan   # every feature NaN: not a partial site
    log = FilterLog()
    w = aggregate(sites, log=log, stage="x: profile")
    assert w["f"].tolist()[0] == 1.0 and w.attrs["n_sites_partial_nan"] == 1
    (ev,) = log.events
    assert (ev.stage, ev.what, ev.removed, ev.kept) == ("x: profile", "sites", 1, 4)
    assert ev.examples == ["P1/A01"] and "skips" in ev.reason
    clean = FilterLog()
    aggregate(_sites(), log=clean)
    assert clean.events == []


def _wells():
    return pd.DataFrame({
        "Metadata_Plate": ["P1"] * 4 + ["P2"] * 4,
        "Metadata_ControlType": ["negcon", "negcon", "", ""] * 2,
        "f": [1.0, 3.0, 5.0, 0.0, 10.0, 20.0, 40.0, 15.0],
        "c": [1.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0],  # constant in P1 controls
    })


def test_standardize_to_negative_controls_per_plate():
    log = FilterLog()
    out = normalize(_wells(), method="standardize", log=log)
    # P1 controls: mean 2, std 1 ; P2 controls: mean 15, std 5
    np.testing.assert_allclose(out["f"], [-1, 1, 3, -2, -1, 1, 5, 0])
    assert "c" not in out.columns
    ev = [e for e in log.events if e.removed]
    assert ev and ev[0].removed == 1 and ev[0].examples == ["c"]


def test_mad_robustize_matches_formula():
    out = normalize(_wells(), method="mad_robustize", features=["f"])
    # P1: median 2, MAD 1 -> scale 1.4826
    np.testing.assert_allclose(out["f"].iloc[:4], (np.array([1, 3, 5, 0]) - 2) / (1.4826 + 1e-18))


def test_plate_without_controls_is_named():
    df = _wells()
    df.loc[df["Metadata_Plate"] == "P2", "Metadata_ControlType"] = ""
    with pytest.raises(ValueError, match=r"plate 'P2' has 0 negative-control"):
        normalize(df)
    out = normalize(df, reference="all", features=["f"])
    assert np.isfinite(out["f"]).all()


@pytest.mark.parametrize("method", ["standardize", "robustize", "mad_robustize"])
def test_round_off_spread_is_dropped_like_a_constant(method):
    """Spread 1e-15 in the controls (values ~1) is round-off: dropped and counted with
    the exactly constant feature; a small but real spread (1e-6) is kept."""
    df = pd.DataFrame({
        "Metadata_Plate": ["P1"] * 6,
        "Metadata_ControlType": ["negcon"] * 4 + [""] * 2,
        "f": [1.0, 2.0, 3.0, 4.0, 5.0, 0.0],
        "tiny": [1.0, 1.0 + 1e-15, 1.0, 1.0 + 1e-15, 1.0, 2.0],
        "const": [1.0, 1.0, 1.0, 1.0, 2.0, 3.0],
        "small": [0.0, 1e-6, 2e-6, 3e-6, 1e-6, 0.0],
    })
    log = FilterLog()
    out = normalize(df, method=method, log=log)
    assert [c for c in out.columns if not c.startswith("Metadata_")] == ["f", "small"]
    ev = log.events[-1]
    assert (ev.stage, ev.removed, ev.kept, ev.examples) == ("normalize", 2, 2, ["tiny", "const"])
    assert np.abs(out[["f", "small"]].to_numpy()).max() < 10


def test_zero_spread_is_relative_to_the_values():
    from baselens.profile.normalize import zero_spread

    x = np.array([[1e6, 1.0, 1e-14], [2e6, 1.0, 3e-14]])
    # 1e-7 spread of values ~1e6 is round-off; 1e-11 of values ~1 is not; values ~1e-14
    # (all below the floor 1) with spread 1e-14 count as round-off
    assert zero_spread(np.array([1e-7, 1e-11, 1e-14]), x).tolist() == [True, False, True]
    assert zero_spread(np.array([1.0, np.nan, 0.0]), x).tolist() == [False, True, True]
