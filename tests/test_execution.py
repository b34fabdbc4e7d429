"""Scale-out and resumable extraction (baselens.run.execution): chunks, per-chunk cache,
serial == LocalCluster(1) == LocalCluster(2), a run killed with SIGKILL resumes with only
its missing chunks, ``baselens status``."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.data.load_data import read_load_data
from baselens.data.synthetic import SyntheticConfig, generate_screen
from baselens.run import execution
from baselens.run.cli import main
from baselens.run.config import RunConfig
from baselens.run.pipeline import run_pipeline

METHODS = [{"name": "pixel_stats"}, {"name": "cell_count"},
           {"name": "single_conv", "params": {"n_filters": 8}}]
TASKS = {"replicate_retrieval": {"null_size": 200}}


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    return Path(generate_screen(SyntheticConfig.quick(), tmp_path_factory.mktemp("screen")))


def _cfg(screen: Path, **execution_cfg) -> dict:
    return {"data": {"load_data": str(screen)}, "methods": METHODS, "tasks": TASKS,
            "execution": {"chunk_size": 24, "dashboard_address": ":0", **execution_cfg}}


@pytest.fixture(scope="module")
def serial_run(screen, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    run_pipeline(RunConfig.from_dict(_cfg(screen, executor="serial")), out, progress=False)
    return out


def _features(out: Path) -> dict:
    return {m["name"]: pd.read_parquet(out / "features" / f"{m['name']}.default.parquet")
            for m in METHODS}


def _n_chunks(out: Path) -> int:
    return len(json.loads((out / "features" / "plan.json").read_text())["chunks"])


def test_chunks_are_plates_cut_to_size(screen):
    ld = read_load_data(screen)
    chunks = execution.make_chunks(ld, 24)
    plates = ld.table["Metadata_Plate"].astype(str).to_numpy()
    rows = np.concatenate([c.rows for c in chunks])
    assert sorted(rows) == list(range(len(ld)))
    assert all(c.n <= 24 and set(plates[list(c.rows)]) == {c.plate} for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    assert len(chunks) >= ld.table["Metadata_Plate"].nunique()


def test_chunk_identity_follows_the_files(screen):
    ld = read_load_data(screen)
    chunks = execution.make_chunks(ld, 24)
    a = execution.chunk_identities(ld, chunks)
    assert a == execution.chunk_identities(ld, chunks)
    p = ld.path(int(chunks[1].rows[0]), "DNA")
    st = p.stat()
    try:
        os.utime(p, (st.st_atime, st.st_mtime + 100))
        b = execution.chunk_identities(ld, chunks)
    finally:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [c for c in a if a[c] != b[c]] == [chunks[1].id]


@pytest.mark.slow
def test_serial_and_local_cluster_with_1_and_2_workers_agree(screen, serial_run, tmp_path):
    """A real LocalCluster (processes): same features and scores as in-process extraction."""
    ref_feats = _features(serial_run)
    ref_scores = pd.read_parquet(serial_run / "scores.parquet")
    for workers in (1, 2):
        out = tmp_path / f"dask{workers}"
        run_pipeline(RunConfig.from_dict(_cfg(screen, executor="dask", workers=workers)), out,
                     progress=False)
        log = (out / "run.log").read_text()
        assert f"dask LocalCluster, {workers} workers" in log
        # a dashboard only where bokeh can serve it (no "install bokeh" link to nowhere)
        import importlib.util

        assert ("dask dashboard http" in log) == (importlib.util.find_spec("bokeh") is not None)
        for name, df in _features(out).items():
            pd.testing.assert_frame_equal(ref_feats[name], df, rtol=1e-6)
        pd.testing.assert_frame_equal(ref_scores, pd.read_parquet(out / "scores.parquet"),
                                      rtol=1e-9)


def test_default_executor_is_a_local_cluster_sized_to_the_machine():
    """The embedded default is dask (a LocalCluster, one worker per core, capped at the
    number of chunks); one chunk or one worker runs in this process; a scheduler address
    connects to that cluster."""
    ex = execution.make_executor({}, {}, n_tasks=50, extractors=[])
    assert isinstance(ex, execution.DaskExecutor) and ex.scheduler is None
    assert ex.workers == min(50, os.cpu_count() or 1)
    assert isinstance(execution.make_executor({}, {}, 1, []), execution.SerialExecutor)
    assert type(execution.make_executor({"workers": 1}, {}, 9, [])) is execution.SerialExecutor
    assert execution.make_executor({"workers": 3}, {}, 2, []).workers == 2
    remote = execution.make_executor({"scheduler": "tcp://10.0.0.5:8786"}, {}, 9, [])
    assert isinstance(remote, execution.DaskExecutor) and remote.scheduler == "tcp://10.0.0.5:8786"
    assert isinstance(execution.make_executor({"executor": "processes", "workers": 2}, {}, 9, []),
                      execution.ProcessExecutor)
    with pytest.raises(ValueError, match="executor"):
        execution.make_executor({"executor": "threads"}, {}, 9, [])


@pytest.mark.slow
def test_local_cluster_workers_keep_glibc_malloc_adaptive():
    """dask's nanny exports MALLOC_TRIM_THRESHOLD_ (it froze glibc's mmap threshold and made
    extraction 30-45 % slower); our LocalCluster workers start without it, keep the
    single-thread variables, and this process's environment is left as it was."""
    from distributed import Client, LocalCluster

    before = dict(os.environ)
    with execution._worker_environ():
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    try:
        with Client(cluster) as client:
            env = next(iter(client.run(lambda: {k: os.environ.get(k) for k in (
                "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}).values()))
    finally:
        cluster.close()
    assert env == {"MALLOC_TRIM_THRESHOLD_": before.get("MALLOC_TRIM_THRESHOLD_"),
                   "OMP_NUM_THREADS": "1"}
    assert dict(os.environ) == before


@pytest.mark.slow
def test_rerun_extracts_nothing_and_a_changed_image_recomputes_its_chunk(screen, serial_run,
                                                                         tmp_path):
    cfg = RunConfig.from_dict(_cfg(screen, executor="serial"))
    import shutil

    out = tmp_path / "again"
    shutil.copytree(serial_run, out)
    parts = {p: p.stat().st_mtime_ns for p in (out / "features").rglob("part-*.parquet")}
    run_pipeline(cfg, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in parts} == parts
    assert "reused from cache" in (out / "run.log").read_text()
    # touch one image: its chunk (only) is recomputed, the others come from their parts
    ld = read_load_data(screen)
    chunk = execution.make_chunks(ld, 24)[2]
    p = ld.path(int(chunk.rows[0]), "Mito")
    st = p.stat()
    os.utime(p, (st.st_atime, st.st_mtime + 100))
    try:
        run_pipeline(cfg, out, progress=False)
    finally:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    log = (out / "run.log").read_text()
    assert f"computing 1 of {_n_chunks(out)} chunks" in log
    changed = {p.name for p in parts if p.stat().st_mtime_ns != parts[p]}
    assert changed == {f"part-{chunk.id}.parquet"}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"),
                                  pd.read_parquet(serial_run / "scores.parquet"))


def _write_toml(path: Path, screen: Path, **ex) -> Path:
    lines = [f'[data]\nload_data = "{screen}"\n']
    for m in METHODS:
        lines.append(f'[[methods]]\nname = "{m["name"]}"\n')
        if "params" in m:
            lines.append("params = { " + ", ".join(f"{k} = {v}" for k, v in m["params"].items())
                         + " }\n")
    lines.append("[tasks.replicate_retrieval]\nnull_size = 200\n")
    lines.append("[execution]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in {"chunk_size": 8, "dashboard_address": ":0",
                                                **ex}.items()))
    path.write_text("".join(lines))
    return path


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_computes_only_missing_chunks(screen, serial_run, tmp_path):
    """`baselens run` on a dask LocalCluster, SIGKILLed after some chunks: the second run
    computes exactly the missing chunks and scores equal an uninterrupted run's."""
    cfg = _write_toml(tmp_path / "run.toml", screen, executor="dask", workers=1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "baselens.run.cli", "run", str(cfg), "--out", str(out), "--quiet"]
    marks = out / "features" / "single_conv" / "chunks"
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while len(list(marks.glob("*.json")) if marks.exists() else []) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no chunk finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its dask workers, at once
        proc.wait()
    total = _n_chunks(out)
    done = {p.stem for p in marks.glob("*.json")}
    assert 3 <= len(done) < total, "the run finished before it could be killed"
    assert not (out / "scores.parquet").exists()
    status = subprocess.run([sys.executable, "-m", "baselens.run.cli", "status", str(out)],
                            capture_output=True, text=True, check=True).stdout
    row = next(ln for ln in status.splitlines() if ln.startswith("single_conv"))
    assert f"{len(done)}/{total}" in row.replace(" ", "")
    assert "scores.parquet: no" in status
    # chunks a method finished before the kill (the 3 methods finish a chunk together)
    finished = {p: p.stat().st_mtime_ns for p in (out / "features").rglob("part-*.parquet")
                if p.stem.removeprefix("part-") in done}
    log_before = (out / "run.log").read_text()
    # what a writer killed mid-write leaves: a temp file beside its part (never read)
    stale = marks.parent / "default" / ".part-x.parquet.abc123.tmp"
    stale.write_bytes(b"PAR1 half")

    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    second = (out / "run.log").read_text()[len(log_before):]
    assert f"computing {total - len(done)} of {total} chunks" in second
    # ours, plus any the SIGKILL itself left mid-write (a race: 0 or more)
    removed = re.search(r"removed (\d+) half-written temp file", second)
    assert not stale.exists() and removed and int(removed.group(1)) >= 1
    assert not list(out.rglob("*.tmp"))
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    recomputed = {ln.split("chunk ")[1].split()[0] for ln in second.splitlines()
                  if "extract: chunk " in ln}
    assert recomputed.isdisjoint(done) and len(recomputed) == total - len(done)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"),
                                  pd.read_parquet(serial_run / "scores.parquet"))
    for name, df in _features(serial_run).items():
        pd.testing.assert_frame_equal(df, pd.read_parquet(out / "features" / f"{name}.default.parquet"),
                                      rtol=1e-6)
    status = subprocess.run([sys.executable, "-m", "baselens.run.cli", "status", str(out)],
                            capture_output=True, text=True, check=True).stdout
    assert f"{total}/{total}" in status.replace(" ", "") and "scores.parquet: yes" in status


def test_status_of_a_finished_run(serial_run, capsys):
    assert main(["status", str(serial_run)]) == 0
    out = capsys.readouterr().out
    n = _n_chunks(serial_run)
    for m in METHODS:
        row = next(ln for ln in out.splitlines() if ln.startswith(m["name"]))
        assert f"{n}/{n}" in row.replace(" ", "") and "written" in row
    assert "scores.parquet: yes" in out and "report.html: yes" in out


def test_unknown_executor_is_a_clear_error(screen, tmp_path):
    cfg = RunConfig.from_dict(_cfg(screen, executor="slurm"))
    with pytest.raises(ValueError, match="execution.executor must be one of"):
        run_pipeline(cfg, tmp_path / "x", progress=False)


def test_nothing_reading_pixels_runs_in_process_without_a_cluster():
    class NoPixels:
        needs_images = False

    class Pixels:
        needs_images = True

    ex = execution.make_executor({}, {}, n_tasks=50, extractors=[NoPixels(), NoPixels()])
    assert type(ex) is execution.SerialExecutor
    assert isinstance(execution.make_executor({}, {}, 50, [NoPixels(), Pixels()]),
                      execution.DaskExecutor)
    # an explicit executor is honoured
    assert isinstance(execution.make_executor({"executor": "processes", "workers": 2}, {}, 9,
                                              [NoPixels()]), execution.ProcessExecutor)


def test_dashboard_address_never_collides_and_needs_bokeh(monkeypatch):
    import importlib.util
    import socket

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bokeh" else real(name, *a))
    assert execution.dashboard_address(":8787") == ":0"  # no bokeh: no dashboard, any free port
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bokeh" else real(name, *a))
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert execution.dashboard_address(f":{port}") == ":0"  # taken: any free port
    assert execution.dashboard_address(":0") == ":0"


def test_dask_log_records_go_to_the_run_log_not_the_terminal(tmp_path, capfd):
    import logging

    log = tmp_path / "run.log"
    before = logging.getLogger("distributed").handlers[:]
    with execution.dask_logs_to(log):
        logging.getLogger("distributed.scheduler").info("State start (test line)")
        logging.getLogger("distributed.core").warning("Port 8787 is already in use (test)")
    assert "State start (test line)" in log.read_text()
    assert "Port 8787" in log.read_text()
    err = capfd.readouterr().err
    assert "State start" not in err and "Port 8787" not in err
    assert logging.getLogger("distributed").handlers == before  # restored


def test_evaluate_progress_lines_name_representation_task_and_levels(tmp_path):
    from baselens.run.pipeline import _Progress, _ScoringProgress

    say = _Progress(False, tmp_path / "run.log")
    prog = _ScoringProgress(say, total=2)
    step = prog.for_representation("profiles/default")
    step("replicate_retrieval", pd.DataFrame({"batch_level": ["NR", "NR", "NSP"]}))
    step("bioactivity", None)
    prog.close()
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert "evaluate: profiles/default: replicate_retrieval [NR, NSP]" in lines[0]
    assert "(1/2 tasks" in lines[0]
    assert "evaluate: profiles/default: bioactivity [skipped]" in lines[1]
