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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

import baselens
from baselens._io import remove_stale_temps, write_json_atomic, write_parquet_atomic
from baselens.data.annotations import read_relationship_pairs
from baselens.data.load_data import LoadData, read_load_data
from baselens.diagnose.run import ProfileSet, run_diagnostics
from baselens.extract.registry import get_extractor, get_spec, method_kind
from baselens.profile.aggregate import aggregate, feature_columns
from baselens.profile.log import FilterLog
from baselens.profile.normalize import normalize
from baselens.run import execution
from baselens.run.config import RunConfig, synthetic_config
from baselens.run.tasks import enabled_tasks, run_tasks

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


#: the public name of the stage-line printer (tissue runs use it too)
Progress = _Progress


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
                        layers: dict[str, pd.DataFrame], **extra) -> dict[str, str]:
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
    **extra
        More manifest entries (e.g. a tissue representation's ``kind``).

    Returns
    -------
    dict
        ``{layer: file name}``.
    """
    files = {}
    if isinstance(layers, dict):
        for layer, df in layers.items():
            fname = f"{label}.{layer}.parquet"
            write_parquet_atomic(df, feat_dir / fname)
            files[layer] = fname
    else:
        files = _stream_layers(feat_dir, label, layers)
    write_json_atomic({"key": key, "method": method, **extra,
                       "layers": [[k, v] for k, v in files.items()]}, feat_dir / f"{label}.json")
    return files


def _stream_layers(feat_dir: Path, label: str, chunks) -> dict[str, str]:
    """Write an iterable of ``{layer: DataFrame}`` chunks (rows in order) into one Parquet
    file per layer, holding one chunk at a time; each file moves into place when complete
    (a killed writer leaves only temp files, :func:`remove_stale_temps`)."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    feat_dir.mkdir(parents=True, exist_ok=True)
    writers: dict[str, tuple] = {}
    try:
        for chunk in chunks:
            if writers and set(chunk) != set(writers):
                raise RuntimeError(f"extract: {label}: a chunk has layers {sorted(chunk)}, "
                                   f"the first {sorted(writers)}")
            for layer, df in chunk.items():
                table = pa.Table.from_pandas(df, preserve_index=False)
                if layer not in writers:
                    fname = f"{label}.{layer}.parquet"
                    fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".tmp", dir=feat_dir)
                    os.close(fd)
                    writers[layer] = (pq.ParquetWriter(tmp, table.schema), tmp, fname)
                writers[layer][0].write_table(table)
        files = {}
        for layer, (w, tmp, fname) in writers.items():
            w.close()
            os.chmod(tmp, 0o644)
            os.replace(tmp, feat_dir / fname)
            files[layer] = fname
        return files
    finally:
        for w, tmp, _ in writers.values():
            if os.path.exists(tmp):
                w.close()
                os.unlink(tmp)


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
            channel_map=data.get("channel_map"),
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
    from baselens.run.inspect import run_data_problems

    problems = run_data_problems(ld.table)  # the words `baselens inspect` uses
    if problems:
        raise problems[0]
    ld.table["Metadata_ControlType"] = ld.table["Metadata_ControlType"].fillna("").astype(str)
    return ld, inputs, context


