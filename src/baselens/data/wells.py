"""Well names: ``"A01"`` ↔ (row, column), 1-based; rows A..Z then AA..AF (1536-well plates).

The one place that parses and writes well names; every reader and extractor uses it.
"""

from __future__ import annotations

import re

__all__ = ["parse_well", "well_name", "normalize_well"]

_WELL_RE = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,3})\s*$")
_RAISE = object()


def parse_well(well, default=_RAISE) -> tuple[int, int]:
    """Row and column of a well name.

    Parameters
    ----------
    well : str
        ``"A01"``, ``"a1"``, ``"A001"``, ``"P24"``, ``"AF48"`` (case and zero padding free).
    default : optional
        Returned for a name that cannot be parsed; without it such a name raises.

    Returns
    -------
    tuple of int
        ``(row, column)``, 1-based: ``"A01"`` → (1, 1), ``"P24"`` → (16, 24),
        ``"AF48"`` → (32, 48).

    Raises
    ------
    ValueError
        For anything else (when no ``default`` is given).
    """
    m = _WELL_RE.match(str(well))
    if not m or int(m.group(2)) < 1:
        if default is not _RAISE:
            return default
        if not m:
            raise ValueError(f"cannot parse well name {well!r} (expected e.g. 'A01')")
        raise ValueError(f"well column must be >= 1 in {well!r}")
    row = 0
    for ch in m.group(1).upper():
        row = row * 26 + (ord(ch) - ord("A") + 1)
    return row, int(m.group(2))


def well_name(row: int, col: int) -> str:
    """Well name from a 1-based row and column.

    Parameters
    ----------
    row, col : int
        1-based; rows past 26 get two letters (27 → ``AA``, 32 → ``AF``).

    Returns
    -------
    str
        e.g. ``well_name(1, 1) == "A01"``, ``well_name(32, 48) == "AF48"``.
    """
    row, col = int(row), int(col)
    if row < 1 or col < 1:
        raise ValueError(f"plate row {row} and column {col} must be >= 1")
    letters = ""
    while row:
        row, r = divmod(row - 1, 26)
        letters = chr(ord("A") + r) + letters
    return f"{letters}{col:02d}"


def normalize_well(well) -> str:
    """The canonical spelling of a well name.

    Parameters
    ----------
    well : str
        Any spelling :func:`parse_well` reads.

    Returns
    -------
    str
        ``"a1"``, ``"A1"``, ``"A001"`` → ``"A01"``; ``"AF48"`` stays; a name that cannot be
        parsed is returned unchanged (as ``str``).
    """
    rc = parse_well(well, default=None)
    return str(well) if rc is None else well_name(*rc)
