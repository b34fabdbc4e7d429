"""kNN classification probe: can a label (perturbation, MoA, ...) be read off well profiles?

For each batch-effect level (:mod:`baselens.evaluate.splits`), wells are split into
folds; every test well is classified by a cosine k-nearest-neighbour vote among the
training wells, and each fold is scored by accuracy and macro-F1 (sklearn's
``f1_score(average="macro")`` over the labels present in the fold's truth or
predictions). Under the grouped levels (leave-plate/batch/source/well-position-out) a
test well's neighbours never share that technical attribute with it, so a representation
that identifies replicates through plate or position artifacts loses its advantage.

Folds never train on a test well's own perturbation when the label is not the
perturbation itself (``group``, default ``Metadata_Perturbation``; the "not same compound"
rule): at ``NR`` whole perturbations are held out, and the grouped levels cross their own
grouping with those perturbation folds (:mod:`baselens.evaluate.splits`). Without it a MoA
probe is answered by recognising the compound: on features that are only a random code per
compound an ungrouped split scores ≈ 1.0, the grouped one chance (tested).

Test wells whose label does not occur in the training part of their fold cannot be
classified and are left out of that fold's score (counted in ``n_unseen_label``).
Default ``k = 1`` (MorphoHELM's kNN recall@1 is the same vote): replicate counts per
perturbation are small (3–4 wells), so a larger k is dominated by other labels.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from baselens.evaluate.splits import PROBE_LEVELS, describe_fold_plan, split_levels

__all__ = ["knn_probe", "knn_predict", "item_ids"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = 1,
                block: int = 2048) -> np.ndarray:
    """Cosine kNN majority vote (ties: the label of the nearest tied neighbour).

    Similarities are computed in blocks of ``block`` test rows (no test × train matrix
    held whole beyond one block).
    """
    a, b = _unit(np.asarray(test_x, dtype=np.float64)), _unit(np.asarray(train_x, dtype=np.float64))
    classes, codes = np.unique(np.asarray(train_y), return_inverse=True)
    k = int(min(max(k, 1), len(b)))
    out = np.empty(len(a), dtype=np.int64)
    for s in range(0, len(a), block):
        sim = a[s:s + block] @ b.T
        nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        lab = codes[nn]  # (m, k), nearest first
        if k == 1:
            out[s:s + block] = lab[:, 0]
            continue
        for i, row in enumerate(lab):
            counts = np.bincount(row, minlength=len(classes))
            best = np.flatnonzero(counts == counts.max())
            # nearest neighbour among the tied labels
            out[s + i] = row[np.isin(row, best)][0]
    return classes[out]


def item_ids(df: pd.DataFrame) -> np.ndarray:
    """Stable id of each well for per-item rows: ``"<Metadata_Plate>/<Metadata_Well>"``
    (``"/<Metadata_Site>"`` appended when the table has sites), else ``"row<index>"`` of the
    table's index."""
    if "Metadata_Plate" in df.columns and "Metadata_Well" in df.columns:
        ids = df["Metadata_Plate"].astype(str) + "/" + df["Metadata_Well"].astype(str)
        if "Metadata_Site" in df.columns:
            ids = ids + "/" + df["Metadata_Site"].astype(str)
        return ids.to_numpy(dtype=object)
    return np.array([f"row{i}" for i in df.index], dtype=object)


