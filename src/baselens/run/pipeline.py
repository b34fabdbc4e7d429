"""The pipeline: data → extract → profile → evaluate → diagnose → report.

``run_pipeline(config, out_dir)`` writes the results contract into ``out_dir``:

* ``scores.parquet`` — one row per (method, layer, task, batch_level, metric, fold, seed);
* ``per_perturbation.parquet`` — (method, layer, task, batch_level, perturbation, metric, value);
* ``report.html`` — the self-contained report;

plus ``features/`` (per-unit features per method and layer, reused on re-runs),
``beyond_baseline.parquet`` and ``run.json`` (config, timings, filter counts).
The same stages run screens (sites → wells) and tissue (spots): what differs is the unit
adapter's (:mod:`baselens.run.units`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import baselens
from baselens._io import remove_stale_temps, write_json_atomic, write_parquet_atomic
from baselens.extract.registry import get_spec
from baselens.profile.log import FilterLog
from baselens.run import execution
from baselens.run.config import RunConfig

logger = logging.getLogger("baselens")

SCORE_COLUMNS = ["method", "method_kind", "layer", "task", "batch_level", "metric",
                 "fold", "seed", "value", "n", "warning"]
PER_PERT_COLUMNS = ["method", "method_kind", "layer", "task", "batch_level", "perturbation",
                    "metric", "value", "fold"]


@dataclass
class RunResult:
    out_dir: Path
    scores: pd.DataFrame
    per_perturbation: pd.DataFrame
    report: Path
    timings: dict = field(default_factory=dict)


class _Progress:
    """Stage lines with counts and rates on stderr, and every line (plus ``log``-only
    detail such as each finished chunk) appended to the run log ``DIR/run.log``."""

    def __init__(self, enabled: bool = True, log_path: str | Path | None = None):
        self.enabled = enabled
        self.log_path = Path(log_path) if log_path is not None else None

    def log(self, msg: str) -> None:
        if self.log_path is not None:
            try:
                with open(self.log_path, "a") as f:
                    f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {msg}\n")
            except OSError:  # pragma: no cover - a read-only run folder still runs
                pass

    def __call__(self, msg: str) -> None:
        self.log(msg)
        if self.enabled:
            print(f"[baselens] {msg}", file=sys.stderr, flush=True)


def write_results(out: Path, scores: pd.DataFrame, per_perturbation: pd.DataFrame) -> None:
    """The results contract's score tables, for screens and tissue alike.

    Parameters
    ----------
    out : Path
        The run folder.
    scores : DataFrame
        Score rows; written as ``scores.parquet`` with :data:`SCORE_COLUMNS`.
    per_perturbation : DataFrame
        Per-item rows (a perturbation, or a gene for tissue); written as
        ``per_perturbation.parquet`` with :data:`PER_PERT_COLUMNS`.
    """
    write_parquet_atomic(scores[SCORE_COLUMNS], out / "scores.parquet")
    write_parquet_atomic(per_perturbation[PER_PERT_COLUMNS], out / "per_perturbation.parquet")


def write_feature_cache(feat_dir: Path, label: str, key: str, method: dict,
                        layers: dict[str, pd.DataFrame]) -> dict[str, str]:
    """``features/<label>.<layer>.parquet`` per layer, then the manifest
    ``features/<label>.json`` (written last: :func:`feature_manifest` reads a cache only
    when its manifest carries ``key`` and every layer file exists).

    Parameters
    ----------
    feat_dir : Path
        The run's ``features/`` folder.
    label : str
        The method's label.
    key : str
        Its cache key (:func:`method_key`).
    method : dict
        The method's config entry, kept in the manifest.
    layers : dict of str to DataFrame
        Per-unit features (key columns + features), in the extractor's layer order.

    Returns
    -------
    dict
        ``{layer: file name}``.
    """
    files = {}
    for layer, df in layers.items():
        fname = f"{label}.{layer}.parquet"
        write_parquet_atomic(df, feat_dir / fname)
        files[layer] = fname
    write_json_atomic({"key": key, "method": method,
                       "layers": [[k, v] for k, v in files.items()]}, feat_dir / f"{label}.json")
    return files


def _bar(total: int, say: "_Progress", noun: str = "sites"):
    """A tqdm progress bar on an interactive stderr (None otherwise: stage lines instead)."""
    if not say.enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=noun.rstrip("s"), desc="[baselens] extract", file=sys.stderr)


_FILE_IDS: dict[tuple, str] = {}


def file_identity(path: str | os.PathLike) -> str:
    """``size:mtime_ns:sha256`` of a file (``"missing"`` when absent); the hash is of the
    whole content, computed once per (path, size, mtime) in this process."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return "missing"
    if p.is_dir():
        return f"dir:{st.st_mtime_ns}"
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_IDS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_IDS[key] = f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:16]}"
    return _FILE_IDS[key]


