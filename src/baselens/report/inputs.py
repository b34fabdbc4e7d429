"""Reading what the report is built from: the results tables and ``diagnostics/*.parquet``.

Every diagnostics table is optional; a missing or unreadable one is ``None`` and the section
that would show it says so. Where ``diagnostics/phenotype_classes.parquet`` is absent but
the run knows each perturbation's phenotype class (a synthetic screen's
``data/ground_truth/perturbations.parquet``), the per-class scores are computed here from
the per-perturbation average precision.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from baselens._tables import aggregate_scores, coerce_types

log = logging.getLogger(__name__)

#: The diagnostics tables the report reads (``DIR/diagnostics/<name>.parquet``).
DIAGNOSTICS = ("metrics", "beyond_baseline", "best_baseline", "best_layers", "agreement",
               "closest_baseline", "dimensionality", "residualized", "residualization_panels",
               "assay_confounds", "phenotype_classes", "per_perturbation_differential",
               "findings")

PHENOTYPE_COLUMN = "Metadata_PhenotypeClass"


def read_table(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # a damaged diagnostics table must not cost the whole report
        log.warning("could not read %s: %s", path, exc)
        return None


#: Columns of ``diagnostics/beyond_baseline.parquet`` (results contract, docs/architecture.md).
BEYOND_COLUMNS = [
    "task", "batch_level", "metric", "method", "method_kind", "layer", "value_mean",
    "value_std", "n_runs", "best_baseline", "best_baseline_layer", "best_baseline_mean",
    "best_baseline_std", "difference", "improvement", "ratio", "higher_is_better",
    "metric_kind", "paired_over", "paired_metric", "n_paired", "paired_difference", "ci_low",
    "ci_high", "p", "p_adjusted", "verdict", "wilcoxon_p", "beats_best_baseline",
]

#: Columns of ``diagnostics/findings.parquet`` (docstring of baselens.diagnose.findings).
FINDINGS_COLUMNS = ["kind", "severity", "task", "metric", "higher_is_better", "batch_level",
                    "levels", "method", "layer", "method_kind", "subject", "verdict", "value",
                    "baseline_value", "difference", "ci_low", "ci_high", "p_adjusted", "n",
                    "sentence"]

#: Columns that must be numbers (a table written with them as text is converted).
NUMERIC_COLUMNS = ("value", "spearman", "cka", "n_perturbations", "component", "n",
                   "wilcoxon_p", "n_paired", "n_actives", "n_inactives", "t_statistic",
                   "p_value", "cell_count_balanced_accuracy", "threshold", "p", "p_adjusted",
                   "ci_low", "ci_high", "difference", "paired_difference", "improvement",
                   "value_mean", "value_std", "best_baseline_mean", "best_baseline_std",
                   "ratio", "baseline_value", "best_baseline_value", "n_layers", "panel")


def coerce_numeric(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """Numeric contract columns as floats; ``predictable_by_cell_count`` and the
    ``metrics.parquet`` flags as bool."""
    return coerce_types(df, NUMERIC_COLUMNS, ("higher_is_better", "headline", "declared",
                                             "best_of_input"))


def read_diagnostics(diag_dir: Path, names: tuple[str, ...] = DIAGNOSTICS
                     ) -> dict[str, pd.DataFrame | None]:
    """``{name: diag_dir/<name>.parquet}`` for ``names`` (``None`` where absent or unreadable);
    :func:`baselens.report.html.render_report` coerces their types."""
    return {name: read_table(Path(diag_dir) / f"{name}.parquet") for name in names}


def find_phenotypes(run_dir: Path) -> pd.DataFrame | None:
    """``perturbation → phenotype_class`` of a synthetic screen inside the run folder."""
    for path in (run_dir / "data" / "ground_truth" / "perturbations.parquet",
                 run_dir / "ground_truth" / "perturbations.parquet"):
        t = read_table(path)
        if t is not None and PHENOTYPE_COLUMN in t.columns and "Metadata_Perturbation" in t:
            return phenotype_map(t)
    return None


def phenotype_map(t: pd.DataFrame) -> pd.DataFrame:
    out = t[["Metadata_Perturbation", PHENOTYPE_COLUMN]].rename(
        columns={"Metadata_Perturbation": "perturbation", PHENOTYPE_COLUMN: "phenotype_class"})
    out = out.astype(str)
    return out[out["phenotype_class"].str.len() > 0].drop_duplicates("perturbation")


def phenotype_classes_from_per_pert(per_pert: pd.DataFrame | None,
                                    phenotypes: pd.DataFrame | None) -> pd.DataFrame | None:
    """Mean per-perturbation mAP of replicate retrieval within each phenotype class.

    Same columns as ``diagnostics/phenotype_classes.parquet``: ``method, method_kind, layer,
    phenotype_class, batch_level, metric, value, n``.
    """
    if per_pert is None or per_pert.empty or phenotypes is None or phenotypes.empty:
        return None
    need = {"task", "metric", "perturbation", "value", "method"}
    if not need <= set(per_pert.columns):
        return None
    pp = per_pert[(per_pert["task"].astype(str) == "replicate_retrieval")
                  & (per_pert["metric"].astype(str) == "mean_average_precision")]
    if pp.empty:
        return None
    pp = pp.assign(perturbation=pp["perturbation"].astype(str),
                   layer=pp["layer"].astype(str) if "layer" in pp else "default",
                   batch_level=pp["batch_level"].astype(str) if "batch_level" in pp else "all")
    pp = pp.merge(phenotypes, on="perturbation", how="inner")
    if pp.empty:
        return None
    keys = ["method", "method_kind", "layer", "phenotype_class", "batch_level"]
    per = pp.groupby([*keys, "perturbation"], sort=False)["value"].mean().reset_index()
    g = per.groupby(keys, sort=False)["value"]
    out = g.mean().to_frame("value").assign(n=g.count()).reset_index()
    out["metric"] = "mean_average_precision"
    out["n"] = out["n"].astype(np.int64)
    return out[["method", "method_kind", "layer", "phenotype_class", "batch_level", "metric",
                "value", "n"]]


def normalise_keys(df: pd.DataFrame | None, cols=("method", "layer")) -> pd.DataFrame | None:
    """Key columns as plain strings (``layer`` defaulting to ``default``)."""
    if df is None:
        return None
    df = df.copy()
    for c in cols:
        if c in df.columns:
            df[c] = df[c].where(df[c].notna(), "default" if "layer" in c else "").astype(str)
    return df


# --------------------------------------------------------------------------- display frames
# Reshaping for figures and tables only: means over folds, the best baselines and best
# layers the diagnostics named. No verdict, threshold, best baseline, best layer or finding
# is derived here (those are diagnostics/findings.parquet, beyond_baseline.parquet,
# best_baseline.parquet, best_layers.parquet and per_perturbation_differential.parquet).
_KEYS = ["task", "batch_level", "metric", "method", "layer"]


def display_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample s.d., runs and largest ``n`` per (task, level, metric, method, layer),
    in order of first appearance (what the tables print): the same numbers the verdicts
    rest on (:func:`baselens._tables.aggregate_scores`)."""
    cols = [*_KEYS, "method_kind", "value_mean", "value_std", "n_runs", "n"]
    if scores is None or scores.empty:
        return pd.DataFrame(columns=cols)
    return aggregate_scores(scores)[cols]


