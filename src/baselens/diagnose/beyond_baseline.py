"""Signal beyond the best baseline.

A learned representation is only interesting where it does better than the simplest
explanation of the data. For every task, batch level and metric this module finds the
strongest *baseline* (pixel statistics, cell count, untrained networks, ...) and measures
each model (and each reference, such as the synthetic ground truth) against it.

Conventions
-----------
* Inputs follow the results contract in ``docs/architecture.md`` (``scores.parquet`` and
  ``per_perturbation.parquet``).
* A *method* is identified by ``(method, layer)``; two layers of one network are compared
  separately.
* **Every metric is higher-is-better unless named in ``lower_is_better``.** All metrics of
  the contract (mAP, fraction retrieved, recall) are higher-is-better; pass e.g.
  ``lower_is_better={"p_value"}`` for a per-perturbation p-value.
* NaN values are ignored when averaging; a method whose values are all NaN has a NaN mean
  and can never be the best baseline.

Notation used in the docstrings: for one ``(task, batch_level, metric)`` let ``v_{m,r}`` be
the value of method ``m`` in run ``r`` (a ``(fold, seed)`` pair) and ``B`` the set of
baselines.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "GROUP_KEYS",
    "add_paired_tests",
    "aggregate_scores",
    "best_baselines",
    "beyond_best_baseline",
    "per_perturbation_differential",
    "wilcoxon_signed_rank",
]

#: Keys that define one comparison: a method is compared with the baselines of its group.
GROUP_KEYS = ["task", "batch_level", "metric"]
_METHOD_KEYS = ["method", "layer"]

_REQUIRED_SCORE_COLUMNS = {"method", "method_kind", "task", "metric", "value"}
_REQUIRED_PERPERT_COLUMNS = {"method", "method_kind", "task", "perturbation", "metric", "value"}


def _normalise(df: pd.DataFrame, required: set[str], what: str) -> pd.DataFrame:
    """Copy ``df`` with the optional contract columns filled in and key columns as str."""
    missing = required - set(df.columns)
    if missing:
        raise ValueError(f"{what} is missing required column(s): {sorted(missing)}")
    out = df.copy()
    defaults = {"layer": "default", "batch_level": "all", "fold": 0, "seed": 0}
    for col, default in defaults.items():
        if col not in out.columns:
            out[col] = default
        else:
            out[col] = out[col].where(out[col].notna(), default)
    for col in ["method", "method_kind", "layer", "task", "batch_level", "metric"]:
        out[col] = out[col].astype(str)
    if "perturbation" in out.columns:
        out["perturbation"] = out["perturbation"].astype(str)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype(float)
    return out


def _order(values: pd.Series) -> dict[str, int]:
    """Order of first appearance, with ``batch_level == "all"`` style values kept stable."""
    return {v: i for i, v in enumerate(pd.unique(values))}


def aggregate_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over folds and seeds, for every method (baselines included).

    For each ``(task, batch_level, metric, method, layer)``::

        value_mean = mean_r v_{m,r}            (NaN values skipped)
        value_std  = sqrt( sum_r (v_{m,r} - value_mean)^2 / (n_runs - 1) )
                     (sample standard deviation; NaN when n_runs < 2)
        n_runs     = number of runs r with a non-NaN value
        n          = largest ``n`` (items averaged over) among the runs, if present

    Rows keep the order in which tasks, batch levels, metrics and methods first appear.
    """
    df = _normalise(scores, _REQUIRED_SCORE_COLUMNS, "scores")
    keys = GROUP_KEYS + _METHOD_KEYS
    if df.empty:
        return pd.DataFrame(
            columns=[*keys, "method_kind", "value_mean", "value_std", "n_runs", "n"]
        )
    grouped = df.groupby(keys, sort=False, dropna=False)
    out = grouped["value"].agg(
        value_mean="mean", value_std=lambda s: s.std(ddof=1), n_runs="count"
    )
    out["method_kind"] = grouped["method_kind"].first()
    if "n" in df.columns:
        out["n"] = grouped["n"].max()
    else:
        out["n"] = np.nan
    out = out.reset_index()
    out["n_runs"] = out["n_runs"].astype(int)
    return out[[*keys, "method_kind", "value_mean", "value_std", "n_runs", "n"]]


