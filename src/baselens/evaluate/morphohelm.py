"""MorphoHELM's retrieval metrics (microsoft/MorphoHELM, ``benchmarks/replicate_analysis``
and ``benchmarks/enrichment``), per batch-effect level, as a named protocol.

MorphoHELM (Hayir, Crawford & Lu 2026, "MorphoHELM: a holistic evaluation of Cell
Painting representations") scores representations by replicate retrieval and MoA
enrichment under "stringency paradigms" (our batch-effect levels).

Profiles: cosine similarity of L2-normalized well features (MorphoHELM normalizes in
float64 and stores float32; we keep float64). The negative control (``Metadata_ControlType
== "negcon"``, DMSO) is removed from every metric except NegCon mAP. Levels restrict the
candidates of each query exactly as in :mod:`baselens.evaluate.batch_levels` (MorphoHELM
runs NR, NSB, NSS, NSL, NSSL; NSP and SP are our additions).

Retrieval metrics (equal to MorphoHELM's code at NR/NSB/NSS/NSL/NSSL, tested):

* ``replicate_map`` — one random query well per compound with ≥ 2 wells (compounds sorted,
  ``numpy.random.RandomState(42).choice`` over the compound's rows, as MorphoHELM); its
  candidates are every other non-DMSO well the level allows; positives = same compound;
  queries without an eligible positive are skipped; mAP = mean AP over queries,
  ``AP = mean_k k / rank_k`` over the positives' ranks.
* ``negcon_map`` — same queries; candidates = the query's replicates + DMSO wells (level
  restricted); queries without a replicate or without DMSO in the pool are skipped.
* ``knn_recall_at_1`` — every non-DMSO well is a query; hit when its nearest allowed
  candidate is the same compound; queries with no same-compound well in the pool skipped.

Two MorphoHELM bugs we deliberately do not copy:

1. **Tied positives get equal ranks** (``_ap_from_sorted`` in
   ``benchmarks/replicate_analysis/run_replicate_analysis_sweep.py`` ranks each positive by
   ``searchsorted(..., side="left") + 1``): two positives tied at the top both get rank 1, so
   precisions are 1/1 and 2/1 and AP can exceed 1 (here 1.5). We rank ties positives-first
   with distinct ranks (copairs' convention), so AP ≤ 1; results agree whenever no two
   positives are tied.
2. **A one-candidate pool crashes its kNN** (``run_knn`` calls ``np.argpartition(-row[pool],
   ek)`` with ``ek = min(k, len(pool)) = 1 = len(pool)``, an out-of-range ``kth``). We take
   the argmax of any non-empty pool.

MoA enrichment (needs ``moa_col``). For a query compound its candidate compounds are ranked
by cosine similarity (each compound once, by its best-matching profile); target = the top
``cutoff`` candidates, background = the rest; odds ratio of "shares an MoA" target vs
background, +0.5 to every cell only when a cell is zero (Haldane–Anscombe); p-value from
``scipy.stats.permutation_test`` (100 resamples, ``random_state=61``, alternative
"greater"; with fewer than 2 target or background items a seeded Monte-Carlo loop, as
MorphoHELM's ``permutation_pvalue``). Queries with no MoA partner or too few candidates are
skipped. ``enrichment_fraction_significant`` = share of compounds with p < 0.05,
``enrichment_geometric_mean_or`` = exp(mean log OR). At NSP/NSB/NSS each query profile of
group ``k`` is ranked against profiles of the *other* groups, and a compound counts as
significant by majority vote (significant in > 50 % of its query profiles); the geometric
mean pools every query profile's OR. Not formed at NSL/NSSL/SP (reported as skipped).
Also at NR:

* ``enrichment_fraction_significant_shuffled`` / ``enrichment_geometric_mean_or_shuffled``
  — the shuffled-label baseline (MorphoHELM's ``--randomize-labels``, ``run_moa_enrichment.py``):
  the compounds' MoA labels permuted with ``numpy.random.default_rng(42).shuffle`` (queries
  stay the compounds that have a partner under the true labels), the chance level of the
  two numbers above (``shuffled_baseline=True``);
* ``enrichment_fraction_significant:within_source`` / ``enrichment_geometric_mean_or:within_source``
  — MorphoHELM's "Within Source" mode (``run_cpg_moa_enrichment.py``): compound profiles per
  source, enrichment within each source with ≥ 3 compounds, pooled over sources (fraction of
  all processed (compound, source) queries that are significant); when ≥ 2 sources.

``protocol`` switches the four definition choices where baselens and MorphoHELM differ:

=====================  ======================================  =====================================
choice                 ``protocol="baselens"`` (default)       ``protocol="morphohelm"``
=====================  ======================================  =====================================
compound profiles      mean of the compound's wells            mean of (compound, source, batch)
                                                               means (``build_moa_profiles.py``)
NSB/NSS query          (compound, batch/source) mean           each (compound, source, batch) row;
                                                               groups with < 3 candidate compounds
                                                               skipped
MoA match              split on ``moa_sep`` (``|``): share one  exact string equality
cutoff                 ``max(1, int(0.01 · n))``, n = that     ``cutoff_rule="bbbc036"``:
                       query's candidates                      ``max(2, n // 100)``, needs
                                                               n ≥ cutoff + 2 (``run_moa_enrichment.py``);
                                                               ``"cpg"``: one cutoff
                                                               ``max(1, int((N − 1) · 0.01))`` from
                                                               the N compounds, every query and level
                                                               (``run_cpg_moa_enrichment.py``)
=====================  ======================================  =====================================

Why our defaults: (1) every well weighs the same — a mean of batch means lets one well in a
small batch count as much as ten in another; (2) one query per compound and source makes
each source count once in the majority vote instead of once per batch it ran in, and a
within-source mean is a less noisy query; (3) a compound annotated ``"A|B"`` does share a
mechanism with one annotated ``"A"`` (and ``"A|B"`` equals ``"B|A"``), exact strings call
them unrelated; (4) the target is the top 1 % of the query's own candidates with a floor of
one, so small screens still test; ``max(2, n // 100)`` makes the target 2 items (far more than
1 %) on any screen under 300 compounds.

Options reproducing MorphoHELM's data preparation (off by default):

* ``cell_count_qc`` — its well-level cell-count QC (``benchmarks/qc/cell_count_qc.py``):
  threshold = the 5 % quantile of ``Metadata_CellCount`` over a stratified sample of 5,000
  wells (strata source/batch/plate, ``DataFrame.sample(random_state=42 + i)``), wells with
  ``count >= threshold`` kept (:func:`cell_count_qc_mask`);
* ``cpg_selection`` — its cpg-compound well selection
  (``run_replicate_analysis_sweep.py``): DMSO, ``JCP2022_999999`` / ``JCP2022_UNKNOWN`` and
  compounds with > 200 wells out, at most 2 wells per (compound, source) drawn with
  ``RandomState(42)``, only compounds matchable at every level (NR, NSB, NSS, NSL, NSSL),
  then the draw repeated on the kept compounds (:func:`cpg_compound_selection`).

Rows they remove are reported in ``scores.attrs["dropped"]``.

Signature and contract::

    scores, per_perturbation = morphohelm(profiles, features, *, batch_level="all",
        moa_col=None, metrics=("replicate_map", "negcon_map", "knn_recall_at_1",
        "enrichment"), seed=42, cutoff_fraction=0.01, n_resamples=100, moa_sep="|",
        protocol="baselens", cutoff_rule=None, shuffled_baseline=True, within_source=True,
        cell_count_qc=False, cpg_selection=False)

* ``scores``: ``metric, value, n, batch_level`` (fractions in [0, 1], MorphoHELM prints
  percent); ``n`` = queries (compounds) counted.
* ``per_perturbation``: ``perturbation, metric, value, batch_level`` —
  ``replicate_ap``, ``negcon_ap``, ``enrichment_odds_ratio``, ``enrichment_p_value``
  (NR) / ``enrichment_significant`` (majority vote at grouped levels).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from scipy.stats import permutation_test

from baselens import metrics as _m
from baselens.evaluate.batch_levels import (
    allowed_candidates,
    apply_level,
    report_skipped,
    resolve_levels,
)
from baselens.evaluate.relationship_enrichment import _unit, odds_ratio_from_counts

PERT = "Metadata_Perturbation"
SOURCE, BATCH, PLATE, WELL = "Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well"
CELL_COUNT = "Metadata_CellCount"
_REF = "Metadata_reference_index"
_LEVEL_COLS = [PLATE, BATCH, SOURCE, WELL]
_ENRICH_GROUP = {"NR": None, "NSP": PLATE, "NSB": BATCH, "NSS": SOURCE}
ALL_METRICS = ("replicate_map", "negcon_map", "knn_recall_at_1", "enrichment")
PROTOCOLS = ("baselens", "morphohelm")
CUTOFF_RULES = ("baselens", "bbbc036", "cpg")

#: MorphoHELM's cpg-compound selection constants (run_replicate_analysis_sweep.py)
CPG_EXCLUDE = ("JCP2022_999999", "JCP2022_UNKNOWN")
CPG_MAX_WELLS = 200
CPG_MAX_PER_SOURCE = 2


def choose_queries(compounds: np.ndarray, seed: int = 42) -> tuple[list[str], np.ndarray]:
    """MorphoHELM's query wells: one per compound with ≥ 2 rows, ``RandomState(seed)``."""
    idx: dict[str, list[int]] = {}
    for i, c in enumerate(compounds):
        idx.setdefault(str(c), []).append(i)
    rng = np.random.RandomState(seed)
    comps = sorted(c for c, v in idx.items() if len(v) >= 2)
    return comps, np.array([rng.choice(idx[c]) for c in comps], dtype=np.int64)


