"""Bioactivity prediction per assay, with the Seal et al. 2026 safeguards.

Seal et al. 2026 (Nat. Commun., "Counting cells can accurately predict small-molecule
bioactivity benchmarks") showed that many bioactivity benchmark assays are predicted as well
by the cell count alone (``Cells_Number_Object_Number``) as by whole Cell Painting profiles,
because their actives are cytotoxic. Its protocol, which this task applies identically to
every representation (the cell-count baseline is just another representation — the
``cell_count`` extractor):

* per assay, binary labels per compound; models: logistic regression (standardized
  features, L2, balanced class weights) and XGBoost (small trees, balanced through
  ``scale_pos_weight``);
* metrics on held-out compounds: AUC-ROC, AUPRG (area under the precision-recall-gain
  curve, Flach & Kull 2015, chance level 0 for every class ratio), AUC-PR (average
  precision, chance = share of actives), balanced accuracy at threshold 0.5 and at the
  threshold that maximizes balanced accuracy on the training predictions;
* y-scrambling (labels permuted across compounds, then the identical protocol), reported
  as models ``<model>_scrambled`` — it should sit at chance;
* rec. 4: a test split with fewer than 20 actives or 20 inactives gives unreliable AUCs.
  Every (assay, fold) reports ``n_actives_test``/``n_inactives_test`` and a
  ``warning_small_test`` flag (1.0 = too few) as metric rows, plus a text ``warning``
  column, so the caveat travels with the scores, not only with the log;
* the single-feature threshold sweep of Seal et al. 2026 (Fig. 1d–f, Eq. 1) is
  :func:`threshold_sweep_balanced_accuracy`, for diagnostics.

Splits. ``NR`` (default, Seal et al. 2026): well profiles are averaged per compound, and
compounds are split by stratified k-fold. Grouped batch levels (``NSP``, ``NSB``,
``NSS``, ``NSL``) work on wells with a *crossed* design: compounds are split into
stratified folds k and wells into grouped folds g (:mod:`baselens.evaluate.splits`);
the wells of test compounds (fold k) lying in g are predicted by a model trained on the
wells of the other compounds outside g. A compound's score is the mean predicted
probability of its wells, so each fold k is scored on unseen compounds whose every well
was predicted by a model that saw neither the compound nor its plate (batch, source,
well position). ``unit="well"`` runs ``NR`` with the same well-level design (no group
restriction) for a like-for-like comparison with the grouped levels.

References
----------
Flach, P. A. & Kull, M. Precision-Recall-Gain curves: PR analysis done right. NeurIPS
28, 838–846 (2015). Reference implementation: github.com/meeliskull/prg.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from baselens.evaluate.splits import BATCH_LEVELS, LEVEL_DESCRIPTIONS, level_folds

__all__ = [
    "MODELS",
    "auprg",
    "balanced_accuracy",
    "bioactivity",
    "precision_recall_gain_curve",
    "threshold_sweep_balanced_accuracy",
]

PERT = "Metadata_Perturbation"
METRICS = ("auc_roc", "auprg", "auc_pr", "balanced_accuracy", "balanced_accuracy_train_threshold")
MODELS = ("logistic", "xgboost")
#: Seal et al. 2026 rec. 4: AUCs need ≥ 20 actives and ≥ 20 inactives in the held-out set.
MIN_TEST_CLASS = 20


# ------------------------------------------------------------------------------ metrics
def precision_recall_gain_curve(y_true: Sequence, score: Sequence) -> pd.DataFrame:
    """Precision-recall-gain curve (Flach & Kull 2015).

    With π the share of positives, precision gain ``= (prec − π) / ((1 − π) prec)`` and
    recall gain ``= (rec − π) / ((1 − π) rec)``, written from the contingency table as
    ``1 − (P/N)·FP/TP`` and ``1 − (P/N)·FN/TP``. One point per distinct score threshold
    (ties form one step), starting from "nothing predicted positive"; when everything is
    predicted positive the point is (recall gain 1, precision gain 0), as in the authors'
    code. Where the curve enters recall gain ≥ 0 between two thresholds, the crossing
    point (recall gain 0) is interpolated linearly in contingency space.

    Returns
    -------
    DataFrame
        ``tp, fp, recall_gain, precision_gain, is_crossing`` in threshold order.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("y_true and score must be 1-d arrays of equal length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("precision-recall-gain needs both positives and negatives")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last row of each tie block
    tp = np.r_[0.0, np.cumsum(y)[ends]]
    fp = np.r_[0.0, np.cumsum(~y)[ends]]
    ratio = n_pos / n_neg

    def gains(tp_, fp_):
        fn_, tn_ = n_pos - tp_, n_neg - fp_
        with np.errstate(divide="ignore", invalid="ignore"):
            pg = 1.0 - ratio * (fp_ / tp_)
            rg = 1.0 - ratio * (fn_ / tp_)
        everything = (tn_ + fn_) == 0
        pg = np.where(everything, 0.0, pg)
        rg = np.where(everything, 1.0, rg)
        return rg, pg

    rg, pg = gains(tp, fp)
    crossing = np.zeros(len(tp), dtype=bool)
    j = int(np.flatnonzero(rg >= 0)[0])  # exists: the last point has recall gain 1
    if rg[j] > 0 and j > 0:
        # recall gain is 0 where TP = P² / (P + N); TP grows on this step
        a = (n_pos * n_pos / (n_pos + n_neg) - tp[j - 1]) / (tp[j] - tp[j - 1])
        tpx = tp[j - 1] + a * (tp[j] - tp[j - 1])
        fpx = fp[j - 1] + a * (fp[j] - fp[j - 1])
        _, pgx = gains(np.array([tpx]), np.array([fpx]))
        tp, fp = np.insert(tp, j, tpx), np.insert(fp, j, fpx)
        rg, pg = np.insert(rg, j, 0.0), np.insert(pg, j, pgx[0])
        crossing = np.insert(crossing, j, True)
    return pd.DataFrame({"tp": tp, "fp": fp, "recall_gain": rg, "precision_gain": pg,
                         "is_crossing": crossing})


def auprg(y_true: Sequence, score: Sequence) -> float:
    """Area under the precision-recall-gain curve (Flach & Kull 2015).

    Trapezoidal area over the part of the curve with recall gain ≥ 0, as in the authors'
    reference code (``calc_auprg``); precision gain below 0 counts negatively, so a
    random ranking scores ≈ 0 whatever the class ratio and a perfect ranking scores 1.
    """
    c = precision_recall_gain_curve(y_true, score)
    rg, pg = c["recall_gain"].to_numpy(), c["precision_gain"].to_numpy()
    i = np.flatnonzero(rg[:-1] >= 0)  # segments starting in recall gain >= 0
    width = rg[i + 1] - rg[i]
    height = (pg[i + 1] + pg[i]) / 2
    return float(np.sum(width * height))


def balanced_accuracy(y_true: Sequence, pred: Sequence) -> float:
    """Mean of the recall of each class (binary 0/1 labels and predictions)."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(pred).astype(bool)
    return float(0.5 * (np.mean(p[y]) + np.mean(~p[~y])))


def threshold_sweep_balanced_accuracy(
    values: Sequence, active: Sequence, thresholds: Sequence | None = None
) -> pd.DataFrame:
    """Balanced accuracy of thresholding one feature, over a range of thresholds.

    Seal et al. 2026 (Fig. 1d–f, Eq. 1): a compound is called active when its value (e.g. the
    normalized cell count ``Cells_Number_Object_Number``) is ≤ the threshold — the fixed
    weight −1 sigmoid ``1 / (1 + exp(v − t)) ≥ 0.5``. Because the direction is fixed, a
    balanced accuracy b below 0.5 means the feature separates the classes the other way;
    ``separation = max(b, 1 − b)`` is what Seal et al. report ("0.10 interpreted as 0.90").

    Parameters
    ----------
    values, active : array
        One value and one 0/1 label per compound.
    thresholds : array, optional
        Default: every distinct value (each split of the sorted values is visited).

    Returns
    -------
    DataFrame
        ``threshold, balanced_accuracy, separation``; ``.attrs["best"]`` is the maximum
        separation and ``.attrs["best_threshold"]`` where it is reached.
    """
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(active).astype(bool)
    ok = np.isfinite(v)
    v, y = v[ok], y[ok]
    if y.all() or not y.any():
        raise ValueError("threshold sweep needs both actives and inactives")
    t = np.unique(v) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pos, neg = np.sort(v[y]), np.sort(v[~y])
    tpr = np.searchsorted(pos, t, side="right") / len(pos)  # actives with v <= t
    tnr = 1.0 - np.searchsorted(neg, t, side="right") / len(neg)
    ba = 0.5 * (tpr + tnr)
    out = pd.DataFrame({"threshold": t, "balanced_accuracy": ba,
                        "separation": np.maximum(ba, 1.0 - ba)})
    i = int(np.argmax(out["separation"].to_numpy()))
    out.attrs["best"] = float(out["separation"].iat[i])
    out.attrs["best_threshold"] = float(out["threshold"].iat[i])
    return out


def _best_train_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Probability threshold maximizing balanced accuracy on training predictions."""
    cand = np.unique(p)
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    tpr = 1.0 - np.searchsorted(pos, cand, side="left") / len(pos)  # p >= t
    tnr = np.searchsorted(neg, cand, side="left") / len(neg)
    return float(cand[int(np.argmax(tpr + tnr))])


# ------------------------------------------------------------------------------- models
def _fit_predict(model: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, *,
                 seed: int, logistic_c: float, xgb_params: dict | None):
    """Fit on train; return (test probabilities, train probabilities)."""
    if model == "logistic":
        clf = make_pipeline(StandardScaler(), LogisticRegression(
            C=logistic_c, class_weight="balanced", max_iter=2000))
    elif model == "xgboost":
        from xgboost import XGBClassifier

        n_pos = max(int(y_tr.sum()), 1)
        params = dict(n_estimators=100, max_depth=3, learning_rate=0.1, tree_method="hist",
                      n_jobs=1, random_state=seed, verbosity=0,
                      scale_pos_weight=(len(y_tr) - n_pos) / n_pos)
        params.update(xgb_params or {})
        clf = XGBClassifier(**params)
    else:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    clf.fit(x_tr, y_tr.astype(int))
    return clf.predict_proba(x_te)[:, 1], clf.predict_proba(x_tr)[:, 1]


def _compound_folds(y: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_min = int(min(y.sum(), (~y).sum()))
    k = int(min(n_splits, max(n_min, 2), len(y)))
    if n_min >= 2:
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y))
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(y))


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


