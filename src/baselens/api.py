"""The Python API: score a table of profiles or embeddings next to the baselines.

Modelled on scib-metrics' ``Benchmarker`` (build, run, inspect)::

    import baselens

    bench = baselens.Benchmark(table, perturbation="Metadata_broad_sample", negcon="DMSO")
    results = bench.run()
    results.scores                      # scores.parquet (results contract)
    results.leaderboard()               # headline metric per task, strictest level formed
    results.beyond_baseline()           # model vs the best baseline, with a verdict
    results.plot_levels()               # matplotlib: every batch level the design formed
    results.save("runs/x")              # scores.parquet, per_perturbation.parquet,
                                        # diagnostics/, report.html, run.json

``table`` is a pandas DataFrame (``Metadata_*`` columns plus feature columns, one row per
well or per site) or an AnnData (``obs`` metadata; features from ``X`` or ``obsm[key]``).
The run is the command line's profile-table route
(:func:`baselens.data.profiles.write_profile_run`, then
:func:`baselens.run.pipeline.run_pipeline`): the same baselines that need no pixels
(``plate_layout``, ``random``, and whatever the profile-table route adds for the columns the
table has), the same tasks at every batch level the design can form, the same files. No
second pipeline lives here.

In-memory tables are scored in this process: no dask cluster and no worker processes are
started, so a plain script without an ``if __name__ == "__main__"`` guard works. With
``load_data`` (a table of images) the image baselines are added and extraction uses the
configured executor (``execution=``, as ``[execution]`` in a run config).
"""

from __future__ import annotations

import html as _html

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from baselens.evaluate.batch_levels import LEVEL_ORDER
from baselens.evaluate.registry import headline_metric

__all__ = ["Benchmark", "Results", "IMAGE_BASELINES", "LEVEL_ORDER", "unusable_columns"]

#: Baselines added when ``load_data`` points at images (fast ones; the networks and
#: CellProfiler-style features can be asked for by name in ``methods``).
IMAGE_BASELINES: tuple[str, ...] = ("pixel_mean", "pixel_stats", "cell_count", "single_conv")

#: ``batch_keys`` names → the column a batch level reads.
_BATCH_COLUMNS = {"plate": "Metadata_Plate", "well": "Metadata_Well", "site": "Metadata_Site",
                  "batch": "Metadata_Batch", "source": "Metadata_Source"}

#: Files of a run folder that :meth:`Results.save` copies (``features/`` is a cache).
_RUN_FILES = ("scores.parquet", "per_perturbation.parquet", "beyond_baseline.parquet",
              "screen.parquet", "report.html", "run.json", "run.log")


# --------------------------------------------------------------------------- inputs
def _is_anndata(obj: Any) -> bool:
    """Duck typing: anything with ``obs`` (a DataFrame) and ``X`` is read as an AnnData."""
    return hasattr(obj, "obs") and hasattr(obj, "X") and isinstance(getattr(obj, "obs"), pd.DataFrame)


