"""Where extraction runs: chunks of sites on an executor, cached per chunk.

Work unit
    A :class:`Chunk` is at most ``chunk_size`` sites of one plate (``make_chunks``). The
    client ships a :class:`ChunkTask` — the chunk's rows of the load_data table (paths,
    metadata) and which methods still need it — never image bytes: the worker reads the
    images itself (``run_chunk``), runs the extractors in batches of ``batch_size`` sites,
    and writes one Parquet part per (method, layer) itself:

    ``features/<label>/<layer>/part-<chunk>.parquet``  feature columns of the chunk's sites
    ``features/<label>/chunks/<chunk>.json``           done marker: the chunk key + layers

    Both are written atomically (temp file + rename) and the marker last, so a killed run
    leaves either a complete chunk or nothing that counts. Memory on a worker is bounded
    by one chunk's features plus ``prefetch + 1`` batches of images.

Cache key of a chunk (``chunk_key``)
    sha256 of the method's key (extractor name, its parameters, baselens version) and the
    chunk's input identity (its load_data rows — metadata, file names, paths — and every
    image file's size and mtime). Extractors with a whole-screen ``fit`` (e.g. networks'
    per-plate intensity statistics) also key on the whole screen's identity. A chunk whose
    marker carries the current key is never recomputed: re-running a finished run
    extracts nothing, a killed run recomputes only its missing chunks.

Executors (``[execution] executor``)
    ``"dask"`` (the default): a ``LocalCluster`` sized to the
    machine (one single-threaded worker process per core, ``workers`` to override; the
    dashboard link is printed), or an existing cluster with ``scheduler = "tcp://host:8786"``
    / ``--scheduler`` (workers must see the run folder and the images at the same paths:
    a shared file system). Extractors are built and fitted once in the client and
    scattered to every worker (one copy per worker, reused by all its chunks).
    ``"processes"``: a spawn ``ProcessPoolExecutor`` (no dask needed). ``"serial"``: this
    process. One missing chunk, or one worker without a scheduler, runs serially.

GPU extractors (networks with ``device = "auto"`` or ``"cuda"`` when CUDA is available)
    On a LocalCluster: one worker per visible GPU (unless ``workers`` is set), each pinned
    to its GPU by a worker plugin that sets ``CUDA_VISIBLE_DEVICES`` before CUDA starts.
    On an existing cluster: start one worker per GPU yourself (``dask-cuda-worker``, or
    ``CUDA_VISIBLE_DEVICES=i dask worker ADDRESS --nthreads 1`` per GPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from baselens._io import write_json_atomic, write_parquet_atomic

EXECUTORS = ("serial", "processes", "dask")
DEFAULT_CHUNK_SIZE = 64
PLAN_FILE = "plan.json"


# --------------------------------------------------------------------------- chunks
def _safe(name: str) -> str:
    """A file-name-safe version of a plate, label or layer name."""
    s = re.sub(r"[^A-Za-z0-9_.=+-]", "_", str(name))
    return s if s.strip(".") else "_" + s


@dataclass(frozen=True)
class Chunk:
    id: str  # file-name safe, unique in the run
    plate: str
    rows: tuple  # positions in the load_data table, ascending

    @property
    def n(self) -> int:
        return len(self.rows)


def make_chunks(ld, chunk_size: int) -> list[Chunk]:
    """Sites grouped by plate (first-appearance order), each plate cut into
    ``chunk_size``-site pieces."""
    chunk_size = max(1, int(chunk_size))
    plates = (ld.table["Metadata_Plate"].astype(str).to_numpy()
              if "Metadata_Plate" in ld.table.columns else np.full(len(ld), "all"))
    chunks, used = [], set()
    for plate in pd.unique(plates):
        rows = np.flatnonzero(plates == plate)
        base = _safe(plate)
        while base in used:  # two plates with the same safe name
            base += "_"
        used.add(base)
        for k, s in enumerate(range(0, len(rows), chunk_size)):
            chunks.append(Chunk(f"{base}-{k:05d}", str(plate),
                                tuple(int(r) for r in rows[s:s + chunk_size])))
    return chunks


def _file_paths(ld, rows: np.ndarray) -> list[Path]:
    """Resolved image paths (every channel, and illumination files) of ``rows``."""
    paths = []
    kinds = ["Orig"] + (["Illum"] if ld.illum else [])
    t = ld.table
    for kind in kinds:
        for ch in ld.channels:
            fcol, pcol = f"FileName_{kind}{ch}", f"PathName_{kind}{ch}"
            if fcol not in t.columns:
                continue
            fnames = t[fcol].to_numpy()[rows]
            dirs = t[pcol].to_numpy()[rows] if pcol in t.columns else [""] * len(rows)
            for d, f in zip(dirs, fnames):
                d = "" if d is None or (isinstance(d, float) and np.isnan(d)) else str(d)
                for prefix, repl in ld.path_map.items():
                    if d.startswith(prefix):
                        d = repl + d[len(prefix):]
                p = Path(d) / str(f)
                paths.append(p if p.is_absolute() else ld.root / p)
    return paths


def _stat(p: Path) -> str:
    try:
        st = p.stat()
        return f"{st.st_size}:{int(st.st_mtime)}"
    except OSError:
        return "?"


def chunk_identities(ld, chunks: list[Chunk], threads: int = 8) -> dict[str, str]:
    """Input identity of each chunk: its load_data rows (metadata, file names, relative
    paths: a moved run folder keeps its identity) plus each image file's size and mtime."""
    table = ld.table
    with ThreadPoolExecutor(max_workers=threads) as pool:  # stat() is I/O: threads help on NFS
        def one(c: Chunk) -> str:
            rows = np.asarray(c.rows)
            h = hashlib.sha256()
            h.update(pd.util.hash_pandas_object(table.iloc[rows], index=False).values.tobytes())
            h.update(json.dumps([ld.channels, ld.illum, sorted(ld.path_map.items())]).encode())
            h.update("|".join(_stat(p) for p in _file_paths(ld, rows)).encode())
            return h.hexdigest()[:24]

        return dict(zip([c.id for c in chunks], pool.map(one, chunks)))


