"""Findings: every conclusion the run draws, one row each, decided here and only here.

The report, ``baselens compare`` and the Python API's results object read this table
(``diagnostics/findings.parquet``) and render its sentences; none of them decides which
model beats which baseline, which batch levels coincide, or whether cell count predicts an
assay. So the summary at the top of the report and the tables under it cannot contradict
each other: both come from these rows.

Schema (:data:`FINDINGS_COLUMNS`; stable, extend only by adding columns)
------------------------------------------------------------------------
``kind``            what the row decides (:data:`KINDS`, below)
``severity``        ``"verdict"`` (an answer), ``"warning"`` (a confound that can explain a
                    score), ``"caution"`` (a sample-size caveat), ``"note"`` (context)
``task``            task of the finding (``""`` when run-wide)
``metric``          metric the numbers are in (the task's headline metric for verdicts)
``higher_is_better`` direction of ``metric`` (True when run-wide)
``batch_level``     the batch level the finding speaks of; for levels that give identical
                    scores, their representative (NR when among them, else the strictest)
``levels``          ``|``-joined batch levels the finding covers (identical levels, the
                    levels where a confound is or is not the best baseline)
``method``, ``layer``, ``method_kind``  the representation (``""`` when none)
``subject``         what else the finding names: a baseline, an assay, a phenotype class,
                    a confound, ``perturbations`` / ``replicates`` / ``plates``
``verdict``         the decision, from a closed vocabulary per kind (below)
``value``           the number the finding rests on (the method's score, the assay's
                    balanced accuracy, a count, a retained fraction …)
``baseline_value``  what ``value`` is compared with (best baseline's score, a threshold)
``difference``, ``ci_low``, ``ci_high``, ``p_adjusted``  of the comparison, when paired
``n``               the count behind the finding (pairs, tasks, compounds, classes …)
``sentence``        the finding in plain words (UTF-8 text, no markup), naming the batch
                    level wherever it depends on one

Kinds and their verdicts
------------------------
``levels``            per task: ``batch_level`` = the strictest level formed (the default
                      view), ``levels`` = the distinct levels, strictest first (NR is shown
                      beside it); verdict ``"formed"``
``identical_levels``  levels whose scores are identical (one plate: SP = NR = NSL), one
                      row per pattern, ``subject`` = the ``|``-joined tasks where it holds
                      (levels coincide task by task: a probe's NSL folds may differ where
                      retrieval's do not); verdict ``"identical"``
``sample_size``       fewer than :data:`MIN_PERTURBATIONS` perturbations, fewer than
                      :data:`MIN_REPLICATES` replicates per perturbation (median), one
                      plate; verdict ``"caveat"``
``verdict``           per model or reference, task and batch level, on the headline metric:
                      the ``verdict`` of ``beyond_baseline.parquet`` (``beats``, ``not
                      distinguishable``, ``worse``, ``no baseline``)
``model_summary``     per model and batch level: ``value`` tasks where it beats the best
                      baseline of ``n``; verdict ``"beats"`` (every task), ``"partly"``,
                      ``"no"``; one run-wide row ``"no models"`` when none was scored
``reference``         the same for references (upper bounds)
``confound``          per task where ``plate_layout`` or ``cell_count`` is the best baseline
                      at some level: verdict ``"best baseline"``, ``levels`` where it is,
                      the sentence names the levels where it is not
``assay``             per bioactivity assay: ``"predictable by cell count"`` (flagged by
                      :mod:`.curation`), ``"inconclusive"`` (balanced accuracy reaches the
                      threshold but the groups do not differ significantly — too few
                      compounds to tell), ``"not predictable by cell count"``, ``"not
                      tested"`` (no balanced accuracy)
``assays``            the count over the ``assay`` rows (one row)
``untrained_twin``    an untrained network against its pretrained twin; verdict
                      ``"architecture"`` when it reaches ≥ :data:`TWIN_ARCHITECTURE` of it
                      on average, else ``"training"``
``class_capture``     phenotype classes a method captures (class mAP ≥ :data:`CAPTURE_MIN`
                      and ≥ :data:`CAPTURE_FOLD` × the null's); verdicts ``"captures"``,
                      ``"captures none"``, ``"only models"``, ``"no model beyond baselines"``
``collapse``          a representation whose top principal component holds ≥
                      :data:`COLLAPSE_TOP1` of its variance; verdict ``"collapsed"``
``residualization``   mAP kept after residualizing on a confound; verdicts ``"kept"``,
                      ``"lost"`` (a class with mAP ≥ :data:`RESID_MIN_MAP` keeps ≤
                      :data:`RESID_LOST` of it)
``tissue``            tissue runs (:mod:`baselens.diagnose.tissue`), per task at its shown
                      level on Pearson r: ``subject = "image"`` — the best structure-only
                      model's mean r against the best image model's, verdict ``"beats"`` /
                      ``"trails"``; ``subject = "drivers"`` — the structure model per planted
                      driver, verdict ``"structure over appearance"`` or not;
                      ``subject = "count"`` — the cell-count baseline on density-driven
                      genes (``value``) and the structure model's count-matched r
                      (``baseline_value``), verdict ``"count baseline"``
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from baselens._tables import LEVEL_NAMES, LEVEL_ORDER, coerce_types, order_levels

__all__ = [
    "CAPTURE_FOLD",
    "CAPTURE_MIN",
    "FINDINGS_COLUMNS",
    "KINDS",
    "LEVEL_ORDER",
    "MIN_PERTURBATIONS",
    "MIN_REPLICATES",
    "design_summary",
    "findings",
    "read_findings",
]

FINDINGS_COLUMNS = ["kind", "severity", "task", "metric", "higher_is_better", "batch_level",
                    "levels", "method", "layer", "method_kind", "subject", "verdict", "value",
                    "baseline_value", "difference", "ci_low", "ci_high", "p_adjusted", "n",
                    "sentence"]
KINDS = ("levels", "identical_levels", "sample_size", "verdict", "model_summary", "reference",
         "confound", "assay", "assays", "untrained_twin", "class_capture", "residualization",
         "collapse", "tissue")

#: Sample-size caveats: fewer perturbations / median replicates than these.
MIN_PERTURBATIONS = 5
MIN_REPLICATES = 3
#: Baselines whose being best means a task is solved by a confound, not by biology.
CONFOUND_BASELINES = {"plate_layout": "Plate layout (where wells sit on the plate)",
                      "cell_count": "Cell count (how many cells a well holds)"}
#: A method "captures" a phenotype class at class mAP ≥ CAPTURE_MIN and ≥ CAPTURE_FOLD × null.
CAPTURE_MIN = 0.3
CAPTURE_FOLD = 3.0
#: Residualization: classes with mAP ≥ RESID_MIN_MAP are judged; ≤ RESID_LOST kept = lost,
#: ≥ RESID_KEPT kept = kept.
RESID_MIN_MAP = 0.2
RESID_LOST = 0.6
RESID_KEPT = 0.8
#: An untrained twin reaching this fraction of its pretrained network, on average over
#: tasks, says the score comes from the architecture.
TWIN_ARCHITECTURE = 0.9
#: Share of variance in the top principal component that counts as a collapsed
#: representation (one signal, often cell count or intensity).
COLLAPSE_TOP1 = 0.8
#: Balanced accuracy at which cell count is said to predict an assay (Seal et al. 2026).
ASSAY_BA = 0.7

_NUM = ("value", "baseline_value", "difference", "ci_low", "ci_high", "p_adjusted", "n")


# --------------------------------------------------------------------------- helpers
def _label(method: str, layer: str) -> str:
    return method if str(layer) in ("default", "", "None", "nan") else f"{method}/{layer}"


_WORDS = {"moa": "MoA", "knn": "kNN", "mofa": "MOFA", "auc": "AUC", "roc": "ROC", "pr": "PR"}


def _task_words(task: str) -> str:
    return " ".join(_WORDS.get(w, w) for w in str(task).split("_"))


def _metric_words(metric: str) -> str:
    return metric if re.search(r"\d\.\d", metric) else _task_words(metric)


def _lv(level: str) -> str:
    return f"{level} ({LEVEL_NAMES[level]})" if level in LEVEL_NAMES else str(level)


def _at(level: str) -> str:
    """``"At NSP (not same plate), "``; nothing for a task without batch levels (``all``)."""
    return "" if str(level) in ("", "all") else f"At {_lv(level)}, "


def _cap(s: str) -> str:
    return s if s.split(" ", 1)[0] in _WORDS.values() else s[:1].upper() + s[1:]


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)) or pd.isna(x):
        return "—"
    return f"{float(x):.{digits}f}".replace("-", "−")


def _signed(x, digits: int = 3) -> str:
    return ("+" if float(x) >= 0 else "−") + f"{abs(float(x)):.{digits}f}"


def _join(words: list[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _row(kind: str, severity: str, sentence: str, **kw) -> dict:
    r = {c: "" for c in FINDINGS_COLUMNS}
    r.update({c: np.nan for c in _NUM})
    r["higher_is_better"] = True
    if sentence.split(" ", 1)[0] in ("the", "untrained", "classes", "no"):
        sentence = _cap(sentence)  # never a method name: those keep their spelling
    r.update(kind=kind, severity=severity, sentence=sentence)
    for k, v in kw.items():
        r[k] = v
    return r


def _aggregate(scores: pd.DataFrame) -> pd.DataFrame:
    s = scores.copy()
    for c, d in (("layer", "default"), ("batch_level", "all")):
        if c not in s.columns:
            s[c] = d
        s[c] = s[c].where(s[c].notna(), d).astype(str)
    for c in ("method", "method_kind", "task", "metric"):
        s[c] = s[c].astype(str)
    keys = ["task", "batch_level", "metric", "method", "layer"]
    g = s.groupby(keys, sort=False)
    out = g["value"].mean().to_frame("value_mean")
    out["method_kind"] = g["method_kind"].first()
    return out.reset_index()


def _headlines(agg: pd.DataFrame, metrics: pd.DataFrame | None) -> dict[str, str]:
    """Task → headline metric: declared in ``metrics.parquet`` when scored, else first."""
    declared = {}
    if metrics is not None and len(metrics) and "headline" in metrics.columns:
        h = metrics[metrics["headline"].astype(bool)]
        declared = dict(zip(h["task"].astype(str), h["metric"].astype(str)))
    out = {}
    for task, g in agg.groupby("task", sort=False):
        present = list(pd.unique(g["metric"]))
        m = declared.get(task)
        out[task] = m if m in present else present[0]
    return out


def _lower(metrics: pd.DataFrame | None, lower_is_better: Iterable = ()) -> set:
    """``(task, metric)`` pairs declared lower-is-better in ``metrics.parquet``, plus the
    metric names (or pairs) in ``lower_is_better``."""
    out = set(lower_is_better)
    if metrics is not None and len(metrics) and {"task", "metric", "higher_is_better"} <= \
            set(metrics.columns):
        low = metrics[~metrics["higher_is_better"].astype(bool)]
        out |= set(zip(low["task"].astype(str), low["metric"].astype(str)))
    return out


# --------------------------------------------------------------------------- design
def design_summary(wells: pd.DataFrame | None) -> dict:
    """Counts of the screen behind the sample-size caveats.

    Parameters
    ----------
    wells
        One row per well: ``Metadata_Plate``, ``Metadata_Perturbation`` and, when known,
        ``Metadata_ControlType`` (controls are not counted as perturbations).

    Returns
    -------
    dict
        ``n_plates``, ``n_perturbations`` (non-control), ``median_replicates`` and
        ``min_replicates`` (wells per non-control perturbation); empty when unknown.
    """
    if wells is None or not len(wells) or "Metadata_Perturbation" not in wells.columns:
        return {}
    w = wells
    if "Metadata_ControlType" in w.columns:
        ct = w["Metadata_ControlType"].fillna("").astype(str).str.strip().str.lower()
        w = w[~ct.isin(["negcon", "poscon", "negative", "positive", "control"])]
    reps = w.groupby(w["Metadata_Perturbation"].astype(str)).size()
    out = {"n_perturbations": int(len(reps)),
           "median_replicates": float(reps.median()) if len(reps) else float("nan"),
           "min_replicates": int(reps.min()) if len(reps) else 0}
    if "Metadata_Plate" in wells.columns:
        out["n_plates"] = int(wells["Metadata_Plate"].nunique())
    return out


def _sample_size(design: Mapping, per_perturbation: pd.DataFrame | None) -> list[dict]:
    d = dict(design or {})
    if "n_perturbations" not in d and per_perturbation is not None and len(per_perturbation):
        d["n_perturbations"] = int(per_perturbation["perturbation"].astype(str).nunique())
    out = []
    n = d.get("n_perturbations")
    if n is not None and n < MIN_PERTURBATIONS:
        out.append(_row("sample_size", "caution",
                        f"Only {n} perturbation{'s' if n != 1 else ''} (fewer than "
                        f"{MIN_PERTURBATIONS}): a paired test over perturbations cannot reach "
                        "significance, so no verdict here can be 'beats'.",
                        subject="perturbations", verdict="caveat", value=float(n),
                        baseline_value=float(MIN_PERTURBATIONS)))
    r = d.get("median_replicates")
    if r is not None and not np.isnan(r) and r < MIN_REPLICATES:
        out.append(_row("sample_size", "caution",
                        f"A median of {r:g} replicate well{'s' if r != 1 else ''} per "
                        f"perturbation (fewer than {MIN_REPLICATES}): replicate retrieval rests "
                        "on very few pairs per perturbation.",
                        subject="replicates", verdict="caveat", value=float(r),
                        baseline_value=float(MIN_REPLICATES)))
    p = d.get("n_plates")
    if p == 1:
        out.append(_row("sample_size", "caution",
                        "One plate: plate effects cannot be told apart from biology, and the "
                        "levels that forbid same-plate matches (NSP and stricter) cannot be "
                        "formed.", subject="plates", verdict="caveat", value=1.0,
                        baseline_value=2.0))
    return out


# --------------------------------------------------------------------------- levels
def level_groups(agg: pd.DataFrame, tol: float = 1e-9) -> list[list[str]]:
    """Batch levels of one task grouped where they give identical scores.

    Two levels are identical when the same ``(metric, method, layer)`` keys were scored at
    both and every mean differs by at most ``tol`` (on one plate, SP = NR = NSL: every pair
    of wells shares the plate and no two wells share a position). A level joins a group
    only when it is identical to every member (no chaining). Groups are in canonical order,
    members too. ``agg``: one task's means (``batch_level, metric, method, layer,
    value_mean``).
    """
    levels = order_levels(agg["batch_level"])
    vals = {lv: g.set_index(["metric", "method", "layer"])["value_mean"]
            for lv, g in agg.groupby("batch_level", sort=False)}

    def same(a: str, b: str) -> bool:
        x, y = vals[a], vals[b]
        if set(x.index) != set(y.index):
            return False
        y = y.reindex(x.index)
        return bool((((x - y).abs() <= tol) | (x.isna() & y.isna())).all())

    groups: list[list[str]] = []
    for lv in levels:
        g = next((g for g in groups if all(same(m, lv) for m in g)), None)
        if g is None:
            groups.append([lv])
        else:
            g.append(lv)
    return groups


def representative(group: list[str]) -> str:
    """The level that stands for identical ones: NR when among them, else the strictest."""
    return "NR" if "NR" in group else group[-1]


def shown_levels(scores: pd.DataFrame) -> dict[str, list[str]]:
    """Per task, the distinct batch levels (one per group of identical levels,
    :func:`representative`), strictest first: the ``levels`` findings, and the first of
    them the level every per-task panel is drawn at."""
    agg = _aggregate(scores)
    return {t: order_levels(representative(g) for g in level_groups(a))[::-1]
            for t, a in agg.groupby("task", sort=False)}


def headline_metrics(scores: pd.DataFrame, metrics: pd.DataFrame | None) -> dict[str, str]:
    """Task → headline metric (declared in ``metrics.parquet`` when scored, else the first
    metric of the task in ``scores``)."""
    return _headlines(_aggregate(scores), metrics)


def _all_reps(groups: dict[str, list[list[str]]]) -> list[str]:
    """Every level that stands for a group on some task, strictest first."""
    return order_levels({representative(g) for gs in groups.values() for g in gs})[::-1]


# --------------------------------------------------------------------------- verdicts
_VERDICT_SENTENCE = {
    "beats": "adds beyond the best baseline",
    "not distinguishable": "is not distinguishable from the best baseline",
    "worse": "is significantly below the best baseline",
    "no baseline": "has no baseline to compare with",
}


def _verdict_rows(beyond: pd.DataFrame, headline: dict[str, str],
                  reps: dict[tuple[str, str], str]) -> list[dict]:
    out = []
    if beyond is None or beyond.empty:
        return out
    b = beyond[beyond["method_kind"].astype(str).isin(["model", "reference"])]
    for r in b.to_dict("records"):
        task, lv, metric = str(r["task"]), str(r["batch_level"]), str(r["metric"])
        if headline.get(task) != metric or reps.get((task, lv), lv) != lv:
            continue
        name = _label(r["method"], r["layer"])
        verdict = str(r.get("verdict") or "not tested")
        base = (_label(r["best_baseline"], r["best_baseline_layer"])
                if r.get("best_baseline") not in (None, "", "None") else "")
        hib = bool(r.get("higher_is_better", True))
        direction = "" if hib else " (lower is better)"
        s = f"{_at(lv)}{name} {_VERDICT_SENTENCE.get(verdict, verdict)} on {_task_words(task)}"
        if base:
            s += (f": {_metric_words(metric)}{direction} {_f(r['value_mean'])} vs "
                  f"{_f(r['best_baseline_mean'])} for {base}")
            if not pd.isna(r.get("difference")):
                s += f" ({_signed(r['difference'])}"
                if not pd.isna(r.get("ci_low")) and not pd.isna(r.get("ci_high")):
                    s += f", 95 % CI [{_signed(r['ci_low'])}, {_signed(r['ci_high'])}]"
                if not pd.isna(r.get("p_adjusted")):
                    s += f", adjusted p {float(r['p_adjusted']):.2g}"
                n = r.get("n_paired")
                if not pd.isna(n) and int(n) > 0:
                    s += f", {int(n)} {r.get('paired_over') or 'pair'}{'s' if int(n) != 1 else ''}"
                s += ")"
        out.append(_row("verdict", "verdict", s + ".", task=task, metric=metric,
                        higher_is_better=hib, batch_level=lv, method=str(r["method"]),
                        layer=str(r["layer"]), method_kind=str(r["method_kind"]),
                        subject=base, verdict=verdict, value=r.get("value_mean"),
                        baseline_value=r.get("best_baseline_mean"),
                        difference=r.get("difference"), ci_low=r.get("ci_low"),
                        ci_high=r.get("ci_high"), p_adjusted=r.get("p_adjusted"),
                        n=r.get("n_paired")))
    return out


def _summary_rows(verdicts: list[dict], agg: pd.DataFrame,
                  groups: dict[str, list[list[str]]]) -> list[dict]:
    out = []
    v = pd.DataFrame(verdicts, columns=FINDINGS_COLUMNS)
    models = agg[agg["method_kind"] == "model"][["method", "layer"]].drop_duplicates()
    if models.empty:
        refs = " and a reference" if (agg["method_kind"] == "reference").any() else ""
        out.append(_row("model_summary", "verdict",
                        f"This run scored no learned model, only baselines{refs}: there is no "
                        "model to judge; the tables compare the baselines with each other.",
                        verdict="no models"))
    for kind in ("model", "reference"):
        vk = v[v["method_kind"] == kind]
        for (method, layer), g in vk.groupby(["method", "layer"], sort=False):
            name = _label(method, layer)
            for lv in _all_reps(groups):  # strictest first
                gl = g[(g["batch_level"] == lv)
                       & g["verdict"].isin(["beats", "not distinguishable", "worse"])]
                if gl.empty:
                    continue
                # the levels identical to this one on every task summed up here
                grp = [x for x in LEVEL_ORDER if all(
                    any(lv in gg and x in gg for gg in groups.get(t, [])) for t in gl["task"])]
                grp = grp or [lv]
                wins = gl[gl["verdict"] == "beats"]
                k, n = len(wins), len(gl)
                others = [x for x in grp if x != lv]
                same = (f"; identical here to {_join(others)}" if others else "")
                who = "the reference " + name if kind == "reference" else name
                at = (_at(lv)[:-3] + same + "), ") if _at(lv) and lv in LEVEL_NAMES else _at(lv)
                if k == n:
                    s = (f"{at}{who} adds beyond the best baseline on "
                         f"{'every task' if n > 1 else 'the one task'} scored "
                         f"({_join([_task_words(t) for t in gl['task']])}).")
                    verdict = "beats"
                elif k:
                    s = (f"{at}{who} adds beyond the best baseline on {k} of "
                         f"{n} tasks ({_join([_task_words(t) for t in wins['task']])}); not on "
                         f"{_join([_task_words(t) for t in gl.loc[gl['verdict'] != 'beats', 'task']])}.")
                    verdict = "partly"
                else:
                    worse = gl[gl["verdict"] == "worse"]
                    s = (f"{at}{who} does not add beyond the best baseline on "
                         f"any of {n} task{'s' if n != 1 else ''}"
                         + (f" (significantly below it on "
                            f"{_join([_task_words(t) for t in worse['task']])})"
                            if len(worse) else "") + ".")
                    verdict = "no"
                out.append(_row("model_summary" if kind == "model" else "reference", "verdict",
                                s, batch_level=lv, levels="|".join(grp), method=method,
                                layer=layer, method_kind=kind, verdict=verdict,
                                value=float(k), n=float(n)))
    return out


# --------------------------------------------------------------------------- confounds
def _confound_rows(beyond: pd.DataFrame, agg: pd.DataFrame, headline: dict[str, str],
                   lower: set, groups: dict[str, list[list[str]]]) -> list[dict]:
    out = []
    for task, metric in headline.items():
        rep = {lv: representative(g) for g in groups.get(task, []) for lv in g}
        best: dict[str, str] = {}
        a = agg[(agg["task"] == task) & (agg["metric"] == metric)
                & (agg["method_kind"] == "baseline") & agg["value_mean"].notna()]
        for lv, g in a.groupby("batch_level", sort=False):
            if rep.get(lv, lv) != lv:
                continue
            b = None
            if beyond is not None and len(beyond):
                bb = beyond[(beyond["task"] == task) & (beyond["batch_level"] == lv)
                            & (beyond["metric"] == metric)]
                if len(bb) and bb["best_baseline"].iloc[0] not in (None, "", "None"):
                    b = str(bb["best_baseline"].iloc[0])
            if b is None:  # no model scored: the best baseline by the declared direction
                g = g.sort_values(["method", "layer"], kind="stable").sort_values(
                    "value_mean", ascending=(task, metric) in lower, kind="stable")
                b = str(g["method"].iloc[0])
            best[lv] = b
        levels = order_levels(best)
        for conf, words in CONFOUND_BASELINES.items():
            where = [lv for lv in levels if best[lv] == conf]
            if not where:
                continue
            not_where = [lv for lv in levels if best[lv] != conf]
            s = (f"{words} is the best baseline for {_task_words(task)} at "
                 f"{_join(where)}: scores there can come from "
                 + ("where a well sits rather than from biology" if conf == "plate_layout"
                    else "how many cells a well holds rather than from morphology")
                 + ". " + (f"It is not the best baseline at {_join(not_where)} — read those."
                           if not_where else "It is the best baseline at every level this run "
                           "formed."))
            out.append(_row("confound", "warning", s, task=task, metric=metric,
                            higher_is_better=(task, metric) not in lower,
                            batch_level=where[-1], levels="|".join(where), subject=conf,
                            verdict="best baseline", n=float(len(where))))
    return out


# --------------------------------------------------------------------------- assays
def _assay_rows(asy: pd.DataFrame | None) -> list[dict]:
    if asy is None or asy.empty or "assay" not in asy.columns:
        return []
    out, counts = [], {"predictable by cell count": 0, "inconclusive": 0,
                       "not predictable by cell count": 0, "not tested": 0}
    for r in asy.to_dict("records"):
        ba = r.get("cell_count_balanced_accuracy")
        flag = bool(r.get("predictable_by_cell_count")) if not pd.isna(
            r.get("predictable_by_cell_count")) else False
        p = r.get("p_value_bonferroni", r.get("p_value"))
        n = (0 if pd.isna(r.get("n_actives")) else int(r["n_actives"])) + \
            (0 if pd.isna(r.get("n_inactives")) else int(r["n_inactives"]))
        name = str(r["assay"])
        if flag:
            verdict = "predictable by cell count"
            s = (f"Cell count alone predicts assay {name}: balanced accuracy {_f(ba, 2)} "
                 f"(threshold {ASSAY_BA:g}), actives and inactives differ in cell count "
                 f"(corrected p {_f(p, 3) if pd.isna(p) or p >= 0.001 else f'{p:.1g}'}).")
        elif pd.isna(ba):
            verdict = "not tested"
            s = (f"Assay {name} could not be tested against cell count (no balanced accuracy: "
                 f"{n} compounds with a cell count).")
        elif ba >= ASSAY_BA:
            verdict = "inconclusive"
            s = (f"Cell count reaches balanced accuracy {_f(ba, 2)} on assay {name}, but with "
                 f"{n} compounds the difference is not significant (corrected p {_f(p, 3)}): "
                 "too few compounds to tell whether cell count predicts it.")
        else:
            verdict = "not predictable by cell count"
            s = (f"Cell count does not predict assay {name} (balanced accuracy {_f(ba, 2)}, "
                 f"below {ASSAY_BA:g}).")
        counts[verdict] += 1
        out.append(_row("assay", "warning" if verdict != "not predictable by cell count"
                        else "note", s, subject=name, verdict=verdict, value=ba,
                        baseline_value=ASSAY_BA, p_adjusted=p, n=float(n),
                        task="bioactivity"))
    k, m, rest = (counts["predictable by cell count"], counts["inconclusive"],
                  counts["not predictable by cell count"])
    untested = counts["not tested"]
    total = k + m + rest + untested
    s = f"Cell count alone predicts {k} of {total} bioactivity assays"
    if k:
        s += ": a representation's score on those says little beyond toxicity or proliferation"
    if m:
        s += (f"; {m} more reach balanced accuracy {ASSAY_BA:g} with too few compounds to be "
              "significant (inconclusive)")
    if rest and (k or m or untested):
        s += f"; {rest} need{'s' if rest == 1 else ''} more than cell count"
    elif rest:
        s += " — every assay tested needs more than cell count"
    if untested:
        s += f"; {untested} could not be tested"
    s += "."
    out.append(_row("assays", "warning" if k or m else "note", s, task="bioactivity",
                    verdict=f"{k} predictable", value=float(k), n=float(total),
                    baseline_value=float(m)))
    return out


# --------------------------------------------------------------------------- twins
_UNTRAINED_WORDS = ("random", "untrained", "randinit", "scratch")


def _is_untrained(method: str) -> bool:
    parts = str(method).lower().replace("-", "_").replace(".", "_").replace(" ", "_").split("_")
    return str(method).lower() != "random" and any(w in parts for w in _UNTRAINED_WORDS)


def _trained_name(method: str) -> str:
    parts = str(method).replace("-", "_").replace(".", "_").replace(" ", "_").split("_")
    return "_".join(p for p in parts if p.lower() not in _UNTRAINED_WORDS)


def _twin_rows(agg: pd.DataFrame, headline: dict[str, str], lower: set,
               levels: dict[str, str]) -> list[dict]:
    methods = list(pd.unique(agg["method"]))
    out = []
    for u in methods:
        if not _is_untrained(u):
            continue
        t = _trained_name(u)
        trained = next((m for m in methods if m != u and not _is_untrained(m)
                        and m.lower() == t.lower()), None)
        if trained is None:
            continue
        parts = []
        for task, metric in headline.items():
            if (task, metric) in lower:
                continue
            h = agg[(agg["task"] == task) & (agg["metric"] == metric)
                    & (agg["batch_level"] == levels.get(task)) & agg["value_mean"].notna()]
            vt = h.loc[h["method"] == trained, "value_mean"].max()
            vu = h.loc[h["method"] == u, "value_mean"].max()
            if pd.isna(vt) or pd.isna(vu) or vt <= 0:
                continue
            parts.append((task, vu / vt, vu, vt))
        if not parts:
            continue
        mean = float(np.mean([p[1] for p in parts]))
        lv = levels.get(parts[0][0], "")
        txt = ", ".join(f"{100 * r:.0f} % on {_task_words(t)} ({_f(a, 2)} vs {_f(b, 2)})"
                        for t, r, a, b in parts[:4])
        s = (f"{_at(lv)}untrained {u} reaches {txt} of pretrained {trained} (best layer "
             "of each, headline metric)" + (": most of what the pretrained network scores "
                                            "comes from its architecture, not its training."
                                            if mean >= TWIN_ARCHITECTURE else "."))
        out.append(_row("untrained_twin", "note", s, batch_level=lv, method=u,
                        subject=trained, verdict="architecture" if mean >= TWIN_ARCHITECTURE
                        else "training", value=mean, baseline_value=TWIN_ARCHITECTURE,
                        n=float(len(parts))))
    return out


# --------------------------------------------------------------------------- classes
def _class_frame(pc: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str]:
    if pc is None or pc.empty or "phenotype_class" not in pc.columns:
        return None, ""
    pc = pc.copy()
    for c in ("method", "layer", "phenotype_class", "batch_level", "metric", "method_kind"):
        if c in pc.columns:
            pc[c] = pc[c].astype(str)
    if "layer" not in pc.columns:
        pc["layer"] = "default"
    lv = ""
    if "batch_level" in pc.columns:
        lvs = order_levels(pc["batch_level"])
        lv = "NR" if "NR" in lvs else lvs[0]
        pc = pc[pc["batch_level"] == lv]
    if "metric" in pc.columns and len(pc):
        ms = list(pd.unique(pc["metric"]))
        pc = pc[pc["metric"] == ("mean_average_precision" if "mean_average_precision" in ms
                                 else ms[0])]
    if "method_kind" not in pc.columns:
        return None, ""
    pc = pc.groupby(["method", "method_kind", "layer", "phenotype_class"], sort=False,
                    as_index=False)["value"].mean()
    return (pc if len(pc) else None), lv


def class_capture_map(pc: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """Classes each (method, layer) captures: mAP ≥ CAPTURE_MIN and ≥ CAPTURE_FOLD × null."""
    null = pc[pc["method_kind"] == "null"].groupby("phenotype_class")["value"].max()
    out = {}
    for (m, la), g in pc.groupby(["method", "layer"], sort=False):
        got = []
        for c, v in zip(g["phenotype_class"], g["value"]):
            nv = null.get(c, float("nan"))
            if not pd.isna(v) and v >= CAPTURE_MIN and (pd.isna(nv) or v >= CAPTURE_FOLD
                                                        * max(nv, 0)):
                got.append((c, float(v)))
        out[(m, la)] = sorted(got, key=lambda x: -x[1])
    return out


def _class_rows(pc_in: pd.DataFrame | None) -> list[dict]:
    pc, lv = _class_frame(pc_in)
    if pc is None:
        return []
    cap = class_capture_map(pc)
    kinds = dict(zip(zip(pc["method"], pc["layer"]), pc["method_kind"]))
    n_classes = pc["phenotype_class"].nunique()
    at = _at(lv)
    out = []
    base = [k for k in cap if kinds[k] == "baseline"]
    for k in base + [k for k in cap if kinds[k] in ("reference", "model")]:
        got = cap[k]
        name = _label(*k)
        kind = kinds[k]
        who = f"the reference {name}" if kind == "reference" else name
        s = (f"{at}{who} captures " + (", ".join(f"{c} ({v:.2f})" for c, v in got) if got
                                       else "no phenotype class")
             + f" (class mAP ≥ {CAPTURE_MIN:g} and ≥ {CAPTURE_FOLD:g}× the null method's).")
        out.append(_row("class_capture", "note", s[0].upper() + s[1:], batch_level=lv,
                        method=k[0], layer=k[1], method_kind=kind,
                        subject="|".join(c for c, _ in got),
                        verdict="captures" if got else "captures none",
                        value=float(len(got)), n=float(n_classes), baseline_value=CAPTURE_MIN))
    caught = {c for k in base for c, _ in cap[k]}
    extra = [(k, [c for c, _ in cap[k] if c not in caught]) for k in cap
             if kinds[k] == "model"]
    extra = [(k, e) for k, e in extra if e]
    if extra:
        s = (f"{at}classes only learned models capture: "
             + "; ".join(f"{_label(*k)}: {', '.join(e)}" for k, e in extra[:4])
             + ("; …" if len(extra) > 4 else "") + ".")
        out.append(_row("class_capture", "verdict", s[0].upper() + s[1:], batch_level=lv,
                        subject="|".join(sorted({c for _, e in extra for c in e})),
                        verdict="only models", value=float(len(extra))))
    elif any(kinds[k] == "model" for k in cap):
        s = f"{at}no learned model captures a phenotype class that a baseline misses."
        out.append(_row("class_capture", "verdict", s[0].upper() + s[1:], batch_level=lv,
                        verdict="no model beyond baselines", value=0.0))
    return out


# --------------------------------------------------------------------------- residualization
def _resid_rows(res: pd.DataFrame | None, kinds: dict) -> list[dict]:
    if res is None or res.empty or "confound" not in res.columns:
        return []
    r = res.copy()
    for c in ("method", "layer", "confound", "perturbation", "phenotype_class", "batch_level"):
        r[c] = r[c].where(r[c].notna(), "").astype(str) if c in r.columns else ""
    r = r[r["perturbation"] != "(stratum mean)"]
    if "task" in r.columns and len(r):
        tasks = list(pd.unique(r["task"].astype(str)))
        r = r[r["task"].astype(str) == ("replicate_retrieval" if "replicate_retrieval" in tasks
                                        else tasks[0])]
    if r.empty or "none" not in set(r["confound"]):
        return []
    lv = order_levels(r["batch_level"])[0] if (r["batch_level"] != "").any() else ""
    at = _at(lv) + "r" if _at(lv) else "R"
    by = r.groupby(["method", "layer", "confound", "phenotype_class"])["value"].mean()
    allc = r.groupby(["method", "layer", "confound"])["value"].mean()
    has_classes = (r["phenotype_class"] != "").any()
    keys = list(dict.fromkeys(zip(r["method"], r["layer"])))
    # a representation scores.parquet does not list takes the kind of its method's first row
    first = (r.drop_duplicates("method").set_index("method")["method_kind"]
             if "method_kind" in r.columns else None)
    kind_of = {k: kinds.get(k, first[k[0]] if first is not None else "model") for k in keys}
    out = []
    for conf in [c for c in pd.unique(r["confound"]) if c != "none"]:
        chosen = []
        for kind in ("reference", "model", "baseline"):
            cand = [k for k in keys if kind_of[k] == kind
                    and (*k, "none") in allc.index and (*k, conf) in allc.index]
            if cand:
                chosen.append((max(cand, key=lambda k: allc[(*k, "none")]), kind))
        for k, kind in chosen:
            name = _label(*k)
            cw = conf.replace("_", " ")
            if has_classes:
                rows = []
                for c in sorted({c for (m, la, cf, c) in by.index if (m, la) == k and c}):
                    b, a = by.get((*k, "none", c), np.nan), by.get((*k, conf, c), np.nan)
                    if not pd.isna(b) and not pd.isna(a) and b >= RESID_MIN_MAP:
                        rows.append((c, b, a, max(a, 0.0) / b))
                if len(rows) < 2:
                    continue
                lost = sorted([x for x in rows if x[3] <= RESID_LOST], key=lambda x: x[3])
                kept = sorted([x for x in rows if x[3] >= RESID_KEPT], key=lambda x: -x[1])
                if not lost:
                    s = (f"{at}esidualizing {name} on {cw} keeps most of its signal in every "
                         f"class it retrieves (no class loses more than "
                         f"{100 * (1 - RESID_LOST):.0f} %).")
                    out.append(_row("residualization", "note", s, batch_level=lv,
                                    method=k[0], layer=k[1], method_kind=kind, subject=conf,
                                    verdict="kept", value=min(x[3] for x in rows),
                                    n=float(len(rows))))
                    continue
                c, b, a, f = lost[0]
                s = (f"{at}esidualizing {name} on {cw} removes {100 * (1 - f):.0f} % of its "
                     f"{c} signal (mAP {_f(b, 2)} → {_f(a, 2)})")
                if len(lost) > 1:
                    s += " and most of " + ", ".join(x[0] for x in lost[1:3])
                if kept:
                    s += " but keeps " + ", ".join(f"{x[0]} ({100 * x[3]:.0f} %)"
                                                  for x in kept[:3])
                out.append(_row("residualization", "warning", s + ".", batch_level=lv,
                                method=k[0], layer=k[1], method_kind=kind, subject=conf,
                                verdict="lost", value=f, baseline_value=b,
                                n=float(len(rows))))
            else:
                b, a = allc[(*k, "none")], allc[(*k, conf)]
                if pd.isna(b) or pd.isna(a) or b <= 0:
                    continue
                f = max(a, 0.0) / b
                out.append(_row("residualization", "note" if f > RESID_LOST else "warning",
                                f"{at}esidualizing {name} on {cw} keeps {100 * f:.0f} % of "
                                f"its mAP ({_f(b, 2)} → {_f(a, 2)}).", batch_level=lv,
                                method=k[0], layer=k[1], method_kind=kind, subject=conf,
                                verdict="kept" if f > RESID_LOST else "lost", value=f,
                                baseline_value=b))
    return out


def _collapse_rows(dim: pd.DataFrame | None) -> list[dict]:
    if dim is None or dim.empty or "metric" not in dim.columns:
        return []
    d = dim[dim["metric"].astype(str) == "top1_variance"]
    out = []
    for (m, la), g in d.groupby([d["method"].astype(str),
                                 d["layer"].where(d["layer"].notna(), "default").astype(str)],
                                sort=False):
        v = float(g["value"].mean())
        if v >= COLLAPSE_TOP1:
            kind = str(g["method_kind"].iloc[0]) if "method_kind" in g.columns else ""
            out.append(_row("collapse", "warning",
                            f"{_label(m, la)} has collapsed onto one direction: its top principal "
                            f"component holds {100 * v:.0f} % of the variance (≥ "
                            f"{100 * COLLAPSE_TOP1:.0f} %).", method=m, layer=la,
                            method_kind=kind, verdict="collapsed", value=v,
                            baseline_value=COLLAPSE_TOP1))
    return out


# --------------------------------------------------------------------------- entry point
def findings(
    scores: pd.DataFrame,
    beyond_baseline: pd.DataFrame | None = None,
    metrics: pd.DataFrame | None = None,
    *,
    per_perturbation: pd.DataFrame | None = None,
    assay_confounds: pd.DataFrame | None = None,
    residualized: pd.DataFrame | None = None,
    phenotype_classes: pd.DataFrame | None = None,
    dimensionality: pd.DataFrame | None = None,
    design: Mapping | None = None,
) -> pd.DataFrame:
    """Every finding of one run (or of merged runs), as :data:`FINDINGS_COLUMNS` rows.

    Parameters
    ----------
    scores
        ``scores.parquet`` (results contract).
    beyond_baseline
        ``diagnostics/beyond_baseline.parquet``: its ``verdict`` is used as is.
    metrics
        ``diagnostics/metrics.parquet``: headline metric and direction of each task.
    per_perturbation
        ``per_perturbation.parquet``; counts perturbations when ``design`` is not given.
    assay_confounds, residualized, phenotype_classes, dimensionality
        The diagnostics tables of the same names (optional).
    design
        :func:`design_summary` of the screen (plates, perturbations, replicates).

    Returns
    -------
    DataFrame
        One row per finding (module docstring), kinds in the order of :data:`KINDS`.
    """
    rows: list[dict] = []
    if scores is None or scores.empty:
        return _frame(rows)
    # tables read back from parquet may hold numbers as text (an older writer did)
    assay_confounds, residualized, phenotype_classes, dimensionality = (
        _numeric(t) for t in (assay_confounds, residualized, phenotype_classes, dimensionality))
    beyond_baseline = _numeric(beyond_baseline)
    agg = _aggregate(scores)
    headline = _headlines(agg, metrics)
    lower = _lower(metrics)
    beyond = None
    if beyond_baseline is not None and len(beyond_baseline):
        beyond = beyond_baseline.copy()
        for c in ("task", "batch_level", "metric", "method", "layer", "method_kind"):
            if c in beyond.columns:
                beyond[c] = beyond[c].where(beyond[c].notna(),
                                            "default" if c == "layer" else "").astype(str)
    # identical levels, per task (a level may coincide with another on one task only)
    groups = {t: level_groups(g) for t, g in agg.groupby("task", sort=False)}
    rep = {(t, lv): representative(g) for t, gs in groups.items() for g in gs for lv in g}

    # levels: per task the strictest distinct level formed, NR beside it
    view: dict[str, str] = {}
    for task, metric in headline.items():
        distinct = order_levels(representative(g) for g in groups[task])[::-1]
        view[task] = distinct[0]
        words = ", ".join(distinct)
        tw = _cap(_task_words(task))
        s = (f"{tw} was scored at one distinct batch level, {_lv(distinct[0])}."
             if len(distinct) == 1 else
             f"{tw} was scored at {len(distinct)} distinct batch levels ({words}); the "
             f"strictest, {_lv(distinct[0])}, is shown first"
             + (", NR beside it." if "NR" in distinct else "."))
        rows.append(_row("levels", "note", s, task=task, metric=metric,
                         higher_is_better=(task, metric) not in lower, batch_level=distinct[0],
                         levels="|".join(distinct), verdict="formed",
                         n=float(len(distinct))))
    d = dict(design or {})
    pattern: dict[tuple, list[str]] = {}
    for t, gs in groups.items():
        for g in gs:
            if len(g) > 1:
                pattern.setdefault(tuple(g), []).append(t)
    for g, tasks in pattern.items():
        r0 = representative(list(g))
        why = (" (one plate: every pair of wells shares the plate and no two wells share a "
               "position)" if d.get("n_plates") == 1 and set(g) <= {"SP", "NR", "NSL"} else "")
        where = ("every task of this run" if len(tasks) == len(groups) else
                 _join([_task_words(t) for t in tasks]))
        rows.append(_row("identical_levels", "note",
                         f"{_join(list(g))} give identical scores on {where}{why}, so they "
                         f"are shown once, as {r0}.", batch_level=r0, levels="|".join(g),
                         subject="|".join(tasks), verdict="identical", n=float(len(g))))
    rows += _sample_size(d, per_perturbation)
    verdicts = _verdict_rows(beyond, headline, rep) if beyond is not None else []
    rows += verdicts
    rows += _summary_rows(verdicts, agg, groups)
    rows += _confound_rows(beyond, agg, headline, lower, groups)
    rows += _assay_rows(assay_confounds)
    nr = {t: ("NR" if "NR" in set(agg.loc[agg["task"] == t, "batch_level"]) else view[t])
          for t in headline}
    rows += _twin_rows(agg, headline, lower, nr)
    rows += _class_rows(phenotype_classes)
    kinds = dict(zip(zip(agg["method"], agg["layer"]), agg["method_kind"]))
    rows += _resid_rows(residualized, kinds)
    rows += _collapse_rows(dimensionality)
    return _frame(rows)


_NUMERIC_INPUTS = ("value", "value_mean", "best_baseline_mean", "difference", "improvement",
                   "ci_low", "ci_high", "p", "p_adjusted", "n_paired", "n", "n_actives",
                   "n_inactives", "p_value", "p_value_bonferroni",
                   "cell_count_balanced_accuracy", "threshold", "component")


def _numeric(df: pd.DataFrame | None) -> pd.DataFrame | None:
    return coerce_types(df, _NUMERIC_INPUTS)


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
    for c in _NUM:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(np.float64)
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    for c in FINDINGS_COLUMNS:
        if c not in _NUM and c != "higher_is_better":
            df[c] = df[c].fillna("").astype(str)
    order = {k: i for i, k in enumerate(KINDS)}
    df = df.assign(_o=df["kind"].map(order)).sort_values("_o", kind="stable")
    return df.drop(columns="_o").reset_index(drop=True)


def read_findings(run_dir: str | Path) -> pd.DataFrame:
    """``run_dir/diagnostics/findings.parquet``, or the findings recomputed from the run's
    tables when the folder predates it (``baselens compare`` on older runs)."""
    run_dir = Path(run_dir)
    path = run_dir / "diagnostics" / "findings.parquet"
    if path.exists():
        return pd.read_parquet(path)

    def opt(p: Path):
        return pd.read_parquet(p) if p.exists() else None

    d = run_dir / "diagnostics"
    return findings(pd.read_parquet(run_dir / "scores.parquet"), opt(d / "beyond_baseline.parquet"),
                    opt(d / "metrics.parquet"),
                    per_perturbation=opt(run_dir / "per_perturbation.parquet"),
                    assay_confounds=opt(d / "assay_confounds.parquet"),
                    residualized=opt(d / "residualized.parquet"),
                    phenotype_classes=opt(d / "phenotype_classes.parquet"),
                    dimensionality=opt(d / "dimensionality.parquet"))
