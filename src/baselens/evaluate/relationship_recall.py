"""Known-relationship recall (EFAAR benchmark, RxRx3-core protocol
of “Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026), C.2).

Well profiles are averaged to one profile per perturbation (controls excluded); the
cosine similarity of every pair of perturbations forms the null; an annotated pair
(complex/pathway/MoA partners) is recalled when its similarity lies in an extreme tail of
that null. Metrics (chance level in brackets):

* ``recall_0.05_0.95`` — bottom 5 % or top 5 % (EFAAR's default, 0.10);
* ``recall_top_0.05`` — top 5 % only, arXiv 2603.13377's recall@5 % (0.05);
* ``recall_bottom_0.05`` — bottom 5 % only (0.05): anti-correlated partners, reported
  separately so the two tails are never confused.

Folds (``n_folds``, RxRx3-core style, arXiv 2603.13377 C.2: 3 folds, 10 images per gene): in each
fold every perturbation contributes a fixed number ``n_per_perturbation`` of wells (rows),
drawn without replacement and seeded; folds are disjoint while a perturbation has enough
rows (``n_folds × n_per_perturbation``), otherwise each fold draws independently from all
of its rows. Perturbations with fewer rows than ``n_per_perturbation`` use all of them
(counted in ``scores.attrs["n_perturbations_short"]``). ``n_folds=None``: one fold (0) with
every row — the original task.

Batch-effect levels (design). At ``NR`` the similarity of perturbations ``a, b`` is EFAAR's
``cos(mean_a, mean_b)`` (equal to efaar-benchmarking). At a restricted level with columns
``D`` (e.g. NSB: batch) profiles are formed per (perturbation, values of ``D``) — e.g. one
mean profile per (gene, batch) — L2-normalized, and the similarity of ``a, b`` is the mean
cosine over the pairs of their group profiles that the level allows (NSx: different on
every column of ``D``; SP: same plate):

    S_ab = mean{ cos(u_ag, u_bh) : (g, h) allowed }

so a gene pair is compared only across batches (sources, wells, …), never within. Pairs
with no allowed group pair have no similarity and leave both the null and the queries;
the null is ``{S_ab : a < b}`` over the remaining pairs, and tails are read as in EFAAR.
With a single group per perturbation and no restriction, ``S`` reduces to EFAAR's
similarity (tested). Memory: an ``n_perturbations²`` float64 matrix (3.2 GB at 20k),
group profiles are compared in row blocks.

Signature and contract::

    scores, per_perturbation = relationship_recall(profiles, features, pairs, *,
        thresholds=((0.05, 0.95),), upper_tail=0.05, lower_tail=0.05,
        n_folds=None, n_per_perturbation=10, seed=0, batch_level=None)

* ``scores``: ``metric, value, n, source, fold, batch_level`` — one row per recall key,
  annotation source (``"all"`` pools every source), fold and level; ``n`` = known pairs
  scored;
* ``per_perturbation``: ``perturbation, metric, value, batch_level`` —
  ``partner_recall_top`` (share of a perturbation's partners in the top tail), averaged
  over folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselens import metrics
from baselens.evaluate.batch_levels import level_rule, report_skipped, resolve_levels
from baselens.metrics.relationship_recall import filter_relationship_pairs

PERT = "Metadata_Perturbation"
_BLOCK = 1 << 22


def _treated(profiles: pd.DataFrame) -> pd.DataFrame:
    ct = profiles["Metadata_ControlType"]
    return profiles[ct.astype(str).isin(["", "nan", "None", "trt"]) | ct.isna()]


def perturbation_profiles(profiles: pd.DataFrame, features: list[str],
                          operation: str = "mean") -> pd.DataFrame:
    """One profile per non-control perturbation (mean or median of its wells)."""
    return getattr(_treated(profiles).groupby(PERT, sort=True)[features], operation)()


def sample_folds(profiles: pd.DataFrame, n_folds: int, n_per_perturbation: int,
                 seed: int = 0) -> tuple[list[np.ndarray], int]:
    """Row positions of each fold (RxRx3-core style) and the number of short perturbations."""
    rng = np.random.default_rng(seed)
    codes, _ = pd.factorize(profiles[PERT].astype(str), sort=True)
    folds = [[] for _ in range(n_folds)]
    short = 0
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    for g in range(codes.max() + 1):
        rows = order[bounds[g]:bounds[g + 1]]
        k = n_per_perturbation
        if rows.size < k:
            short += 1
            for f in range(n_folds):
                folds[f].append(rows)
        elif rows.size >= k * n_folds:
            perm = rng.permutation(rows)
            for f in range(n_folds):
                folds[f].append(perm[f * k:(f + 1) * k])
        else:
            for f in range(n_folds):
                folds[f].append(rng.choice(rows, size=k, replace=False))
    return [np.sort(np.concatenate(f)) for f in folds], short


def level_similarity(profiles: pd.DataFrame, features: list[str], level: str):
    """Perturbation names, similarity matrix ``S`` (NaN: no allowed pair) for a level.

    See the module docstring; ``profiles`` are treated wells.
    """
    same, diff = level_rule(level)
    cols = [*same, *diff]
    grp = profiles.groupby([PERT, *cols], sort=True)[features].mean()
    keys = grp.index.to_frame(index=False)
    u = grp.to_numpy(dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", u, u))
    norms[norms < 10 * np.finfo(float).eps] = 1.0
    u = u / norms[:, None]
    names_codes, names = pd.factorize(keys[PERT].astype(str), sort=True)
    n, r = len(names), len(u)
    ind = sp.csr_matrix((np.ones(r), (np.arange(r), names_codes)), shape=(r, n))
    codes = {c: pd.factorize(keys[c].astype(str))[0] for c in cols}
    s_sum = np.zeros((n, n))
    cnt = np.zeros((n, n))
    step = max(1, _BLOCK // max(r, 1))
    for a in range(0, r, step):
        rows = np.arange(a, min(r, a + step))
        allowed = np.ones((rows.size, r), dtype=bool)
        for c in same:
            allowed &= codes[c][rows, None] == codes[c][None, :]
        for c in diff:
            allowed &= codes[c][rows, None] != codes[c][None, :]
        g = (u[rows] @ u.T) * allowed
        # sum over the columns of each perturbation, then over the rows of each
        np.add.at(s_sum, names_codes[rows], np.asarray((ind.T @ g.T).T))
        np.add.at(cnt, names_codes[rows], np.asarray((ind.T @ allowed.T.astype(np.float64)).T))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(cnt > 0, s_sum / np.maximum(cnt, 1), np.nan)
    return [str(x) for x in names], s


def recall_from_similarity(s: np.ndarray, names: list[str], pairs: pd.DataFrame,
                           thresholds=((0.05, 0.95),), upper_tail: float | None = 0.05,
                           lower_tail: float | None = 0.05) -> dict:
    """EFAAR's tail recall computed from a (possibly partly undefined) similarity matrix."""
    n = len(names)
    iu, ju = np.triu_indices(n, k=1)
    vals = s[iu, ju]
    null = np.sort(vals[np.isfinite(vals)])
    index = pd.Index(names)
    rels = filter_relationship_pairs(pairs)
    rels = rels[rels["entity1"].isin(index) & rels["entity2"].isin(index)]
    qi, qj = index.get_indexer(rels["entity1"]), index.get_indexer(rels["entity2"])
    q = s[qi, qj]
    q = q[np.isfinite(q)]
    out = {"null_distribution_size": int(null.size), "query_distribution_size": int(q.size)}
    keys = []
    if null.size == 0 or q.size == 0:
        rl = rr = np.array([])
    else:
        rl = np.searchsorted(null, q, side="left") / null.size
        rr = np.searchsorted(null, q, side="right") / null.size
    for lo, hi in thresholds:
        lo, hi = float(min(lo, hi)), float(max(lo, hi))
        keys.append((f"recall_{lo}_{hi}", ((rr <= lo) | (rl >= hi))))
    if upper_tail is not None:
        keys.append((f"recall_top_{float(upper_tail)}", rl >= 1.0 - float(upper_tail)))
    if lower_tail is not None:
        keys.append((f"recall_bottom_{float(lower_tail)}", rr <= float(lower_tail)))
    for k, hit in keys:
        out[k] = float(hit.mean()) if hit.size else float("nan")
    return out


