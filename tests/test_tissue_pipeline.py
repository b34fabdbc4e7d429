"""The tissue pipeline end to end on a quick synthetic tissue: results contract, report
panels, feature cache, and what the tissue baselines of “Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377) must show."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.run.pipeline import PER_PERT_COLUMNS, SCORE_COLUMNS

STRUCTURAL = ("density", "clustering", "regularity")

# the quick protocol: every kind of representation, small enough for a test
METHODS = [
    {"name": "ground_truth"},
    {"name": "random"},
    {"name": "pixel_stats"},
    {"name": "tissue_count"},
    {"name": "tissue_points"},
    {"name": "tissue_gcn", "label": "tissue_gcn_random", "params": {"trained": False}},
    {"name": "resnet18", "label": "resnet18_random",
     "params": {"weights": "random", "input": "image", "input_size": 64}},
]


def _toml(methods: list[dict]) -> str:
    """The quick protocol as TOML (JSON scalars are valid TOML values)."""
    lines = ['title = "tissue test"', "[data.synthetic_tissue]", 'preset = "quick"',
             "[tasks.gene_expression]", "n_components = 256", 'model = "ridge"']
    for m in methods:
        lines += ["[[methods]]", f'name = "{m["name"]}"']
        if "label" in m:
            lines.append(f'label = "{m["label"]}"')
        if "params" in m:
            lines.append("params = {" + ", ".join(f"{k} = {json.dumps(v)}"
                                                  for k, v in m["params"].items()) + "}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One quick run through the CLI (``baselens run config.toml --out DIR``)."""
    from baselens.run.cli import main

    d = tmp_path_factory.mktemp("tissue")
    cfg = d / "tissue.toml"
    cfg.write_text(_toml(METHODS))
    out = d / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BASELENS_OFFLINE", "1")
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return out


