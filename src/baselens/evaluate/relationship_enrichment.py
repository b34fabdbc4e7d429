"""Gene-relationship enrichment for CRISPR/ORF screens (MorphoHELM's pathway enrichment).

Next to EFAAR's known-relationship recall (:mod:`baselens.evaluate.relationship_recall`),
which asks whether annotated pairs sit in the tails of the all-pairs similarity
distribution, MorphoHELM (Hayir, Crawford & Lu 2026; microsoft/MorphoHELM
``benchmarks/enrichment/crispr/run_crispr_enrichment.py``) asks, per gene: are its
annotated partners (CORUM, HuMAP, Reactome, SIGNOR, StringDB) over-represented among its
most similar genes?

For a query gene ``g`` with ``N`` candidate genes (every other gene), ranked by cosine
similarity of the gene profiles (mean of the gene's wells, controls excluded):

* target = the top ``k = max(1, int(f · (n_genes − 1)))`` candidates (``f`` =
  ``cutoff_fraction``, 1 %), background = the other ``N − k``;
* ``K`` = candidates annotated as partners of ``g``, ``a`` = partners in the target; genes
  with ``K = 0`` are not tested;
* odds ratio ``OR = a (N − k − K + a) / ((k − a)(K − a))``, +0.5 to every cell only when a
  cell is zero (Haldane–Anscombe);
* p-value: ``"hypergeometric"`` (default) — exact, ``P(X ≥ a)`` for
  ``X ~ Hypergeom(N, K, k)``, since the OR is monotone in ``a`` given the margins;
  ``"permutation"`` — MorphoHELM's default Monte Carlo: ``n_resamples`` draws of the target
  hits from that hypergeometric (``numpy.random.default_rng(61).hypergeometric``, one
  vector draw over the tested genes per resample), ``p = (1 + #{OR* ≥ OR}) / (1 + n)``.
  We default to the exact test: it is what the Monte Carlo estimates, without its
  ``1 / (n + 1)`` floor or seed dependence;
* ``fraction_significant`` = share of tested genes with ``p < 0.05``;
  ``geometric_mean_or`` = exp(mean log OR).

Batch-effect levels (every level the screen can form, as MorphoHELM's ``not_same_batch``
mode generalized): at a level with columns ``D`` the gene profiles are per (gene, values
of ``D``); each such profile is a query, its candidates are the profiles the level allows
(NSx: different on every column of ``D``; SP: same plate), a candidate gene scores its best
allowed profile, ``N`` = candidate genes, ``k`` = the global cutoff, queries with
``N < k + 1`` or ``K = 0`` are skipped, and a gene is significant by majority vote
(significant in > 50 % of its query profiles); the geometric mean pools every query
profile's OR. At ``NR`` the single gene profile is ranked against all genes and needs
``N ≥ k + 2`` (MorphoHELM's ``_enrichment_from_hits``).

Per annotation source: with a ``source`` column in ``pairs`` each source is scored on its
own (metric ``fraction_significant:CORUM`` …) next to ``"all"`` (every source pooled).

Signature and contract::

    scores, per_gene = relationship_enrichment(profiles, features, pairs, *,
        batch_level="all", cutoff_fraction=0.01, p_value="hypergeometric",
        n_resamples=100, random_state=61, alpha=0.05)

* ``scores``: ``metric, value, n, source, batch_level`` — ``fraction_significant`` and
  ``geometric_mean_or`` (both higher is better); ``n`` = genes tested;
* ``per_gene``: ``perturbation, metric, value, batch_level`` (source ``"all"``) —
  ``enrichment_odds_ratio`` (geometric mean over a gene's query profiles) and
  ``enrichment_significant`` (0/1; majority vote at grouped levels).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import hypergeom

from baselens.evaluate.batch_levels import level_rule, report_skipped, resolve_levels
from baselens.evaluate.relationship_recall import _treated as _treated_wells
from baselens.metrics.relationship_recall import filter_relationship_pairs

PERT = "Metadata_Perturbation"
P_VALUES = ("hypergeometric", "permutation")
_BLOCK = 1 << 22

__all__ = ["relationship_enrichment", "odds_ratio_from_counts", "enrichment_p_values"]


def odds_ratio_from_counts(a, k, total, n_candidates) -> np.ndarray:
    """Haldane–Anscombe odds ratio of ``a`` hits in a target of ``k`` among ``n_candidates``
    with ``total`` hits (vectorized; +0.5 to every cell only when one is zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(k, dtype=np.float64) - a
    c = np.asarray(total, dtype=np.float64) - a
    d = np.asarray(n_candidates, dtype=np.float64) - np.asarray(k, dtype=np.float64) - c
    fix = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (np.where(fix, v + 0.5, v) for v in (a, b, c, d))
    return (a * d) / (b * c)


def enrichment_p_values(a, k, total, n_candidates, *, method: str = "hypergeometric",
                        n_resamples: int = 100, random_state: int = 61) -> np.ndarray:
    """P-values of the target hits ``a`` (see the module docstring), one per query.

    Parameters
    ----------
    a, total, n_candidates : array_like of int
        Target hits, total hits and candidates per query (same length).
    k : int
        Target size (the cutoff), the same for every query.
    method : {"hypergeometric", "permutation"}
    n_resamples, random_state
        Monte-Carlo draws and seed (``"permutation"`` only).

    Returns
    -------
    ndarray of float
    """
    a = np.asarray(a, dtype=np.int64)
    total = np.asarray(total, dtype=np.int64)
    n = np.asarray(n_candidates, dtype=np.int64)
    if method == "hypergeometric":
        return hypergeom.sf(a - 1, n, total, k)
    if method != "permutation":
        raise ValueError(f"p_value must be one of {P_VALUES}, got {method!r}")
    observed = odds_ratio_from_counts(a, k, total, n)
    rng = np.random.default_rng(random_state)
    exceed = np.zeros(len(a), dtype=np.int64)
    for _ in range(n_resamples):
        perm = rng.hypergeometric(ngood=total, nbad=n - total, nsample=k)
        exceed += odds_ratio_from_counts(perm, k, total, n) >= observed
    return (exceed + 1) / (n_resamples + 1)


def _adjacency(pairs: pd.DataFrame, genes: list[str]) -> sp.csr_matrix:
    """Symmetric 0/1 partner matrix over ``genes`` (self pairs removed)."""
    index = pd.Index(genes)
    i = index.get_indexer(pairs["entity1"].astype(str))
    j = index.get_indexer(pairs["entity2"].astype(str))
    ok = (i >= 0) & (j >= 0) & (i != j)
    i, j = i[ok], j[ok]
    n = len(genes)
    m = sp.csr_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    m.data[:] = 1.0
    return m


def _treated(profiles: pd.DataFrame) -> pd.DataFrame:
    """The non-control wells (relationship recall's rule); every well without a
    ``Metadata_ControlType`` column."""
    return _treated_wells(profiles) if "Metadata_ControlType" in profiles else profiles


def _unit(x: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    nrm[nrm == 0] = 1.0
    return x / nrm


def _rank_nr(x: np.ndarray, k: int):
    """Top-``k`` other genes per gene (descending similarity), NR."""
    n = len(x)
    xn = _unit(x)
    top = np.empty((n, k), dtype=np.int64)
    step = max(1, _BLOCK // max(n, 1))
    for s in range(0, n, step):
        r = np.arange(s, min(n, s + step))
        sim = xn[r] @ xn.T
        sim[np.arange(len(r)), r] = -np.inf
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1, kind="stable")
        top[r] = np.take_along_axis(part, order, axis=1)
    return top


def _rank_grouped(prof: pd.DataFrame, features, genes: list[str], level: str, k: int):
    """Per (gene, group) query profile: the top-``k`` candidate genes, each scored by its best
    allowed profile (MorphoHELM ``_compute_not_same_batch_rankings``, generalized to every
    level). Queries are ordered by group, then gene; those with fewer than ``k + 1``
    candidate genes are dropped.

    Returns ``top`` (q, k), ``q_gene`` (q,), ``cand_key`` (q,) and ``masks`` (keys, n_genes):
    the candidate genes of query ``i`` are ``masks[cand_key[i]]``."""
    same, diff = level_rule(level)
    cols = [*same, *diff]
    n = len(genes)
    gidx = pd.Index(genes).get_indexer(prof[PERT].astype(str))
    xn = _unit(prof[features].to_numpy(dtype=np.float64))
    codes = np.column_stack([pd.factorize(prof[c].astype(str), sort=True)[0] for c in cols])
    keys, key_of = np.unique(codes, axis=0, return_inverse=True)
    key_of = key_of.ravel()
    tops, q_gene, cand_key, masks = [], [], [], []
    for kk, key in enumerate(keys):
        q_rows = np.flatnonzero(key_of == kk)
        q_rows = q_rows[np.argsort(gidx[q_rows], kind="stable")]
        allowed = np.ones(len(prof), dtype=bool)
        for ci, c in enumerate(cols):
            allowed &= (codes[:, ci] == key[ci]) if c in same else (codes[:, ci] != key[ci])
        a_rows = np.flatnonzero(allowed)
        if not len(a_rows):
            continue
        a_rows = a_rows[np.argsort(gidx[a_rows], kind="stable")]
        a_gene = gidx[a_rows]
        present, starts = np.unique(a_gene, return_index=True)
        mask = np.zeros(n, dtype=bool)
        mask[present] = True
        masks.append(mask)
        step = max(1, _BLOCK // max(len(a_rows), 1))
        for s in range(0, len(q_rows), step):
            r = q_rows[s:s + step]
            sim = xn[r] @ xn[a_rows].T
            best = np.full((len(r), n), -np.inf)
            best[:, present] = np.maximum.reduceat(sim, starts, axis=1)
            best[np.arange(len(r)), gidx[r]] = -np.inf
            n_cand = np.isfinite(best).sum(axis=1)
            ok = n_cand >= k + 1
            if not ok.any():
                continue
            b = best[ok]
            part = np.argpartition(-b, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(b, part, axis=1), axis=1, kind="stable")
            tops.append(np.take_along_axis(part, order, axis=1))
            q_gene.append(gidx[r][ok])
            cand_key.append(np.full(int(ok.sum()), len(masks) - 1))
    if not tops:
        return (np.empty((0, k), dtype=np.int64), np.array([], dtype=np.int64),
                np.array([], dtype=np.int64), np.zeros((0, n), dtype=bool))
    return np.vstack(tops), np.concatenate(q_gene), np.concatenate(cand_key), np.vstack(masks)


def _hits(adj: sp.csr_matrix, q_gene: np.ndarray, top: np.ndarray, cand_key=None, masks=None):
    """Target hits ``a`` and candidate hits ``K`` per query (row blocks); candidates are all
    other genes (NR) or ``masks[cand_key]``. The query gene is never its own partner."""
    n = adj.shape[1]
    a = np.zeros(len(q_gene), dtype=np.int64)
    total = np.zeros(len(q_gene), dtype=np.int64)
    step = max(1, _BLOCK // max(n, 1))
    for s in range(0, len(q_gene), step):
        r = np.arange(s, min(len(q_gene), s + step))
        dense = adj[q_gene[r]].toarray() > 0
        a[r] = np.take_along_axis(dense, top[r], axis=1).sum(axis=1)
        total[r] = (dense if cand_key is None else dense & masks[cand_key[r]]).sum(axis=1)
    return a, total


def relationship_enrichment(
    profiles: pd.DataFrame,
    features: list[str],
    pairs: pd.DataFrame,
    *,
    batch_level="all",
    cutoff_fraction: float = 0.01,
    p_value: str = "hypergeometric",
    n_resamples: int = 100,
    random_state: int = 61,
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-gene enrichment of annotated partners among its most similar genes.

    Parameters
    ----------
    profiles : DataFrame
        Well profiles: ``Metadata_Perturbation`` (the gene), ``Metadata_ControlType``
        (controls are left out), level columns, ``features``.
    features : list of str
        Feature columns.
    pairs : DataFrame
        Annotated gene pairs ``entity1, entity2`` (optional ``source``), either direction.
    batch_level : str or list
        Levels to score (``"all"``: every level the screen can form).
    cutoff_fraction : float
        Target size as a fraction of the other genes (MorphoHELM: 0.01).
    p_value : {"hypergeometric", "permutation"}
        Exact hypergeometric test (default) or MorphoHELM's Monte Carlo.
    n_resamples, random_state : int
        Monte-Carlo draws and seed (``p_value="permutation"``).
    alpha : float
        Significance level.

    Returns
    -------
    scores, per_gene : DataFrame
        See the module docstring.
    """
    if p_value not in P_VALUES:
        raise ValueError(f"p_value must be one of {P_VALUES}, got {p_value!r}")
    if not 0 < cutoff_fraction < 1:
        raise ValueError(f"cutoff_fraction must lie in (0, 1), got {cutoff_fraction}")
    treated = _treated(profiles).reset_index(drop=True)
    treated = treated.assign(**{PERT: treated[PERT].astype(str)})
    levels, skipped = resolve_levels(treated, batch_level)
    genes = sorted(treated[PERT].unique())
    k = max(1, int((len(genes) - 1) * cutoff_fraction))
    filter_relationship_pairs(pairs)  # validates the columns (errors name them)
    rels = pairs
    sources = ["all"] + (sorted(rels["source"].astype(str).unique()) if "source" in rels else [])
    adjs = {s: _adjacency(rels if s == "all" else rels[rels["source"].astype(str) == s], genes)
            for s in sources}
    rows, pers = [], []
    for lv in levels:
        if lv == "NR":
            if len(genes) - 1 < k + 2:
                skipped[lv] = f"{len(genes)} genes: too few for a top-{k} target"
                continue
            prof = treated.groupby(PERT, sort=True)[features].mean()
            top = _rank_nr(prof.to_numpy(dtype=np.float64), k)
            q_gene = np.arange(len(genes))
            cand_key = masks = None
            n_cand = np.full(len(genes), len(genes) - 1)
        else:
            same, diff = level_rule(lv)
            prof = treated.groupby([PERT, *same, *diff], sort=True)[features].mean().reset_index()
            top, q_gene, cand_key, masks = _rank_grouped(prof, features, genes, lv, k)
            if not len(q_gene):
                skipped[lv] = "no gene profile has enough candidate genes the level allows"
                continue
            own = masks[cand_key, q_gene]  # the query gene among the key's genes: not a candidate
            n_cand = masks.sum(axis=1)[cand_key] - own
        for src, adj in adjs.items():
            a, total = _hits(adj, q_gene, top, cand_key, masks)
            ok = total > 0
            if not ok.any():
                rows += [{"metric": m, "value": np.nan, "n": 0, "source": src, "batch_level": lv}
                         for m in ("fraction_significant", "geometric_mean_or")]
                continue
            a_, t_, n_ = a[ok].astype(np.int64), total[ok], n_cand[ok]
            odds = odds_ratio_from_counts(a_, k, t_, n_)
            p = enrichment_p_values(a_, k, t_, n_, method=p_value, n_resamples=n_resamples,
                                    random_state=random_state)
            g = q_gene[ok]
            sig_by, odds_by = defaultdict(list), defaultdict(list)
            for gi, s_, o in zip(g, p < alpha, odds):
                sig_by[gi].append(bool(s_))
                odds_by[gi].append(o)
            significant = {gi: np.mean(v) > 0.5 if lv != "NR" else v[0] for gi, v in sig_by.items()}
            geo = float(np.exp(np.mean(np.log(np.maximum(odds, 1e-300)))))
            rows.append({"metric": "fraction_significant", "value": float(np.mean(list(significant.values()))),
                         "n": len(significant), "source": src, "batch_level": lv})
            rows.append({"metric": "geometric_mean_or", "value": geo, "n": len(significant),
                         "source": src, "batch_level": lv})
            if src == "all":
                names = [genes[gi] for gi in significant]
                pers.append(pd.DataFrame({
                    "perturbation": names * 2,
                    "metric": ["enrichment_odds_ratio"] * len(names) + ["enrichment_significant"] * len(names),
                    "value": [float(np.exp(np.mean(np.log(np.maximum(odds_by[gi], 1e-300)))))
                              for gi in significant] + [float(v) for v in significant.values()],
                    "batch_level": lv}))
    scores = pd.DataFrame(rows, columns=["metric", "value", "n", "source", "batch_level"])
    per = (pd.concat(pers, ignore_index=True) if pers
           else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"]))
    scores.attrs["cutoff"] = k
    report_skipped(scores, skipped, "relationship_enrichment")
    return scores, per
