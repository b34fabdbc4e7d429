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
* **Directions and kinds come from the task registry** (:mod:`baselens.evaluate.registry`):
  only ``score`` metrics are compared; ``lower_is_better`` names extra lower-is-better
  metrics of tasks the registry does not know.
* **"Beats" is a significant, sized difference** (:func:`beyond_best_baseline`): a paired
  Wilcoxon test over perturbations or held-out items, Benjamini–Hochberg across the run, and
  a bootstrap CI of the mean paired difference that excludes 0.
* NaN values are ignored when averaging; a method whose values are all NaN has a NaN mean
  and can never be the best baseline.

Notation used in the docstrings: for one ``(task, batch_level, metric)`` let ``v_{m,r}`` be
the value of method ``m`` in run ``r`` (a ``(fold, seed)`` pair) and ``B`` the set of
baselines.
"""

from __future__ import annotations

from collections.abc import Iterable

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger("baselens")

__all__ = [
    "BEYOND_COLUMNS",
    "GROUP_KEYS",
    "VERDICTS",
    "benjamini_hochberg",
    "bootstrap_mean_ci",
    "add_paired_tests",
    "aggregate_scores",
    "best_baselines",
    "beyond_best_baseline",
    "per_perturbation_differential",
    "wilcoxon_signed_rank",
]

from baselens._tables import (  # noqa: F401  (re-exported: the results-contract helpers)
    _METHOD_KEYS,
    _REQUIRED_PERPERT_COLUMNS,
    _REQUIRED_SCORE_COLUMNS,
    GROUP_KEYS,
    _normalise,
    _order,
    aggregate_scores,
    per_perturbation_differential,
)


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

    ``best = argmax_{b in B} mean_r v_{b,r}`` (argmin for metrics in ``lower_is_better``,
    given as metric names or ``(task, metric)`` pairs);
    ties are broken by the alphabetically first ``(method, layer)``. Groups without any
    baseline with a non-NaN value are absent from the result.

    Columns: ``task, batch_level, metric, best_baseline, best_baseline_layer,
    best_baseline_mean, best_baseline_std``.
    """
    return _best_of(aggregate_scores(scores), set(lower_is_better))


def _best_of(agg: pd.DataFrame, lower: set) -> pd.DataFrame:
    """:func:`best_baselines` of already aggregated scores (:func:`aggregate_scores`)."""
    cols = [*GROUP_KEYS, "best_baseline", "best_baseline_layer", "best_baseline_mean",
            "best_baseline_std"]
    base = agg[(agg["method_kind"] == "baseline") & agg["value_mean"].notna()]
    rows = []
    for key, grp in base.groupby(GROUP_KEYS, sort=False):
        is_lower = key[2] in lower or (key[0], key[2]) in lower
        best = _pick_best(grp, "value_mean", is_lower).iloc[0]
        rows.append([*key, best["method"], best["layer"], best["value_mean"], best["value_std"]])
    return pd.DataFrame(rows, columns=cols)


#: Columns of :func:`beyond_best_baseline`, in order.
BEYOND_COLUMNS = [
    *GROUP_KEYS, "method", "method_kind", "layer", "value_mean", "value_std", "n_runs",
    "best_baseline", "best_baseline_layer", "best_baseline_mean", "best_baseline_std",
    "difference", "improvement", "ratio", "higher_is_better", "metric_kind",
    "paired_over", "paired_metric", "n_paired", "paired_difference", "ci_low", "ci_high",
    "p", "p_adjusted", "verdict", "wilcoxon_p", "beats_best_baseline",
]

#: The values of ``verdict``.
VERDICTS = ("beats", "not distinguishable", "worse", "no baseline")


def _declarations(scores: pd.DataFrame, lower: set[str], task_alias) -> pd.DataFrame:
    """``task, metric → higher_is_better, metric_kind, paired_with, declared_task`` from the
    task registry (:func:`baselens.evaluate.registry.metrics_table`); metrics of tasks the
    registry does not know are scores, higher-is-better unless named in ``lower``."""
    from baselens.evaluate.registry import metrics_table

    decl = metrics_table(scores, task_alias)
    unknown = decl["declared_task"] == ""
    decl.loc[unknown, "higher_is_better"] = ~decl.loc[unknown, "metric"].isin(lower)
    # an explicit lower_is_better still wins for a declared metric (callers' override)
    decl.loc[decl["metric"].isin(lower), "higher_is_better"] = False
    return decl