def screen_identity(idents: dict[str, str], length: int = 16) -> str:
    """The identity of a set of chunks (the whole screen): a hash of their identities,
    ``length`` hex digits (16 for the data part of a method's key, 24 for the identity of
    a chunk of every unit, as long as a chunk's own)."""
    return hashlib.sha256(json.dumps(idents, sort_keys=True).encode()).hexdigest()[:length]


def chunk_key(method_base: str, identity: str) -> str:
    return hashlib.sha256(f"{method_base}|{identity}".encode()).hexdigest()[:24]


def marker_path(feat_dir: Path, label: str, chunk_id: str) -> Path:
    return Path(feat_dir) / _safe(label) / "chunks" / f"{chunk_id}.json"


def part_path(feat_dir: Path, label: str, layer: str, chunk_id: str) -> Path:
    return Path(feat_dir) / _safe(label) / _safe(layer) / f"part-{chunk_id}.parquet"


def chunk_done(feat_dir: Path, label: str, chunk_id: str, key: str) -> list[str] | None:
    """The chunk's layers when its marker carries ``key`` and every part exists."""
    mp = marker_path(feat_dir, label, chunk_id)
    try:
        info = json.loads(mp.read_text())
    except (OSError, ValueError):
        return None
    layers = info.get("layers") or []
    if info.get("key") != key or not layers:
        return None
    if not all(part_path(feat_dir, label, layer, chunk_id).exists() for layer in layers):
        return None
    return layers


# --------------------------------------------------------------------------- worker side
@dataclass
class ChunkTask:
    """What a worker needs for one chunk (small: no images, no extractors)."""

    chunk_id: str
    ld: object  # LoadData restricted to the chunk's rows
    meta: pd.DataFrame
    labels: list  # methods still missing for this chunk
    keys: dict  # label -> chunk key (written into the marker)
    feat_dir: str
    batch_size: int = 32
    prefetch: int = 2
    read_workers: int = 1


def run_extractors(todo: dict, batch, n_sites: int) -> tuple[dict, dict]:
    """Every extractor on one batch: ({label: {layer: DataFrame}}, {label: seconds})."""
    out, spent = {}, {}
    for label, ex in todo.items():
        t = time.perf_counter()
        layers = ex(batch)
        spent[label] = time.perf_counter() - t
        for layer, df in layers.items():
            if len(df) != n_sites:
                raise RuntimeError(f"extractor {label!r} returned {len(df)} rows for "
                                   f"{n_sites} sites (layer {layer!r})")
        out[label] = {layer: df.reset_index(drop=True) for layer, df in layers.items()}
    return out, spent


_THREADS_SET = [False]


def _set_threads(threads: int | None) -> None:
    if threads and not _THREADS_SET[0]:
        try:
            import torch

            torch.set_num_threads(int(threads))
        except ImportError:  # pragma: no cover
            pass
        _THREADS_SET[0] = True


