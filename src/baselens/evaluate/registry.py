"""The one task registry: every evaluation task, its inputs, defaults and the metrics it writes.

Each task of :mod:`baselens.evaluate` is declared here once, as a :class:`TaskSpec`:

* the function that scores it (an import path, so importing the registry costs nothing);
* every metric it writes into ``scores.parquet`` (:class:`Metric`: name, direction, kind),
  which of them is the task's *headline*, and which per-item metric of
  ``per_perturbation.parquet`` pairs with each score metric for a paired test;
* the arguments a run uses when the config does not set them, and whether a run scores
  the task unless told otherwise.

``run`` (which tasks to call, with what defaults, how to order rows), ``diagnose`` (which
metrics a model can "beat", in which direction, paired over what) and — through the table
``diagnostics/metrics.parquet`` that :func:`metrics_table` writes — ``report`` read these
declarations. Nothing else in the package keeps constants about metrics.

Metric kinds
------------

========= =========================================================================
``score`` a quality a representation is judged on; the only kind compared with the best
          baseline (``beyond_baseline``)
``count`` how many items something applied to (``n_unseen_label``, ``n_actives_test``)
``chance`` the value a label-blind guess reaches (``chance_accuracy``)
``null``  a control that should sit at chance: the y-scrambled twins of the bioactivity
          models (``auc_roc:logistic_scrambled``)
``flag``  a warning marker (``warning_small_test:<assay>`` = 1 when a test fold is small)
========= =========================================================================

Metric names may carry ``:suffix`` parts (the bioactivity model and assay, an annotation
source, a regression target): ``auc_roc:logistic:viability`` or ``recall_0.05_0.95:CORUM``
resolve to their base name (the part before the first ``:``). A suffix part ending in
``_scrambled`` marks a y-scrambled twin and makes the metric a ``null``, whatever its base.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pandas as pd

__all__ = ["KINDS", "METRICS_TABLE_COLUMNS", "Metric", "TASKS", "TaskSpec", "default_tasks", "headline_metric",
           "item_metric_spec", "metric_spec", "metrics_table", "paired_item_metrics"]

#: What a metric can be (module docstring).
KINDS = ("score", "count", "chance", "null", "flag")


@dataclass(frozen=True)
class Metric:
    """One metric a task writes.

    Parameters
    ----------
    name
        Base name (no ``:suffix``), e.g. ``"mean_average_precision"``.
    higher_is_better
        Direction: whether a larger value is better.
    kind
        One of :data:`KINDS`.
    description
        One line: what the value is.
    """

    name: str
    higher_is_better: bool = True
    kind: str = "score"
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if ":" in self.name:
            raise ValueError(f"metric {self.name!r}: declare the base name, without ':suffix'")


def _frozen(d: Mapping | None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task.

    Parameters
    ----------
    name
        The task name: ``[tasks.<name>]`` in a config, ``task`` in the results tables.
    fn
        ``"module:function"`` (or the callable) returning ``(scores, per_item)``.
    metrics
        Every metric the task writes to ``scores`` (base names).
    headline
        The full metric name summaries talk about (may carry a suffix,
        ``"auc_roc:logistic"``).
    item_metrics
        Every metric the task writes to its per-item frame (``per_perturbation``).
    pairing
        Score base name → per-item metric names to pair two methods over, in order of
        preference (the first one present in ``per_perturbation`` is used). A score metric
        absent here is paired over folds.
    defaults
        Keyword arguments a run passes when the config does not set them.
    enabled_by_default
        Whether a run scores the task unless ``enabled = false``.
    needs
        The inputs the task needs, in words.
    pipeline
        ``"cell_painting"`` (:mod:`baselens.run.tasks`) or ``"tissue"``
        (:class:`baselens.run.units.SpotUnits`, whose ``task`` column is the dataset's task).
    """

    name: str
    fn: str | Callable
    metrics: tuple[Metric, ...]
    headline: str
    item_metrics: tuple[Metric, ...] = ()
    pairing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    defaults: Mapping = field(default_factory=dict)
    enabled_by_default: bool = True
    needs: str = "—"
    pipeline: str = "cell_painting"

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", _frozen(self.defaults))
        object.__setattr__(self, "pairing", _frozen(self.pairing))
        names = {m.name for m in self.metrics}
        items = {m.name for m in self.item_metrics}
        if self.headline.split(":")[0] not in names:
            raise ValueError(f"task {self.name!r}: headline {self.headline!r} is not declared")
        for score, cands in self.pairing.items():
            if score not in names or not set(cands) <= items:
                raise ValueError(f"task {self.name!r}: pairing {score!r} → {cands!r} names an "
                                 "undeclared metric")

    @property
    def function(self) -> Callable:
        """The scoring function (imported on first use)."""
        if callable(self.fn):
            return self.fn
        module, _, attr = str(self.fn).partition(":")
        return getattr(importlib.import_module(module), attr)

    def metric(self, base: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == base), None)

    def item_metric(self, base: str) -> Metric | None:
        return next((m for m in self.item_metrics if m.name == base), None)


