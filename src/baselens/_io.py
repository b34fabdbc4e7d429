"""Atomic writes: a half-written file is never read as valid (temp file + os.replace)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd


def _tmp_near(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = _tmp_near(path)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = _tmp_near(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(obj, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, default=str), path)
