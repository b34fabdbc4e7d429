"""Whether two run folders scored the same: ``scores.parquet`` (and, where both have it,
``per_perturbation.parquet``) compared with :func:`pandas.testing.assert_frame_equal`.

Used to show that a refactoring changed no score (issue 17: the demo and
``hest_synthetic`` before and after the tissue runs moved onto the one pipeline)::

    python bench/equal_scores.py /tmp/before/demo /tmp/after/demo
    python bench/equal_scores.py /tmp/before/hest /tmp/after/hest

Rows are compared in a canonical order (sorted by every key column), so a change in the
order methods finish in is not a difference; values must be equal (``--rtol`` 0 by
default: exactly). Exit status 0 when equal, 1 when not (the first difference printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from pandas.testing import assert_frame_equal

KEYS = {"scores.parquet": ["method", "method_kind", "layer", "task", "batch_level", "metric",
                           "fold", "seed"],
        "per_perturbation.parquet": ["method", "method_kind", "layer", "task", "batch_level",
                                     "perturbation", "metric", "fold"]}


def canonical(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``df`` sorted by its key columns (as strings), index reset, attrs dropped.

    Parameters
    ----------
    df : DataFrame
        A results table.
    keys : list of str
        Its key columns (those absent are skipped).

    Returns
    -------
    DataFrame
    """
    by = [k for k in keys if k in df.columns]
    order = df[by].astype(str).sort_values(by, kind="stable").index if by else df.index
    out = df.loc[order].reset_index(drop=True)
    out.attrs = {}
    return out


def compare(a: Path, b: Path, name: str, rtol: float = 0.0) -> str | None:
    """``None`` when ``a/name`` and ``b/name`` are equal, else the difference.

    Parameters
    ----------
    a, b : Path
        Run folders.
    name : str
        A table of the results contract (``scores.parquet``, ``per_perturbation.parquet``).
    rtol : float
        Relative tolerance for floats (0: exact).

    Returns
    -------
    str or None
    """
    x = canonical(pd.read_parquet(a / name), KEYS[name])
    y = canonical(pd.read_parquet(b / name), KEYS[name])
    try:
        if rtol > 0:
            assert_frame_equal(x, y, check_exact=False, rtol=rtol)
        else:
            assert_frame_equal(x, y, check_exact=True)
    except AssertionError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path, help="run folder (e.g. of the unmodified branch)")
    ap.add_argument("after", type=Path, help="run folder to compare with it")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default exact)")
    args = ap.parse_args(argv)
    bad = 0
    for name in KEYS:
        if not (args.before / name).exists() or not (args.after / name).exists():
            if name == "scores.parquet":
                print(f"{name}: missing in {args.before if not (args.before / name).exists() else args.after}")
                return 1
            continue
        diff = compare(args.before, args.after, name, args.rtol)
        n = len(pd.read_parquet(args.before / name))
        print(f"{name}: {'equal' if diff is None else 'DIFFERENT'} ({n} rows)")
        if diff is not None:
            print(diff)
            bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