def _m(name: str, higher: bool = True, kind: str = "score", description: str = "") -> Metric:
    return Metric(name, higher, kind, description)


_RETRIEVAL_ITEMS = (
    _m("mean_average_precision", description="the perturbation's mAP over its replicate queries"),
    _m("average_precision", description="one query's average precision"),
    _m("p_value", False, "score", "permutation p-value of the perturbation's mAP"),
    _m("corrected_p_value", False, "score", "Benjamini–Hochberg corrected p-value"),
)
_RETRIEVAL_PAIRING = {"mean_average_precision": ("mean_average_precision", "average_precision")}

_BIOACTIVITY_SCORES = tuple(
    _m(n, description=d) for n, d in (
        ("auc_roc", "area under the ROC curve of out-of-fold predictions"),
        ("auc_pr", "area under the precision–recall curve"),
        ("auprg", "area under the precision–recall–gain curve (Flach & Kull 2015, NeurIPS)"),
        ("balanced_accuracy", "balanced accuracy at the best threshold"),
        ("balanced_accuracy_train_threshold", "balanced accuracy at the training threshold"),
    ))

_TASK_LIST = [
    TaskSpec(
        "replicate_retrieval", "baselens.evaluate.replicate_retrieval:replicate_retrieval",
        metrics=(_m("mean_average_precision", description="mean over perturbations of their "
                    "replicate mAP (copairs)"),
                 _m("fraction_retrieved", description="share of perturbations with corrected "
                    "p < threshold")),
        headline="mean_average_precision", item_metrics=_RETRIEVAL_ITEMS,
        pairing=_RETRIEVAL_PAIRING, defaults={"batch_level": "all"},
        needs="negative controls"),
    TaskSpec(
        "moa_retrieval", "baselens.evaluate.moa_retrieval:moa_retrieval",
        metrics=(_m("mean_average_precision", description="mAP of retrieving same-MoA "
                    "perturbations"),
                 _m("fraction_retrieved", description="share of perturbations retrieved")),
        headline="mean_average_precision", item_metrics=_RETRIEVAL_ITEMS,
        pairing=_RETRIEVAL_PAIRING, defaults={"batch_level": "all"},
        needs="``Metadata_moa`` (``|``-separated)"),
    TaskSpec(
        "relationship_recall", "baselens.evaluate.relationship_recall:relationship_recall",
        metrics=(_m("recall_0.05_0.95", description="share of known pairs in either tail of "
                    "the similarity distribution"),
                 _m("recall_top_0.05", description="share of known pairs in the top tail"),
                 _m("recall_bottom_0.05", description="share of known pairs in the bottom tail")),
        headline="recall_0.05_0.95",
        item_metrics=(_m("partner_recall_top", description="share of a gene's partners in its "
                         "top tail"),),
        defaults={"batch_level": "all"}, needs="annotation pairs (entity1, entity2)"),
    TaskSpec(
        "relationship_enrichment",
        "baselens.evaluate.relationship_enrichment:relationship_enrichment",
        metrics=(_m("fraction_significant", description="share of genes whose annotated "
                    "partners are enriched among their top 1 % most similar genes "
                    "(MorphoHELM's pathway enrichment)"),
                 _m("geometric_mean_or", description="geometric mean over genes of the "
                    "enrichment odds ratio")),
        headline="fraction_significant",
        item_metrics=(_m("enrichment_odds_ratio", description="a gene's enrichment odds "
                         "ratio (geometric mean over its query profiles)"),
                      _m("enrichment_significant", description="1 when the gene's partners "
                         "are significantly enriched, else 0")),
        pairing={"fraction_significant": ("enrichment_significant",)},
        defaults={"batch_level": "all"}, enabled_by_default=False,
        needs="annotation pairs (entity1, entity2) (off by default)"),
    TaskSpec(
        "knn_probe", "baselens.evaluate.knn_probe:knn_probe",
        metrics=(_m("macro_f1", description="macro-averaged F1 of held-out wells"),
                 _m("accuracy", description="accuracy of held-out wells"),
                 _m("chance_accuracy", kind="chance", description="accuracy of always "
                    "predicting the most frequent training label"),
                 _m("n_unseen_label", False, "count", "test wells whose label is absent from "
                    "training (left out)")),
        headline="macro_f1",
        item_metrics=(_m("correct", description="1 when the held-out well is classified "
                         "right, else 0"),
                      _m("accuracy", description="accuracy over the held-out wells of one "
                         "label (class recall)")),
        # macro-F1 has no per-item decomposition: its verdict pairs per-well correctness
        # (or, without per-well rows, per-label recall), and needs the macro-F1 difference
        # to point the same way
        pairing={"macro_f1": ("correct", "accuracy"), "accuracy": ("correct", "accuracy")},
        needs="a label column (``Metadata_moa`` if present)"),
    TaskSpec(
        "bioactivity", "baselens.evaluate.bioactivity:bioactivity",
        metrics=(*_BIOACTIVITY_SCORES,
                 _m("n_actives_test", kind="count", description="actives in the test fold"),
                 _m("n_inactives_test", kind="count", description="inactives in the test fold"),
                 _m("n_assays_small_test", False, "count", "assays with a small test fold"),
                 _m("warning_small_test", False, "flag", "1 when the test fold is small")),
        headline="auc_roc:logistic",
        item_metrics=(_m("oof_probability", description="out-of-fold predicted probability "
                         "(stored prediction, not a score)"),),
        defaults={"levels": ("NR",), "models": ("logistic",)},
        needs="per-compound assay labels"),
    TaskSpec(
        "regression_probe", "baselens.evaluate.regression_probe:regression_probe",
        metrics=(_m("pearson", description="mean over targets of the held-out Pearson r"),),
        headline="pearson",
        item_metrics=(_m("pearson", description="one target's held-out Pearson r (mean over "
                         "folds)"),
                      _m("abs_error", False, description="absolute error of one held-out "
                         "well")),
        pairing={"pearson": ("pearson",)},
        needs="per-well continuous targets"),
    TaskSpec(
        "batch_mixing", "baselens.evaluate.batch_mixing:batch_mixing",
        metrics=(_m("ilisi_scaled", description="iLISI scaled to [0, 1] (scib-metrics)"),
                 _m("ilisi", description="integration LISI"),
                 _m("silhouette_batch", False, description="cosine silhouette of batch labels "
                    "(how much batch is left)"),
                 _m("batch_classification_accuracy", False, description="kNN accuracy of "
                    "predicting the batch (how much batch is left)"),
                 _m("batch_classification_chance", False, "chance", "majority-class batch "
                    "accuracy")),
        headline="ilisi_scaled", needs="negative controls"),
    TaskSpec(
        "morphohelm", "baselens.evaluate.morphohelm:morphohelm",
        metrics=(_m("replicate_map", description="MorphoHELM replicate mAP"),
                 _m("negcon_map", description="MorphoHELM mAP against DMSO"),
                 _m("knn_recall_at_1", description="nearest neighbour is a replicate"),
                 _m("enrichment_fraction_significant", description="share of compounds with "
                    "significant MoA enrichment"),
                 _m("enrichment_geometric_mean_or", description="geometric mean enrichment "
                    "odds ratio"),
                 _m("enrichment_fraction_significant_shuffled", kind="chance",
                    description="the same with MoA labels shuffled (MorphoHELM's baseline)"),
                 _m("enrichment_geometric_mean_or_shuffled", kind="chance",
                    description="the same with MoA labels shuffled")),
        headline="replicate_map",
        item_metrics=(_m("replicate_ap"), _m("negcon_ap"), _m("enrichment_odds_ratio"),
                      _m("enrichment_p_value", False), _m("enrichment_significant")),
        pairing={"replicate_map": ("replicate_ap",), "negcon_map": ("negcon_ap",)},
        defaults={"batch_level": "all"}, enabled_by_default=False,
        needs="negative controls (off by default)"),
    TaskSpec(
        "control_retrieval", "baselens.evaluate.control_retrieval:control_retrieval",
        metrics=(_m("mean_average_precision", description="mAP of retrieving JUMP positive "
                    "controls"),
                 _m("fraction_retrieved", description="share of controls retrieved")),
        headline="mean_average_precision",
        item_metrics=(*_RETRIEVAL_ITEMS, _m("n_wells", kind="count")),
        pairing=_RETRIEVAL_PAIRING, defaults={"batch_level": "all"}, enabled_by_default=False,
        needs="positive controls (off by default)"),
    TaskSpec(
        "gene_expression", "baselens.evaluate.gene_expression:gene_expression_probe",
        metrics=(_m("pearson", description="HEST-Benchmark: mean over genes of the held-out "
                    "Pearson r"),
                 _m("pearson_count_matched", description="the same within strata of equal "
                    "cell count"),
                 *(_m(f"pearson_{d}", description=f"mean r over the genes of the planted "
                      f"{d} driver (synthetic tissue)")
                   for d in ("density", "clustering", "regularity", "appearance", "mixed"))),
        headline="pearson",
        item_metrics=(_m("pearson", description="one gene's held-out Pearson r"),
                      _m("pearson_count_matched")),
        pairing={"pearson": ("pearson",), "pearson_count_matched": ("pearson_count_matched",)},
        needs="H&E spots with expression (tissue runs)", pipeline="tissue"),
]

