"""Tissue runs: which representation of each input is best, and what that says.

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026, §4.2,
§5.3) asks of H&E patch representations what their gene-expression scores (per-gene
Pearson r, :mod:`baselens.evaluate.gene_expression`) rest on: the pixels, the positions of
the cells, or only how many cells a spot holds. This module decides it for one run, from
``scores.parquet`` and the run's ``diagnostics/tissue_methods.parquet`` (``method,
method_kind, input``; input ∈ image, structure, count, pixel, reference, null):

``tissue_inputs.parquet`` (:func:`tissue_inputs`)
    One row per task and representation (method, layer): its input (from
    ``tissue_methods``; guessed from the name by :func:`input_of` only for a method the
    table does not list, e.g. the run-prefixed names of ``baselens compare``), its mean
    Pearson r at the task's shown batch level, and ``best_of_input`` — the highest mean
    r of its input on that task (ties: alphabetically first method/layer). The report's
    tissue panels draw these representatives and decide nothing.
findings of kind ``tissue`` (:func:`tissue_findings`, rows of ``findings.parquet``)
    per task: whether the best structure-only model's mean r is above the best image
    model's (``subject = "image"``, verdict ``"beats"`` / ``"trails"`` — a comparison of
    means, not a significance test), what the best structure model reaches per planted
    gene driver (``subject = "drivers"``, synthetic tissue only), and what the cell-count
    baseline reaches on density-driven genes against the structure model's count-matched
    r (``subject = "count"``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from baselens._tables import aggregate_scores
from baselens.diagnose.findings import _frame, _label, _row, shown_levels

__all__ = ["INPUTS", "TISSUE_INPUT_COLUMNS", "is_tissue_run", "input_of",
           "tissue_findings", "tissue_inputs"]

#: The inputs of tissue representations, in display order.
INPUTS = ("structure", "count", "image", "pixel", "reference", "null")
#: Columns of ``diagnostics/tissue_inputs.parquet``.
TISSUE_INPUT_COLUMNS = ["task", "batch_level", "metric", "method", "layer", "method_kind",
                           "input", "input_source", "value", "best_of_input"]
#: Planted gene drivers whose expression follows the cells' arrangement.
STRUCTURAL_DRIVERS = ("density", "clustering", "regularity")
_STRUCTURE_WORDS = ("gcn", "egnn", "structure", "graph", "points", "point_set")


def input_of(method: str, kind: str) -> str:
    """Input guessed from a representation's kind and name (``gcn``, ``egnn``,
    ``structure``, ``graph``, ``points`` → structure; ``count`` → count; ``pixel`` → pixel;
    references and nulls are their own; anything else → image). Used only for methods
    that ``tissue_methods.parquet`` does not list."""
    if kind in ("reference", "null"):
        return kind
    m = str(method).lower()
    if any(w in m for w in _STRUCTURE_WORDS):
        return "structure"
    if "count" in m:
        return "count"
    if "pixel" in m:
        return "pixel"
    return "image"


def _pearson_tasks(agg: pd.DataFrame) -> list[str]:
    return [str(t) for t in pd.unique(agg.loc[agg["metric"] == "pearson", "task"])]


def is_tissue_run(scores: pd.DataFrame | None, tissue_methods: pd.DataFrame | None = None
                  ) -> bool:
    """A tissue run: the pipeline's method table is there, or a task other than the Cell
    Painting ``regression_probe`` is scored by Pearson r."""
    if tissue_methods is not None and len(tissue_methods):
        return True
    if scores is None or scores.empty:
        return False
    s = scores[scores["metric"].astype(str) == "pearson"]
    return any(str(t) != "regression_probe" for t in pd.unique(s["task"].astype(str)))


def _known(tissue_methods: pd.DataFrame | None) -> dict[str, str]:
    tm = tissue_methods
    if tm is None or not len(tm) or not {"method", "input"} <= set(tm.columns):
        return {}
    return dict(zip(tm["method"].astype(str), tm["input"].astype(str)))


def tissue_inputs(scores: pd.DataFrame, tissue_methods: pd.DataFrame | None = None
                      ) -> pd.DataFrame:
    """Per task scored by Pearson r and representation: input, mean r at the task's
    shown level, and whether it is the best of its input (module docstring).

    Parameters
    ----------
    scores
        ``scores.parquet`` (results contract).
    tissue_methods
        ``diagnostics/tissue_methods.parquet`` (``method, input``).

    Returns
    -------
    DataFrame
        :data:`TISSUE_INPUT_COLUMNS`; empty when this is not a tissue run.
    """
    if scores is None or scores.empty or not is_tissue_run(scores, tissue_methods):
        return pd.DataFrame(columns=TISSUE_INPUT_COLUMNS)
    agg = aggregate_scores(scores)
    known = _known(tissue_methods)
    shown = shown_levels(scores)
    tasks = _pearson_tasks(agg)
    rows = []
    for task in tasks:
        level = shown[task][0]
        a = agg[(agg["task"] == task) & (agg["batch_level"] == level)]
        keys = a[["method", "layer", "method_kind"]].drop_duplicates(["method", "layer"])
        r = a[a["metric"] == "pearson"].set_index(["method", "layer"])["value_mean"]
        for m, la, kind in keys.itertuples(index=False):
            rows.append(dict(task=task, batch_level=level, metric="pearson", method=m,
                             layer=la, method_kind=kind,
                             input=known.get(m, input_of(m, kind)),
                             input_source="tissue_methods" if m in known else "name",
                             value=float(r.get((m, la), np.nan))))
    out = pd.DataFrame(rows, columns=TISSUE_INPUT_COLUMNS)
    out["best_of_input"] = False
    valid = out[out["value"].notna()]
    valid = valid.sort_values(["method", "layer"], kind="stable").sort_values(
        "value", ascending=False, kind="stable")
    best = valid.drop_duplicates(["task", "input"], keep="first").index
    out.loc[best, "best_of_input"] = True
    out["best_of_input"] = out["best_of_input"].astype(bool)
    out["value"] = out["value"].astype(np.float64)
    return out


def _fmt(x, digits: int = 3) -> str:
    """``0.700``, ``−0.010``; ``—`` for NaN (the report's number format)."""
    if x is None or pd.isna(x):
        return "—"
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    s = f"{abs(x):.{digits}f}"
    return ("−" if x < 0 and s.strip("0.") else "") + s


def tissue_findings(scores: pd.DataFrame, inputs: pd.DataFrame | None = None, *,
                    tissue_methods: pd.DataFrame | None = None) -> pd.DataFrame:
    """Findings of kind ``tissue`` (module docstring), per task other than
    ``regression_probe`` scored by Pearson r, at the task's shown batch level.

    Parameters
    ----------
    scores
        ``scores.parquet``: ``pearson``, ``pearson_<driver>`` and ``pearson_count_matched``.
    inputs
        :func:`tissue_inputs` of the run (computed from ``tissue_methods`` when
        ``None``).
    tissue_methods
        ``diagnostics/tissue_methods.parquet``, when ``inputs`` is not given.

    Returns
    -------
    DataFrame
        :data:`baselens.diagnose.findings.FINDINGS_COLUMNS` rows (empty when none).
    """
    if inputs is None:
        inputs = tissue_inputs(scores, tissue_methods)
    if scores is None or scores.empty or inputs is None or inputs.empty:
        return _frame([])
    agg = aggregate_scores(scores)
    mv = agg.set_index(["task", "batch_level", "metric", "method", "layer"])["value_mean"]
    rows = []
    for task in [t for t in pd.unique(inputs["task"].astype(str))
                 if t != "regression_probe"]:
        mt = inputs[inputs["task"].astype(str) == task]
        level = str(mt["batch_level"].iloc[0])
        best = mt[mt["best_of_input"].astype(bool)]

        def best_of(kind_of_input: str):
            b = best[best["input"] == kind_of_input]
            if b.empty:
                return None, float("nan")
            return (str(b["method"].iloc[0]), str(b["layer"].iloc[0])), float(b["value"].iloc[0])

        def score(key, metric: str) -> float:
            if key is None:
                return float("nan")
            return float(mv.get((task, level, metric, *key), np.nan))

        st, st_v = best_of("structure")
        img, img_v = best_of("image")
        cnt, _ = best_of("count")
        common = dict(task=task, metric="pearson", batch_level=level)
        if st is not None and img is not None:
            word = "beats" if st_v > img_v else "trails"
            rows.append(_row(
                "tissue", "note",
                f"On {task}, the best structure-only model {_label(*st)} (r {_fmt(st_v)}) "
                f"{word} the best image model {_label(*img)} (r {_fmt(img_v)}); see the "
                "gene-wise panel.", **common, method=st[0], layer=st[1],
                method_kind=_kind(mt, st), subject="image",
                verdict=word, value=st_v, baseline_value=img_v, difference=st_v - img_v))
        appearance = score(st, "pearson_appearance")
        if st is not None and not pd.isna(appearance):
            structural = [(d, score(st, f"pearson_{d}")) for d in STRUCTURAL_DRIVERS]
            structural = [(d, v) for d, v in structural if not pd.isna(v)]
            sv = ", ".join(f"{d} {_fmt(v, digits=2)}" for d, v in structural)
            above = bool(structural) and all(v > appearance for _, v in structural)
            if above:
                s = (f"Structure-driven genes are predicted from cell positions alone "
                     f"({_label(*st)}: {sv}), appearance-driven ones are not "
                     f"(r {_fmt(appearance, digits=2)}).")
            else:
                s = (f"From cell positions alone ({_label(*st)}), structure-driven genes "
                     f"({sv or 'none scored'}) are not all predicted better than "
                     f"appearance-driven ones (r {_fmt(appearance, digits=2)}).")
            rows.append(_row("tissue", "note", s, **common, method=st[0], layer=st[1],
                             method_kind=_kind(mt, st), subject="drivers",
                             verdict=("structure over appearance" if above else
                                      "not structure over appearance"),
                             value=min((v for _, v in structural), default=np.nan),
                             baseline_value=appearance, n=float(len(structural))))
        density = score(cnt, "pearson_density")
        if cnt is not None and not pd.isna(density):
            s = (f"Cell count alone ({_label(*cnt)}) reaches r {_fmt(density, digits=2)} on "
                 "density-driven genes")
            cm = score(st, "pearson_count_matched")
            if st is not None and not pd.isna(cm):
                s += (f"; with count held fixed, {_label(*st)} keeps r {_fmt(cm, digits=2)} "
                      "(count-matched), the part of its signal that count does not explain")
            rows.append(_row("tissue", "note", s + ".", **common, method=cnt[0],
                             layer=cnt[1], method_kind=_kind(mt, cnt), subject="count",
                             verdict="count baseline", value=density, baseline_value=cm))
    return _frame(rows)


def _kind(mt: pd.DataFrame, key: tuple[str, str]) -> str:
    k = mt[(mt["method"] == key[0]) & (mt["layer"] == key[1])]["method_kind"]
    return str(k.iloc[0]) if len(k) else ""