# --------------------------------------------------------------------------------- task
def bioactivity(
    profiles: pd.DataFrame,
    features: list[str],
    labels: pd.DataFrame,
    *,
    levels: Iterable[str] = ("NR",),
    models: Sequence[str] = MODELS,
    unit: str = "compound",
    n_splits: int = 5,
    scramble: bool = True,
    min_test_class: int = MIN_TEST_CLASS,
    logistic_c: float = 0.1,
    xgb_params: dict | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict binary bioactivity per assay from a representation.

    Parameters
    ----------
    profiles : DataFrame
        Well profiles: ``Metadata_Perturbation``, feature columns, and (for grouped
        levels) the grouping columns of :data:`baselens.evaluate.splits.BATCH_LEVELS`.
        Wells of perturbations without labels (controls, genes) are ignored.
    features : list of str
        Feature columns (for the cell-count baseline: the one count column).
    labels : DataFrame
        ``Metadata_Perturbation, assay, active`` (0/1) and optionally ``assay_type``
        (e.g. ``ground_truth/bioactivity.parquet`` of a synthetic screen).
    levels : iterable of str
        ``NR`` and/or grouped levels ``NSP``, ``NSB``, ``NSS``, ``NSL``. A level that
        cannot be formed is skipped (``scores.attrs["skipped_levels"]``).
    models : sequence of str
        ``logistic`` and/or ``xgboost`` (XGBoost: 100 trees, depth 3, hist, 1 thread;
        override with ``xgb_params``).
    unit : {"compound", "well"}
        How ``NR`` is run: compound-averaged profiles (Seal et al. 2026) or the well-level design
        of the grouped levels.
    n_splits : int
        Compound folds (stratified; lowered when an assay has fewer actives) and the
        maximum number of group folds.
    scramble : bool
        Also run every model on y-scrambled labels (``<model>_scrambled``).
    min_test_class : int
        Rec. 4 threshold for ``warning_small_test`` (default 20).

    Returns
    -------
    scores : DataFrame
        ``metric, value, n, fold, batch_level, model, assay, assay_type, warning``; one
        row per (level, metric, fold). Metric names:

        * ``{m}:{model}:{assay}`` for m in ``auc_roc, auprg, auc_pr, balanced_accuracy,
          balanced_accuracy_train_threshold`` (n = test compounds);
        * ``{m}:{model}:{assay_type}`` and ``{m}:{model}`` — means over the assays of a
          type / all assays with a defined value in that fold (n = assays);
        * ``n_actives_test:{assay}``, ``n_inactives_test:{assay}``,
          ``warning_small_test:{assay}`` (1.0 when either is < ``min_test_class``) and
          ``n_assays_small_test`` per fold (n = assays).

        Folds whose training part lacks a class, or whose test part lacks a class
        (AUCs undefined), have no model rows; their count rows and ``warning`` say so.
    per_item : DataFrame
        ``perturbation, metric, value, batch_level``: the out-of-fold predicted
        probability of every compound, metric ``oof_probability:{model}:{assay}``
        (unscrambled models only).

    ``scores.attrs``: ``skipped_levels``, ``warnings``, ``fold_plan`` (level → one line),
    and ``dropped`` — per (level,
    model) the compound predictions imputed with the training prevalence because no group
    fold of a grouped level predicted any of the compound's wells (contract of
    ``run/tasks.py``: ``what, n_removed, n_kept, reason``).
    """
    lab = _check_inputs(labels, models, unit)
    design = _design(profiles, features, lab, dict(seed=seed, logistic_c=logistic_c,
                                                   xgb_params=xgb_params))
    acc = _Accumulator()
    for level in levels:
        well_level = level != "NR" or unit == "well"
        group_folds = None
        if well_level and level != "NR":
            try:
                group_folds = level_folds(design.wells, level, n_splits=n_splits, seed=seed)
            except (ValueError, KeyError) as err:
                acc.skipped[level] = str(err)
                continue
        for assay, sub in lab.groupby("assay", sort=True):
            _score_assay(design, acc, level, str(assay), sub, well_level=well_level,
                         group_folds=group_folds, models=models, scramble=scramble,
                         n_splits=n_splits, min_test_class=min_test_class, seed=seed)
    return acc.tables(levels, n_splits=n_splits, unit=unit, min_test_class=min_test_class)


# ----------------------------------------------------------------------------- steps
def _check_inputs(labels: pd.DataFrame, models: Sequence[str], unit: str) -> pd.DataFrame:
    """Validate the arguments; return the labels with ``Metadata_Perturbation`` as str and an
    ``assay_type`` column (``""`` when absent)."""
    if unit not in ("compound", "well"):
        raise ValueError(f"unit must be 'compound' or 'well', got {unit!r}")
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    need = {PERT, "assay", "active"}
    if not need <= set(labels.columns):
        raise ValueError(f"labels need columns {sorted(need)}; got {list(labels.columns)}")
    lab = labels.copy()
    lab[PERT] = lab[PERT].astype(str)
    if "assay_type" not in lab.columns:
        lab["assay_type"] = ""
    return lab


@dataclass
class _Design:
    """The labelled wells and their features, per well and averaged per compound."""

    wells: pd.DataFrame  # profiled wells of labelled compounds
    xw: np.ndarray  # (wells, features)
    wc: np.ndarray  # compound index of every well
    compounds: np.ndarray  # sorted compound names
    xc: np.ndarray  # (compounds, features): mean of the compound's wells
    ctx: dict  # model options (seed, logistic_c, xgb_params)


def _design(profiles: pd.DataFrame, features: list[str], lab: pd.DataFrame, ctx: dict) -> _Design:
    """Keep the wells of labelled compounds; index them by compound."""
    wells = profiles[profiles[PERT].astype(str).isin(set(lab[PERT]))].reset_index(drop=True)
    if wells.empty:
        raise ValueError("no profiled well belongs to a labelled compound")
    wpert = wells[PERT].astype(str).to_numpy()
    xw = wells[features].to_numpy(dtype=np.float64)
    compounds = np.unique(wpert)
    cidx = {c: i for i, c in enumerate(compounds)}
    wc = np.array([cidx[c] for c in wpert])
    xc = pd.DataFrame(xw).groupby(wc).mean().to_numpy()  # rows = compounds, sorted
    return _Design(wells, xw, wc, compounds, xc, ctx)


@dataclass
class _Accumulator:
    """Rows and bookkeeping collected over levels, assays, label variants and folds."""

    rows: list = field(default_factory=list)
    per_rows: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    imputed: dict = field(default_factory=dict)  # (level, model) -> compounds given prevalence
    predicted: dict = field(default_factory=dict)

    def count(self, key: tuple[str, str], n_imputed: int, n_test: int) -> None:
        self.imputed[key] = self.imputed.get(key, 0) + n_imputed
        self.predicted[key] = self.predicted.get(key, 0) + n_test - n_imputed

    def tables(self, levels, *, n_splits: int, unit: str,
               min_test_class: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(scores, per_item)`` with the assay means and the attrs of :func:`bioactivity`."""
        scores = pd.DataFrame(self.rows, columns=_COLUMNS)
        scores = pd.concat([scores, _aggregates(scores, min_test_class)],
                           ignore_index=True)[_COLUMNS]
        scores["n"] = scores["n"].astype("int64")
        scores["fold"] = scores["fold"].astype("int64")
        per = (pd.concat(self.per_rows, ignore_index=True) if self.per_rows
               else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"]))
        scores.attrs["skipped_levels"] = self.skipped
        scores.attrs["warnings"] = self.warnings
        scores.attrs["fold_plan"] = {level: _fold_plan(level, n_splits, unit)
                                     for level in levels if level not in self.skipped}
        scores.attrs["dropped"] = [
            {"what": "compound predictions", "n_removed": int(n),
             "n_kept": int(self.predicted[key]),
             "reason": f"{key[0]}, {key[1]}: compound given the training prevalence (an "
                       "uninformative score) because no group fold predicted any of its wells "
                       "(summed over assays and folds)"}
            for key, n in self.imputed.items() if n]
        return scores, per


_COLUMNS = ["metric", "value", "n", "fold", "batch_level", "model", "assay", "assay_type",
            "warning"]


def _fold_plan(level: str, n_splits: int, unit: str) -> str:
    """One line describing the folds of ``level`` (``scores.attrs["fold_plan"]``)."""
    return (f"≤ {n_splits} folds of compounds per assay (stratified on activity; a compound's "
            f"wells never in both train and test)"
            + (", compound-averaged profiles" if level == "NR" and unit == "compound"
               else ", well-level fit, compound score = mean of its wells")
            + ("" if level == "NR" else
               f" × {LEVEL_DESCRIPTIONS.get(level, level)} ({BATCH_LEVELS.get(level)})"))


def _assay_labels(design: _Design, sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the profiled compounds labelled in this assay, and their labels (bool)."""
    act = sub.drop_duplicates(PERT).set_index(PERT)["active"]
    present = np.array([c in act.index for c in design.compounds])
    y_all = np.zeros(len(design.compounds), dtype=bool)
    y_all[present] = act.loc[design.compounds[present]].to_numpy().astype(bool)
    comp = np.flatnonzero(present)
    return comp, y_all[comp]


def _score_assay(design: _Design, acc: _Accumulator, level: str, assay: str,
                 sub: pd.DataFrame, *, well_level: bool, group_folds, models: Sequence[str],
                 scramble: bool, n_splits: int, min_test_class: int, seed: int) -> None:
    """Every model on the true labels and (``scramble``) on y-scrambled labels of one assay."""
    atype = str(sub["assay_type"].iat[0])
    comp, y_true = _assay_labels(design, sub)
    rng = np.random.default_rng([seed, _key(assay), _key(level)])
    y_scr = y_true[rng.permutation(len(y_true))]
    if y_true.all() or not y_true.any():  # the scrambled labels have the same classes
        acc.warnings.append(f"{level}/{assay}: only one class among "
                            f"{len(y_true)} compounds; not scored")
        return
    for scrambled in ([False, True] if scramble else [False]):
        y = y_scr if scrambled else y_true
        folds = _compound_folds(y, n_splits, seed + (1 if scrambled else 0))
        oof = {m: np.full(len(comp), np.nan) for m in models}
        for f, (tr, te) in enumerate(folds):
            _score_fold(design, acc, level, assay, atype, comp, y, tr, te, f, oof,
                        scrambled=scrambled, well_level=well_level, group_folds=group_folds,
                        min_test_class=min_test_class)
        if not scrambled:
            for model, p in oof.items():
                ok = np.isfinite(p)
                acc.per_rows.append(pd.DataFrame({
                    "perturbation": design.compounds[comp][ok],
                    "metric": f"oof_probability:{model}:{assay}",
                    "value": p[ok], "batch_level": level}))


def _fold_warning(y: np.ndarray, tr: np.ndarray, te: np.ndarray,
                  min_test_class: int) -> tuple[bool, str]:
    """Whether the test split is small (Seal et al. 2026, Nat. Commun., rec. 4) and the
    warning text of the fold (small test split, training split lacking a class)."""
    n_act, n_ina = int(y[te].sum()), int((~y[te]).sum())
    small = min(n_act, n_ina) < min_test_class
    msg = ""
    if small:
        msg = (f"test split has {n_act} actives and {n_ina} inactives "
               f"(< {min_test_class}; Seal et al. 2026, Nat. Commun., rec. 4): AUC-type "
               "metrics are unreliable")
    if not (y[tr].any() and (~y[tr]).any()):
        msg = ((msg + "; ") if msg else "") + "training split lacks a class: not scored"
    return small, msg


def _score_fold(design: _Design, acc: _Accumulator, level: str, assay: str, atype: str,
                comp: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, f: int,
                oof: dict, *, scrambled: bool, well_level: bool, group_folds,
                min_test_class: int) -> None:
    """Count rows (true labels only), then fit, predict and score every model on one fold."""
    n_act, n_ina = int(y[te].sum()), int((~y[te]).sum())
    small, msg = _fold_warning(y, tr, te, min_test_class)
    if not scrambled:
        base = dict(fold=f, batch_level=level, model="", assay=assay, assay_type=atype,
                    warning=msg)
        acc.rows += [
            dict(base, metric=f"n_actives_test:{assay}", value=float(n_act), n=len(te)),
            dict(base, metric=f"n_inactives_test:{assay}", value=float(n_ina), n=len(te)),
            dict(base, metric=f"warning_small_test:{assay}", value=float(small), n=len(te)),
        ]
        if small:
            acc.warnings.append(f"{level}/{assay}/fold {f}: {msg}")
    if not (y[tr].any() and (~y[tr]).any()):
        return
    for model in oof:
        name = f"{model}_scrambled" if scrambled else model
        if well_level:
            p_te, p_tr, n_imp = _well_level(model, design.xw, design.wc, comp, y, tr, te,
                                            group_folds, design.ctx)
            acc.count((level, name), n_imp, len(te))
        else:
            p_te, p_tr = _fit_predict(model, design.xc[comp[tr]], y[tr], design.xc[comp[te]],
                                      **design.ctx)
        oof[model][te] = p_te
        if n_act == 0 or n_ina == 0:
            continue
        acc.rows += [dict(metric=f"{k}:{name}:{assay}", value=float(v), n=len(te), fold=f,
                          batch_level=level, model=name, assay=assay, assay_type=atype,
                          warning=msg)
                     for k, v in _metric_values(y[te], p_te, y[tr], p_tr).items()]


def _metric_values(y_te: np.ndarray, p_te: np.ndarray, y_tr: np.ndarray,
                   p_tr: np.ndarray) -> dict[str, float]:
    """The five held-out metrics of one model on one fold (module docstring)."""
    thr = _best_train_threshold(y_tr, p_tr)
    return {
        "auc_roc": roc_auc_score(y_te, p_te),
        "auprg": auprg(y_te, p_te),
        "auc_pr": average_precision_score(y_te, p_te),
        "balanced_accuracy": balanced_accuracy(y_te, p_te >= 0.5),
        "balanced_accuracy_train_threshold": balanced_accuracy(y_te, p_te >= thr),
    }


def _well_level(model, xw, wc, comp, y, tr, te, group_folds, ctx):
    """Crossed compound × group design; returns (compound test probs, compound train probs,
    number of test compounds given the training prevalence)."""
    ycomp = np.full(wc.max() + 1, -1)
    ycomp[comp] = y.astype(int)
    train_c, test_c = comp[tr], comp[te]
    w_train = np.isin(wc, train_c)
    w_test = np.isin(wc, test_c)
    p_well = np.full(len(wc), np.nan)
    p_train_well = np.zeros(len(wc))
    n_train_fits = np.zeros(len(wc))
    gfolds = group_folds or [None]
    for g in gfolds:
        if g is None:
            g_tr = np.ones(len(wc), bool)
            g_te = np.ones(len(wc), bool)
        else:
            g_tr = np.zeros(len(wc), bool)
            g_tr[g.train] = True
            g_te = np.zeros(len(wc), bool)
            g_te[g.test] = True
        fit = w_train & g_tr
        pred = w_test & g_te
        if not pred.any():
            continue
        yf = ycomp[wc[fit]].astype(bool)
        if not (yf.any() and (~yf).any()):
            continue
        p_te, p_tr = _fit_predict(model, xw[fit], yf, xw[pred], **ctx)
        p_well[pred] = p_te
        p_train_well[fit] += p_tr
        n_train_fits[fit] += 1
    s = pd.Series(p_well).groupby(wc).mean()
    p_test = s.reindex(test_c).to_numpy()
    # compounds whose wells could not be predicted (a group fold lacking a class) get the
    # training prevalence, i.e. an uninformative score
    n_imputed = int((~np.isfinite(p_test)).sum())
    p_test = np.where(np.isfinite(p_test), p_test, y[tr].mean())
    with np.errstate(invalid="ignore"):
        ptw = pd.Series(p_train_well / n_train_fits).groupby(wc).mean()
    p_train = ptw.reindex(train_c).to_numpy()
    p_train = np.where(np.isfinite(p_train), p_train, y[tr].mean())
    return p_test, p_train, n_imputed


def _aggregates(scores: pd.DataFrame, min_test_class: int) -> pd.DataFrame:
    """Means over assays (all, and per assay type) per (level, fold, model, metric)."""
    out = []
    s = scores[scores["model"] != ""]
    if len(s):
        base = s["metric"].str.split(":").str[0]
        s = s.assign(base=base)
        for (level, fold, model, b), g in s.groupby(["batch_level", "fold", "model", "base"],
                                                    sort=True):
            out.append(dict(metric=f"{b}:{model}", value=float(g["value"].mean()), n=len(g),
                            fold=fold, batch_level=level, model=model, assay="",
                            assay_type="", warning=""))
            for atype, h in g.groupby("assay_type", sort=True):
                if atype:
                    out.append(dict(metric=f"{b}:{model}:{atype}", value=float(h["value"].mean()),
                                    n=len(h), fold=fold, batch_level=level, model=model,
                                    assay="", assay_type=atype, warning=""))
    w = scores[scores["metric"].str.startswith("warning_small_test:")]
    for (level, fold), g in w.groupby(["batch_level", "fold"], sort=True):
        n_small = int(g["value"].sum())
        out.append(dict(metric="n_assays_small_test", value=float(n_small), n=len(g), fold=fold,
                        batch_level=level, model="", assay="", assay_type="",
                        warning=(f"{n_small} of {len(g)} assays have < {min_test_class} actives "
                                 "or inactives in this test split" if n_small else "")))
    return pd.DataFrame(out)