#: Every task, by name.
TASKS: Mapping[str, TaskSpec] = MappingProxyType({t.name: t for t in _TASK_LIST})


def _task(task: str) -> TaskSpec:
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r} (known: {', '.join(TASKS)})") from None


def metric_spec(task: str, metric: str) -> Metric:
    """The declaration of ``metric`` as written by ``task``.

    ``metric`` may carry ``:suffix`` parts; they resolve to the base name. A suffix part
    ending in ``_scrambled`` (a y-scrambled model) turns the metric into a ``null``.

    Parameters
    ----------
    task
        A name of :data:`TASKS`.
    metric
        The metric as it appears in ``scores.parquet``, e.g. ``"auc_roc:logistic"``.

    Returns
    -------
    Metric
        With ``name`` the full metric name.

    Raises
    ------
    KeyError
        For an unknown task or a metric the task does not declare.
    """
    spec = _task(task)
    parts = str(metric).split(":")
    m = spec.metric(parts[0])
    if m is None:
        raise KeyError(f"task {task!r} does not declare metric {parts[0]!r} (declared: "
                       f"{', '.join(x.name for x in spec.metrics)})")
    kind = "null" if any(p.endswith("_scrambled") for p in parts[1:]) else m.kind
    return _full(metric, m, kind)


def _full(metric: str, m: Metric, kind: str) -> Metric:
    # a Metric named with the full (suffixed) name: bypass the base-name check
    out = object.__new__(Metric)
    object.__setattr__(out, "name", str(metric))
    object.__setattr__(out, "higher_is_better", m.higher_is_better)
    object.__setattr__(out, "kind", kind)
    object.__setattr__(out, "description", m.description)
    return out


