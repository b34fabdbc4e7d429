"""The tissue pipeline: H&E spots → representations → gene-expression probe → report.

The arXiv 2603.13377 paper's second biological scale (§4.2, §5.3, Appendix C.3, E): H&E patches paired
with spatial-transcriptomics expression (HEST-1k), scored by the HEST-Benchmark protocol
(:mod:`baselens.evaluate.gene_expression`: PCA-256 + ridge per gene, Pearson r on held-out
patients). ``run_tissue_pipeline(cfg, out_dir)`` writes the same results contract as the
Cell Painting pipeline (:mod:`baselens.run.pipeline`), so the diagnostics and the report
read it unchanged:

``scores.parquet``
    One row per (method, layer, task, batch_level, metric, fold, seed). ``task`` is the
    dataset's ``Metadata_Task`` (the HEST subset: ``IDC``, ``PRAD``, … or ``synthetic``).
    ``batch_level`` is ``NSPT`` — *not same patient*: every split is patient-stratified
    (HEST's own ``splits/`` when the data has them, else leave-patients-out), the only
    level the HEST protocol defines. Metrics (per fold, means over genes; ``n`` = genes
    averaged):

    * ``pearson`` — the HEST score;
    * ``pearson_count_matched`` — the same predictions scored within strata of equal
      cell count (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) §5.3; needs nuclei);
    * ``pearson_<driver>`` — synthetic tissue only: the mean over the genes of one planted
      driver (``density``, ``clustering``, ``regularity``, ``appearance``, ``mixed``).
``per_perturbation.parquet``
    One row per (method, layer, task, gene, fold) for ``pearson`` and
    ``pearson_count_matched``; the gene is in ``perturbation``.
``beyond_baseline.parquet``, ``diagnostics/``
    :func:`baselens.diagnose.beyond_baseline.beyond_best_baseline` with paired Wilcoxon
    tests over genes; ``agreement`` (Spearman of spot–spot similarity rankings, CKA) and
    ``dimensionality`` on a seeded subsample of spots; the Cell Painting–specific tables
    (``residualized``, ``assay_confounds``, ``phenotype_classes``) are written empty.
    Plus ``tissue_genes.parquet`` (``task, gene, driver``) and ``tissue_methods.parquet``
    (``method, method_kind, modality, name``) for the report's tissue panels
    (:mod:`baselens.report.tissue`).
``features/``
    ``<label>.<layer>.parquet`` (``Metadata_Spot`` + features) and ``<label>.json`` (the
    cache key: extractor, params, code version, data identity), written by the screen
    pipeline's :func:`~baselens.run.pipeline.write_feature_cache` from chunks of spots. A
    re-run extracts nothing.

Representations are the registry's tissue extractors (``baselens list``, modality
``tissue``; :func:`baselens.extract.tissue.spot_extractor`) or networks; drops are
counted in a :class:`~baselens.profile.log.FilterLog`; the score tables are written by
:func:`~baselens.run.pipeline.write_results`.
``run.json``, ``run.log``, ``report.html``

Config (TOML; see ``protocols/hest_synthetic.toml``)::

    title = "..."
    [data.synthetic_tissue]          # or [data.hest]
    preset = "demo"                  # demo | quick, plus SyntheticTissueConfig overrides
    # [data.hest]
    # root = "${data_dir}/bench_data"; task = "IDC"; coarsen = "1nn"; genes = [...]
    [[methods]]
    name = "tissue_count"            # `baselens list`, tissue representations
    [tasks.gene_expression]
    n_components = 256
    model = "ridge"                  # ridge | xgboost
    [execution]
    batch_size = 32
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import baselens
from baselens._io import write_parquet_atomic
from baselens.profile.log import FilterLog
from baselens.run.config import (  # noqa: F401  (the tissue config lives with the screen's)
    DEFAULT_TISSUE_METHODS,
    TissueConfig,
    is_tissue_config,
    is_tissue_config_file,
    synthetic_tissue_config,
)

__all__ = ["BATCH_LEVEL", "DEFAULT_TISSUE_METHODS", "TissueConfig", "is_tissue_config",
           "is_tissue_config_file", "run_tissue_pipeline", "tissue_splits"]

#: The batch level of every tissue score: not same patient (HEST's patient-stratified splits).
BATCH_LEVEL = "NSPT"


# --------------------------------------------------------------------------- data
def _load_data(cfg: TissueConfig, out: Path, say) -> tuple[Any, dict]:
    """The :class:`~baselens.data.hest.TissueDataset` and a description of where it came
    from (the data part of the feature cache key)."""
    from baselens.data.hest import coarsen_1nn, read_hest

    data = cfg.data
    if "synthetic_tissue" in data:
        from baselens.data.tissue import generate_tissue

        syn = synthetic_tissue_config(data["synthetic_tissue"])
        t = time.perf_counter()
        root = Path(generate_tissue(syn, out / "data"))
        say(f"data: synthetic tissue ready at {root} ({time.perf_counter() - t:.1f} s)")
        ds = read_hest(root)
        ident = {"synthetic_tissue": syn.to_dict()}
        coarsen = "none"
    else:
        h = data["hest"]
        root = cfg.resolve(h["root"])
        ds = read_hest(root, h.get("task"), genes=h.get("genes"), sample_ids=h.get("sample_ids"),
                       **({"n_genes": h["n_genes"]} if "n_genes" in h else {}))
        coarsen = h.get("coarsen", "none")
        ident = {"hest": {**h, "root": str(root)}, "files": _file_signature(ds)}
    if coarsen == "1nn":
        n0 = len(ds)
        ds = coarsen_1nn(ds, data.get("hest", {}).get("grid", "auto"))
        say(f"data: 1NN coarsening (arXiv 2603.13377 C.3): {n0} → {len(ds)} spots")
    ident["coarsen"] = coarsen
    return ds, ident


def _file_signature(ds) -> list:
    """(name, size, mtime) of the task folder's patch files: new pixels, new features."""
    tdir = Path(ds.info.get("task_dir", ds.root or "."))
    files = sorted((tdir / "patches").glob("*.h5")) if (tdir / "patches").is_dir() else []
    return [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in files]


