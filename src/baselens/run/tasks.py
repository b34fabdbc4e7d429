"""Which evaluation tasks a run scores, with what inputs, and how their rows are stamped.

Each task is a function of :mod:`baselens.evaluate` returning ``(scores, per_item)``,
declared once in :data:`baselens.evaluate.registry.TASKS` with its default arguments,
whether it runs by default, its metrics and its headline metric. This module maps the ``[tasks.<name>]`` tables of a config onto those functions:
every key of a task table except ``enabled`` is passed to the function as a keyword
argument, checked against its signature, so a typo fails before any work starts.

The Cell Painting tasks (the registry's ``needs`` and ``defaults``):

==================== ===================================== ==================================
task                 needs                                 default (demo) arguments
==================== ===================================== ==================================
replicate_retrieval  negative controls                     every batch level
moa_retrieval        ``Metadata_moa`` (``|``-separated)    every batch level
relationship_recall  annotation pairs (entity1, entity2)   every batch level
relationship_        annotation pairs (off by default)     every batch level, exact
enrichment                                                 hypergeometric p
knn_probe            —                                     label ``Metadata_moa`` if present
bioactivity          per-compound assay labels             logistic regression, NR
regression_probe     per-well continuous targets           every probe level
batch_mixing         negative controls                     —
morphohelm           negative controls (off by default)    every batch level
control_retrieval    positive controls (off by default)    every batch level, 5 plate folds
==================== ===================================== ==================================

Every task table also takes ``where`` (not passed to the function): which profile rows the
task scores, e.g. ``where = { Metadata_PerturbationType = ["CRISPR", "gene"] }`` keeps rows
whose value is one of the listed ones, ``{ Metadata_PerturbationType = { not = ["compound"] } }``
drops them (values compared as case-insensitive strings; rows removed are logged).

A task whose input is absent (no annotations, no assay labels, no MoA column) is skipped
and the skip is recorded in ``run.json`` — never silently.
"""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from collections import Counter
from typing import Callable

import numpy as np
import pandas as pd

from baselens.evaluate.registry import TASKS
from baselens.profile.log import FilterLog
from baselens.run.config import ConfigError

logger = logging.getLogger("baselens")


def _tasks() -> dict[str, Callable]:
    """Name → scoring function of every Cell Painting task of the registry."""
    return {name: spec.function for name, spec in TASKS.items()
            if spec.pipeline == "cell_painting"}



#: Batch-level names a warning message may mention (to count it at that level).
_LEVEL_RE = re.compile(r"\b(SP|NR|NSP|NSB|NSS|NSL|NSSL)\b")

#: Inputs the pipeline provides; they are not config keys.
_PROVIDED = {"profiles", "features", "pairs", "labels", "targets"}


def validate_tasks(tasks_cfg: dict) -> None:
    """Raise :class:`ConfigError` for unknown tasks or arguments a task does not take."""
    fns = _tasks()
    for name, table in tasks_cfg.items():
        if name not in fns:
            raise ConfigError(f"unknown task {name!r} in [tasks] (known: {', '.join(fns)})")
        if not isinstance(table, dict):
            raise ConfigError(f"tasks.{name} must be a table")
        params = inspect.signature(fns[name]).parameters
        if "where" in table:
            _check_where(table["where"], f"tasks.{name}.where")
        for key in table:
            if key in ("enabled", "where"):
                continue
            if key not in params or key in _PROVIDED:
                allowed = sorted(["enabled", "where", *(p for p in params if p not in _PROVIDED)])
                raise ConfigError(f"unknown key {key!r} in tasks.{name} (allowed: {', '.join(allowed)})")
            default, value = params[key].default, table[key]
            if isinstance(default, (int, float)) and not isinstance(default, bool) \
                    and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ConfigError(f"tasks.{name}.{key} must be a number, got {value!r}")


def enabled_tasks(tasks_cfg: dict) -> list[str]:
    """Names of the tasks a run scores, in scoring order."""
    return [name for name in _tasks()
            if dict(tasks_cfg.get(name, {})).get("enabled", TASKS[name].enabled_by_default)]


