"""kNN classification probe per batch level (baselens.evaluate.knn_probe)."""

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.knn_probe import knn_predict, knn_probe


def _wells(n_perts=12, n_plates=4, seed=0):
    """Every perturbation once per plate, at the same well position on every plate."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_plates):
        for i in range(n_perts):
            rows.append({"Metadata_Source": f"S{p % 2}", "Metadata_Batch": f"B{p % 2}",
                         "Metadata_Plate": f"P{p}", "Metadata_Well": f"W{i:02d}",
                         "Metadata_Perturbation": f"pert_{i}", "Metadata_Group": f"moa_{i % 3}",
                         "Metadata_ControlType": ""})
        rows.append({"Metadata_Source": f"S{p % 2}", "Metadata_Batch": f"B{p % 2}",
                     "Metadata_Plate": f"P{p}", "Metadata_Well": "W99",
                     "Metadata_Perturbation": "DMSO", "Metadata_Group": "",
                     "Metadata_ControlType": "negcon"})
    df = pd.DataFrame(rows)
    centers = rng.normal(size=(n_perts + 1, 8))
    code = (df["Metadata_Perturbation"].str.replace("pert_", "")
            .replace("DMSO", str(n_perts)).astype(int))
    df[[f"f{j}" for j in range(8)]] = centers[code] + 0.05 * rng.normal(size=(len(df), 8))
    return df


def test_knn_predict_cosine_and_ties():
    tr = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [10.0, 0.5]])
    y = np.array(["a", "b", "a", "c"])
    # cosine: the scale of [10, 0.5] does not matter; nearest of [1, 0.04] is "c" (angle)
    assert knn_predict(tr, y, np.array([[1.0, 0.05]]), k=1)[0] == "c"
    assert knn_predict(tr, y, np.array([[0.0, 2.0]]), k=1)[0] == "b"
    # k=3 vote: a, a, c near [1, 0.02] -> "a"; tie a/b (k=2) goes to the nearest
    assert knn_predict(tr, y, np.array([[1.0, 0.02]]), k=3)[0] == "a"
    assert knn_predict(tr[:2], y[:2], np.array([[1.0, 0.9]]), k=2)[0] == "a"


def test_clean_signal_is_recovered_at_every_level():
    df = _wells()
    feats = [f"f{j}" for j in range(8)]
    s, per = knn_probe(df, feats, levels=["NR", "NSP", "NSB", "NSS"], n_splits=3)
    acc = s[s.metric == "accuracy"].groupby("batch_level")["value"].mean()
    assert (acc == 1.0).all() and set(acc.index) == {"NR", "NSP", "NSB", "NSS"}
    assert (s[s.metric == "macro_f1"]["value"] == 1.0).all()
    assert (s[s.metric == "chance_accuracy"]["value"] < 0.2).all()
    assert not s.duplicated(["batch_level", "metric", "fold"]).any()
    assert list(s.columns) == ["metric", "value", "n", "fold", "batch_level"]
    # controls are excluded: 12 perturbations, accuracy 1 each
    assert set(per["perturbation"]) == {f"pert_{i}" for i in range(12)}
    assert (per["value"] == 1.0).all()


def test_plate_and_position_artifacts_do_not_survive_grouped_splits():
    df = _wells()
    # a representation that only knows the plate (strong) and the well position
    plates = pd.get_dummies(df["Metadata_Plate"]).to_numpy(float) * 5
    pos = pd.get_dummies(df["Metadata_Well"]).to_numpy(float)
    x = np.hstack([plates, pos])
    art = pd.DataFrame(x, columns=[f"a{j}" for j in range(x.shape[1])])
    df = pd.concat([df, art], axis=1)
    s, _ = knn_probe(df, list(art.columns), levels=["NR", "NSP"], n_splits=3)
    acc = s[s.metric == "accuracy"].groupby("batch_level")["value"].mean()
    # NR: test wells find a same-plate training well first (plate dominates): wrong label;
    # NSP: neighbours come from other plates and match by position: right label.
    assert acc["NSP"] == 1.0 and acc["NR"] < 0.5
    # leave-well-position-out: with a fixed layout no label is ever seen in training
    s2, _ = knn_probe(df, list(art.columns), levels=["NSL"], n_splits=3)
    assert set(s2.metric) == {"n_unseen_label"}
    assert "fixed" in s2.attrs["skipped_levels"]["NSL"]
    # ... but the MoA label (shared by several positions) is probed at NSL
    s3, _ = knn_probe(df, [f"f{j}" for j in range(8)], label="Metadata_Group", levels=["NSL"],
                      n_splits=3)
    assert "accuracy" in set(s3.metric)


def test_skips_and_errors():
    df = _wells()
    df["Metadata_Source"] = "S0"
    s, _ = knn_probe(df, ["f0", "f1"], levels=["NR", "NSS"], n_splits=3)
    assert set(s.batch_level) == {"NR"} and "NSS" in s.attrs["skipped_levels"]
    with pytest.raises(ValueError):
        knn_probe(df[df.Metadata_Perturbation == "pert_0"], ["f0"])