def _pick_best(values: pd.DataFrame, value_col: str, lower: bool) -> pd.DataFrame:
    """Row of the best (non-NaN) value per group; ties go to the alphabetically first method."""
    valid = values[values[value_col].notna()]
    if valid.empty:
        return valid
    valid = valid.sort_values(_METHOD_KEYS, kind="stable")
    valid = valid.sort_values(value_col, ascending=lower, kind="stable")
    return valid


def best_baselines(
    scores: pd.DataFrame, *, lower_is_better: Iterable[str] = ()
) -> pd.DataFrame:
    """The strongest baseline of every ``(task, batch_level, metric)``.

    ``best = argmax_{b in B} mean_r v_{b,r}`` (argmin for metrics in ``lower_is_better``);
    ties are broken by the alphabetically first ``(method, layer)``. Groups without any
    baseline with a non-NaN value are absent from the result.

    Columns: ``task, batch_level, metric, best_baseline, best_baseline_layer,
    best_baseline_mean, best_baseline_std``.
    """
    lower = set(lower_is_better)
    agg = aggregate_scores(scores)
    cols = [*GROUP_KEYS, "best_baseline", "best_baseline_layer", "best_baseline_mean",
            "best_baseline_std"]
    base = agg[(agg["method_kind"] == "baseline") & agg["value_mean"].notna()]
    rows = []
    for key, grp in base.groupby(GROUP_KEYS, sort=False):
        metric = key[2]
        best = _pick_best(grp, "value_mean", metric in lower).iloc[0]
        rows.append([*key, best["method"], best["layer"], best["value_mean"], best["value_std"]])
    return pd.DataFrame(rows, columns=cols)


def beyond_best_baseline(
    scores: pd.DataFrame, *, lower_is_better: Iterable[str] = ()
) -> pd.DataFrame:
    """How far each non-baseline method gets beyond the best baseline of its comparison.

    For every ``(task, batch_level, metric)`` and every method/layer whose ``method_kind``
    is not ``"baseline"`` (models and references)::

        value_mean, value_std, n_runs   as in :func:`aggregate_scores`
        best baseline b* = argmax_{b in B} mean_r v_{b,r}   (argmin if lower is better)
        difference  = value_mean - best_baseline_mean
        improvement = difference            (higher-is-better metrics)
                    = -difference           (metrics in ``lower_is_better``)
        ratio       = value_mean / best_baseline_mean   (NaN when the baseline mean is 0;
                      only meaningful for non-negative metrics)
        beats_best_baseline = improvement > 0           (False when not computable)

    Example: baselines A = 0.3 and B = 0.5, model = 0.7 → best baseline B, difference 0.2,
    ratio 1.4.

    Parameters
    ----------
    scores
        A ``scores.parquet`` table (results contract). Missing ``layer``/``batch_level``/
        ``fold``/``seed`` columns default to ``"default"``/``"all"``/``0``/``0``.
    lower_is_better
        Metric names for which smaller values are better. Empty by default: every metric of
        the contract is higher-is-better.

    Returns
    -------
    One row per (task, batch_level, metric, method, layer) for non-baselines, columns
    ``task, batch_level, metric, method, method_kind, layer, value_mean, value_std, n_runs,
    best_baseline, best_baseline_layer, best_baseline_mean, best_baseline_std, difference,
    improvement, ratio, beats_best_baseline``. Groups without a baseline get NaN/None in the
    best-baseline columns. Rows are ordered by first appearance of task, batch level and
    metric, then by improvement (best first).
    """
    lower = set(lower_is_better)
    agg = aggregate_scores(scores)
    best = best_baselines(scores, lower_is_better=lower)
    cols = [
        *GROUP_KEYS, "method", "method_kind", "layer", "value_mean", "value_std", "n_runs",
        "best_baseline", "best_baseline_layer", "best_baseline_mean", "best_baseline_std",
        "difference", "improvement", "ratio", "beats_best_baseline",
    ]
    others = agg[agg["method_kind"] != "baseline"]
    if others.empty:
        return pd.DataFrame(columns=cols)
    out = others.merge(best, on=GROUP_KEYS, how="left")
    out["best_baseline"] = out["best_baseline"].astype(object).where(
        out["best_baseline"].notna(), None
    )
    out["best_baseline_layer"] = out["best_baseline_layer"].astype(object).where(
        out["best_baseline_layer"].notna(), None
    )
    out["difference"] = out["value_mean"] - out["best_baseline_mean"]
    sign = np.where(out["metric"].isin(lower), -1.0, 1.0)
    out["improvement"] = out["difference"] * sign
    denom = out["best_baseline_mean"].where(out["best_baseline_mean"] != 0)
    out["ratio"] = out["value_mean"] / denom
    out["beats_best_baseline"] = (out["improvement"] > 0).fillna(False).astype(bool)

    order = {k: _order(agg[k]) for k in GROUP_KEYS}
    for k in GROUP_KEYS:
        out[f"_o_{k}"] = out[k].map(order[k])
    out = out.sort_values(
        [f"_o_{k}" for k in GROUP_KEYS] + ["improvement", "method", "layer"],
        ascending=[True, True, True, False, True, True],
        na_position="last",
        kind="stable",
    )
    return out[cols].reset_index(drop=True)