def _means(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.groupby(["method", "metric"])["value"].mean().unstack()


def test_results_contract(run):
    scores = pd.read_parquet(run / "scores.parquet")
    per = pd.read_parquet(run / "per_perturbation.parquet")
    assert list(scores.columns) == SCORE_COLUMNS
    assert list(per.columns) == PER_PERT_COLUMNS
    assert set(scores["task"]) == {"synthetic"}
    assert set(scores["batch_level"]) == {"NSPT"}
    assert {"pearson", "pearson_count_matched", *(f"pearson_{d}" for d in STRUCTURAL),
            "pearson_appearance"} <= set(scores["metric"])
    labels = {m.get("label", m["name"]) for m in METHODS}
    assert set(scores["method"]) == labels
    kinds = scores.groupby("method")["method_kind"].first()
    assert kinds["ground_truth"] == "reference" and kinds["random"] == "null"
    assert kinds["tissue_count"] == "baseline"
    # one pearson row per fold: the quick tissue has 4 patients, HEST's leave-one-out splits
    pr = scores[(scores["metric"] == "pearson") & (scores["method"] == "tissue_count")]
    assert sorted(pr["fold"]) == [0, 1, 2, 3]
    # genes are the perturbations, one value per gene and fold
    genes = json.loads((run / "run.json").read_text())["genes"]
    pp = per[(per["metric"] == "pearson") & (per["method"] == "ground_truth")]
    assert set(pp["perturbation"]) == set(genes)
    assert len(pp) == 4 * len(genes)
    # the fold score is the mean of that fold's genes
    f0 = pp[pp["fold"] == 0]["value"].mean()
    s0 = scores[(scores["metric"] == "pearson") & (scores["method"] == "ground_truth")
                & (scores["fold"] == 0)]["value"].iloc[0]
    assert f0 == pytest.approx(s0)
    bb = pd.read_parquet(run / "beyond_baseline.parquet")
    assert {"pearson", "pearson_density"} <= set(bb["metric"])
    assert (bb.loc[bb["metric"] == "pearson", "paired_over"] == "perturbation").all()
    for name in ("agreement", "dimensionality", "tissue_genes", "tissue_methods"):
        assert len(pd.read_parquet(run / "diagnostics" / f"{name}.parquet")), name


def test_structure_predicts_structure_not_appearance_and_count_explains_density(run):
    m = _means(pd.read_parquet(run / "scores.parquet"))
    st = m.loc["tissue_points"]  # nuclei centroids only
    # structure-only: structure-driven genes yes, appearance-driven genes no
    assert np.mean([st[f"pearson_{d}"] for d in STRUCTURAL]) > 0.4
    assert abs(st["pearson_appearance"]) < 0.2
    for d in STRUCTURAL:
        assert st[f"pearson_{d}"] > st["pearson_appearance"] + 0.2, d
    # the cell-count baseline explains the density-driven genes, nothing else
    cnt = m.loc["tissue_count"]
    assert cnt["pearson_density"] > 0.6
    assert abs(cnt["pearson_appearance"]) < 0.2 and abs(cnt["pearson_clustering"]) < 0.25
    # ... and loses it when cell count is held fixed
    assert abs(cnt["pearson_count_matched"]) < 0.15
    assert st["pearson_count_matched"] > cnt["pearson_count_matched"] + 0.1
    # the image sees appearance; the null sees nothing; the ground truth sees everything
    assert m.loc["pixel_stats", "pearson_appearance"] > 0.4
    assert abs(m.loc["random", "pearson"]) < 0.15
    assert m.loc["ground_truth", "pearson"] > max(m.drop("ground_truth")["pearson"])


def test_report_has_the_tissue_panels(run):
    text = (run / "report.html").read_text(encoding="utf-8")
    for fid in ("tissue-genes-synthetic", "tissue-count-matched-synthetic",
                "tissue-count-genes-synthetic", "tissue-drivers-synthetic",
                "tissue-driver-table-synthetic"):
        assert f'id="{fid}"' in text, fid
    assert '<a href="#tissue">Tissue</a>' in text
    assert "appearance-driven ones are not" in text  # the summary's tissue finding
    assert "http://" not in text and "https://" not in text


def test_rerun_extracts_nothing(run, tmp_path):
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    out = tmp_path / "again"
    shutil.copytree(run, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "features").glob("*.parquet")}
    cfg = RunConfig.from_dict({"data": {"synthetic_tissue": {"preset": "quick"}},
                                  "methods": METHODS})
    res = run_pipeline(cfg, out, progress=False)
    log = (out / "run.log").read_text()
    for m in METHODS:
        assert f"extract: {m.get('label', m['name'])} reused from cache" in log
    after = {p.name: p.stat().st_mtime_ns for p in (out / "features").glob("*.parquet")}
    assert after == before
    pd.testing.assert_frame_equal(res.scores, pd.read_parquet(run / "scores.parquet"))