def _param_files(m: dict) -> dict:
    """Identity of the files a method's parameters name (its extractor's ``PATH_PARAMS``,
    e.g. precomputed's embeddings): a changed embeddings file is a new cache key."""
    try:
        names = getattr(get_spec(m["name"]).factory, "PATH_PARAMS", ())
    except KeyError:  # not an image extractor (e.g. a tissue representation): no files
        return {}
    params = m.get("params") or {}
    out = {}
    for k in names:
        v = params.get(k)
        if isinstance(v, (str, os.PathLike)):
            out[k] = file_identity(v)
        elif isinstance(v, dict):
            out[k] = {lk: file_identity(lv) for lk, lv in v.items()
                      if isinstance(lv, (str, os.PathLike))}
    return out


class ScoringProgress:
    """Progress of the evaluate stage: one unit per (representation layer, task).

    On an interactive stderr a tqdm bar names the representation and task being scored;
    every finished task is a ``run.log`` line (its batch levels and seconds), and without a
    bar a terminal line at most every 10 s.
    """

    def __init__(self, say: "_Progress", total: int):
        self.say, self.total, self.done = say, max(total, 1), 0
        self.t0 = self.t_last = time.perf_counter()
        self.t_task = self.t0
        self.bar = None
        if say.enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, unit="task", desc="[baselens] evaluate",
                                file=sys.stderr, leave=False)
            except ImportError:  # pragma: no cover - tqdm is optional
                self.bar = None

    def for_representation(self, label: str):
        self.t_task = time.perf_counter()
        if self.bar is not None:
            self.bar.set_description(f"[baselens] evaluate {label}")

        def step(task: str, scores) -> None:
            now = time.perf_counter()
            self.done += 1
            levels = ("skipped" if scores is None else
                      ", ".join(pd.unique(scores["batch_level"].astype(str))) or "no level")
            self.say.log(f"evaluate: {label}: {task} [{levels}] {now - self.t_task:.1f} s "
                         f"({self.done}/{self.total} tasks, {now - self.t0:.0f} s)")
            self.t_task = now
            if self.bar is not None:
                self.bar.set_postfix_str(task, refresh=False)
                self.bar.update(1)
            elif self.say.enabled and now - self.t_last > 10:
                self.t_last = now
                print(f"[baselens] evaluate: {label}: {task} done ({self.done}/{self.total} "
                      "tasks)", file=sys.stderr, flush=True)
        return step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_ScoringProgress = ScoringProgress


