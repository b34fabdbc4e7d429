"""Atomic writes: a half-written file is never read as valid (temp file + os.replace)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once (setting the umask to read it is not thread-safe): files get the mode a
#: plain ``open()`` would give them (0644 under the usual umask 022), not mkstemp's 0600.
_FILE_MODE = 0o666 & ~_current_umask()


def _tmp_near(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return Path(tmp)


def write_atomic(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, then move it into place.

    Parameters
    ----------
    path : path
        The final file.
    write : callable
        Writes the content to the path it is given (e.g. ``lambda p: df.to_csv(p)``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    tmp = _tmp_near(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(obj, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, default=str), path)


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Delete the temp files (``.<name>.<random>.tmp``) that a killed writer left under
    ``root``; returns them. Call only while no writer of this folder runs (e.g. when a
    run starts): a temp file is never read, this only reclaims its space."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = [p for p in root.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