def knn_probe(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    label: str = "Metadata_Perturbation",
    levels: Iterable[str] = PROBE_LEVELS,
    k: int = 1,
    n_splits: int = 5,
    exclude_controls: bool = True,
    min_per_label: int = 2,
    seed: int = 0,
    group: str | None = "Metadata_Perturbation",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score kNN classification of ``label`` per batch level and fold.

    Parameters
    ----------
    profiles : DataFrame
        Well profiles: feature columns, ``label``, and the grouping columns of the levels
        (``Metadata_Plate``, ``Metadata_Batch``, ``Metadata_Source``, ``Metadata_Well``);
        ``Metadata_ControlType`` marks controls.
    features : list of str
        Feature columns.
    label : str
        Column to classify, e.g. ``Metadata_Perturbation`` or a MoA column
        (``Metadata_Group``). Rows with an empty/missing label are dropped (counted).
    levels : iterable of str
        Batch levels (:data:`baselens.evaluate.splits.BATCH_LEVELS`); levels that cannot
        be formed are skipped (``scores.attrs["skipped_levels"]`` gives the reasons).
    k : int
        Neighbours (cosine similarity, majority vote).
    n_splits : int
        Folds for ``NR`` (ungrouped: stratified, lowered to the smallest label count,
        ≥ 2) and the maximum folds of the grouped levels.
    exclude_controls : bool
        Drop rows whose ``Metadata_ControlType`` is ``negcon``/``poscon``.
    min_per_label : int
        Labels with fewer wells are dropped (they cannot be both trained and tested);
        the drop is counted in ``scores.attrs["dropped"]``.
    group : str or None
        Perturbation column for the "not same compound" rule: when ``label`` is not this
        column, folds hold out whole perturbations at every level, ``NR`` included
        (:mod:`baselens.evaluate.splits`), so a test well's neighbours are never wells of
        its own perturbation. ``None`` (or ``label == group``) splits wells without it;
        a missing column splits without it and puts a ``warning`` on every score row.

    Returns
    -------
    scores : DataFrame
        ``metric, value, n, fold, batch_level, warning``; metrics ``accuracy``,
        ``macro_f1`` (n = test wells scored), ``n_unseen_label`` (test wells left out
        because their label is absent from training: with grouped folds, e.g. a MoA whose
        only compound is held out), and ``chance_accuracy`` (accuracy of predicting the
        most frequent training label) — one row per (level, metric, fold).
        ``attrs``: ``fold_plan`` (level → one line on how folds were formed),
        ``dropped`` (rows removed before splitting, contract of ``run/tasks.py``),
        ``skipped_levels``.
    per_item : DataFrame
        ``perturbation, metric, value, batch_level, fold``:

        * ``correct`` (1/0) per scored held-out well, ``perturbation`` = the well's id
          (:func:`item_ids`: ``"<plate>/<well>"``), ``fold`` = its test fold — every well
          is tested once per level, so methods pair over wells;
        * ``accuracy`` per label value (column name kept as ``perturbation`` for the
          results contract) over all its scored test wells of that level (``fold`` 0).
    """
    df = profiles
    dropped: list[dict] = []
    has_label = df[label].notna() & ~df[label].astype(str).isin(["", "nan", "None"])
    keep = pd.Series(True, index=df.index)
    if exclude_controls and "Metadata_ControlType" in df.columns:
        keep &= ~df["Metadata_ControlType"].astype(str).isin(["negcon", "poscon"])
    n_unlabelled = int((keep & ~has_label).sum())
    df = df[keep & has_label]
    counts = df[label].astype(str).value_counts()
    rare = df[label].astype(str).map(counts).lt(min_per_label).to_numpy()
    if n_unlabelled:
        dropped.append({"what": "wells", "n_removed": n_unlabelled, "n_kept": int(len(df)),
                        "reason": f"no {label} value (nothing to classify)"})
    if rare.any():
        n_rare_labels = int((counts < min_per_label).sum())
        dropped.append({"what": "wells", "n_removed": int(rare.sum()),
                        "n_kept": int((~rare).sum()),
                        "reason": f"{n_rare_labels} {label} value(s) with fewer than "
                                  f"min_per_label = {min_per_label} wells"})
    df = df[~rare].reset_index(drop=True)
    y = df[label].astype(str).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(f"kNN probe needs ≥ 2 labels in {label!r} with "
                         f"≥ {min_per_label} wells; "
                         f"found {len(np.unique(y))}")
    warning = ""
    groups = None
    group_col = None
    if group is not None and group != label:
        if group in df.columns:
            groups = df[group].astype(str).to_numpy()
            group_col = group
        else:
            warning = (f"folds not grouped by perturbation: column {group!r} missing, so a "
                       f"test well's neighbours may be wells of its own perturbation "
                       f"({label} accuracy can be inflated)")
    x = df[features].to_numpy(dtype=np.float64)
    ids = item_ids(df)
    kept_counts = counts[counts >= min_per_label]
    n_nr = n_splits if groups is not None else int(min(n_splits, kept_counts.min()))
    rows, per_rows = [], []
    skipped: dict[str, str] = {}
    plan: dict[str, str] = {}
    for level in levels:
        folds, skip = split_levels(df, [level], n_splits=n_nr if level == "NR" else n_splits,
                                   labels=y, seed=seed, groups=groups)
        skipped.update(skip)
        if level not in folds:
            continue
        plan[level] = describe_fold_plan(level, folds[level], group_col, len(df))
        hits, items = [], []
        for f in folds[level]:
            tr_y = y[f.train]
            seen = np.isin(y[f.test], tr_y)
            test = f.test[seen]
            n_unseen = int((~seen).sum())
            rows.append((level, f.fold, "n_unseen_label", float(n_unseen), len(f.test)))
            if len(test) == 0:
                continue
            pred = knn_predict(x[f.train], tr_y, x[test], k=k)
            truth = y[test]
            vals, cnt = np.unique(tr_y, return_counts=True)
            rows += [
                (level, f.fold, "accuracy", float(accuracy_score(truth, pred)), len(test)),
                (level, f.fold, "macro_f1", float(f1_score(truth, pred, average="macro",
                                                           zero_division=0)), len(test)),
                (level, f.fold, "chance_accuracy", float(np.mean(truth == vals[cnt.argmax()])),
                 len(test)),
            ]
            hits.append(pd.DataFrame({"perturbation": truth, "hit": pred == truth}))
            items.append(pd.DataFrame({"perturbation": ids[test], "metric": "correct",
                                       "value": (pred == truth).astype(float),
                                       "batch_level": level, "fold": f.fold}))
        if not hits:
            skipped[level] = ("no test well's label occurs in its training wells (e.g. a fixed "
                              "layout puts every replicate of a perturbation at the same well "
                              "position); only n_unseen_label is reported")
        else:
            acc = pd.concat(hits).groupby("perturbation", sort=True)["hit"].mean()
            per_rows.append(pd.DataFrame({"perturbation": acc.index, "metric": "accuracy",
                                          "value": acc.to_numpy(dtype=float),
                                          "batch_level": level, "fold": 0}))
            per_rows += items
    scores = pd.DataFrame(rows, columns=["batch_level", "fold", "metric", "value", "n"])
    scores["warning"] = warning
    scores = scores[["metric", "value", "n", "fold", "batch_level", "warning"]]
    per = (pd.concat(per_rows, ignore_index=True) if per_rows
           else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level", "fold"]))
    scores.attrs["skipped_levels"] = skipped
    scores.attrs["fold_plan"] = plan
    scores.attrs["dropped"] = dropped
    return scores, per
