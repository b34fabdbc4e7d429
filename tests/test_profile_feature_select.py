"""Feature selection: hand-computed answers (pycytominer equality is in test_profile_pycytominer)."""

import numpy as np
import pandas as pd
import pytest

from baselens.profile.feature_select import (
    correlation_threshold_features, feature_select, load_blocklist)
from baselens.profile.log import FilterLog


def _df():
    rng = np.random.default_rng(0)
    n = 40
    a = rng.normal(size=n)
    count = rng.uniform(100, 500, n)
    return pd.DataFrame({
        "Metadata_ControlType": ["negcon"] * 10 + [""] * 30,
        "Metadata_CellCount": count,
        "a": a,
        "a_copy": 2 * a + 0.01 * rng.normal(size=n),   # r ~ 1 with a
        "a_neg": -a,                                   # r = -1: survives (signed test)
        "const": np.ones(n),
        "nan": np.where(np.arange(n) < 4, np.nan, 1.0) * rng.normal(size=n),  # 10 % NaN
        "inf": np.where(np.arange(n) == 0, np.inf, 1.0) * rng.normal(size=n),
        "count_proxy": count * 0.01 + rng.normal(0, 0.01, n),
        "Nuclei_Correlation_Manders_AGP_DNA": rng.normal(size=n),
    })


def test_blocklist_is_shipped():
    bl = load_blocklist()
    assert len(bl) == 55 and bl[0] == "Nuclei_Correlation_Manders_AGP_DNA"


def test_each_operation_and_log():
    df = _df()
    log = FilterLog()
    out = feature_select(df, operations=["drop_na_columns", "drop_nonfinite", "variance_threshold",
                                         "correlation_threshold", "blocklist", "cell_count"], log=log)
    removed = {e.stage.split(".")[1]: e.examples for e in log.events}
    assert removed["drop_na_columns"] == ["nan"]
    assert removed["drop_nonfinite"] == ["inf"]
    assert removed["variance_threshold"] == ["const"]
    assert len(removed["correlation_threshold"]) == 1
    assert removed["correlation_threshold"][0] in ("a", "a_copy")
    assert removed["blocklist"] == ["Nuclei_Correlation_Manders_AGP_DNA"]
    assert removed["cell_count"] == ["count_proxy"]
    assert "a_neg" in out.columns and "Metadata_CellCount" in out.columns
    assert sum(e.removed for e in log.events) == 6


def test_correlation_threshold_is_not_greedy():
    # x ~ y (0.95) and y ~ z (0.95) but x, z less; y has the largest total |r| -> only y goes
    rng = np.random.default_rng(3)
    y = rng.normal(size=500)
    x = y + 0.4 * rng.normal(size=500)
    z = y + 0.4 * rng.normal(size=500)
    df = pd.DataFrame({"x": x, "y": y, "z": z})
    r = np.corrcoef(df.to_numpy(), rowvar=False)
    assert r[0, 1] > 0.9 and r[1, 2] > 0.9 and r[0, 2] < 0.9
    assert correlation_threshold_features(df, ["x", "y", "z"], 0.9) == ["y"]


def test_cell_count_vector_and_missing_column():
    df = _df().drop(columns=["Metadata_CellCount", "nan", "inf"])
    with pytest.raises(ValueError, match="Metadata_CellCount"):
        feature_select(df, operations=["cell_count"])
    out = feature_select(df, operations=["cell_count"], cell_count=df["count_proxy"].to_numpy() * 3)
    assert "count_proxy" not in out.columns and "a" in out.columns


def test_reference_rows_and_everything_removed():
    df = _df()[["Metadata_ControlType", "a", "const"]]
    df.loc[:9, "a"] = 5.0  # constant on the controls only
    out = feature_select(df, operations=["variance_threshold"], reference="all")
    assert "a" in out.columns
    with pytest.raises(ValueError, match="removed every feature"):
        feature_select(df, operations=["variance_threshold"], reference="negcon")
