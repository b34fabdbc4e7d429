"""Replicate retrieval (phenotypic activity), copairs recipe, per batch-effect level.

Every option ranks candidate wells by cosine similarity to a query well and scores the
query by average precision (AP); a perturbation's mAP is the mean AP over its query wells;
a permutation p-value (null: AP of M positives placed at random among the M + N
candidates) and Benjamini–Hochberg correction give "fraction retrieved" (share of
perturbations with corrected p < threshold). This is the mAP framework of Kalinin et al.
2025 (Nat. Commun., "A versatile information retrieval framework for evaluating profile
strength and similarity"; the copairs package, whose 0.5.5 results these equal, tested).
The options differ only in which wells are queries, positives and negatives:

``protocol="negcon"`` (default, the original task): queries are the wells that are not
negative controls (``Metadata_ControlType != "negcon"``, positive controls included);
positives are the other wells of the same perturbation, anywhere in the screen; negatives
are **every** negative-control well of the screen, on any plate. copairs rules:
``pos_sameby=[pert, ref]``, ``neg_diffby=[pert, ref]`` with copairs'
``assign_reference_index`` (controls get unique ids, treated wells share one). This is the
phenotypic-activity example of the copairs documentation; the JUMP profiling recipe does
*not* use it (it restricts negatives to the query's plate: ``"jump"``).

``protocol="jump"``: the negcon mAP of the JUMP profiling recipe
(broadinstitute/jump-profiling-recipe, ``preprocessing/metrics.py``,
``average_precision_negcon``): positive-control wells are left out; perturbations with
2–1000 wells are queries; positives are the other wells of the same perturbation on any
plate; negatives are the negative-control (DMSO) wells **on the query's plate** — copairs
``pos_sameby=[pert]``, ``pos_diffby=[]``, ``neg_sameby=["Metadata_Plate"]``,
``neg_diffby=[pert_type, pert]`` with every negative control given its own id; mAP per
perturbation with ``null_size`` (recipe: 10000) and ``seed`` (recipe: 0). Not applied: the
recipe's plate-type filter (select plates before) and its exclusion of compound
``JCP2022_033954`` (a JUMP-specific workaround). Needs ``Metadata_Plate``.

``protocol="jump_poscon"``: the JUMP-CP positive-control benchmark of
“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) (C.2,
after Sanchez et al. 2026): only the positive-control wells (``Metadata_ControlType ==
"poscon"``) that every plate shares are used; each well is a query, its positives are the
other wells of the same compound and its negatives the wells of the *other* positive
controls (copairs ``pos_sameby=[pert]``, ``neg_diffby=[pert]``). DMSO (negative controls)
enters through the per-plate normalization of the profile stage (normalize to negcon
before calling this), not the ranking. Scores are per-compound mAP and their mean, **per
fold**: folds are sets of plates, drawn per source so that each fold holds plates of every
source (arXiv 2603.13377: 5 folds × 4 plates × 7 sources), seeded; or given by ``fold_col``.

Batch-effect levels (``batch_level``; see :mod:`baselens.evaluate.batch_levels`) add
columns to the copairs rules — e.g. NSB adds ``Metadata_Batch`` to ``pos_diffby`` and
``neg_diffby``: candidates in the query's batch are dropped, positives and negatives alike.
Equal to ``copairs.map.average_precision`` with those rules (tests).

Signature and contract::

    scores, per_perturbation = replicate_retrieval(profiles, features, *, null_size=10000,
        threshold=0.05, seed=0, batch_level=None, protocol="negcon", n_folds=5,
        fold_col=None, plates_per_source=None)

* ``scores``: ``metric, value, n, batch_level, fold`` — ``mean_average_precision`` (mean of
  per-perturbation mAP), ``fraction_retrieved``; ``n`` = perturbations scored.
* ``per_perturbation``: ``perturbation, metric, value, batch_level, fold`` —
  ``mean_average_precision``, ``p_value``, ``corrected_p_value``.
* ``batch_level=None`` runs ``NR`` only (the old behaviour); ``"all"`` every level that can
  be formed; a name or a list. Levels that cannot be formed or have no eligible positive
  are listed in ``scores.attrs["skipped_batch_levels"]`` (with a ``UserWarning``).
* ``fold`` is 0 for ``protocol="negcon"`` and ``"jump"``. Levels that contradict a rule
  (``"jump"`` at ``NSP``: negatives must share the query's plate, the level forbids it)
  are skipped with that reason.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from baselens import metrics
from baselens.evaluate.batch_levels import apply_level, report_skipped, resolve_levels

PERT = "Metadata_Perturbation"
_REF = "Metadata_reference_index"
_LEVEL_COLS = ["Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"]

#: Options of ``protocol`` (module docstring).
PROTOCOLS = ("negcon", "jump", "jump_poscon")

#: ``protocol="jump"``: perturbations with more wells are not queries (recipe's ``_index``).
MAX_REPLICATES = 1000


def _meta(profiles: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    cols = [PERT] + [c for c in _LEVEL_COLS + extra if c in profiles.columns and c != PERT]
    return profiles[cols].astype(str).reset_index(drop=True)


def retrieval_scores(meta, feats, rules, null_size, threshold, seed, query_mask=None, *,
           count_wells: bool = False, empty: str = "no query has an eligible positive"):
    """Per-perturbation mAP (copairs semantics) of the queries under copairs ``rules``.

    Returns ``(scores, per)``: scores ``metric, value, n`` (``mean_average_precision``
    = mean over perturbations, ``fraction_retrieved``); per ``perturbation, metric, value``
    (``mean_average_precision``, ``p_value``, ``corrected_p_value`` and, with
    ``count_wells``, ``n_wells`` = queries with an eligible positive). Raises
    ``ValueError(empty)`` when no query has one.
    """
    ap = metrics.average_precision(meta, feats, **rules)
    keep = ap["n_pos_pairs"].gt(0).to_numpy().copy()
    if query_mask is not None:
        keep &= query_mask
    ap = ap[keep]
    if len(ap) == 0:
        raise ValueError(empty)
    maps = metrics.mean_average_precision(ap, sameby=[PERT], null_size=null_size,
                                          threshold=threshold, seed=seed)
    per_metrics = ["mean_average_precision", "p_value", "corrected_p_value"]
    if count_wells:
        n_wells = ap.groupby(PERT)["average_precision"].size()
        maps = maps.assign(n_wells=maps[PERT].map(n_wells).astype(float))
        per_metrics.append("n_wells")
    per = maps.melt(id_vars=[PERT], value_vars=per_metrics,
                    var_name="metric", value_name="value").rename(columns={PERT: "perturbation"})
    scores = pd.DataFrame({
        "metric": ["mean_average_precision", "fraction_retrieved"],
        "value": [float(maps["mean_average_precision"].mean()),
                  float(metrics.fraction_retrieved(maps))],
        "n": [len(maps), len(maps)],
    })
    return scores, per


def assign_plate_folds(profiles: pd.DataFrame, n_folds: int, seed: int = 0,
                       plates_per_source: int | None = None) -> pd.Series:
    """Fold number per row: plates shuffled (seeded) within each source and dealt round-robin.

    With ``plates_per_source`` each fold takes at most that many plates of each source
    (arXiv 2603.13377: 4); surplus plates get fold -1 (unused).
    """
    plates = profiles[["Metadata_Plate"]].astype(str).copy()
    plates["src"] = (profiles["Metadata_Source"].astype(str)
                     if "Metadata_Source" in profiles.columns else "all")
    table = plates.drop_duplicates("Metadata_Plate").sort_values(["src", "Metadata_Plate"])
    rng = np.random.default_rng(seed)
    fold_of = {}
    for _, sub in table.groupby("src", sort=True):
        order = rng.permutation(sub["Metadata_Plate"].to_numpy())
        for i, p in enumerate(order):
            f = i % n_folds
            if plates_per_source is not None and i // n_folds >= plates_per_source:
                f = -1
            fold_of[p] = f
    return plates["Metadata_Plate"].map(fold_of).astype(int).set_axis(profiles.index)


def replicate_retrieval(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
    batch_level=None,
    protocol: str = "negcon",
    n_folds: int = 5,
    fold_col: str | None = None,
    plates_per_source: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score replicate retrieval (see the module docstring for the contract).

    Parameters
    ----------
    profiles : DataFrame
        Normalized well profiles with ``Metadata_Perturbation`` and
        ``Metadata_ControlType`` (``"negcon"`` / ``"poscon"``), plus ``Metadata_Plate``,
        ``Metadata_Batch``, ``Metadata_Source``, ``Metadata_Well`` for batch levels.
    features : list of str
        Feature columns.
    protocol : {"negcon", "jump", "jump_poscon"}
        Which wells are queries, positives and negatives (module docstring: each option's
        rule and its source).

    Returns
    -------
    scores, per_perturbation : DataFrame
        As in the module docstring.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(repr(p) for p in PROTOCOLS)}; "
                         f"got {protocol!r}")
    if protocol == "jump" and "Metadata_Plate" not in profiles.columns:
        raise ValueError("protocol='jump' needs Metadata_Plate (negatives are the DMSO wells "
                         "on the query's plate)")
    levels, skipped = resolve_levels(profiles, batch_level)
    ctype = profiles["Metadata_ControlType"].astype(str)
    score_frames, per_frames = [], []
    attrs = {}
    if protocol in ("negcon", "jump"):
        if protocol == "jump":  # the recipe leaves positive controls out entirely
            profiles = profiles[(ctype != "poscon").to_numpy()].reset_index(drop=True)
            ctype = profiles["Metadata_ControlType"].astype(str)
        negcon = (ctype == "negcon").to_numpy()
        if negcon.sum() < 2:
            raise ValueError(
                "replicate retrieval needs negative-control wells (Metadata_ControlType='negcon'); "
                f"found {int(negcon.sum())}"
            )
        meta = _meta(profiles, [])
        # copairs' assign_reference_index: controls get unique ids, treated wells share -1,
        # so positives are same-perturbation treated wells and negatives are controls only.
        meta[_REF] = np.where(negcon, np.arange(len(meta)), -1)
        feats = profiles[features].to_numpy(dtype=np.float64)
        base = dict(pos_sameby=[PERT, _REF], pos_diffby=[], neg_sameby=[], neg_diffby=[PERT, _REF])
        counts = profiles.loc[~negcon, PERT].value_counts()
        attrs["n_single_replicate_wells"] = int((counts == 1).sum())
        query = ~negcon
        if protocol == "jump":
            base["neg_sameby"] = ["Metadata_Plate"]
            many = profiles[PERT].map(counts).gt(MAX_REPLICATES).to_numpy() & query
            if many.any():
                attrs["n_wells_over_max_replicates"] = int(many.sum())
            query &= ~many
        for lv in levels:
            try:
                s, p = retrieval_scores(meta, feats, apply_level(**base, level=lv), null_size, threshold,
                              seed, query_mask=query)
            except ValueError as exc:
                skipped[lv] = str(exc)
                continue
            score_frames.append(s.assign(batch_level=lv, fold=0))
            per_frames.append(p.assign(batch_level=lv, fold=0))
        if not score_frames and levels == ["NR"]:
            raise ValueError("no perturbation has ≥ 2 replicate wells; replicate retrieval is undefined")
    else:
        pos = profiles[(ctype == "poscon").to_numpy()]
        if pos[PERT].nunique() < 2:
            raise ValueError("jump_poscon needs ≥ 2 positive-control compounds "
                             "(Metadata_ControlType='poscon')")
        folds = (pos[fold_col].astype(int) if fold_col is not None
                 else assign_plate_folds(pos, n_folds, seed, plates_per_source))
        pos = pos[folds.to_numpy() >= 0]
        folds = folds[folds >= 0]
        fold_ids = sorted(folds.unique())
        # shared controls: compounds present in every fold
        present = pos.groupby(folds.to_numpy())[PERT].apply(set)
        shared = sorted(set.intersection(*present.tolist()))
        dropped = sorted(set(pos[PERT]) - set(shared))
        attrs["dropped_poscon_not_shared"] = dropped
        attrs["n_folds"] = len(fold_ids)
        if len(fold_ids) < n_folds and fold_col is None:
            warnings.warn(f"replicate_retrieval: only {len(fold_ids)} fold(s) could be formed "
                          f"(fewer plates than n_folds={n_folds})", UserWarning, stacklevel=2)
        keep = pos[PERT].isin(shared).to_numpy()
        pos, folds = pos[keep], folds[keep]
        for lv in levels:
            for f in fold_ids:
                sub = pos[(folds == f).to_numpy()]
                meta = _meta(sub, [])
                feats = sub[features].to_numpy(dtype=np.float64)
                base = dict(pos_sameby=[PERT], pos_diffby=[], neg_sameby=[], neg_diffby=[PERT])
                try:
                    s, p = retrieval_scores(meta, feats, apply_level(**base, level=lv), null_size,
                                  threshold, seed)
                except ValueError as exc:
                    skipped[f"{lv}/fold{f}"] = str(exc)
                    continue
                score_frames.append(s.assign(batch_level=lv, fold=int(f)))
                per_frames.append(p.assign(batch_level=lv, fold=int(f)))
    scores = (pd.concat(score_frames, ignore_index=True) if score_frames else
              pd.DataFrame(columns=["metric", "value", "n", "batch_level", "fold"]))
    per = (pd.concat(per_frames, ignore_index=True) if per_frames else
           pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level", "fold"]))
    scores.attrs.update(attrs)
    report_skipped(scores, skipped, "replicate_retrieval")
    return scores, per