def test_config_errors_name_the_key(tmp_path):
    from baselens.run.config import ConfigError
    from baselens.run.config import RunConfig, is_tissue_config_file

    base = {"data": {"synthetic_tissue": {"preset": "quick"}}}
    with pytest.raises(ConfigError, match="n_compnents"):
        RunConfig.from_dict({**base, "tasks": {"gene_expression": {"n_compnents": 8}}})
    with pytest.raises(ConfigError, match="model must be one of"):
        RunConfig.from_dict({**base, "tasks": {"gene_expression": {"model": "lasso"}}})
    with pytest.raises(ConfigError, match="exactly one"):
        RunConfig.from_dict({"data": {"synthetic_tissue": {}, "hest": {"root": "x"}}})
    with pytest.raises(ConfigError, match="coarsen"):
        RunConfig.from_dict({"data": {"hest": {"root": "x", "coarsen": "2nn"}}})
    with pytest.raises(ConfigError, match="unknown_task"):
        RunConfig.from_dict({**base, "tasks": {"unknown_task": {}}})
    with pytest.raises(ConfigError, match="synthetic_tissue"):
        RunConfig.from_dict({"data": {"synthetic_tissue": {"preset": "huge"}}})
    # one schema: what belongs to screens is refused on spots, and the reverse
    with pytest.raises(ConfigError, match=r"\[profile\] does not apply to tissue"):
        RunConfig.from_dict({**base, "profile": {"normalize": "standardize"}})
    with pytest.raises(ConfigError, match="load_data describe a screen"):
        RunConfig.from_dict({"data": {"synthetic_tissue": {}, "load_data": "x.parquet"}})
    with pytest.raises(ConfigError, match="gene_expression scores tissue spots"):
        RunConfig.from_dict({"data": {"load_data": "x.parquet"},
                             "tasks": {"gene_expression": {}}})
    with pytest.raises(ConfigError, match=r"\[diagnostics\] applies to tissue runs"):
        RunConfig.from_dict({"data": {"load_data": "x.parquet"},
                             "diagnostics": {"max_spots": 10}})
    cfg = RunConfig.from_dict({**base, "diagnostics": {"max_spots": 50}})
    assert cfg.unit == "spot" and cfg.diagnostics == {"max_spots": 50}
    assert "profile" not in cfg.to_dict() and cfg.to_dict()["diagnostics"] == {"max_spots": 50}
    p = tmp_path / "c.toml"
    p.write_text('[data.hest]\nroot = "x"\n')
    assert is_tissue_config_file(p)
    p.write_text('[data]\nload_data = "x.parquet"\n')
    assert not is_tissue_config_file(p)


def test_protocol_file_is_valid():
    from baselens.run.config import RunConfig

    root = Path(__file__).resolve().parents[1] / "protocols"
    cfg = RunConfig.from_toml(root / "hest_synthetic.toml")
    names = {m["name"] for m in cfg.methods}
    assert {"ground_truth", "random", "pixel_stats", "tissue_count", "tissue_gcn",
            "tissue_egnn"} <= names
    assert cfg.gene_expression["n_components"] == 256
    real = RunConfig.from_toml(root / "hest1k.toml", variables={"data_dir": "/data/hest"})
    assert real.data["hest"] == {"root": "/data/hest/bench_data", "task": "IDC", "coarsen": "1nn"}