def per_perturbation_differential(
    per_pert: pd.DataFrame,
    task: str,
    metric: str,
    *,
    batch_level: str | None = None,
    lower_is_better: bool = False,
) -> pd.DataFrame:
    """Per perturbation: each model's value minus the best baseline's value *for that perturbation*.

    For one task and metric, and every ``(batch_level, perturbation)`` ``p``::

        x_p  = max_{b in B} v_{b,p}      (min when ``lower_is_better``) — the best baseline
               is chosen per perturbation, so it may differ between perturbations
        difference_{m,p}  = v_{m,p} - x_p
        improvement_{m,p} = difference_{m,p}   (or -difference when lower is better)

    Large positive improvements name perturbations that only the learned representation
    retrieves (no baseline does). Duplicate rows for one method/perturbation (e.g. several
    folds) are averaged first.

    Parameters
    ----------
    per_pert
        A ``per_perturbation.parquet`` table (results contract).
    task, metric
        Which task and metric to compare (e.g. ``"replicate_retrieval"``,
        ``"average_precision"``).
    batch_level
        Restrict to one batch level; ``None`` keeps all (they are never mixed).
    lower_is_better
        Whether smaller values of ``metric`` are better (e.g. p-values).

    Returns
    -------
    Columns ``batch_level, perturbation, method, method_kind, layer, value, best_baseline,
    best_baseline_layer, best_baseline_value, difference, improvement``: one row per
    non-baseline method/layer and perturbation, sorted by method/layer and then by
    improvement (largest first, NaN last). Perturbations without any baseline value have
    NaN best-baseline columns.
    """
    cols = [
        "batch_level", "perturbation", "method", "method_kind", "layer", "value",
        "best_baseline", "best_baseline_layer", "best_baseline_value", "difference",
        "improvement",
    ]
    if per_pert is None or per_pert.empty:
        return pd.DataFrame(columns=cols)
    df = _normalise(per_pert, _REQUIRED_PERPERT_COLUMNS, "per_perturbation")
    df = df[(df["task"] == str(task)) & (df["metric"] == str(metric))]
    if batch_level is not None:
        df = df[df["batch_level"] == str(batch_level)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    keys = ["batch_level", "perturbation", "method", "layer"]
    grouped = df.groupby(keys, sort=False)
    avg = grouped["value"].mean().to_frame("value")
    avg["method_kind"] = grouped["method_kind"].first()
    avg = avg.reset_index()

    base = avg[(avg["method_kind"] == "baseline") & avg["value"].notna()]
    base = base.sort_values(["method", "layer"], kind="stable")
    base = base.sort_values("value", ascending=lower_is_better, kind="stable")
    best = base.drop_duplicates(["batch_level", "perturbation"], keep="first")
    best = best.rename(
        columns={
            "method": "best_baseline",
            "layer": "best_baseline_layer",
            "value": "best_baseline_value",
        }
    )[["batch_level", "perturbation", "best_baseline", "best_baseline_layer",
       "best_baseline_value"]]

    others = avg[avg["method_kind"] != "baseline"]
    if others.empty:
        return pd.DataFrame(columns=cols)
    out = others.merge(best, on=["batch_level", "perturbation"], how="left")
    for col in ["best_baseline", "best_baseline_layer"]:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["difference"] = out["value"] - out["best_baseline_value"]
    out["improvement"] = -out["difference"] if lower_is_better else out["difference"]
    morder = _order(out["method"] + "\x00" + out["layer"])
    out["_o"] = (out["method"] + "\x00" + out["layer"]).map(morder)
    out = out.sort_values(
        ["_o", "improvement", "perturbation"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    )
    return out[cols].reset_index(drop=True)


# ------------------------------------------------------------------------------ paired tests
def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``v`` with ties given their average rank (= scipy's rankdata)."""
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sv) != 0) + 1]
    ends = np.r_[starts[1:], len(v)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    r = np.empty(len(v))
    r[order] = np.repeat(avg, ends - starts)
    return r


def _exact_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided p of the signed-rank statistic by enumerating all 2^m sign flips of the
    non-zero differences (exact with ties and zeros; what scipy's permutation test
    computes for n ≤ 13), without scipy's generic resampling machinery."""
    d = d[d != 0]
    m = len(d)
    r = _average_ranks(np.abs(d))
    t_obs = float(r[d > 0].sum())
    signs = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1
    null = signs @ r
    tol = 1e-12 * max(abs(t_obs), 1.0)
    p = 2.0 * min(np.mean(null <= t_obs + tol), np.mean(null >= t_obs - tol))
    return float(min(p, 1.0))


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of subsets of ranks 1..n with each sum 0..n(n+1)/2 (exact null, no ties)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def wilcoxon_signed_rank(x, y) -> tuple[float, int]:
    """Two-sided paired Wilcoxon signed-rank test of ``x`` against ``y``.

    Pairs with a NaN on either side are dropped. Returns ``(p_value, n_pairs)``, equal to
    ``scipy.stats.wilcoxon(x, y).pvalue`` (defaults: ``zero_method="wilcox"`` — zero
    differences are discarded — two-sided, no continuity correction, ``method="auto"``):

    * no ties and no zeros, n ≤ 50: the exact null distribution of ``T+`` (the sum of
      the ranks of the positive differences), ``p = 2 min(P(T ≥ ⌊t⌋), P(T ≤ ⌈t⌉))``;
    * ties or zeros, n ≤ 13: the exact distribution over all sign flips of the non-zero
      differences (scipy's permutation test, which enumerates them);
    * otherwise the normal approximation ``z = (T+ − m(m+1)/4) / σ`` with
      ``σ² = (m(m+1)(2m+1) − Σ(t³ − t)/2) / 24`` (``m`` non-zero differences, ``t`` the
      sizes of tied groups), ``p = 2 Φ(−|z|)``.

    Computed here in numpy (scipy's generic machinery costs milliseconds per call, and a
    run tests thousands of rows). Conventions where scipy has no answer: no pair → NaN;
    every difference zero → p = 1 (the two methods agree on every pair).
    """
    from scipy.special import ndtr

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(len(a))
    if n == 0:
        return float("nan"), 0
    d = a - b
    if np.all(d == 0):
        return 1.0, n
    nz = d[d != 0]
    m = len(nz)
    r = _average_ranks(np.abs(nz))
    t_plus = float(r[nz > 0].sum())
    _, tie_sizes = np.unique(np.abs(nz), return_counts=True)
    ties_or_zeros = m < n or (tie_sizes > 1).any()
    if n <= 50 and not ties_or_zeros:
        counts = _signed_rank_counts(n)
        total = counts.sum()
        hi = counts[int(np.floor(t_plus)):].sum() / total
        lo = counts[: int(np.ceil(t_plus)) + 1].sum() / total
        return float(min(2.0 * min(hi, lo), 1.0)), n
    if n <= 13:
        return _exact_signed_rank_p(d), n
    mean = m * (m + 1) / 4.0
    var = (m * (m + 1) * (2 * m + 1) - np.sum(tie_sizes ** 3 - tie_sizes) / 2.0) / 24.0
    z = (t_plus - mean) / np.sqrt(var)
    return float(min(2.0 * min(ndtr(z), ndtr(-z)), 1.0)), n


def _pivot(df: pd.DataFrame, item: str) -> dict:
    """{(task, batch_level, metric): DataFrame(item × 'method\x00layer') of mean values}."""
    if df.empty:
        return {}
    df = df.assign(_m=df["method"] + "\x00" + df["layer"])
    g = df.groupby([*GROUP_KEYS, item, "_m"], sort=False)["value"].mean()
    out = {}
    for key, sub in g.groupby(level=[0, 1, 2], sort=False):
        out[key] = sub.droplevel([0, 1, 2]).unstack("_m")
    return out


def add_paired_tests(
    beyond: pd.DataFrame,
    scores: pd.DataFrame,
    per_perturbation: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add a paired Wilcoxon signed-rank test of each model against its best baseline.

    For every row of :func:`beyond_best_baseline` (one method/layer in one
    ``(task, batch_level, metric)`` with best baseline ``b*``):

    * ``paired_over = "perturbation"`` when ``per_perturbation`` holds that task, batch
      level and metric for both the method and ``b*``: the pairs are the per-perturbation
      values (mean over folds) of the perturbations both scored;
    * else ``paired_over = "fold"``: the pairs are the per-fold values of ``scores``
      (mean over seeds), matched by fold;
    * else ``paired_over = ""`` with ``wilcoxon_p = NaN`` and ``n_paired = 0``.

    ``wilcoxon_p`` is :func:`wilcoxon_signed_rank` (two-sided, so it is the same for
    higher- and lower-is-better metrics; read the direction from ``improvement``).
    ``n_paired`` is the number of pairs tested. A two-sided exact test over ``n`` pairs
    cannot go below ``2 / 2**n`` (0.0625 for 5 folds; 1 for a single fold).
    """
    out = beyond.copy()
    out["wilcoxon_p"] = np.nan
    out["n_paired"] = 0
    out["paired_over"] = ""
    if out.empty:
        out["n_paired"] = out["n_paired"].astype("int64")
        return out
    per = {}
    if per_perturbation is not None and len(per_perturbation):
        pp = _normalise(per_perturbation, _REQUIRED_PERPERT_COLUMNS, "per_perturbation")
        per = _pivot(pp, "perturbation")
    sc = _normalise(scores, _REQUIRED_SCORE_COLUMNS, "scores")
    sc["fold"] = sc["fold"].astype(str)
    folds = _pivot(sc, "fold")
    pvals, ns, over = [], [], []
    for row in out.itertuples(index=False):
        p, n, how = float("nan"), 0, ""
        if isinstance(row.best_baseline, str):
            group = (row.task, row.batch_level, row.metric)
            mk = f"{row.method}\x00{row.layer}"
            bk = f"{row.best_baseline}\x00{row.best_baseline_layer}"
            for table, name in ((per, "perturbation"), (folds, "fold")):
                t = table.get(group)
                if t is not None and mk in t.columns and bk in t.columns:
                    x, y = t[mk].to_numpy(), t[bk].to_numpy()
                    if (np.isfinite(x) & np.isfinite(y)).any():
                        p, n = wilcoxon_signed_rank(x, y)
                        how = name
                        break
        pvals.append(p)
        ns.append(n)
        over.append(how)
    out["wilcoxon_p"] = np.asarray(pvals, dtype=np.float64)
    out["n_paired"] = np.asarray(ns, dtype=np.int64)
    out["paired_over"] = over
    return out
