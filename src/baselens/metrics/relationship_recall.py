"""Known-relationship recall (EFAAR benchmark of Celik et al.; efaar-benchmarking 1.0).

A map has one profile per perturbation (gene). The null is the cosine similarity of every
pair of perturbations; a known relationship (e.g. two CORUM complex members) is *recalled*
when its similarity falls in an extreme tail of that null. Re-implemented here because
importing ``efaar_benchmarking.benchmarking`` pulls torch/geomloss and its input checks build
``ValueError`` objects without raising them; results equal its ``known_relationship_benchmark``
/ ``compute_recall``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["known_relationship_recall", "filter_relationship_pairs"]

# Up to this many perturbations the full similarity matrix is formed exactly as
# sklearn.metrics.pairwise.cosine_similarity(X, X) does (bit-identical to EFAAR); above it,
# row blocks keep memory bounded (values may differ from EFAAR's in the last bit).
_FULL_MATRIX_MAX = 4096
_BLOCK_ENTRIES = 1 << 22


def filter_relationship_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """EFAAR's ``filter_relationships``: order each pair, drop self pairs and duplicates.

    Returns a new DataFrame with columns ``entity1 <= entity2`` (each unordered pair once);
    the input is not modified.
    """
    if not isinstance(pairs, pd.DataFrame):
        raise TypeError(f"pairs must be a pandas DataFrame; got {type(pairs).__name__}")
    missing = [c for c in ("entity1", "entity2") if c not in pairs.columns]
    if missing:
        raise ValueError(
            f"pairs is missing column(s) {missing}; expected 'entity1' and 'entity2' "
            f"(got {list(pairs.columns)})"
        )
    a = pairs["entity1"].to_numpy(dtype=object)
    b = pairs["entity2"].to_numpy(dtype=object)
    if len(a) and (pd.isna(a).any() or pd.isna(b).any()):
        raise ValueError("pairs has missing entity names")
    swap = np.array([y < x for x, y in zip(a, b)], dtype=bool)  # tuple(sorted([x, y]))
    e1 = np.where(swap, b, a)
    e2 = np.where(swap, a, b)
    out = pd.DataFrame({"entity1": e1, "entity2": e2}, index=pairs.index)
    out = out[out["entity1"] != out["entity2"]].drop_duplicates()
    return out


def _normalized_rows(x: np.ndarray) -> np.ndarray:
    """``sklearn.preprocessing.normalize`` (l2): near-zero rows are left unscaled."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
    return x / norms[:, None]