def test_hest_layout_with_1nn_coarsening(run, tmp_path):
    """[data.hest] on a HEST-layout folder (the quick tissue's, read like real data, its
    ground_truth/ included) with 1NN coarsening (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377) C.3)."""
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    cfg = RunConfig.from_dict({
        "data": {"hest": {"root": str(run / "data"), "coarsen": "1nn"}},
        "methods": [{"name": "random"}, {"name": "tissue_count"}, {"name": "tissue_points"}],
        "diagnostics": {"enabled": False}})
    res = run_pipeline(cfg, tmp_path / "hest", progress=False)
    info = json.loads((tmp_path / "hest" / "run.json").read_text())
    assert info["n_spots"] <= 144 and info["config"]["data"]["hest"]["coarsen"] == "1nn"
    assert "coarsening" in (tmp_path / "hest" / "run.log").read_text()
    s = res.scores
    assert {"pearson", "pearson_count_matched", "pearson_density"} <= set(s["metric"])
    means = s[s["metric"] == "pearson"].groupby("method")["value"].mean()
    assert means["tissue_points"] > means["random"] + 0.2
    assert 'id="tissue-genes-synthetic"' in (tmp_path / "hest" / "report.html").read_text()


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH")
def test_report_opens_in_chromium_without_errors(run, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", "--enable-logging=stderr",
             "--v=0"]
    try:
        proc = subprocess.run([CHROMIUM, *flags, (run / "report.html").resolve().as_uri()],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium did not finish within 60 s: {exc}")
    dom = proc.stdout
    assert 'data-rendered="ok"' in dom, proc.stderr[-2000:]
    assert 'data-js-errors="0"' in dom
    assert 'id="tissue-genes-synthetic"' in dom
    errors = [ln for ln in proc.stderr.splitlines() if "Uncaught" in ln
              or ("CONSOLE" in ln and "rror" in ln)]
    assert not errors, errors


def _scores(task: str, methods: list[tuple[str, str]], genes=("A", "B", "C")):
    rows, per = [], []
    rng = np.random.default_rng(0)
    for i, (m, kind) in enumerate(methods):
        for fold in range(2):
            vals = rng.uniform(0, 0.5, size=len(genes)) + 0.1 * i
            rows.append(dict(method=m, method_kind=kind, layer="default", task=task,
                             batch_level="NSPT", metric="pearson", fold=fold, seed=0,
                             value=float(vals.mean()), n=len(genes), warning=""))
            per += [dict(method=m, method_kind=kind, layer="default", task=task,
                         batch_level="NSPT", perturbation=g, metric="pearson", value=float(v),
                         fold=fold) for g, v in zip(genes, vals)]
    return pd.DataFrame(rows), pd.DataFrame(per)


def test_tissue_section_only_for_tissue_runs():
    from baselens.report.html import render_report

    methods = [("cell_count", "baseline"), ("cell_graph", "baseline"), ("vit", "model")]
    # a Cell Painting regression probe also reports Pearson r: no tissue section
    scores, per = _scores("regression_probe", methods)
    assert 'id="tissue"' not in render_report(scores, per)
    # real HEST data: panels without drivers; inputs from the pipeline's table
    methods = [("tissue_count", "baseline"), ("tissue_gcn", "baseline"),
               ("resnet50_imagenet", "model")]
    scores, per = _scores("IDC", methods)
    mt = pd.DataFrame({"method": [m for m, _ in methods], "input": ["count", "structure", "image"]})
    html = render_report(scores, per, diagnostics=_diagnostics(scores, per, mt))
    assert 'id="tissue-genes-IDC"' in html and 'href="#tissue"' in html
    assert "no planted driver" in html  # the per-driver panel explains its absence
    assert "the best structure-only model tissue_gcn (r " in html  # a tissue finding
    assert "y the best structure-only model (<strong>tissue_gcn</strong>" in html
    # a folder written before diagnose chose the inputs' representatives: a note
    old = render_report(scores, per, diagnostics={"tissue_methods": mt})
    assert 'id="tissue-genes-IDC"' not in old and "tissue_inputs.parquet" in old


def _diagnostics(scores, per, tissue_methods=None) -> dict:
    """What the tissue pipeline's diagnose step writes for the report."""
    from baselens.diagnose.beyond_baseline import beyond_best_baseline
    from baselens.diagnose.findings import findings
    from baselens.diagnose.run import derived_tables
    from baselens.evaluate.registry import metrics_table

    alias = {t: "gene_expression" for t in pd.unique(scores["task"].astype(str))}
    m = metrics_table(scores, alias)
    b = beyond_best_baseline(scores, per, task_alias=alias)
    tables = {"metrics": m, "beyond_baseline": b, "findings": findings(scores, b, m)}
    tables.update(derived_tables(scores, per, tables, tissue_methods))
    if tissue_methods is not None:
        tables["tissue_methods"] = tissue_methods
    return tables


def test_representations_run_on_a_local_cluster_and_in_process_alike(run, tmp_path):
    """The module run (CLI default: a dask LocalCluster, one task per representation and
    chunk of spots) and an in-process run give the same scores."""
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    log = (run / "run.log").read_text()
    # one task per (chunk, representation): the quick spots fit one chunk
    assert f"{len(METHODS)} of {len(METHODS)} method x chunk parts" in log
    assert "dask LocalCluster, 2 workers" in log or (os.cpu_count() or 1) < 2
    out = tmp_path / "serial"
    shutil.copytree(run / "data", out / "data")
    cfg = RunConfig.from_dict({"data": {"synthetic_tissue": {"preset": "quick"}},
                                  "methods": METHODS, "execution": {"executor": "serial"}})
    res = run_pipeline(cfg, out, progress=False)
    assert "in this process" in (out / "run.log").read_text()
    pd.testing.assert_frame_equal(res.scores, pd.read_parquet(run / "scores.parquet"))


def test_spots_in_chunks_give_the_same_features_and_scores(run, tmp_path):
    """Spots extracted in chunks (here 64 of the 144 quick spots at a time, in process)
    give the features and scores of the one-chunk run, through the shared feature cache."""
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline
    from baselens.run.units import SpotUnits

    from baselens.run.units import SiteUnits, Units

    units = SpotUnits()
    assert isinstance(units, Units) and isinstance(SiteUnits(), Units)  # one interface
    assert units.chunk_size({"chunk_size": 10}) == 64  # whole network and GNN batches
    assert units.chunk_size({"chunk_size": 100, "batch_size": 48}) == 192
    out = tmp_path / "chunked"
    shutil.copytree(run / "data", out / "data")
    cfg = RunConfig.from_dict({"data": {"synthetic_tissue": {"preset": "quick"}},
                                  "methods": METHODS,
                                  "execution": {"executor": "serial", "chunk_size": 64}})
    res = run_pipeline(cfg, out, progress=False)
    n = len(pd.read_parquet(run / "features" / "random.default.parquet"))
    assert n > 64  # more than one chunk
    for f in sorted((run / "features").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(out / "features" / f.name),
                                      pd.read_parquet(f), check_exact=True)
    pd.testing.assert_frame_equal(res.scores, pd.read_parquet(run / "scores.parquet"))
    info = json.loads((out / "run.json").read_text())
    assert all({"stage", "what", "removed", "kept", "reason", "examples", "quiet"} <= set(e)
               for e in info["filters"])  # FilterLog records, as screens write them


def test_an_interrupted_tissue_extraction_computes_only_its_missing_chunks(run, tmp_path):
    """Spots go through the screen's per-chunk cache: with one chunk's part of one
    representation gone (a killed worker), the re-run computes that part alone and scores
    the same."""
    from baselens.run.config import RunConfig
    from baselens.run.execution import marker_path
    from baselens.run.pipeline import run_pipeline

    from baselens.run.execution import status_report

    # tissue_count standardized needs every spot at once: one chunk of all spots
    methods = [{"name": "tissue_count", "label": "count_std", "params": {"standardize": True}},
               {"name": "tissue_points"}]
    cfg = RunConfig.from_dict({"data": {"synthetic_tissue": {"preset": "quick"}},
                               "methods": methods,
                               "execution": {"executor": "serial", "chunk_size": 64}})
    out = tmp_path / "resume"
    shutil.copytree(run / "data", out / "data")
    first = run_pipeline(cfg, out, progress=False)
    assert "count_std: 0/1 chunks cached, 1 to compute" in (out / "run.log").read_text()
    marker_path(out / "features", "tissue_points", "spots-00001").unlink()
    (out / "features" / "tissue_points.json").unlink()  # not consolidated: killed mid-run
    (out / "run.log").unlink()
    status = status_report(out)
    assert "data: 144 spots in 3 chunks" in status
    row = next(ln for ln in status.splitlines() if ln.startswith("tissue_points"))
    assert row.split()[1:5] == ["2/3", "1", "64", "pending"]  # 64 spots in the lost chunk
    row = next(ln for ln in status.splitlines() if ln.startswith("count_std"))
    assert row.split()[1:] == ["1/1", "0", "0", "written"]
    again = run_pipeline(cfg, out, progress=False)
    log = (out / "run.log").read_text()
    assert "extract: count_std reused from cache" in log
    assert "extract: tissue_points: 2/3 chunks cached, 1 to compute" in log
    assert "computing 1 of 3 chunks" in log
    pd.testing.assert_frame_equal(again.scores, first.scores)