def _data_identity(ds, ident: dict) -> str:
    keys = [c for c in ("Metadata_Spot", "Metadata_Sample", "Metadata_X", "Metadata_Y")
            if c in ds.spots.columns]
    h = hashlib.sha256()
    h.update(json.dumps(ident, sort_keys=True, default=str).encode())
    h.update(pd.util.hash_pandas_object(ds.spots[keys], index=False).to_numpy().tobytes())
    h.update(np.asarray(ds.n_cells, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _finite_targets(ds, say, log: FilterLog) -> Any:
    """Drop spots whose targets are not all finite (counted in run.json)."""
    ok = np.isfinite(ds.targets.to_numpy(dtype=np.float64)).all(axis=1)
    if ok.all():
        return ds
    bad = ds.spots.loc[~ok, "Metadata_Spot"].astype(str).tolist()
    log.add("data", "spots", int((~ok).sum()), int(ok.sum()), "a target gene is not finite",
            bad[:5])
    say(f"data: {int((~ok).sum())} spot(s) with a non-finite target removed (e.g. {bad[0]})")
    return ds.subset(np.flatnonzero(ok))


# --------------------------------------------------------------------------- features
class _Layers(dict):
    """``{layer: features file}`` read on access as an (n_spots, d) float32 array, so a run
    holds one representation layer at a time, not every method's features at once."""

    def __getitem__(self, layer):
        df = pd.read_parquet(dict.__getitem__(self, layer))
        return df.drop(columns=["Metadata_Spot"]).to_numpy(dtype=np.float32)

    def items(self):
        return ((k, self[k]) for k in self)

    def values(self):
        return (self[k] for k in self)

    def shape(self, layer) -> tuple[int, int]:
        import pyarrow.parquet as pq

        md = pq.read_metadata(dict.__getitem__(self, layer))
        return md.num_rows, md.num_columns - 1


def _read_cached(feat_dir: Path, label: str, key: str, spots: pd.Series) -> dict | None:
    """A cached representation (:func:`baselens.run.pipeline.feature_manifest`) whose
    spots are ``spots`` in order; its layers are read when used (:class:`_Layers`)."""
    from baselens.run.pipeline import feature_manifest

    found = feature_manifest(feat_dir, label, key)
    if found is None:
        return None
    info, paths = found
    want = spots.astype(str).reset_index(drop=True)
    for p in paths.values():
        got = pd.read_parquet(p, columns=["Metadata_Spot"])["Metadata_Spot"].astype(str)
        if not got.equals(want):
            return None
    return {"kind": info.get("kind", "model"), "layers": _Layers(paths)}


def _chunks(ds, ex, chunk_size: int, label: str):
    """``{layer: DataFrame(Metadata_Spot, f0…)}`` per chunk of spots (float32, as cached);
    all spots at once for a representation that is not per spot (``ex.per_spot``)."""
    n = len(ds)
    size = chunk_size if getattr(ex, "per_spot", False) else max(n, 1)
    spots = ds.spots["Metadata_Spot"].astype(str).to_numpy()
    for c0 in range(0, n, size):
        idx = np.arange(c0, min(n, c0 + size))
        layers = ex(ds if len(idx) == n else ds.subset(idx), None)
        out = {}
        for layer, x in layers.items():
            x = np.asarray(x, dtype=np.float32)
            if x.shape[0] != len(idx):
                raise RuntimeError(f"extract: {label}/{layer} has {x.shape[0]} rows for "
                                   f"{len(idx)} spots")
            df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
            df.insert(0, "Metadata_Spot", spots[idx])
            out[layer] = df
        yield out


def _chunk_size(execution: dict, batch_size: int) -> int:
    """Spots per chunk: ``[execution] chunk_size`` rounded up to whole batches of the
    networks (``batch_size``) and of the GNNs (64 graphs), so every spot sees the same
    batch as without chunks."""
    from math import lcm

    from baselens.run.execution import DEFAULT_CHUNK_SIZE

    unit = lcm(int(batch_size), 64)
    want = int(execution.get("chunk_size", max(4 * DEFAULT_CHUNK_SIZE, batch_size)))
    return max(unit, -(-want // unit) * unit)


def _extract(cfg: TissueConfig, ds, data_id: str, out: Path, say) -> tuple[dict, dict]:
    """``{label: {"kind", "layers": {layer: (n_spots, d)}}}`` and seconds per label."""
    from baselens.run.pipeline import method_key

    feat_dir = out / "features"
    feat_dir.mkdir(parents=True, exist_ok=True)
    spots = ds.spots["Metadata_Spot"]
    reps: dict[str, dict] = {}
    todo = []
    for m in cfg.methods:
        label = m.get("label", m["name"])
        key = method_key(m, data_id)
        cached = _read_cached(feat_dir, label, key, spots)
        if cached is not None:
            reps[label] = cached
            say(f"extract: {label} reused from cache ({len(spots)} spots)")
        else:
            todo.append((label, m, key))
    spent: dict[str, float] = {}
    if todo:
        from baselens.run import execution

        batch_size = int(cfg.execution.get("batch_size", 32))
        shared = {"ds": ds, "feat_dir": str(feat_dir), "batch_size": batch_size,
                  "chunk_size": _chunk_size(cfg.execution, batch_size)}
        executor = execution.make_executor(cfg.execution, {}, len(todo), [])
        with executor:
            say(f"extract: {len(todo)} representation(s) of {len(spots)} spots on "
                f"{executor.describe()}")
            if executor.dashboard_link:
                say(f"extract: dask dashboard {executor.dashboard_link}")
            for done in executor.map_calls(_extract_method, todo, shared):
                label = done["label"]
                rep = _read_cached(feat_dir, label, done["key"], spots)
                if rep is None:
                    raise RuntimeError(f"extract: {label}: its features were not written "
                                       "(a worker lost?); run again to compute them")
                reps[label] = rep
                spent[label] = done["seconds"]
                dims = ", ".join(f"{k} {rep['layers'].shape(k)[1]}" for k in rep["layers"])
                say(f"extract: {label} ({rep['kind']}; {dims} dims) {spent[label]:.1f} s")
    # the config's order, not the order the workers finished in
    order = [m.get("label", m["name"]) for m in cfg.methods]
    return {lb: reps[lb] for lb in order}, {lb: spent[lb] for lb in order if lb in spent}


def _extract_method(item: tuple, shared: dict) -> dict:
    """One representation of every spot, on a worker: computed chunk by chunk of spots
    (:func:`_chunk_size`) and streamed into the shared feature cache
    (:func:`baselens.run.pipeline.write_feature_cache`); returns its label, key and time."""
    from baselens.extract.tissue import spot_extractor
    from baselens.run.pipeline import write_feature_cache

    label, m, key = item
    ds, feat_dir = shared["ds"], Path(shared["feat_dir"])
    t = time.perf_counter()
    ex = spot_extractor({**m, "label": label}, shared["batch_size"])
    write_feature_cache(feat_dir, label, key, m,
                        _chunks(ds, ex, shared["chunk_size"], label), kind=ex.kind)
    return {"label": label, "key": key, "seconds": time.perf_counter() - t}


def modality(m: dict) -> str:
    """What a tissue representation sees: image, structure, count, pixel, reference, null."""
    from baselens.extract.tissue import tissue_name

    name = tissue_name(m["name"]).removeprefix("tissue_")
    params = m.get("params", {}) or {}
    if name == "ground_truth":
        return "reference"
    if name == "random":
        return "null"
    if name == "count":
        return "count"
    if name.startswith("pixel"):
        return "pixel"
    if name in ("structure_image", "gcn", "egnn", "points") or \
            str(params.get("input", "image")) == "structure":
        return "structure"
    return "image"


# --------------------------------------------------------------------------- splits
def tissue_splits(spots: pd.DataFrame, *, use_hest: bool = True, n_splits: int = 5,
                  seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Patient-stratified splits of one task's spots and how they were made.

    HEST's own splits when the data carry them (``Metadata_Fold``: the test split holding
    each sample; test = the fold's spots, train = every other spot) and there are ≥ 2;
    else :func:`~baselens.evaluate.gene_expression.patient_folds` on ``Metadata_Patient``.
    """
    from baselens.evaluate.gene_expression import patient_folds

    if use_hest and "Metadata_Fold" in spots.columns:
        f = pd.to_numeric(spots["Metadata_Fold"], errors="coerce").fillna(-1).to_numpy()
        ks = sorted(int(k) for k in np.unique(f) if k >= 0)
        if len(ks) >= 2:
            return ([(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in ks],
                    f"HEST splits ({len(ks)} test splits from splits/test_<k>.csv)")
    groups = spots["Metadata_Patient"].astype(str).to_numpy()
    folds = patient_folds(groups, n_splits=n_splits, seed=seed)
    n_p = len(np.unique(groups))
    how = ("leave-one-patient-out" if n_p <= n_splits else f"GroupKFold({n_splits}) over patients")
    return folds, f"{how} ({n_p} patients, {len(folds)} folds)"


# --------------------------------------------------------------------------- evaluate
def _score_rows(res, ident: dict, task: str, drivers: dict[str, str], seed: int) -> tuple[list, list]:
    """Results-contract rows of one probe result (module docstring)."""
    pg = res.per_gene
    base = {**ident, "task": task, "batch_level": BATCH_LEVEL, "seed": seed}
    rows = []
    metrics = [("pearson", None, "pearson")]
    if "pearson_count_matched" in pg.columns:
        metrics.append(("pearson_count_matched", None, "pearson_count_matched"))
    for d in ("density", "clustering", "regularity", "appearance", "mixed"):
        genes = [g for g, v in drivers.items() if v == d]
        if genes:
            metrics.append((f"pearson_{d}", genes, "pearson"))
    n_genes = len(res.genes)
    for metric, genes, column in metrics:
        fs = res.fold_scores(column, genes)
        for r in fs.itertuples(index=False):
            missing = (len(genes) if genes is not None else n_genes) - int(r.n)
            warn = (f"{missing} gene(s) without a value in this fold (constant in the test "
                    "spots or predicted as a constant)" if missing > 0 else "")
            rows.append({**base, "metric": metric, "fold": int(r.fold), "value": float(r.value),
                         "n": int(r.n), "warning": warn})
    per = []
    for column in ("pearson", "pearson_count_matched"):
        if column not in pg.columns:
            continue
        sub = pg[["fold", "gene", column]].dropna()
        per.append(pd.DataFrame({**{k: v for k, v in base.items() if k != "seed"},
                                 "perturbation": sub["gene"].astype(str).to_numpy(),
                                 "metric": column, "value": sub[column].to_numpy(dtype=float),
                                 "fold": sub["fold"].to_numpy(dtype=np.int64)}))
    return rows, per


def _evaluate(cfg: TissueConfig, ds, reps: dict, say, log: FilterLog) -> tuple[pd.DataFrame,
                                                                          pd.DataFrame, dict]:
    from baselens.evaluate.gene_expression import gene_expression_probe
    from baselens.run.pipeline import PER_PERT_COLUMNS, SCORE_COLUMNS

    ge = cfg.gene_expression
    seed = int(ge.get("seed", 0))
    n_splits = int(ge.get("n_splits", 5))
    probe_kw = {k: ge[k] for k in ("n_components", "model", "alpha", "stratum_size",
                                   "xgb_params", "n_jobs") if k in ge}
    drivers = {}
    if getattr(ds, "gene_drivers", None) is not None and "driver" in ds.gene_drivers.columns:
        drivers = {str(g): str(v) for g, v in ds.gene_drivers["driver"].items()}
    counts = np.asarray(ds.n_cells, dtype=np.float64)
    use_counts = bool(ge.get("count_matched", True)) and len(np.unique(counts)) > 1
    if bool(ge.get("count_matched", True)) and not use_counts:
        log.add("evaluate", "metrics", 1, 0, "pearson_count_matched skipped: every spot has "
                "the same number of nuclei (no segmentation?)")
    tasks = ds.spots["Metadata_Task"].astype(str).to_numpy()
    score_rows, per_frames, split_info = [], [], {}
    by_label = {m.get("label", m["name"]): m for m in cfg.methods}
    for task in pd.unique(tasks):
        idx = np.flatnonzero(tasks == task)
        spots = ds.spots.iloc[idx].reset_index(drop=True)
        splits, how = tissue_splits(spots, use_hest=bool(ge.get("hest_splits", True)),
                                    n_splits=n_splits, seed=seed)
        split_info[task] = {"splits": how, "n_spots": int(len(idx)),
                            "n_patients": int(spots["Metadata_Patient"].nunique()),
                            "n_genes": int(ds.targets.shape[1])}
        say(f"evaluate: {task}: {len(idx)} spots, {ds.targets.shape[1]} genes, {how}")
        y = ds.targets.iloc[idx]
        groups = spots["Metadata_Patient"].astype(str).to_numpy()
        for label, rep in reps.items():
            m = by_label[label]
            mseed = int((m.get("params") or {}).get("seed", 0))
            for layer, x in rep["layers"].items():
                t = time.perf_counter()
                res = gene_expression_probe(x[idx], y, groups, splits=splits, seed=seed,
                                            counts=counts[idx] if use_counts else None,
                                            **probe_kw)
                ident = {"method": label, "method_kind": rep["kind"], "layer": layer}
                rows, per = _score_rows(res, ident, task, drivers, mseed)
                score_rows += rows
                per_frames += per
                mean = res.fold_scores()["value"].mean()
                say(f"evaluate: {label}/{layer}: pearson={mean:.3f} "
                    f"({time.perf_counter() - t:.1f} s)")
    scores = pd.DataFrame(score_rows)
    scores = scores[SCORE_COLUMNS] if len(scores) else pd.DataFrame(columns=SCORE_COLUMNS)
    scores["fold"] = scores["fold"].astype("int64")
    scores["seed"] = scores["seed"].astype("int64")
    scores["n"] = scores["n"].astype("int64")
    per = (pd.concat(per_frames, ignore_index=True)[PER_PERT_COLUMNS] if per_frames
           else pd.DataFrame(columns=PER_PERT_COLUMNS))
    return scores, per, split_info


# --------------------------------------------------------------------------- diagnose
def _profile_sets(ds, reps: dict, max_spots: int, seed: int) -> list:
    """Spot 'profiles' (standardized features of a seeded subsample of spots; each spot its
    own item) for the agreement and dimensionality diagnostics."""
    from baselens.diagnose.run import ProfileSet

    n = len(ds)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(max_spots, n), replace=False))
    meta = pd.DataFrame({"Metadata_Perturbation": ds.spots["Metadata_Spot"].astype(str)
                         .to_numpy()[idx], "Metadata_ControlType": ""})
    sets = []
    for label, rep in reps.items():
        for layer, x in rep["layers"].items():
            a = np.asarray(x[idx], dtype=np.float64)
            sd = a.std(axis=0)
            a = (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            feats = [f"f{i}" for i in range(a.shape[1])]
            prof = pd.concat([meta, pd.DataFrame(a, columns=feats)], axis=1)
            sets.append(ProfileSet(method=label, method_kind=rep["kind"], layer=layer,
                                   profiles=prof, features=feats))
    return sets


def _diagnose(cfg: TissueConfig, ds, reps: dict, scores: pd.DataFrame, per: pd.DataFrame,
              out: Path, say, log: FilterLog) -> dict[str, pd.DataFrame]:
    """beyond_baseline (+ paired Wilcoxon over genes), agreement, dimensionality; the Cell
    Painting–only tables written empty so the report says they do not apply."""
    from baselens.diagnose.agreement import agreement
    from baselens.diagnose.beyond_baseline import beyond_best_baseline
    from baselens.diagnose.dimensionality import dimensionality
    from baselens.diagnose.run import DIAGNOSTICS, derived_tables, empty_table, parquet_safe
    from baselens.evaluate.registry import metrics_table

    d = out / "diagnostics"
    tables: dict[str, pd.DataFrame] = {}
    # the task column is the dataset's task (IDC, PRAD, …): every one is the registry's
    # gene_expression task, whose declarations (metrics, pairing over genes) apply
    alias = {str(t): "gene_expression" for t in pd.unique(scores["task"].astype(str))}
    tables["metrics"] = metrics_table(scores, alias)
    tables["beyond_baseline"] = beyond_best_baseline(scores, per, task_alias=alias)
    dcfg = cfg.diagnostics
    if dcfg.get("enabled", True):
        sets = _profile_sets(ds, reps, int(dcfg.get("max_spots", 400)),
                             int(cfg.gene_expression.get("seed", 0)))
        tables["agreement"] = agreement(sets)
        tables["dimensionality"] = dimensionality(sets)
    from baselens.diagnose.findings import findings

    tables["findings"] = findings(scores, tables["beyond_baseline"], tables["metrics"],
                                  per_perturbation=per,
                                  dimensionality=tables.get("dimensionality"))
    mt = pd.DataFrame([{"method": m.get("label", m["name"]),
                        "method_kind": reps[m.get("label", m["name"])]["kind"],
                        "modality": modality(m), "name": m["name"]} for m in cfg.methods])
    # what the report draws and says of modalities is decided in diagnose
    tables.update(derived_tables(scores, per, tables, mt))
    for name in DIAGNOSTICS:
        if name not in tables:
            tables[name] = empty_table(name)
            log.add(f"diagnose: {name}", "tables", 0, 0,
                    "not applicable to spots (Cell Painting wells only)", quiet=True)
    for name, df in tables.items():
        write_parquet_atomic(parquet_safe(df), d / f"{name}.parquet")
    # the report's tissue panels: gene drivers and representation modalities
    genes = pd.DataFrame({"gene": [str(g) for g in ds.targets.columns]})
    drv = getattr(ds, "gene_drivers", None)
    genes["driver"] = ([str(drv["driver"].get(g, "")) for g in genes["gene"]]
                       if drv is not None and "driver" in drv.columns else "")
    tasks = pd.unique(ds.spots["Metadata_Task"].astype(str))
    genes = pd.concat([genes.assign(task=t) for t in tasks], ignore_index=True)
    write_parquet_atomic(genes[["task", "gene", "driver"]], d / "tissue_genes.parquet")
    write_parquet_atomic(mt, d / "tissue_methods.parquet")
    write_parquet_atomic(tables["beyond_baseline"].pipe(parquet_safe), out / "beyond_baseline.parquet")
    return tables


# --------------------------------------------------------------------------- driver
def run_tissue_pipeline(cfg: TissueConfig, out_dir: str | Path, *, progress: bool = True):
    """Run data → representations → gene-expression probe → diagnostics → report.

    Returns a :class:`baselens.run.pipeline.RunResult`.
    """
    from baselens.run.pipeline import (Progress, RunResult, write_report_and_run_info,
                                       write_results)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = Progress(progress, out / "run.log")
    log = FilterLog()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    ds, ident = _load_data(cfg, out, say)
    ds = _finite_targets(ds, say, log)
    data_id = _data_identity(ds, ident)
    timings["data"] = time.perf_counter() - t
    n_cells = np.asarray(ds.n_cells)
    say(f"data: {len(ds)} spots, {ds.spots['Metadata_Sample'].nunique()} samples, "
        f"{ds.spots['Metadata_Patient'].nunique()} patients, {ds.targets.shape[1]} genes, "
        f"{n_cells.mean():.1f} nuclei per spot on average")

    t = time.perf_counter()
    reps, spent = _extract(cfg, ds, data_id, out, say)
    timings["extract"] = time.perf_counter() - t

    t = time.perf_counter()
    scores, per, split_info = _evaluate(cfg, ds, reps, say, log)
    timings["evaluate"] = time.perf_counter() - t
    write_results(out, scores, per)

    t = time.perf_counter()
    diag = _diagnose(cfg, ds, reps, scores, per, out, say, log)
    timings["diagnose"] = time.perf_counter() - t
    say(f"diagnose: {', '.join(sorted(diag))} ({timings['diagnose']:.1f} s)")

    run_info = {
        "title": cfg.title,
        "kind": "tissue",
        "baselens_version": baselens.__version__,
        "python": platform.python_version(),
        "config": cfg.to_dict(),
        "data_identity": data_id,
        "n_spots": int(len(ds)),
        "n_samples": int(ds.spots["Metadata_Sample"].nunique()),
        "n_patients": int(ds.spots["Metadata_Patient"].nunique()),
        "genes": [str(g) for g in ds.targets.columns],
        "tasks": split_info,
        "data_info": _jsonable(getattr(ds, "info", {})),
        "filters": log.to_records(),
        "extract_s": {k: round(v, 2) for k, v in spent.items()},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    report = write_report_and_run_info(out, cfg.title, run_info, _report_context(run_info),
                                       timings, say)
    return RunResult(out, scores, per, report, timings)


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def _report_context(info: dict) -> dict:
    data = info["config"]["data"]
    source = (f"synthetic tissue ({json.dumps(data['synthetic_tissue'])})"
              if "synthetic_tissue" in data else f"HEST ({json.dumps(data['hest'])})")
    ge = info["config"]["tasks"].get("gene_expression", {})
    removed = [f"{e['stage']}: {e['removed']} {e['what']} ({e['reason']})"
               for e in info["filters"] if e["removed"] and not e.get("quiet")]
    return {
        "data": source,
        "spots": info["n_spots"],
        "samples / patients": f"{info['n_samples']} / {info['n_patients']}",
        "genes": len(info["genes"]),
        "splits": "; ".join(f"{t}: {v['splits']}" for t, v in info["tasks"].items()),
        "probe": (f"PCA-{ge.get('n_components', 256)} + {ge.get('model', 'ridge')}"
                  + (" (alpha = 100 / (k · genes), HEST)" if ge.get("model", "ridge") == "ridge"
                     and ge.get("alpha", "hest") == "hest" else "")
                  + f", batch level {BATCH_LEVEL} = not same patient"),
        "methods": ", ".join(m.get("label", m["name"]) for m in info["config"]["methods"]),
        "filters": "; ".join(removed) if removed else "nothing removed",
        "timings (s)": ", ".join(f"{k} {v}" for k, v in info["timings_s"].items()),
        "baselens": info["baselens_version"],
    }