def beyond_best_baseline(
    scores: pd.DataFrame,
    per_perturbation: pd.DataFrame | None = None,
    *,
    lower_is_better: Iterable[str] = (),
    task_alias: dict[str, str] | None = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each non-baseline method against the best baseline, with a significance-gated verdict.

    Only metrics the task registry (:mod:`baselens.evaluate.registry`) declares of kind
    ``score`` are compared: counts, chance levels, y-scrambled nulls and warning flags are
    never something a model "beats". For every ``(task, batch_level, metric)`` and every
    method/layer whose ``method_kind`` is not ``"baseline"`` (models, references, nulls)::

        value_mean, value_std, n_runs   as in :func:`aggregate_scores`
        best baseline b* = argmax_{b in B} mean_r v_{b,r}   (argmin if lower is better)
        difference  = value_mean - best_baseline_mean
        improvement = difference  (higher is better)  or  -difference  (lower is better)
        ratio       = value_mean / best_baseline_mean   (NaN when the baseline mean is 0)

    **Paired test.** The pairs are, in order of preference:

    * ``paired_over = "perturbation"``: the per-item values of ``per_perturbation`` named by
      the registry's pairing of the metric (e.g. replicate mAP ↔ per-perturbation mAP,
      kNN accuracy ↔ per-well ``correct``), mean over folds, for the items both methods
      scored (``paired_metric`` names the per-item metric);
    * ``paired_over = "fold"``: the per-fold values of ``scores`` (mean over seeds);
    * none (``n_paired = 0``, ``p`` NaN).

    With ``d_i = x_i − y_i`` (method minus best baseline, item ``i``)::

        paired_difference = mean_i d_i
        p          = two-sided Wilcoxon signed-rank p of d (:func:`wilcoxon_signed_rank`)
        p_adjusted = Benjamini–Hochberg (1995, J. R. Stat. Soc. B) over every row of this
                     table (all comparisons of the run) that can reach p < alpha at all;
                     rows with ≤ 5 pairs (smallest exact p 2/2⁵ = 0.0625) are left out of
                     the family (Tarone 1990, Biometrics) and get p_adjusted NaN
        ci_low, ci_high = 2.5 / 97.5 % percentiles of mean(d*) over ``n_boot`` bootstrap
                     resamples of the items (seeded: ``seed`` and the row)

    **Verdict** (``s`` = +1 when the paired metric is higher-is-better, else −1):

    * ``"beats"``: improvement > 0, p_adjusted < ``alpha``, and the CI excludes 0 on the
      better side (``s·ci`` entirely > 0);
    * ``"worse"``: improvement < 0, p_adjusted < ``alpha``, and the CI excludes 0 on the
      other side;
    * ``"not distinguishable"``: anything else (five folds alone never reach p < 0.05:
      the exact two-sided minimum is 2/2⁵ = 0.0625);
    * ``"no baseline"``: the group has no baseline with a value.

    ``beats_best_baseline`` (kept for compatibility) is ``verdict == "beats"``;
    ``wilcoxon_p`` equals ``p``.

    Parameters
    ----------
    scores
        A ``scores.parquet`` table (results contract). Missing ``layer``/``batch_level``/
        ``fold``/``seed`` columns default to ``"default"``/``"all"``/``0``/``0``.
    per_perturbation
        The run's ``per_perturbation.parquet`` (optional): per-item values to pair over.
    lower_is_better
        Extra metric names where smaller is better (the registry's declarations apply to
        known tasks; this names them for tasks it does not know).
    task_alias
        ``task`` value → registered task (tissue runs: the dataset task → ``gene_expression``).
    alpha
        Level of the Benjamini–Hochberg-adjusted test.
    n_boot
        Bootstrap resamples of the confidence interval.
    seed
        Seed of the bootstrap.

    Returns
    -------
    DataFrame
        Columns :data:`BEYOND_COLUMNS`, one row per (task, batch_level, metric, method,
        layer) of a non-baseline method on a ``score`` metric, ordered by first appearance
        of task, level and metric, then by improvement (best first). ``attrs["undeclared"]``
        lists ``task:metric`` pairs of known tasks the registry does not declare (not
        compared).
    """
    lower = set(lower_is_better)
    df = _normalise(scores, _REQUIRED_SCORE_COLUMNS, "scores")
    undeclared: list[str] = []
    if not df.empty:
        decl = _declarations(df, lower, task_alias)
        bad = decl[decl["metric_kind"] == "undeclared"]
        undeclared = [f"{t}:{m}" for t, m in zip(bad["task"], bad["metric"])]
        if undeclared:
            logger.warning("beyond_baseline: metric(s) not declared in the task registry, not "
                           "compared: %s", ", ".join(undeclared[:10]))
        keep = decl[decl["metric_kind"] == "score"]
        df = df.merge(keep[["task", "metric"]], on=["task", "metric"], how="inner")
        # directions per (task, metric): two tasks may use one metric name differently
        low = decl[~decl["higher_is_better"].astype(bool)]
        lower |= set(zip(low["task"], low["metric"]))
    else:
        decl = pd.DataFrame(columns=["task", "metric", "higher_is_better", "metric_kind",
                                     "paired_with", "declared_task"])
    agg = aggregate_scores(df)
    best = _best_of(agg, lower)
    others = agg[agg["method_kind"] != "baseline"]
    if others.empty:
        out = pd.DataFrame(columns=BEYOND_COLUMNS)
        out.attrs["undeclared"] = undeclared
        return out
    out = others.merge(best, on=GROUP_KEYS, how="left")
    for col in ("best_baseline", "best_baseline_layer"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["difference"] = out["value_mean"] - out["best_baseline_mean"]
    out["higher_is_better"] = [not (m in lower or (t, m) in lower)
                               for t, m in zip(out["task"], out["metric"])]
    out["improvement"] = out["difference"] * np.where(out["higher_is_better"], 1.0, -1.0)
    denom = out["best_baseline_mean"].where(out["best_baseline_mean"] != 0)
    out["ratio"] = out["value_mean"] / denom
    out["metric_kind"] = "score"
    out = _paired_verdicts(out, df, per_perturbation, decl, task_alias, alpha=alpha,
                           n_boot=n_boot, seed=seed)

    order = {k: _order(agg[k]) for k in GROUP_KEYS}
    for k in GROUP_KEYS:
        out[f"_o_{k}"] = out[k].map(order[k])
    out = out.sort_values(
        [f"_o_{k}" for k in GROUP_KEYS] + ["improvement", "method", "layer"],
        ascending=[True, True, True, False, True, True],
        na_position="last",
        kind="stable",
    )
    out = out[BEYOND_COLUMNS].reset_index(drop=True)
    out.attrs["undeclared"] = undeclared
    return out


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg (1995, J. R. Stat. Soc. B) adjusted p-values; NaN stays NaN.

    ``p_adj(i) = min_{j ≥ i} min(1, m p_(j) / j)`` over the ``m`` finite p-values sorted
    ascending (equal to ``scipy.stats.false_discovery_control(p, method="bh")``).
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def bootstrap_mean_ci(d: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                      rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(d)``, resampling the items of ``d`` with replacement.

    Vectorised: ``n_boot`` resamples drawn at once (in chunks of at most ~4 M draws).
    Returns ``(nan, nan)`` for an empty ``d``.
    """
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n == 0:
        return float("nan"), float("nan")
    rng = rng if rng is not None else np.random.default_rng(0)
    chunk = max(1, 4_000_000 // n)
    means = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        e = min(n_boot, s + chunk)
        means[s:e] = d[rng.integers(0, n, size=(e - s, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def min_attainable_p(n_pairs: int) -> float:
    """Smallest two-sided p the exact signed-rank test can give with ``n_pairs`` pairs:
    ``2 / 2**n`` (1 for no pair). Used to leave untestable comparisons out of the
    Benjamini–Hochberg family (Tarone 1990, Biometrics)."""
    n = int(n_pairs)
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2.0 ** min(n, 60))


def _paired_verdicts(out: pd.DataFrame, scores: pd.DataFrame,
                     per_perturbation: pd.DataFrame | None, decl: pd.DataFrame,
                     task_alias, *, alpha: float, n_boot: int, seed: int) -> pd.DataFrame:
    """Add the paired test, BH adjustment, bootstrap CI and verdict (see
    :func:`beyond_best_baseline`)."""
    from baselens.evaluate.registry import item_metric_spec

    per: dict = {}
    if per_perturbation is not None and len(per_perturbation):
        pp = _normalise(per_perturbation, _REQUIRED_PERPERT_COLUMNS, "per_perturbation")
        per = _pivot(pp, "perturbation")
    sc = scores.copy()
    sc["fold"] = sc["fold"].astype(str)
    folds = _pivot(sc, "fold")
    pairing = {(t, m): (str(pw).split("|") if pw else [], dt)
               for t, m, pw, dt in zip(decl["task"], decl["metric"], decl["paired_with"],
                                       decl["declared_task"])}
    n = len(out)
    p = np.full(n, np.nan)
    n_paired = np.zeros(n, dtype=np.int64)
    over = [""] * n
    pmetric = [""] * n
    mean_d = np.full(n, np.nan)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    sign = np.where(out["higher_is_better"].to_numpy(dtype=bool), 1.0, -1.0)
    for i, row in enumerate(out.itertuples(index=False)):
        if not isinstance(row.best_baseline, str):
            continue
        mk = f"{row.method}\x00{row.layer}"
        bk = f"{row.best_baseline}\x00{row.best_baseline_layer}"
        cands, dtask = pairing.get((row.task, row.metric), ([], ""))
        tables = [(per.get((row.task, row.batch_level, c)), "perturbation", c) for c in cands]
        tables.append((folds.get((row.task, row.batch_level, row.metric)), "fold", row.metric))
        for t, how, name in tables:
            if t is None or mk not in t.columns or bk not in t.columns:
                continue
            x, y = t[mk].to_numpy(dtype=np.float64), t[bk].to_numpy(dtype=np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                continue
            d = x[ok] - y[ok]
            p[i], n_paired[i] = wilcoxon_signed_rank(x[ok], y[ok])
            over[i], pmetric[i], mean_d[i] = how, name, float(d.mean())
            if how == "perturbation" and dtask:
                try:
                    sign[i] = 1.0 if item_metric_spec(dtask, name).higher_is_better else -1.0
                except KeyError:
                    pass
            rng = np.random.default_rng([int(seed), i])
            lo[i], hi[i] = bootstrap_mean_ci(d, n_boot=n_boot, rng=rng)
            break
    # Tarone (1990, Biometrics) / Gilbert (2005, J. R. Stat. Soc. C): a comparison whose
    # smallest attainable p is not below alpha (≤ 5 pairs: 2/2^5 = 0.0625) can never be
    # significant and stays out of the BH family, so it does not dilute the others
    testable = np.isfinite(p) & (np.array([min_attainable_p(k) for k in n_paired]) < alpha)
    padj = benjamini_hochberg(np.where(testable, p, np.nan))
    imp = out["improvement"].to_numpy(dtype=np.float64)
    sig = np.nan_to_num(padj, nan=1.0) < alpha
    better_ci = np.where(sign > 0, lo > 0, hi < 0)
    worse_ci = np.where(sign > 0, hi < 0, lo > 0)
    has_base = out["best_baseline"].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    verdict = np.where(~has_base, "no baseline",
                       np.where(sig & (imp > 0) & better_ci, "beats",
                                np.where(sig & (imp < 0) & worse_ci, "worse",
                                         "not distinguishable")))
    out = out.copy()
    out["paired_over"] = over
    out["paired_metric"] = pmetric
    out["n_paired"] = n_paired
    out["paired_difference"] = mean_d
    out["ci_low"], out["ci_high"] = lo, hi
    out["p"], out["p_adjusted"] = p, padj
    out["verdict"] = verdict.astype(object)
    out["wilcoxon_p"] = p
    out["beats_best_baseline"] = out["verdict"] == "beats"
    return out


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
    **kwargs,
) -> pd.DataFrame:
    """Kept for callers of the earlier API: :func:`beyond_best_baseline` now pairs, tests
    and gives the verdict itself. Returns ``beyond_best_baseline(scores, per_perturbation,
    **kwargs)`` restricted to the rows of ``beyond`` (by task, level, metric, method,
    layer)."""
    full = beyond_best_baseline(scores, per_perturbation, **kwargs)
    if beyond is None or beyond.empty:
        return full.iloc[0:0]
    keys = [*GROUP_KEYS, "method", "layer"]
    want = beyond[keys].astype(str).drop_duplicates()
    res = full.merge(want, on=keys, how="inner")
    res.attrs = dict(full.attrs)
    return res