def run_chunk(task: ChunkTask, payload: dict) -> dict:
    """Read the chunk's images, run the missing extractors, write parts + markers.

    ``payload``: ``{"todo": {label: extractor}, "context": dict, "threads": int|None}``.
    Returns a small summary (no features): rows, seconds per method, seconds reading.
    """
    from baselens.extract.registry import SiteBatch

    _set_threads(payload.get("threads"))
    todo = {lb: payload["todo"][lb] for lb in task.labels}
    ld, n = task.ld, len(task.meta)
    need_images = any(getattr(ex, "needs_images", True) for ex in todo.values())
    bs = max(1, int(task.batch_size))
    starts = list(range(0, n, bs))
    pool = (ThreadPoolExecutor(max_workers=max(1, task.read_workers),
                               thread_name_prefix="baselens-read")
            if need_images and task.prefetch > 0 and len(starts) > 1 else None)
    pending: dict[int, Future] = {}

    def _read(s: int):
        return ld.read_sites(np.arange(s, min(s + bs, n))) if need_images else None

    frames: dict[str, dict[str, list]] = {lb: {} for lb in todo}
    spent = {lb: 0.0 for lb in todo}
    t_read = 0.0
    try:
        for b, s in enumerate(starts):
            if pool is not None:  # keep `prefetch` batches in flight (tifffile releases the GIL)
                for nxt in starts[b: b + task.prefetch + 1]:
                    if nxt not in pending:
                        pending[nxt] = pool.submit(_read, nxt)
            t = time.perf_counter()
            images = pending.pop(s).result() if s in pending else _read(s)
            t_read += time.perf_counter() - t
            idx = np.arange(s, min(s + bs, n))
            batch = SiteBatch(images=images, channels=list(ld.channels),
                              meta=task.meta.iloc[idx].reset_index(drop=True),
                              context=payload.get("context") or {})
            out, sp = run_extractors(todo, batch, len(idx))
            for lb, layers in out.items():
                spent[lb] += sp[lb]
                for layer, df in layers.items():
                    frames[lb].setdefault(layer, []).append(df)
    finally:
        if pool is not None:
            for f in pending.values():
                f.cancel()
            pool.shutdown(wait=True)
    feat_dir = Path(task.feat_dir)
    for lb, layers in frames.items():
        for layer, parts in layers.items():
            df = pd.concat(parts, ignore_index=True)
            df.columns = [str(c) for c in df.columns]
            write_parquet_atomic(df.astype(np.float64), part_path(feat_dir, lb, layer, task.chunk_id))
        # the marker last: a chunk counts as done only once every layer is on disk
        write_json_atomic({"key": task.keys[lb], "layers": list(layers), "rows": n},
                          marker_path(feat_dir, lb, task.chunk_id))
    return {"chunk": task.chunk_id, "rows": n, "spent": spent, "read": t_read,
            "pid": os.getpid()}


def _call(fn, item, shared, threads):
    """One ``map_calls`` item on a worker, with the worker's torch thread share."""
    _set_threads(threads)
    return fn(item, shared)


# process-pool worker state (set once by the initializer)
_PAYLOAD: dict = {}


def _init_process(payload: dict) -> None:
    _PAYLOAD.update(payload)


def _process_chunk(task: ChunkTask) -> dict:
    return run_chunk(task, _PAYLOAD)


# --------------------------------------------------------------------------- executors
def _uses_gpu(extractors) -> bool:
    names = [str(getattr(ex, "device_name", "cpu")) for ex in extractors]
    if not any(n == "auto" or n.startswith("cuda") for n in names):
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def _gpu_ids() -> list[str]:
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis:
        return [v.strip() for v in vis.split(",") if v.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class SerialExecutor:
    name = "serial"
    n_workers = 1
    dashboard_link = None

    def __init__(self, payload: dict):
        self.payload = payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self) -> str:
        return "in this process"

    def map(self, tasks: list[ChunkTask]) -> Iterator[dict]:
        for t in tasks:
            yield run_chunk(t, self.payload)

    def map_calls(self, fn, items: list, shared=None) -> Iterator:
        """``fn(item, shared)`` for every item, results in completion order. ``fn`` must be
        a module-level function; ``shared`` travels once per worker where it can."""
        for item in items:
            yield _call(fn, item, shared, self.payload.get("threads"))


