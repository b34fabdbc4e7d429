"""Known-relationship recall (EFAAR benchmark; seed 004 C.2, RxRx3-core protocol).

Well profiles are averaged to one profile per perturbation (controls excluded); the
cosine similarity of every pair of perturbations forms the null; an annotated pair
(complex/pathway/MoA partners) is recalled when its similarity lies in the top or
bottom 5 % of that null (``recall_0.05_0.95``, chance 0.10) or, for seed 004's
recall@5 %, in the top 5 % alone (``recall_top_0.05``, chance 0.05).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselens import metrics

PERT = "Metadata_Perturbation"


def perturbation_profiles(profiles: pd.DataFrame, features: list[str],
                          operation: str = "mean") -> pd.DataFrame:
    """One profile per non-control perturbation (mean or median of its wells)."""
    treated = profiles[profiles["Metadata_ControlType"].astype(str).isin(["", "nan", "None", "trt"])
                       | profiles["Metadata_ControlType"].isna()]
    return getattr(treated.groupby(PERT, sort=True)[features], operation)()


def relationship_recall(
    profiles: pd.DataFrame,
    features: list[str],
    pairs: pd.DataFrame,
    *,
    thresholds: list[tuple[float, float]] = ((0.05, 0.95),),
    upper_tail: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score recall of known relationships, overall and per annotation source.

    Returns
    -------
    scores : DataFrame
        ``metric, value, n, source``: one row per recall key and annotation source
        (``source="all"`` pools every source).
    per_perturbation : DataFrame
        ``perturbation, metric, value``: for each perturbation, the share of its annotated
        partners whose similarity is in the top tail (``partner_recall_top``).
    """
    pp = perturbation_profiles(profiles, features)
    names = pp.index.astype(str).tolist()
    x = pp.to_numpy(dtype=np.float64)
    sources = ["all"] + (sorted(pairs["source"].unique()) if "source" in pairs else [])
    rows = []
    for src in sources:
        sub = pairs if src == "all" else pairs[pairs["source"] == src]
        res = metrics.known_relationship_recall(x, names, sub, thresholds=list(thresholds),
                                                upper_tail=upper_tail)
        n = int(res.get("query_distribution_size", 0))
        for key, val in res.items():
            if key.startswith("recall"):
                rows.append({"metric": key, "value": float(val), "n": n, "source": src})
    scores = pd.DataFrame(rows)
    per = _partner_recall(x, names, pairs, upper_tail)
    return scores, per


def _partner_recall(x: np.ndarray, names: list[str], pairs: pd.DataFrame,
                    upper_tail: float) -> pd.DataFrame:
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = xn @ xn.T
    null = np.sort(sim[np.triu_indices(len(names), k=1)])
    index = {n: i for i, n in enumerate(names)}
    both = pd.concat([pairs[["entity1", "entity2"]],
                      pairs[["entity2", "entity1"]].set_axis(["entity1", "entity2"], axis=1)])
    p = both[both["entity1"].isin(index) & both["entity2"].isin(index)
             & (both["entity1"] != both["entity2"])].drop_duplicates()
    i = p["entity1"].map(index).to_numpy()
    j = p["entity2"].map(index).to_numpy()
    # same percentile-rank rule as the pooled recall (efaar's compute_recall, upper tail)
    hit = np.searchsorted(null, sim[i, j], side="left") / len(null) >= 1 - upper_tail
    df = pd.DataFrame({"perturbation": np.asarray(names)[i], "hit": hit})
    per = df.groupby("perturbation")["hit"].mean().rename("value").reset_index()
    per["metric"] = "partner_recall_top"
    return per[["perturbation", "metric", "value"]]
