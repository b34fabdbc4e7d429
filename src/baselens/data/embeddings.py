"""Bring-your-own embeddings: read precomputed per-site / per-well / per-perturbation
embeddings and join them to the screen's sites by declared keys.

Formats (chosen from the suffix, or ``format=``):

* **Parquet / CSV, wide** — one row per key, one column per feature. Feature columns
  are ``features`` (a list, or a prefix string such as ``"emb_"``), else every numeric
  column that is not a key and not ``Metadata_*``.
* **Parquet, list column** — ``list_column = "embedding"`` holds one array per row.
* **.npy** (N, D) + ``metadata`` table (Parquet/CSV, N rows, same order).
* **AnnData .h5ad** — ``X`` (or ``obsm = "X_pca"`` …) with the ``obs`` table; read with
  ``anndata`` when installed, else with ``h5py`` (dense X/obsm; CSR sparse X), else a clear
  error naming what to install.

Keys (``keys``): ``"site"`` (plate, well, site), ``"well"`` (plate, well),
``"perturbation"``, or a list of ``Metadata_*`` names. A file column matches a key by
its exact name, or by the bare name in any case (``plate``, ``Plate`` for
``Metadata_Plate``), or through ``column_map = {"my_col": "Metadata_Plate"}``. Values are
compared as strings (``1``, ``1.0`` and ``"1"`` are the same site number).

Every mismatch is an error with counts and examples: duplicate keys in the file, sites
of the screen without an embedding (``on_missing="nan"`` keeps them as NaN rows, which the
profile stage then drops and reports), non-finite values. Embeddings for keys that the
screen does not have are ignored and counted in :attr:`EmbeddingTable.n_unused`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["KEY_SETS", "EmbeddingTable", "EmbeddingJoinError", "read_embeddings", "resolve_keys"]

KEY_SETS: dict[str, list[str]] = {
    "site": ["Metadata_Plate", "Metadata_Well", "Metadata_Site"],
    "well": ["Metadata_Plate", "Metadata_Well"],
    "perturbation": ["Metadata_Perturbation"],
}


class EmbeddingJoinError(ValueError):
    """Embeddings and screen metadata do not match (counts and examples in the message)."""


def resolve_keys(keys: str | Sequence[str]) -> list[str]:
    if isinstance(keys, str):
        if keys not in KEY_SETS:
            raise ValueError(f"keys must be one of {list(KEY_SETS)} or a list of Metadata_* "
                             f"columns, got {keys!r}")
        return list(KEY_SETS[keys])
    out = [str(k) for k in keys]
    if not out:
        raise ValueError("keys must not be empty")
    return out


def _key_strings(df: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    def norm(s: pd.Series) -> pd.Series:
        if pd.api.types.is_float_dtype(s) and (s.dropna() == s.dropna().round()).all():
            s = s.astype("Int64")
        return s.astype(str).str.strip()

    parts = [norm(df[k]) for k in keys]
    out = parts[0]
    for p in parts[1:]:
        out = out + "\x1f" + p
    return out


def _show(keys: Sequence[str], values: Sequence[str], n: int = 5) -> str:
    def one(v):
        return "/".join(f"{k.removeprefix('Metadata_')}={x}" for k, x in zip(keys, v.split("\x1f")))

    vals = list(values)
    return "; ".join(one(v) for v in vals[:n]) + (f"; … ({len(vals)} in all)" if len(vals) > n else "")


@dataclass
class EmbeddingTable:
    """Embeddings indexed by key: ``keys`` columns + ``features`` (float64)."""

    keys: list[str]
    table: pd.DataFrame
    features: list[str]
    source: str = ""
    n_unused: int = 0

    def __post_init__(self) -> None:
        k = _key_strings(self.table, self.keys)
        dup = k[k.duplicated(keep=False)]
        if len(dup):
            raise EmbeddingJoinError(
                f"{self.source}: {dup.nunique()} key value(s) appear more than once "
                f"({len(dup)} rows) for keys {self.keys}: {_show(self.keys, dup.unique())}. "
                "Aggregate them first or declare finer keys (e.g. keys = 'site').")
        self._index = pd.Index(k)
        self._values = self.table[self.features].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(self._values).all(axis=1)
        if bad.any():
            raise EmbeddingJoinError(f"{self.source}: {int(bad.sum())} row(s) have non-finite "
                                     f"values: {_show(self.keys, k[bad].tolist())}")

    @property
    def dim(self) -> int:
        return len(self.features)

    def lookup(self, meta: pd.DataFrame, *, on_missing: str = "error") -> np.ndarray:
        """Rows aligned with ``meta`` (N, D); a site without embedding is an error (or NaN)."""
        missing_cols = [k for k in self.keys if k not in meta.columns]
        if missing_cols:
            raise EmbeddingJoinError(f"the screen metadata has no column(s) {missing_cols} to "
                                     f"join {self.source} on (columns: {list(meta.columns)})")
        want = _key_strings(meta.reset_index(drop=True), self.keys)
        pos = self._index.get_indexer(want)
        miss = pos < 0
        if miss.any() and on_missing == "error":
            raise EmbeddingJoinError(
                f"{self.source}: {int(miss.sum())} of {len(want)} site(s) have no embedding "
                f"(keys {self.keys}): {_show(self.keys, want[miss].unique())}. The file has "
                f"{len(self._index)} key value(s); check the key columns and their values, "
                "or set on_missing = 'nan' to keep those sites as missing.")
        out = np.full((len(want), self.dim), np.nan)
        out[~miss] = self._values[pos[~miss]]
        return out

    def check_coverage(self, meta: pd.DataFrame, *, on_missing: str = "error") -> dict:
        """Validate against the whole screen; returns counts (sites, matched, unused rows)."""
        want = _key_strings(meta.reset_index(drop=True), self.keys)
        self.lookup(meta, on_missing=on_missing)
        used = self._index.isin(set(want))
        self.n_unused = int((~used).sum())
        return {"sites": len(want), "matched": int(self._index.get_indexer(want).__ge__(0).sum()),
                "unused_embeddings": self.n_unused}


def _match_columns(df: pd.DataFrame, keys: Sequence[str], column_map: Mapping[str, str] | None,
                   source: str) -> pd.DataFrame:
    if column_map:
        df = df.rename(columns=dict(column_map))
    rename = {}
    lower = {str(c).lower(): c for c in df.columns}
    for k in keys:
        if k in df.columns:
            continue
        bare = k.removeprefix("Metadata_").lower()
        for cand in (bare, f"metadata_{bare}"):
            if cand in lower:
                rename[lower[cand]] = k
                break
        else:
            raise EmbeddingJoinError(
                f"{source}: no column for key {k!r} (looked for {k}, {bare}, any case); "
                f"columns: {list(df.columns)[:20]}. Map one with column_map = {{'<col>': '{k}'}}.")
    return df.rename(columns=rename)


def chosen_features(df: pd.DataFrame, features: str | Sequence[str], source) -> list[str]:
    """Feature columns named by ``features``: a prefix (``"emb_"``) or a list, which must
    all be columns of ``df`` (the error names ``source`` and the missing ones)."""
    if isinstance(features, str):
        return [c for c in df.columns if str(c).startswith(features)]
    feats = [str(c) for c in features]
    missing = [c for c in feats if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: feature columns not found: {missing[:5]} ({len(missing)})")
    return feats


def _read_table(path: Path) -> pd.DataFrame:
    suf = path.suffix.lower()
    if suf in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suf in (".csv", ".txt"):
        return pd.read_csv(path)
    if suf in (".tsv", ".tab"):
        return pd.read_csv(path, sep="\t")
    raise ValueError(f"{path}: metadata table must be .parquet, .csv or .tsv")


def _read_h5ad(path: Path, obsm: str | None) -> tuple[np.ndarray, pd.DataFrame]:
    try:
        import anndata  # type: ignore

        ad = anndata.read_h5ad(path)
        x = ad.obsm[obsm] if obsm else ad.X
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        return np.asarray(x, np.float64), ad.obs.reset_index().rename(columns={"index": "obs_names"})
    except ImportError:
        pass
    try:
        import h5py  # type: ignore
    except ImportError:
        raise ImportError(f"reading {path} needs `anndata` or `h5py` (pip install h5py); or "
                          "export the embeddings to Parquet / .npy + a metadata table") from None
    with h5py.File(path, "r") as f:
        node = f["obsm"][obsm] if obsm else f["X"]
        if isinstance(node, h5py.Group):  # CSR / CSC sparse
            enc = node.attrs.get("encoding-type", b"")
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            shape = tuple(node.attrs["shape"])
            data, indices, indptr = node["data"][()], node["indices"][()], node["indptr"][()]
            x = np.zeros(shape, np.float64)
            major = shape[0] if enc.startswith("csr") else shape[1]
            for i in range(major):
                sl = slice(indptr[i], indptr[i + 1])
                if enc.startswith("csr"):
                    x[i, indices[sl]] = data[sl]
                else:
                    x[indices[sl], i] = data[sl]
        else:
            x = np.asarray(node[()], np.float64)
        obs = _h5_frame(f["obs"])
    return x, obs


def _h5_frame(group) -> pd.DataFrame:
    """AnnData's on-disk dataframe (anndata ≥ 0.7 encoding: columns + categoricals)."""
    import h5py  # type: ignore

    def dec(a):
        a = np.asarray(a)
        return a.astype(str) if a.dtype.kind in ("S", "O") else a

    cols = {}
    order = [c.decode() if isinstance(c, bytes) else str(c) for c in group.attrs.get("column-order", [])]
    index_name = group.attrs.get("_index", "_index")
    index_name = index_name.decode() if isinstance(index_name, bytes) else str(index_name)
    for name in order or [k for k in group.keys() if k != index_name]:
        node = group[name]
        if isinstance(node, h5py.Group) and "categories" in node:
            cats, codes = dec(node["categories"][()]), node["codes"][()]
            cols[name] = np.where(codes >= 0, cats[np.clip(codes, 0, None)], None)
        elif isinstance(node, h5py.Group):  # nullable ints/bools etc.
            cols[name] = dec(node["values"][()])
        else:
            cols[name] = dec(node[()])
    df = pd.DataFrame(cols)
    if index_name in group:
        df.insert(0, "obs_names", dec(group[index_name][()]))
    return df


