"""report.html: content, self-containment, atomic write, and a real headless-browser check."""

from __future__ import annotations

import html
import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.report import html as report_html
from baselens.report.html import render_report, write_report

METHODS = [
    # method, kind, layer, level on replicate_retrieval
    ("pixel_mean", "baseline", "default", 0.25),
    ("cell_count", "baseline", "default", 0.42),
    ("single_conv", "baseline", "conv1", 0.38),
    ("dino_vit", "model", "block11", 0.61),
    ("weak_model", "model", "default", 0.35),
    ("ground_truth", "reference", "default", 0.78),
]
TASKS = {
    "replicate_retrieval": ["mean_average_precision", "fraction_retrieved"],
    "relationship_recall": ["recall_0.05_0.95", "recall_top_0.05"],
}
CONTEXT = {
    "dataset": "synthetic screen, 2 plates x 384 wells",
    "config": "[data]\nplates = 2\n\n[methods]\nbaselines = ['cell_count']",
    "filters": {"sites_loaded": 3072, "sites_dropped": 12},
    "timings_s": {"extract": 12.5, "evaluate": 3.25},
}


def make_scores(methods=METHODS, *, folds=3, nan_for=()):
    rng = np.random.default_rng(0)
    rows = []
    for task, metrics in TASKS.items():
        for metric in metrics:
            for method, kind, layer, level in methods:
                for fold in range(folds):
                    v = level * (0.6 if task == "relationship_recall" else 1.0)
                    v += rng.normal(0, 0.01)
                    if method in nan_for:
                        v = np.nan
                    rows.append(dict(method=method, method_kind=kind, layer=layer, task=task,
                                     batch_level="all", metric=metric, fold=fold, seed=0,
                                     value=float(v), n=96))
    return pd.DataFrame(rows)


def make_per_pert(methods=METHODS, n_pert=40):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n_pert):
        pert = f"GENE{i:03d}"
        q = rng.beta(2, 3)
        for method, kind, layer, level in methods:
            v = float(np.clip(q * level / 0.5 + rng.normal(0, 0.05), 0, 1))
            if kind == "model" and i == 7:
                v = 0.99  # a perturbation only the models retrieve
            for metric, val in [("average_precision", v), ("p_value", float(rng.random()))]:
                rows.append(dict(method=method, method_kind=kind, layer=layer,
                                 task="replicate_retrieval", batch_level="all",
                                 perturbation=pert, metric=metric, value=val))
    return pd.DataFrame(rows)


def write_verdicts(d: Path, scores: pd.DataFrame, per: pd.DataFrame | None = None,
                   **design) -> None:
    """What the diagnostics stage writes for the report: the metric declarations and the
    verdicts (the report reads them, it decides nothing)."""
    from baselens.diagnose.beyond_baseline import beyond_best_baseline
    from baselens.diagnose.findings import findings
    from baselens.diagnose.run import derived_tables
    from baselens.evaluate.registry import metrics_table

    (d / "diagnostics").mkdir(exist_ok=True)
    m = metrics_table(scores)
    b = beyond_best_baseline(scores, per)
    f = findings(scores, b, m, per_perturbation=per, **design)
    tables = {"metrics": m, "beyond_baseline": b, "findings": f}
    tables.update(derived_tables(scores, per, tables))
    for name, t in tables.items():
        t.to_parquet(d / "diagnostics" / f"{name}.parquet")


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    make_scores().to_parquet(d / "scores.parquet")
    make_per_pert().to_parquet(d / "per_perturbation.parquet")
    write_verdicts(d, make_scores(), make_per_pert())
    return d


# ------------------------------------------------------------------ static checks
EXTERNAL = [
    re.compile(r"https?://", re.I),
    re.compile(r"""(?:src|href|action|poster|srcset|data)\s*=\s*["']?\s*(?!#)[a-z][a-z0-9+.-]*:""",
               re.I),
    re.compile(r"""(?:src|href)\s*=\s*["']?\s*//""", re.I),
    re.compile(r"url\(\s*['\"]?(?!#)", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"<(?:img|iframe|object|embed|video|audio|source)\b", re.I),
    re.compile(r"<script\b[^>]*\bsrc\s*=", re.I),
]