def _preflight(cfg: RunConfig, ld: LoadData, log: FilterLog, say: "_Progress") -> dict:
    """The checks ``baselens inspect`` makes, before any worker starts: stop on what would
    stop the run later (with the same message), skip the tasks that lack their input (the
    reason goes to run.json and the report). Returns the ``[tasks]`` table to score."""
    from baselens.run.inspect import preflight
    from baselens.evaluate.registry import default_tasks

    ENABLED_BY_DEFAULT = default_tasks()
    enabled = [t for t in {*ENABLED_BY_DEFAULT, *cfg.tasks}
               if cfg.tasks.get(t, {}).get("enabled", t in ENABLED_BY_DEFAULT)
               # a configured label or row filter: the task decides (run.tasks) itself
               and not (t == "knn_probe" and {"label", "where"} & set(cfg.tasks.get(t, {})))]
    steps = "steps" in cfg.profile or any("profile" in m for m in cfg.methods)
    errors, skips = preflight(ld.metadata, tasks=enabled,
                              reference=None if steps else cfg.profile.get("reference", "negcon"))
    if errors:
        raise errors[0]
    if ld.channels:
        from baselens.run.inspect import image_header_problems

        t = time.perf_counter()
        bad = image_header_problems(ld)
        if bad:
            raise bad[0]
        say.log(f"preflight: image headers decoded ({time.perf_counter() - t:.1f} s)")
    tasks_cfg = dict(cfg.tasks)
    for task, why in sorted(skips.items()):
        tasks_cfg[task] = {**tasks_cfg.get(task, {}), "enabled": False}
        log.add(f"preflight: {task}", "tasks", 1, 0, f"task skipped: {why}", quiet=True)
        say(f"preflight: {task} skipped: {why}")
    return tasks_cfg


def _write_screen(ld: LoadData, out: Path) -> None:
    """``screen.parquet``: the wells this run scores (plate, well, perturbation, control
    type), one row per well; ``baselens compare`` checks that runs share it."""
    cols = [c for c in ("Metadata_Plate", "Metadata_Well", "Metadata_Perturbation",
                        "Metadata_ControlType") if c in ld.table.columns]
    wells = ld.table[cols].drop_duplicates(["Metadata_Plate", "Metadata_Well"])
    write_parquet_atomic(wells.astype(str).reset_index(drop=True), out / "screen.parquet")


def _bar(total: int, say: "_Progress"):
    """A tqdm progress bar on an interactive stderr (None otherwise: stage lines instead)."""
    if not say.enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="site", desc="[baselens] extract", file=sys.stderr)


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


class _ScoringProgress:
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


