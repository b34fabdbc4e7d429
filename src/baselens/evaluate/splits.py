"""Grouped cross-validation splits per batch-effect level, for the probe tasks.

Retrieval tasks express a batch-effect level by removing, for every query, the
candidates that share a technical attribute with it (MorphoHELM). Probes (kNN
classification, bioactivity, regression) express the same level by *grouped* splits:
no test well shares the attribute with any training well, so a probe can only score
well by using signal that survives the technical factor.

=========  ==========================  =========================================
level      split                       groups
=========  ==========================  =========================================
``NR``     (stratified) k-fold         none: wells are split at random
``NSP``    leave-plate-out             ``Metadata_Plate``
``NSB``    leave-batch-out             ``Metadata_Batch``
``NSS``    leave-source-out            ``Metadata_Source``
``NSL``    leave-well-position-out     ``Metadata_Well`` (the position on the plate:
                                       plate-layout artifacts, e.g. edge wells)
=========  ==========================  =========================================

A level is *skipped with a reason* when it cannot be formed: the grouping column is
missing or has fewer than two groups (e.g. a one-source screen has no ``NSS``). With
fewer groups than ``n_splits`` the level becomes leave-one-group-out (one fold per
group); with more, groups are distributed over ``n_splits`` folds (``GroupKFold``, or
``StratifiedGroupKFold`` when labels are given).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

__all__ = [
    "BATCH_LEVELS",
    "LEVEL_DESCRIPTIONS",
    "PROBE_LEVELS",
    "Fold",
    "level_folds",
    "split_levels",
]

#: Probe batch level → grouping column (``None``: no grouping).
BATCH_LEVELS: dict[str, str | None] = {
    "NR": None,
    "NSP": "Metadata_Plate",
    "NSB": "Metadata_Batch",
    "NSS": "Metadata_Source",
    "NSL": "Metadata_Well",
}

LEVEL_DESCRIPTIONS: dict[str, str] = {
    "NR": "no restriction: (stratified) k-fold over wells",
    "NSP": "leave-plate-out",
    "NSB": "leave-batch-out",
    "NSS": "leave-source-out",
    "NSL": "leave-well-position-out",
}

#: Default order of levels for the probes (easiest first).
PROBE_LEVELS: tuple[str, ...] = ("NR", "NSP", "NSB", "NSS", "NSL")


@dataclass(frozen=True)
class Fold:
    """One train/test split: positional indices into the table that was split."""

    batch_level: str
    fold: int
    train: np.ndarray
    test: np.ndarray


def _labels_ok_for_stratify(y: np.ndarray, n_splits: int) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return len(counts) >= 2 and counts.min() >= n_splits


def level_folds(
    meta: pd.DataFrame,
    level: str,
    *,
    n_splits: int = 5,
    labels: Sequence | np.ndarray | None = None,
    seed: int = 0,
) -> list[Fold]:
    """Folds of one batch level.

    Parameters
    ----------
    meta : DataFrame
        One row per item (well) with the grouping column of ``level``
        (:data:`BATCH_LEVELS`).
    level : str
        ``NR``, ``NSP``, ``NSB``, ``NSS`` or ``NSL``.
    n_splits : int
        Folds for ``NR`` and the maximum number of folds of a grouped level.
    labels : array, optional
        Class labels to stratify on (``NR``: ``StratifiedKFold`` when every class has
        ≥ ``n_splits`` items, else plain ``KFold``; grouped levels:
        ``StratifiedGroupKFold`` when there are more groups than folds and every class has
        ≥ ``n_splits`` items, else ``GroupKFold`` over shuffled groups).
    seed : int
        Shuffling seed (deterministic).

    Raises
    ------
    KeyError
        Unknown level.
    ValueError
        The level cannot be formed (message says why); :func:`split_levels` turns this
        into a skip reason.
    """
    if level not in BATCH_LEVELS:
        raise KeyError(f"unknown batch level {level!r}; known: {', '.join(BATCH_LEVELS)}")
    n = len(meta)
    if n < 2:
        raise ValueError(f"{n} item(s): nothing to split")
    idx = np.arange(n)
    y = None if labels is None else np.asarray(labels)
    col = BATCH_LEVELS[level]
    if col is None:
        k = int(min(n_splits, n))
        if y is not None and _labels_ok_for_stratify(y, k):
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            parts = splitter.split(idx, y)
        else:
            parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(idx)
        return [Fold(level, f, np.sort(tr), np.sort(te)) for f, (tr, te) in enumerate(parts)]
    if col not in meta.columns:
        raise ValueError(f"column {col!r} ({LEVEL_DESCRIPTIONS[level]}) is not in the table")
    groups = meta[col].astype(str).to_numpy()
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise ValueError(f"only {len(uniq)} distinct {col} value(s); "
                         f"{LEVEL_DESCRIPTIONS[level]} needs ≥ 2")
    if len(uniq) <= n_splits:
        folds = [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in uniq]
    else:
        folds = None
        if y is not None and _labels_ok_for_stratify(y, n_splits):
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            with warnings.catch_warnings():  # "least populated class" warnings
                warnings.simplefilter("ignore", UserWarning)
                folds = list(splitter.split(idx, y, groups))
        if folds is None:
            # GroupKFold balances fold sizes deterministically; shuffle group names first
            # so that the assignment depends on the seed, not on the sort order.
            rng = np.random.default_rng(seed)
            perm = {g: i for i, g in enumerate(rng.permutation(uniq))}
            coded = np.array([perm[g] for g in groups])
            folds = list(GroupKFold(n_splits=n_splits).split(idx, groups=coded))
        folds = [(tr, te) for tr, te in folds if len(te) and len(tr)]
    return [Fold(level, f, np.sort(tr), np.sort(te)) for f, (tr, te) in enumerate(folds)]


def split_levels(
    meta: pd.DataFrame,
    levels: Iterable[str] = PROBE_LEVELS,
    *,
    n_splits: int = 5,
    labels: Sequence | np.ndarray | None = None,
    seed: int = 0,
) -> tuple[dict[str, list[Fold]], dict[str, str]]:
    """Folds for every level that can be formed, and the reason for each that cannot.

    Returns
    -------
    folds : dict
        level → list of :class:`Fold` (levels in the order given).
    skipped : dict
        level → human-readable reason (e.g. ``"only 1 distinct Metadata_Source value(s);
        leave-source-out needs ≥ 2"``).
    """
    out: dict[str, list[Fold]] = {}
    skipped: dict[str, str] = {}
    for level in levels:
        try:
            folds = level_folds(meta, level, n_splits=n_splits, labels=labels, seed=seed)
        except ValueError as err:
            skipped[level] = str(err)
            continue
        if not folds:
            skipped[level] = "no non-empty fold"
            continue
        out[level] = folds
    return out, skipped