def _method_hash(m: dict, **extra) -> str:
    """Hash of the extractor name, its parameters, the code version, ``extra`` and the
    files the parameters name."""
    blob = json.dumps({"name": m["name"], "params": m.get("params", {}), **extra,
                       "version": baselens.__version__}, sort_keys=True, default=str)
    files = _param_files(m)
    if files:  # (keys of methods without path parameters are unchanged)
        blob += json.dumps(files, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _method_base(m: dict) -> str:
    """Extractor name, its parameters, the files they name and the code version."""
    return _method_hash(m)


def method_key(m: dict, data_id: str) -> str:
    """Cache key of a method's features: extractor name, parameters, the files they name
    (size, mtime, content hash), data identity, version."""
    return _method_hash(m, data=data_id)


def feature_manifest(feat_dir: Path, label: str, key: str) -> tuple[dict, dict] | None:
    """``features/<label>.json`` when it carries ``key`` and all its layer files exist:
    ``(manifest, {layer: path})`` in the extractor's layer order, else ``None``."""
    manifest = feat_dir / f"{label}.json"
    if not manifest.exists():
        return None
    try:
        info = json.loads(manifest.read_text())
    except ValueError:
        return None
    # layers as [layer, file] pairs: the extractor's order (JSON objects get sorted)
    paths = {layer: feat_dir / f for layer, f in info.get("layers", [])}
    if info.get("key") != key or not paths or not all(p.exists() for p in paths.values()):
        return None
    return info, paths


class _Layers(dict):
    """``{layer: features file}`` read on access (key columns + features), so a run holds
    one representation layer at a time, not every method's features at once."""

    def __getitem__(self, layer):
        return pd.read_parquet(dict.__getitem__(self, layer))

    def get(self, layer, default=None):
        return self[layer] if layer in self else default

    def items(self):
        return ((k, self[k]) for k in self)

    def values(self):
        return (self[k] for k in self)

    def columns(self, layer) -> list[str]:
        """The layer's column names, from the file's schema (nothing read)."""
        import pyarrow.parquet as pq

        return list(pq.read_schema(dict.__getitem__(self, layer)).names)


def _read_consolidated(feat_dir: Path, label: str, key: str) -> dict | None:
    found = feature_manifest(feat_dir, label, key)
    return None if found is None else _Layers(found[1])


def _extract(cfg: RunConfig, units, out: Path, say: _Progress) -> dict[str, dict]:
    """Per-unit features: ``{label: {layer: DataFrame(Metadata_* + features)}}``, each
    layer read from ``features/`` when used.

    Chunks of units (sites of one plate, or spots; at most ``chunk_size``) run on the
    configured executor (``baselens.run.execution``); each chunk's features are cached as
    Parquet parts under a key of (extractor, params, code version, the chunk's inputs), so
    a finished run re-extracts nothing and a killed run computes only its missing chunks.
    The parts are then consolidated into ``features/<label>.<layer>.parquet``.
    Representations the adapter runs in process (``units.in_process``: those that read no
    pixels) are computed over every unit at once.
    """
    feat_dir = out / "features"
    ex_cfg = cfg.execution
    meta = units.meta
    noun = f"{units.unit}s"
    chunk_size = units.chunk_size(ex_cfg)
    stale = remove_stale_temps(feat_dir)  # left by a killed run: never read, only space
    if stale:
        say(f"extract: removed {len(stale)} half-written temp file(s) of an interrupted run")
    t = time.perf_counter()
    chunks = units.make_chunks(chunk_size)
    idents = units.chunk_identities(chunks)
    data_id = execution.screen_identity(idents)
    whole = execution.screen_identity(idents, length=24)  # a chunk of every unit
    say.log(f"extract: {len(chunks)} chunks of <= {chunk_size} {noun}, input identity "
            f"{data_id} ({time.perf_counter() - t:.1f} s to identify the inputs)")
    results: dict[str, dict] = {}
    todo = []  # (label, method, key, base, extractor, chunks)
    aliases: dict[str, str] = {}  # label -> label whose features it shares (extracted once)
    plan: dict[str, dict] = {}
    for m in cfg.methods:
        label = m.get("label", m["name"])
        key = method_key(m, data_id)
        cached = _read_consolidated(feat_dir, label, key)
        if cached is not None:
            results[label] = cached
            plan[label] = {"key": key, "base": _method_base(m)}
            say(f"extract: {label} reused from cache ({len(meta)} {noun})")
            continue
        if any(td[2] == key for td in todo):  # same extractor and params, another label
            aliases[label] = next(td[0] for td in todo if td[2] == key)
            plan[label] = {"same_as": aliases[label]}
            continue
        ex = units.extractor(m)
        # a whole-screen fit (e.g. per-plate statistics) makes every chunk depend on the screen
        base = _method_base(m) + (f"|fit:{data_id}" if callable(getattr(ex, "fit", None)) else "")
        own = [] if units.in_process(ex) else units.chunks_for(ex, chunks)
        todo.append((label, m, key, base, ex, own))
        plan[label] = {"key": key, "base": base}
        if not own:
            plan[label]["in_process"] = True
        elif [c.id for c in own] != [c.id for c in chunks]:  # e.g. one chunk of every spot
            plan[label]["chunks"] = [{"id": c.id, "n": c.n, "identity": whole} for c in own]
    idents = {**idents, **{c.id: whole for td in todo for c in td[5] if c.id not in idents}}
    execution.write_plan(feat_dir, {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "chunk_size": chunk_size,
        "unit": units.unit, "data_id": data_id, "methods": plan,
        "chunks": [{"id": c.id, "plate": c.plate, "n": c.n, "identity": idents[c.id]}
                   for c in chunks]})
    # representations the adapter runs in process (for sites: those that read no pixels:
    # precomputed tables, plate_layout, random, ...) are computed here in one call over
    # every unit; the others are chunked onto the executor (a cluster)
    in_process = [td for td in todo if not td[5]]
    chunked = [td for td in todo if td[5]]
    for label, m, key, _, ex, _ in in_process:
        results[label] = _extract_in_process(units, feat_dir, say, label, m, key, ex)
    if chunked:
        _extract_chunks(cfg, units, feat_dir, say, chunked, idents)
    for label, m, key, base, _, cks in chunked:
        results[label] = _consolidate(feat_dir, label, m, key, base, cks, idents, meta)
    for label, same in aliases.items():
        results[label] = results[same]
    return results


def _extract_in_process(units, feat_dir, say, label, m, key, ex) -> dict[str, pd.DataFrame]:
    """A representation computed in this process over all units at once:
    ``features/<label>.<layer>.parquet`` + manifest, as consolidation writes them."""
    from baselens.extract.registry import SiteBatch

    t = time.perf_counter()
    meta = units.meta
    fit = getattr(ex, "fit", None)
    if callable(fit):
        fit(units.source, progress=say)
    images = (units.source.read_sites(np.arange(len(meta)))
              if getattr(ex, "needs_images", True) else None)
    batch = SiteBatch(images=images, channels=list(units.source.channels), meta=meta,
                      context=units.context)
    layers, _ = execution.run_extractors({label: ex}, batch, len(meta))
    out = {}
    for layer, df in layers[label].items():
        df.columns = [str(c) for c in df.columns]
        out[layer] = pd.concat([meta, df.astype(np.float64)], axis=1)
    write_feature_cache(feat_dir, label, key, m, out)
    say(f"extract: {label}: {len(meta)} {units.unit}s in this process "
        f"({units.in_process_reason}), {time.perf_counter() - t:.1f} s")
    return out


def _extract_chunks(cfg, units, feat_dir, say, todo, idents) -> None:
    """Compute every (method, chunk) whose part is not cached under its current key."""
    noun = f"{units.unit}s"
    keys = {label: {c.id: execution.chunk_key(base, idents[c.id]) for c in cks}
            for label, _, _, base, _, cks in todo}
    by_id = {c.id: c for *_, cks in todo for c in cks}
    missing: dict[str, list[str]] = {}
    for label, *_, cks in todo:
        n_miss = 0
        for c in cks:
            if execution.chunk_done(feat_dir, label, c.id, keys[label][c.id]) is None:
                missing.setdefault(c.id, []).append(label)
                n_miss += 1
        say(f"extract: {label}: {len(cks) - n_miss}/{len(cks)} chunks cached, "
            f"{n_miss} to compute")
    if not missing:
        say("extract: every chunk cached; nothing to compute")
        return
    needed = [(label, m, ex) for label, m, _, _, ex, _ in todo
              if any(label in v for v in missing.values())]
    spent = {label: 0.0 for label, *_ in needed}
    # optional hook: extractor.fit(source, progress=...) before any chunk, e.g. per-plate
    # intensity statistics (networks) or a whole-screen key check (precomputed); the fitted
    # extractor is what the workers receive
    for label, _, ex in needed:
        fit = getattr(ex, "fit", None)
        if callable(fit):
            t = time.perf_counter()
            fit(units.source, progress=say)
            spent[label] += time.perf_counter() - t
    policies = {label: ex.geometry_policy for label, _, ex in needed if hasattr(ex, "geometry_policy")}
    if len(set(policies.values())) > 1:
        say("extract: WARNING networks see the sites through different input geometries ("
            + ", ".join(f"{k}={v}" for k, v in policies.items())
            + "); set the same geometry/input_size for every network to compare them fairly")
    chunk_size = units.chunk_size(cfg.execution)
    batch_size = units.task_batch_size(cfg.execution, chunk_size)
    tasks = []
    for cid, labels in missing.items():
        rows = np.asarray(by_id[cid].rows)
        # spots are in memory: one task per representation runs them side by side
        groups = [[lb] for lb in labels] if units.one_task_per_method else [labels]
        for lbs in groups:
            tasks.append(execution.ChunkTask(
                chunk_id=cid, ld=units.take(rows), meta=units.meta.iloc[rows].reset_index(drop=True),
                labels=lbs, keys={lb: keys[lb][cid] for lb in lbs}, feat_dir=str(feat_dir),
                batch_size=batch_size, prefetch=max(0, int(cfg.execution.get("prefetch", 2))),
                read_workers=max(1, int(cfg.execution.get("read_workers", 1)))))
    tasks.sort(key=lambda t: -len(t.meta))  # big chunks first: no straggler at the end
    total = sum(len(t.meta) for t in tasks)
    payload = {"todo": {label: ex for label, _, ex in needed}, "context": units.context,
               "threads": None}
    executor = execution.make_executor(cfg.execution, payload, len(tasks),
                                       [ex for *_, ex in needed], log_path=say.log_path)
    t0 = time.perf_counter()
    done_units = done_chunks = 0
    t_read = 0.0
    last = 0.0
    bar = None
    work = "chunks" if len(tasks) == len(missing) else "tasks"
    with executor:
        n_parts = sum(len(t.labels) for t in tasks)
        say(f"extract: computing {len(missing)} of {len(by_id)} chunks ({n_parts} of "
            f"{sum(len(td[5]) for td in todo)} method x chunk parts"
            + (f", {len(tasks)} tasks" if len(tasks) != len(missing) else "")
            + f") on {executor.describe()}")
        if executor.dashboard_link:
            say(f"extract: dask dashboard {executor.dashboard_link}"
                + ("" if execution._has_bokeh() else " (install bokeh to serve it)"))
        bar = _bar(total, say, noun)
        try:
            for s in executor.map(tasks):
                done_chunks += 1
                done_units += s["rows"]
                t_read += s["read"]
                for label, sec in s["spent"].items():
                    spent[label] += sec
                el = time.perf_counter() - t0
                msg = (f"extract: {done_chunks}/{len(tasks)} {work}, {done_units}/{total} {noun} "
                       f"({done_units / max(el, 1e-9):.1f} {noun}/s)")
                say.log(f"extract: chunk {s['chunk']} done ({s['rows']} {noun}, "
                        + ", ".join(sorted(spent.keys() & s["spent"].keys())) + ")")
                if bar is not None:
                    bar.update(s["rows"])
                elif done_chunks == len(tasks) or el - last > 10 or done_chunks == 1:
                    last = el
                    say(msg)
        finally:
            if bar is not None:
                bar.close()
    say("extract: time per method " + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items())
        + f"; waiting for inputs {t_read:.1f} s"
        + (f" (summed over {executor.n_workers} workers)" if executor.n_workers > 1 else ""))


