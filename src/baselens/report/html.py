"""``report.html``: one self-contained page that puts every model next to the baselines.

:func:`write_report` reads a run folder's ``scores.parquet``, ``per_perturbation.parquet``
and ``diagnostics/*.parquet`` (see the results contract in ``docs/architecture.md``; every
table but the scores is optional) and writes ``report.html`` atomically. The page has
sections with stable element ids, so links into a report keep working:

========================= ===============================================================
``#summary``              the rows of ``diagnostics/findings.parquet``: confound callouts,
                          the verdict of every model at each distinct batch level (strictest
                          first, NR beside it), sample-size caveats, coinciding levels, and
                          the other findings; the report adds no conclusion of its own
``#leaderboard``          per task the strictest level's and NR's sortable tables (mean ± s.d.,
                          "beyond best baseline" with the paired Wilcoxon p where the
                          diagnostics give one) and bar chart; other levels and every
                          sub-metric folded away
``#batch-levels``         headline metric against batch level (SP → NSSL), one line per
                          method/layer
``#layers``               score against depth for every multi-layer network, trained and
                          untrained twins paired; best layers from
                          ``diagnostics/best_layers.parquet``
``#classes``              per phenotype class mAP (synthetic screens) and which classes each
                          method captures
``#residualization``      mAP per class before and after residualizing on cell count
                          (panels: ``diagnostics/residualization_panels.parquet``)
``#agreement``            Spearman / CKA heatmaps between methods, each model's closest
                          baseline (``diagnostics/closest_baseline.parquet``)
``#dimensionality``       cumulative explained variance, effective rank, participation ratio
``#perturbations``        per-perturbation scatter of each model against the best baseline
                          of each perturbation, outliers named (headline level only,
                          folded; ``diagnostics/per_perturbation_differential.parquet``)
``#assays``               which bioactivity assays cell count alone predicts
========================= ===============================================================

Everything is inline: CSS (``report.css``), a short sorting script (``report.js``) and
hand-built SVG figures (:mod:`baselens.report.figures`). The file contains no
``http://``/``https://`` reference and loads nothing from the network, so it can be e-mailed
or archived with the run.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselens import __version__
from baselens.report import sections as S
from baselens.report.common import (  # noqa: F401  (re-exported for callers and tests)
    _KIND_ORDER,
    KIND_COLOURS,
    LEVEL_NAMES,
    KIND_NOTES,
    METHOD_NOTES,
    METRIC_LABELS,
    REPORT_NAME,
    _asset,
    _esc,
    _fmt,
    _fmt_ratio,
    _fmt_scalar,
    _isnan,
    _method_html,
    _method_label,
    _metric_label,
    _slug,
    _tag,
    _task_label,
    is_secondary_metric,
    legend_html,
    order_levels,
)
from baselens.report.figures import bar_chart_svg, scatter_svg  # noqa: F401
from baselens.report.inputs import (
    BEYOND_COLUMNS,
    DIAGNOSTICS,
    coerce_numeric,
    display_means,
    find_phenotypes,
    normalise_keys,
    phenotype_classes_from_per_pert,
    read_diagnostics,
    read_table,
)

__all__ = ["bar_chart_svg", "render_report", "scatter_svg", "write_report"]

#: At most this many metrics in a leaderboard's main table (the rest are folded away).
MAX_MAIN_METRICS = 4

# --------------------------------------------------------------------------- sections
#: Context keys shown above the folded run information (one line each).
VISIBLE_CONTEXT = ("folds", "warnings in tasks")


def _context_html(context: Mapping[str, Any] | None) -> str:
    """Fold plan and task-warning counts in view; everything else (data, filters, timings)
    in a details block."""
    if not context:
        return ""
    top = {k: v for k, v in context.items() if k in VISIBLE_CONTEXT}
    rest = {k: v for k, v in context.items() if k not in VISIBLE_CONTEXT}
    folds = top.pop("folds", None)
    out = f'<div class="context runline">{_kv_html(top)}</div>' if top else ""
    if folds is not None:  # one line in view; every probe's plan per level one click away
        out += ('<details class="context" id="fold-plans"><summary>How folds were formed: '
                "per probe and batch level</summary>"
                f"{_kv_html({'folds': folds})}</details>")
    if rest:
        out += ('<details class="context" id="run-info"><summary>Run information: data, '
                f"filters, timings</summary>{_kv_html(rest)}</details>")
    return out


def _kv_html(mapping: Mapping[str, Any], depth: int = 0) -> str:
    items = []
    for key, value in mapping.items():
        items.append(f"<dt>{_esc(str(key).replace('_', ' '))}</dt><dd>{_value_html(value, depth)}</dd>")
    return f'<dl class="kv">{"".join(items)}</dl>'


def _value_html(value: Any, depth: int) -> str:
    if isinstance(value, Mapping):
        if depth >= 3:
            return f"<code>{_esc(value)}</code>"
        return _kv_html(value, depth + 1)
    if isinstance(value, pd.DataFrame):
        return value.head(50).to_html(classes="leaderboard", border=0, escape=True)
    if isinstance(value, (list, tuple, set)):
        parts = [_fmt_scalar(v) for v in value]
        joined = ", ".join(parts)
        if len(joined) > 200 or any("\n" in p for p in parts):
            return f"<pre>{_esc(chr(10).join(parts))}</pre>"
        return _esc(joined)
    if isinstance(value, Path):
        return f"<code>{_esc(value)}</code>"
    text = _fmt_scalar(value)
    if "\n" in text or len(text) > 160:
        return f"<pre>{_esc(text.strip(chr(10)))}</pre>"
    return _esc(text)


def _headline_metrics(agg: pd.DataFrame, decl: pd.DataFrame | None = None) -> dict[str, str]:
    """The metric the summary talks about for every task.

    The task's declared headline metric (``headline`` of ``diagnostics/metrics.parquet``,
    written from the task registry) when it was scored, else the first metric in order of
    appearance (the pipeline writes the headline metric first).
    """
    main: dict[str, str] = {}
    if decl is not None and not decl.empty and "headline" in decl.columns:
        h = decl[decl["headline"].astype(bool)]
        main = dict(zip(h["task"].astype(str), h["metric"].astype(str)))
    out: dict[str, str] = {}
    present = agg.groupby("task", sort=False)["metric"].agg(lambda s: set(s)).to_dict()
    for task, metric in zip(agg["task"], agg["metric"]):
        if task in out:
            continue
        m = main.get(task)
        out[task] = m if m in present.get(task, ()) else metric
    return out


def _declared(decl: pd.DataFrame | None) -> tuple[set[str], dict[tuple[str, str], str]]:
    """``(lower-is-better metric names, {(task, metric): kind})`` from
    ``diagnostics/metrics.parquet`` (empty when the run folder lacks it)."""
    if decl is None or decl.empty or not {"task", "metric", "higher_is_better"} <= set(decl):
        return set(), {}
    lower = set(decl.loc[~decl["higher_is_better"].astype(bool), "metric"].astype(str))
    kinds = ({(str(t), str(m)): str(k) for t, m, k in zip(decl["task"], decl["metric"],
                                                         decl["metric_kind"])}
             if "metric_kind" in decl.columns else {})
    return lower, kinds


def _verdicts(bb: pd.DataFrame | None) -> pd.DataFrame:
    """``diagnostics/beyond_baseline.parquet`` with its key columns as strings; a table
    without ``verdict`` (written by an earlier baselens) gets ``verdict = "not tested"``."""
    if bb is None or bb.empty:
        return pd.DataFrame(columns=BEYOND_COLUMNS)
    bb = normalise_keys(bb, ("method", "layer", "task", "batch_level", "metric"))
    if "verdict" not in bb.columns:
        bb["verdict"] = "not tested"
    for c in BEYOND_COLUMNS:
        if c not in bb.columns:
            bb[c] = np.nan
    for c in ("best_baseline", "best_baseline_layer"):
        bb[c] = bb[c].astype(object).where(bb[c].notna(), None)
    bb["verdict"] = bb["verdict"].fillna("not tested").astype(str)
    return bb


def _findings(f: pd.DataFrame | None) -> pd.DataFrame | None:
    """``diagnostics/findings.parquet`` with its text columns as strings (``None`` when the
    run folder lacks it)."""
    if f is None:
        return None
    f = f.copy()
    for c in f.columns:
        if f[c].dtype == object:
            f[c] = f[c].where(f[c].notna(), "").astype(str)
    return f


_SHORT = {"perturbations": "{v:g} perturbations", "replicates": "{v:g} replicates (median)",
          "plates": "one plate"}


def _caveats(ctx: S.Ctx) -> str:
    """Sample-size caveat badges (findings of kind ``sample_size``), shown beside numbers."""
    rows = ctx.rows("sample_size")
    return "".join(
        f'<span class="caveat" title="{_esc(r.sentence)}">⚠ '
        f'{_esc(_SHORT.get(str(r.subject), str(r.subject)).format(v=float(r.value)))}</span>'
        for r in rows.itertuples())


_CELL = {"beats": ("pos", "✔ adds beyond"), "partly": ("mixed", "◐ partly"),
         "no": ("neg", "✘ not beyond")}


def _verdict_table(ctx: S.Ctx, cols: list[str]) -> str:
    """Rows: every model and reference; columns: batch levels (strictest first); cell: the
    ``model_summary`` / ``reference`` finding of that level, its sentence as tooltip."""
    summ = pd.concat([ctx.rows("model_summary"), ctx.rows("reference")])
    summ = summ[summ["method"].astype(str) != ""]
    if summ.empty:
        return ""
    same = {r.batch_level: [x for x in str(r.levels).split("|") if x != r.batch_level]
            for r in summ.itertuples()}
    head = "".join(
        f'<th title="{_esc(LEVEL_NAMES.get(lv, lv))}">{_esc(lv)}'
        + (f'<span class="same"> = {_esc(" = ".join(same[lv]))}</span>' if same.get(lv) else "")
        + "</th>" for lv in cols)
    cav = _caveats(ctx)
    body = []
    for (m, la, kind), g in summ.groupby(["method", "layer", "method_kind"], sort=False):
        cells = []
        for lv in cols:
            r = g[g["batch_level"] == lv]
            if r.empty:
                cells.append('<td class="na">—</td>')
                continue
            r = r.iloc[0]
            cls, word = _CELL.get(str(r["verdict"]), ("", str(r["verdict"])))
            cells.append(
                f'<td class="v-{cls}" title="{_esc(r["sentence"])}"><span class="vword">'
                f'{_esc(word)}</span> <span class="vcount">{int(r["value"])} of {int(r["n"])} '
                f'task{"s" if int(r["n"]) != 1 else ""}</span>{cav}</td>')
        body.append(f'<tr class="kind-{_esc(kind)}"><th scope="row" title="'
                    f'{_esc(_method_label(m, la))}">{_method_html(m, la)}'
                    f"{' ' + _tag('reference') if kind == 'reference' else ''}</th>"
                    f"{''.join(cells)}</tr>")
    return ('<div class="table-wrap"><table class="plain verdict-table" id="verdict-table">'
            f'<thead><tr><th>model</th>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></div>")


def _summary_html(ctx: S.Ctx) -> str:
    """The top of the page: confound callouts, the verdict of every model at the strictest
    level formed and at NR, sample-size caveats and other findings — every sentence from
    ``diagnostics/findings.parquet``."""
    parts = ['<section class="summary" id="summary"><h2>What the numbers say</h2>']
    if ctx.findings is None or not len(ctx.findings):
        parts.append('<p class="absent">No findings: <code>diagnostics/findings.parquet</code> '
                     "is not in this run folder, so the report states no verdict (rerun the "
                     "diagnostics, e.g. <code>baselens run</code>, to write it). The tables "
                     "below show the scores.</p>")
        parts.append("</section>")
        return "".join(parts)
    conf = ctx.rows("confound")
    if len(conf) == 1:
        parts.append('<div class="callout warn" id="confounds"><strong>Confound.</strong> '
                     f"{_esc(conf['sentence'].iloc[0])}</div>")
    elif len(conf):
        parts.append('<div class="callout warn" id="confounds"><strong>Confounds: a simple '
                     "baseline is the best one on "
                     f"{conf['task'].nunique()} task{'s' if conf['task'].nunique() != 1 else ''}."
                     "</strong><ul>" + "".join(f"<li>{_esc(x)}</li>" for x in conf["sentence"])
                     + "</ul></div>")
    # the columns: every distinct level formed, strictest first, NR right beside it
    all_lv = []
    for t in ctx.shown.values():
        all_lv += [x for x in t if x not in all_lv]
    all_lv = order_levels(all_lv)[::-1]
    cols = all_lv[:1] + (["NR"] if "NR" in all_lv and all_lv[:1] != ["NR"] else [])
    rest = [x for x in all_lv if x not in cols]
    parts.append('<div class="verdict-block" id="verdicts"><h3>Does each model add beyond the '
                 "best baseline?</h3>")
    none = ctx.rows("model_summary", verdict="no models")
    if len(none):
        parts.append(findings_html(none, "keypoints"))
    tbl = _verdict_table(ctx, cols + rest)
    if tbl:
        parts.append('<p class="muted">Headline metric of every task; a model adds beyond the '
                     "best baseline only where the paired test (Benjamini–Hochberg corrected) "
                     "and its 95 % confidence interval both say so. Strictest batch level first"
                     + (", NR beside it" if "NR" in cols and len(cols) > 1 else "")
                     + ". Hover a cell for its sentence.</p>" + tbl)
        summ = pd.concat([ctx.rows("model_summary"), ctx.rows("reference")])
        summ = summ[summ["batch_level"].isin(cols) & (summ["method"] != "")]
        summ = summ.assign(_o=summ["batch_level"].map({c: i for i, c in enumerate(cols)}))
        parts.append(findings_html(summ.sort_values("_o", kind="stable"), "keypoints"))
    for kind, cls, mark in (("sample_size", "caution", "⚠ "), ("identical_levels", "note", "")):
        rows = ctx.rows(kind)
        if len(rows) == 1:
            parts.append(f'<div class="callout {cls}" id="{kind.replace("_", "-")}">{mark}'
                         f"{_esc(rows['sentence'].iloc[0])}</div>")
        elif len(rows):
            parts.append(f'<div class="callout {cls}" id="{kind.replace("_", "-")}">'
                         + ("<strong>⚠ Sample size</strong>" if kind == "sample_size" else
                            "<strong>Batch levels that coincide on this design</strong>")
                         + "<ul>" + "".join(f"<li>{_esc(x)}</li>" for x in rows["sentence"])
                         + "</ul></div>")
    parts.append("</div>")
    other = pd.concat([ctx.rows("assays"), ctx.rows("untrained_twin"),
                       ctx.rows("class_capture", severity="verdict"),
                       ctx.rows("residualization").head(2), ctx.rows("tissue")])
    items = S.sentences(other)
    if items:
        parts.append("<h3>Also found</h3>" + '<ul class="findings">'
                     + "".join(f"<li>{x}</li>" for x in items) + "</ul>")
    v = ctx.rows("verdict")
    if len(v):
        parts.append('<details class="verdicts"><summary>Task by task: every model and '
                     "reference against the best baseline, at each level shown</summary>")
        for task, g in v.groupby("task", sort=False):
            order = {lv: i for i, lv in enumerate(ctx.shown.get(task, []))}
            g = g.assign(_o=g["batch_level"].map(order)).sort_values("_o", kind="stable")
            parts.append(f"<h4>{_esc(_task_label(task))}</h4>" + findings_html(g, "findings"))
        parts.append("</details>")
    parts.append("</section>")
    return "".join(parts)


def findings_html(rows: pd.DataFrame, cls: str) -> str:
    """A list of findings, each marked by its verdict (✔ beats, ✘ worse, – otherwise)."""
    items = []
    for r in rows.itertuples():
        mark = {"beats": '<span class="verdict pos">✔</span>',
                "worse": '<span class="verdict neg">✘</span>'}.get(
            str(r.verdict), '<span class="verdict na">–</span>' if r.kind == "verdict" else "")
        items.append(f"<li>{mark}{_esc(r.sentence)}</li>")
    return f'<ul class="{cls}">{"".join(items)}</ul>' if items else ""


def _leaderboard_html(agg_tl: pd.DataFrame, beyond_tl: pd.DataFrame, table_id: str,
                      lower: Iterable = (), best: Mapping | None = None) -> str:
    """One sortable table: rows = method/layer, columns = score and margin per metric.

    The margin cell is the model's row of ``beyond_tl`` (``diagnostics/beyond_baseline.
    parquet``): model − best baseline with the adjusted p-value of the paired test, green
    only for ``verdict == "beats"`` (red for "worse"). ``best`` maps a metric to the
    ``(method, layer)`` of its best baseline as the diagnostics named it
    (:attr:`baselens.report.sections.Ctx.best`), marked ★.
    """
    metrics = list(pd.unique(agg_tl["metric"]))
    if not metrics:  # e.g. a batch level at which none of the task's main metrics was scored
        return '<p class="tablenote">No headline metric was scored at this batch level.</p>'
    has_others = (agg_tl["method_kind"] != "baseline").any()
    methods = (
        agg_tl[["method", "layer", "method_kind"]].drop_duplicates(["method", "layer"])
    )
    vals = {(r.method, r.layer, r.metric): r for r in agg_tl.itertuples(index=False)}
    margins = {(r.method, r.layer, r.metric): r for r in beyond_tl.itertuples(index=False)}
    best_base = {m: tuple(k[:2]) for m, k in (best or {}).items()}
    # default order: headline metric, best first
    head = metrics[0]
    order_key = []
    for r in methods.itertuples(index=False):
        v = vals.get((r.method, r.layer, head))
        m = v.value_mean if v is not None else float("nan")
        order_key.append((1 if _isnan(m) else 0, -(0 if _isnan(m) else m), r.method, r.layer))
    methods = methods.assign(_k=order_key).sort_values("_k")

    span = 2 if has_others else 1
    h1 = ['<tr class="metrics">',
          '<th rowspan="2" data-col="0"><button type="button">Method</button></th>',
          '<th rowspan="2" data-col="1" class="kindcol"><button type="button">Kind</button></th>']
    h2 = ['<tr class="sub">']
    col = 2
    for i, metric in enumerate(metrics):
        low = metric in lower
        h1.append(f'<th colspan="{span}" title="{_esc(metric)}'
                  + (' — lower is better' if low else '') + f'">{_esc(_metric_label(metric))}'
                  + ('<span class="dir"> (lower is better)</span>' if low else "") + "</th>")
        sort = ' aria-sort="descending"' if i == 0 else ""
        h2.append(f'<th data-col="{col}"{sort}><button type="button">score</button></th>')
        col += 1
        if has_others:
            h2.append(f'<th data-col="{col}"><button type="button" title="model minus best '
                      f'baseline (ratio)">beyond best baseline</button></th>')
            col += 1
    h1.append("</tr>")
    h2.append("</tr>")

    body = []
    for r in methods.itertuples(index=False):
        kind = r.method_kind
        cells = [
            f'<td data-value="{_esc(_method_label(r.method, r.layer))}">{_method_html(r.method, r.layer)}</td>',
            f'<td class="kindcol" data-value="{_KIND_ORDER.get(kind, 1)}">{_tag(kind)}</td>',
        ]
        for metric in metrics:
            v = vals.get((r.method, r.layer, metric))
            mean = v.value_mean if v is not None else float("nan")
            sd = v.value_std if v is not None else float("nan")
            nn = getattr(v, "n", float("nan")) if v is not None else float("nan")
            runs = v.n_runs if v is not None else 0
            star = ""
            if best_base.get(metric) == (r.method, r.layer):
                star = '<span class="best-mark" title="best baseline for this metric">★ </span>'
            tip = f"{runs} run(s)" + ("" if _isnan(nn) else f", n = {int(nn):,}")
            if _isnan(mean):
                cells.append('<td class="num first na" data-value="">—</td>')
            else:
                sdh = "" if _isnan(sd) else f'<span class="sd"> ± {_fmt(sd)}</span>'
                cells.append(
                    f'<td class="num first" data-value="{float(mean)!r}" title="{_esc(tip)}">'
                    f"{star}{_fmt(mean)}{sdh}</td>"
                )
            if has_others:
                g = margins.get((r.method, r.layer, metric))
                if kind == "baseline" or g is None or _isnan(g.improvement):
                    cells.append('<td class="num na" data-value="">·</td>' if kind == "baseline"
                                 else '<td class="num na" data-value="">—</td>')
                else:
                    cls = {"beats": "pos", "worse": "neg"}.get(str(g.verdict), "")
                    ratio = (_fmt_ratio(g.ratio)
                             if g.best_baseline_mean > 0 and g.value_mean >= 0 else "")
                    ptxt = ""
                    if not _isnan(g.p_adjusted):
                        over = "" if _isnan(g.paired_over) else str(g.paired_over)
                        over = f" {over}s" if over else ""
                        ntxt = f" over {int(g.n_paired)}{over}" if not _isnan(g.n_paired) else ""
                        ptxt = (f'<span class="pval" title="paired Wilcoxon signed-rank test'
                                f'{_esc(ntxt)}, Benjamini–Hochberg adjusted over the run; '
                                f'verdict: {_esc(g.verdict)}">p<sub>adj</sub> '
                                f'{_esc(_fmt_p(g.p_adjusted))}</span>')
                    cells.append(
                        f'<td class="num" data-value="{float(g.improvement)!r}" '
                        f'data-verdict="{_esc(g.verdict)}" title="{_esc(g.verdict)}">'
                        f'<span class="{cls}">{_fmt(g.improvement, signed=True)}</span>'
                        + (f'<span class="ratio">{ratio}</span>' if ratio else "")
                        + ptxt + "</td>"
                    )
        body.append(f'<tr class="kind-{_esc(kind)}">{"".join(cells)}</tr>')

    return (
        f'<div class="table-wrap"><table class="leaderboard sortable" id="{_esc(table_id)}">'
        f'<thead>{"".join(h1)}{"".join(h2)}</thead><tbody>{"".join(body)}</tbody></table></div>'
    )


def _fmt_p(p: float) -> str:
    p = float(p)
    return "< 0.001" if p < 0.001 else (f"{p:.3f}" if p < 0.1 else f"{p:.2f}")


def _legend_html(kinds: set[str]) -> str:
    items = [("baseline", KIND_COLOURS["baseline"]),
             ("best baseline", KIND_COLOURS["best_baseline"])]
    items += [(label, KIND_COLOURS[k]) for k, label in (
        ("model", "learned model"), ("reference", "reference (upper bound)"),
        ("null", "null (chance level)")) if k in kinds]
    return legend_html(items,
                       extra='<span><span class="sw dash"></span>best-baseline level</span>')


def _bar_figures_html(agg_tl: pd.DataFrame, beyond_tl: pd.DataFrame, task: str, level: str,
                      n_levels: int, best: Mapping | None = None) -> str:
    """Bar chart of each metric of ``agg_tl``; ``best`` maps a metric to ``(method, layer,
    mean)`` of its best baseline as the diagnostics named it (the dashed line)."""
    figs = []
    best = best or {}
    for metric in pd.unique(agg_tl["metric"]):
        a = agg_tl[agg_tl["metric"] == metric]
        b = beyond_tl[beyond_tl["metric"] == metric]
        base = a[(a["method_kind"] == "baseline") & a["value_mean"].notna()]
        best_key, best_val = None, None
        if not base.empty and metric in best:
            best_key, best_val = tuple(best[metric][:2]), float(best[metric][2])
        a = a.assign(
            label=[_method_label(m, la) for m, la in zip(a["method"], a["layer"])],
            kind=a["method_kind"],
            mean=a["value_mean"],
            std=a["value_std"],
            is_best=[(m, la) == best_key for m, la in zip(a["method"], a["layer"])],
            _nan=a["value_mean"].isna(),
        ).sort_values(["_nan", "mean"], ascending=[True, False], kind="stable")
        mlabel = _metric_label(metric)
        if len(b) and "higher_is_better" in b.columns and b["higher_is_better"].notna().any() \
                and str(b["higher_is_better"].iloc[0]).lower() in ("false", "0"):
            mlabel += " (lower is better)"  # the declared direction, in words
        best_label = _method_label(*best_key) if best_key else None
        svg = bar_chart_svg(a, best_value=best_val, best_label=best_label, title=mlabel)
        runs = int(a["n_runs"].max()) if len(a) else 0
        spread = (f"Bars are means over {runs} runs (folds × seeds), whiskers ± 1 s.d. "
                  if runs > 1 else "One run per method (a single fold and seed). ")
        if best_key:
            meaning = (f"The dashed line is the best baseline, <strong>{_esc(best_label)}</strong> "
                       f"({_fmt(best_val)}): a model has learned something beyond simple image "
                       "statistics only where its bar reaches past that line.")
        elif not base.empty:
            meaning = ("The diagnostics name no best baseline here "
                       "(<code>diagnostics/best_baseline.parquet</code> is not in this run "
                       "folder), so there is no reference line.")
        else:
            meaning = "No baseline has a value for this metric, so there is no reference line."
        lvl = f", batch level <code>{_esc(level)}</code>" if n_levels > 1 else ""
        figs.append(
            f'<figure id="{_esc(_slug("bar", task, level, metric))}">{svg}<figcaption>'
            f"<strong>{_esc(_task_label(task))} — {_esc(mlabel)}</strong>"
            f" (<code>{_esc(metric)}</code>{lvl}). {spread}{meaning}</figcaption></figure>"
        )
    return f'<div class="figgrid">{"".join(figs)}</div>'


def _perpert_html(diff: pd.DataFrame | None, per_pert: pd.DataFrame | None,
                  task: str) -> tuple[str, int]:
    """Scatters of every model against the per-perturbation best baseline, for one task.

    Draws the task's rows of ``diagnostics/per_perturbation_differential.parquet``: the
    diagnostics chose the metric (the headline one where it exists per perturbation), the
    batch level (the one shown first; the other levels repeat the picture at many times
    the size) and each perturbation's best baseline. ``per_pert`` only names the per-item
    metrics not plotted. Returns ``(html, number of figures)``.
    """
    if diff is None or diff.empty:
        return "", 0
    diff = diff[diff["task"] == task]
    if diff.empty:
        return "", 0
    metric, level = str(diff["metric"].iloc[0]), str(diff["batch_level"].iloc[0])
    diff = diff[(diff["metric"] == metric) & (diff["batch_level"] == level)]
    figs = []
    mlabel = _metric_label(metric)
    for (method, layer), d in diff.groupby(["method", "layer"], sort=False):
        if d["method_kind"].iloc[0] == "null":
            continue  # chance-level controls: nothing to learn from a scatter
        label = _method_label(method, layer)
        svg = scatter_svg(d, model_label=label, metric_label=mlabel)
        valid = d[d["improvement"].notna()]
        k = int((valid["improvement"] > 0).sum())
        top = valid[valid["improvement"] > 0].head(6)
        lis = "".join(
            f"<li><strong>{_esc(r['perturbation'])}</strong>: {_fmt(r['value'])} vs "
            f"{_fmt(r['best_baseline_value'])} "
            f"({_esc(_method_label(r['best_baseline'], r['best_baseline_layer']))}), "
            f'<span class="pos">{_fmt(r["improvement"], signed=True)}</span></li>'
            for _, r in top.iterrows()
        )
        kind = d["method_kind"].iloc[0]
        who = "the reference" if kind == "reference" else "the model"
        outl = (f'<p class="tablenote">Largest gains over the best baseline:</p>'
                f'<ul class="outliers">{lis}</ul>' if lis else
                '<p class="tablenote">No perturbation where it beats every baseline.</p>')
        figs.append(
            f'<figure id="{_esc(_slug("pp", task, level or "all", metric, label))}">{svg}'
            f"<figcaption><strong>{_esc(label)}</strong> ({_esc(kind)}) — "
            f"{_esc(mlabel)} per perturbation. Dots above the dashed diagonal ({k} of "
            f"{len(valid)}) are retrieved better by {who} than by any baseline; the furthest "
            f"are named.</figcaption>{outl}</figure>"
        )
    if not figs:
        return "", 0
    skipped = []
    if per_pert is not None and len(per_pert) and {"task", "metric"} <= set(per_pert.columns):
        skipped = sorted({m for m in per_pert.loc[per_pert["task"].astype(str) == task,
                                                  "metric"].astype(str) if m != metric})
    note = (f'<p class="tablenote">Shown: <code>{_esc(metric)}</code>'
            + (f" at batch level <code>{_esc(level)}</code>" if level else "")
            + (f". Not plotted: {', '.join(_esc(x) for x in skipped[:6])}"
               + (", …" if len(skipped) > 6 else "")
               + " (p-values, predictions or other metrics; they are in "
                 "<code>per_perturbation.parquet</code>)" if skipped else "") + ".</p>")
    n_items = diff["perturbation"].nunique()
    html_ = (f'<p class="tablenote">Each dot is one of {n_items:,} perturbations: x is the '
             "best of all baselines <em>for that perturbation</em>, y the method named under "
             f'the figure.</p><div class="figgrid">{"".join(figs)}</div>{note}')
    return html_, len(figs)


def _footer_html(lower: set[str]) -> str:
    direction = ("All metrics are higher-is-better" if not lower else
                 "All metrics are higher-is-better except "
                 + ", ".join(f"<code>{_esc(m)}</code>" for m in sorted(lower))
                 + " (for those, ‘beyond’ is measured downwards)")
    parts = [
        "<footer><h3>How to read this report</h3>",
        "<p><strong>Baselines</strong> are deliberately simple representations (intensity "
        "statistics, cell counts, untrained networks). If a learned model does not beat the "
        "best of them, it has not shown that it captures more than those simple signals. "
        "The <strong>reference</strong> (e.g. the true phenotype of a synthetic screen) is an "
        "upper bound: the gap between it and the best baseline is the room a model can "
        "fill.</p>",
        f"<p><strong>Beyond best baseline</strong> = model score − best baseline score, for the "
        f"same task, batch level and metric; the ratio is model ÷ best baseline. Scores are "
        f"means over folds and seeds (± sample standard deviation). {direction}.</p>",
        "<p>A method <strong>beats</strong> the best baseline only when the difference is "
        "significant and sized: a paired Wilcoxon signed-rank test over perturbations (or "
        "held-out items; folds when a task gives nothing finer) has p &lt; 0.05 after "
        "Benjamini–Hochberg correction across every comparison of the run, and the 95 % "
        "bootstrap confidence interval of the mean paired difference (resampling "
        "perturbations) excludes 0 on the better side. Otherwise it is <em>not "
        "distinguishable</em> from the baseline (or <em>worse</em>, when significantly "
        "below). Only metrics declared as scores are compared: counts, chance levels, "
        "y-scrambled controls and warning flags never are. Untrained networks are "
        "baselines.</p>",
    ]
    parts.append('<h4 id="glossary">Glossary</h4><dl class="kv glossary">' + "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in KIND_NOTES.items())
        + "<dt>untrained networks</dt><dd>any network with random weights (e.g. "
        "<code>resnet50_random</code>): a baseline — the architecture without training</dd>"
        + "".join(f"<dt><code>{_esc(k)}</code></dt><dd>{_esc(v)}</dd>"
                  for k, v in METHOD_NOTES.items()) + "</dl>")
    parts.append(
        f'<p class="muted">baselens {_esc(__version__)} · generated '
        f'{datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}</p></footer>'
    )
    return "".join(parts)


# --------------------------------------------------------------------------- page
#: (id, table of contents label) of the page's sections, in order. The ids are stable.
SECTIONS = [
    ("summary", "Summary"),
    ("leaderboard", "Leaderboard"),
    ("batch-levels", "Batch levels"),
    ("layers", "Layers"),
    ("classes", "Phenotype classes"),
    ("residualization", "Confound removal"),
    ("agreement", "Agreement"),
    ("dimensionality", "Dimensionality"),
    ("perturbations", "Perturbations"),
    ("assays", "Assays"),
]
_TITLES = {
    "leaderboard": "Leaderboard: every method against the best baseline",
    "batch-levels": "Batch-level degradation",
    "layers": "Layer by layer",
    "classes": "Phenotype classes",
    "residualization": "Confound control: residualizing on cell count",
    "agreement": "Agreement between methods",
    "dimensionality": "Dimensionality and collapse",
    "perturbations": "Per perturbation: what only the learned representation retrieves",
    "assays": "Bioactivity assays that cell count alone predicts",
}


#: Smallest on-screen SVG text, in CSS pixels: a figure never shrinks below the width at
#: which its smallest font reaches this; a narrower screen scrolls the figure in its box.
MIN_SVG_TEXT_PX = 10.0
_SVG_OPEN = re.compile(r'<svg viewBox="0 0 ([0-9.]+) ([0-9.]+)"')
_FONT = re.compile(r'font-size="([0-9.]+)"')


def _legible_svgs(html_: str) -> str:
    """Give every inline SVG a ``min-width`` so its smallest text stays ≥
    :data:`MIN_SVG_TEXT_PX` when the page is narrow (the figure then scrolls sideways)."""
    out, pos = [], 0
    for m in _SVG_OPEN.finditer(html_):
        end = html_.find("</svg>", m.end())
        fonts = [float(x) for x in _FONT.findall(html_, m.end(), end if end > 0 else None)]
        tag_end = html_.find(">", m.end())
        if not fonts:
            continue
        w = float(m.group(1)) * MIN_SVG_TEXT_PX / min(fonts)
        tag = html_[m.start():tag_end]
        if 'style="' in tag:
            tag = tag.replace('style="', f'style="min-width:{w:.0f}px;', 1)
        else:
            tag += f' style="min-width:{w:.0f}px"'
        out.append(html_[pos:m.start()] + tag + f' data-min-width="{w:.0f}"')
        pos = tag_end
    out.append(html_[pos:])
    return "".join(out)


def _section(sid: str, inner: str) -> str:
    return (f'<section class="block" id="{sid}"><h2>{_esc(_TITLES[sid])}</h2>{inner}'
            "</section>")


def _main_metrics(metrics: list[str], headline: str, kinds: dict | None = None) -> list[str]:
    """Headline metric first, then metrics at most as nested as it (no per-assay splits,
    counts, chance levels or y-scrambled controls: only declared ``score`` metrics where
    ``diagnostics/metrics.parquet`` says), at most :data:`MAX_MAIN_METRICS`."""
    kinds = kinds or {}
    depth = headline.count(":")
    out = [headline] if headline in metrics else []
    for m in metrics:
        if m in out or m.count(":") > depth or "scrambled" in m:
            continue
        if kinds.get(m, "score") != "score":
            continue
        if is_secondary_metric(m.split(":")[0]) or m.split(":")[0].endswith("_chance"):
            continue
        out.append(m)
    return out[:MAX_MAIN_METRICS]


def _all_metrics_table(at: pd.DataFrame, main: set[str], order: list, task: str) -> str:
    """Every other metric of a task at every level: rows (metric, level), columns methods."""
    rest = at[~at["metric"].isin(main)]
    if rest.empty:
        return ""
    present = set(zip(rest["method"], rest["layer"]))
    keys = [k for k in order if k in present]
    vals = {(r.metric, r.batch_level, r.method, r.layer): r.value_mean for r in rest.itertuples()}
    levels: dict[str, list[str]] = {}  # metric → its levels, metrics in order of appearance
    for metric, lv in zip(rest["metric"], rest["batch_level"]):
        levels.setdefault(metric, []).append(lv)
    rows = []
    for metric, lvs in levels.items():
        for lv in order_levels(lvs):
            cells = "".join(f'<td class="num">{_fmt(vals.get((metric, lv, *k)))}</td>'
                            for k in keys)
            rows.append(f"<tr><td><code>{_esc(metric)}</code></td><td>{_esc(lv)}</td>"
                        f"{cells}</tr>")
    head = "".join(f'<th class="vert"><span>{_esc(_method_label(*k))}</span></th>' for k in keys)
    n = rest["metric"].nunique()
    return (f'<details><summary>{n} more metric{"s" if n != 1 else ""} of '
            f"{_esc(_task_label(task).lower())} (sub-metrics, counts, controls)</summary>"
            '<div class="table-wrap"><table class="plain dense"><thead><tr><th>metric</th>'
            f"<th>level</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</details>")


def _leaderboard_section(ctx: S.Ctx, n_levels: int, metric_kinds: Mapping | None = None
                         ) -> str:
    agg, headline = ctx.agg, ctx.headline
    parts = ['<p class="lead">Per task, the strictest batch level formed first and NR beside '
             "it (scores are means over folds and seeds; ★ marks the best baseline of each metric; the "
             "<em>beyond best baseline</em> column is model − best baseline, with the ratio and, "
             "where the diagnostics paired the comparison, a Wilcoxon p-value). Click a heading "
             "to sort; other batch levels and sub-metrics are folded under each table.</p>",
             _legend_html(set(agg["method_kind"]))]
    nav = []
    open_bars = True  # the first task's chart is open, the others folded
    for task in pd.unique(agg["task"]):
        at = agg[agg["task"] == task]
        bt = ctx.beyond[ctx.beyond["task"] == task]
        hl = ctx.levels[task]
        main = _main_metrics(list(pd.unique(at["metric"])), headline[task],
                             {m: k for (t, m), k in (metric_kinds or {}).items() if t == task})
        levels = order_levels(at["batch_level"])
        nav.append(f'<a href="#{_slug("task", task)}">{_esc(_task_label(task))}</a>')
        body = [f'<div class="task" id="{_esc(_slug("task", task))}">'
                f"<h3>{_esc(_task_label(task))} <code>{_esc(task)}</code>"
                + (f' <span class="lvl">batch level {_esc(hl)}</span>' if n_levels > 1 else "")
                + "</h3>"]

        def table(level: str) -> str:
            atl = at[(at["batch_level"] == level) & at["metric"].isin(main)]
            btl = bt[(bt["batch_level"] == level) & bt["metric"].isin(main)]
            best = {m: ctx.best[(task, level, m)] for m in main if (task, level, m) in ctx.best}
            return _leaderboard_html(atl, btl, _slug("table", task, level), ctx.lower, best)

        shown = [lv for lv in ctx.shown.get(task, [hl]) if lv in set(levels)] or [hl]
        beside = ["NR"] if "NR" in shown and hl != "NR" else []
        body.append(f'<div class="level-pair">' + "".join(
            f'<div class="level-col"><h4>Batch level <code>{_esc(lv)}</code>'
            + (f" — {_esc(LEVEL_NAMES[lv])}" if lv in LEVEL_NAMES else "")
            + (" (strictest formed)" if lv == hl and len(shown) > 1 else "")
            + "</h4>" + table(lv) + "</div>" for lv in [hl, *beside]) + "</div>")
        atl = at[(at["batch_level"] == hl) & (at["metric"] == headline[task])]
        btl = bt[bt["batch_level"] == hl]
        best_hl = {m: k for (t, lv, m), k in ctx.best.items() if t == task and lv == hl}
        body.append(f'<details class="bars"{" open" if open_bars else ""}><summary>Bar chart: '
                    f"{_esc(_metric_label(headline[task]))} at {_esc(hl)}</summary>"
                    f"{_bar_figures_html(atl, btl, task, hl, n_levels, best_hl)}</details>")
        open_bars = False
        others = [lv for lv in shown if lv not in (hl, *beside)]
        hidden = [lv for lv in levels if lv not in shown]
        if others:
            body.append(f'<details><summary>Other batch levels: {", ".join(others)}</summary>')
            for lv in others:
                body.append(f"<h4>Batch level <code>{_esc(lv)}</code>"
                            + (f" — {_esc(LEVEL_NAMES[lv])}" if lv in LEVEL_NAMES else "")
                            + "</h4>" + table(lv))
            body.append("</details>")
        if hidden:
            body.append(f'<p class="tablenote">Not repeated: {", ".join(hidden)} — identical '
                        "to a level shown (see the note at the top).</p>")
        body.append(_all_metrics_table(at, set(main), ctx.order, task))
        body.append("</div>")
        parts.append("".join(body))
    parts.insert(1, f'<nav class="subnav">{"".join(nav)}</nav>')
    return "".join(parts)


def render_report(
    scores: pd.DataFrame,
    per_perturbation: pd.DataFrame | None = None,
    *,
    title: str = "baselens report",
    context: Mapping[str, Any] | None = None,
    lower_is_better: Iterable[str] = (),
    diagnostics: Mapping[str, pd.DataFrame | None] | None = None,
    phenotypes: pd.DataFrame | None = None,
) -> str:
    """The report as one HTML string (see :func:`write_report`).

    ``diagnostics`` maps the names of ``diagnostics/*.parquet`` tables (``beyond_baseline``,
    ``best_baseline``, ``best_layers``, ``agreement``, ``closest_baseline``,
    ``dimensionality``, ``residualized``, ``residualization_panels``, ``assay_confounds``,
    ``phenotype_classes``, ``per_perturbation_differential``, ``findings``; tissue runs
    ``tissue_inputs``, ``tissue_genes``) to their contents; absent ones are reported as
    absent. The report chooses no best baseline, best layer, closest baseline or panel and
    draws no conclusion itself: those are the tables'.
    ``phenotypes`` (``perturbation, phenotype_class``) lets the report compute per-class
    scores itself when ``phenotype_classes`` is missing.
    """
    diag = {k: coerce_numeric(v) for k, v in dict(diagnostics or {}).items()}
    decl = diag.get("metrics")
    declared_lower, metric_kinds = _declared(decl)
    lower = set(lower_is_better) | declared_lower
    agg = display_means(scores)
    # the verdicts are the diagnostics' (the report decides nothing): model − best baseline
    # on score metrics, paired test, BH-adjusted p, bootstrap CI, verdict
    beyond = _verdicts(diag.get("beyond_baseline"))
    tasks = list(pd.unique(agg["task"]))
    n_levels = agg["batch_level"].nunique()
    headline = _headline_metrics(agg, decl)
    ctx = S.Ctx.build(agg, beyond, lower, headline, _findings(diag.get("findings")),
                      diag.get("best_baseline"), diag.get("best_layers"))

    n_methods = len(agg[["method", "layer"]].drop_duplicates())
    sub = (f"{n_methods} method{'s' if n_methods != 1 else ''}/layers · {len(tasks)} "
           f"task{'s' if len(tasks) != 1 else ''}"
           + (f" · {n_levels} batch levels" if n_levels > 1 else ""))
    # tissue runs (gene expression scored by Pearson r): the panels of baselens.report.tissue
    tissue_html = ""
    if not agg.empty and (agg["metric"] == "pearson").any():
        from baselens.report import tissue as T

        tissue_html = T.tissue_section_html(ctx, per_perturbation, diag)
    entries = list(SECTIONS)
    if tissue_html:  # the tissue section follows the leaderboard
        entries.insert(entries.index(("leaderboard", "Leaderboard")) + 1, ("tissue", "Tissue"))
    toc = "".join(f'<a href="#{sid}">{_esc(label)}</a>' for sid, label in entries)
    body = [
        '<header class="hero"><div class="eyebrow">baselens · signal beyond baselines</div>',
        f"<h1>{_esc(title)}</h1>",
        f'<div class="subtitle">{_esc(sub)}</div>',
        _context_html(context),
        f'<nav class="toc">{toc}</nav>',
        "</header>",
    ]
    if agg.empty:
        body.append('<section class="summary" id="summary"><h2>What the numbers say</h2>'
                    '<p class="note">This run has no scores yet (scores.parquet is empty).</p>'
                    "</section>")
        for sid, _ in SECTIONS[1:]:
            body.append(_section(sid, '<p class="absent">No scores.</p>'))
    else:
        pc_source = "diagnostics/phenotype_classes.parquet"
        pc = S.class_table(ctx, normalise_keys(diag.get("phenotype_classes")))
        if pc is None and phenotypes is not None:
            pc = S.class_table(ctx, phenotype_classes_from_per_pert(per_perturbation, phenotypes))
            pc_source = ("per-perturbation replicate mAP averaged within each class of the "
                         "screen's ground truth (no diagnostics/phenotype_classes.parquet)")
        body.append(_summary_html(ctx))
        body.append(_section("leaderboard", _leaderboard_section(ctx, n_levels, metric_kinds)))
        body.append(tissue_html)
        body.append(_section("batch-levels", S.batch_levels_html(ctx)))
        body.append(_section("layers", S.layers_html(ctx)))
        body.append(_section("classes", S.classes_html(ctx, pc, pc_source)))
        body.append(_section("residualization", S.residualization_html(
            ctx, diag.get("residualized"), diag.get("residualization_panels"))))
        body.append(_section("agreement", S.agreement_html(ctx, diag.get("agreement"),
                                                           diag.get("closest_baseline"))))
        body.append(_section("dimensionality",
                             S.dimensionality_html(ctx, diag.get("dimensionality"))))
        pp_parts = []
        diff = normalise_keys(diag.get("per_perturbation_differential"),
                              ("task", "batch_level", "metric", "method", "layer",
                               "method_kind", "perturbation"))
        for task in tasks:
            html_, n = _perpert_html(diff, per_perturbation, task)
            if n:
                pp_parts.append(
                    f'<details class="pp" id="{_slug("pp", task)}"{" open" if not pp_parts else ""}>'
                    f"<summary>{_esc(_task_label(task))} — {n} scatter{'s' if n != 1 else ''}"
                    f"</summary>{html_}</details>")
        if pp_parts:
            pp_html = "".join(pp_parts)
        elif diff is None and per_perturbation is not None and len(per_perturbation):
            pp_html = S.absent("No per-perturbation scatters (the diagnostics choose each "
                               "perturbation's best baseline)", "per_perturbation_differential")
        else:
            pp_html = ('<p class="absent">No per-perturbation values with a baseline to '
                       "compare against (per_perturbation.parquet absent or empty).</p>")
        body.append(_section("perturbations", pp_html))
        body.append(_section("assays", S.assays_html(ctx, diag.get("assay_confounds"))))
    body.append(_footer_html(lower))

    css = _asset("report.css")
    js = _asset("report.js")
    body = [_legible_svgs(b) for b in body]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title>"
        # counts uncaught errors into <body data-js-errors> (report.js also writes it on load)
        "<script>window.__baselensErrors=0;window.addEventListener('error',function(){"
        "window.__baselensErrors+=1;if(document.body){document.body.setAttribute("
        "'data-js-errors',String(window.__baselensErrors));}});</script>"
        f"<style>\n{css}\n</style></head>\n"
        f"<body><main>\n{''.join(body)}\n</main>\n<script>\n{js}\n</script></body></html>\n"
    )


def write_report(
    run_dir: str | Path,
    *,
    title: str = "baselens report",
    context: dict | None = None,
    lower_is_better: Iterable[str] = (),
    diagnostics_dir: str | Path | None = None,
    phenotypes: pd.DataFrame | None = None,
) -> Path:
    """Write ``run_dir/report.html`` from the run's results tables and return its path.

    Reads ``run_dir/scores.parquet`` (required), ``run_dir/per_perturbation.parquet`` and
    ``run_dir/diagnostics/*.parquet`` (optional; absent or empty tables mean the matching
    figures say so). For a synthetic screen the phenotype class of each perturbation comes
    from ``run_dir/data/ground_truth/perturbations.parquet`` unless ``phenotypes`` is given.
    The page is rendered in memory, written to a temporary file in ``run_dir`` and moved
    into place with :func:`os.replace`, so readers never see a half-written report and a
    failure leaves any previous report untouched.

    Parameters
    ----------
    run_dir
        Run folder holding the results contract tables.
    title
        Page title and heading.
    context
        Anything worth showing next to the title — dataset description, config snippet,
        filter counts, timings. Rendered as a definition list (nested dicts nest; multi-line
        strings become preformatted blocks). Text is escaped, never linked.
    lower_is_better
        Extra metric names where smaller is better (the run's
        ``diagnostics/metrics.parquet`` declares the rest).
    diagnostics_dir
        Where the diagnostics tables are (default ``run_dir/diagnostics``).
    phenotypes
        ``perturbation, phenotype_class`` table (default: found in the run folder).
    """
    run_dir = Path(run_dir)
    scores_path = run_dir / "scores.parquet"
    if not scores_path.exists():
        raise FileNotFoundError(f"no scores.parquet in {run_dir}")
    scores = pd.read_parquet(scores_path)
    per_pert = read_table(run_dir / "per_perturbation.parquet")
    from baselens.report.tissue import TABLES as TISSUE_TABLES  # tissue runs' gene/input tables

    diag = read_diagnostics(Path(diagnostics_dir) if diagnostics_dir else run_dir / "diagnostics",
                            (*DIAGNOSTICS, *TISSUE_TABLES))
    if phenotypes is None:
        phenotypes = find_phenotypes(run_dir)
    page = render_report(
        scores, per_pert, title=title, context=context, lower_is_better=lower_is_better,
        diagnostics=diag, phenotypes=phenotypes,
    )
    target = run_dir / REPORT_NAME
    fd, tmp = tempfile.mkstemp(prefix=f".{REPORT_NAME}.", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target
