"""Which planted phenotype classes each representation captures (synthetic screens).

The synthetic screen (:mod:`baselens.data.synthetic`) plants one phenotype class per
perturbation (``cytotoxic``, ``texture``, ``intensity``, …). From the per-perturbation
replicate-retrieval mAP of the results contract, this module averages every
representation's mAP within each class, at every batch level — so the report can say
"cell_count retrieves the cytotoxic perturbations (mAP 0.9) but not the texture ones
(0.1)".

Output columns ``method, method_kind, layer, phenotype_class, batch_level, metric,
value, n``: ``value`` the mean over the class's perturbations (each first averaged over
folds), ``n`` how many perturbations it averages. Perturbations without a class are
left out; the table is empty when no classes are given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CLASS_COLUMNS", "class_capture"]

CLASS_COLUMNS = ["method", "method_kind", "layer", "phenotype_class", "batch_level", "metric",
                 "value", "n"]


def class_capture(per_perturbation: pd.DataFrame, phenotype_classes: pd.Series | None, *,
                  task: str = "replicate_retrieval",
                  metric: str = "mean_average_precision") -> pd.DataFrame:
    """Mean per-perturbation ``metric`` of ``task`` per phenotype class (module docstring)."""
    empty = pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "value" else
                                       "int64" if c == "n" else object)
                          for c in CLASS_COLUMNS})
    if phenotype_classes is None or per_perturbation is None or not len(per_perturbation):
        return empty
    pp = per_perturbation[(per_perturbation["task"].astype(str) == task)
                          & (per_perturbation["metric"].astype(str) == metric)].copy()
    if pp.empty:
        return empty
    cls = phenotype_classes.copy()
    cls.index = cls.index.astype(str)
    if "layer" not in pp.columns:
        pp["layer"] = "default"
    if "batch_level" not in pp.columns:
        pp["batch_level"] = "NR"
    pp["perturbation"] = pp["perturbation"].astype(str)
    pp["phenotype_class"] = pp["perturbation"].map(cls.astype(str))
    pp = pp[pp["phenotype_class"].notna()]
    if pp.empty:
        return empty
    keys = ["method", "method_kind", "layer", "batch_level", "phenotype_class"]
    per = pp.groupby([*keys, "perturbation"], sort=False)["value"].mean().reset_index()
    g = per.groupby(keys, sort=False)["value"]
    out = g.mean().to_frame("value")
    out["n"] = g.count()
    out = out.reset_index()
    out["metric"] = metric
    out["n"] = out["n"].astype("int64")
    return out[CLASS_COLUMNS].reset_index(drop=True)
