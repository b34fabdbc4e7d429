"""MorphoHELM's retrieval metrics (microsoft/MorphoHELM, ``benchmarks/replicate_analysis``
and ``benchmarks/enrichment``), per batch-effect level, as a named protocol.

Profiles: cosine similarity of L2-normalized well features (MorphoHELM normalizes in
float64 and stores float32; we keep float64). The negative control (``Metadata_ControlType
== "negcon"``, DMSO) is removed from every metric except NegCon mAP. Levels restrict the
candidates of each query exactly as in :mod:`baselens.evaluate.batch_levels` (MorphoHELM
runs NR, NSB, NSS, NSL, NSSL; NSP and SP are our additions).

* ``replicate_map`` — one random query well per compound with ≥ 2 wells (compounds sorted,
  ``numpy.random.RandomState(42).choice`` over the compound's rows, as MorphoHELM); its
  candidates are every other non-DMSO well the level allows; positives = same compound;
  queries without an eligible positive are skipped; mAP = mean AP over queries. AP is
  copairs' (ties positives first; MorphoHELM gives tied positives the same rank — differs
  only on exact ties).
* ``negcon_map`` — same queries; candidates = the query's replicates + DMSO wells (level
  restricted); queries without a replicate or without DMSO in the pool are skipped.
* ``knn_recall_at_1`` — every non-DMSO well is a query; hit when its nearest allowed
  candidate is the same compound; queries with no same-compound well in the pool skipped.
* enrichment (needs ``moa_col``) — compound profiles are the mean of their wells; for a
  query compound, candidates are the other compounds ranked by similarity (each compound
  once, by its best-matching profile); target = top ``max(1, int(0.01 · n))``, background
  = the rest; odds ratio of "shares an MoA" target vs background, +0.5 to every cell only
  when a cell is zero (Haldane–Anscombe); p-value from ``scipy.stats.permutation_test``
  (100 resamples, ``random_state=61``, alternative "greater"), as MorphoHELM. Queries
  with no MoA partner or too few candidates are skipped. ``enrichment_fraction_significant``
  = share of compounds with p < 0.05, ``enrichment_geometric_mean_or`` = exp(mean log OR).
  At NSP/NSB/NSS profiles are per (compound, plate/batch/source); each query profile of
  group ``k`` is ranked against profiles of the *other* groups (a candidate compound scores
  its maximum similarity), and a compound counts as significant by majority vote
  (significant in > 50 % of its groups); the geometric mean pools every (compound, group)
  OR. Enrichment is not formed at NSL/NSSL/SP (reported as skipped).

Signature and contract::

    scores, per_perturbation = morphohelm(profiles, features, *, batch_level="all",
        moa_col=None, metrics=("replicate_map", "negcon_map", "knn_recall_at_1",
        "enrichment"), seed=42, cutoff_fraction=0.01, n_resamples=100)

* ``scores``: ``metric, value, n, batch_level`` — metrics ``replicate_map``,
  ``negcon_map``, ``knn_recall_at_1``, ``enrichment_fraction_significant``,
  ``enrichment_geometric_mean_or`` (fractions in [0, 1], MorphoHELM prints percent);
  ``n`` = queries (compounds) counted.
* ``per_perturbation``: ``perturbation, metric, value, batch_level`` —
  ``replicate_ap``, ``negcon_ap``, ``enrichment_odds_ratio``, ``enrichment_p_value``
  (NR) / ``enrichment_significant`` (majority vote at grouped levels).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact, permutation_test

from baselens import metrics as _m
from baselens.evaluate.batch_levels import (
    allowed_candidates,
    apply_level,
    report_skipped,
    resolve_levels,
)

PERT = "Metadata_Perturbation"
_REF = "Metadata_reference_index"
_LEVEL_COLS = ["Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"]
_ENRICH_GROUP = {"NR": None, "NSP": "Metadata_Plate", "NSB": "Metadata_Batch",
                 "NSS": "Metadata_Source"}
ALL_METRICS = ("replicate_map", "negcon_map", "knn_recall_at_1", "enrichment")


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
    t = np.asarray(target_hits)
    b = np.asarray(background_hits)
    table = np.array([[np.sum(t == 1), np.sum(t == 0)], [np.sum(b == 1), np.sum(b == 0)]])
    if np.any(table == 0):
        table = table.astype(float) + 0.5
        return float(table[0, 0] * table[1, 1] / (table[0, 1] * table[1, 0]))
    return float(fisher_exact(table, alternative="greater")[0])


def enrichment_test(target_hits, background_hits, n_resamples: int = 100,
                    random_state: int = 61) -> tuple[float, float]:
    """Observed odds ratio and its permutation p-value (MorphoHELM's ``permutation_pvalue``)."""
    if len(target_hits) >= 2 and len(background_hits) >= 2:
        res = permutation_test((list(target_hits), list(background_hits)), statistic=odds_ratio,
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


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return x / norms


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


def _enrichment_block(q_names, q_sets, q_x, c_names, c_sets, c_x, cutoff_fraction,
                      n_resamples):
    """Per query profile: (compound, OR, p) following MorphoHELM's ``run_enrichment``."""
    sim = _l2(q_x) @ _l2(c_x).T
    out = []
    for i in range(len(q_names)):
        order = np.argsort(sim[i])[::-1]
        seen, matches = set(), []
        for j in order:
            c = c_names[j]
            if c == q_names[i] or c in seen:
                continue
            seen.add(c)
            matches.append(int(bool(q_sets[i] & c_sets[j])))
        n_unique = len(matches)
        cutoff = max(1, int(n_unique * cutoff_fraction))
        if n_unique < cutoff + 1 or sum(matches) == 0:
            continue
        or_, p = enrichment_test(matches[:cutoff], matches[cutoff:], n_resamples)
        out.append((q_names[i], or_, p))
    return out


def _geo(odds):
    logs = [np.log(o) for o in odds if o > 0]
    return float(np.exp(np.mean(logs))) if logs else float("nan")


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MorphoHELM's replicate mAP, NegCon mAP, kNN Recall@1 and MoA enrichment per level."""
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown MorphoHELM metric(s) {sorted(unknown)}; choose from {ALL_METRICS}")
    df = profiles.reset_index(drop=True)
    levels, skipped = resolve_levels(df, batch_level)
    negcon = (df["Metadata_ControlType"].astype(str) == "negcon").to_numpy()
    meta = df[[PERT] + [c for c in _LEVEL_COLS if c in df.columns]].astype(str)
    x = _l2(df[features].to_numpy(dtype=np.float64))
    trt = np.flatnonzero(~negcon)
    comps, q_local = choose_queries(meta[PERT].to_numpy()[trt], seed)
    q_global = trt[q_local]
    rows, per = [], []

    def add(metric, value, n, lv):
        rows.append({"metric": metric, "value": float(value), "n": int(n), "batch_level": lv})

    for lv in levels:
        if "replicate_map" in metrics and len(q_local):
            mt = meta.iloc[trt].reset_index(drop=True)
            rules = apply_level([PERT], [], [], [PERT], level=lv)
            try:
                ap = _m.average_precision(mt, x[trt], **rules).iloc[q_local]
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
            mt = meta.copy()
            mt[_REF] = np.where(negcon, np.arange(len(mt)), -1)
            rules = apply_level([PERT, _REF], [], [], [PERT, _REF], level=lv)
            try:
                ap = _m.average_precision(mt, x, **rules).iloc[q_global]
                ap = ap[(ap["n_pos_pairs"] > 0) & (ap["n_total_pairs"] > ap["n_pos_pairs"])]
            except ValueError:
                ap = pd.DataFrame(columns=[PERT, "average_precision"])
            if len(ap):
                add("negcon_map", ap["average_precision"].mean(), len(ap), lv)
                per.append(pd.DataFrame({"perturbation": ap[PERT].to_numpy(), "metric": "negcon_ap",
                                         "value": ap["average_precision"].to_numpy(), "batch_level": lv}))
            else:
                skipped[f"{lv}/negcon_map"] = "no query has a replicate and DMSO in its pool"
        if "knn_recall_at_1" in metrics and trt.size > 1:
            mt = meta.iloc[trt].reset_index(drop=True)
            comp = pd.factorize(mt[PERT])[0]
            xt = x[trt]
            hits = []
            step = max(1, (1 << 22) // len(mt))
            for a in range(0, len(mt), step):
                r = np.arange(a, min(len(mt), a + step))
                allowed = allowed_candidates(mt, lv, r)
                same = comp[r, None] == comp[None, :]
                elig = (allowed & same).any(axis=1)
                sim = np.where(allowed, xt[r] @ xt.T, -np.inf)
                top = np.argmax(sim, axis=1)
                hits.append((comp[top] == comp[r])[elig])
            hits = np.concatenate(hits) if hits else np.array([])
            if hits.size:
                add("knn_recall_at_1", hits.mean(), hits.size, lv)
            else:
                skipped[f"{lv}/knn_recall_at_1"] = "no query has a same-compound well in its pool"
        if "enrichment" in metrics:
            if moa_col is None:
                continue
            if lv not in _ENRICH_GROUP:
                skipped[f"{lv}/enrichment"] = "enrichment is formed at NR, NSP, NSB and NSS only"
                continue
            res = _enrichment_level(df[~negcon], features, moa_col, lv, cutoff_fraction,
                                    n_resamples, moa_sep)
            if res is None:
                skipped[f"{lv}/enrichment"] = "no compound has an MoA partner among its candidates"
                continue
            frac, geo, n, per_df = res
            add("enrichment_fraction_significant", frac, n, lv)
            add("enrichment_geometric_mean_or", geo, n, lv)
            per.append(per_df.assign(batch_level=lv))
    scores = pd.DataFrame(rows, columns=["metric", "value", "n", "batch_level"])
    per_df = (pd.concat(per, ignore_index=True) if per
              else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"]))
    report_skipped(scores, skipped, "morphohelm")
    return scores, per_df


def _enrichment_level(df, features, moa_col, lv, cutoff_fraction, n_resamples, sep):
    df = df[[len(s) > 0 for s in _label_sets(df[moa_col], sep)]]
    group = _ENRICH_GROUP[lv]
    keys = [PERT] if group is None else [PERT, group]
    prof = df.groupby(keys, sort=True)[features].mean().reset_index()
    moa = df.groupby(PERT, sort=True)[moa_col].first()
    prof["_sets"] = _label_sets(prof[PERT].map(moa), sep)
    names = prof[PERT].astype(str).to_numpy()
    xs = prof[features].to_numpy(dtype=np.float64)
    sets = prof["_sets"].tolist()
    if group is None:
        out = _enrichment_block(names, sets, xs, names, sets, xs, cutoff_fraction, n_resamples)
        if not out:
            return None
        odds = [o for _, o, _ in out]
        sig = [p < 0.05 for _, _, p in out]
        per = pd.concat([
            pd.DataFrame({"perturbation": [c for c, _, _ in out], "metric": "enrichment_odds_ratio",
                          "value": odds}),
            pd.DataFrame({"perturbation": [c for c, _, _ in out], "metric": "enrichment_p_value",
                          "value": [p for _, _, p in out]})], ignore_index=True)
        return float(np.mean(sig)), _geo(odds), len(out), per
    gvals = prof[group].astype(str).to_numpy()
    total, sig_count, odds_all = Counter(), Counter(), []
    odds_by = {}
    for g in sorted(set(gvals)):
        q = gvals == g
        c = ~q
        if not c.any():
            continue
        out = _enrichment_block(names[q], [s for s, k in zip(sets, q) if k], xs[q],
                                names[c], [s for s, k in zip(sets, c) if k], xs[c],
                                cutoff_fraction, n_resamples)
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
