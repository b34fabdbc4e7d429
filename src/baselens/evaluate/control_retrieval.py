"""Positive controls retrieved against each other, per fold of plates (JUMP-CP).

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026),
Appendix C.2 (after Sanchez et al. 2026): every JUMP compound plate carries the same eight
positive-control compounds and DMSO. The benchmark takes five folds of plates
(four compound plates from each of the seven 384-well sources per fold,
:func:`baselens.evaluate.fold_plans.jump_plate_folds`), uses the positive-control wells
for retrieval and DMSO for normalization, and reports per-compound mAP, mean ± sd over
the five folds (Fig. 3, Table 11).

Within one fold ``f``:

* **profiles** — the well profiles of the positive-control compounds on the fold's plates,
  already normalized to DMSO by the profile stage (e.g. ``normalize:standardize:negcon``
  per plate: ``x' = (x - mean_DMSO(plate)) / sd_DMSO(plate)``); DMSO wells take no part
  in the ranking;
* **query** — every positive-control well ``i``; **positives** — the other wells of the
  same compound in the fold; **negatives** — the wells of the other positive controls in
  the fold (copairs rules ``pos_sameby=[Metadata_Perturbation]``,
  ``neg_diffby=[Metadata_Perturbation]``);
* candidates are ranked by cosine similarity; ``AP_i`` is copairs' average precision
  (ties broken positives first); a compound's mAP is the mean AP of its wells:
  ``mAP_c,f = mean_{i in c, f} AP_i``; its p-value comes from ``null_size`` random
  rankings with the same (positives, candidates) counts, Benjamini–Hochberg corrected;
* the fold's score is ``mean_c mAP_c,f`` (``mean_average_precision``) and the share of
  compounds with corrected p < ``threshold`` (``fraction_retrieved``).

Batch-effect levels (``batch_level``) restrict each query's candidates as everywhere in
baselens (:mod:`baselens.evaluate.batch_levels`); ``NR`` is the paper's setting.

Which compounds: ``controls`` (e.g. the eight JCP2022 ids of
:data:`~baselens.evaluate.fold_plans.JUMP_POSITIVE_CONTROLS`), else every perturbation
marked ``Metadata_ControlType == "poscon"`` that is present in every fold (the *shared*
controls). Which plates: the plan of :func:`jump_plate_folds` (``sources``,
``plate_types``, ``n_folds``, ``plates_per_source``, ``seed``), or a fold number per row
in ``fold_col``. Everything left out is counted in ``scores.attrs`` and summarized in the
``warning`` column.

Signature and contract::

    scores, per_perturbation = control_retrieval(profiles, features, *, controls=None,
        sources=None, plate_types=("COMPOUND",), n_folds=5, plates_per_source=4, seed=0,
        fold_col=None, batch_level=None, null_size=10000, threshold=0.05)

* ``scores``: ``metric, value, n, batch_level, fold, warning`` — ``mean_average_precision``,
  ``fraction_retrieved`` per (level, fold); ``n`` = compounds scored;
* ``per_perturbation``: ``perturbation, metric, value, batch_level, fold`` — per compound
  ``mean_average_precision``, ``p_value``, ``corrected_p_value``, and ``n_wells``.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from baselens.evaluate.batch_levels import apply_level, report_skipped, resolve_levels
from baselens.evaluate.fold_plans import describe_plan, jump_plate_folds
from baselens.evaluate.replicate_retrieval import retrieval_scores

PERT = "Metadata_Perturbation"
_LEVEL_COLS = ["Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"]
_SCORE_COLS = ["metric", "value", "n", "batch_level", "fold", "warning"]
_PER_COLS = ["perturbation", "metric", "value", "batch_level", "fold"]

__all__ = ["control_retrieval", "fold_scores"]


def fold_scores(meta: pd.DataFrame, feats: np.ndarray, rules: dict, null_size: int,
                threshold: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-compound mAP of one fold's control wells under copairs ``rules``.

    Returns ``(scores, per)``: scores ``metric, value, n``; per ``perturbation, metric,
    value`` (``mean_average_precision``, ``p_value``, ``corrected_p_value``, ``n_wells``).
    Raises ``ValueError`` when no well has an eligible positive.
    """
    return retrieval_scores(meta, feats, rules, null_size, threshold, seed, count_wells=True,
                  empty="no control well has a same-compound well among its candidates")


def _fold_of_rows(profiles: pd.DataFrame, fold_col, n_folds, plates_per_source, seed, sources,
                  plate_types) -> tuple[np.ndarray, str, dict]:
    """Fold per row (-1: not in the plan), a warning line and the plan's attrs."""
    if fold_col is not None:
        if fold_col not in profiles.columns:
            raise ValueError(f"control_retrieval: fold_col {fold_col!r} is not a profile column")
        f = pd.to_numeric(profiles[fold_col], errors="coerce").fillna(-1).astype(int).to_numpy()
        return f, "", {"fold_col": fold_col}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported through the warning column
        plan = jump_plate_folds(profiles, n_folds=n_folds, plates_per_source=plates_per_source,
                                seed=seed, sources=sources, plate_types=plate_types)
    fold_of = dict(zip(plan["Metadata_Plate"], plan["fold"]))
    f = profiles["Metadata_Plate"].astype(str).map(fold_of).fillna(-1).astype(int).to_numpy()
    attrs = dict(plan.attrs)
    attrs["plan"] = plan[["Metadata_Source", "Metadata_Plate", "fold"]].to_dict("list")
    return f, describe_plan(plan), attrs