def run_tasks(profiles: pd.DataFrame, features: list[str], inputs: dict, tasks_cfg: dict,
              log: FilterLog, label: str, record: dict | None = None,
              progress: Callable | None = None,
              ) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Score every enabled task on one representation's profiles.

    Which tasks run, with which default arguments, comes from
    :data:`baselens.evaluate.registry.TASKS` (``enabled_by_default``, ``defaults``).

    Nothing a task does is silenced:

    * every warning raised inside a task (sklearn's ``ConvergenceWarning`` and
      ``UndefinedMetricWarning`` included) is counted per (task, batch level, category);
      the counts go to ``record["warnings"]`` (``run.json``) — only the "batch level …
      skipped" notices are not counted there, as they are logged as skips from
      ``scores.attrs``;
    * ``scores.attrs["dropped"]`` entries (``what, n_removed, n_kept, reason``) become
      :class:`FilterLog` entries;
    * ``scores.attrs["fold_plan"]`` (how folds were formed) goes to
      ``record["fold_plans"]``.

    Parameters
    ----------
    profiles, features
        One representation layer's normalized well profiles and feature columns.
    inputs
        Task inputs (``pairs``, ``bioactivity``, ``targets``).
    tasks_cfg
        The config's ``[tasks.<name>]`` tables.
    log
        Where skips and drops are recorded.
    label
        ``method/layer``, prefixed to every record.
    record
        Optional dict collecting ``warnings`` and ``fold_plans`` lists (for ``run.json``).
    progress
        Optional ``progress(task, scores_or_None)``, called after each enabled task
        (``None``: skipped).

    Returns
    -------
    Lists of score frames (``task, batch_level, metric, fold, value, n, warning``)
    and per-item frames (``task, batch_level, perturbation, metric, value, fold``).
    """
    fns = _tasks()
    scores, per = [], []
    for name, fn in fns.items():
        spec = TASKS[name]
        table = dict(tasks_cfg.get(name, {}))
        if not table.pop("enabled", spec.enabled_by_default):
            continue
        where = table.pop("where", None)
        kwargs = {**spec.defaults, **table}
        rows = profiles if where is None else select_rows(profiles, where, log, f"{label}: {name}")
        args, why = _inputs_for(name, rows, inputs, kwargs)
        if args is None:
            log.add(f"{label}: {name}", "tasks", 1, 0, f"task skipped: {why}", quiet=True)
            if progress is not None:
                progress(name, None)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s, p = fn(rows, features, *args, **kwargs)
        for key in ("skipped_batch_levels", "skipped_levels"):
            for level, reason in dict(s.attrs.get(key, {})).items():
                log.add(f"{label}: {name}", "batch levels", 1, 0, f"{level} skipped: {reason}",
                        quiet=True)
        if s.attrs.get("n_single_replicate_wells"):
            log.add(f"{label}: {name}", "wells", int(s.attrs["n_single_replicate_wells"]), 0,
                    "perturbation has a single replicate well: no positive to retrieve")
        for d in s.attrs.get("dropped", []) or []:
            # counted in run.json and the report's filters, and in run.log; not a terminal
            # warning per representation (every layer drops the same unlabeled wells)
            log.add(f"{label}: {name}", str(d.get("what", "rows")), int(d.get("n_removed", 0)),
                    int(d.get("n_kept", 0)), str(d.get("reason", "dropped by the task")),
                    quiet=True)
        counted = count_warnings(caught)
        for w in counted:
            logger.warning("%s: %s: %d × %s at %s: %s", label, name, w["count"], w["category"],
                           w["batch_level"], w["message"])
        if record is not None:
            record.setdefault("warnings", []).extend(
                {"method": label, "task": name, **w} for w in counted)
            if s.attrs.get("fold_plan"):
                record.setdefault("fold_plans", []).append(
                    {"method": label, "task": name, "fold_plan": _plan_text(s.attrs["fold_plan"])})
        scores.append(_stamp_scores(s, name))
        per.append(_stamp_per(p, name))
        if progress is not None:
            progress(name, scores[-1])
    return scores, per


def _plan_text(plan) -> str:
    if isinstance(plan, dict):
        return "; ".join(f"{k}: {v}" for k, v in plan.items())
    return str(plan)


def count_warnings(caught: list) -> list[dict]:
    """Count caught warnings per (batch level, category, message).

    The "batch level … skipped" notices are left out (the skips are logged from
    ``scores.attrs``). A warning is counted at the batch level its message names, else at
    ``"all"``. Returns dicts ``batch_level, category, message, count`` (message cut at 300
    characters), most frequent first.
    """
    c: Counter = Counter()
    for w in caught:
        msg = str(w.message)
        if " skipped: " in msg and "batch level" in msg:
            continue
        lv = _LEVEL_RE.search(msg)
        c[(lv.group(1) if lv else "all", w.category.__name__, msg[:300])] += 1
    return [{"batch_level": lv, "category": cat, "message": msg, "count": int(n)}
            for (lv, cat, msg), n in c.most_common()]


def _check_where(where, where_name: str) -> None:
    if not isinstance(where, dict) or not where:
        raise ConfigError(f"{where_name} must be a table {{column = [values]}} or "
                          f"{{column = {{not = [values]}}}}, got {where!r}")
    for col, v in where.items():
        if isinstance(v, dict) and (set(v) != {"not"}):
            raise ConfigError(f"{where_name}.{col}: a table here takes only 'not', got {sorted(v)}")


def select_rows(profiles: pd.DataFrame, where: dict, log: FilterLog | None = None,
                stage: str = "where") -> pd.DataFrame:
    """Rows of ``profiles`` matching every ``{column: values}`` (or ``{column: {not: values}}``).

    Values are compared as case-insensitive, stripped strings. Raises ``ValueError`` for a
    column the profiles lack; the rows removed are logged with the rule.
    """
    keep = np.ones(len(profiles), dtype=bool)
    for col, v in where.items():
        if col not in profiles.columns:
            raise ValueError(f"{stage}: where names {col!r}, which the profiles lack "
                             f"(Metadata columns: {[c for c in profiles.columns if c.startswith('Metadata_')]})")
        negate = isinstance(v, dict)
        vals = v["not"] if negate else v
        vals = [vals] if isinstance(vals, (str, int, float)) else list(vals)
        allowed = {str(x).strip().lower() for x in vals}
        hit = profiles[col].astype(str).str.strip().str.lower().isin(allowed).to_numpy()
        keep &= ~hit if negate else hit
    if log is not None:
        log.add(stage, "rows", int((~keep).sum()), int(keep.sum()), f"where {where}", quiet=True)
    return profiles[keep].reset_index(drop=True)


def _inputs_for(name: str, profiles: pd.DataFrame, inputs: dict, kwargs: dict):
    if name in ("relationship_recall", "relationship_enrichment"):
        pairs = inputs.get("pairs")
        if pairs is None or not len(pairs):
            return None, "no relationship annotations (data.annotations)"
        return (pairs,), ""
    if name == "bioactivity":
        labels = inputs.get("bioactivity")
        if labels is None or not len(labels):
            return None, "no bioactivity labels (data.bioactivity)"
        return (labels,), ""
    if name == "regression_probe":
        targets = inputs.get("targets")
        if targets is None:
            return None, "no per-well targets (data.targets)"
        keys = ["Metadata_Plate", "Metadata_Well"]
        t = profiles[keys].merge(targets, on=keys, how="left")
        return (t.drop(columns=keys).reset_index(drop=True),), ""
    if name == "moa_retrieval":
        col = kwargs.get("moa_col", "Metadata_moa")
        if col not in profiles.columns:
            return None, f"no MoA column {col!r} in the metadata"
    if name == "knn_probe" and "label" not in kwargs:
        kwargs["label"] = ("Metadata_moa" if "Metadata_moa" in profiles.columns
                           else "Metadata_Perturbation")
        if kwargs["label"] == "Metadata_moa":
            kwargs["exclude_controls"] = True
        # the default probe is skipped (with its reason), not fatal, on a screen without two
        # replicated labels (e.g. five wells of five treatments); an explicit label still fails
        lab = profiles[kwargs["label"]].astype(str)
        keep = profiles[kwargs["label"]].notna() & ~lab.isin(["", "nan", "None"])
        if kwargs.get("exclude_controls", True) and "Metadata_ControlType" in profiles.columns:
            keep &= ~profiles["Metadata_ControlType"].astype(str).isin(["negcon", "poscon"])
        counts = lab[keep].value_counts()
        need = int(kwargs.get("min_per_label", 2))
        if int((counts >= need).sum()) < 2:
            return None, (f"fewer than 2 labels in {kwargs['label']} with >= {need} wells "
                          "(nothing to classify)")
    return (), ""


def _stamp_scores(s: pd.DataFrame, task: str) -> pd.DataFrame:
    s = s.copy()
    if "source" in s.columns:  # per annotation source: fold it into the metric name
        src = s["source"].astype(str)
        s["metric"] = np.where(src.isin(["all", ""]), s["metric"], s["metric"] + ":" + src)
    if "batch_level" not in s.columns:
        s["batch_level"] = "NR"
    if "fold" not in s.columns:
        s["fold"] = 0
    if "warning" not in s.columns:
        s["warning"] = ""
    s["warning"] = s["warning"].fillna("").astype(str)
    s["fold"] = pd.to_numeric(s["fold"], errors="coerce").fillna(0).astype("int64")
    s["n"] = pd.to_numeric(s["n"], errors="coerce").fillna(0).astype("int64")
    s["task"] = task
    main = TASKS[task].headline if task in TASKS else None
    order = np.where(s["metric"] == main, 0, np.where(s["metric"].str.contains(":"), 2, 1))
    s = s.iloc[np.argsort(order, kind="stable")]
    return s[["task", "batch_level", "metric", "fold", "value", "n", "warning"]]


def _stamp_per(p: pd.DataFrame, task: str) -> pd.DataFrame:
    p = p.copy()
    if "batch_level" not in p.columns:
        p["batch_level"] = "NR"
    if "fold" not in p.columns:
        p["fold"] = 0
    p["fold"] = pd.to_numeric(p["fold"], errors="coerce").fillna(0).astype("int64")
    p["perturbation"] = p["perturbation"].astype(str)
    p["task"] = task
    return p[["task", "batch_level", "perturbation", "metric", "value", "fold"]]
