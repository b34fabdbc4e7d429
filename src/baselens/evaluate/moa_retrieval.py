"""Mechanism-of-action (MoA) retrieval mAP, multilabel, per batch-effect level.

Does a compound's profile retrieve *other* compounds with the same mechanism ahead of
compounds with a different one? (JUMP "consistency" / MoA retrieval of the copairs
framework.) Each compound carries a set of MoAs (``moa_col``; lists, or strings such as
``"a|b"`` split on ``sep``).

* query: a treated well (``aggregate="well"``, default) or a perturbation's mean profile
  (``aggregate="perturbation"``); negative controls and rows without an MoA are dropped;
* positives: profiles of a **different** perturbation sharing **at least one** MoA
  (``multilabel_mode="any"``), or — ``multilabel_mode="per_label"`` — one AP per
  (query, MoA of the query) with positives carrying that MoA
  (``copairs.map.multilabel.average_precision``);
* negatives: profiles sharing **no** MoA with the query;
* cosine similarity, copairs AP (ties positives first), per-perturbation mAP = mean AP of
  its queries, permutation p-values + BH → ``fraction_retrieved``.

Computed by :func:`baselens.metrics.multilabel_average_precision` (equal to copairs'
multilabel AP; tests). Batch-effect levels add their columns to both rules (NSB: a query is
ranked only against wells of other batches); with ``aggregate="perturbation"`` only ``NR``
can be formed (the profile has no plate/batch/well) and the other levels are reported as
skipped.

Signature and contract::

    scores, per_perturbation = moa_retrieval(profiles, features, *,
        moa_col="Metadata_moa", sep="|", aggregate="well", multilabel_mode="any",
        batch_level=None, null_size=10000, threshold=0.05, seed=0)

* ``scores``: ``metric, value, n, batch_level`` — ``mean_average_precision`` (mean over
  perturbations), ``fraction_retrieved``; ``n`` = perturbations scored;
* ``per_perturbation``: ``perturbation, metric, value, batch_level`` —
  ``mean_average_precision``, ``p_value``, ``corrected_p_value``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselens import metrics
from baselens.evaluate.batch_levels import level_rule, report_skipped, resolve_levels

PERT = "Metadata_Perturbation"
_LEVEL_COLS = ["Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"]


def _has_moa(values: pd.Series) -> np.ndarray:
    def ok(v):
        if isinstance(v, str):
            return v.strip() not in ("", "nan", "None")
        if isinstance(v, (list, tuple, set, np.ndarray)):
            return len(v) > 0
        return v is not None and not (isinstance(v, float) and np.isnan(v))
    return np.array([ok(v) for v in values], dtype=bool)


def moa_retrieval(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    moa_col: str = "Metadata_moa",
    sep: str | None = "|",
    aggregate: str = "well",
    multilabel_mode: str = "any",
    batch_level=None,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score MoA retrieval (see the module docstring for the contract)."""
    if moa_col not in profiles.columns:
        raise ValueError(f"profiles have no MoA column {moa_col!r}")
    if aggregate not in ("well", "perturbation"):
        raise ValueError(f"aggregate must be 'well' or 'perturbation'; got {aggregate!r}")
    ctype = (profiles["Metadata_ControlType"].astype(str) if "Metadata_ControlType" in profiles
             else pd.Series("", index=profiles.index))
    keep = (ctype != "negcon").to_numpy() & _has_moa(profiles[moa_col])
    df = profiles.loc[keep].reset_index(drop=True)
    if df[PERT].nunique() < 2:
        raise ValueError("MoA retrieval needs ≥ 2 annotated perturbations")
    levels, skipped = resolve_levels(df, batch_level)
    if aggregate == "perturbation":
        moa = df.groupby(PERT, sort=True)[moa_col].first()
        df = df.groupby(PERT, sort=True)[features].mean().reset_index()
        df[moa_col] = df[PERT].map(moa)
        for lv in [lv for lv in levels if lv != "NR"]:
            skipped[lv] = "profiles aggregated per perturbation carry no plate/batch/source/well"
        levels = [lv for lv in levels if lv == "NR"]
    meta = df[[PERT, moa_col] + [c for c in _LEVEL_COLS if c in df.columns]].copy()
    for c in [PERT] + [c for c in _LEVEL_COLS if c in meta.columns]:
        meta[c] = meta[c].astype(str)
    feats = df[features].to_numpy(dtype=np.float64)
    score_frames, per_frames = [], []
    for lv in levels:
        same, diff = level_rule(lv)
        try:
            ap = metrics.multilabel_average_precision(
                meta, feats, moa_col, pos_sameby=same, pos_diffby=[PERT, *diff],
                neg_sameby=same, neg_diffby=diff, mode=multilabel_mode, sep=sep)
            ap = ap[ap["n_pos_pairs"] > 0]
            if ap.empty:
                raise ValueError("no query has an eligible positive")
        except ValueError as exc:
            skipped[lv] = str(exc)
            continue
        maps = metrics.mean_average_precision(ap, sameby=[PERT], null_size=null_size,
                                              threshold=threshold, seed=seed)
        per = maps.melt(id_vars=[PERT], value_vars=["mean_average_precision", "p_value",
                                                    "corrected_p_value"],
                        var_name="metric", value_name="value").rename(columns={PERT: "perturbation"})
        per_frames.append(per.assign(batch_level=lv))
        score_frames.append(pd.DataFrame({
            "metric": ["mean_average_precision", "fraction_retrieved"],
            "value": [float(maps["mean_average_precision"].mean()),
                      float(metrics.fraction_retrieved(maps))],
            "n": [len(maps), len(maps)], "batch_level": lv}))
    scores = (pd.concat(score_frames, ignore_index=True) if score_frames
              else pd.DataFrame(columns=["metric", "value", "n", "batch_level"]))
    per = (pd.concat(per_frames, ignore_index=True) if per_frames
           else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"]))
    report_skipped(scores, skipped, "moa_retrieval")
    return scores, per