def control_retrieval(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    controls: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    plate_types: Iterable[str] | None = ("COMPOUND",),
    n_folds: int = 5,
    plates_per_source: int = 4,
    seed: int = 0,
    fold_col: str | None = None,
    batch_level=None,
    null_size: int = 10000,
    threshold: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-compound mAP of positive controls against each other, per fold (arXiv 2603.13377 C.2).

    Parameters
    ----------
    profiles : DataFrame
        Well profiles normalized to DMSO, with ``Metadata_Perturbation``,
        ``Metadata_ControlType``, ``Metadata_Plate``, ``Metadata_Source`` (and
        ``Metadata_Batch``, ``Metadata_Well`` for batch levels).
    features : list of str
        Feature columns.
    controls, sources, plate_types, n_folds, plates_per_source, seed, fold_col,
    batch_level, null_size, threshold
        See the module docstring.
    """
    for c in (PERT, "Metadata_Plate"):
        if c not in profiles.columns:
            raise ValueError(f"control_retrieval needs a {c} column in the profiles")
    if fold_col is None and "Metadata_Source" not in profiles.columns:
        raise ValueError("control_retrieval forms folds per source: the profiles need "
                         "Metadata_Source (or give fold_col)")
    df = profiles.reset_index(drop=True)
    pert = df[PERT].astype(str)
    if controls is not None:
        wanted = [str(c) for c in controls]
        is_ctrl = pert.isin(wanted).to_numpy()
    else:
        if "Metadata_ControlType" not in df.columns:
            raise ValueError("control_retrieval needs Metadata_ControlType ('poscon') or `controls`")
        wanted = None
        is_ctrl = (df["Metadata_ControlType"].astype(str) == "poscon").to_numpy()
    if not is_ctrl.any():
        what = "the listed controls" if controls is not None else "Metadata_ControlType == 'poscon'"
        raise ValueError(f"control_retrieval: no well of {what} in the profiles")
    fold, plan_note, plan_attrs = _fold_of_rows(df, fold_col, n_folds, plates_per_source, seed,
                                                sources, plate_types)
    in_plan = is_ctrl & (fold >= 0)
    attrs: dict = {"plan": plan_attrs, "n_control_wells": int(is_ctrl.sum()),
                   "n_control_wells_outside_plan": int((is_ctrl & (fold < 0)).sum())}
    pos = df[in_plan].reset_index(drop=True)
    pfold = fold[in_plan]
    if not len(pos):
        raise ValueError("control_retrieval: no control well lies on a plate of the fold plan "
                         f"({plan_note or 'check sources / plate_types'})")
    fold_ids = sorted(set(pfold.tolist()))
    present = [set(pos.loc[pfold == f, PERT].astype(str)) for f in fold_ids]
    notes = [plan_note] if plan_note else []
    if wanted is None:
        shared = sorted(set.intersection(*present))
        dropped = sorted(set(pos[PERT].astype(str)) - set(shared))
        if dropped:
            notes.append(f"{len(dropped)} poscon(s) not in every fold left out: {', '.join(dropped)}")
        keep = pos[PERT].astype(str).isin(shared).to_numpy()
        pos, pfold = pos[keep].reset_index(drop=True), pfold[keep]
        attrs["dropped_controls_not_shared"] = dropped
    else:
        absent = sorted(set(wanted) - set(pos[PERT].astype(str)))
        partial = sorted({c for c in wanted if c not in absent
                          and not all(c in p for p in present)})
        if absent:
            notes.append(f"{len(absent)} listed control(s) absent: {', '.join(absent)}")
        if partial:
            notes.append(f"{len(partial)} control(s) missing from some fold: {', '.join(partial)}")
        attrs["absent_controls"], attrs["controls_not_in_every_fold"] = absent, partial
    if len(fold_ids) < n_folds and fold_col is None:
        notes.append(f"{len(fold_ids)} of {n_folds} folds formed (too few plates)")
    attrs["n_folds"] = len(fold_ids)
    warning = "; ".join(notes)
    levels, skipped = resolve_levels(pos, batch_level)
    base = dict(pos_sameby=[PERT], pos_diffby=[], neg_sameby=[], neg_diffby=[PERT])
    meta_cols = [PERT] + [c for c in _LEVEL_COLS if c in pos.columns]
    score_frames, per_frames = [], []
    for lv in levels:
        rules = apply_level(**base, level=lv)
        for f in fold_ids:
            sub = pos[pfold == f]
            meta = sub[meta_cols].astype(str).reset_index(drop=True)
            feats = sub[features].to_numpy(dtype=np.float64)
            try:
                s, p = fold_scores(meta, feats, rules, null_size, threshold, seed)
            except ValueError as exc:
                skipped[f"{lv}/fold{f}"] = str(exc)
                continue
            score_frames.append(s.assign(batch_level=lv, fold=int(f), warning=warning))
            per_frames.append(p.assign(batch_level=lv, fold=int(f)))
    scores = (pd.concat(score_frames, ignore_index=True)[_SCORE_COLS] if score_frames
              else pd.DataFrame(columns=_SCORE_COLS))
    per = (pd.concat(per_frames, ignore_index=True)[_PER_COLS] if per_frames
           else pd.DataFrame(columns=_PER_COLS))
    if warning:
        warnings.warn(f"control_retrieval: {warning}", UserWarning, stacklevel=2)
    scores.attrs.update(attrs)
    report_skipped(scores, skipped, "control_retrieval")
    return scores, per
