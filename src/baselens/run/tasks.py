"""Which evaluation tasks a run scores, with what inputs, and how their rows are stamped.

Each task is a function of :mod:`baselens.evaluate` returning ``(scores, per_item)``.
This module maps the ``[tasks.<name>]`` tables of a config onto those functions:
every key of a task table except ``enabled`` is passed to the function as a keyword
argument, checked against its signature, so a typo fails before any work starts.

==================== ===================================== ==================================
task                 needs                                 default (demo) arguments
==================== ===================================== ==================================
replicate_retrieval  negative controls                     every batch level
moa_retrieval        ``Metadata_moa`` (``|``-separated)    every batch level
relationship_recall  annotation pairs (entity1, entity2)   every batch level
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
import warnings
from typing import Callable

import numpy as np
import pandas as pd

from baselens.profile.log import FilterLog
from baselens.run.config import ConfigError


def _tasks() -> dict[str, Callable]:
    from baselens.evaluate.batch_mixing import batch_mixing
    from baselens.evaluate.bioactivity import bioactivity
    from baselens.evaluate.control_retrieval import control_retrieval
    from baselens.evaluate.knn_probe import knn_probe
    from baselens.evaluate.moa_retrieval import moa_retrieval
    from baselens.evaluate.morphohelm import morphohelm
    from baselens.evaluate.regression_probe import regression_probe
    from baselens.evaluate.relationship_recall import relationship_recall
    from baselens.evaluate.replicate_retrieval import replicate_retrieval

    return {
        "replicate_retrieval": replicate_retrieval,
        "moa_retrieval": moa_retrieval,
        "relationship_recall": relationship_recall,
        "knn_probe": knn_probe,
        "bioactivity": bioactivity,
        "regression_probe": regression_probe,
        "batch_mixing": batch_mixing,
        "morphohelm": morphohelm,
        "control_retrieval": control_retrieval,
    }


#: Arguments used when the config does not set them.
DEFAULTS: dict[str, dict] = {
    "replicate_retrieval": {"batch_level": "all"},
    "moa_retrieval": {"batch_level": "all"},
    "relationship_recall": {"batch_level": "all"},
    "knn_probe": {},
    "bioactivity": {"levels": ("NR",), "models": ("logistic",)},  # xgboost and grouped levels: config
    "regression_probe": {},
    "batch_mixing": {},
    "morphohelm": {"batch_level": "all"},
    "control_retrieval": {"batch_level": "all"},
}

#: Tasks a run scores unless told otherwise.
ENABLED_BY_DEFAULT = {"replicate_retrieval", "moa_retrieval", "relationship_recall", "knn_probe",
                      "bioactivity", "regression_probe", "batch_mixing"}

#: The headline metric of each task (listed first in the results, used by summaries).
MAIN_METRIC = {
    "replicate_retrieval": "mean_average_precision",
    "moa_retrieval": "mean_average_precision",
    "relationship_recall": "recall_0.05_0.95",
    "knn_probe": "macro_f1",
    "bioactivity": "auc_roc:logistic",
    "regression_probe": "pearson",
    "batch_mixing": "ilisi_scaled",
    "morphohelm": "replicate_map",
    "control_retrieval": "mean_average_precision",
}

#: Metrics where lower is better (how much batch a representation still encodes).
LOWER_IS_BETTER = ("batch_classification_accuracy", "silhouette_batch")

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
            if dict(tasks_cfg.get(name, {})).get("enabled", name in ENABLED_BY_DEFAULT)]


def run_tasks(profiles: pd.DataFrame, features: list[str], inputs: dict, tasks_cfg: dict,
              log: FilterLog, label: str, progress: Callable | None = None,
              ) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Score every enabled task on one representation's profiles.

    Returns lists of score frames (``task, batch_level, metric, fold, value, n, warning``)
    and per-item frames (``task, batch_level, perturbation, metric, value, fold``).
    ``progress(task, scores_or_None)`` is called after each enabled task (``None``: skipped).
    """
    fns = _tasks()
    scores, per = [], []
    for name, fn in fns.items():
        table = dict(tasks_cfg.get(name, {}))
        if not table.pop("enabled", name in ENABLED_BY_DEFAULT):
            continue
        where = table.pop("where", None)
        kwargs = {**DEFAULTS.get(name, {}), **table}
        rows = profiles if where is None else select_rows(profiles, where, log, f"{label}: {name}")
        args, why = _inputs_for(name, rows, inputs, kwargs)
        if args is None:
            log.add(f"{label}: {name}", "tasks", 1, 0, f"task skipped: {why}", quiet=True)
            if progress is not None:
                progress(name, None)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped levels are read from attrs
            s, p = fn(rows, features, *args, **kwargs)
        for key in ("skipped_batch_levels", "skipped_levels"):
            for level, reason in dict(s.attrs.get(key, {})).items():
                log.add(f"{label}: {name}", "batch levels", 1, 0, f"{level} skipped: {reason}",
                        quiet=True)
        if s.attrs.get("n_single_replicate_wells"):
            log.add(f"{label}: {name}", "wells", int(s.attrs["n_single_replicate_wells"]), 0,
                    "perturbation has a single replicate well: no positive to retrieve")
        scores.append(_stamp_scores(s, name))
        per.append(_stamp_per(p, name))
        if progress is not None:
            progress(name, scores[-1])
    return scores, per


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
    if name == "relationship_recall":
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
    main = MAIN_METRIC.get(task)
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
