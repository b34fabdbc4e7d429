"""Batch-effect levels (MorphoHELM's "stringency paradigms") as copairs pair rules.

For every query, each candidate that shares the *restricted* attribute with the query is
removed before ranking — positives and negatives alike (MorphoHELM,
``benchmarks/replicate_analysis``). In copairs terms a level only adds columns to the
pair rules of a task:

=======  ===========================================  ==============================
level    meaning                                      added to pos_* and neg_* rules
=======  ===========================================  ==============================
``NR``   no restriction                               nothing
``SP``   same plate only (easiest reference)          sameby ``Metadata_Plate``
``NSP``  not same plate                               diffby ``Metadata_Plate``
``NSB``  not same batch                               diffby ``Metadata_Batch``
``NSS``  not same source                              diffby ``Metadata_Source``
``NSL``  not same layout (not the same well position) diffby ``Metadata_Well``
``NSSL`` not same source AND not same layout          diffby ``Metadata_Source``, ``Metadata_Well``
=======  ===========================================  ==============================

Why this is exact: a copairs rule is a conjunction — a pair is valid when it is equal on
*all* ``sameby`` and different on *all* ``diffby`` columns. Adding a ``diffby`` column ``c``
therefore keeps exactly the pairs of the original rule that also differ on ``c``, i.e.
drops every candidate sharing ``c`` with the query; NSSL's two columns drop candidates
sharing the source OR the well (kept iff different on both), which is MorphoHELM's
``(sources != s) & (wells != w)``. ``SP`` adds a ``sameby`` column. The same addition is
made to the positive and the negative rule, so positives and negatives are restricted
alike.

A level cannot be formed when a column is missing or (for a restriction) has a single
value — e.g. one source makes NSS empty. :func:`levels_available` says which levels can be
formed and why not; tasks skip the others and report the reason in
``scores.attrs["skipped_batch_levels"]`` (and a :class:`UserWarning`), never silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

PLATE, BATCH, SOURCE, WELL = "Metadata_Plate", "Metadata_Batch", "Metadata_Source", "Metadata_Well"

#: level -> (sameby columns, diffby columns) added to both pair rules
LEVELS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "NR": ((), ()),
    "SP": ((PLATE,), ()),
    "NSP": ((), (PLATE,)),
    "NSB": ((), (BATCH,)),
    "NSS": ((), (SOURCE,)),
    "NSL": ((), (WELL,)),
    "NSSL": ((), (SOURCE, WELL)),
}

DESCRIPTIONS = {
    "NR": "no restriction",
    "SP": "same plate only",
    "NSP": "not same plate",
    "NSB": "not same batch",
    "NSS": "not same source",
    "NSL": "not same layout (well position)",
    "NSSL": "not same source and not same layout",
}

#: order used when all levels are requested (easiest → hardest)
LEVEL_ORDER = ("SP", "NR", "NSL", "NSP", "NSB", "NSS", "NSSL")

__all__ = [
    "LEVELS",
    "LEVEL_ORDER",
    "DESCRIPTIONS",
    "level_rule",
    "apply_level",
    "levels_available",
    "resolve_levels",
    "allowed_candidates",
]


def level_rule(level: str) -> tuple[list[str], list[str]]:
    """``(sameby, diffby)`` columns a level adds to a copairs rule."""
    if level not in LEVELS:
        raise ValueError(f"unknown batch level {level!r}; choose from {list(LEVELS)}")
    same, diff = LEVELS[level]
    return list(same), list(diff)


def apply_level(pos_sameby: Sequence[str], pos_diffby: Sequence[str],
                neg_sameby: Sequence[str], neg_diffby: Sequence[str], level: str) -> dict:
    """The four copairs rules of a task restricted to ``level`` (as keyword arguments).

    Raises ``ValueError`` when the level contradicts the task's rule (e.g. SP on a rule
    that already requires a different plate).
    """
    same, diff = level_rule(level)

    def add(base: Sequence[str], extra: list[str]) -> list[str]:
        return list(dict.fromkeys([*base, *extra]))

    rules = {
        "pos_sameby": add(pos_sameby, same), "pos_diffby": add(pos_diffby, diff),
        "neg_sameby": add(neg_sameby, same), "neg_diffby": add(neg_diffby, diff),
    }
    for kind in ("pos", "neg"):
        both = set(rules[f"{kind}_sameby"]) & set(rules[f"{kind}_diffby"])
        if both:
            raise ValueError(f"level {level} contradicts the task's {kind} rule on {sorted(both)}")
    return rules


def levels_available(profiles: pd.DataFrame, levels: Iterable[str] | None = None) -> pd.DataFrame:
    """Which batch levels can be formed on ``profiles``.

    A level needs its columns, without missing values; a restriction (diffby) column needs
    at least two distinct values (one source → NSS impossible); SP needs a plate holding
    at least two profiles. This is a data-set check: a task can still find no eligible
    positive at a formed level and then skips it with its own reason.

    Returns
    -------
    DataFrame
        ``batch_level, available (bool), reason`` (reason ``""`` when available), in
        :data:`LEVEL_ORDER` unless ``levels`` gives the order.
    """
    rows = []
    for level in (LEVEL_ORDER if levels is None else list(levels)):
        same, diff = level_rule(level)
        reason = ""
        for c in [*same, *diff]:
            if c not in profiles.columns:
                reason = f"column {c} is missing"
                break
            if profiles[c].isna().any():
                reason = f"column {c} has missing values"
                break
        if not reason:
            for c in diff:
                if profiles[c].nunique() < 2:
                    reason = f"a single {c.removeprefix('Metadata_').lower()} ({profiles[c].iloc[0]!r})"
                    break
            for c in same:
                if profiles[c].value_counts().max() < 2:
                    reason = f"no {c.removeprefix('Metadata_').lower()} holds two profiles"
        rows.append({"batch_level": level, "available": not reason, "reason": reason})
    return pd.DataFrame(rows)


def resolve_levels(profiles: pd.DataFrame, batch_level) -> tuple[list[str], dict[str, str]]:
    """Levels to run and ``{level: reason}`` for requested levels that cannot be formed.

    ``batch_level``: ``None`` → ``["NR"]``; a level name; a list of names; or ``"all"`` /
    ``"available"`` → every level of :data:`LEVEL_ORDER` (unformable ones reported).
    """
    if batch_level is None:
        requested = ["NR"]
    elif isinstance(batch_level, str):
        requested = list(LEVEL_ORDER) if batch_level in ("all", "available") else [batch_level]
    else:
        requested = list(batch_level)
    for lv in requested:
        level_rule(lv)  # validates the name
    avail = levels_available(profiles, requested)
    run = avail.loc[avail["available"], "batch_level"].tolist()
    skipped = dict(zip(avail.loc[~avail["available"], "batch_level"],
                       avail.loc[~avail["available"], "reason"]))
    return run, skipped


def report_skipped(scores: pd.DataFrame, skipped: dict[str, str], task: str) -> pd.DataFrame:
    """Attach skipped levels to ``scores.attrs`` and warn (never silent)."""
    scores.attrs["skipped_batch_levels"] = dict(skipped)
    for lv, why in skipped.items():
        warnings.warn(f"{task}: batch level {lv} skipped: {why}", UserWarning, stacklevel=3)
    return scores


def allowed_candidates(meta: pd.DataFrame, level: str, rows: np.ndarray) -> np.ndarray:
    """Boolean ``(len(rows), n)`` mask of candidates a query may be ranked against.

    Same semantics as :func:`apply_level` for code that ranks without copairs rules;
    the query itself is excluded.
    """
    same, diff = level_rule(level)
    n = len(meta)
    rows = np.asarray(rows)
    mask = np.ones((rows.size, n), dtype=bool)
    for c in same:
        v = pd.factorize(meta[c])[0]
        mask &= v[rows, None] == v[None, :]
    for c in diff:
        v = pd.factorize(meta[c])[0]
        mask &= v[rows, None] != v[None, :]
    mask[np.arange(rows.size), rows] = False
    return mask