def best_baseline_map(beyond: pd.DataFrame | None, best: pd.DataFrame | None
                      ) -> dict[tuple[str, str, str], tuple[str, str, float]]:
    """``(task, batch_level, metric) → (method, layer, mean)`` of the best baseline, as the
    diagnostics named it: ``beyond_baseline.parquet``'s where it names one (the baseline the
    verdicts were computed against), else ``best_baseline.parquet``'s (groups in which no
    model was compared). A group neither names has no best baseline in the report."""
    out: dict[tuple[str, str, str], tuple[str, str, float]] = {}
    keys = ("task", "batch_level", "metric", "best_baseline", "best_baseline_layer")
    for t in (best, beyond):  # beyond_baseline last: it wins
        if t is None or not len(t) or not set(keys) <= set(t.columns):
            continue
        t = t[t["best_baseline"].notna() & (t["best_baseline"].astype(str) != "")]
        t = normalise_keys(t, keys).drop_duplicates(["task", "batch_level", "metric"])
        mean = (pd.to_numeric(t["best_baseline_mean"], errors="coerce")
                if "best_baseline_mean" in t.columns else pd.Series(np.nan, index=t.index))
        for r, v in zip(t.itertuples(index=False), mean):
            out[(r.task, r.batch_level, r.metric)] = (r.best_baseline, r.best_baseline_layer,
                                                      float(v))
    return out


def best_layer_map(best: pd.DataFrame | None
                   ) -> dict[tuple[str, str, str, str], tuple[str, float]] | None:
    """``(task, batch_level, metric, method) → (best layer, its mean)`` as
    ``diagnostics/best_layers.parquet`` names it; ``None`` when the run folder lacks the
    table (the sections then say so instead of naming a layer)."""
    keys = ("task", "batch_level", "metric", "method", "best_layer")
    if best is None or not set(keys) <= set(best.columns):
        return None
    t = normalise_keys(best, keys)
    v = (pd.to_numeric(t["value"], errors="coerce") if "value" in t.columns
         else pd.Series(np.nan, index=t.index))
    return {(r.task, r.batch_level, r.metric, r.method): (r.best_layer, float(x))
            for r, x in zip(t.itertuples(index=False), v)}