class ProcessExecutor(SerialExecutor):
    name = "processes"

    def __init__(self, payload: dict, workers: int):
        self.payload = dict(payload, threads=max(1, (os.cpu_count() or 1) // workers))
        self.n_workers = workers
        self.pool = None

    def __enter__(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=self.n_workers,
                                        mp_context=mp.get_context("spawn"),
                                        initializer=_init_process, initargs=(self.payload,))
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)
        return False

    def describe(self) -> str:
        return f"{self.n_workers} worker processes"

    def map(self, tasks):
        from concurrent.futures import as_completed

        futures = [self.pool.submit(_process_chunk, t) for t in tasks]
        for f in as_completed(futures):
            yield f.result()

    def map_calls(self, fn, items, shared=None):
        from concurrent.futures import as_completed

        futures = [self.pool.submit(_call, fn, it, shared, self.payload.get("threads"))
                   for it in items]
        for f in as_completed(futures):
            yield f.result()


class _PinGPU:
    """Dask worker plugin: pin LocalCluster worker ``i`` to GPU ``gpus[i % n]``."""

    name = "baselens-pin-gpu"

    def __init__(self, gpus: list[str]):
        self.gpus = gpus

    def setup(self, worker):
        try:
            i = int(worker.name)
        except (TypeError, ValueError):
            i = abs(hash(worker.name))
        os.environ["CUDA_VISIBLE_DEVICES"] = self.gpus[i % len(self.gpus)]

    def teardown(self, worker):  # pragma: no cover
        pass

    def transition(self, *a, **k):  # pragma: no cover
        pass


@contextlib.contextmanager
def _worker_environ():
    """The environment LocalCluster worker processes start with.

    dask's nanny exports ``MALLOC_TRIM_THRESHOLD_=65536`` to its workers (config
    ``distributed.nanny.pre-spawn-environ``) to hand freed memory back to the OS sooner.
    Setting any glibc malloc threshold switches off glibc's *dynamic* mmap threshold, so
    every temporary array above 128 KiB is mmapped and page-faulted afresh: image
    extraction (many large short-lived arrays) ran 30-45 % slower on dask workers than in
    a spawn process pool (``bench/executors.py`` prints the ratio). We drop that one
    variable (dask keeps ``OMP_NUM_THREADS=1`` etc.: our workers are single-threaded
    anyway); dask config ``baselens.keep-dask-nanny-environ: true`` keeps dask's stock
    environment. The nanny also writes these variables into *this* process's
    ``os.environ`` before it spawns; they are restored afterwards so that later
    subprocesses (and a later process pool) do not inherit them.
    """
    import dask

    saved = dict(os.environ)
    override = ({} if dask.config.get("baselens.keep-dask-nanny-environ", False)
                else {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    try:
        with dask.config.set(override):
            yield
    finally:
        for k in set(os.environ) - set(saved):
            del os.environ[k]
        for k, v in saved.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


class DaskExecutor(SerialExecutor):
    """dask.distributed: a LocalCluster (``scheduler=None``) or an existing scheduler."""

    name = "dask"

    def __init__(self, payload: dict, workers: int | None, scheduler: str | None = None,
                 gpus: list[str] | None = None, dashboard_address: str | None = ":8787",
                 log_path: str | os.PathLike | None = None):
        self.payload = payload
        self.workers = workers
        self.scheduler = scheduler
        self.gpus = gpus or []
        self.dashboard_address = dashboard_address
        self.log_path = log_path
        self._logs = self._log_handler = None
        self.client = self.cluster = None
        self.n_workers = workers or 0

    def __enter__(self):
        import logging

        from distributed import Client, LocalCluster

        self._logs = dask_logs_to(self.log_path)
        self._log_handler = self._logs.__enter__()
        try:
            return self._start(Client, LocalCluster, logging)
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self, Client, LocalCluster, logging):
        if self.scheduler:
            self.client = Client(self.scheduler)
            self.n_workers = len(self.client.scheduler_info().get("workers", {}))
        else:
            n = self.workers or (len(self.gpus) if self.gpus else (os.cpu_count() or 1))
            with _worker_environ(), warnings.catch_warnings():
                # a port taken between our check and dask's bind: dask moves on quietly
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                            dashboard_address=dashboard_address(
                                                self.dashboard_address),
                                            silence_logs=logging.ERROR)
            if self._log_handler is not None:
                # silence_logs lowers every StreamHandler (FileHandler is one) of
                # "distributed" to ERROR: the run log keeps the scheduler's INFO lines
                self._log_handler.setLevel(logging.NOTSET)
            self.client = Client(self.cluster)
            self.n_workers = n
            if self.gpus:
                self.client.register_plugin(_PinGPU(self.gpus))
            # one torch thread per core share (LocalCluster workers are single-threaded)
            self.payload = dict(self.payload, threads=max(1, (os.cpu_count() or 1) // n))
        try:  # no link to a dashboard that cannot be served (no bokeh here)
            self.dashboard_link = (self.client.dashboard_link
                                   if self.scheduler or _has_bokeh() else None)
        except (KeyError, AttributeError):
            self.dashboard_link = None
        # extractors (fitted in the client) travel once to each worker, then stay there
        self._payload_future = self.client.scatter(self.payload, broadcast=True, hash=False)
        return self

    def __exit__(self, *exc):
        try:
            if self.client is not None:
                self.client.close()
        finally:
            try:
                if self.cluster is not None:
                    self.cluster.close()
            finally:
                if self._logs is not None:
                    self._logs.__exit__(None, None, None)
                    self._logs = None
        return False

    def describe(self) -> str:
        where = f"scheduler {self.scheduler}" if self.scheduler else "LocalCluster"
        return f"dask {where}, {self.n_workers} workers"

    def map(self, tasks):
        from distributed import as_completed

        run_id = uuid.uuid4().hex[:8]
        futures = [self.client.submit(run_chunk, t, self._payload_future, pure=False,
                                      key=f"baselens-chunk-{t.chunk_id}-{i}-{run_id}")
                   for i, t in enumerate(tasks)]  # a chunk may be several tasks (spots)
        try:
            for f in as_completed(futures):
                yield f.result()
        finally:
            self.client.cancel(futures)

    def map_calls(self, fn, items, shared=None):
        from distributed import as_completed

        run_id = uuid.uuid4().hex[:8]
        shared_f = self.client.scatter(shared, broadcast=True, hash=False)
        futures = [self.client.submit(_call, fn, it, shared_f, self.payload.get("threads"),
                                      pure=False, key=f"baselens-call-{i}-{run_id}")
                   for i, it in enumerate(items)]
        try:
            for f in as_completed(futures):
                yield f.result()
        finally:
            self.client.cancel(futures)


def make_executor(execution: dict, payload: dict, n_tasks: int, extractors,
                  log_path: str | os.PathLike | None = None) -> SerialExecutor:
    """The executor ``[execution]`` asks for, sized to the work (see the module doc).

    Without an explicit ``executor``, work whose extractors all declare
    ``needs_images = False`` runs in this process (no cluster start-up). ``log_path``:
    where a dask executor writes dask's own log records (never the terminal).
    """
    kind = execution.get("executor")
    if kind is not None and kind not in EXECUTORS:
        raise ValueError(f"execution.executor must be one of {EXECUTORS}, got {kind!r}")
    scheduler = execution.get("scheduler")
    if scheduler and kind not in (None, "dask"):
        raise ValueError(f"execution.scheduler needs executor 'dask', not {kind!r}")
    extractors = list(extractors)
    if kind is None and extractors and not any(getattr(ex, "needs_images", True)
                                               for ex in extractors):
        # nothing reads pixels (precomputed, profiles, plate_layout, random, ...): joining
        # tables takes milliseconds, a cluster seconds to start
        return SerialExecutor(payload)
    gpus = _gpu_ids() if _uses_gpu(extractors) else []
    workers = execution.get("workers")
    if workers is not None:
        workers = max(1, int(workers))
    if kind is None:
        # dask everywhere: a LocalCluster sized to the machine, or the scheduler's cluster.
        # (The LocalCluster used to be 30-45 % slower than a spawn pool: dask's nanny
        # environment, see _worker_environ; bench/executors.py compares them.)
        kind = "dask"
        if not scheduler:
            n = workers or (len(gpus) if gpus else (os.cpu_count() or 1))
            if min(n, n_tasks) <= 1:
                kind = "serial"  # no cluster start-up for one worker / one chunk
    if kind == "serial":
        return SerialExecutor(payload)
    if kind == "processes":
        n = min(workers or (os.cpu_count() or 1), n_tasks)
        return ProcessExecutor(payload, max(1, n)) if n > 1 else SerialExecutor(payload)
    n = None if scheduler else min(workers or (len(gpus) if gpus else (os.cpu_count() or 1)),
                                   max(1, n_tasks))
    return DaskExecutor(payload, n, scheduler, gpus, execution.get("dashboard_address"),
                        log_path=log_path)


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard_address(requested: str | None = None) -> str:
    """Where a LocalCluster's scheduler serves HTTP: ``requested`` (default ``":8787"``)
    when that port is free, else ``":0"`` (any free port); ``":0"`` when bokeh is absent
    (the scheduler always opens its HTTP server; without bokeh there is no dashboard to
    reserve 8787 for). Never dask's "Port 8787 is already in use" warning."""
    import socket

    if not _has_bokeh():
        return ":0"
    addr = requested or ":8787"
    host, _, port = addr.rpartition(":")
    try:
        port_n = int(port)
    except ValueError:
        return addr
    if port_n == 0:
        return addr
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host or "", port_n))
        except OSError:
            return f"{host}:0"
    return addr


@contextlib.contextmanager
def dask_logs_to(log_path: str | os.PathLike | None):
    """Route dask/distributed's own log records to ``log_path`` (the run log) only.

    While the block runs, the ``distributed`` and ``dask`` loggers get a file handler on
    ``log_path`` and stop propagating to the root logger / stderr: the terminal shows
    baselens' lines, never dask's INFO chatter; ``run.log`` keeps everything. Restored on
    exit.
    """
    import logging

    names = ("distributed", "dask", "bokeh", "tornado")
    saved = []
    handler = None
    if log_path is not None:
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(name)s %(levelname)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    for name in names:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.propagate, lg.level))
        lg.handlers = [h for h in lg.handlers
                       if not (isinstance(h, logging.StreamHandler)
                               and not isinstance(h, logging.FileHandler))]
        if handler is not None:
            lg.addHandler(handler)
        lg.propagate = False
        if name == "distributed":
            lg.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for lg, handlers, propagate, level in saved:
            lg.handlers = handlers
            lg.propagate = propagate
            lg.setLevel(level)
        if handler is not None:
            handler.close()