def _method_base(m: dict) -> str:
    """Extractor name, its parameters, the files they name and the code version."""
    blob = json.dumps({"name": m["name"], "params": m.get("params", {}),
                       "version": baselens.__version__}, sort_keys=True, default=str)
    files = _param_files(m)
    if files:  # (keys of methods without path parameters are unchanged)
        blob += json.dumps(files, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def method_key(m: dict, data_id: str) -> str:
    """Cache key of a method's features: extractor name, parameters, the files they name
    (size, mtime, content hash), data identity, version."""
    blob = json.dumps({"name": m["name"], "params": m.get("params", {}), "data": data_id,
                       "version": baselens.__version__}, sort_keys=True, default=str)
    files = _param_files(m)
    if files:
        blob += json.dumps(files, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_run_extractors = execution.run_extractors  # kept under its old name


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


def _read_consolidated(feat_dir: Path, label: str, key: str) -> dict | None:
    found = feature_manifest(feat_dir, label, key)
    return None if found is None else {layer: pd.read_parquet(p) for layer, p in found[1].items()}


def _extract(cfg: RunConfig, ld: LoadData, context: dict, out: Path,
             say: _Progress) -> dict[str, dict[str, pd.DataFrame]]:
    """Per-site features: {label: {layer: DataFrame(Metadata_* + features)}}.

    Chunks of sites (one plate, at most ``chunk_size`` sites) run on the configured
    executor (``baselens.run.execution``); each chunk's features are cached as Parquet
    parts under a key of (extractor, params, code version, the chunk's input files), so a
    finished run re-extracts nothing and a killed run computes only its missing chunks.
    The parts are then consolidated into ``features/<label>.<layer>.parquet``.
    """
    feat_dir = out / "features"
    ex_cfg = cfg.execution
    meta = ld.metadata.reset_index(drop=True)
    batch_size = int(ex_cfg.get("batch_size", 32))
    chunk_size = int(ex_cfg.get("chunk_size", max(execution.DEFAULT_CHUNK_SIZE, batch_size)))
    stale = remove_stale_temps(feat_dir)  # left by a killed run: never read, only space
    if stale:
        say(f"extract: removed {len(stale)} half-written temp file(s) of an interrupted run")
    t = time.perf_counter()
    chunks = execution.make_chunks(ld, chunk_size)
    idents = execution.chunk_identities(ld, chunks)
    data_id = execution.screen_identity(idents)
    say.log(f"extract: {len(chunks)} chunks of <= {chunk_size} sites, input identity {data_id} "
            f"({time.perf_counter() - t:.1f} s to stat the images)")
    results: dict[str, dict[str, pd.DataFrame]] = {}
    todo = []  # (label, method, key, base, extractor)
    aliases: dict[str, str] = {}  # label -> label whose features it shares (extracted once)
    plan: dict[str, dict] = {}
    for m in cfg.methods:
        label = m.get("label", m["name"])
        key = method_key(m, data_id)
        cached = _read_consolidated(feat_dir, label, key)
        if cached is not None:
            results[label] = cached
            plan[label] = {"key": key, "base": _method_base(m)}
            say(f"extract: {label} reused from cache ({len(meta)} sites)")
            continue
        if any(k == key for _, _, k, _, _ in todo):  # same extractor and params, another label
            aliases[label] = next(lb for lb, _, k, _, _ in todo if k == key)
            plan[label] = {"same_as": aliases[label]}
            continue
        ex = get_extractor(m["name"], **m.get("params", {}))
        # a whole-screen fit (e.g. per-plate statistics) makes every chunk depend on the screen
        base = _method_base(m) + (f"|fit:{data_id}" if callable(getattr(ex, "fit", None)) else "")
        todo.append((label, m, key, base, ex))
        plan[label] = {"key": key, "base": base}
    execution.write_plan(feat_dir, {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "chunk_size": chunk_size,
        "data_id": data_id, "methods": plan,
        "chunks": [{"id": c.id, "plate": c.plate, "n": c.n, "identity": idents[c.id]}
                   for c in chunks]})
    # representations that read no pixels (precomputed tables, plate_layout, random, ...)
    # are computed here in one call over every site; only pixel readers are chunked onto
    # the executor (a cluster)
    pixel_free = [t for t in todo if not getattr(t[4], "needs_images", True)]
    readers = [t for t in todo if getattr(t[4], "needs_images", True)]
    for label, m, key, _, ex in pixel_free:
        results[label] = _extract_pixel_free(ld, context, feat_dir, say, label, m, key, ex, meta)
    if readers:
        _extract_chunks(cfg, ld, context, feat_dir, say, readers, chunks, idents, meta,
                        batch_size)
    for label, m, key, base, _ in readers:
        results[label] = _consolidate(feat_dir, label, m, key, base, chunks, idents, meta)
    for label, same in aliases.items():
        results[label] = results[same]
    return results


def _extract_pixel_free(ld, context, feat_dir, say, label, m, key, ex,
                        meta) -> dict[str, pd.DataFrame]:
    """A representation that reads no pixels, in this process over all sites at once:
    ``features/<label>.<layer>.parquet`` + manifest, as consolidation writes them."""
    from baselens.extract.registry import SiteBatch

    t = time.perf_counter()
    fit = getattr(ex, "fit", None)
    if callable(fit):
        fit(ld, progress=say)
    batch = SiteBatch(images=None, channels=list(ld.channels), meta=meta, context=context)
    layers, _ = execution.run_extractors({label: ex}, batch, len(meta))
    out, files = {}, {}
    for layer, df in layers[label].items():
        df.columns = [str(c) for c in df.columns]
        full = pd.concat([meta, df.astype(np.float64)], axis=1)
        fname = f"{label}.{layer}.parquet"
        write_parquet_atomic(full, feat_dir / fname)
        out[layer], files[layer] = full, fname
    write_json_atomic({"key": key, "method": m, "layers": [[k, v] for k, v in files.items()]},
                      feat_dir / f"{label}.json")
    say(f"extract: {label}: {len(meta)} sites in this process (reads no pixels), "
        f"{time.perf_counter() - t:.1f} s")
    return out


def _extract_chunks(cfg, ld, context, feat_dir, say, todo, chunks, idents, meta,
                    batch_size) -> None:
    """Compute every (method, chunk) whose part is not cached under its current key."""
    keys = {label: {c.id: execution.chunk_key(base, idents[c.id]) for c in chunks}
            for label, _, _, base, _ in todo}
    missing: dict[str, list[str]] = {}
    for c in chunks:
        need = [label for label, *_ in todo
                if execution.chunk_done(feat_dir, label, c.id, keys[label][c.id]) is None]
        if need:
            missing[c.id] = need
    for label, *_ in todo:
        n_miss = sum(label in v for v in missing.values())
        say(f"extract: {label}: {len(chunks) - n_miss}/{len(chunks)} chunks cached, "
            f"{n_miss} to compute")
    if not missing:
        say("extract: every chunk cached; nothing to compute")
        return
    needed = [(label, m, ex) for label, m, _, _, ex in todo
              if any(label in v for v in missing.values())]
    spent = {label: 0.0 for label, *_ in needed}
    # optional hook: extractor.fit(load_data, progress=...) before any chunk, e.g. per-plate
    # intensity statistics (networks) or a whole-screen key check (precomputed); the fitted
    # extractor is what the workers receive
    for label, _, ex in needed:
        fit = getattr(ex, "fit", None)
        if callable(fit):
            t = time.perf_counter()
            fit(ld, progress=say)
            spent[label] += time.perf_counter() - t
    policies = {label: ex.geometry_policy for label, _, ex in needed if hasattr(ex, "geometry_policy")}
    if len(set(policies.values())) > 1:
        say("extract: WARNING networks see the sites through different input geometries ("
            + ", ".join(f"{k}={v}" for k, v in policies.items())
            + "); set the same geometry/input_size for every network to compare them fairly")
    by_id = {c.id: c for c in chunks}
    tasks = []
    for cid, labels in missing.items():
        rows = np.asarray(by_id[cid].rows)
        tasks.append(execution.ChunkTask(
            chunk_id=cid, ld=replace(ld, table=ld.table.iloc[rows].reset_index(drop=True)),
            meta=meta.iloc[rows].reset_index(drop=True), labels=labels,
            keys={lb: keys[lb][cid] for lb in labels}, feat_dir=str(feat_dir),
            batch_size=batch_size, prefetch=max(0, int(cfg.execution.get("prefetch", 2))),
            read_workers=max(1, int(cfg.execution.get("read_workers", 1)))))
    tasks.sort(key=lambda t: -len(t.meta))  # big chunks first: no straggler at the end
    total = sum(len(t.meta) for t in tasks)
    payload = {"todo": {label: ex for label, _, ex in needed}, "context": context, "threads": None}
    executor = execution.make_executor(cfg.execution, payload, len(tasks),
                                       [ex for *_, ex in needed], log_path=say.log_path)
    t0 = time.perf_counter()
    done_sites = done_chunks = 0
    t_read = 0.0
    last = 0.0
    bar = None
    with executor:
        n_parts = sum(len(t.labels) for t in tasks)
        say(f"extract: computing {len(tasks)} of {len(chunks)} chunks ({total} sites; "
            f"{n_parts} of {len(chunks) * len(todo)} method x chunk parts) on "
            f"{executor.describe()}")
        if executor.dashboard_link:
            say(f"extract: dask dashboard {executor.dashboard_link}"
                + ("" if _has_bokeh() else " (install bokeh to serve it)"))
        bar = _bar(total, say)
        try:
            for s in executor.map(tasks):
                done_chunks += 1
                done_sites += s["rows"]
                t_read += s["read"]
                for label, sec in s["spent"].items():
                    spent[label] += sec
                el = time.perf_counter() - t0
                msg = (f"extract: {done_chunks}/{len(tasks)} chunks, {done_sites}/{total} sites "
                       f"({done_sites / max(el, 1e-9):.1f} sites/s)")
                say.log(f"extract: chunk {s['chunk']} done ({s['rows']} sites, "
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
        + f"; waiting for image reading {t_read:.1f} s"
        + (f" (summed over {executor.n_workers} workers)" if executor.n_workers > 1 else ""))


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _consolidate(feat_dir: Path, label: str, m: dict, key: str, base: str, chunks, idents,
                 meta: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Chunk parts → ``features/<label>.<layer>.parquet`` in site order + its manifest."""
    frames: dict[str, list[pd.DataFrame]] = {}
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
        for layer in layers:
            frames.setdefault(layer, []).append(
                pd.read_parquet(execution.part_path(feat_dir, label, layer, c.id)))
    site_order = np.argsort(np.concatenate([np.asarray(c.rows, dtype=np.int64) for c in chunks]),
                            kind="stable")
    out = {}
    for layer in order or []:
        feats = pd.concat(frames[layer], ignore_index=True).iloc[site_order].reset_index(drop=True)
        out[layer] = pd.concat([meta, feats], axis=1)
    write_feature_cache(feat_dir, label, key, m, out)
    return out


# --------------------------------------------------------------------------- profile
def _well_cell_counts(feats_by_method: dict) -> pd.DataFrame | None:
    """Mean nuclei count per well from a ``cell_count`` run, as ``Metadata_CellCount``.

    Profile steps such as MorphoHELM's cell-count QC and Seal et al.'s |r| > 0.95 filter
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
    wells = aggregate(site_df, operation=profile_cfg.get("aggregate", "mean"), features=feats,
                      log=log, stage=f"{label}: profile")
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


#: tasks that fit on some wells and score held-out ones: profile steps fitted on all wells
#: (or with perturbation labels) can carry the held-out wells into them
_GROUPED_PROBES = ("knn_probe", "regression_probe", "bioactivity")


def _warn_probes(frames: list[pd.DataFrame], profile_cfg: dict) -> list[pd.DataFrame]:
    """Add :func:`baselens.profile.protocols.probe_warning` of the profile's steps to the
    ``warning`` of the grouped probes' score rows (module docstring of protocols)."""
    from baselens.profile.protocols import probe_warning

    steps = profile_cfg.get("steps") or [
        f"normalize:{profile_cfg.get('normalize', 'standardize')}:"
        f"{profile_cfg.get('reference', 'negcon')}"]
    text = probe_warning(steps)
    if not text:
        return frames
    out = []
    for s in frames:
        if len(s) and s["task"].iat[0] in _GROUPED_PROBES:
            s = s.assign(warning=[w + ("; " if w else "") + text for w in s["warning"]])
        out.append(s)
    return out


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
    say = _Progress(progress, out / "run.log")
    log = FilterLog()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    ld, inputs, context = _prepare_data(cfg, out, say)
    timings["data"] = time.perf_counter() - t
    _write_screen(ld, out)
    say(f"data: {len(ld)} sites, {ld.table['Metadata_Plate'].nunique()} plates, "
        f"channels {ld.channels}")
    tasks_cfg = _preflight(cfg, ld, log, say)

    t = time.perf_counter()
    feats_by_method = _extract(cfg, ld, context, out, say)
    timings["extract"] = time.perf_counter() - t

    score_frames, per_frames = [], []
    profile_sets = []  # every representation layer's well profiles, for the diagnostics
    well_counts = _well_cell_counts(feats_by_method)
    t_prof = t_eval = 0.0
    task_record: dict = {}  # warnings counted and fold plans of every task (run.json)
    scoring = _ScoringProgress(say, sum(len(v) for v in feats_by_method.values())
                               * len(enabled_tasks(tasks_cfg)))
    for m in cfg.methods:
        label = m.get("label", m["name"])
        kind = method_kind(m["name"], m.get("params"))  # follows the weights, not the label
        for layer, site_df in feats_by_method[label].items():
            t = time.perf_counter()
            profiles, feats = _profile(site_df, {**cfg.profile, **m.get("profile", {})}, log,
                                       f"{label}/{layer}", well_counts)
            t_prof += time.perf_counter() - t
            t = time.perf_counter()
            scores, per = run_tasks(profiles, feats, inputs, tasks_cfg, log, f"{label}/{layer}",
                                    record=task_record,
                                    progress=scoring.for_representation(f"{label}/{layer}"))
            scores = _warn_probes(scores, {**cfg.profile, **m.get("profile", {})})
            t_eval += time.perf_counter() - t
            ident = {"method": label, "method_kind": kind, "layer": layer}
            seed = int(m.get("params", {}).get("seed", 0))
            score_frames += [s.assign(**ident, seed=seed) for s in scores]
            per_frames += [p.assign(**ident) for p in per]
            say(f"evaluate: {label}/{layer}: {_headline(scores)}")
            profile_sets.append(ProfileSet(method=label, method_kind=kind, layer=layer,
                                           profiles=profiles, features=list(feats)))
    scoring.close()
    timings["profile"], timings["evaluate"] = t_prof, t_eval

    scores = pd.concat(score_frames, ignore_index=True)[SCORE_COLUMNS]
    per_pert = (pd.concat(per_frames, ignore_index=True)[PER_PERT_COLUMNS]
                if per_frames else pd.DataFrame(columns=PER_PERT_COLUMNS))
    write_results(out, scores, per_pert)

    t = time.perf_counter()
    classes = None
    if "ground_truth_dir" in context:  # synthetic: the planted phenotype class of each perturbation
        classes = (pd.read_parquet(Path(context["ground_truth_dir"]) / "perturbations.parquet")
                   .set_index("Metadata_Perturbation")["Metadata_PhenotypeClass"])
    diagnostics = run_diagnostics(profile_sets, scores, per_pert, inputs=inputs,
                                  well_cell_counts=well_counts, phenotype_classes=classes,
                                  out_dir=out, log=log)
    # kept at the top level too (the first results contract had it there)
    write_parquet_atomic(diagnostics["beyond_baseline"], out / "beyond_baseline.parquet")
    timings["diagnose"] = time.perf_counter() - t
    say(f"diagnose: {', '.join(sorted(diagnostics))} ({timings['diagnose']:.1f} s)")

    run_info = {
        "title": cfg.title,
        "baselens_version": baselens.__version__,
        "python": platform.python_version(),
        "config": cfg.to_dict(),
        "n_sites": len(ld),
        "n_plates": int(ld.table["Metadata_Plate"].nunique()),
        "channels": ld.channels,
        "filters": log.to_records(),
        "task_warnings": task_record.get("warnings", []),
        "fold_plans": _fold_plans(task_record.get("fold_plans", [])),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    report = write_report_and_run_info(out, cfg.title, run_info, _report_context(run_info),
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


def _fold_plans(plans: list[dict]) -> dict[str, str]:
    """``task → how its folds were formed`` (one line; methods that differ are named)."""
    by_task: dict[str, dict[str, list[str]]] = {}
    for r in plans:
        by_task.setdefault(r["task"], {}).setdefault(r["fold_plan"], []).append(r["method"])
    out = {}
    for task, variants in by_task.items():
        if len(variants) == 1:
            out[task] = next(iter(variants))
        else:
            out[task] = " | ".join(f"{plan} ({', '.join(ms[:3])}{', …' if len(ms) > 3 else ''})"
                                   for plan, ms in variants.items())
    return out


def _warnings_line(rows: list[dict]) -> str:
    """Warnings raised inside tasks, summed per (task, batch level, category) over methods."""
    if not rows:
        return "none"
    agg: dict[tuple, list] = {}
    for r in rows:
        k = (r["task"], r["batch_level"], r["category"])
        a = agg.setdefault(k, [0, set(), r["message"]])
        a[0] += int(r["count"])
        a[1].add(r["method"])
    return "\n".join(f"{t} at {lv}: {n} × {cat} in {len(ms)} method/layer(s), e.g. {msg[:160]}"
                     for (t, lv, cat), (n, ms, msg) in sorted(agg.items()))


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
        "folds": "\n".join(f"{t}: {p}" for t, p in info.get("fold_plans", {}).items())
                 or "as each task's default (no fold plan reported)",
        "warnings in tasks": _warnings_line(info.get("task_warnings", [])),
        "timings (s)": ", ".join(f"{k} {v}" for k, v in info["timings_s"].items()),
        "baselens": info["baselens_version"],
    }
