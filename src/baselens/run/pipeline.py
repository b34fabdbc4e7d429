"""The pipeline: data → extract → profile → evaluate → diagnose → report.

``run_pipeline(config, out_dir)`` writes the results contract into ``out_dir``:

* ``scores.parquet`` — one row per (method, layer, task, batch_level, metric, fold, seed);
* ``per_perturbation.parquet`` — (method, layer, task, batch_level, perturbation, metric, value);
* ``report.html`` — the self-contained report;

plus ``features/`` (per-site features per method and layer, reused on re-runs),
``beyond_baseline.parquet`` and ``run.json`` (config, timings, filter counts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import baselens
from baselens._io import write_json_atomic, write_parquet_atomic
from baselens.data.annotations import read_relationship_pairs
from baselens.data.load_data import LoadData, read_load_data
from baselens.extract.registry import SiteBatch, get_extractor, get_spec
from baselens.profile.aggregate import aggregate, feature_columns
from baselens.profile.log import FilterLog
from baselens.profile.normalize import normalize
from baselens.run.config import RunConfig, synthetic_config
from baselens.run.tasks import LOWER_IS_BETTER, run_tasks

logger = logging.getLogger("baselens")

SCORE_COLUMNS = ["method", "method_kind", "layer", "task", "batch_level", "metric",
                 "fold", "seed", "value", "n", "warning"]
PER_PERT_COLUMNS = ["method", "method_kind", "layer", "task", "batch_level", "perturbation",
                    "metric", "value", "fold"]


def _headline(scores: list[pd.DataFrame]) -> str:
    """One line per representation: each task's main metric at NR, mean over folds."""
    if not scores:
        return "no task scored"
    s = pd.concat(scores)
    s = s[s["batch_level"] == "NR"]
    first = s.groupby("task", sort=False)["metric"].first()
    parts = []
    for task, metric in first.items():
        v = s[(s["task"] == task) & (s["metric"] == metric)]["value"].mean()
        parts.append(f"{task}/{metric}={v:.3f}")
    return ", ".join(parts)


@dataclass
class RunResult:
    out_dir: Path
    scores: pd.DataFrame
    per_perturbation: pd.DataFrame
    report: Path
    timings: dict = field(default_factory=dict)


