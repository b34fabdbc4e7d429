"""Profile tables — JUMP-style Parquet profiles and pycytominer outputs — as a representation.

A profile table has one row per well (or per site): ``Metadata_*`` columns and feature
columns (CellProfiler ``Cells_*`` / ``Nuclei_*`` / ``Cytoplasm_*`` names in pycytominer
outputs; anything numeric in JUMP's Parquet profiles, e.g. ``X_1`` …). CSV, CSV.GZ, TSV
and Parquet are read.

Scoring it next to the baselines needs no images: the ``precomputed`` extractor joins the
features to the screen's wells (``keys = "well"``), and a *metadata-only* load_data table
(one row per well, no image columns, read with ``channels = []``) defines the screen.
:func:`write_profile_run` writes both and a run config::

    out/load_data.parquet      Metadata_Plate, Metadata_Well, Metadata_Site = 1,
                               Metadata_Perturbation, Metadata_ControlType, Metadata_* …
    out/profiles.parquet       Metadata_Plate, Metadata_Well + feature columns
    out/run.toml               [data] load_data, channels = []; methods: precomputed
                               (the profiles), plate_layout and random (need no pixels)

``baselens run out/run.toml --out runs/x`` then profiles, normalizes and scores them like
any representation (the image baselines need images: add them when the table has
``FileName_Orig*`` columns).

Baselines that need no pixels
    * **cell_count** — when the table carries a count column (the first present of
      :data:`COUNT_COLUMNS`: ``Metadata_CellCount``, ``Metadata_Count_Cells``,
      ``Image_Count_Cells``, ``Count_Cells``, ``Cells_Number_Object_Number``,
      ``Nuclei_Number_Object_Number``), it is copied to ``Metadata_CellCount`` (what the
      residualization diagnostics, the assay-confound table and the |r| > 0.95 feature
      filter of Seal et al. 2026, Nat. Commun., read) and the run config gains a
      ``cell_count`` method (``profile_table`` extractor, ``derive = "cell_count"``) computing the image route's
      17 count features in-process (:func:`baselens.extract.cell_count.count_features`;
      a column with negative values — already normalized — only gives the polynomial
      ones, the roots and logs need a raw count). ``random`` is always added next to it.
      Image-level count columns (``Image_Count_Cells``, ``Count_Cells``) are kept out of
      the representation's features; ``Cells_Number_Object_Number`` (a CellProfiler
      feature, the well's mean object index ≈ (n + 1) / 2 after pycytominer's aggregation,
      so monotone in the count) stays in them.
    * **classic** — the CellProfiler features (``Cells_*``, ``Nuclei_*``, ``Cytoplasm_*``,
      :data:`CLASSIC_PREFIXES`). When every feature of the table is one, the table *is* the
      classic baseline and is scored once under the label ``classic`` (kind baseline), not
      once more as a model. ``embeddings=`` (``baselens load-data PROFILES --embeddings
      EMB.parquet``) scores a foundation model's embeddings of the same wells (keys plate +
      well) as the model, next to ``classic`` and ``cell_count`` from this table, in one run.

Perturbations and controls
    ``Metadata_Perturbation`` is taken from ``perturbation=`` or the first present of
    :data:`PERTURBATION_COLUMNS` (LINCS / pycytominer: ``Metadata_broad_sample``; JUMP:
    ``Metadata_JCP2022``). ``Metadata_ControlType`` is kept when present, else derived
    from ``negcon=`` (values of the perturbation column, or ``{column: values}``), else
    from :data:`NEGCON_VALUES` found in the perturbation column (``DMSO``,
    ``EMPTY_control``, ``non-targeting`` …). JUMP profiles without perturbation
    columns: join them first with :func:`baselens.data.jump.annotate_jump`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from baselens.data.embeddings import chosen_features
from baselens.data.wells import normalize_well

__all__ = ["PERTURBATION_COLUMNS", "NEGCON_VALUES", "COUNT_COLUMNS", "CLASSIC_PREFIXES",
           "ProfileTable", "read_profile_file", "read_profiles", "feature_report",
           "find_count_column", "classic_columns", "count_cost", "write_profile_run"]

PERTURBATION_COLUMNS: tuple[str, ...] = (
    "Metadata_Perturbation", "Metadata_JCP2022", "Metadata_broad_sample", "Metadata_pert_iname",
    "Metadata_Symbol", "Metadata_gene", "Metadata_Gene", "Metadata_treatment",
    "Metadata_Treatment", "Metadata_compound", "Metadata_Compound")

#: Perturbation values that are negative controls in the public data sets.
NEGCON_VALUES: frozenset[str] = frozenset({
    "DMSO", "dmso", "EMPTY_control", "non-targeting", "no-guide", "JCP2022_033924",
    "JCP2022_800001", "JCP2022_800002", "BFP", "HcRed", "LUCIFERASE", "LacZ", "negcon"})

#: Count columns, in order of preference (an explicit well count first, then image-level
#: CellProfiler counts, then the object-number features pycytominer aggregates).
COUNT_COLUMNS: tuple[str, ...] = (
    "Metadata_CellCount", "Metadata_Count_Cells", "Image_Count_Cells", "Count_Cells",
    "Cells_Number_Object_Number", "Nuclei_Number_Object_Number")

#: CellProfiler compartment prefixes: features that make the ``classic`` baseline.
CLASSIC_PREFIXES: tuple[str, ...] = ("Cells_", "Nuclei_", "Cytoplasm_")

#: What a table without a count column loses (``inspect`` prints it).
NO_COUNT_COST = ("no cell_count baseline (how far count alone goes), no assay-confound table "
                 "(diagnostics/assay_confounds.parquet), no cell-count residualization and no "
                 "|r| > 0.95 cell-count feature filter")

_PLATE = ("Metadata_Plate", "Image_Metadata_Plate", "Metadata_plate", "Metadata_Assay_Plate_Barcode",
          "plate", "Plate")
_WELL = ("Metadata_Well", "Image_Metadata_Well", "Metadata_well", "Metadata_well_position",
         "well", "Well")
_SITE = ("Metadata_Site", "Image_Metadata_Site", "Metadata_site")


def read_profile_file(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV / CSV.GZ / TSV / Parquet table (errors name the file)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"profile table not found: {p}")
    n = p.name.lower()
    if n.endswith((".parquet", ".pq")):
        return pd.read_parquet(p)
    if n.endswith((".csv", ".csv.gz")):
        return pd.read_csv(p, low_memory=False)
    if n.endswith((".tsv", ".tsv.gz", ".txt")):
        return pd.read_csv(p, sep="\t", low_memory=False)
    raise ValueError(f"{p}: profile tables are .parquet, .csv, .csv.gz or .tsv")


def feature_report(df: pd.DataFrame, features: Sequence[str]) -> dict:
    """Counts about feature columns: NaN anywhere / everywhere, non-finite, constant overall
    and constant within some plate (zero spread there: per-plate normalization drops them)."""
    x = df[list(features)].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    nan_any = ~finite.all(axis=0)
    nan_all = ~finite.any(axis=0)
    with np.errstate(invalid="ignore"):
        std = np.nanstd(np.where(finite, x, np.nan), axis=0)
    constant = (std == 0) | ~np.isfinite(std)
    const_plate = np.zeros(len(features), dtype=bool)
    if "Metadata_Plate" in df.columns:
        for _, idx in df.groupby("Metadata_Plate", sort=False, observed=True).indices.items():
            if len(idx) > 1:
                with np.errstate(invalid="ignore"):
                    s = np.nanstd(np.where(finite[idx], x[idx], np.nan), axis=0)
                const_plate |= (s == 0)
    names = np.asarray(features, dtype=object)
    return {"n_features": len(features),
            "nonfinite_any": int(nan_any.sum()), "nonfinite_all": int(nan_all.sum()),
            "rows_with_nonfinite": int((~finite.all(axis=1)).sum()),
            "constant": int(constant.sum()), "constant_in_some_plate": int((const_plate & ~constant).sum()),
            "examples_nonfinite": names[nan_any][:5].tolist(),
            "examples_constant": names[constant | const_plate][:5].tolist()}


@dataclass
class ProfileTable:
    """A profile table in baselens' conventions (``table``: Metadata_* + ``features``)."""

    table: pd.DataFrame
    features: list[str]
    source: str = ""
    report: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return (["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
                if "Metadata_Site" in self.table.columns else ["Metadata_Plate", "Metadata_Well"])


def _first(cols, names) -> str | None:
    return next((c for c in names if c in cols), None)


def find_count_column(columns: Sequence[str]) -> str | None:
    """The first of :data:`COUNT_COLUMNS` among ``columns`` (None when there is none)."""
    return _first(list(columns), COUNT_COLUMNS)


def classic_columns(features: Sequence[str]) -> list[str]:
    """The CellProfiler features (``Cells_*``, ``Nuclei_*``, ``Cytoplasm_*``) of ``features``."""
    return [f for f in features if str(f).startswith(CLASSIC_PREFIXES)]


def count_cost(column: str | None) -> str:
    """One line for ``inspect``: which count column is used, or what its absence costs."""
    if column is None:
        return (f"no count column (looked for {list(COUNT_COLUMNS)}): {NO_COUNT_COST}. Add a "
                "per-well count (e.g. Metadata_Count_Cells from CellProfiler's Image table) "
                "to get them")
    return (f"from {column}, copied to Metadata_CellCount: a cell_count baseline (with random), "
            "the assay-confound table, cell-count residualization and the |r| > 0.95 filter")


def read_profiles(
    path: str | os.PathLike | pd.DataFrame,
    *,
    perturbation: str | None = None,
    negcon: Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
    features: str | Sequence[str] | None = None,
    require_perturbation: bool = True,
) -> ProfileTable:
    """Read a JUMP / pycytominer profile table and bring it to baselens' conventions.

    Parameters
    ----------
    path : path or DataFrame
    perturbation : str, optional
        Column naming each row's perturbation (copied to ``Metadata_Perturbation``).
    negcon : list or dict, optional
        Negative controls: values of the perturbation column, or ``{column: value(s)}``
        (control rows with an empty perturbation then take their value in that column).
    features : str or list, optional
        Feature columns, or a prefix; default every numeric non-``Metadata_`` column.
    require_perturbation : bool
        Raise when no perturbation column or no negative control is found (set False to
        inspect a table that lacks them).

    Raises
    ------
    ValueError
        No plate/well column, duplicate (plate, well[, site]) rows, non-numeric feature
        columns, or (``require_perturbation``) no perturbation / negative control — each
        naming the columns and what to pass.
    """
    if isinstance(path, pd.DataFrame):
        df, src = path.copy(), "profile table"
    else:
        df, src = read_profile_file(path), str(path)
    cols = list(df.columns)
    rename = {}
    for target, names in (("Metadata_Plate", _PLATE), ("Metadata_Well", _WELL), ("Metadata_Site", _SITE)):
        if target not in cols:
            c = _first(cols, names)
            if c is not None:
                rename[c] = target
    df = df.rename(columns=rename).copy()  # one block: adding columns stays cheap
    for need in ("Metadata_Plate", "Metadata_Well"):
        if need not in df.columns:
            raise ValueError(f"{src}: no {need} column (looked for "
                             f"{list(_PLATE if need.endswith('Plate') else _WELL)}); "
                             f"columns: {cols[:15]}…")
    df["Metadata_Plate"] = df["Metadata_Plate"].astype(str)
    df["Metadata_Well"] = df["Metadata_Well"].map(normalize_well)
    # features
    if features is not None:
        feats = chosen_features(df, features, src)
    else:
        # image-level counts are metadata, not features (the CellProfiler object-number
        # features are features of the profile and stay)
        cand = [c for c in df.columns if not str(c).startswith(("Metadata_", "Image_Metadata_"))
                and c not in ("Image_Count_Cells", "Count_Cells")]
        non_num = [c for c in cand if not pd.api.types.is_numeric_dtype(df[c])]
        if non_num:
            raise ValueError(f"{src}: {len(non_num)} non-numeric column(s) without a Metadata_ "
                             f"prefix, e.g. {non_num[:5]}; prefix them with Metadata_ or pass "
                             "features= (a list or a prefix)")
        feats = cand
    if not feats:
        raise ValueError(f"{src}: no feature columns")
    keys = ["Metadata_Plate", "Metadata_Well"] + (["Metadata_Site"] if "Metadata_Site" in df.columns else [])
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        ex = df.loc[dup, keys].astype(str).agg("/".join, axis=1).unique()[:3].tolist()
        raise ValueError(f"{src}: {int(dup.sum())} rows share a {tuple(k.removeprefix('Metadata_') for k in keys)}, "
                         f"e.g. {ex}; one row per well (or per site with Metadata_Site)")
    report: dict = {"rows": len(df)}
    # cell count: the first count column becomes Metadata_CellCount (diagnostics, filter)
    ccol = find_count_column(df.columns)
    report["count_column"] = ccol
    if ccol is not None:
        counts = pd.to_numeric(df[ccol], errors="coerce")
        if ccol != "Metadata_CellCount":
            df["Metadata_CellCount"] = counts.astype(np.float64)
        report["count_missing"] = int(counts.isna().sum())
        report["count_normalized"] = bool((counts < 0).any())
    report["classic_features"] = len(classic_columns(feats))
    # perturbation
    pcol = perturbation or _first(df.columns, PERTURBATION_COLUMNS)
    if perturbation is not None and perturbation not in df.columns:
        raise ValueError(f"{src}: perturbation column {perturbation!r} not found; "
                         f"Metadata columns: {[c for c in df.columns if str(c).startswith('Metadata_')]}")
    if pcol is None:
        report["perturbation_column"] = None
        if require_perturbation:
            raise ValueError(
                f"{src}: no perturbation column (looked for {list(PERTURBATION_COLUMNS)}); name "
                "one with perturbation='Metadata_…' (JUMP profiles: join the metadata first, "
                "baselens.data.jump.annotate_jump)")
    else:
        report["perturbation_column"] = pcol
        if pcol != "Metadata_Perturbation":
            df["Metadata_Perturbation"] = df[pcol]
        empty = df["Metadata_Perturbation"].isna() | (df["Metadata_Perturbation"].astype(str).str.strip() == "")
        if empty.any() and isinstance(negcon, Mapping):
            # control wells often have no compound id (LINCS: DMSO has no pert_id): name
            # them by the column that marks them as controls
            marked = _negcon_mask(df, negcon, src) & empty.to_numpy()
            col = next(iter(negcon))
            df.loc[marked, "Metadata_Perturbation"] = df.loc[marked, col].astype(str)
            report["perturbation_filled_from"] = {col: int(marked.sum())}
            empty = empty & ~marked
        if empty.any():
            report["rows_without_perturbation"] = int(empty.sum())
            if require_perturbation:
                ex = df.loc[empty, keys].astype(str).agg("/".join, axis=1).head(3).tolist()
                raise ValueError(f"{src}: {int(empty.sum())} row(s) have no {pcol}, e.g. {ex}; "
                                 "fill or remove them")
        df["Metadata_Perturbation"] = df["Metadata_Perturbation"].astype(str)
    # controls
    if negcon is not None or "Metadata_ControlType" not in df.columns:
        mask = _negcon_mask(df, negcon, src)
        if mask is not None:
            prev = (df["Metadata_ControlType"].fillna("").astype(str)
                    if "Metadata_ControlType" in df.columns else pd.Series("", index=df.index))
            df["Metadata_ControlType"] = np.where(mask, "negcon", prev.where(prev == "poscon", ""))
            report["negcon_rule"] = (repr(dict(negcon)) if isinstance(negcon, Mapping) else
                                     repr(list(negcon)) if negcon is not None else
                                     "known negative-control names " + repr(sorted(
                                         set(df.loc[mask, "Metadata_Perturbation"]))))
    if "Metadata_ControlType" in df.columns:
        df["Metadata_ControlType"] = df["Metadata_ControlType"].fillna("").astype(str)
        report["negcon"] = int((df["Metadata_ControlType"] == "negcon").sum())
    elif require_perturbation:
        raise ValueError(f"{src}: no negative controls found (no Metadata_ControlType and no "
                         f"perturbation in {sorted(NEGCON_VALUES)}); pass negcon=['<value>'] "
                         "or negcon={'<column>': '<value>'}")
    report["features"] = feature_report(df, feats)
    meta = [c for c in df.columns if c not in feats]
    return ProfileTable(df[meta + feats].reset_index(drop=True), list(feats), src, report)


def _toml_list(xs: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(x) for x in xs) + "]"


def _negcon_mask(df: pd.DataFrame, negcon, src: str) -> np.ndarray | None:
    if isinstance(negcon, Mapping):
        mask = np.zeros(len(df), dtype=bool)
        for col, vals in negcon.items():
            if col not in df.columns:
                raise ValueError(f"{src}: negcon column {col!r} not found")
            vals = [vals] if isinstance(vals, str) else list(vals)
            mask |= df[col].astype(str).isin([str(v) for v in vals]).to_numpy()
        if not mask.any():
            raise ValueError(f"{src}: no row matches negcon={dict(negcon)}")
        return mask
    if "Metadata_Perturbation" not in df.columns:
        return None
    pert = df["Metadata_Perturbation"].astype(str)
    if negcon is not None:
        vals = [negcon] if isinstance(negcon, str) else [str(v) for v in negcon]
        mask = pert.isin(vals).to_numpy()
        if not mask.any():
            raise ValueError(f"{src}: no perturbation equals negcon {vals} "
                             f"(e.g. {pert.unique()[:5].tolist()})")
        return mask
    mask = pert.isin(NEGCON_VALUES).to_numpy()
    return mask if mask.any() else None


def write_profile_run(profiles: ProfileTable | str | os.PathLike, out_dir: str | os.PathLike, *,
                      label: str = "profiles", baselines: Sequence[str] = ("plate_layout", "random"),
                      title: str | None = None, embeddings: str | os.PathLike | None = None,
                      embeddings_label: str | None = None, **read_kwargs) -> Path:
    """Write ``load_data.parquet`` (metadata only), ``profiles.parquet`` and ``run.toml``
    into ``out_dir`` so that ``baselens run out_dir/run.toml`` scores the profiles next to
    ``baselines`` (which must read no pixels). Returns the config path.

    Parameters
    ----------
    profiles : ProfileTable or path
        The profile table (read with :func:`read_profiles` and ``read_kwargs``).
    out_dir : path
        Folder for the three files.
    label : str
        Label of the table's own features when they are not (only) CellProfiler features.
    baselines : list of str
        Extractors that read no pixels (``random`` is added when the table has counts, so
        the (cell_count, random) pair is always there).
    title : str, optional
        Report title.
    embeddings : path, optional
        A foundation model's embeddings of the same wells (a wide Parquet/CSV with plate
        and well columns): scored as the model (``precomputed``, keys ``"well"``) next to the
        table's ``cell_count`` and ``classic`` baselines.
    embeddings_label : str, optional
        Its label (default the file name without suffix).

    Returns
    -------
    Path
        ``out_dir/run.toml``.

    Methods written: the table's own features (``precomputed``, label ``label``) unless they
    are all CellProfiler features, in which case the table is the ``classic`` baseline
    (``profile_table`` with ``derive = "classic"``, not duplicated); ``cell_count``
    (``profile_table`` with ``derive = "cell_count"``) when a count column is present; the
    embeddings when given; then ``baselines``.
    """
    from baselens._io import write_parquet_atomic, write_text_atomic

    pt = profiles if isinstance(profiles, ProfileTable) else read_profiles(profiles, **read_kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = pt.keys
    meta_cols = [c for c in pt.table.columns if c not in pt.features]
    # image-level count columns live on as Metadata_CellCount (read_profiles copies them)
    sites = pt.table[[c for c in meta_cols if str(c).startswith("Metadata_")
                      or c not in COUNT_COLUMNS]].copy()
    if "Metadata_Site" not in sites.columns:
        sites["Metadata_Site"] = 1
    ccol = pt.report.get("count_column") if "count_column" in pt.report else find_count_column(pt.table.columns)
    emb, emb_count, emb_feats = None, None, None
    if embeddings is not None:
        emb = Path(embeddings).expanduser().resolve()
        if not emb.exists():
            raise FileNotFoundError(f"embeddings file not found: {emb} (--embeddings)")
        et = read_profiles(emb, require_perturbation=False)
        counts_in_emb = [c for c in et.features if c in COUNT_COLUMNS]
        if counts_in_emb or any(c in et.table.columns for c in ("Image_Count_Cells", "Count_Cells")):
            emb_feats = [c for c in et.features if c not in COUNT_COLUMNS]  # counts are no embedding
        if ccol is None and et.report.get("count_column"):
            # the profile table has no count, the embeddings file does: it feeds cell_count
            emb_count = et.report["count_column"]
            k = [c for c in ("Metadata_Plate", "Metadata_Well") if c in et.table.columns]
            sites = sites.merge(et.table[k + ["Metadata_CellCount"]], on=k, how="left")
    write_parquet_atomic(sites, out / "load_data.parquet")
    extra = ["Metadata_CellCount"] if ("Metadata_CellCount" in pt.table.columns
                                       and "Metadata_CellCount" not in pt.features) else []
    prof_path = (out / "profiles.parquet").resolve()  # absolute: params are read from the cwd
    write_parquet_atomic(pt.table[keys + extra + pt.features], prof_path)
    key = "site" if "Metadata_Site" in keys else "well"
    classic = classic_columns(pt.features)
    own = [f for f in pt.features if f not in set(classic)]
    lines = [f"title = {_toml_str(title or f'{label}: profile table vs baselines')}", "",
             "[data]", 'load_data = "load_data.parquet"',
             "channels = []   # metadata only: representations that read no pixels", ""]
    if emb is not None:
        elabel = embeddings_label or emb.name.split(".")[0]
        feat = "" if emb_feats is None else f", features = {_toml_list(emb_feats)}"
        lines += ["# the model: embeddings of the same wells, joined by plate and well",
                  "[[methods]]", 'name = "precomputed"', f"label = {_toml_str(elabel)}",
                  f'params = {{ path = {_toml_str(emb)}, keys = "well"{feat} }}', ""]
    if own:
        feat = "" if not classic else f", features = {_toml_list(own)}"
        lines += ["[[methods]]", 'name = "precomputed"', f"label = {_toml_str(label)}",
                  f'params = {{ path = {_toml_str(prof_path)}, keys = "{key}"{feat} }}', ""]
    if classic:
        note = ("# the table's CellProfiler features: the classic baseline" if own or embeddings
                else "# this table is a CellProfiler profile: it is the classic baseline "
                     "(scored once, not also as a model)")
        lines += [note, "[[methods]]", 'name = "profile_table"', 'label = "classic"',
                  f'params = {{ path = {_toml_str(prof_path)}, derive = "classic" }}', ""]
    bl = list(baselines)
    if emb_count is not None:
        lines += [f"# cell count from the embeddings file's {emb_count}",
                  "[[methods]]", 'name = "profile_table"', 'label = "cell_count"',
                  f'params = {{ path = {_toml_str(emb)}, derive = "cell_count", '
                  f'count_column = "Metadata_CellCount" }}', ""]
        if "random" not in bl:
            bl.append("random")
    elif ccol is not None:
        lines += [f"# cell count from {ccol} (also Metadata_CellCount for the diagnostics)",
                  "[[methods]]", 'name = "profile_table"', 'label = "cell_count"',
                  f'params = {{ path = {_toml_str(prof_path)}, derive = "cell_count", '
                  f'count_column = "Metadata_CellCount", '
                  f'count_name = "{"Count_Nuclei" if ccol.startswith("Nuclei_") else "Count_Cells"}"'
                  + (', on_missing = "nan"' if pt.report.get("count_missing") else "") + " }", ""]
        if "random" not in bl:
            bl.append("random")  # the (cell_count, random) sanity pair
    for b in bl:
        lines += ["[[methods]]", f"name = {_toml_str(b)}", ""]
    cfg = out / "run.toml"
    write_text_atomic("\n".join(lines), cfg)
    return cfg


def _toml_str(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
