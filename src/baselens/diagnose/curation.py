"""Benchmark curation: which bioactivity assays does the cell count alone predict?

Seal et al. 2026 (Nat. Commun., "Counting cells can accurately predict small-molecule
bioactivity benchmarks") recommend checking every assay of a bioactivity benchmark against the cell
count before crediting a representation with predicting it (recommendations 1–4):

1. compare the cell count of actives and inactives with a two-sided t-test
   (``t_statistic``, ``p_value``; here Welch's unequal-variance test on every compound
   — Seal et al. instead subsampled the larger group to the smaller one's size and used
   Student's test, which is ``balanced=True, equal_var=True``);
2. threshold the cell count at every cut-off and keep the best balanced accuracy
   (:func:`baselens.evaluate.bioactivity.threshold_sweep_balanced_accuracy`, Eq. 1 of
   Seal et al. 2026; a direction-free *separation* ``max(b, 1 − b)``):
   ``cell_count_balanced_accuracy`` and the ``threshold`` where it is reached;
3. flag assays predictable by the cell count: ``predictable_by_cell_count`` is
   ``cell_count_balanced_accuracy ≥ 0.7`` **and** Bonferroni-corrected ``p < 0.05``.
   Seal et al. count an assay as "predicted by cell count" at a threshold-sweep balanced
   accuracy above 0.70 (Fig. 1d–f: 22–32 % of the assays of three published benchmarks)
   and tests actives vs inactives with Bonferroni correction; requiring both keeps the
   in-sample maximum of the sweep (optimistic for small groups: a handful of actives can
   reach 0.7 by chance) from flagging assays whose groups do not differ;
4. export a curated task list: the assays *not* predictable by cell count and not of
   ``assay_type == "viability"`` (Seal et al. exclude viability endpoints by design —
   their endpoint *is* cell death), noting whether they have ≥ 20 actives and ≥ 20
   inactives (Seal et al. 2026 rec. 4: fewer gives unreliable AUCs).

The cell count of a compound: the mean over its wells of ``log(count / mean count of
the negative-control wells of the same plate)`` (normalized against plate-specific
DMSO controls, like Seal et al. 2026's normalized cell count; ``threshold`` is in these units —
0 = DMSO, −0.69 = half the cells). Monotone transforms do not change the sweep.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ASSAY_CONFOUND_COLUMNS",
    "CURATED_COLUMNS",
    "MIN_CLASS",
    "assay_confounds",
    "curated_tasks",
]

ASSAY_CONFOUND_COLUMNS = ["assay", "assay_type", "n_actives", "n_inactives", "t_statistic",
                          "p_value", "cell_count_balanced_accuracy", "threshold",
                          "predictable_by_cell_count", "p_value_bonferroni",
                          "enough_compounds", "curated"]
CURATED_COLUMNS = ["assay", "assay_type", "n_actives", "n_inactives",
                   "cell_count_balanced_accuracy", "p_value", "enough_compounds", "note"]
#: Seal et al. 2026 rec. 4: at least this many actives and inactives for a reliable AUC.
MIN_CLASS = 20
PERT = "Metadata_Perturbation"


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("assay", "assay_type") else
                                      (bool if c in ("predictable_by_cell_count",
                                                     "enough_compounds", "curated")
                                       else np.float64 if c not in ("n_actives", "n_inactives")
                                       else "int64"))
                         for c in ASSAY_CONFOUND_COLUMNS})


def assay_confounds(
    compound_cell_count: pd.Series,
    labels: pd.DataFrame,
    *,
    min_balanced_accuracy: float = 0.7,
    alpha: float = 0.05,
    min_class: int = MIN_CLASS,
    balanced: bool = False,
    equal_var: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Per assay: t-test, threshold sweep and flag (module docstring).

    Parameters
    ----------
    compound_cell_count
        Index ``Metadata_Perturbation`` → the compound's (normalized) cell count.
    labels
        ``Metadata_Perturbation, assay, active`` (0/1), optionally ``assay_type``.
        Compounds without a cell count are ignored.
    balanced, equal_var
        Seal et al. 2026's exact t-test: ``balanced=True`` subsamples the larger group to the
        smaller one's size (seeded), ``equal_var=True`` is Student's test.

    Returns
    -------
    One row per assay (in order of first appearance), columns
    :data:`ASSAY_CONFOUND_COLUMNS`. An assay without actives or without inactives has
    NaN statistics and is never flagged.
    """
    from scipy.stats import ttest_ind

    from baselens.evaluate.bioactivity import threshold_sweep_balanced_accuracy

    if labels is None or not len(labels) or compound_cell_count is None \
            or not len(compound_cell_count):
        return _empty()
    lab = labels.copy()
    if "assay_type" not in lab.columns:
        lab["assay_type"] = ""
    lab[PERT] = lab[PERT].astype(str)
    cc = pd.Series(compound_cell_count, dtype=np.float64)
    cc.index = cc.index.astype(str)
    lab["cell_count"] = lab[PERT].map(cc)
    lab = lab[lab["cell_count"].notna() & lab["active"].notna()]
    rng = np.random.default_rng(seed)
    rows = []
    for assay, sub in lab.groupby("assay", sort=False):
        y = sub["active"].astype(int).to_numpy().astype(bool)
        v = sub["cell_count"].to_numpy(dtype=np.float64)
        atype = str(sub["assay_type"].iat[0])
        n_a, n_i = int(y.sum()), int((~y).sum())
        t = p = ba = thr = np.nan
        if n_a >= 1 and n_i >= 1:
            sweep = threshold_sweep_balanced_accuracy(v, y)
            ba, thr = sweep.attrs["best"], sweep.attrs["best_threshold"]
            a, b = v[y], v[~y]
            if balanced:
                k = min(len(a), len(b))
                a = rng.choice(a, size=k, replace=False)
                b = rng.choice(b, size=k, replace=False)
            if len(a) >= 2 and len(b) >= 2 and (np.ptp(np.r_[a, b]) > 0):
                res = ttest_ind(a, b, equal_var=equal_var)
                t, p = float(res.statistic), float(res.pvalue)
        rows.append([str(assay), atype, n_a, n_i, t, p, ba, thr])
    out = pd.DataFrame(rows, columns=ASSAY_CONFOUND_COLUMNS[:8])
    m = int(out["p_value"].notna().sum())
    out["p_value_bonferroni"] = (out["p_value"] * max(m, 1)).clip(upper=1.0)
    out["predictable_by_cell_count"] = (
        (out["cell_count_balanced_accuracy"] >= min_balanced_accuracy)
        & (out["p_value_bonferroni"] < alpha)).fillna(False).astype(bool)
    out["enough_compounds"] = ((out["n_actives"] >= min_class)
                               & (out["n_inactives"] >= min_class)).astype(bool)
    out["curated"] = (~out["predictable_by_cell_count"]
                      & (out["assay_type"] != "viability")
                      & (out["n_actives"] > 0) & (out["n_inactives"] > 0)).astype(bool)
    out["n_actives"] = out["n_actives"].astype("int64")
    out["n_inactives"] = out["n_inactives"].astype("int64")
    return out[ASSAY_CONFOUND_COLUMNS]


def curated_tasks(confounds: pd.DataFrame, *, min_class: int = MIN_CLASS) -> pd.DataFrame:
    """The curated task list (rows with ``curated``), with a plain-language note."""
    if confounds is None or not len(confounds):
        return pd.DataFrame(columns=CURATED_COLUMNS)
    cur = confounds[confounds["curated"].astype(bool)].copy()
    cur["note"] = np.where(cur["enough_compounds"],
                           "ok",
                           f"fewer than {min_class} actives or inactives: AUCs unreliable "
                           "(Seal et al. 2026, Nat. Commun., rec. 4)")
    return cur[CURATED_COLUMNS].reset_index(drop=True)


def compound_cell_counts(meta: pd.DataFrame, well_cell_counts: pd.DataFrame | None) -> pd.Series:
    """Per-compound normalized cell count (module docstring) from well metadata."""
    from baselens.diagnose.confounds import cell_count_change

    return cell_count_change(meta, well_cell_counts)