def assert_self_contained(text: str):
    for pat in EXTERNAL:
        m = pat.search(text)
        assert m is None, f"external resource reference {m.group(0)!r} matches {pat.pattern}"
    # every href is an in-page anchor
    for href in re.findall(r"""href\s*=\s*["']([^"']*)["']""", text):
        assert href.startswith("#"), href


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class _Balance(html.parser.HTMLParser):
    """Checks that non-void elements are properly nested and closed."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k == "id":
                self.ids.append(v)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass  # self-closing SVG elements

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def assert_well_formed(text: str):
    p = _Balance()
    p.feed(text)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, f"unclosed: {p.stack}"
    assert len(p.ids) == len(set(p.ids)), "duplicate element ids"


def test_write_report_contents(run_dir):
    path = write_report(run_dir, title="My screen", context=CONTEXT)
    assert path == run_dir / "report.html"
    assert path.is_file() and path.stat().st_size > 10_000
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>My screen</title>" in text
    for method, _, layer, _ in METHODS:
        assert method in text
        if layer != "default":
            assert f"/{layer}" in text
    for task, metrics in TASKS.items():
        assert task in text
        for metric in metrics:
            assert metric in text
    # context rendered
    for value in ["synthetic screen, 2 plates x 384 wells", "3,072", "sites loaded", "12.5",
                  "plates = 2"]:
        assert value in text
    # the verdict block at the top names the level and gives verdicts for both models,
    # every sentence being a row of diagnostics/findings.parquet
    top = text[text.index('id="summary"'):text.index('id="leaderboard"')]
    assert 'id="verdicts"' in top and 'id="verdict-table"' in top
    assert "dino_vit/block11 adds beyond the best baseline on replicate retrieval" in text
    assert "for cell_count" in text
    # Wilcoxon p is small but the bootstrap CI of the mean covers 0 (one perturbation only
    # the models retrieve): both are required, so it is not distinguishable
    assert "weak_model is not distinguishable from the best baseline" in text
    f = pd.read_parquet(run_dir / "diagnostics" / "findings.parquet")
    for sentence in f.loc[f["kind"].isin(["model_summary", "verdict"]), "sentence"]:
        assert html.escape(sentence) in top
    # tags, mean ± std, beyond-baseline column, figures, per-perturbation outliers
    assert "tag-baseline" in text and "tag-model" in text and "tag-reference" in text
    assert "reference · upper bound" in text
    assert " ± " in text
    assert "beyond best baseline" in text
    # a bar chart of each task's headline metric + 3 scatters (2 models + reference)
    assert text.count("<svg") >= 2 + 3
    assert "GENE007" in text
    assert "Not plotted: p_value" in text
    assert_self_contained(text)
    assert_well_formed(text)


def test_numbers_match_diagnosis(run_dir):
    from baselens.diagnose.beyond_baseline import beyond_best_baseline

    text = write_report(run_dir).read_text(encoding="utf-8")
    b = beyond_best_baseline(make_scores())
    r = b[(b["method"] == "dino_vit") & (b["metric"] == "mean_average_precision")].iloc[0]
    assert f"+{r['improvement']:.3f}" in text
    assert f"{r['value_mean']:.3f}" in text
    assert f"{r['ratio']:.2f}×" in text


def test_atomic_write_leaves_no_temp_files(run_dir):
    write_report(run_dir)
    write_report(run_dir)  # overwriting works too
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["diagnostics", "per_perturbation.parquet", "report.html", "scores.parquet"]


def test_write_goes_through_os_replace(run_dir, monkeypatch):
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((Path(src), Path(dst)))
        assert Path(src).read_text(encoding="utf-8").rstrip().endswith("</html>")
        assert not Path(dst).exists()
        return real_replace(src, dst)

    monkeypatch.setattr(report_html.os, "replace", spy)
    path = write_report(run_dir)
    assert len(calls) == 1
    src, dst = calls[0]
    assert dst == path and src.parent == run_dir and src != dst


def test_failed_write_keeps_previous_report_and_no_temp(run_dir, monkeypatch):
    path = write_report(run_dir)
    before = path.read_bytes()

    def boom(fh_self, *a, **k):
        raise OSError("disk full")

    real_fdopen = os.fdopen

    class Exploding:
        def __init__(self, fd, *a, **k):
            self.fh = real_fdopen(fd, *a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()
            return False

        def write(self, s):
            self.fh.write(s[:100])
            raise OSError("disk full")

    monkeypatch.setattr(report_html.os, "fdopen", Exploding)
    with pytest.raises(OSError, match="disk full"):
        write_report(run_dir)
    assert path.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "diagnostics", "per_perturbation.parquet", "report.html", "scores.parquet"]


def test_missing_scores_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="scores.parquet"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_without_per_perturbation(tmp_path):
    make_scores().to_parquet(tmp_path / "scores.parquet")
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "per_perturbation.parquet absent or empty" in text
    assert text.count("<svg") == 2
    # an empty per-perturbation table is the same as none
    make_per_pert().iloc[:0].to_parquet(tmp_path / "per_perturbation.parquet")
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "per_perturbation.parquet absent or empty" in text
    assert_self_contained(text)
    assert_well_formed(text)


def test_only_baselines(tmp_path):
    methods = [m for m in METHODS if m[1] == "baseline"]
    make_scores(methods).to_parquet(tmp_path / "scores.parquet")
    make_per_pert(methods).to_parquet(tmp_path / "per_perturbation.parquet")
    write_verdicts(tmp_path, make_scores(methods), make_per_pert(methods))
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "scored no learned model" in text
    assert "beyond best baseline</button>" not in text  # no margin column without models
    # no model, so beyond_baseline names no best baseline: best_baseline.parquet does
    lb = text[text.index('id="table-replicate_retrieval-all"'):]
    lb = lb[:lb.index("</table>")]
    star = lb[:lb.index("best-mark")]
    assert star[star.rindex("<tr"):].count('class="method">cell_count<') == 1
    assert "The dashed line is the best baseline, <strong>cell_count</strong>" in text
    for method, *_ in methods:
        assert method in text
    assert_well_formed(text)


def test_single_method_single_run(tmp_path):
    methods = [("dino_vit", "model", "default", 0.6)]
    make_scores(methods, folds=1).to_parquet(tmp_path / "scores.parquet")
    write_verdicts(tmp_path, make_scores(methods, folds=1))
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "dino_vit" in text
    assert "has no baseline to compare with" in text
    assert " ± " not in text  # a single run has no spread
    assert_well_formed(text)


def test_nan_values_render_as_dash(tmp_path):
    make_scores(nan_for=("weak_model",)).to_parquet(tmp_path / "scores.parquet")
    write_verdicts(tmp_path, make_scores(nan_for=("weak_model",)))
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "nan" not in re.sub(r"<[^>]+>", " ", text).lower().split()
    assert "no value</text>" in text  # bar chart says so instead of drawing a bar
    assert_well_formed(text)


def test_empty_scores(tmp_path):
    make_scores().iloc[:0].to_parquet(tmp_path / "scores.parquet")
    text = write_report(tmp_path, title="Empty").read_text(encoding="utf-8")
    assert "no scores yet" in text
    assert_well_formed(text)


def test_batch_levels_get_their_own_tables():
    a = make_scores().assign(batch_level="NR")
    b = make_scores().assign(batch_level="NSB")
    text = render_report(pd.concat([a, b], ignore_index=True))
    # the strictest level opens, NR right beside it (both tables in view)
    assert '<span class="lvl">batch level NSB</span>' in text
    assert "Batch level <code>NR</code>" in text and "Batch level <code>NSB</code>" in text
    assert "Other batch levels" not in text
    assert text.count('class="leaderboard sortable"') == 2 * len(TASKS)
    assert text.count("<svg") == 2 + len(TASKS)  # bar charts + one degradation curve per task
    assert_well_formed(text)


def test_context_is_escaped_and_never_linked():
    ctx = {"note": "<script>alert(1)</script>", "source": "see example.org/data",
           "nested": {"deep": {"deeper": {"deepest": {"x": 1}}}}, "items": [1, 2.5, "a"]}
    text = render_report(make_scores(), title="<b>x</b>", context=ctx)
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    assert "1, 2.5, a" in text
    assert_self_contained(text)
    assert_well_formed(text)


# ------------------------------------------------------------------ real browser
CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless browser test needs Debian's `chromium` on PATH (apt-get install chromium)",
)


def chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # never hang CI
        pytest.fail(f"chromium did not finish within 60 s: {exc}")


@needs_chromium
def test_browser_screenshot_is_not_blank(run_dir, tmp_path):
    import matplotlib.image as mpimg

    page = write_report(run_dir, title="Browser test", context=CONTEXT)
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.is_file(), f"no screenshot; stderr tail:\n{proc.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1280)
    assert float(img.std()) > 0.05, "screenshot is (nearly) one colour"
    px = np.rint(img * 255).astype(np.int64)
    packed = (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]
    assert len(np.unique(packed)) > 100
    # the bars were drawn: reference orange (#e69f00) and model blue (#0072b2) cover
    # more than the legend swatches would

    def count(rgb):
        return int((np.abs(px - np.array(rgb)).sum(axis=-1) < 30).sum())

    assert count((0xE6, 0x9F, 0x00)) > 2000
    assert count((0x00, 0x72, 0xB2)) > 2000


@needs_chromium
def test_browser_runs_script_without_errors(run_dir, tmp_path):
    page = write_report(run_dir)
    proc = chromium(tmp_path, page, "--dump-dom", "--enable-logging=stderr", "--v=0")
    dom = proc.stdout
    assert "<body" in dom, f"no DOM dumped; stderr tail:\n{proc.stderr[-2000:]}"
    assert 'data-rendered="ok"' in dom, "report script did not finish"
    assert 'data-js-errors="0"' in dom
    console_errors = [ln for ln in proc.stderr.splitlines()
                      if "CONSOLE" in ln or "Uncaught" in ln]
    assert not [ln for ln in console_errors if "Uncaught" in ln or "rror" in ln], console_errors


@needs_chromium
def test_browser_check_detects_errors_and_sorting_works(run_dir, tmp_path):
    """The marker is not vacuous (a broken script is caught) and sorting works in a browser."""
    text = write_report(run_dir).read_text(encoding="utf-8")
    probe = (
        "<script>notAFunction();</script><script>"
        "var t=document.querySelector('table.sortable');"
        "t.querySelector('th[data-col=\"2\"] button').click();"  # sorted descending already: click = ascending
        "document.body.setAttribute('data-order',Array.prototype.map.call(t.tBodies[0].rows,"
        "function(r){return r.cells[0].getAttribute('data-value');}).join('|'));</script>"
    )
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    proc = chromium(tmp_path, broken, "--dump-dom", "--enable-logging=stderr", "--v=0")
    dom = proc.stdout
    assert 'data-rendered="ok"' in dom
    assert 'data-js-errors="1"' in dom, "the uncaught error was not counted"
    assert "Uncaught ReferenceError" in proc.stderr, "console errors are not visible on stderr"
    order = re.search(r'data-order="([^"]*)"', dom)
    assert order, "sorting probe did not run"
    from baselens.diagnose.beyond_baseline import aggregate_scores

    agg = aggregate_scores(make_scores())
    first = agg[(agg["task"] == "replicate_retrieval")
                & (agg["metric"] == "mean_average_precision")].sort_values("value_mean")
    expected = [m if la == "default" else f"{m}/{la}" for m, la in
                zip(first["method"], first["layer"])]
    assert order.group(1).split("|") == expected


def test_lower_is_better_in_words_and_colours_follow_the_verdict(tmp_path):
    """batch_classification_accuracy is declared lower-is-better: a model below the best
    baseline is better there. The header says the direction in words, and the margin cell is
    coloured by the verdict ("beats": green): the margin is the improvement (measured
    downwards for this metric, so +0.5 although the model's score is 0.5 lower)."""
    from baselens.diagnose.beyond_baseline import beyond_best_baseline
    from baselens.diagnose.findings import findings
    from baselens.evaluate.registry import metrics_table

    rows = []
    for metric, vals in {"ilisi_scaled": {"pixel_mean": 0.5, "dino_vit": 0.6},
                         "batch_classification_accuracy": {"pixel_mean": 0.9,
                                                           "dino_vit": 0.4}}.items():
        for m, v in vals.items():
            for fold in range(3):
                rows.append(dict(method=m, method_kind="baseline" if m == "pixel_mean"
                                 else "model", layer="default", task="batch_mixing",
                                 batch_level="NSB", metric=metric, fold=fold, seed=0,
                                 value=v + 0.001 * fold, n=50))
    s = pd.DataFrame(rows)
    s.to_parquet(tmp_path / "scores.parquet")
    d = tmp_path / "diagnostics"
    d.mkdir()
    m = metrics_table(s)
    b = beyond_best_baseline(s)
    b["verdict"] = "beats"  # as if paired over many items: the report renders, never decides
    m.to_parquet(d / "metrics.parquet")
    b.to_parquet(d / "beyond_baseline.parquet")
    findings(s, b, m).to_parquet(d / "findings.parquet")
    text = write_report(tmp_path).read_text(encoding="utf-8")
    lb = text[text.index('id="leaderboard"'):]
    assert '<span class="dir"> (lower is better)</span>' in lb
    table = lb[lb.index('id="table-batch_mixing-NSB"'):]
    table = table[:table.index("</table>")]
    cells = re.findall(r'data-verdict="beats" title="beats"><span class="(\w+)">([^<]+)</span>',
                       table)  # the model's row: ilisi_scaled, then batch accuracy
    assert cells == [("pos", "+0.100"), ("pos", "+0.500")]
    assert "0.401" in table and "0.901" in table  # the raw scores: the model's is lower