def _tail_counts(xn: np.ndarray, qi: np.ndarray, qj: np.ndarray):
    """Query similarities and, per query, #null < q and #null <= q.

    The null is the strict upper triangle of the cosine matrix ``xn @ xn.T``; query
    ``(qi, qj)`` (``qi < qj``) is read from that same triangle.
    """
    n = xn.shape[0]
    if n <= _FULL_MATRIX_MAX:
        sim = xn @ xn.T  # exactly sklearn's cosine_similarity(X, X)
        null = np.sort(sim[np.triu_indices(n, k=1)])
        q = sim[qi, qj]
        return q, np.searchsorted(null, q, side="left"), np.searchsorted(null, q, side="right")
    q = np.empty(qi.size)
    below = np.zeros(qi.size, dtype=np.int64)
    at_or_below = np.zeros(qi.size, dtype=np.int64)
    rows = max(1, _BLOCK_ENTRIES // n)
    # queries are read from the block holding their row (first pass), counts need every
    # block, so collect query values first
    order = np.argsort(qi, kind="stable")
    blocks = []
    for a in range(0, n - 1, rows):
        b = min(n - 1, a + rows)
        blk = xn[a:b] @ xn[a:].T  # rows a..b-1 against columns a..n-1
        sel = order[(qi[order] >= a) & (qi[order] < b)]
        q[sel] = blk[qi[sel] - a, qj[sel] - a]
        blocks.append((a, b))
    for a, b in blocks:
        blk = xn[a:b] @ xn[a:].T
        upper = np.arange(n - a)[None, :] > np.arange(b - a)[:, None]
        vals = np.sort(blk[upper])
        below += np.searchsorted(vals, q, side="left")
        at_or_below += np.searchsorted(vals, q, side="right")
    return q, below, at_or_below


def known_relationship_recall(
    features: np.ndarray,
    names: Sequence[str],
    pairs: pd.DataFrame,
    thresholds: Sequence[tuple[float, float]] = ((0.05, 0.95),),
    upper_tail: float | None = 0.05,
) -> dict:
    r"""Recall of known relationships in the tails of the all-pairs cosine-similarity null.

    EFAAR definition (``efaar_benchmarking.benchmarking.known_relationship_benchmark`` and
    ``compute_recall``, efaar-benchmarking 1.0; Celik et al., "Building, benchmarking, and
    exploring perturbative maps of transcriptional and morphological data"):

    * ``S = cos(x_a, x_b)`` for the ``n`` perturbation profiles; null
      :math:`\mathcal{N} = \{S_{ab} : a < b\}` (size :math:`n(n-1)/2`);
    * queries: the known pairs, ordered, self pairs and duplicates removed (EFAAR's
      ``filter_relationships``), kept when both entities are in ``names``;
    * for query similarity ``q``: :math:`r_L(q) = \#\{v \in \mathcal{N}: v < q\}/|\mathcal{N}|`
      and :math:`r_R(q) = \#\{v \le q\}/|\mathcal{N}|`;
    * ``recall_{l}_{r}`` :math:`= \frac{1}{Q}\sum_q [\,r_R(q) \le l \;\lor\; r_L(q) \ge r\,]`
      (chance level :math:`l + 1 - r`, 0.10 for (0.05, 0.95));
    * ``recall_top_{t}`` :math:`= \frac{1}{Q}\sum_q [\,r_L(q) \ge 1 - t\,]` — upper tail
      only, the recall@5% reported by “Deep Learning for BioImaging: What Are We Learning?”
      (arXiv 2603.13377, ICML 2026, section C.2); chance level ``t``.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_perturbations, n_features)
        One aggregated profile per perturbation. All-zero rows get similarity 0 (as
        sklearn's ``cosine_similarity``).
    names : sequence of str
        Perturbation (gene) name of each row; must be unique.
    pairs : pandas.DataFrame
        Known relationships with columns ``entity1``, ``entity2`` (either or both
        directions, as in CORUM.txt); e.g. from ``baselens.data.annotations``.
    thresholds : sequence of (left, right)
        Tail pairs; each gives key ``f"recall_{min}_{max}"`` (EFAAR naming).
    upper_tail : float or None
        Upper-tail share for ``recall_top_{upper_tail}``; ``None`` to omit.

    Returns
    -------
    dict
        ``recall_<l>_<r>`` for every threshold pair, ``recall_top_<t>`` (if requested),
        ``null_distribution_size`` and ``query_distribution_size``. When no known pair has
        both entities in ``names`` the recalls are NaN and the query size is 0 (EFAAR skips
        such a source).

    Raises
    ------
    ValueError
        Duplicate names, length mismatch, NaN/inf features, fewer than 2 perturbations,
        missing ``entity1``/``entity2`` columns, invalid thresholds.
    """
    x = np.asarray(features.to_numpy() if isinstance(features, pd.DataFrame) else features)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (perturbations x features); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"features must be numeric; got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if isinstance(names, str):
        raise TypeError("names must be a sequence of names, not a single string")
    names = list(names)
    n = x.shape[0]
    if len(names) != n:
        raise ValueError(f"features has {n} rows but {len(names)} names were given")
    if n < 2:
        raise ValueError(f"need at least 2 perturbations for a null distribution; got {n}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(
            f"features contain NaN/inf in {bad.size} row(s) (first: {[names[i] for i in bad[:5]]})"
        )
    index = pd.Index(names)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique().tolist()
        raise ValueError(
            f"names must be unique (one profile per perturbation); duplicated: {dup[:10]}"
            + (" ..." if len(dup) > 10 else "")
            + " - aggregate replicates first"
        )
    thr = []
    for pair in thresholds:
        lo, hi = (float(np.min(pair)), float(np.max(pair)))
        if len(pair) != 2 or not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
            raise ValueError(f"each threshold must be a (left, right) pair in [0, 1]; got {pair!r}")
        thr.append((lo, hi))
    if upper_tail is not None and not 0.0 < float(upper_tail) < 1.0:
        raise ValueError(f"upper_tail must be in (0, 1) or None; got {upper_tail!r}")

    rels = filter_relationship_pairs(pairs)
    rels = rels[rels["entity1"].isin(index) & rels["entity2"].isin(index)]
    i1 = index.get_indexer(rels["entity1"])
    i2 = index.get_indexer(rels["entity2"])
    qi, qj = np.minimum(i1, i2), np.maximum(i1, i2)

    null_size = n * (n - 1) // 2
    metrics: dict = {"null_distribution_size": null_size, "query_distribution_size": int(qi.size)}
    keys = [f"recall_{lo}_{hi}" for lo, hi in thr]
    top_key = None if upper_tail is None else f"recall_top_{float(upper_tail)}"
    if qi.size == 0:
        for k in keys:
            metrics[k] = float("nan")
        if top_key:
            metrics[top_key] = float("nan")
        return metrics

    _, below, at_or_below = _tail_counts(_normalized_rows(x), qi, qj)
    rank_left = below / null_size
    rank_right = at_or_below / null_size
    for (lo, hi), k in zip(thr, keys):
        metrics[k] = int(np.count_nonzero((rank_right <= lo) | (rank_left >= hi))) / qi.size
    if top_key:
        metrics[top_key] = int(np.count_nonzero(rank_left >= 1.0 - float(upper_tail))) / qi.size
    return metrics