def item_metric_spec(task: str, metric: str) -> Metric:
    """The declaration of a per-item metric (``per_perturbation.parquet``) of ``task``."""
    spec = _task(task)
    parts = str(metric).split(":")
    m = spec.item_metric(parts[0])
    if m is None:
        raise KeyError(f"task {task!r} does not declare per-item metric {parts[0]!r} "
                       f"(declared: {', '.join(x.name for x in spec.item_metrics)})")
    return _full(metric, m, m.kind)


def paired_item_metrics(task: str, metric: str) -> tuple[str, ...]:
    """Per-item metrics to pair ``metric`` over, in order of preference (empty: folds).

    Only an unsuffixed score metric pairs over items: a suffixed one (one assay, one
    annotation source, one target) is a subset the per-item rows do not single out.
    """
    spec = TASKS.get(task)
    if spec is None or ":" in str(metric):
        return ()
    return tuple(spec.pairing.get(str(metric), ()))


def default_tasks(pipeline: str = "cell_painting") -> frozenset[str]:
    """Names of the tasks a run of ``pipeline`` scores unless told otherwise."""
    return frozenset(n for n, spec in TASKS.items()
                     if spec.enabled_by_default and spec.pipeline == pipeline)


def headline_metric(task: str) -> str | None:
    """The task's headline metric, ``None`` for an unknown task."""
    spec = TASKS.get(task)
    return spec.headline if spec else None