def anndata_to_frame(adata: Any, obsm_key: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """An AnnData as ``obs`` columns plus feature columns.

    Parameters
    ----------
    adata : AnnData (or any object with ``obs``, ``X`` and, for ``obsm_key``, ``obsm``)
    obsm_key : str, optional
        Take the features from ``adata.obsm[obsm_key]`` (e.g. ``"X_pca"``) instead of ``X``.

    Returns
    -------
    (DataFrame, feature column names). ``X`` columns are named by ``var_names`` when they
    are unique strings that do not collide with ``obs``, else ``f"X_{i}"``; ``obsm``
    columns are ``f"{obsm_key}_{i}"``.
    """
    obs = adata.obs.reset_index(drop=True).copy()
    if obsm_key is not None:
        obsm = getattr(adata, "obsm", None)
        if obsm is None or obsm_key not in obsm:
            keys = list(obsm.keys()) if obsm is not None else []
            raise ValueError(f"obsm_key={obsm_key!r}: the AnnData has no obsm[{obsm_key!r}] "
                             f"(obsm keys: {keys})")
        x = obsm[obsm_key]
        x = x.to_numpy() if isinstance(x, pd.DataFrame) else x
        prefix = str(obsm_key)
        names = None
    else:
        x, prefix = adata.X, "X"
        var = getattr(adata, "var_names", None)
        names = [str(v) for v in var] if var is not None else None
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(obs):
        raise ValueError(f"AnnData features have shape {x.shape}, obs has {len(obs)} rows")
    if (names is None or len(names) != x.shape[1] or len(set(names)) != len(names)
            or set(names) & set(obs.columns) or any(n.startswith("Metadata_") for n in names)):
        names = [f"{prefix}_{i}" for i in range(x.shape[1])]
    feats = pd.DataFrame(x, columns=names)
    return pd.concat([obs, feats], axis=1), names


def _apply_batch_keys(df: pd.DataFrame, batch_keys) -> pd.DataFrame:
    """Copy the user's plate/batch/source/well columns to the names the batch levels read."""
    if batch_keys is None:
        return df
    if isinstance(batch_keys, str):
        batch_keys = {"batch": batch_keys}
    elif not isinstance(batch_keys, Mapping):
        order = ("plate", "batch", "source")
        keys = list(batch_keys)
        if len(keys) > len(order):
            raise ValueError(f"batch_keys: at most {len(order)} columns (plate, batch, source) "
                             f"as a list; got {keys}. Pass a dict such as "
                             "{'plate': ..., 'batch': ..., 'source': ...}")
        batch_keys = dict(zip(order, keys))
    df = df.copy()
    for level, col in batch_keys.items():
        if level not in _BATCH_COLUMNS:
            import difflib

            close = difflib.get_close_matches(str(level), list(_BATCH_COLUMNS), n=1)
            raise ValueError(f"batch_keys: unknown key {level!r}"
                             + (f" — did you mean {close[0]!r}?" if close else "")
                             + f" (known: {', '.join(_BATCH_COLUMNS)})")
        if col not in df.columns:
            raise ValueError(f"batch_keys[{level!r}] = {col!r}: no such column "
                             f"(Metadata columns: {[c for c in df.columns if str(c).startswith('Metadata_')][:20]})")
        target = _BATCH_COLUMNS[level]
        if col != target:
            df[target] = df[col]
    return df


def _task_table(tasks) -> dict:
    """``tasks=`` → the ``[tasks]`` table of a run config."""
    if tasks is None:
        return {}
    from baselens.evaluate.registry import default_tasks
    from baselens.run.tasks import _tasks

    known = list(_tasks())
    if isinstance(tasks, str):
        tasks = [tasks]
    if isinstance(tasks, Mapping):
        table = {k: dict(v) for k, v in tasks.items()}
        names = list(table)
    else:
        names = [str(t) for t in tasks]
        table = {t: {} for t in names}
    for t in names:
        if t not in known:
            import difflib

            close = difflib.get_close_matches(t, known, n=1)
            raise ValueError(f"tasks: unknown task {t!r}"
                             + (f" — did you mean {close[0]!r}?" if close else "")
                             + f" (known: {', '.join(known)})")
    for t in default_tasks() - set(names):
        table[t] = {"enabled": False}
    for t in names:
        table[t].setdefault("enabled", True)
    return table


def _method_entries(methods) -> list[dict]:
    out = []
    for m in methods:
        if isinstance(m, str):
            out.append({"name": m})
        elif isinstance(m, Mapping) and "name" in m:
            out.append(dict(m))
        else:
            raise ValueError(f"methods: each entry is a name or a dict with 'name', got {m!r}")
    return out


def unusable_columns(table: pd.DataFrame, features: Sequence[str]) -> tuple[list[str], list[str], str]:
    """Feature columns no representation can use: any NaN/inf value, or a single value in
    every row.

    Returns
    -------
    (non-finite columns, constant columns, a sentence naming them and the rows affected)
    """
    features = list(features)
    x = table[features].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    nonfinite = [f for f, ok in zip(features, finite.all(axis=0)) if not ok]
    xf = np.where(finite, x, np.nan)
    with warnings.catch_warnings():  # all-NaN columns: spread NaN, listed as non-finite
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = (np.nanmax(xf, axis=0) - np.nanmin(xf, axis=0) if len(x)
                  else np.zeros(len(features)))
    constant = [f for f, sp in zip(features, spread) if f not in nonfinite and not (sp > 0)]

    def names(cols):
        return ", ".join(map(repr, cols[:5])) + (f" … ({len(cols)})" if len(cols) > 5 else "")

    what = "; ".join(part for part in (
        f"{len(nonfinite)} with NaN/inf values ({names(nonfinite)}; "
        f"{int((~finite.all(axis=1)).sum())} row(s) affected)" if nonfinite else "",
        f"{len(constant)} constant ({names(constant)})" if constant else "") if part)
    return nonfinite, constant, what


# --------------------------------------------------------------------------- Benchmark
class Benchmark:
    """Score a table of profiles or embeddings next to the baselines.

    Parameters
    ----------
    table : pandas.DataFrame or AnnData
        One row per well (or per site): ``Metadata_*`` columns (plate, well, perturbation
        …) and numeric feature columns; or an AnnData with that metadata in ``obs`` and the
        features in ``X`` (or ``obsm[obsm_key]``).
    perturbation : str, optional
        Column naming each row's perturbation (default: the first of
        :data:`baselens.data.profiles.PERTURBATION_COLUMNS` present).
    negcon : str, list or dict, optional
        Negative controls: perturbation value(s) (``"DMSO"``), or ``{column: value(s)}``.
        Default: ``Metadata_ControlType == "negcon"`` or the known control names.
    features : str or list, optional
        Feature columns, or their common prefix (default: every numeric non-``Metadata_``
        column).
    batch_keys : dict, list or str, optional
        Columns that define the batch levels: ``{"plate": ..., "batch": ..., "source": ...,
        "well": ...}``; a list is read as (plate, batch, source); a string names the batch.
        Default: ``Metadata_Plate`` / ``Metadata_Batch`` / ``Metadata_Source`` (and the usual
        pycytominer/JUMP spellings of plate and well).
    tasks : list or dict, optional
        Task names to score (others off), or ``{task: {argument: value}}`` as ``[tasks]`` in
        a run config. Default: the run's default tasks (those the inputs allow).
    methods : list, optional
        Baselines to score next to the table: names (``"plate_layout"``) or dicts
        ``{"name", "label", "params"}``. Default: every baseline the inputs allow —
        ``plate_layout`` and ``random`` (plus cell count / classic features when the table
        has them); with ``load_data`` also :data:`IMAGE_BASELINES`.
    annotations : path, DataFrame or list of them, optional
        Known relationships (``entity1``, ``entity2`` pair tables such as CORUM) for
        relationship recall.
    load_data : path or DataFrame, optional
        A load_data table of the same wells' images: adds the image baselines.
    label : str
        Name of the table's representation in the results (default ``"profiles"``).
    obsm_key : str, optional
        AnnData: the ``obsm`` entry holding the features.
    reference : {"negcon", "all"}
        Wells the per-plate normalization is fitted on (``"all"`` for tables without
        negative controls).
    profile : dict, optional
        ``[profile]`` table of a run config (aggregation, normalization, steps).
    execution : dict, optional
        ``[execution]`` for image extraction (in-memory tables always run in-process).
    title : str, optional
        Report title.
    drop_nonfinite_columns : bool
        Drop feature columns with a NaN/inf value or a single value (counted in
        ``inputs/dropped_columns.json`` and a warning) instead of stopping with their names.
    """

    def __init__(self, table: Any, perturbation: str | None = None,
                 negcon: str | Sequence[str] | Mapping[str, Any] | None = None, *,
                 features: str | Sequence[str] | None = None,
                 batch_keys: Mapping[str, str] | Sequence[str] | str | None = None,
                 tasks: Sequence[str] | Mapping[str, dict] | None = None,
                 methods: Sequence[str | Mapping[str, Any]] | None = None,
                 annotations: Any = None, load_data: str | os.PathLike | pd.DataFrame | None = None,
                 label: str = "profiles", obsm_key: str | None = None,
                 reference: str = "negcon", profile: Mapping[str, Any] | None = None,
                 execution: Mapping[str, Any] | None = None, title: str | None = None,
                 drop_nonfinite_columns: bool = False):
        if _is_anndata(table):
            table, feats = anndata_to_frame(table, obsm_key)
            features = feats if features is None else features
        elif obsm_key is not None:
            raise ValueError("obsm_key is for AnnData tables; a DataFrame names its features "
                             "with features=")
        elif not isinstance(table, pd.DataFrame):
            raise TypeError(f"table must be a pandas DataFrame or an AnnData, got "
                            f"{type(table).__name__} (read a file with "
                            "baselens.data.profiles.read_profile_file)")
        if reference not in ("negcon", "all"):
            raise ValueError(f"reference must be 'negcon' or 'all', got {reference!r}")
        self.table = _apply_batch_keys(table, batch_keys)
        self.perturbation, self.negcon, self.features = perturbation, negcon, features
        self.tasks, self.methods, self.annotations = tasks, methods, annotations
        self.load_data, self.label, self.reference = load_data, str(label), reference
        self.profile = dict(profile or {})
        self.execution = dict(execution or {})
        self.title = title
        self.drop_nonfinite_columns = bool(drop_nonfinite_columns)
        self.dropped_columns: dict[str, list[str]] = {}
        self._task_table = _task_table(tasks)  # errors (unknown task) before any work
        self._methods = _method_entries(methods) if methods is not None else None

    # ----------------------------------------------------------------- config
    def _profile_table(self):
        from baselens.data.profiles import read_profiles

        df = self.table
        if self.reference == "all" and self.negcon is None and "Metadata_ControlType" not in df.columns:
            df = df.assign(Metadata_ControlType="")
        pt = read_profiles(df, perturbation=self.perturbation, negcon=self.negcon,
                           features=self.features)
        return self._unusable_columns(pt)

    def _unusable_columns(self, pt):
        """Stop naming the unusable feature columns (and the fix), or drop them."""
        nonfinite, constant, what = unusable_columns(pt.table, pt.features)
        if not nonfinite and not constant:
            return pt
        if not self.drop_nonfinite_columns:
            raise ValueError(f"{pt.source}: feature columns no representation can use: {what}. "
                             "Drop them with Benchmark(..., drop_nonfinite_columns=True) "
                             "(CLI: baselens load-data ... --drop-nonfinite-columns), or fix "
                             "them in the table")
        drop = set(nonfinite) | set(constant)
        keep = [f for f in pt.features if f not in drop]
        if not keep:
            raise ValueError(f"{pt.source}: every feature column is non-finite or constant")
        self.dropped_columns = {"nonfinite": nonfinite, "constant": constant}
        warnings.warn(f"dropped {len(drop)} of {len(pt.features)} feature columns: {what}",
                      stacklevel=3)
        pt.table = pt.table.drop(columns=sorted(drop))
        pt.features = keep
        return pt

    def config(self, work_dir: str | os.PathLike):
        """Write the run's inputs into ``work_dir`` and return its :class:`RunConfig`
        (what :meth:`run` scores; useful to see or save as a TOML config)."""
        from baselens.data.profiles import write_profile_run
        from baselens.run.config import ConfigError, RunConfig

        work = Path(work_dir)
        pt = self._profile_table()
        cfg_path = write_profile_run(pt, work, label=self.label,
                                     title=self.title or f"{self.label} vs baselines")
        if self.dropped_columns:
            import json

            from baselens._io import write_text_atomic

            write_text_atomic(json.dumps({**self.dropped_columns, "n_features_kept":
                                          len(pt.features)}, indent=2),
                              work / "dropped_columns.json")
        cfg = RunConfig.from_toml(cfg_path)
        d = cfg.to_dict()
        mine = [m for m in d["methods"] if m.get("label", m["name"]) == self.label]
        baselines = [m for m in d["methods"] if m.get("label", m["name"]) != self.label]
        if self.load_data is not None:
            d["data"] = self._image_data(work, pt)
            baselines += [{"name": n} for n in IMAGE_BASELINES]
        else:
            d["execution"] = {**d.get("execution", {}), "executor": "serial"}
        if self._methods is not None:
            offered = {m["name"] for m in baselines}
            chosen = []
            for m in self._methods:
                if m["name"] in offered:
                    chosen.append(next(b for b in baselines if b["name"] == m["name"]) | m)
                else:
                    chosen.append(m)
            baselines = chosen
        d["methods"] = mine + baselines
        if self.load_data is not None:
            d["execution"] = {**d.get("execution", {}), **self.execution}
        if self.annotations is not None:
            d["data"]["annotations"] = self._annotation_paths(work)
        profile = dict(self.profile)
        if self.reference != "negcon":
            profile.setdefault("reference", self.reference)
        if profile:
            d["profile"] = {**d.get("profile", {}), **profile}
        if self._task_table:
            d["tasks"] = {**d.get("tasks", {}), **self._task_table}
        try:
            return RunConfig.from_dict(d, base_dir=work)
        except ConfigError as exc:  # in the words of this interface
            raise ValueError(f"Benchmark: {exc}") from None

    def _annotation_paths(self, work: Path) -> list[str]:
        ann = self.annotations
        items = ann if isinstance(ann, (list, tuple)) else [ann]
        paths = []
        for i, a in enumerate(items):
            if isinstance(a, pd.DataFrame):
                missing = {"entity1", "entity2"} - set(a.columns)
                if missing:
                    raise ValueError(f"annotations[{i}]: a pair table needs columns entity1, "
                                     f"entity2 (missing {sorted(missing)})")
                p = work / f"annotations_{i}.csv"
                a.to_csv(p, index=False)
                paths.append(str(p))
            else:
                p = Path(a).expanduser()
                if not p.exists():
                    raise FileNotFoundError(f"annotations: {p} not found")
                paths.append(str(p.resolve()))
        return paths

    def _image_data(self, work: Path, pt) -> dict:
        """``[data]`` for images: the user's load_data, its wells' metadata from the table."""
        ld = self.load_data
        if isinstance(ld, pd.DataFrame):
            table = ld.copy()
            base = work
        else:
            p = Path(ld).expanduser().resolve()
            if not p.exists():
                raise FileNotFoundError(f"load_data: {p} not found")
            table = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
            base = p.parent
        if not any(str(c).startswith("FileName_") for c in table.columns):
            raise ValueError("load_data: no FileName_* columns (a load_data table names one "
                             "image file per channel)")
        meta = [c for c in pt.table.columns if c not in pt.features and c not in table.columns
                and c.startswith("Metadata_")]
        if meta:
            keys = ["Metadata_Plate", "Metadata_Well"]
            for k in keys:
                if k not in table.columns:
                    raise ValueError(f"load_data: no {k} column to join the table's wells")
            table = table.assign(Metadata_Plate=table["Metadata_Plate"].astype(str))
            wells = pt.table[keys + meta].drop_duplicates(keys)
            table = table.merge(wells, on=keys, how="left")
        # PathName relative to the original table's folder stays valid
        for c in [c for c in table.columns if str(c).startswith("PathName_")]:
            table[c] = [str((base / v).resolve()) if isinstance(v, str) and v and not
                        Path(v).is_absolute() and "://" not in v else v for v in table[c]]
        from baselens._io import write_parquet_atomic

        write_parquet_atomic(table, work / "images_load_data.parquet")
        return {"load_data": str((work / "images_load_data.parquet").resolve())}

    # ----------------------------------------------------------------- run
    def run(self, out_dir: str | os.PathLike | None = None, *, progress: bool = True) -> "Results":
        """Score the table and every baseline; returns :class:`Results`.

        Parameters
        ----------
        out_dir : path, optional
            Run folder (default: a new temporary folder; :meth:`Results.save` copies it).
        progress : bool
            Stage lines on stderr (also written to ``run.log``).
        """
        from baselens.run.pipeline import run_pipeline

        out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="baselens-"))
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.config(out / "inputs")
        res = run_pipeline(cfg, out, progress=progress)
        return Results(out_dir=res.out_dir, scores=res.scores,
                       per_perturbation=res.per_perturbation, report=res.report)