def odds_ratio(target_hits, background_hits) -> float:
    """Odds ratio of hits in target vs background, +0.5 to all cells only if one is zero."""
    return float(_odds_ratio_of_hits(np.asarray(target_hits), np.asarray(background_hits)))


def _odds_ratio_of_hits(t: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """:func:`odds_ratio` along ``axis`` (every permutation of a ``permutation_test`` batch
    at once): the table ``[[t1, t0], [b1, b0]]`` of hits (1) and misses (0) scored by
    :func:`~baselens.evaluate.relationship_enrichment.odds_ratio_from_counts` — MorphoHELM's
    ``fisher_exact(table)[0]``, ``a d / (b c)``, without the exact test's p-value."""
    t1, t0 = np.sum(t == 1, axis=axis), np.sum(t == 0, axis=axis)
    b1, b0 = np.sum(b == 1, axis=axis), np.sum(b == 0, axis=axis)
    return odds_ratio_from_counts(t1, t1 + t0, t1 + b1, t1 + t0 + b1 + b0)


def enrichment_test(target_hits, background_hits, n_resamples: int = 100,
                    random_state: int = 61) -> tuple[float, float]:
    """Observed odds ratio and its permutation p-value (MorphoHELM's ``permutation_pvalue``)."""
    if len(target_hits) >= 2 and len(background_hits) >= 2:
        # the permutations scipy draws do not depend on ``vectorized``: the same p-value as
        # ``statistic=odds_ratio``, one call per batch instead of one per resample
        res = permutation_test((list(target_hits), list(background_hits)),
                               statistic=_odds_ratio_of_hits, vectorized=True,
                               n_resamples=n_resamples, alternative="greater",
                               random_state=random_state)
        return float(res.statistic), float(res.pvalue)
    observed = odds_ratio(target_hits, background_hits)
    combined = np.array(list(target_hits) + list(background_hits), dtype=np.int8)
    k = len(target_hits)
    rng = np.random.default_rng(random_state)
    exceed = 0
    for _ in range(n_resamples):
        perm = rng.permutation(combined)
        exceed += odds_ratio(perm[:k], perm[k:]) >= observed
    return observed, (exceed + 1) / (n_resamples + 1)


def enrichment_cutoff(n_unique: int, rule: str = "baselens", cutoff_fraction: float = 0.01,
                      fixed: int | None = None) -> tuple[int, int]:
    """``(cutoff, minimum number of candidates)`` of one query under a cutoff rule.

    ``"baselens"``: ``max(1, int(n · f))``, needs ``n ≥ cutoff + 1``; ``"bbbc036"``:
    ``max(2, n // 100)`` (``f = 0.01``; else ``max(2, int(n · f))``), needs ``n ≥ cutoff + 2``
    (MorphoHELM ``benchmarks/enrichment/moa/run_moa_enrichment.py``,
    ``run_moa_enrichment_for_model``); ``"cpg"``: the ``fixed`` cutoff
    ``max(1, int((N − 1) · f))`` of the whole screen (``run_cpg_moa_enrichment.py``, ``main``),
    needs ``n ≥ cutoff + 1``.
    """
    if rule == "baselens":
        c = max(1, int(n_unique * cutoff_fraction))
        return c, c + 1
    if rule == "bbbc036":
        c = max(2, n_unique // 100 if cutoff_fraction == 0.01 else int(n_unique * cutoff_fraction))
        return c, c + 2
    if rule == "cpg":
        if fixed is None:
            raise ValueError("cutoff rule 'cpg' needs the screen's fixed cutoff")
        return int(fixed), int(fixed) + 1
    raise ValueError(f"cutoff_rule must be one of {CUTOFF_RULES}, got {rule!r}")


def _label_sets(values, sep="|"):
    out = []
    for v in values:
        if isinstance(v, (list, tuple, set, np.ndarray)):
            out.append(frozenset(map(str, v)))
        elif v is None or (isinstance(v, float) and np.isnan(v)) or str(v) in ("", "nan"):
            out.append(frozenset())
        else:
            out.append(frozenset(s.strip() for s in str(v).split(sep) if s.strip()))
    return out


def _labels(values, sep: str, exact: bool) -> list:
    """Per-profile MoA labels: frozensets (split on ``sep``) or exact strings."""
    if not exact:
        return _label_sets(values, sep)
    return [str(v) for v in values]


def _match(a, b, exact: bool) -> bool:
    return a == b if exact else bool(a & b)


def _has_label(v) -> bool:
    return not (v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in ("", "nan"))


def _enrichment_block(q_names, q_labels, q_x, c_names, c_labels, c_x, *, cutoff_fraction,
                      n_resamples, exact=False, rule="baselens", fixed=None, queries=None):
    """Per query profile: (compound, OR, p), MorphoHELM's ``run_enrichment`` ranking.

    ``queries``: compounds allowed as queries (None: all)."""
    sim = _unit(q_x) @ _unit(c_x).T
    out = []
    for i in range(len(q_names)):
        if queries is not None and q_names[i] not in queries:
            continue
        order = np.argsort(sim[i])[::-1]
        seen, matches = set(), []
        for j in order:
            c = c_names[j]
            if c == q_names[i] or c in seen:
                continue
            seen.add(c)
            matches.append(int(_match(q_labels[i], c_labels[j], exact)))
        n_unique = len(matches)
        cutoff, need = enrichment_cutoff(n_unique, rule, cutoff_fraction, fixed)
        if n_unique < need or sum(matches) == 0:
            continue
        or_, p = enrichment_test(matches[:cutoff], matches[cutoff:], n_resamples)
        out.append((q_names[i], or_, p))
    return out


def _geo(odds):
    logs = [np.log(o) for o in odds if o > 0]
    return float(np.exp(np.mean(logs))) if logs else float("nan")


# --------------------------------------------------------------------------- data preparation
def stratified_sample(df: pd.DataFrame, n: int, seed: int, strata) -> pd.DataFrame:
    """MorphoHELM's ``_stratified_sample`` (``benchmarks/qc/cell_count_qc.py``): ``n`` rows
    allocated to the strata in proportion to their size (floors, then the largest
    remainders), each stratum sampled with ``DataFrame.sample(random_state=seed + i)``."""
    if n <= 0 or n >= len(df):
        return df.copy()
    strata = [c for c in strata if c in df.columns]
    if not strata:
        return df.sample(n=n, random_state=seed).copy()
    grouped = list(df.groupby(strata, dropna=False, sort=True))
    sizes = np.array([len(g) for _, g in grouped], dtype=np.int64)
    raw = sizes / sizes.sum() * n
    take = np.floor(raw).astype(np.int64)
    remaining = n - int(take.sum())
    if remaining > 0:
        for idx in np.argsort(-(raw - take)):
            if remaining == 0:
                break
            if take[idx] < sizes[idx]:
                take[idx] += 1
                remaining -= 1
    parts = [g.sample(n=int(take[i]), random_state=seed + i)
             for i, (_, g) in enumerate(grouped) if take[i]]
    return pd.concat(parts, ignore_index=True)


def cell_count_qc_mask(profiles: pd.DataFrame, *, cutoff: float = 0.05, sample_wells: int = 5000,
                       seed: int = 42, count_col: str = CELL_COUNT) -> tuple[np.ndarray, float]:
    """MorphoHELM's well-level cell-count QC: keep-mask over ``profiles`` and the threshold.

    Parameters
    ----------
    profiles : DataFrame
        Well profiles with ``Metadata_Plate``, ``Metadata_Well`` and ``count_col``
        (``Metadata_Source`` / ``Metadata_Batch`` stratify the sample when present).
    cutoff : float
        Lower-tail quantile (0.05: the bottom 5 % of wells).
    sample_wells : int
        Wells sampled (stratified) to estimate the quantile; ≤ 0 uses all.
    seed : int
        Seed of the sample.

    Returns
    -------
    keep : ndarray of bool
        ``count >= threshold`` per row.
    threshold : float
        ``Q_cutoff(count)`` of the sampled wells (pandas' linear interpolation).
    """
    if count_col not in profiles.columns:
        raise ValueError(f"cell_count_qc needs a {count_col} column (the well's cell count: run "
                         "cell_count, or give the profile table a count column)")
    if not 0 <= cutoff <= 1:
        raise ValueError(f"cell-count QC cutoff must lie in [0, 1], got {cutoff}")
    cols = [c for c in (PLATE, WELL, SOURCE, BATCH) if c in profiles.columns]
    wells = profiles[cols + [count_col]].drop_duplicates([PLATE, WELL])
    counts = pd.to_numeric(wells[count_col], errors="coerce")
    if counts.isna().any():
        raise ValueError(f"cell_count_qc: {int(counts.isna().sum())} well(s) have no {count_col}")
    sampled = stratified_sample(wells.assign(**{count_col: counts}), sample_wells, seed,
                                [SOURCE, BATCH, PLATE])
    threshold = float(sampled[count_col].quantile(cutoff))
    keep = pd.to_numeric(profiles[count_col], errors="coerce").to_numpy(dtype=np.float64) >= threshold
    return keep, threshold


def _subsample_per_source(df: pd.DataFrame, compounds: set, max_per_source: int,
                          seed: int) -> pd.DataFrame:
    """At most ``max_per_source`` rows per (compound, source), ``RandomState(seed)``, groups
    in sorted order (MorphoHELM ``subsample_cpg``); index = original positions."""
    df = df[df[PERT].isin(compounds)]
    rng = np.random.RandomState(seed)
    keep: list = []
    for _, g in df.groupby([PERT, SOURCE]):
        if len(g) <= max_per_source:
            keep.extend(g.index.tolist())
        else:
            keep.extend(rng.choice(g.index.values, max_per_source, replace=False).tolist())
    return df.loc[keep]


def _matchable_everywhere(g: pd.DataFrame) -> bool:
    """≥ 2 wells and, for some well, another in a different batch, source, well position,
    and source + well position (MorphoHELM ``_has_match_at_all_stringencies``)."""
    if len(g) < 2:
        return False
    b, s, w = (g[c].to_numpy() for c in (BATCH, SOURCE, WELL))
    rng = range(len(g))
    return (any((b != b[i]).any() for i in rng) and any((s != s[i]).any() for i in rng)
            and any((w != w[i]).any() for i in rng)
            and any(((s != s[i]) & (w != w[i])).any() for i in rng))


def cpg_compound_selection(profiles: pd.DataFrame, *, seed: int = 42,
                           exclude=CPG_EXCLUDE, max_wells: int = CPG_MAX_WELLS,
                           max_per_source: int = CPG_MAX_PER_SOURCE,
                           n_compounds: int | None = None) -> tuple[pd.DataFrame, dict]:
    """MorphoHELM's cpg-compound well selection (``run_replicate_analysis_sweep.py``).

    Treated wells (negcon rows set aside): ``exclude`` ids and compounds with more than
    ``max_wells`` wells removed; at most ``max_per_source`` wells per (compound, source)
    drawn with ``RandomState(seed)``; compounds kept when matchable at every level
    (NR, NSB, NSS, NSL, NSSL); ``n_compounds``: a ``RandomState(seed)`` sample of them
    (MorphoHELM's "sample10k"; None = "all_eligible"); then the per-source draw is made
    again, with a fresh ``RandomState(seed)``, on the kept compounds' wells. Negative
    controls are appended unchanged (its negative-control mAP keeps every DMSO well).

    Returns
    -------
    selected : DataFrame
        Kept treated wells in MorphoHELM's order (compound, source groups sorted), then the
        negative controls; index reset.
    counts : dict
        ``excluded`` (ids in ``exclude``), ``high_replicate`` (compounds over ``max_wells``),
        ``not_matchable`` (compounds), ``wells_in``, ``wells_kept`` (treated).
    """
    missing = [c for c in (PERT, SOURCE, BATCH, WELL) if c not in profiles.columns]
    if missing:
        raise ValueError(f"cpg_selection needs the columns {missing} (JUMP metadata)")
    df = profiles.reset_index(drop=True)
    neg = (df["Metadata_ControlType"].astype(str) == "negcon") if "Metadata_ControlType" in df \
        else pd.Series(False, index=df.index)
    trt = df[~neg]
    excluded = trt[PERT].astype(str).isin(set(exclude))
    t = trt[~excluded]
    counts = t[PERT].value_counts()
    big = set(counts[counts > max_wells].index)
    t = t[~t[PERT].isin(big)]
    sub = _subsample_per_source(t, set(t[PERT].unique()), max_per_source, seed)
    eligible = sorted(c for c, g in sub.groupby(PERT) if _matchable_everywhere(g))
    if n_compounds is not None and len(eligible) > n_compounds:
        eligible = sorted(np.random.RandomState(seed).choice(eligible, n_compounds, replace=False))
    chosen = _subsample_per_source(trt, set(eligible), max_per_source, seed)
    out = pd.concat([chosen, df[neg]], ignore_index=True)
    info = {"excluded": int(excluded.sum()), "high_replicate": len(big),
            "not_matchable": int(t[PERT].nunique() - len(eligible)),
            "wells_in": int(len(trt)), "wells_kept": int(len(chosen))}
    return out, info


def shuffle_labels(labels, seed: int = 42) -> list:
    """The compounds' labels permuted with ``numpy.random.default_rng(seed).shuffle``
    (MorphoHELM ``run_moa_enrichment.py --randomize-labels``, compounds in sorted order)."""
    vals = list(labels)
    np.random.default_rng(seed).shuffle(vals)
    return vals


# --------------------------------------------------------------------------- the task
def morphohelm(
    profiles: pd.DataFrame,
    features: list[str],
    *,
    batch_level="all",
    moa_col: str | None = None,
    metrics=ALL_METRICS,
    seed: int = 42,
    cutoff_fraction: float = 0.01,
    n_resamples: int = 100,
    moa_sep: str = "|",
    protocol: str = "baselens",
    cutoff_rule: str | None = None,
    shuffled_baseline: bool = True,
    within_source: bool = True,
    cell_count_qc: bool = False,
    cpg_selection: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MorphoHELM's replicate mAP, NegCon mAP, kNN Recall@1 and MoA enrichment per level.

    Parameters
    ----------
    profiles : DataFrame
        Well profiles: ``Metadata_Perturbation``, ``Metadata_ControlType`` and the level
        columns (plate, batch, source, well) + ``features``.
    features : list of str
        Feature columns.
    batch_level : str or list
        Levels to score (``"all"``: every level the data can form).
    moa_col : str, optional
        MoA column; enrichment is skipped without it.
    metrics : tuple
        Subset of :data:`ALL_METRICS`.
    seed : int
        Seed of the query-well draw, the shuffled labels, the QC sample and the cpg draw.
    cutoff_fraction, n_resamples, moa_sep
        Enrichment target fraction, permutation resamples, MoA separator (baselens).
    protocol : {"baselens", "morphohelm"}
        Our enrichment definitions or MorphoHELM's exact ones (module docstring table).
    cutoff_rule : {"baselens", "bbbc036", "cpg"}, optional
        Default ``"baselens"`` under protocol baselens, ``"bbbc036"`` under morphohelm.
    shuffled_baseline, within_source : bool
        Also score the shuffled-label baseline / the "Within Source" mode (NR).
    cell_count_qc, cpg_selection : bool
        MorphoHELM's cell-count QC / cpg-compound well selection before scoring.

    Returns
    -------
    scores, per_perturbation : DataFrame
        See the module docstring.
    """
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown MorphoHELM metric(s) {sorted(unknown)}; choose from {ALL_METRICS}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    rule = cutoff_rule or ("bbbc036" if protocol == "morphohelm" else "baselens")
    if rule not in CUTOFF_RULES:
        raise ValueError(f"cutoff_rule must be one of {CUTOFF_RULES}, got {rule!r}")
    df = profiles.reset_index(drop=True)
    dropped = []
    if cell_count_qc:
        keep, thr = cell_count_qc_mask(df, seed=seed)
        dropped.append({"what": "wells", "n_removed": int((~keep).sum()), "n_kept": int(keep.sum()),
                        "reason": f"MorphoHELM cell-count QC: {CELL_COUNT} below {thr:g}, the 5 % "
                                  "quantile of a stratified 5,000-well sample"})
        df = df[keep].reset_index(drop=True)
    if cpg_selection:
        n_before = len(df)
        df, info = cpg_compound_selection(df, seed=seed)
        dropped.append({"what": "wells", "n_removed": n_before - len(df), "n_kept": len(df),
                        "reason": f"MorphoHELM cpg-compound selection: {info['excluded']} "
                                  f"JCP2022_999999/UNKNOWN wells, {info['high_replicate']} compounds "
                                  f"with > {CPG_MAX_WELLS} wells, {info['not_matchable']} compounds "
                                  "not matchable at every level, ≤ 2 wells per compound and source"})
    levels, skipped = resolve_levels(df, batch_level)
    negcon = (df["Metadata_ControlType"].astype(str) == "negcon").to_numpy()
    meta = df[[PERT] + [c for c in _LEVEL_COLS if c in df.columns]].astype(str)
    x = _unit(df[features].to_numpy(dtype=np.float64))
    trt = np.flatnonzero(~negcon)
    comps, q_local = choose_queries(meta[PERT].to_numpy()[trt], seed)
    q_global = trt[q_local]
    rows, per = [], []

    def add(metric, value, n, lv):
        rows.append({"metric": metric, "value": float(value), "n": int(n), "batch_level": lv})

    enrich = _Enrichment(df[~negcon].reset_index(drop=True), features, moa_col, protocol, rule,
                         cutoff_fraction, n_resamples, moa_sep, seed) \
        if ("enrichment" in metrics and moa_col is not None) else None
    # the same at every level: the treated wells, and (NegCon mAP) every well with DMSO
    # wells given their own reference id
    meta_trt, x_trt = meta.iloc[trt].reset_index(drop=True), x[trt]
    meta_neg = meta.assign(**{_REF: np.where(negcon, np.arange(len(meta)), -1)})
    knn_hits = (_nearest_is_replicate(meta_trt, x_trt, levels)
                if "knn_recall_at_1" in metrics and trt.size > 1 else None)
    for lv in levels:
        if "replicate_map" in metrics and len(q_local):
            rules = apply_level([PERT], [], [], [PERT], level=lv)
            try:
                ap = _m.average_precision(meta_trt, x_trt, **rules).iloc[q_local]
                ap = ap[ap["n_pos_pairs"] > 0]
            except ValueError:
                ap = pd.DataFrame(columns=[PERT, "average_precision"])
            if len(ap):
                add("replicate_map", ap["average_precision"].mean(), len(ap), lv)
                per.append(pd.DataFrame({"perturbation": ap[PERT].to_numpy(), "metric": "replicate_ap",
                                         "value": ap["average_precision"].to_numpy(), "batch_level": lv}))
            else:
                skipped[f"{lv}/replicate_map"] = "no query has an eligible positive"
        if "negcon_map" in metrics and len(q_local) and negcon.sum():
            rules = apply_level([PERT, _REF], [], [], [PERT, _REF], level=lv)
            try:
                ap = _m.average_precision(meta_neg, x, **rules).iloc[q_global]
                ap = ap[(ap["n_pos_pairs"] > 0) & (ap["n_total_pairs"] > ap["n_pos_pairs"])]
            except ValueError:
                ap = pd.DataFrame(columns=[PERT, "average_precision"])
            if len(ap):
                add("negcon_map", ap["average_precision"].mean(), len(ap), lv)
                per.append(pd.DataFrame({"perturbation": ap[PERT].to_numpy(), "metric": "negcon_ap",
                                         "value": ap["average_precision"].to_numpy(), "batch_level": lv}))
            else:
                skipped[f"{lv}/negcon_map"] = "no query has a replicate and DMSO in its pool"
        if knn_hits is not None:
            hits = knn_hits[lv]
            if hits.size:
                add("knn_recall_at_1", hits.mean(), hits.size, lv)
            else:
                skipped[f"{lv}/knn_recall_at_1"] = "no query has a same-compound well in its pool"
        if enrich is None:
            continue
        if lv not in _ENRICH_GROUP:
            skipped[f"{lv}/enrichment"] = "enrichment is formed at NR, NSP, NSB and NSS only"
            continue
        res = enrich.level(lv)
        if res is None:
            skipped[f"{lv}/enrichment"] = "no compound has an MoA partner among its candidates"
            continue
        frac, geo, n, per_df = res
        add("enrichment_fraction_significant", frac, n, lv)
        add("enrichment_geometric_mean_or", geo, n, lv)
        per.append(per_df.assign(batch_level=lv))
        if lv != "NR":
            continue
        if shuffled_baseline:
            sh = enrich.level("NR", shuffled=True)
            if sh is not None:
                add("enrichment_fraction_significant_shuffled", sh[0], sh[2], lv)
                add("enrichment_geometric_mean_or_shuffled", sh[1], sh[2], lv)
        if within_source:
            ws = enrich.within_source()
            if ws is None:
                skipped["NR/enrichment:within_source"] = ("needs >= 2 sources with >= 3 "
                                                          "compounds and an MoA partner")
            else:
                add("enrichment_fraction_significant:within_source", ws[0], ws[2], lv)
                add("enrichment_geometric_mean_or:within_source", ws[1], ws[2], lv)
    scores = pd.DataFrame(rows, columns=["metric", "value", "n", "batch_level"])
    per_df = (pd.concat(per, ignore_index=True) if per
              else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"]))
    report_skipped(scores, skipped, "morphohelm")
    if dropped:
        scores.attrs["dropped"] = dropped
    return scores, per_df


def _nearest_is_replicate(meta: pd.DataFrame, x: np.ndarray, levels) -> dict[str, np.ndarray]:
    """kNN Recall@1 hits per level: for every well with a same-compound well among the
    candidates the level allows, whether its most similar allowed candidate is one.

    ``x`` holds L2-normalized rows; a block of queries' similarities is computed once and
    masked for every level.
    """
    comp = pd.factorize(meta[PERT])[0]
    n = len(meta)
    hits: dict[str, list] = {lv: [] for lv in levels}
    step = max(1, (1 << 22) // n)
    for a in range(0, n, step):
        r = np.arange(a, min(n, a + step))
        sim = x[r] @ x.T
        same = comp[r, None] == comp[None, :]
        for lv in levels:
            allowed = allowed_candidates(meta, lv, r)
            elig = (allowed & same).any(axis=1)
            top = np.argmax(np.where(allowed, sim, -np.inf), axis=1)
            hits[lv].append((comp[top] == comp[r])[elig])
    return {lv: np.concatenate(h) for lv, h in hits.items()}


class _Enrichment:
    """MoA enrichment of one representation's treated wells under a protocol."""

    def __init__(self, df, features, moa_col, protocol, rule, cutoff_fraction, n_resamples,
                 sep, seed):
        if moa_col not in df.columns:
            raise ValueError(f"morphohelm: moa_col {moa_col!r} is not a column of the profiles")
        df = df[[_has_label(v) and (protocol == "morphohelm" or bool(s))
                 for v, s in zip(df[moa_col], _label_sets(df[moa_col], sep))]].copy()
        df[PERT] = df[PERT].astype(str)
        self.df = df
        self.features, self.moa_col, self.sep, self.seed = features, moa_col, sep, seed
        self.exact = protocol == "morphohelm"
        self.protocol, self.rule = protocol, rule
        self.kw = dict(cutoff_fraction=cutoff_fraction, n_resamples=n_resamples, exact=self.exact,
                       rule=rule)
        self.moa = self.df.groupby(PERT, sort=True)[moa_col].first()
        # MorphoHELM's rows: (compound, source, batch) means (build_moa_profiles.py)
        cols = [c for c in (SOURCE, BATCH) if c in self.df.columns]
        self.csb = (self.df.groupby([PERT, *cols], sort=True)[features].mean().reset_index()
                    if self.exact else None)
        glob = self._global_profiles()
        self.fixed = max(1, int((len(glob) - 1) * cutoff_fraction))  # the "cpg" rule's cutoff

    def _global_profiles(self) -> pd.DataFrame:
        src = self.csb if self.exact else self.df
        return src.groupby(PERT, sort=True)[self.features].mean()

    def _labels_of(self, names, labels=None):
        lab = self.moa if labels is None else labels
        return _labels(pd.Index(names).map(lab), self.sep, self.exact)

    def _run(self, names, labels, xs, c_names=None, c_labels=None, c_x=None, queries=None):
        if c_names is None:
            c_names, c_labels, c_x = names, labels, xs
        return _enrichment_block(names, labels, xs, c_names, c_labels, c_x, fixed=self.fixed,
                                 queries=queries, **self.kw)

    def level(self, lv: str, shuffled: bool = False):
        group = _ENRICH_GROUP[lv]
        if group is None:
            prof = self._global_profiles()
            names = prof.index.astype(str).to_numpy()
            true = self._labels_of(names)
            labels = true
            queries = None
            if shuffled:
                labels = self._labels_of(names, pd.Series(shuffle_labels(self.moa.loc[names], self.seed),
                                                          index=names))
                queries = {n for i, n in enumerate(names)
                           if any(_match(true[i], true[j], self.exact) for j in range(len(names)) if j != i)}
            out = self._run(names, labels, prof.to_numpy(dtype=np.float64), queries=queries)
            if not out:
                return None
            odds = [o for _, o, _ in out]
            per = pd.concat([
                pd.DataFrame({"perturbation": [c for c, _, _ in out], "metric": "enrichment_odds_ratio",
                              "value": odds}),
                pd.DataFrame({"perturbation": [c for c, _, _ in out], "metric": "enrichment_p_value",
                              "value": [p for _, _, p in out]})], ignore_index=True)
            return float(np.mean([p < 0.05 for _, _, p in out])), _geo(odds), len(out), per
        if self.exact and group in (BATCH, SOURCE) and self.csb is not None and group in self.csb:
            prof = self.csb  # each (compound, source, batch) row is a query
        else:
            prof = self.df.groupby([PERT, group], sort=True)[self.features].mean().reset_index()
        names = prof[PERT].astype(str).to_numpy()
        labels = self._labels_of(names)
        xs = prof[self.features].to_numpy(dtype=np.float64)
        gvals = prof[group].astype(str).to_numpy()
        total, sig_count, odds_all, odds_by = Counter(), Counter(), [], {}
        for g in sorted(set(gvals)):
            q, c = gvals == g, gvals != g
            if not c.any() or (self.exact and len(set(names[c])) < 3):
                continue
            out = self._run(names[q], [s for s, k in zip(labels, q) if k], xs[q],
                            names[c], [s for s, k in zip(labels, c) if k], xs[c])
            for comp, o, p in out:
                total[comp] += 1
                sig_count[comp] += int(p < 0.05)
                odds_all.append(o)
                odds_by.setdefault(comp, []).append(o)
        if not total:
            return None
        enriched = {c: sig_count[c] / t > 0.5 for c, t in total.items()}
        comps = sorted(total)
        per = pd.concat([
            pd.DataFrame({"perturbation": comps, "metric": "enrichment_odds_ratio",
                          "value": [_geo(odds_by[c]) for c in comps]}),
            pd.DataFrame({"perturbation": comps, "metric": "enrichment_significant",
                          "value": [float(enriched[c]) for c in comps]})], ignore_index=True)
        return float(np.mean(list(enriched.values()))), _geo(odds_all), len(total), per

    def within_source(self):
        """MorphoHELM's "Within Source" mode: enrichment inside each source, pooled."""
        if SOURCE not in self.df.columns or self.df[SOURCE].nunique() < 2:
            return None
        src = self.csb if self.exact else self.df
        odds, sig = [], []
        for s in sorted(src[SOURCE].astype(str).unique()):
            prof = src[src[SOURCE].astype(str) == s].groupby(PERT, sort=True)[self.features].mean()
            if len(prof) < 3:
                continue
            names = prof.index.astype(str).to_numpy()
            out = self._run(names, self._labels_of(names), prof.to_numpy(dtype=np.float64))
            odds += [o for _, o, _ in out]
            sig += [p < 0.05 for _, _, p in out]
        if not odds:
            return None
        return float(np.mean(sig)), _geo(odds), len(odds)
