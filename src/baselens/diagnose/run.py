"""Stage 5 — run every diagnostic on one run's profiles and scores.

``run_diagnostics(profile_sets, scores, per_perturbation, ...)`` returns
``{name: DataFrame}`` and, with ``out_dir``, writes each table atomically to
``out_dir/diagnostics/<name>.parquet`` (plus ``curated_tasks.csv``):

================================= ===================================== ============================
table                             what                                  module
================================= ===================================== ============================
``metrics``                       every (task, metric) of the run with  :mod:`baselens.evaluate.registry`
                                  its declared direction, kind,
                                  headline flag and pairing
``beyond_baseline``               model − best baseline on ``score``    :mod:`.beyond_baseline`
                                  metrics: paired Wilcoxon, BH
                                  ``p_adjusted``, bootstrap CI,
                                  ``verdict``
``best_baseline``                 the best baseline of every (task,     :mod:`.differential`
                                  level, metric), models or not
``best_layers``                   the best layer of every method in     :mod:`.layers`
                                  every (task, level, score metric)
``agreement``                     Spearman of similarity rankings,      :mod:`.agreement`
                                  linear CKA, every pair of sets
``closest_baseline``              per model and reference, the          :mod:`.agreement`
                                  baseline it agrees most with
``dimensionality``                PCA spectrum, effective rank,         :mod:`.dimensionality`
                                  participation ratio, collapse
``residualized``                  mAP after residualizing on cell       :mod:`.confounds`
                                  count / pixel_stats; matched strata
``residualization_panels``        which representations get per-class   :mod:`.confounds`
                                  before/after panels, on which
                                  confound
``assay_confounds``               per assay: cell count t-test,         :mod:`.curation`
                                  threshold sweep, flag
``phenotype_classes``             mean mAP per planted class            :mod:`.classes`
                                  (synthetic screens; else empty)
``per_perturbation_differential`` per task, each method against the     :mod:`.differential`
                                  best baseline of each perturbation
                                  (headline per-item metric, shown
                                  level: the report's scatters)
``findings``                      every conclusion, one row each: the   :mod:`.findings`
                                  verdicts per model and level,
                                  identical levels, confounds,
                                  sample-size caveats, assays … with
                                  the numbers and the sentence (the
                                  report renders these, decides none)
================================= ===================================== ============================

A diagnostic whose inputs are missing returns its empty table (with the columns). A
diagnostic that *fails* is recorded in ``log`` (and the ``baselens`` logger) and returns
its empty table, so one broken diagnostic never costs the run its report — unless
``strict=True`` (tests), which re-raises. ``metrics`` and ``beyond_baseline`` are not
optional: their failure fails the run with its error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from baselens._io import write_parquet_atomic, write_text_atomic

__all__ = ["DIAGNOSTICS", "ProfileSet", "derived_tables", "method_kinds", "run_diagnostics"]

logger = logging.getLogger("baselens")

#: Diagnostics whose failure fails the run: the metric declarations and the verdicts are
#: the run's headline, not optional extras.
REQUIRED = ("metrics", "beyond_baseline")

#: The tables run_diagnostics returns, in order.
DIAGNOSTICS = ("metrics", "beyond_baseline", "best_baseline", "best_layers", "agreement",
               "closest_baseline", "dimensionality", "residualized", "residualization_panels",
               "assay_confounds", "phenotype_classes", "per_perturbation_differential",
               "findings")


@dataclass
class ProfileSet:
    """One representation layer, as profiled by the pipeline."""

    method: str
    method_kind: str
    layer: str
    profiles: pd.DataFrame  # normalized WELL profiles: Metadata_* + feature columns
    features: list[str] = field(default_factory=list)


def _empty(name: str) -> pd.DataFrame:
    from baselens.diagnose.agreement import AGREEMENT_COLUMNS, CLOSEST_BASELINE_COLUMNS
    from baselens.diagnose.classes import CLASS_COLUMNS
    from baselens.diagnose.confounds import PANEL_COLUMNS, RESIDUALIZED_COLUMNS
    from baselens.diagnose.curation import _empty as empty_assays
    from baselens.diagnose.dimensionality import DIMENSIONALITY_COLUMNS
    from baselens.diagnose.layers import BEST_LAYER_COLUMNS

    cols = {"agreement": AGREEMENT_COLUMNS, "dimensionality": DIMENSIONALITY_COLUMNS,
            "residualized": RESIDUALIZED_COLUMNS, "phenotype_classes": CLASS_COLUMNS,
            "best_layers": BEST_LAYER_COLUMNS, "closest_baseline": CLOSEST_BASELINE_COLUMNS,
            "residualization_panels": PANEL_COLUMNS}
    if name == "assay_confounds":
        return empty_assays()
    if name == "beyond_baseline":
        from baselens.diagnose.beyond_baseline import BEYOND_COLUMNS

        return pd.DataFrame(columns=BEYOND_COLUMNS)
    if name == "findings":
        from baselens.diagnose.findings import findings

        return findings(pd.DataFrame())
    if name == "best_baseline":
        from baselens.diagnose.differential import BEST_BASELINE_COLUMNS

        return pd.DataFrame(columns=BEST_BASELINE_COLUMNS)
    if name == "per_perturbation_differential":
        from baselens.diagnose.differential import DIFFERENTIAL_COLUMNS

        return pd.DataFrame(columns=DIFFERENTIAL_COLUMNS)
    if name == "metrics":
        from baselens.evaluate.registry import METRICS_TABLE_COLUMNS

        return pd.DataFrame(columns=METRICS_TABLE_COLUMNS)
    return pd.DataFrame(columns=cols[name])


def method_kinds(scores: pd.DataFrame | None, profile_sets: Iterable = ()
                 ) -> dict[tuple[str, str], str]:
    """``(method, layer) → method_kind`` in order of first appearance in ``scores`` (layer
    ``default`` where missing), then any profile set ``scores`` does not list: the kinds
    :func:`~baselens.diagnose.agreement.closest_baselines` and
    :func:`~baselens.diagnose.confounds.residualization_panels` choose by, and the order
    their ties follow."""
    out: dict[tuple[str, str], str] = {}
    if scores is not None and len(scores) and {"method", "method_kind"} <= set(scores.columns):
        layer = (scores["layer"].where(scores["layer"].notna(), "default").astype(str)
                 if "layer" in scores.columns else pd.Series("default", index=scores.index))
        for k, v in zip(zip(scores["method"].astype(str), layer),
                        scores["method_kind"].astype(str)):
            out.setdefault(k, v)
    for ps in profile_sets:
        out.setdefault((str(ps.method), str(ps.layer)), str(ps.method_kind))
    return out


def _note(log, stage: str, reason: str, failed: bool = False) -> None:
    if log is None:
        return
    if hasattr(log, "add"):
        log.add(stage, "tables", 1 if failed else 0, 0 if failed else 1, reason, quiet=not failed)
    elif callable(log):
        log(f"{stage}: {reason}")


def _well_meta(profile_sets: list[ProfileSet]) -> pd.DataFrame:
    cols = ["Metadata_Plate", "Metadata_Well", "Metadata_Perturbation", "Metadata_ControlType",
            "Metadata_CellCount"]
    metas = [ps.profiles[[c for c in cols if c in ps.profiles.columns]] for ps in profile_sets]
    meta = pd.concat(metas, ignore_index=True) if metas else pd.DataFrame(columns=cols)
    keys = [c for c in ("Metadata_Plate", "Metadata_Well") if c in meta.columns]
    return meta.drop_duplicates(keys) if keys else meta


def run_diagnostics(
    profile_sets: list[ProfileSet],
    scores: pd.DataFrame,
    per_perturbation: pd.DataFrame,
    *,
    inputs: dict,
    well_cell_counts: pd.DataFrame | None,
    phenotype_classes: pd.Series | None,
    out_dir: Path | None = None,
    log=None,
    seed: int = 0,
    strict: bool = False,
    task_alias: dict[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every diagnostic of :data:`DIAGNOSTICS` (module docstring).

    Parameters
    ----------
    profile_sets
        Every representation layer's normalized well profiles.
    scores, per_perturbation
        The run's results contract tables.
    inputs
        The task inputs; ``inputs["bioactivity"]`` (``Metadata_Perturbation, assay,
        assay_type, active``) feeds ``assay_confounds``.
    well_cell_counts
        ``Metadata_Plate, Metadata_Well, Metadata_CellCount`` (the ``cell_count``
        method's mean nuclei per well); ``None`` skips what needs it.
    phenotype_classes
        Index ``Metadata_Perturbation`` → planted class (synthetic screens only).
    out_dir
        Run folder; tables go to ``out_dir/diagnostics/``.
    log
        A :class:`baselens.profile.log.FilterLog` (or a callable taking one string):
        skips and failures are recorded there.
    seed
        Seed of anything random (the balanced t-test subsampling of Seal et al. 2026,
        Nat. Commun., when enabled).
    strict
        Re-raise a failing diagnostic instead of recording it (``metrics`` and
        ``beyond_baseline`` always re-raise: the run fails with their error).
    task_alias
        ``task`` value → registered task of :mod:`baselens.evaluate.registry` (tissue runs).
    """
    from baselens.diagnose.agreement import agreement
    from baselens.diagnose.beyond_baseline import beyond_best_baseline
    from baselens.diagnose.classes import class_capture
    from baselens.diagnose.confounds import residualized_retrieval
    from baselens.diagnose.curation import assay_confounds, compound_cell_counts, curated_tasks
    from baselens.diagnose.dimensionality import dimensionality
    from baselens.diagnose.findings import design_summary, findings
    from baselens.evaluate.registry import metrics_table

    profile_sets = list(profile_sets)
    inputs = inputs or {}
    kinds = method_kinds(scores, profile_sets)

    def _beyond():
        b = beyond_best_baseline(scores, per_perturbation, task_alias=task_alias, seed=seed)
        if b.attrs.get("undeclared"):
            _note(log, "diagnose: beyond_baseline",
                  "metric(s) not declared in the task registry, not compared: "
                  + ", ".join(b.attrs["undeclared"]), failed=True)
        return b

    def _assays():
        labels = inputs.get("bioactivity")
        if labels is None or not len(labels):
            _note(log, "diagnose: assay_confounds", "skipped: no bioactivity labels")
            return _empty("assay_confounds")
        meta = _well_meta(profile_sets)
        has_counts = (well_cell_counts is not None and len(well_cell_counts)) or \
            "Metadata_CellCount" in meta.columns
        if not has_counts or "Metadata_Plate" not in meta.columns:
            _note(log, "diagnose: assay_confounds", "skipped: no cell counts (run cell_count)")
            return _empty("assay_confounds")
        cc = compound_cell_counts(meta, well_cell_counts)
        return assay_confounds(cc, labels, seed=seed)

    out: dict[str, pd.DataFrame] = {}
    own: dict[str, Callable[[], pd.DataFrame]] = {
        "metrics": lambda: metrics_table(scores, task_alias),
        "beyond_baseline": _beyond,
        "agreement": lambda: agreement(profile_sets),
        "dimensionality": lambda: dimensionality(profile_sets),
        "residualized": lambda: residualized_retrieval(
            profile_sets, well_cell_counts=well_cell_counts,
            phenotype_classes=phenotype_classes, log=log),
        "assay_confounds": _assays,
        "phenotype_classes": lambda: class_capture(per_perturbation, phenotype_classes),
        # last in DIAGNOSTICS: it reads the tables above (a failed one is empty, and says
        # so by absence)
        "findings": lambda: findings(
            scores, out.get("beyond_baseline"), out.get("metrics"),
            per_perturbation=per_perturbation, assay_confounds=out.get("assay_confounds"),
            residualized=out.get("residualized"),
            phenotype_classes=out.get("phenotype_classes"),
            dimensionality=out.get("dimensionality"),
            design=design_summary(_well_meta(profile_sets))),
    }
    # the report's derived tables, as derived_tables computes them, reading ``out`` as it
    # fills (each runs after the tables it reads: the order of DIAGNOSTICS)
    own.update(_derived_steps(scores, per_perturbation, out, kinds))
    steps = {name: own[name] for name in DIAGNOSTICS}
    timings: dict[str, float] = {}
    for name, fn in steps.items():
        t = time.perf_counter()
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 — recorded, the run goes on (see docstring)
            if strict or name in REQUIRED:
                raise
            logger.exception("diagnostic %s failed", name)
            _note(log, f"diagnose: {name}", f"failed: {type(exc).__name__}: {exc}", failed=True)
            out[name] = _empty(name)
        timings[name] = time.perf_counter() - t
    logger.info("diagnostics: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))

    if out_dir is not None:
        d = Path(out_dir) / "diagnostics"
        for name, df in out.items():
            write_parquet_atomic(_parquet_safe(df), d / f"{name}.parquet")
        write_text_atomic(curated_tasks(out["assay_confounds"]).to_csv(index=False),
                          d / "curated_tasks.csv")
    out_attrs = {k: round(v, 3) for k, v in timings.items()}
    for df in out.values():
        df.attrs["timings_s"] = out_attrs
    return out


def _derived_steps(scores: pd.DataFrame, per_perturbation: pd.DataFrame | None,
                   tables: Mapping[str, pd.DataFrame], kinds: Mapping[tuple[str, str], str],
                   lower_is_better: Iterable = ()) -> dict[str, Callable[[], pd.DataFrame]]:
    """The five tables the report draws from ``scores`` and the tables already computed,
    each as a call that reads ``tables`` (``metrics``, ``agreement``, ``residualized``)
    when it runs: shared by :func:`run_diagnostics` (as its steps) and
    :func:`derived_tables`."""
    from baselens.diagnose.agreement import closest_baselines
    from baselens.diagnose.confounds import residualization_panels
    from baselens.diagnose.differential import best_baseline_table, per_perturbation_table
    from baselens.diagnose.layers import best_layers

    return {
        "best_baseline": lambda: best_baseline_table(
            scores, tables.get("metrics"), lower_is_better=lower_is_better),
        "best_layers": lambda: best_layers(scores, tables.get("metrics"),
                                           lower_is_better=lower_is_better),
        "closest_baseline": lambda: closest_baselines(tables.get("agreement"), kinds),
        "residualization_panels": lambda: residualization_panels(tables.get("residualized"),
                                                                 kinds),
        "per_perturbation_differential": lambda: per_perturbation_table(
            scores, per_perturbation, tables.get("metrics"), lower_is_better=lower_is_better),
    }


def derived_tables(scores: pd.DataFrame, per_perturbation: pd.DataFrame | None,
                   tables: Mapping[str, pd.DataFrame],
                   tissue_methods: pd.DataFrame | None = None, *,
                   lower_is_better: Iterable = ()) -> dict[str, pd.DataFrame]:
    """The tables a run writes beside its verdicts for the report to draw, given the ones
    already computed (``tables``: ``metrics``, ``findings``, and where the run has them
    ``agreement`` and ``residualized``).

    Returns ``best_baseline`` and ``per_perturbation_differential``
    (:mod:`baselens.diagnose.differential`), ``best_layers`` (:mod:`baselens.diagnose.
    layers`), ``closest_baseline`` (from ``tables["agreement"]``,
    :func:`baselens.diagnose.agreement.closest_baselines`), ``residualization_panels``
    (from ``tables["residualized"]``,
    :func:`baselens.diagnose.confounds.residualization_panels`) — the last two empty
    without their table — and, for a tissue run
    (:func:`baselens.diagnose.tissue.is_tissue_run`), ``tissue_inputs`` and
    ``findings`` with the ``tissue`` rows appended after the run's other findings. Used by
    the tissue pipeline and ``baselens compare``; :func:`run_diagnostics` computes the
    first five as steps of its own (both from :func:`_derived_steps`).
    """
    from baselens.diagnose.findings import FINDINGS_COLUMNS
    from baselens.diagnose.tissue import is_tissue_run, tissue_findings, tissue_inputs

    steps = _derived_steps(scores, per_perturbation, tables, method_kinds(scores),
                           lower_is_better)
    out = {name: fn() for name, fn in steps.items()}
    if is_tissue_run(scores, tissue_methods):
        mods = tissue_inputs(scores, tissue_methods)
        out["tissue_inputs"] = mods
        rows = tissue_findings(scores, mods)
        f = tables.get("findings")
        if len(rows):
            out["findings"] = (rows if f is None or not len(f) else
                               pd.concat([f, rows], ignore_index=True)[FINDINGS_COLUMNS])
    return out


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing None/str (e.g. best_baseline) are written as str/None."""
    df = df.copy()
    df.attrs = {}
    for c in df.columns:
        if df[c].dtype == object:
            num = pd.to_numeric(df[c], errors="coerce")
            if num.notna().sum() == df[c].notna().sum() and df[c].notna().any() and not \
                    df[c].map(lambda v: isinstance(v, str)).any():
                df[c] = num.astype(np.float64)  # numbers held as objects stay numbers
                continue
            df[c] = df[c].map(lambda v: v if v is None or isinstance(v, str)
                              else (None if isinstance(v, float) and np.isnan(v) else str(v)))
    return df


#: public names of the helpers every run (screen or tissue) writes its tables with
empty_table = _empty
parquet_safe = _parquet_safe