# --------------------------------------------------------------------------- status
def write_plan(feat_dir: Path, plan: dict) -> None:
    write_json_atomic(plan, Path(feat_dir) / PLAN_FILE)


def status_report(run_dir: str | os.PathLike) -> str:
    """What is done and what is left in a run folder (``baselens status DIR``)."""
    out = Path(run_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"no run folder at {out}")
    feat_dir = out / "features"
    lines = [f"run folder: {out.resolve()}"]
    plan_p = feat_dir / PLAN_FILE
    if not plan_p.exists():
        lines.append("extraction: not started (no features/plan.json)")
    else:
        plan = json.loads(plan_p.read_text())
        noun = f"{plan.get('unit', 'site')}s"
        all_chunks = plan["chunks"]
        n_sites = sum(c["n"] for c in all_chunks)
        lines.append(f"data: {n_sites} {noun} in {len(all_chunks)} chunks "
                     f"(chunk size {plan.get('chunk_size')}, planned {plan.get('created')})")
        lines.append(f"{'method':<28} {'chunks done':>12} {'left':>6} {noun + ' left':>10}  "
                     "features")
        for label, info in plan["methods"].items():
            chunks = info.get("chunks", all_chunks)  # a method's own chunks (spots: one of all)
            if info.get("same_as"):
                lines.append(f"{label:<28} {'':>12} {'':>6} {'':>10}  shares {info['same_as']}'s")
                continue
            manifest = feat_dir / f"{label}.json"
            consolidated = False
            if manifest.exists():
                try:
                    m = json.loads(manifest.read_text())
                    consolidated = m.get("key") == info["key"] and all(
                        (feat_dir / f).exists() for _, f in m.get("layers", []))
                except ValueError:
                    pass
            if info.get("in_process"):  # computed in the run's process, all units at once
                lines.append(f"{label:<28} {'':>12} {'':>6} {'':>10}  "
                             + ("written" if consolidated else "pending (in process)"))
                continue
            if consolidated:
                done = list(chunks)
            else:
                done = [c for c in chunks if chunk_done(
                    feat_dir, label, c["id"], chunk_key(info["base"], c["identity"])) is not None]
            left = len(chunks) - len(done)
            sites_left = n_sites - sum(c["n"] for c in done)
            lines.append(f"{label:<28} {len(done):>5}/{len(chunks):<6} {left:>6} {sites_left:>10}  "
                         + ("written" if consolidated else "pending"))
    for name in ("scores.parquet", "per_perturbation.parquet", "report.html", "run.json"):
        lines.append(f"{name}: {'yes' if (out / name).exists() else 'no'}")
    log = out / "run.log"
    if log.exists():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        if tail:
            lines.append(f"last log line: {tail[-1]}")
    return "\n".join(lines)