# --------------------------------------------------------------------------- Results
def _lower_is_better(metric: str, task: str | None = None) -> bool:
    """Whether smaller values of ``metric`` are better (the registry's declaration; an
    undeclared metric is taken as higher-is-better)."""
    from baselens.evaluate.registry import metric_spec

    try:
        return not metric_spec(task, metric).higher_is_better
    except (KeyError, ValueError, TypeError):
        return False


def _level_key(level: str) -> int:
    return LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER)


@dataclass
class Results:
    """What :meth:`Benchmark.run` returns: the run folder's tables, and views of them."""

    out_dir: Path
    scores: pd.DataFrame
    per_perturbation: pd.DataFrame
    report: Path
    _beyond: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "Results":
        """The results of a finished run folder (``baselens run`` or :meth:`save`)."""
        d = Path(run_dir)
        if not (d / "scores.parquet").exists():
            raise FileNotFoundError(f"no scores.parquet in {d} (is it a run folder?)")
        pp = d / "per_perturbation.parquet"
        return cls(d, pd.read_parquet(d / "scores.parquet"),
                   pd.read_parquet(pp) if pp.exists() else pd.DataFrame(), d / "report.html")

    # ----------------------------------------------------------------- tables
    @property
    def levels(self) -> list[str]:
        """Batch levels this run formed, least to most stringent."""
        return sorted(pd.unique(self.scores["batch_level"].astype(str)), key=_level_key)

    def _default_level(self) -> str:
        """The strictest level formed by the retrieval tasks (else by any task)."""
        lv = [lv for lv in self.levels if lv in LEVEL_ORDER]
        return lv[-1] if lv else self.levels[-1]

    def leaderboard(self, level: str | None = None, *, metric: str | None = None) -> pd.DataFrame:
        """Each method's headline metric per task at one batch level (mean over folds and
        seeds), best first.

        Parameters
        ----------
        level : str, optional
            A batch level of this run (:attr:`levels`); default the strictest one formed.
        metric : str, optional
            Show this metric instead of each task's headline metric.

        Returns
        -------
        DataFrame indexed by (method, layer) with ``method_kind`` and one column per
        ``task: metric`` (``↓`` marks lower-is-better metrics), sorted by the first column.
        """
        level = level or self._default_level()
        s = self.scores
        if level not in set(s["batch_level"].astype(str)):
            raise ValueError(f"level {level!r} was not formed in this run (levels: {self.levels})")
        s = s[s["batch_level"].astype(str) == level]
        if metric is not None:
            s = s[s["metric"] == metric]
            if s.empty:
                raise ValueError(f"no metric {metric!r} at {level} (metrics: "
                                 f"{sorted(pd.unique(self.scores['metric']))})")
        else:
            first = s.groupby("task", sort=False)["metric"].first()
            want = {t: headline_metric(t) or m for t, m in first.items()}
            s = s[[want.get(t) == m for t, m in zip(s["task"], s["metric"])]]
        g = (s.groupby(["method", "layer", "method_kind", "task", "metric"], sort=False, observed=True)
             ["value"].mean().reset_index())
        g["column"] = [f"{t}: {m}" + (" ↓" if _lower_is_better(m, t) else "")
                       for t, m in zip(g["task"], g["metric"])]
        cols = list(pd.unique(g["column"]))
        wide = g.pivot_table(index=["method", "layer", "method_kind"], columns="column",
                             values="value", sort=False).reset_index()
        wide = wide[["method", "layer", "method_kind", *cols]]
        if cols:
            wide = wide.sort_values(cols[0], ascending=cols[0].endswith("↓"), na_position="last")
        wide = wide.set_index(["method", "layer"])
        wide.columns.name = None
        wide.attrs["batch_level"] = level
        return wide

    def beyond_baseline(self, level: str | None = None) -> pd.DataFrame:
        """Each model against the best baseline of its (task, level, metric), with the
        ``verdict`` (``"beats"``, ``"not distinguishable"``, ``"worse"``, ``"no baseline"``).

        Parameters
        ----------
        level : str, optional
            Keep one batch level (default: every level).
        """
        if self._beyond is None:
            p = self.out_dir / "beyond_baseline.parquet"
            if p.exists():
                self._beyond = pd.read_parquet(p)
            else:
                from baselens.diagnose.beyond_baseline import beyond_best_baseline

                self._beyond = beyond_best_baseline(self.scores, self.per_perturbation)
        bb = self._beyond
        if "verdict" not in bb.columns:
            warnings.warn("this baselens version's beyond-baseline table has no 'verdict' "
                          "column (no confidence intervals or tests yet): read 'difference' "
                          "as a point estimate, not as a verdict", stacklevel=2)
        if level is not None:
            bb = bb[bb["batch_level"].astype(str) == level]
        return bb.reset_index(drop=True)

    def findings(self, kind: str | None = None) -> pd.DataFrame:
        """The run's findings (``diagnostics/findings.parquet``): what the report and
        ``baselens compare`` say, one row per finding with the numbers it rests on and its
        sentence (:mod:`baselens.diagnose.findings`).

        Parameters
        ----------
        kind : str, optional
            Keep one kind (``"verdict"``, ``"confound"``, ``"sample_size"``, ...).
        """
        from baselens.diagnose.findings import read_findings

        f = read_findings(self.out_dir)
        return f if kind is None else f[f["kind"] == kind].reset_index(drop=True)

    def verdicts(self) -> pd.DataFrame:
        """Verdict of each model per task (headline metric) and batch level: one row per
        (method, layer, task), one column per level, least to most stringent."""
        bb = self.beyond_baseline()
        if "verdict" not in bb.columns:
            raise ValueError("verdicts need the 'verdict' column of beyond_baseline "
                             "(not in this baselens version)")
        bb = bb[[headline_metric(t) == m for t, m in zip(bb["task"], bb["metric"])]]
        wide = bb.pivot_table(index=["method", "layer", "task"], columns="batch_level",
                              values="verdict", aggfunc="first", sort=False)
        wide = wide[sorted(wide.columns, key=_level_key)]
        wide.columns.name = None
        return wide

    # ----------------------------------------------------------------- plots
    def _headline_rows(self, task: str | None, metric: str | None) -> pd.DataFrame:
        s = self.scores
        tasks = [task] if task else list(pd.unique(s["task"]))
        keep = np.zeros(len(s), dtype=bool)
        for t in tasks:
            m = metric or headline_metric(t) or s.loc[s["task"] == t, "metric"].iloc[0]
            keep |= ((s["task"] == t) & (s["metric"] == m)).to_numpy()
        if not keep.any():
            raise ValueError(f"no scores for task={task!r} metric={metric!r} "
                             f"(tasks: {list(pd.unique(s['task']))})")
        return s[keep]

    def plot_levels(self, task: str | None = None, metric: str | None = None, ax=None):
        """Headline metric of every method at each batch level formed (one panel per task).

        Returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        s = self._headline_rows(task, metric)
        g = (s.groupby(["task", "metric", "method", "layer", "method_kind", "batch_level"],
                       observed=True)["value"].mean().reset_index())
        tasks = list(pd.unique(g["task"]))
        if ax is not None and len(tasks) > 1:
            raise ValueError("ax= draws one task: pass task=")
        if ax is None:
            fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
            axes = list(axes[0])
        else:
            fig, axes = ax.figure, [ax]
        for a, t in zip(axes, tasks):
            d = g[g["task"] == t]
            levels = sorted(pd.unique(d["batch_level"]), key=_level_key)
            x = {lv: i for i, lv in enumerate(levels)}
            for (m, layer, kind), dm in d.groupby(["method", "layer", "method_kind"], sort=False):
                dm = dm.sort_values("batch_level", key=lambda c: c.map(x))
                name = m if layer == "default" else f"{m}/{layer}"
                a.plot(dm["batch_level"].map(x), dm["value"], marker="o",
                       ls="--" if kind == "baseline" else "-", label=name)
            a.set_xticks(range(len(levels)), levels)
            metric_name = d["metric"].iloc[0]
            a.set_title(t, fontsize=10)
            a.set_ylabel(metric_name + (" (lower is better)" if _lower_is_better(metric_name, t) else ""))
            a.set_xlabel("batch level (least → most stringent)")
        axes[-1].legend(fontsize=7, frameon=False, loc="best")
        fig.tight_layout()
        return fig

    def plot_layers(self, task: str | None = None, level: str | None = None,
                    metric: str | None = None, ax=None):
        """Headline metric per layer of each multi-layer representation (single-layer
        methods are drawn as one point). Returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        level = level or self._default_level()
        s = self._headline_rows(task, metric)
        s = s[s["batch_level"].astype(str) == level]
        if s.empty:
            raise ValueError(f"nothing scored at level {level!r} (levels: {self.levels})")
        t = task or s["task"].iloc[0]
        s = s[s["task"] == t]
        g = s.groupby(["method", "layer"], sort=False, observed=True)["value"].mean().reset_index()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 3.6))
        else:
            fig = ax.figure
        for m, dm in g.groupby("method", sort=False):
            ax.plot(range(len(dm)), dm["value"], marker="o", label=m)
        ax.set_xlabel("layer (in the representation's order)")
        ax.set_ylabel(s["metric"].iloc[0])
        ax.set_title(f"{t} at {level}", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return fig

    def plot_per_perturbation(self, x: str | None = None, y: str | None = None, *,
                              task: str = "replicate_retrieval", metric: str | None = None,
                              level: str | None = None, ax=None):
        """Per-perturbation values of two methods against each other (default: the best
        baseline on x, the first model on y), with the diagonal. Returns the Figure."""
        import matplotlib.pyplot as plt

        p = self.per_perturbation
        if p is None or p.empty:
            raise ValueError("this run has no per-perturbation values")
        p = p[p["task"] == task]
        if p.empty:
            raise ValueError(f"no per-perturbation values for task {task!r} "
                             f"(tasks: {list(pd.unique(self.per_perturbation['task']))})")
        level = level or sorted(pd.unique(p["batch_level"].astype(str)), key=_level_key)[-1]
        p = p[p["batch_level"].astype(str) == level]
        metric = metric or p["metric"].iloc[0]
        p = p[p["metric"] == metric]
        kinds = p.drop_duplicates("method").set_index("method")["method_kind"]
        if y is None:
            models = [m for m, k in kinds.items() if k != "baseline"]
            y = models[0] if models else kinds.index[0]
        if x is None:
            bb = self.beyond_baseline(level)
            hit = bb[(bb["task"] == task) & (bb["method"] == y) & bb["best_baseline"].notna()]
            x = (hit["best_baseline"].iloc[0] if len(hit) else
                 next((m for m, k in kinds.items() if k == "baseline"), kinds.index[0]))
        wide = (p[p["method"].isin([x, y])]
                .groupby(["perturbation", "method"], observed=True)["value"].mean().unstack())
        for m in (x, y):
            if m not in wide.columns:
                raise ValueError(f"no per-perturbation {metric} for method {m!r} "
                                 f"(methods: {list(kinds.index)})")
        wide = wide.dropna()
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.2, 4.2))
        else:
            fig = ax.figure
        ax.scatter(wide[x], wide[y], s=10, alpha=0.7)
        lo = float(np.nanmin(wide.to_numpy())) if len(wide) else 0.0
        hi = float(np.nanmax(wide.to_numpy())) if len(wide) else 1.0
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"{x} ({metric})")
        ax.set_ylabel(f"{y} ({metric})")
        ax.set_title(f"{task} at {level}: {len(wide)} perturbations", fontsize=10)
        fig.tight_layout()
        return fig

    # ----------------------------------------------------------------- output
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Copy the run's files (scores.parquet, per_perturbation.parquet, screen.parquet,
        beyond_baseline.parquet, diagnostics/, report.html, run.json, run.log) into
        ``out_dir``; returns the copied report's path."""
        dst = Path(out_dir)
        src = self.out_dir
        if dst.resolve() == src.resolve():
            return self.report
        dst.mkdir(parents=True, exist_ok=True)
        for name in _RUN_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, dst / name)
        if (src / "diagnostics").is_dir():
            shutil.copytree(src / "diagnostics", dst / "diagnostics", dirs_exist_ok=True,
                            copy_function=shutil.copyfile)
        return dst / "report.html"

    def _repr_html_(self) -> str:
        try:
            lb = self.leaderboard()
        except ValueError as exc:
            return f"<p>baselens results: {exc}</p>"
        level = lb.attrs.get("batch_level")
        head = (f"<p><b>baselens</b> — {len(lb)} representations, levels formed: "
                f"{', '.join(self.levels)}; leaderboard at <b>{level}</b> "
                f"(report: <code>{self.report}</code>)</p>")
        try:  # the run's plain-language verdicts and confounds first, as in the report
            f = self.findings()
            top = f[f["kind"].isin(["confound", "model_summary", "sample_size"])]["sentence"]
            head += "".join(f"<p>{_html.escape(str(t))}</p>" for t in top.head(8))
        except (FileNotFoundError, KeyError, ValueError):
            pass
        html = head + lb.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                verdicts = self.verdicts()
        except (ValueError, KeyError):
            return html  # no verdicts in this version: the leaderboard alone
        return (html + "<p>Beyond the best baseline (headline metric, per batch level):</p>"
                + verdicts.to_html(na_rep="–"))

    def __repr__(self) -> str:
        methods = list(pd.unique(self.scores["method"]))
        return (f"Results({len(methods)} methods, tasks {list(pd.unique(self.scores['task']))}, "
                f"levels {self.levels}, out_dir={str(self.out_dir)!r})")
