"""The report's diagnostic sections, built from a hand-made ``diagnostics/`` folder.

The tables follow the contract of ``baselens.diagnose`` (issue 6) but are written here by
hand with known content, so these tests do not depend on the diagnostics code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.diagnose.beyond_baseline import beyond_best_baseline
from baselens.report.html import SECTIONS, render_report, write_report

LEVELS = ["NSB", "SP", "NR", "NSP"]  # deliberately out of order: the report sorts them
METHODS = [
    # method, kind, layer, score at NR
    ("pixel_stats", "baseline", "default", 0.30),
    ("cell_count", "baseline", "default", 0.40),
    ("random", "null", "default", 0.05),
    ("vit_s", "model", "block3", 0.42),
    ("vit_s", "model", "block6", 0.50),
    ("vit_s", "model", "block12", 0.55),
    ("vit_s_random", "model", "block3", 0.45),
    ("vit_s_random", "model", "block6", 0.48),
    ("vit_s_random", "model", "block12", 0.528),  # 96 % of the trained network's best
    ("ground_truth", "reference", "default", 0.90),
]
LEVEL_FACTOR = {"SP": 1.3, "NR": 1.0, "NSP": 0.8, "NSB": 0.6}
TASKS = {"replicate_retrieval": "mean_average_precision", "relationship_recall": "recall_0.05_0.95"}
CLASSES = {"cytotoxic": 8, "texture": 8, "intensity": 6, "inert": 4}


def perturbations() -> pd.DataFrame:
    rows = []
    for cls, n in CLASSES.items():
        rows += [(f"{cls[:3].upper()}{i:02d}", cls) for i in range(n)]
    return pd.DataFrame(rows, columns=["perturbation", "phenotype_class"])


def make_scores(methods=METHODS, levels=LEVELS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for task, metric in TASKS.items():
        for level in levels:
            for method, kind, layer, v in methods:
                for fold in range(2):
                    val = v * LEVEL_FACTOR[level] * (0.9 if task == "relationship_recall" else 1)
                    rows.append(dict(method=method, method_kind=kind, layer=layer, task=task,
                                     batch_level=level, metric=metric, fold=fold, seed=0,
                                     value=float(val + rng.normal(0, 0.002)), n=26, warning=""))
            # a sub-metric that belongs in the folded "more metrics" table
            for method, kind, layer, v in methods:
                rows.append(dict(method=method, method_kind=kind, layer=layer, task=task,
                                 batch_level=level, metric=f"{metric}:source_x", fold=0, seed=0,
                                 value=v / 2, n=26, warning=""))
    return pd.DataFrame(rows)


def make_per_pert(methods=METHODS) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    pert = perturbations()
    rows = []
    for level in ["NR", "NSB"]:
        for p, cls in zip(pert["perturbation"], pert["phenotype_class"]):
            for method, kind, layer, v in methods:
                val = float(np.clip(v + rng.normal(0, 0.1), 0, 1))
                if method == "cell_count":
                    val = 0.7 if cls == "cytotoxic" else 0.05
                if kind == "model" and p == "TEX03":
                    val = 0.99
                for metric, x in [("mean_average_precision", val), ("p_value", rng.random())]:
                    rows.append(dict(method=method, method_kind=kind, layer=layer,
                                     task="replicate_retrieval", batch_level=level,
                                     perturbation=p, metric=metric, value=float(x), fold=0))
    return pd.DataFrame(rows)


#: class mAP of each method in the hand-made phenotype_classes table
CLASS_MAP = {
    "cell_count": {"cytotoxic": 0.60, "texture": 0.05, "intensity": 0.10, "inert": 0.04},
    "pixel_stats": {"cytotoxic": 0.35, "texture": 0.08, "intensity": 0.50, "inert": 0.04},
    "random": {"cytotoxic": 0.05, "texture": 0.05, "intensity": 0.05, "inert": 0.05},
    "ground_truth": {"cytotoxic": 0.90, "texture": 0.85, "intensity": 0.88, "inert": 0.05},
}


def make_diagnostics(d: Path, scores: pd.DataFrame, *, tables=None) -> Path:
    """Write ``d/diagnostics/*.parquet`` with known content for the methods of ``scores``."""
    diag = d / "diagnostics"
    diag.mkdir(parents=True, exist_ok=True)
    keys = scores[["method", "method_kind", "layer"]].drop_duplicates(["method", "layer"])
    keys = list(keys.itertuples(index=False, name=None))
    want = set(tables or ["beyond_baseline", "agreement", "dimensionality", "residualized",
                          "assay_confounds", "phenotype_classes"])
    if "beyond_baseline" in want:
        bb = beyond_best_baseline(scores)
        strong = bb["method"].isin(["vit_s", "ground_truth"])
        bb["p"] = bb["wilcoxon_p"] = np.where(strong, 0.000123, 0.21)
        bb["p_adjusted"] = bb["p"]
        bb["n_paired"] = 26
        bb["paired_over"] = "perturbation"
        bb["ci_low"], bb["ci_high"] = bb["difference"] - 0.01, bb["difference"] + 0.01
        sig = bb["p_adjusted"] < 0.05
        bb["verdict"] = np.where(bb["best_baseline"].isna(), "no baseline",
                                 np.where(sig & (bb["improvement"] > 0), "beats",
                                          np.where(sig & (bb["improvement"] < 0), "worse",
                                                   "not distinguishable")))
        bb["beats_best_baseline"] = bb["verdict"] == "beats"
        bb.to_parquet(diag / "beyond_baseline.parquet")
    if "agreement" in want:
        rows = []
        for i, (ma, _, la) in enumerate(keys):
            for mb, _, lb in keys[i + 1:]:
                sp = 0.91 if {ma, mb} == {"vit_s", "cell_count"} else 0.3 + 0.05 * ((i * 7) % 9)
                rows.append(dict(method_a=ma, layer_a=la, method_b=mb, layer_b=lb,
                                 spearman=sp, cka=sp * 0.8, n_perturbations=26))
        pd.DataFrame(rows).to_parquet(diag / "agreement.parquet")
    if "dimensionality" in want:
        rows = []
        for j, (m, kind, la) in enumerate(keys):
            k = 40
            decay = 0.5 if m == "cell_count" else 0.9 - 0.01 * j
            ev = decay ** np.arange(k)
            ev = ev / ev.sum()
            cum = np.cumsum(ev)
            for c in range(k):
                rows.append((m, kind, la, "explained_variance_ratio", c + 1, ev[c]))
                rows.append((m, kind, la, "cumulative_explained_variance", c + 1, cum[c]))
            er = float(np.exp(-(ev * np.log(ev)).sum()))
            rows += [(m, kind, la, "effective_rank", 0, er),
                     (m, kind, la, "participation_ratio", 0, float(1 / (ev ** 2).sum())),
                     (m, kind, la, "n_components_90", 0, float(np.searchsorted(cum, 0.9) + 1)),
                     (m, kind, la, "top1_variance", 0, float(ev[0]))]
        pd.DataFrame(rows, columns=["method", "method_kind", "layer", "metric", "component",
                                    "value"]).to_parquet(diag / "dimensionality.parquet")
    if "residualized" in want:
        rows = []
        pert = perturbations()
        for m, kind, la in keys:
            for conf in ["none", "cell_count", "pixel_stats"]:
                for p, cls in zip(pert["perturbation"], pert["phenotype_class"]):
                    before = {"cytotoxic": 0.80, "texture": 0.60, "intensity": 0.50,
                              "inert": 0.05}[cls]
                    keep = 1.0
                    if conf == "cell_count":
                        keep = {"cytotoxic": 0.10, "texture": 0.98}.get(cls, 0.9)
                    elif conf == "pixel_stats":
                        keep = {"intensity": 0.2}.get(cls, 0.95)
                    stratum = f"q{1 + int(p[-1]) % 4}"
                    rows.append((m, kind, la, conf, "replicate_retrieval", "NR",
                                 "mean_average_precision", p, cls, stratum, before * keep))
                for q in range(1, 5):
                    rows.append((m, kind, la, conf, "replicate_retrieval", "NR",
                                 "mean_average_precision", "(stratum mean)", "", f"q{q}",
                                 0.5 - 0.05 * q))
        pd.DataFrame(rows, columns=["method", "method_kind", "layer", "confound", "task",
                                    "batch_level", "metric", "perturbation", "phenotype_class",
                                    "stratum", "value"]).to_parquet(diag / "residualized.parquet")
    if "assay_confounds" in want:
        rows = []
        for i in range(9):
            pred = i < 7
            rows.append(dict(assay=f"{'viability' if i < 3 else 'specific'}_{i}",
                             assay_type="viability" if i < 3 else "specific", n_actives=12 + i,
                             n_inactives=50, t_statistic=-6.0 + i * 0.5 if pred else -0.4,
                             p_value=1e-5 if pred else 0.6,
                             cell_count_balanced_accuracy=0.85 if pred else 0.52,
                             threshold=0.7, predictable_by_cell_count=pred))
        pd.DataFrame(rows).to_parquet(diag / "assay_confounds.parquet")
    if "phenotype_classes" in want:
        rows = []
        for m, kind, la in keys:
            for cls in CLASSES:
                v = CLASS_MAP.get(m, {}).get(cls, 0.2 if cls != "texture" else 0.45)
                for level in ["NR", "NSB"]:
                    rows.append(dict(method=m, method_kind=kind, layer=la, phenotype_class=cls,
                                     batch_level=level, metric="mean_average_precision",
                                     value=v if level == "NR" else v / 2, n=CLASSES[cls]))
        pd.DataFrame(rows).to_parquet(diag / "phenotype_classes.parquet")
    if tables is None or "findings" in want:
        write_findings(d)
    if tables is None:
        write_drawn(d)
    return diag


def write_drawn(d: Path) -> None:
    """``best_baseline``, ``per_perturbation_differential``, ``best_layers`` and, from the
    hand-made agreement and residualization tables, ``closest_baseline`` and
    ``residualization_panels`` under ``d/diagnostics``, as the diagnostics stage writes
    them (the report draws them, it chooses no baseline, layer or panel)."""
    from baselens.diagnose.run import derived_tables
    from baselens.evaluate.registry import metrics_table

    diag = d / "diagnostics"
    scores = pd.read_parquet(d / "scores.parquet")
    pp = d / "per_perturbation.parquet"
    per = pd.read_parquet(pp) if pp.exists() else None
    tables = {"metrics": metrics_table(scores)}
    for name in ("agreement", "residualized"):
        if (diag / f"{name}.parquet").exists():
            tables[name] = pd.read_parquet(diag / f"{name}.parquet")
    for name, t in derived_tables(scores, per, tables).items():
        if name != "findings":
            t.to_parquet(diag / f"{name}.parquet")


def write_findings(d: Path, **design) -> None:
    """``diagnostics/findings.parquet`` from the hand-made tables, as the diagnostics stage
    writes it (the report renders findings, it decides none)."""
    from baselens.diagnose.findings import findings
    from baselens.evaluate.registry import metrics_table

    diag = d / "diagnostics"

    def opt(name):
        p = diag / f"{name}.parquet"
        return pd.read_parquet(p) if p.exists() else None

    scores = pd.read_parquet(d / "scores.parquet")
    pp = d / "per_perturbation.parquet"
    findings(scores, opt("beyond_baseline"), metrics_table(scores),
             per_perturbation=pd.read_parquet(pp) if pp.exists() else None,
             assay_confounds=opt("assay_confounds"), residualized=opt("residualized"),
             phenotype_classes=opt("phenotype_classes"), design=design).to_parquet(
        diag / "findings.parquet")


@pytest.fixture
def full_run(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    scores = make_scores()
    scores.to_parquet(d / "scores.parquet")
    make_per_pert().to_parquet(d / "per_perturbation.parquet")
    make_diagnostics(d, scores)
    return d


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def section(html: str, sid: str) -> str:
    m = re.search(rf'<section[^>]*id="{sid}"[^>]*>(.*?)</section>', html, re.S)
    assert m, f"no section #{sid}"
    return m.group(1)


# ------------------------------------------------------------------ content
def test_every_section_id_present_and_in_order(full_run):
    from test_report import assert_self_contained, assert_well_formed

    html = write_report(full_run, title="Diagnostics").read_text(encoding="utf-8")
    ids = [sid for sid, _ in SECTIONS]
    assert {"summary", "leaderboard", "batch-levels", "layers", "agreement", "dimensionality",
            "perturbations", "assays", "classes"} <= set(ids)
    pos = [html.index(f'id="{sid}"') for sid in ids]
    assert pos == sorted(pos)
    for sid in ids:  # the table of contents links every section
        assert f'href="#{sid}"' in html
    assert "is not in this run folder" not in html  # every table was found
    assert_self_contained(html)
    assert_well_formed(html)


def test_summary_states_the_planted_truth(full_run):
    page = write_report(full_run).read_text(encoding="utf-8")
    summary = text_of(section(page, "summary"))
    classes = text_of(section(page, "classes"))
    # which classes each baseline captures (≥ 0.3 and ≥ 3× random's 0.05), stated once
    # (diagnostics/findings.parquet) and shown where the heat map is
    assert "cell_count captures cytotoxic (0.60)" in classes
    assert "pixel_stats captures intensity (0.50), cytotoxic (0.35)" in classes
    # the reference adds beyond all baselines, at the strictest level and at NR
    assert ("At NSB (not same batch), the reference ground_truth adds beyond the best baseline "
            "on every task scored") in summary
    assert "At NR (no restriction), the reference ground_truth adds beyond" in summary
    # the strictest level opens the verdict table, NR beside it
    head = re.search(r'id="verdict-table"><thead><tr><th>model</th><th[^>]*>(\w+)'
                     r'</th><th[^>]*>(\w+)</th>', page)
    assert head and head.groups() == ("NSB", "NR")
    # residualizing on cell count removes the cytotoxic signal but keeps texture
    assert "removes 90 % of its cytotoxic signal (mAP 0.80 → 0.08)" in summary
    assert "keeps texture (98 %)" in summary
    # untrained twin
    assert ("untrained vit_s_random reaches 96 % on replicate retrieval (0.53 vs 0.55)"
            in summary)
    # assay confounds
    assert "Cell count alone predicts 7 of 9 bioactivity assays" in summary
    # a cell-count confound is a headline callout
    assert "Confounds: a simple baseline is the best one on 2 tasks." in summary
    assert "Cell count (how many cells a well holds) is the best baseline" in summary


def test_leaderboard_has_beyond_column_and_wilcoxon(full_run):
    html = write_report(full_run).read_text(encoding="utf-8")
    lb = section(html, "leaderboard")
    assert "beyond best baseline</button>" in lb
    assert "p<sub>adj</sub> &lt; 0.001" in lb and "p<sub>adj</sub> 0.21" in lb
    assert "paired Wilcoxon signed-rank test over 26 perturbations" in lb
    # the strictest level and NR in view; the other levels folded, strictest first
    assert "Other batch levels: NSP, SP" in lb
    # sub-metrics folded, not in the main table
    assert "more metric of replicate retrieval" in lb
    main = re.search(r'<table class="leaderboard sortable" id="table-replicate_retrieval-NR">'
                     r"(.*?)</table>", lb, re.S).group(1)
    assert "source_x" not in main


def test_batch_level_curves_in_canonical_order(full_run):
    sec = section(write_report(full_run).read_text(encoding="utf-8"), "batch-levels")
    assert sec.count("<svg") == len(TASKS)
    svg = re.search(r"<svg.*?</svg>", sec, re.S).group(0)
    ticks = [t for t in re.findall(r">(SP|NR|NSL|NSP|NSB|NSS|NSSL)</text>", svg)]
    assert ticks == ["SP", "NR", "NSP", "NSB"]
    # one line per method/layer, coloured by kind
    assert svg.count("<polyline") >= len(METHODS)
    assert "#e69f00" in svg and "#cc79a7" in svg and "#0072b2" in svg


def test_layer_curves_pair_trained_and_untrained(full_run):
    sec = section(write_report(full_run).read_text(encoding="utf-8"), "layers")
    assert sec.count("<svg") == len(TASKS)
    svg = re.search(r"<svg.*?</svg>", sec, re.S).group(0)
    assert ">vit_s</text>" in svg and ">vit_s_random</text>" in svg
    assert 'stroke-dasharray="6 4"' in svg  # the untrained twin is dashed
    # layers ordered by their number: block3, block6, block12 (not alphabetical)
    tips = re.findall(r"<title>(vit_s/block\d+):", svg)
    assert tips == ["vit_s/block3", "vit_s/block6", "vit_s/block12"]
    assert "best baseline (cell_count)" in svg


def test_agreement_dimensionality_classes_residualization_assays(full_run):
    html = write_report(full_run).read_text(encoding="utf-8")
    ag = section(html, "agreement")
    assert ag.count("<svg") == 2  # Spearman and CKA
    assert "vit_s/block3</strong> agrees most with <strong>cell_count</strong> (ρ = 0.91" in ag
    dim = section(html, "dimensionality")
    assert "cumulative explained variance" in dim and "effective rank" in dim
    assert 'id="dimensionality-table"' in dim
    cls = section(html, "classes")
    assert "cytotoxic" in cls and "texture" in cls and "<svg" in cls
    res = section(html, "residualization")
    assert res.count("<svg") >= 3  # dumbbells for reference, models, baselines
    assert "Within strata of matched cell-count change" in res
    assert "removes 80 % of its intensity signal" in res  # pixel_stats as confound
    asy = section(html, "assays")
    assert asy.count("yes — cell count alone") == 7
    assert "viability_0" in asy


def test_missing_diagnostics_are_announced(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    scores = make_scores()
    scores.to_parquet(d / "scores.parquet")
    make_diagnostics(d, scores, tables=["agreement"])
    html = write_report(d).read_text(encoding="utf-8")
    for sid, table in [("dimensionality", "dimensionality"), ("assays", "assay_confounds"),
                       ("residualization", "residualized"), ("classes", "phenotype_classes")]:
        assert f"diagnostics/{table}.parquet</code> is not in this run folder" in section(html, sid)
    assert "<svg" in section(html, "agreement")
    assert "per_perturbation.parquet absent or empty" in section(html, "perturbations")


def test_phenotype_classes_fall_back_to_ground_truth_table(tmp_path):
    d = tmp_path / "run"
    (d / "data" / "ground_truth").mkdir(parents=True)
    make_scores().to_parquet(d / "scores.parquet")
    make_per_pert().to_parquet(d / "per_perturbation.parquet")
    pert = perturbations().rename(columns={"perturbation": "Metadata_Perturbation",
                                           "phenotype_class": "Metadata_PhenotypeClass"})
    pert.to_parquet(d / "data" / "ground_truth" / "perturbations.parquet")
    html = write_report(d).read_text(encoding="utf-8")
    cls = section(html, "classes")
    assert "no diagnostics/phenotype_classes.parquet" in cls and "<svg" in cls
    # the report draws the fallback table but decides nothing from it: no capture finding
    assert "captures" not in text_of(section(html, "summary"))


def test_many_methods_stay_compact(tmp_path):
    """20+ method/layers and 7 levels: scatters only at the headline level, folded."""
    methods = [(f"net{i}", "model", f"layer{j}", 0.2 + 0.01 * i + 0.02 * j)
               for i in range(4) for j in range(1, 5)]
    methods += [("pixel_stats", "baseline", "default", 0.3), ("cell_count", "baseline",
                                                             "default", 0.35),
                ("random", "null", "default", 0.05), ("ground_truth", "reference", "default", 0.9)]
    levels = ["SP", "NR", "NSL", "NSP", "NSB", "NSS", "NSSL"]
    factor = dict(zip(levels, [1.3, 1.0, 0.95, 0.8, 0.6, 0.5, 0.45]))
    old = dict(LEVEL_FACTOR)
    LEVEL_FACTOR.update(factor)
    try:
        scores = make_scores(methods, levels)
    finally:
        LEVEL_FACTOR.clear()
        LEVEL_FACTOR.update(old)
    pp = make_per_pert(methods)
    from baselens.diagnose.differential import per_perturbation_table

    html = render_report(scores, pp, diagnostics={
        "per_perturbation_differential": per_perturbation_table(scores, pp)})
    assert len(html) < 1_500_000
    per = section(html, "perturbations")
    assert per.count("<svg") == 17  # 16 layers + reference, no null, NR level only
    assert "<details" in per
    lb = section(html, "leaderboard")
    assert lb.count("<details") >= 2 * len(TASKS)
    assert "Other batch levels: NSS, NSB, NSP, NSL, SP" in lb
    # SVG coordinates are rounded (no long float reprs)
    assert not re.search(r'c[xy]="\d+\.\d{2,}"', html)


# ------------------------------------------------------------------ browser
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless browser test needs Debian's `chromium` (apt-get install "
    "chromium)")


def chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium did not finish within 90 s: {exc}")


@needs_chromium
@pytest.mark.parametrize("width", [1280, 420])
def test_browser_screenshots_wide_and_narrow(full_run, tmp_path, width):
    import matplotlib.image as mpimg

    page = write_report(full_run, title="Diagnostics in a browser")
    shot = tmp_path / f"shot_{width}.png"
    proc = chromium(tmp_path, page, f"--screenshot={shot}", f"--window-size={width},2400")
    assert shot.is_file(), f"no screenshot; stderr tail:\n{proc.stderr[-2000:]}"
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2400, width)
    assert float(img.std()) > 0.05
    # nothing sticks out to the right: the last columns are page background
    assert float(img[:, -6:].std()) < 0.02, "content overflows the window horizontally"


@needs_chromium
@pytest.mark.parametrize("width", [1280, 420])
def test_browser_layout_no_errors_no_overflow(full_run, tmp_path, width):
    """Every section is rendered, the script runs cleanly, the page never scrolls sideways."""
    text = write_report(full_run).read_text(encoding="utf-8")
    probe = (
        "<script>(function(){var ids=" + str([sid for sid, _ in SECTIONS]).replace("'", '"')
        + ";var miss=ids.filter(function(i){var e=document.getElementById(i);"
        "return !e||e.getBoundingClientRect().height<20;});"
        "document.body.setAttribute('data-missing',miss.join(','));"
        "document.body.setAttribute('data-overflow',String(document.documentElement.scrollWidth"
        "-document.documentElement.clientWidth));})();</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    proc = chromium(tmp_path, page, "--dump-dom", "--enable-logging=stderr", "--v=0",
                    f"--window-size={width},1600")
    dom = proc.stdout
    assert 'data-rendered="ok"' in dom, proc.stderr[-2000:]
    assert 'data-js-errors="0"' in dom
    assert 'data-missing=""' in dom
    overflow = int(re.search(r'data-overflow="(-?\d+)"', dom).group(1))
    assert overflow <= 0, f"page is {overflow}px wider than a {width}px window"
    errs = [ln for ln in proc.stderr.splitlines() if "Uncaught" in ln or
            ("CONSOLE" in ln and "rror" in ln)]
    assert not errs, errs


#: In-page probe: text boxes whose content is wider than the box (clipped or spilling over a
#: neighbour), SVG labels outside their figure's viewBox, SVG text rendered under 10 px, and
#: where the verdict block sits.
LAYOUT_PROBE = r"""<script>(function(){
var sel='th,td,li,p,h1,h2,h3,h4,dt,dd,summary,figcaption,.tag,.caveat,.vword,nav a,button';
var clipped=[];
Array.prototype.forEach.call(document.querySelectorAll(sel),function(e){
  if(!e.getClientRects().length){return;}
  if(e.scrollWidth>e.clientWidth+1&&getComputedStyle(e).display!=='inline'){
    clipped.push(e.tagName+':'+(e.textContent||'').trim().slice(0,40));}
});
var outside=[],small=[];
Array.prototype.forEach.call(document.querySelectorAll('svg'),function(svg){
  var vb=svg.viewBox&&svg.viewBox.baseVal;if(!vb||!vb.width){return;}
  var r=svg.getBoundingClientRect();if(!r.width){return;}
  var scale=r.width/vb.width;
  Array.prototype.forEach.call(svg.querySelectorAll('text'),function(t){
    var b=t.getBBox();var fs=parseFloat(t.getAttribute('font-size')||'12');
    if(!t.getAttribute('transform')&&(b.x<-1||b.x+b.width>vb.width+1)){
      outside.push((t.textContent||'').slice(0,30));}
    if(fs*scale<9.95){small.push((t.textContent||'').slice(0,20)+'@'+(fs*scale).toFixed(1));}
  });
});
var v=document.getElementById('verdicts'),lb=document.getElementById('leaderboard');
var pos=v&&lb&&(v.compareDocumentPosition(lb)&Node.DOCUMENT_POSITION_FOLLOWING)?'before':'after';
var b=document.body;
b.setAttribute('data-clipped',clipped.slice(0,8).join('|'));
b.setAttribute('data-nclipped',String(clipped.length));
b.setAttribute('data-svg-outside',outside.slice(0,8).join('|'));
b.setAttribute('data-svg-small',small.slice(0,8).join('|'));
b.setAttribute('data-verdicts',v?pos:'missing');
b.setAttribute('data-overflow',String(document.documentElement.scrollWidth-document.documentElement.clientWidth));
})();</script>"""


def _probe(tmp_path: Path, text: str, width: int) -> dict[str, str]:
    page = tmp_path / f"layout_{width}.html"
    page.write_text(text.replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    proc = chromium(tmp_path, page, "--dump-dom", f"--window-size={width},1600")
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, proc.stderr[-2000:]
    return dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body.group(1)))


@needs_chromium
@pytest.mark.parametrize("width", [1280, 420])
def test_browser_verdict_on_top_nothing_clipped_text_legible(full_run, tmp_path, width):
    """The verdict block comes before the leaderboard; no text box is clipped; SVG labels stay
    inside their figures and at least 10 px on screen; the page never scrolls sideways."""
    text = write_report(full_run, title="Layout probe").read_text(encoding="utf-8")
    attrs = _probe(tmp_path, text, width)
    assert attrs["data-verdicts"] == "before"
    assert attrs["data-nclipped"] == "0", attrs["data-clipped"]
    assert attrs["data-svg-outside"] == "", attrs["data-svg-outside"]
    assert attrs["data-svg-small"] == "", attrs["data-svg-small"]
    assert int(attrs["data-overflow"]) <= 0


@needs_chromium
def test_browser_probe_catches_clipping_and_overflow(full_run, tmp_path):
    """The probe is not vacuous: a clipped cell, a label outside its SVG, tiny SVG text and
    a too-wide block are all reported."""
    text = write_report(full_run).read_text(encoding="utf-8")
    bad = ('<div style="width:2000px">wide</div>'
           '<table><tr><td style="max-width:40px;overflow:hidden;white-space:nowrap">'
           "a very long clipped label</td></tr></table>"
           '<svg viewBox="0 0 100 20" style="width:100px"><text x="-30" y="12" font-size="6">'
           "outside</text></svg>")
    attrs = _probe(tmp_path, text.replace("</main>", bad + "</main>"), 420)
    assert int(attrs["data-nclipped"]) >= 1
    assert "outside" in attrs["data-svg-outside"] and "outside" in attrs["data-svg-small"]
    assert int(attrs["data-overflow"]) > 0