def _partner_recall_matrix(s: np.ndarray, names: list[str], pairs: pd.DataFrame,
                           upper_tail: float) -> pd.DataFrame:
    n = len(names)
    iu, ju = np.triu_indices(n, k=1)
    vals = s[iu, ju]
    null = np.sort(vals[np.isfinite(vals)])
    index = {nm: i for i, nm in enumerate(names)}
    both = pd.concat([pairs[["entity1", "entity2"]],
                      pairs[["entity2", "entity1"]].set_axis(["entity1", "entity2"], axis=1)])
    p = both[both["entity1"].isin(index) & both["entity2"].isin(index)
             & (both["entity1"] != both["entity2"])].drop_duplicates()
    i = p["entity1"].map(index).to_numpy(dtype=int)
    j = p["entity2"].map(index).to_numpy(dtype=int)
    q = s[i, j]
    ok = np.isfinite(q)
    if null.size == 0 or not ok.any():
        return pd.DataFrame(columns=["perturbation", "metric", "value"])
    hit = np.searchsorted(null, q[ok], side="left") / len(null) >= 1 - upper_tail
    df = pd.DataFrame({"perturbation": np.asarray(names)[i[ok]], "hit": hit})
    per = df.groupby("perturbation")["hit"].mean().rename("value").reset_index()
    per["metric"] = "partner_recall_top"
    return per[["perturbation", "metric", "value"]]