class _Progress:
    """Stage lines with counts and rates on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[baselens] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data
def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"table not found: {path}")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _join_perturbation_metadata(ld: LoadData, pmeta: pd.DataFrame, source: str) -> None:
    """Add ``Metadata_*`` columns of a per-perturbation table (e.g. ``Metadata_moa``)."""
    if "Metadata_Perturbation" not in pmeta.columns:
        raise ValueError(f"{source}: needs a Metadata_Perturbation column")
    new = [c for c in pmeta.columns if c.startswith("Metadata_") and c not in ld.table.columns]
    if not new:
        return
    if pmeta["Metadata_Perturbation"].duplicated().any():
        dup = pmeta.loc[pmeta["Metadata_Perturbation"].duplicated(), "Metadata_Perturbation"]
        raise ValueError(f"{source}: {len(dup)} duplicated perturbations, e.g. {dup.iloc[0]!r}")
    joined = ld.table[["Metadata_Perturbation"]].merge(
        pmeta[["Metadata_Perturbation", *new]], on="Metadata_Perturbation", how="left")
    for c in new:
        ld.table[c] = joined[c].to_numpy()


def _prepare_data(cfg: RunConfig, out: Path, say: _Progress) -> tuple[LoadData, dict, dict]:
    """Read the sites and the task inputs: annotation pairs, assay labels, per-well targets."""
    data = cfg.data
    context: dict = {}
    inputs: dict = {}
    if "synthetic" in data:
        from baselens.data.synthetic import generate_screen

        syn = synthetic_config(data["synthetic"])
        t = time.perf_counter()
        ld_path = Path(generate_screen(syn, out / "data"))
        say(f"data: synthetic screen ready at {ld_path.parent} ({time.perf_counter() - t:.1f} s)")
        gt_dir = ld_path.parent / "ground_truth"
        context["ground_truth_dir"] = gt_dir
        ld = read_load_data(ld_path, channels=data.get("channels"))
        inputs["pairs"] = read_relationship_pairs(gt_dir / "relationships.csv")
        inputs["bioactivity"] = pd.read_parquet(gt_dir / "bioactivity.parquet")
        # compounds' mechanism of action, for MoA retrieval and the kNN probe
        pert = pd.read_parquet(gt_dir / "perturbations.parquet")
        is_cpd = pert["Metadata_PerturbationType"].astype(str) == "compound"
        moa = pert["Metadata_Group"].astype(str).where(is_cpd & (pert["Metadata_Group"].astype(str) != ""))
        _join_perturbation_metadata(
            ld, pd.DataFrame({"Metadata_Perturbation": pert["Metadata_Perturbation"],
                              "Metadata_moa": moa}), "synthetic perturbations")
        # per-well continuous targets: the realized latent phenotype and the true cell count
        sp = pd.read_parquet(gt_dir / "site_phenotypes.parquet")
        tcols = [c for c in sp.columns if c.startswith("GT_") or c == "n_cells"]
        inputs["targets"] = (sp.groupby(["Metadata_Plate", "Metadata_Well"], observed=True)[tcols]
                             .mean().reset_index())
    else:
        ld = read_load_data(
            cfg.resolve(data["load_data"]),
            channels=data.get("channels"),
            root=cfg.resolve(data["root"]) if "root" in data else None,
            path_map=data.get("path_map"),
            illum=bool(data.get("illum", False)),
        )
    ann = data.get("annotations") or []
    if ann:
        extra = [read_relationship_pairs(cfg.resolve(a)) for a in ann]
        inputs["pairs"] = pd.concat(([inputs["pairs"]] if "pairs" in inputs else []) + extra,
                                    ignore_index=True)
    if "bioactivity" in data:
        inputs["bioactivity"] = _read_table(cfg.resolve(data["bioactivity"]))
    if "targets" in data:
        inputs["targets"] = _read_table(cfg.resolve(data["targets"]))
    if "perturbation_metadata" in data:
        path = cfg.resolve(data["perturbation_metadata"])
        _join_perturbation_metadata(ld, _read_table(path), str(path))
    for col in ("Metadata_Perturbation", "Metadata_ControlType"):
        if col not in ld.table.columns:
            raise ValueError(
                f"the load_data table needs a {col} column to score perturbations "
                "(join your platemap first; 'negcon' in Metadata_ControlType marks negative controls)"
            )
    ld.table["Metadata_ControlType"] = ld.table["Metadata_ControlType"].fillna("").astype(str)
    return ld, inputs, context


def _data_identity(ld: LoadData) -> str:
    """Identity of the input images: the table's content plus file sizes/mtimes."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(ld.table, index=False).values.tobytes())
    h.update(json.dumps(ld.channels).encode())
    for i in range(0, len(ld), max(1, len(ld) // 50)):  # sampled: cheap on big screens
        for ch in ld.channels:
            try:
                st = ld.path(i, ch).stat()
                h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
            except Exception:
                h.update(b"?")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- extract
def _bar(total: int, say: "_Progress"):
    """A tqdm progress bar on an interactive stderr (None otherwise: stage lines instead)."""
    if not say.enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="site", desc="[baselens] extract", file=sys.stderr)


def _method_key(m: dict, data_id: str) -> str:
    blob = json.dumps({"name": m["name"], "params": m.get("params", {}), "data": data_id,
                       "version": baselens.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_extractors(todo: list, batch: SiteBatch, n_sites: int) -> tuple[dict, dict]:
    """Every extractor on one batch: ({label: {layer: DataFrame}}, {label: seconds})."""
    out, spent = {}, {}
    for label, m, _, ex in todo:
        t = time.perf_counter()
        layers = ex(batch)
        spent[label] = time.perf_counter() - t
        for layer, df in layers.items():
            if len(df) != n_sites:
                raise RuntimeError(f"extractor {m['name']!r} returned {len(df)} rows for "
                                   f"{n_sites} sites (layer {layer!r})")
        out[label] = {layer: df.reset_index(drop=True) for layer, df in layers.items()}
    return out, spent


def _extract_serial(todo, ld, context, meta, starts, batch_size, need_images, cfg, collect) -> float:
    """One process; a thread reads the next batches while the extractors run."""
    n = len(ld)
    prefetch = max(0, int(cfg.execution.get("prefetch", 2)))
    readers = max(1, int(cfg.execution.get("read_workers", 1)))
    pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="baselens-read") \
        if need_images and prefetch else None
    pending: dict[int, Future] = {}

    def _read(start: int) -> np.ndarray | None:
        if not need_images:
            return None
        return ld.read_sites(np.arange(start, min(start + batch_size, n)))

    t_read = 0.0
    try:
        for b, start in enumerate(starts):
            idx = np.arange(start, min(start + batch_size, n))
            if pool is not None:  # keep `prefetch` batches in flight (tifffile/zlib release the GIL)
                for nxt in starts[b: b + prefetch + 1]:
                    if nxt not in pending:
                        pending[nxt] = pool.submit(_read, nxt)
            t = time.perf_counter()
            images = pending.pop(start).result() if start in pending else _read(start)
            t_read += time.perf_counter() - t
            batch = SiteBatch(images=images, channels=list(ld.channels),
                              meta=meta.iloc[idx].reset_index(drop=True), context=context)
            collect(start, *_run_extractors(todo, batch, len(idx)))
    finally:
        if pool is not None:
            for f in pending.values():
                f.cancel()
            pool.shutdown(wait=True)
    return t_read


# state of a worker process (set once by its initializer, then reused for every chunk)
_WORKER: dict = {}


def _init_worker(todo, ld, context, meta, batch_size, need_images, threads) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass
    _WORKER.update(todo=todo, ld=ld, context=context, meta=meta, batch_size=batch_size,
                   need_images=need_images)


def _worker_chunk(start: int) -> tuple[int, dict, dict, float]:
    w = _WORKER
    ld = w["ld"]
    idx = np.arange(start, min(start + w["batch_size"], len(ld)))
    t = time.perf_counter()
    images = ld.read_sites(idx) if w["need_images"] else None  # workers read their own images
    t_read = time.perf_counter() - t
    batch = SiteBatch(images=images, channels=list(ld.channels),
                      meta=w["meta"].iloc[idx].reset_index(drop=True), context=w["context"])
    out, spent = _run_extractors(w["todo"], batch, len(idx))
    return start, out, spent, t_read


def _extract_parallel(todo, ld, context, meta, starts, batch_size, need_images, workers,
                      collect) -> float:
    """Chunks of sites on ``workers`` processes; each reads its own images (no image bytes
    cross process boundaries). Extractors are built (and fitted) once in the parent and
    sent to each worker, so every worker computes with identical parameters."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    t_read = 0.0
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker,
                             initargs=(todo, ld, context, meta, batch_size, need_images,
                                       threads)) as pool:
        futures = [pool.submit(_worker_chunk, s) for s in starts]
        for f in as_completed(futures):
            start, out, spent, tr = f.result()
            t_read += tr
            collect(start, out, spent)
    return t_read


def _n_workers(cfg: RunConfig, n_chunks: int) -> int:
    """``execution.workers``; default: one process per core, at most 4, at most one per chunk."""
    w = cfg.execution.get("workers")
    if w is None:
        w = min(4, os.cpu_count() or 1)
    return max(1, min(int(w), n_chunks))


def _extract(cfg: RunConfig, ld: LoadData, context: dict, out: Path,
             say: _Progress) -> dict[str, dict[str, pd.DataFrame]]:
    """Per-site features: {label: {layer: DataFrame(Metadata_* + features)}}."""
    feat_dir = out / "features"
    data_id = _data_identity(ld)
    meta = ld.metadata.reset_index(drop=True)
    results: dict[str, dict[str, pd.DataFrame]] = {}
    todo = []
    aliases: dict[str, str] = {}  # label -> label whose features it shares (extracted once)
    for m in cfg.methods:
        label = m.get("label", m["name"])
        key = _method_key(m, data_id)
        manifest = feat_dir / f"{label}.json"
        if manifest.exists():
            info = json.loads(manifest.read_text())
            # layers as [layer, file] pairs: the extractor's order (JSON objects get sorted)
            paths = {layer: feat_dir / f for layer, f in info.get("layers", [])}
            if info.get("key") == key and paths and all(p.exists() for p in paths.values()):
                results[label] = {layer: pd.read_parquet(p) for layer, p in paths.items()}
                say(f"extract: {label} reused from cache ({len(meta)} sites)")
                continue
        if any(k == key for _, _, k, _ in todo):  # same extractor and params, another label
            aliases[label] = next(lb for lb, _, k, _ in todo if k == key)
            continue
        todo.append((label, m, key, get_extractor(m["name"], **m.get("params", {}))))
    if not todo:
        return results
    batch_size = int(cfg.execution.get("batch_size", 32))
    need_images = any(getattr(ex, "needs_images", True) for *_, ex in todo)
    parts: dict[str, dict[str, list[pd.DataFrame]]] = {label: {} for label, *_ in todo}
    spent = {label: 0.0 for label, *_ in todo}
    # optional hook: extractor.fit(load_data, progress=...) before any batch, e.g. per-plate
    # intensity statistics (networks) or a whole-screen key check (precomputed)
    for label, m, _, ex in todo:
        fit = getattr(ex, "fit", None)
        if callable(fit):
            t = time.perf_counter()
            fit(ld, progress=say)
            spent[label] += time.perf_counter() - t
    policies = {label: ex.geometry_policy for label, *_, ex in todo if hasattr(ex, "geometry_policy")}
    if len(set(policies.values())) > 1:
        say("extract: WARNING networks see the sites through different input geometries ("
            + ", ".join(f"{k}={v}" for k, v in policies.items())
            + "); set the same geometry/input_size for every network to compare them fairly")
    n = len(ld)
    starts = list(range(0, n, batch_size))
    workers = _n_workers(cfg, len(starts))
    t0 = time.perf_counter()
    bar = _bar(n, say)
    done = 0

    def _collect(start: int, layers_by_label: dict, spent_by_label: dict) -> None:
        nonlocal done
        chunk[start] = layers_by_label
        for label, sec in spent_by_label.items():
            spent[label] += sec
        k = min(start + batch_size, n) - start
        done += k
        if bar is not None:
            bar.update(k)
        elif done == n or (done // batch_size) % 10 == 1:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            say(f"extract: {done}/{n} sites ({rate:.1f} sites/s"
                + (f", {workers} worker processes)" if workers > 1 else ")"))

    chunk: dict[int, dict] = {}
    t_read = 0.0
    try:
        if workers > 1:
            t_read = _extract_parallel(todo, ld, context, meta, starts, batch_size, need_images,
                                       workers, _collect)
        else:
            t_read = _extract_serial(todo, ld, context, meta, starts, batch_size, need_images,
                                     cfg, _collect)
    finally:
        if bar is not None:
            bar.close()
    for start in starts:  # site order, whatever order the chunks finished in
        for label, layers in chunk[start].items():
            for layer, df in layers.items():
                parts[label].setdefault(layer, []).append(df)
    say("extract: time per method " + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items())
        + f"; waiting for image reading {t_read:.1f} s"
        + (f" (summed over {workers} worker processes)" if workers > 1 else ""))
    for label, m, key, _ in todo:
        layers = {}
        files = {}
        for layer, frames in parts[label].items():
            feats = pd.concat(frames, ignore_index=True)
            feats.columns = [str(c) for c in feats.columns]
            df = pd.concat([meta, feats.astype(np.float64)], axis=1)
            fname = f"{label}.{layer}.parquet"
            write_parquet_atomic(df, feat_dir / fname)
            layers[layer] = df
            files[layer] = fname
        write_json_atomic({"key": key, "method": m, "layers": [[k, v] for k, v in files.items()]},
                          feat_dir / f"{label}.json")
        results[label] = layers
    for label, same in aliases.items():
        results[label] = results[same]
    return results


# --------------------------------------------------------------------------- profile
def _well_cell_counts(feats_by_method: dict) -> pd.DataFrame | None:
    """Mean nuclei count per well from a ``cell_count`` run, as ``Metadata_CellCount``.

    Profile steps such as MorphoHELM's cell-count QC and seed 003's |r| > 0.95 filter
    read it; ``None`` when no cell_count method ran.
    """
    for layers in feats_by_method.values():
        df = layers.get("default")
        if df is not None and "Count_Nuclei" in df.columns:
            return (df.groupby(["Metadata_Plate", "Metadata_Well"], observed=True)["Count_Nuclei"]
                    .mean().rename("Metadata_CellCount").reset_index())
    return None


def _profile(site_df: pd.DataFrame, profile_cfg: dict, log: FilterLog,
             label: str, well_counts: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Sites → wells → the configured profile steps (or the legacy normalize keys)."""
    feats = feature_columns(site_df)
    x = site_df[feats].to_numpy()
    bad_rows = ~np.isfinite(x).all(axis=1)
    if bad_rows.any():
        # a site whose features are all NaN (e.g. failed extraction) is removed and reported
        all_bad = ~np.isfinite(x).any(axis=1)
        ex = site_df.loc[all_bad, ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].astype(str)
        log.add(f"{label}: profile", "sites", int(all_bad.sum()), int((~all_bad).sum()),
                "every feature non-finite", ["/".join(r) for r in ex.to_numpy()])
        site_df = site_df[~all_bad]
    wells = aggregate(site_df, operation=profile_cfg.get("aggregate", "mean"), features=feats)
    if well_counts is not None and "Metadata_CellCount" not in wells.columns:
        wells = wells.merge(well_counts, on=["Metadata_Plate", "Metadata_Well"], how="left")
    plog = _Prefixed(log, label)
    if "steps" in profile_cfg:
        from baselens.profile.protocols import apply_profile

        out, out_feats = apply_profile(wells, feats, profile_cfg["steps"], plog)
        return out, list(out_feats)
    normed = normalize(wells, method=profile_cfg.get("normalize", "standardize"),
                       reference=profile_cfg.get("reference", "negcon"),
                       features=feats, log=plog)
    return normed, feature_columns(normed.drop(columns=["Metadata_n_sites"], errors="ignore"))


class _Prefixed(FilterLog):
    def __init__(self, inner: FilterLog, prefix: str):
        self.inner, self.prefix = inner, prefix

    def add(self, stage, *args, **kwargs):
        self.inner.add(f"{self.prefix}: {stage}", *args, **kwargs)

    @property
    def events(self):
        return self.inner.events


# --------------------------------------------------------------------------- driver
def run_pipeline(cfg: RunConfig, out_dir: str | Path, *, progress: bool = True) -> RunResult:
    """Run every stage and write the results contract into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = _Progress(progress)
    log = FilterLog()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    ld, inputs, context = _prepare_data(cfg, out, say)
    timings["data"] = time.perf_counter() - t
    say(f"data: {len(ld)} sites, {ld.table['Metadata_Plate'].nunique()} plates, "
        f"channels {ld.channels}")

    t = time.perf_counter()
    feats_by_method = _extract(cfg, ld, context, out, say)
    timings["extract"] = time.perf_counter() - t

    score_frames, per_frames = [], []
    well_counts = _well_cell_counts(feats_by_method)
    t_prof = t_eval = 0.0
    for m in cfg.methods:
        label = m.get("label", m["name"])
        kind = get_spec(m["name"]).kind
        for layer, site_df in feats_by_method[label].items():
            t = time.perf_counter()
            profiles, feats = _profile(site_df, {**cfg.profile, **m.get("profile", {})}, log,
                                       f"{label}/{layer}", well_counts)
            t_prof += time.perf_counter() - t
            t = time.perf_counter()
            scores, per = run_tasks(profiles, feats, inputs, cfg.tasks, log, f"{label}/{layer}")
            t_eval += time.perf_counter() - t
            ident = {"method": label, "method_kind": kind, "layer": layer}
            seed = int(m.get("params", {}).get("seed", 0))
            score_frames += [s.assign(**ident, seed=seed) for s in scores]
            per_frames += [p.assign(**ident) for p in per]
            say(f"evaluate: {label}/{layer}: {_headline(scores)}")
    timings["profile"], timings["evaluate"] = t_prof, t_eval

    scores = pd.concat(score_frames, ignore_index=True)[SCORE_COLUMNS]
    per_pert = (pd.concat(per_frames, ignore_index=True)[PER_PERT_COLUMNS]
                if per_frames else pd.DataFrame(columns=PER_PERT_COLUMNS))
    write_parquet_atomic(scores, out / "scores.parquet")
    write_parquet_atomic(per_pert, out / "per_perturbation.parquet")

    t = time.perf_counter()
    from baselens.diagnose.beyond_baseline import beyond_best_baseline

    beyond = beyond_best_baseline(scores, lower_is_better=LOWER_IS_BETTER)
    write_parquet_atomic(beyond, out / "beyond_baseline.parquet")
    timings["diagnose"] = time.perf_counter() - t

    run_info = {
        "title": cfg.title,
        "baselens_version": baselens.__version__,
        "python": platform.python_version(),
        "config": cfg.to_dict(),
        "n_sites": len(ld),
        "n_plates": int(ld.table["Metadata_Plate"].nunique()),
        "channels": ld.channels,
        "filters": log.to_records(),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    t = time.perf_counter()
    from baselens.report.html import write_report

    report = write_report(out, title=cfg.title, context=_report_context(run_info),
                          lower_is_better=LOWER_IS_BETTER)
    timings["report"] = time.perf_counter() - t
    run_info["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    write_json_atomic(run_info, out / "run.json")
    say(f"report: {report}")
    return RunResult(out, scores, per_pert, report, timings)


def _report_context(info: dict) -> dict:
    data = info["config"]["data"]
    source = (f"synthetic screen ({json.dumps(data['synthetic'])})" if "synthetic" in data
              else str(data.get("load_data")))
    removed = [f"{e['stage']}: {e['removed']} {e['what']} ({e['reason']})"
               for e in info["filters"] if e["removed"] and not e.get("quiet")]
    # skips repeat for every representation: list each (task, reason) once
    skips = sorted({f"{e['stage'].split(': ', 1)[-1]}: {e['reason']}"
                    for e in info["filters"] if e.get("quiet")})
    return {
        "data": source,
        "sites": info["n_sites"],
        "plates": info["n_plates"],
        "channels": ", ".join(info["channels"]),
        "methods": ", ".join(m.get("label", m["name"]) for m in info["config"]["methods"]),
        "profile": json.dumps(info["config"]["profile"] or {"aggregate": "mean",
                                                            "normalize": "standardize",
                                                            "reference": "negcon"}),
        "filters": "; ".join(removed) if removed else "nothing removed",
        "skipped": "\n".join(skips) if skips else "nothing skipped",
        "timings (s)": ", ".join(f"{k} {v}" for k, v in info["timings_s"].items()),
        "baselens": info["baselens_version"],
    }
