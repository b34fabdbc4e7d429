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
    assert list(s.columns) == ["metric", "value", "n", "fold", "batch_level", "warning"]
    # controls are excluded: 12 perturbations, accuracy 1 each
    acc_rows = per[per.metric == "accuracy"]
    assert set(acc_rows["perturbation"]) == {f"pert_{i}" for i in range(12)}
    assert (per["value"] == 1.0).all()
    # one `correct` row per held-out well and level: every non-control well tested once
    corr = per[per.metric == "correct"]
    for level, sub in corr.groupby("batch_level"):
        assert sub["perturbation"].is_unique and len(sub) == 48, level
    assert corr["perturbation"].str.fullmatch(r"P\d/W\d\d").all()
    # the probe's label is the perturbation itself: splits are over wells
    assert "grouped by" not in s.attrs["fold_plan"]["NR"]


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


def _identity_screen(n_moa=12, per_moa=8, seed=0):
    """A real-like design whose features know only *which compound* a well is.

    ``n_moa × per_moa`` compounds, each at 2 doses on 3 replicate plates (same layout on
    the plates of one plate map); 6 plates in 3 batches and 2 sources; DMSO on every plate.
    Features: a random 32-d code per compound (identical for its doses) + small well noise;
    no information about the MoA at all.
    """
    rng = np.random.default_rng(seed)
    n_comp = n_moa * per_moa
    code = rng.normal(size=(n_comp, 32))
    rows = []
    for p in range(6):
        comps = range(0, n_comp // 2) if p % 2 == 0 else range(n_comp // 2, n_comp)
        meta = {"Metadata_Plate": f"P{p}", "Metadata_Batch": f"B{p // 2}",
                "Metadata_Source": f"S{p // 3}"}
        pos = 0
        for c in comps:
            for dose in (0.1, 1.0):
                rows.append({**meta, "Metadata_Well": f"W{pos:03d}", "Metadata_Perturbation": f"cmpd_{c}",
                             "Metadata_Dose": dose, "Metadata_moa": f"moa_{c % n_moa}",
                             "Metadata_ControlType": "", "_c": c})
                pos += 1
        for j in range(4):
            rows.append({**meta, "Metadata_Well": f"W{pos + j:03d}", "Metadata_Perturbation": "DMSO",
                         "Metadata_Dose": 0.0, "Metadata_moa": "", "Metadata_ControlType": "negcon",
                         "_c": -1})
    df = pd.DataFrame(rows)
    feats = [f"f{j}" for j in range(32)]
    x = np.where(df["_c"].to_numpy()[:, None] >= 0, code[df["_c"].clip(0)], 0.0)
    df[feats] = x + 0.1 * rng.normal(size=(len(df), 32))
    return df.drop(columns="_c"), feats


def test_identity_code_scores_chance_when_folds_hold_out_compounds():
    """Issue 13 must-show: MoA kNN on compound-identity features is at chance at every level
    when folds are grouped by compound; an ungrouped split reads the compound (≈ 1.0)."""
    df, feats = _identity_screen()
    levels = ["NR", "NSP", "NSB", "NSS", "NSL"]
    s, per = knn_probe(df, feats, label="Metadata_moa", levels=levels)
    chance = 1 / 12  # balanced: every MoA has the same number of compounds and wells
    n_comp = df.loc[df.Metadata_ControlType == "", "Metadata_Perturbation"].nunique()
    # wells of one compound share their code: the independent unit is the compound
    se = np.sqrt(chance * (1 - chance) / n_comp)
    corr = per[per.metric == "correct"]
    assert set(corr.batch_level) == set(levels)
    for level, sub in corr.groupby("batch_level"):
        acc = sub["value"].mean()
        assert abs(acc - chance) < 3 * se, (level, acc, chance, se)
        assert len(sub) == (df.Metadata_ControlType == "").sum()  # every well tested once
    for level in levels:
        assert "grouped by Metadata_Perturbation" in s.attrs["fold_plan"][level]
    # a compound's wells never train the prediction of its other wells
    ungrouped, per_u = knn_probe(df, feats, label="Metadata_moa", levels=["NR", "NSP"], group=None)
    acc_u = per_u[per_u.metric == "correct"].groupby("batch_level")["value"].mean()
    assert (acc_u > 0.95).all(), acc_u
    assert "grouped by" not in ungrouped.attrs["fold_plan"]["NR"]


def test_grouped_folds_never_share_a_perturbation_or_plate():
    from baselens.evaluate.splits import level_folds

    df, _ = _identity_screen(n_moa=4, per_moa=5)
    df = df[df.Metadata_ControlType == ""].reset_index(drop=True)
    g = df["Metadata_Perturbation"].to_numpy()
    for level, col in [("NR", None), ("NSP", "Metadata_Plate"), ("NSB", "Metadata_Batch")]:
        folds = level_folds(df, level, n_splits=5, labels=df["Metadata_moa"], groups=g)
        tested = np.concatenate([f.test for f in folds])
        assert np.array_equal(np.sort(tested), np.arange(len(df)))  # each once
        for f in folds:
            assert not set(g[f.train]) & set(g[f.test])
            if col:
                assert not set(df[col].iloc[f.train]) & set(df[col].iloc[f.test])


def test_drops_are_counted_and_missing_group_warns():
    df = _wells()
    df.loc[df.Metadata_Perturbation == "pert_0", "Metadata_Group"] = ""  # 4 unlabelled wells
    df.loc[(df.Metadata_Perturbation == "pert_1") & (df.Metadata_Plate != "P0"),
           "Metadata_Group"] = "rare"  # 3 wells of a label
    s, _ = knn_probe(df, [f"f{j}" for j in range(8)], label="Metadata_Group", levels=["NR"],
                     min_per_label=4, n_splits=3)
    d = s.attrs["dropped"]
    assert [e["n_removed"] for e in d] == [4, 3]
    assert "min_per_label = 4" in d[1]["reason"] and d[1]["n_kept"] == 48 - 4 - 3
    assert (s["warning"] == "").all()
    s2, _ = knn_probe(df.drop(columns="Metadata_Perturbation"), [f"f{j}" for j in range(8)],
                      label="Metadata_Group", levels=["NR"], n_splits=3)
    assert s2["warning"].str.contains("not grouped by perturbation").all()
