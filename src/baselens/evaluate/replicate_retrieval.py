"""Replicate retrieval against negative controls (phenotypic activity), copairs recipe.

For every treated well (query), its *positives* are the other wells of the same
perturbation and its *negatives* are the negative-control wells; wells are ranked by
cosine similarity to the query and scored by average precision (AP). A perturbation's
mAP is the mean AP over its wells; a permutation p-value (null: AP of M positives placed
at random among the M + N candidates) and Benjamini–Hochberg correction give
"fraction retrieved" (share of perturbations with corrected p < threshold). This is the
mAP framework of Kalinin et al. (copairs) as used by JUMP and seed 004 (C.2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselens import metrics

PERT = "Metadata_Perturbation"
_REF = "Metadata_reference_index"


def replicate_retrieval(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score replicate retrieval against negative controls.

    Parameters
    ----------
    profiles : DataFrame
        Normalized well profiles with ``Metadata_Perturbation`` and
        ``Metadata_ControlType`` (``"negcon"`` marks negative controls).
    features : list of str
        Feature columns.

    Returns
    -------
    scores : DataFrame
        Columns ``metric, value, n``: ``mean_average_precision`` (mean of per-perturbation
        mAP), ``fraction_retrieved``.
    per_perturbation : DataFrame
        Columns ``perturbation, metric, value``: ``mean_average_precision``, ``p_value``,
        ``corrected_p_value`` per perturbation.
    """
    ctype = profiles["Metadata_ControlType"].astype(str)
    negcon = (ctype == "negcon").to_numpy()
    if negcon.sum() < 2:
        raise ValueError(
            "replicate retrieval needs negative-control wells (Metadata_ControlType='negcon'); "
            f"found {int(negcon.sum())}"
        )
    meta = profiles[[PERT]].astype(str).reset_index(drop=True)
    # copairs' assign_reference_index: controls get unique ids, treated wells share -1,
    # so positives are same-perturbation treated wells and negatives are controls only.
    meta[_REF] = np.where(negcon, np.arange(len(meta)), -1)
    feats = profiles[features].to_numpy(dtype=np.float64)
    ap = metrics.average_precision(
        meta, feats,
        pos_sameby=[PERT, _REF], pos_diffby=[],
        neg_sameby=[], neg_diffby=[PERT, _REF],
    )
    ap = ap[~negcon & ap["n_pos_pairs"].gt(0).to_numpy()]
    n_single = int((~negcon).sum() - len(ap))
    if len(ap) == 0:
        raise ValueError("no perturbation has ≥ 2 replicate wells; replicate retrieval is undefined")
    maps = metrics.mean_average_precision(ap, sameby=[PERT], null_size=null_size,
                                          threshold=threshold, seed=seed)
    per = maps.melt(id_vars=[PERT], value_vars=["mean_average_precision", "p_value",
                                                "corrected_p_value"],
                    var_name="metric", value_name="value").rename(columns={PERT: "perturbation"})
    scores = pd.DataFrame({
        "metric": ["mean_average_precision", "fraction_retrieved"],
        "value": [float(maps["mean_average_precision"].mean()),
                  float(metrics.fraction_retrieved(maps))],
        "n": [len(maps), len(maps)],
    })
    scores.attrs["n_single_replicate_wells"] = n_single
    return scores, per