#: Columns of :func:`metrics_table` (``diagnostics/metrics.parquet``).
METRICS_TABLE_COLUMNS = ["task", "metric", "declared_task", "higher_is_better", "metric_kind",
                         "headline", "paired_with", "declared"]


def metrics_table(pairs: pd.DataFrame | Iterable[tuple[str, str]],
                  task_alias: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The declaration of every ``(task, metric)`` a run wrote, as a table.

    This is ``diagnostics/metrics.parquet``: what the report reads instead of importing the
    registry (the report renders tables only).

    Parameters
    ----------
    pairs
        A frame with ``task`` and ``metric`` columns (e.g. ``scores.parquet``) or an
        iterable of ``(task, metric)``.
    task_alias
        ``task`` value → registered task, for pipelines whose ``task`` column is a dataset
        name (tissue runs: ``{"IDC": "gene_expression"}``).

    Returns
    -------
    DataFrame
        One row per distinct ``(task, metric)``: ``declared_task`` (the registry entry),
        ``higher_is_better``, ``metric_kind``, ``headline`` (bool: the task's headline
        metric), ``paired_with`` (``|``-joined per-item metrics, ``""`` = folds) and
        ``declared`` (False for a task or metric the registry does not know; such rows
        are given ``score``/higher-is-better only when the task itself is unknown).
    """
    alias = dict(task_alias or {})
    if isinstance(pairs, pd.DataFrame):
        items = list(dict.fromkeys(zip(pairs["task"].astype(str), pairs["metric"].astype(str))))
    else:
        items = list(dict.fromkeys((str(t), str(m)) for t, m in pairs))
    rows = []
    for task, metric in items:
        decl = alias.get(task, task)
        known_task = decl in TASKS
        try:
            m = metric_spec(decl, metric)
            hib, kind, declared = m.higher_is_better, m.kind, True
        except KeyError:
            hib, declared = True, False
            kind = "undeclared" if known_task else "score"
        rows.append({"task": task, "metric": metric, "declared_task": decl if known_task else "",
                     "higher_is_better": bool(hib), "metric_kind": kind,
                     "headline": bool(known_task and TASKS[decl].headline == metric),
                     "paired_with": "|".join(paired_item_metrics(decl, metric)),
                     "declared": declared})
    return pd.DataFrame(rows, columns=METRICS_TABLE_COLUMNS)