def _consolidate(feat_dir: Path, label: str, m: dict, key: str, base: str, chunks, idents,
                 meta: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Chunk parts → ``features/<label>.<layer>.parquet`` in unit order + its manifest,
    one layer at a time; the layers are read again when scored (:class:`_Layers`)."""
    order: list[str] | None = None
    for c in chunks:
        layers = execution.chunk_done(feat_dir, label, c.id,
                                      execution.chunk_key(base, idents[c.id]))
        if layers is None:
            raise RuntimeError(f"extract: {label}: chunk {c.id} has no features after "
                               "extraction (a worker lost?); run again to compute it")
        if order is None:
            order = layers
        elif set(layers) != set(order):
            raise RuntimeError(f"extract: {label}: chunk {c.id} has layers {layers}, "
                               f"others {order}")
    rows = np.concatenate([np.asarray(c.rows, dtype=np.int64) for c in chunks])
    unit_order = np.argsort(rows, kind="stable")
    out = {}
    for layer in order or []:
        feats = pd.concat([pd.read_parquet(execution.part_path(feat_dir, label, layer, c.id))
                           for c in chunks], ignore_index=True)
        feats = feats.iloc[unit_order].reset_index(drop=True)
        out[layer] = pd.concat([meta.iloc[np.sort(rows)].reset_index(drop=True), feats], axis=1)
    files = write_feature_cache(feat_dir, label, key, m, out)
    return _Layers({layer: feat_dir / f for layer, f in files.items()})


# --------------------------------------------------------------------------- driver
def run_pipeline(cfg: RunConfig, out_dir: str | Path, *, progress: bool = True) -> RunResult:
    """Run every stage and write the results contract into ``out_dir``.

    The stages are the same for every run; what an item is (a site aggregated into a
    well, or a tissue spot), how it is keyed, grouped into folds and scored comes from the
    run's unit adapter (:func:`baselens.run.units.units_for`).

    Parameters
    ----------
    cfg : RunConfig
        The validated configuration.
    out_dir : str or Path
        The run folder (created; a re-run reuses its feature cache).
    progress : bool
        Stage lines on stderr (always in ``run.log``).

    Returns
    -------
    RunResult
    """
    from baselens.run.units import units_for

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = _Progress(progress, out / "run.log")
    log = FilterLog()
    timings: dict[str, float] = {}
    units = units_for(cfg)

    t = time.perf_counter()
    units.load(cfg, out, say, log)
    timings["data"] = time.perf_counter() - t
    tasks_cfg = units.preflight(cfg, log, say)

    t = time.perf_counter()
    feats_by_method = _extract(cfg, units, out, say)
    timings["extract"] = time.perf_counter() - t

    score_frames, per_frames = [], []
    profile_sets = []  # every representation layer's profiles, for the diagnostics
    t_eval = 0.0
    units.start_scoring(cfg, feats_by_method, tasks_cfg, log, say)
    for m in cfg.methods:
        label = m.get("label", m["name"])
        kind = units.kind(m)
        for layer, frame in feats_by_method[label].items():
            t = time.perf_counter()
            scores, per, pset = units.score(cfg, m, label, kind, layer, frame, tasks_cfg,
                                            log, say)
            t_eval += time.perf_counter() - t
            score_frames += scores
            per_frames += per
            if pset is not None:
                profile_sets.append(pset)
            del frame
    units.finish_scoring()
    if units.t_profile:
        timings["profile"] = units.t_profile
    timings["evaluate"] = t_eval - units.t_profile

    scores = (pd.concat(score_frames, ignore_index=True)[SCORE_COLUMNS] if score_frames
              else pd.DataFrame(columns=SCORE_COLUMNS))
    per_pert = (pd.concat(per_frames, ignore_index=True)[PER_PERT_COLUMNS]
                if per_frames else pd.DataFrame(columns=PER_PERT_COLUMNS))
    write_results(out, scores, per_pert)

    t = time.perf_counter()
    diagnostics = units.diagnose(cfg, profile_sets, scores, per_pert, out, log)
    # kept at the top level too (the first results contract had it there)
    from baselens.diagnose.run import parquet_safe

    write_parquet_atomic(parquet_safe(diagnostics["beyond_baseline"]),
                         out / "beyond_baseline.parquet")
    timings["diagnose"] = time.perf_counter() - t
    say(f"diagnose: {', '.join(sorted(diagnostics))} ({timings['diagnose']:.1f} s)")

    run_info = {
        "title": cfg.title,
        "unit": units.unit,
        "baselens_version": baselens.__version__,
        "python": platform.python_version(),
        "config": cfg.to_dict(),
        **units.run_info(),
        "filters": log.to_records(),
        **units.task_record(),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    report = write_report_and_run_info(out, cfg.title, run_info, units.report_context(run_info),
                                       timings, say)
    return RunResult(out, scores, per_pert, report, timings)


def write_report_and_run_info(out: Path, title: str, run_info: dict, context: dict,
                              timings: dict, say: _Progress) -> Path:
    """The last stage of a run: ``report.html`` from the tables already in ``out``, then
    ``run.json`` with the report's time included."""
    from baselens.report.html import write_report

    t = time.perf_counter()
    report = write_report(out, title=title, context=context)
    timings["report"] = time.perf_counter() - t
    run_info["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    write_json_atomic(run_info, out / "run.json")
    say(f"report: {report}")
    return report