def read_embeddings(
    path: str | os.PathLike,
    *,
    keys: str | Sequence[str] = "site",
    format: str | None = None,
    features: str | Sequence[str] | None = None,
    list_column: str | None = None,
    metadata: str | os.PathLike | None = None,
    obsm: str | None = None,
    column_map: Mapping[str, str] | None = None,
) -> EmbeddingTable:
    """Read an embeddings file into an :class:`EmbeddingTable` (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"embeddings file {p} does not exist")
    key_cols = resolve_keys(keys)
    fmt = format or {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv",
                     ".npy": "npy", ".h5ad": "h5ad"}.get(p.suffix.lower())
    source = str(p)
    if fmt in ("parquet", "csv"):
        df = pd.read_parquet(p) if fmt == "parquet" else pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",")
        x = None
        if list_column is not None:
            if list_column not in df.columns:
                raise ValueError(f"{p}: no list column {list_column!r}")
            lens = df[list_column].map(len)
            if lens.nunique() != 1:
                raise ValueError(f"{p}: rows of {list_column!r} have different lengths "
                                 f"{sorted(lens.unique())[:5]}")
            x = np.stack(df[list_column].map(lambda v: np.asarray(v, np.float64)).to_list())
            df = df.drop(columns=[list_column])
    elif fmt == "npy":
        if metadata is None:
            raise ValueError(f"{p}: a .npy file needs `metadata`, a table with one row per "
                             "embedding row (same order) holding the key columns")
        x = np.load(p, allow_pickle=False)
        if x.ndim != 2:
            raise ValueError(f"{p}: expected a 2-D array (N, D), got shape {x.shape}")
        df = _read_table(Path(metadata).expanduser())
        if len(df) != len(x):
            raise EmbeddingJoinError(f"{p} has {len(x)} rows but metadata {metadata} has {len(df)}")
        source = f"{p} + {metadata}"
    elif fmt == "h5ad":
        x, df = _read_h5ad(p, obsm)
    else:
        raise ValueError(f"{p}: unknown embeddings format {fmt or p.suffix!r} "
                         "(parquet, csv, npy + metadata, h5ad)")
    df = _match_columns(df.reset_index(drop=True), key_cols, column_map, source)
    if x is None:  # wide table
        if features is not None:
            feats = chosen_features(df, features, p)
        else:
            feats = [c for c in df.columns if c not in key_cols and not str(c).startswith("Metadata_")
                     and pd.api.types.is_numeric_dtype(df[c])]
        if not feats:
            raise ValueError(f"{p}: no feature columns (give features = [...] or a prefix)")
        table = pd.concat([df[key_cols], df[feats].astype(np.float64)], axis=1)
        names = [str(c) for c in feats]
        table.columns = key_cols + names
    else:
        width = max(4, len(str(x.shape[1] - 1)))
        names = [f"emb_{j:0{width}d}" for j in range(x.shape[1])]
        table = pd.concat([df[key_cols].reset_index(drop=True),
                           pd.DataFrame(np.asarray(x, np.float64), columns=names)], axis=1)
    return EmbeddingTable(key_cols, table, names, source)
