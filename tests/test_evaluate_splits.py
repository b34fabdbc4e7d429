"""Grouped splits per batch-effect level (baselens.evaluate.splits)."""

import numpy as np
import pandas as pd
import pytest

from baselens.evaluate.splits import BATCH_LEVELS, level_folds, split_levels


def _meta(n_sources=2):
    rows = []
    for s in range(n_sources):
        for b in range(2):
            for p in range(3):
                for w in range(8):
                    rows.append({"Metadata_Source": f"S{s}", "Metadata_Batch": f"S{s}B{b}",
                                 "Metadata_Plate": f"S{s}B{b}P{p}", "Metadata_Well": f"A{w:02d}",
                                 "label": w % 4})
    return pd.DataFrame(rows)


def _check_partition(folds, n):
    test = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(test), np.arange(n))  # every item tested exactly once
    for f in folds:
        assert len(np.intersect1d(f.train, f.test)) == 0
        assert len(f.train) + len(f.test) == n


@pytest.mark.parametrize("level", ["NSP", "NSB", "NSS", "NSL"])
def test_grouped_levels_never_share_the_group(level):
    meta = _meta()
    col = BATCH_LEVELS[level]
    folds = level_folds(meta, level, n_splits=3, seed=1)
    _check_partition(folds, len(meta))
    for f in folds:
        assert not set(meta[col].iloc[f.train]) & set(meta[col].iloc[f.test])
    # fewer groups than n_splits -> leave-one-group-out
    if meta[col].nunique() <= 3:
        assert len(folds) == meta[col].nunique()


def test_nr_is_stratified_kfold():
    meta = _meta()
    folds = level_folds(meta, "NR", n_splits=4, labels=meta["label"], seed=0)
    assert len(folds) == 4
    _check_partition(folds, len(meta))
    for f in folds:  # 96 items, 4 balanced labels -> 6 of each label per fold
        assert meta["label"].iloc[f.test].value_counts().tolist() == [6, 6, 6, 6]


def test_unformable_levels_are_skipped_with_reason():
    meta = _meta(n_sources=1)
    folds, skipped = split_levels(meta, ["NR", "NSP", "NSS"], n_splits=3)
    assert set(folds) == {"NR", "NSP"}
    assert "Metadata_Source" in skipped["NSS"] and "≥ 2" in skipped["NSS"]
    _, skipped = split_levels(meta.drop(columns="Metadata_Well"), ["NSL"])
    assert "not in the table" in skipped["NSL"]
    with pytest.raises(KeyError):
        level_folds(meta, "XYZ")


def test_stratified_group_fallback_and_determinism():
    meta = _meta()
    y = np.arange(len(meta))  # every label once: stratification impossible -> GroupKFold
    a = level_folds(meta, "NSL", n_splits=3, labels=y, seed=5)
    b = level_folds(meta, "NSL", n_splits=3, labels=y, seed=5)
    assert len(a) == 3
    assert all(np.array_equal(x.test, z.test) for x, z in zip(a, b))
