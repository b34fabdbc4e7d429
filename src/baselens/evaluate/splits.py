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

Grouping by perturbation (the "not same compound" rule)
    A probe whose label is not the perturbation itself (MoA, target, injury class, gene
    family) must never train on the test well's own perturbation: otherwise it learns
    which compound a well is, not its mechanism (on features that only encode compound
    identity an ungrouped split scores ≈ 1.0 where chance is ≈ 1/#classes). Pass
    ``groups`` (e.g. the ``Metadata_Perturbation`` column) to :func:`level_folds` /
    :func:`split_levels`: the items are first split into ``n_splits`` folds of whole
    perturbations (``StratifiedGroupKFold`` on the labels when possible, else
    ``GroupKFold`` over shuffled perturbations). ``NR`` uses those folds. A grouped level
    keeps its own grouping on top: its folds are the non-empty intersections of a
    perturbation fold ``a`` and a level fold ``b`` — test = wells of ``a`` on ``b``'s
    plates (batches, sources, positions), train = wells of neither. Every item is tested
    exactly once per level; no training well shares its perturbation or the level's
    attribute with a test well. :func:`describe_fold_plan` states the plan in one line.
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
    "describe_fold_plan",
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


def _group_kfold(idx: np.ndarray, groups: np.ndarray, y: np.ndarray | None, k: int,
                 seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds of whole groups (stratified on ``y`` when every class has ≥ k items)."""
    uniq = np.unique(groups)
    if len(uniq) <= k:
        return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in uniq]
    folds = None
    if y is not None and _labels_ok_for_stratify(y, k):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class" warnings
            warnings.simplefilter("ignore", UserWarning)
            folds = list(splitter.split(idx, y, groups))
    if folds is None:
        # GroupKFold balances fold sizes deterministically; shuffle group names first
        # so that the assignment depends on the seed, not on the sort order.
        rng = np.random.default_rng(seed)
        perm = {g: i for i, g in enumerate(rng.permutation(uniq))}
        coded = np.array([perm[g] for g in groups])
        folds = list(GroupKFold(n_splits=k).split(idx, groups=coded))
    return [(tr, te) for tr, te in folds if len(te) and len(tr)]


def level_folds(
    meta: pd.DataFrame,
    level: str,
    *,
    n_splits: int = 5,
    labels: Sequence | np.ndarray | None = None,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
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
    groups : array, optional
        One perturbation id per item. When given, no fold trains on a test item's
        perturbation, at every level (module docstring): ``NR`` splits whole
        perturbations into ``n_splits`` folds; a grouped level crosses those folds with
        its own.

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
    pert_folds = None
    if groups is not None:
        g = np.asarray(groups).astype(str)
        if len(g) != n:
            raise ValueError(f"groups has {len(g)} entries for {n} items")
        if len(np.unique(g)) < 2:
            raise ValueError("only 1 perturbation: folds grouped by perturbation need ≥ 2")
        pert_folds = _group_kfold(idx, g, y, int(min(n_splits, len(np.unique(g)))), seed)
    if col is None:
        if pert_folds is not None:
            return [Fold(level, f, np.sort(tr), np.sort(te))
                    for f, (tr, te) in enumerate(pert_folds)]
        k = int(min(n_splits, n))
        if y is not None and _labels_ok_for_stratify(y, k):
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            parts = splitter.split(idx, y)
        else:
            parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(idx)
        return [Fold(level, f, np.sort(tr), np.sort(te)) for f, (tr, te) in enumerate(parts)]
    if col not in meta.columns:
        raise ValueError(f"column {col!r} ({LEVEL_DESCRIPTIONS[level]}) is not in the table")
    lvl_groups = meta[col].astype(str).to_numpy()
    uniq = np.unique(lvl_groups)
    if len(uniq) < 2:
        raise ValueError(f"only {len(uniq)} distinct {col} value(s); "
                         f"{LEVEL_DESCRIPTIONS[level]} needs ≥ 2")
    folds = _group_kfold(idx, lvl_groups, y, n_splits, seed)
    if pert_folds is not None:
        crossed = []
        for tr_a, te_a in pert_folds:
            for tr_b, te_b in folds:
                te = np.intersect1d(te_a, te_b)
                tr = np.intersect1d(tr_a, tr_b)
                if len(te) and len(tr):
                    crossed.append((tr, te))
        folds = crossed
    return [Fold(level, f, np.sort(tr), np.sort(te)) for f, (tr, te) in enumerate(folds)]


def describe_fold_plan(level: str, folds: Sequence[Fold], group_col: str | None = None,
                       n_items: int | None = None) -> str:
    """One line saying how the folds of ``level`` were formed, e.g.
    ``"leave-plate-out (Metadata_Plate) × 5 folds grouped by Metadata_Perturbation: 15 folds"``.
    """
    own = LEVEL_DESCRIPTIONS.get(level, level)
    col = BATCH_LEVELS.get(level)
    base = own if col is None else f"{own} ({col})"
    if group_col:
        if col is None:
            text = f"folds grouped by {group_col} (no well of a test perturbation in training)"
        else:
            text = f"{base} × folds grouped by {group_col}"
    else:
        text = base
    text += f": {len(folds)} folds"
    if n_items is not None:
        text += f" over {n_items} wells"
    return text


def split_levels(
    meta: pd.DataFrame,
    levels: Iterable[str] = PROBE_LEVELS,
    *,
    n_splits: int = 5,
    labels: Sequence | np.ndarray | None = None,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> tuple[dict[str, list[Fold]], dict[str, str]]:
    """Folds for every level that can be formed, and the reason for each that cannot.

    ``groups`` (one perturbation id per item): see :func:`level_folds`.

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
            folds = level_folds(meta, level, n_splits=n_splits, labels=labels, seed=seed,
                                groups=groups)
        except ValueError as err:
            skipped[level] = str(err)
            continue
        if not folds:
            skipped[level] = "no non-empty fold"
            continue
        out[level] = folds
    return out, skipped