def relationship_recall(
    profiles: pd.DataFrame,
    features: list[str],
    pairs: pd.DataFrame,
    *,
    thresholds: list[tuple[float, float]] = ((0.05, 0.95),),
    upper_tail: float = 0.05,
    lower_tail: float | None = 0.05,
    n_folds: int | None = None,
    n_per_perturbation: int = 10,
    seed: int = 0,
    batch_level=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score recall of known relationships (see the module docstring for the contract)."""
    treated = _treated(profiles).reset_index(drop=True)
    levels, skipped = resolve_levels(treated, batch_level)
    if n_folds is None:
        fold_rows, short = [np.arange(len(treated))], 0
    else:
        fold_rows, short = sample_folds(treated, n_folds, n_per_perturbation, seed)
    sources = ["all"] + (sorted(pairs["source"].unique()) if "source" in pairs else [])
    rows, pers = [], []
    for lv in levels:
        for f, idx in enumerate(fold_rows):
            sub = treated.iloc[idx]
            if lv == "NR":
                pp = sub.groupby(PERT, sort=True)[features].mean()
                names = pp.index.astype(str).tolist()
                x = pp.to_numpy(dtype=np.float64)
                xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
                s = None
            else:
                names, s = level_similarity(sub, features, lv)
                if not np.isfinite(s[np.triu_indices(len(names), k=1)]).any():
                    skipped[lv] = "no perturbation pair has profiles the level allows comparing"
                    break
            for src in sources:
                spairs = pairs if src == "all" else pairs[pairs["source"] == src]
                if lv == "NR":  # EFAAR-exact path
                    thr = list(thresholds) + ([(lower_tail, 1.0)] if lower_tail is not None else [])
                    res = metrics.known_relationship_recall(x, names, spairs, thresholds=thr,
                                                            upper_tail=upper_tail)
                    if lower_tail is not None:
                        res[f"recall_bottom_{float(lower_tail)}"] = res.pop(
                            f"recall_{float(lower_tail)}_1.0")
                else:
                    res = recall_from_similarity(s, names, spairs, thresholds, upper_tail,
                                                 lower_tail)
                n = int(res.get("query_distribution_size", 0))
                for key, val in res.items():
                    if key.startswith("recall"):
                        rows.append({"metric": key, "value": float(val), "n": n, "source": src,
                                     "fold": f, "batch_level": lv})
            if s is None:
                s = xn @ xn.T
            pers.append(_partner_recall_matrix(s, names, pairs, upper_tail).assign(batch_level=lv))
    scores = pd.DataFrame(rows, columns=["metric", "value", "n", "source", "fold", "batch_level"])
    per = (pd.concat(pers, ignore_index=True).groupby(["perturbation", "metric", "batch_level"],
                                                      as_index=False)["value"].mean()
           if pers else pd.DataFrame(columns=["perturbation", "metric", "value", "batch_level"]))
    per = per[["perturbation", "metric", "value", "batch_level"]]
    scores.attrs["n_perturbations_short"] = short
    report_skipped(scores, skipped, "relationship_recall")
    return scores, per
