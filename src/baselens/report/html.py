"""``report.html``: one self-contained page that puts every model next to the baselines.

:func:`write_report` reads a run folder's ``scores.parquet`` (and, if present,
``per_perturbation.parquet``; see the results contract in ``docs/architecture.md``) and
writes ``report.html`` atomically. The page has

* a header with the run title and whatever ``context`` dict the caller gives (dataset,
  config snippet, filter counts, timings),
* a plain-language summary computed from the numbers (best baseline per task, whether each
  model beats it, by how much),
* per task and batch level a sortable leaderboard (mean ± s.d. over folds/seeds, baselines
  and the reference tagged, a "beyond best baseline" column for models),
* per task and metric a horizontal bar chart (baselines grey, models blue, reference
  orange, dashed line at the best baseline), and, where per-perturbation values exist, a
  scatter of each model against the per-perturbation best baseline with outliers named.

Everything is inline: CSS (``report.css``), a short sorting script (``report.js``) and
hand-built SVG figures. The file contains no ``http://``/``https://`` reference and loads
nothing from the network, so it can be e-mailed or archived with the run.
"""

from __future__ import annotations

import html
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselens import __version__
from baselens.diagnose.beyond_baseline import (
    aggregate_scores,
    beyond_best_baseline,
    per_perturbation_differential,
)

__all__ = ["render_report", "write_report"]

REPORT_NAME = "report.html"

KIND_COLOURS = {
    "baseline": "#b3bcc7",
    "best_baseline": "#52606d",
    "model": "#0072b2",
    "reference": "#e69f00",
    "null": "#cc79a7",
}
_KIND_ORDER = {"reference": 0, "model": 1, "baseline": 2, "null": 3}

#: Short names for metrics of the results contract; anything else is shown de-underscored.
METRIC_LABELS = {
    "mean_average_precision": "mAP",
    "average_precision": "AP",
    "fraction_retrieved": "fraction retrieved",
    "recall_0.05_0.95": "recall (5 % / 95 % tails)",
    "recall_top_0.05": "recall (top 5 %)",
}

#: One-line explanations of the methods baselens ships, shown in the footer when present.
METHOD_NOTES = {
    "pixel_mean": "mean intensity of each channel — no morphology at all",
    "pixel_stats": "per-channel intensity statistics (mean, standard deviation, skewness)",
    "cell_count": "number of cells (nuclei) per site — confluence/toxicity only",
    "single_conv": "one untrained (random) convolution layer, pooled",
    "ground_truth": "the true latent phenotype of the synthetic screen — an upper bound",
    "random": "seeded Gaussian noise per site — what chance alone scores",
}

_PVALUE_LIKE = re.compile(r"p_?val|q_?val|fdr", re.IGNORECASE)


# --------------------------------------------------------------------------- formatting
def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _isnan(x: Any) -> bool:
    try:
        return x is None or (isinstance(x, float) and math.isnan(x)) or bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _fmt(x: Any, *, signed: bool = False, digits: int = 3) -> str:
    """``0.700``; ``+0.200``/``−0.200`` when signed; ``—`` for NaN/None."""
    if _isnan(x):
        return "—"
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    s = f"{abs(x):.{digits}f}"
    if signed:
        return ("+" if x >= 0 else "−") + s
    return ("−" if x < 0 and s.strip("0.") else "") + s


def _fmt_ratio(x: Any) -> str:
    if _isnan(x) or math.isinf(float(x)):
        return ""
    return f"{float(x):.2f}×"


def _fmt_scalar(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        if _isnan(x):
            return "—"
        ax = abs(float(x))
        if ax == 0 or 1e-3 <= ax < 1e6:
            return f"{float(x):,.3f}".rstrip("0").rstrip(".") if ax != int(ax) else f"{x:,.0f}"
        return f"{float(x):.3g}"
    return str(x)


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _task_label(task: str) -> str:
    s = task.replace("_", " ")
    return s[:1].upper() + s[1:]


def _method_label(method: str, layer: str) -> str:
    return method if layer in ("default", "", "None", "nan") else f"{method}/{layer}"


def _method_html(method: str, layer: str) -> str:
    if layer in ("default", "", "None", "nan"):
        return f'<span class="method">{_esc(method)}</span>'
    return f'<span class="method">{_esc(method)}</span><span class="layer">/{_esc(layer)}</span>'


def _slug(*parts: str) -> str:
    s = "-".join(parts)
    return re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-") or "x"


def _tag(kind: str) -> str:
    label = {"reference": "reference · upper bound", "null": "null · chance level"}.get(kind, kind)
    cls = kind if kind in KIND_COLOURS else "model"
    return f'<span class="tag tag-{_esc(cls)}">{_esc(label)}</span>'


def _asset(name: str) -> str:
    return resources.files("baselens.report").joinpath(name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- SVG helpers
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    k = int(round((stop - start) / step))
    return [round(start + i * step, 10) for i in range(k + 1)]


def _domain(values: Iterable[float], *, include_zero: bool = True) -> list[float]:
    vals = [float(v) for v in values if not _isnan(v) and math.isfinite(float(v))]
    if not vals:
        return [0.0, 0.5, 1.0]
    lo, hi = min(vals), max(vals)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if lo >= 0 and hi <= 1 and hi > 0.5:
        return [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    return _nice_ticks(lo, hi)


def _text_width(s: str, size: float = 12.0) -> float:
    return 0.58 * size * len(s)


def _truncate(s: str, max_chars: int) -> str:
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


def bar_chart_svg(
    rows: pd.DataFrame,
    *,
    best_value: float | None,
    best_label: str | None,
    title: str,
) -> str:
    """Horizontal bars of ``rows`` (columns label, kind, mean, std, is_best), one per method.

    Baselines are grey (the best one darker), models blue, references orange; whiskers are
    ± 1 s.d.; a dashed line marks ``best_value``.
    """
    n = len(rows)
    labels = [_truncate(str(x), 30) for x in rows["label"]]
    left = min(230.0, max(90.0, max((_text_width(s) for s in labels), default=60) + 18))
    width, right = 560.0, 62.0
    top, row_h, bottom = 30.0, 24.0, 34.0
    height = top + row_h * max(n, 1) + bottom
    ext = []
    for m, s in zip(rows["mean"], rows["std"]):
        if not _isnan(m):
            ext.append(m)
            if not _isnan(s):
                ext += [m - s, m + s]
    if best_value is not None and not _isnan(best_value):
        ext.append(best_value)
    ticks = _domain(ext)
    d0, d1 = ticks[0], ticks[-1]
    x0, x1 = left, width - right

    def sx(v: float) -> float:
        return x0 + (x1 - x0) * (float(v) - d0) / (d1 - d0)

    out = [
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_esc(title)}" preserveAspectRatio="xMinYMin meet">',
        f"<title>{_esc(title)}</title>",
    ]
    axis_y = top + row_h * max(n, 1)
    for t in ticks:
        x = sx(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{axis_y:.1f}" '
            f'stroke="{"#9aa5b1" if t == 0 else "#e4e7eb"}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{axis_y + 15:.1f}" font-size="11" fill="#616e7c" '
            f'text-anchor="middle">{_esc(_fmt_tick(t, ticks))}</text>'
        )
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{axis_y + 30:.1f}" font-size="11.5" fill="#3e4c59" '
        f'text-anchor="middle">{_esc(title)}</text>'
    )
    zero = sx(min(max(0.0, d0), d1))
    for i, (label, full, kind, m, s, is_best) in enumerate(
        zip(labels, rows["label"], rows["kind"], rows["mean"], rows["std"], rows["is_best"])
    ):
        yc = top + row_h * i + row_h / 2
        weight = "600" if kind != "baseline" else "400"
        out.append(
            f'<text x="{left - 8:.1f}" y="{yc + 4:.1f}" font-size="12" text-anchor="end" '
            f'font-weight="{weight}" fill="#1f2933"><title>{_esc(full)}</title>{_esc(label)}</text>'
        )
        if _isnan(m):
            out.append(
                f'<text x="{zero + 4:.1f}" y="{yc + 4:.1f}" font-size="11" fill="#9aa5b1">'
                f"no value</text>"
            )
            continue
        colour = KIND_COLOURS["best_baseline" if is_best else kind] if kind in KIND_COLOURS \
            else KIND_COLOURS["model"]
        xa, xb = sorted([zero, sx(m)])
        tip = f"{full}: {_fmt(m)}" + ("" if _isnan(s) else f" ± {_fmt(s)}")
        out.append(
            f'<rect x="{xa:.1f}" y="{yc - 7:.1f}" width="{max(xb - xa, 1.0):.1f}" height="14" '
            f'rx="2" fill="{colour}"><title>{_esc(tip)}</title></rect>'
        )
        end = max(xb, zero)
        if not _isnan(s) and s > 0:
            ea, eb = sx(max(m - s, d0)), sx(min(m + s, d1))
            out.append(
                f'<line x1="{ea:.1f}" y1="{yc:.1f}" x2="{eb:.1f}" y2="{yc:.1f}" '
                f'stroke="#323f4b" stroke-width="1.2"/>'
                f'<line x1="{ea:.1f}" y1="{yc - 4:.1f}" x2="{ea:.1f}" y2="{yc + 4:.1f}" '
                f'stroke="#323f4b" stroke-width="1.2"/>'
                f'<line x1="{eb:.1f}" y1="{yc - 4:.1f}" x2="{eb:.1f}" y2="{yc + 4:.1f}" '
                f'stroke="#323f4b" stroke-width="1.2"/>'
            )
            end = max(end, eb)
        out.append(
            f'<text x="{end + 5:.1f}" y="{yc + 4:.1f}" font-size="11.5" fill="#323f4b" '
            f'paint-order="stroke" stroke="#ffffff" stroke-width="3">{_esc(_fmt(m))}</text>'
        )
    if best_value is not None and not _isnan(best_value):
        xb = sx(best_value)
        out.append(
            f'<line x1="{xb:.1f}" y1="{top - 6:.1f}" x2="{xb:.1f}" y2="{axis_y:.1f}" '
            f'stroke="#323f4b" stroke-width="1.4" stroke-dasharray="5 4"/>'
        )
        txt = f"best baseline ({best_label}) {_fmt(best_value)}"
        anchor = "end" if xb > (x0 + x1) / 2 else "start"
        dx = -4 if anchor == "end" else 4
        out.append(
            f'<text x="{xb + dx:.1f}" y="{top - 10:.1f}" font-size="11" fill="#323f4b" '
            f'text-anchor="{anchor}">{_esc(txt)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _fmt_tick(t: float, ticks: list[float]) -> str:
    """Tick label with as few decimals as the tick step needs (0.25 → two, 0.2 → one)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    digits = 0
    while digits < 4 and abs(step * 10**digits - round(step * 10**digits)) > 1e-6:
        digits += 1
    s = f"{t:.{digits}f}"
    return s.lstrip("-") if float(s) == 0 else s.replace("-", "−")


def scatter_svg(diff: pd.DataFrame, *, model_label: str, metric_label: str, n_labels: int = 5
                ) -> str:
    """Per-perturbation scatter: x = best baseline for that perturbation, y = the model.

    ``diff`` is one method's slice of :func:`per_perturbation_differential`. Points above
    the diagonal are perturbations where the model beats every baseline; the ``n_labels``
    largest improvements are named.
    """
    d = diff[diff["value"].notna() & diff["best_baseline_value"].notna()]
    size, ml, mb, mt, mr = 440.0, 54.0, 46.0, 14.0, 18.0
    pw = size - ml - mr
    ticks = _domain(list(d["value"]) + list(d["best_baseline_value"]))
    d0, d1 = ticks[0], ticks[-1]
    width, height = size, mt + pw + mb

    def sx(v: float) -> float:
        return ml + pw * (float(v) - d0) / (d1 - d0)

    def sy(v: float) -> float:
        return mt + pw - pw * (float(v) - d0) / (d1 - d0)

    title = f"{model_label} vs best baseline, per perturbation ({metric_label})"
    out = [
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
        # region where the model beats every baseline
        f'<polygon points="{sx(d0):.1f},{sy(d0):.1f} {sx(d0):.1f},{sy(d1):.1f} '
        f'{sx(d1):.1f},{sy(d1):.1f}" fill="#0072b2" fill-opacity="0.05"/>',
    ]
    for t in ticks:
        out.append(
            f'<line x1="{sx(t):.1f}" y1="{mt:.1f}" x2="{sx(t):.1f}" y2="{mt + pw:.1f}" '
            f'stroke="#eef0f3"/>'
            f'<line x1="{ml:.1f}" y1="{sy(t):.1f}" x2="{ml + pw:.1f}" y2="{sy(t):.1f}" '
            f'stroke="#eef0f3"/>'
            f'<text x="{sx(t):.1f}" y="{mt + pw + 15:.1f}" font-size="11" fill="#616e7c" '
            f'text-anchor="middle">{_esc(_fmt_tick(t, ticks))}</text>'
            f'<text x="{ml - 6:.1f}" y="{sy(t) + 4:.1f}" font-size="11" fill="#616e7c" '
            f'text-anchor="end">{_esc(_fmt_tick(t, ticks))}</text>'
        )
    out.append(
        f'<rect x="{ml:.1f}" y="{mt:.1f}" width="{pw:.1f}" height="{pw:.1f}" fill="none" '
        f'stroke="#cbd2d9"/>'
        f'<line x1="{sx(d0):.1f}" y1="{sy(d0):.1f}" x2="{sx(d1):.1f}" y2="{sy(d1):.1f}" '
        f'stroke="#52606d" stroke-width="1.2" stroke-dasharray="5 4"/>'
        f'<text x="{ml + 8:.1f}" y="{mt + 16:.1f}" font-size="11" fill="#0b4f8a">'
        f"model better ↑</text>"
        f'<text x="{ml + pw - 8:.1f}" y="{mt + pw - 8:.1f}" font-size="11" fill="#616e7c" '
        f'text-anchor="end">baseline better ↓</text>'
        f'<text x="{ml + pw / 2:.1f}" y="{mt + pw + 34:.1f}" font-size="11.5" fill="#3e4c59" '
        f'text-anchor="middle">best baseline for the perturbation ({_esc(metric_label)})</text>'
        f'<text transform="translate({14:.1f},{mt + pw / 2:.1f}) rotate(-90)" font-size="11.5" '
        f'fill="#3e4c59" text-anchor="middle">{_esc(_truncate(model_label, 40))} '
        f"({_esc(metric_label)})</text>"
    )
    if d.empty:
        out.append(
            f'<text x="{ml + pw / 2:.1f}" y="{mt + pw / 2:.1f}" font-size="12" fill="#9aa5b1" '
            f'text-anchor="middle">no perturbation with both values</text></svg>'
        )
        return "".join(out)
    top = d[d["improvement"] > 0].nlargest(n_labels, "improvement")
    top_idx = set(top.index)
    # draw ordinary points first, highlighted ones last (on top)
    for idx, r in sorted(d.iterrows(), key=lambda kv: kv[0] in top_idx):
        better = r["improvement"] > 0
        tip = (
            f"{r['perturbation']}: {model_label} {_fmt(r['value'])}, best baseline "
            f"{_fmt(r['best_baseline_value'])} ({_method_label(r['best_baseline'], r['best_baseline_layer'])})"
        )
        if idx in top_idx:
            out.append(
                f'<circle cx="{sx(r["best_baseline_value"]):.1f}" cy="{sy(r["value"]):.1f}" r="4.5" '
                f'fill="#0072b2" stroke="#ffffff" stroke-width="1.2"><title>{_esc(tip)}</title></circle>'
            )
        else:
            fill = "#0072b2" if better else "#9aa5b1"
            out.append(
                f'<circle cx="{sx(r["best_baseline_value"]):.1f}" cy="{sy(r["value"]):.1f}" r="3" '
                f'fill="{fill}" fill-opacity="0.45"><title>{_esc(tip)}</title></circle>'
            )
    # outlier labels, nudged apart vertically
    placed: list[float] = []
    labs = []
    for _, r in top.sort_values("value", ascending=False).iterrows():
        px, py = sx(r["best_baseline_value"]), sy(r["value"])
        ly = py + 4
        for p in placed:
            if abs(ly - p) < 13:
                ly = p + 13
        ly = min(ly, mt + pw - 4)
        placed.append(ly)
        labs.append((px, py, ly, _truncate(str(r["perturbation"]), 22)))
    for px, py, ly, name in labs:
        right_side = px + 8 + _text_width(name, 11) < ml + pw
        tx = px + 8 if right_side else px - 8
        anchor = "start" if right_side else "end"
        if abs(ly - 4 - py) > 3:
            out.append(
                f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{tx:.1f}" y2="{ly - 4:.1f}" '
                f'stroke="#9aa5b1" stroke-width="0.8"/>'
            )
        out.append(
            f'<text x="{tx:.1f}" y="{ly:.1f}" font-size="11" fill="#1f2933" font-weight="600" '
            f'text-anchor="{anchor}" paint-order="stroke" stroke="#ffffff" stroke-width="3">'
            f"{_esc(name)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- sections
def _context_html(context: Mapping[str, Any] | None) -> str:
    if not context:
        return ""
    return f'<div class="context">{_kv_html(context)}</div>'


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


def _headline_metrics(agg: pd.DataFrame) -> dict[str, str]:
    """First metric (order of appearance) of every task: the one the summary talks about."""
    out: dict[str, str] = {}
    for task, metric in zip(agg["task"], agg["metric"]):
        out.setdefault(task, metric)
    return out


def _within_noise(row: pd.Series) -> bool:
    sds = [s for s in (row["value_std"], row["best_baseline_std"]) if not _isnan(s)]
    if not sds or _isnan(row["difference"]):
        return False
    return abs(row["difference"]) <= math.sqrt(sum(s * s for s in sds))


def _summary_html(agg: pd.DataFrame, beyond: pd.DataFrame, n_levels: int) -> str:
    parts = ['<section class="summary" id="summary"><h2>What the numbers say</h2>']
    headline = _headline_metrics(agg)
    models = beyond[beyond["method_kind"] == "model"]
    if models.empty:
        parts.append(
            '<p class="note">This run scored no learned model — only baselines'
            + (" and a reference" if (agg["method_kind"] == "reference").any() else "")
            + ". The tables show how the baselines compare with each other.</p>"
        )
    else:
        parts.append('<div class="cards">')
        # cards count headline metrics only (per task, every batch level): sub-metrics such
        # as one assay's y-scrambled AUPRG would drown the comparisons that matter
        is_headline = models["metric"] == models["task"].map(headline)
        for (method, layer), grp in models[is_headline].groupby(["method", "layer"], sort=False):
            comp = grp[grp["improvement"].notna()]
            k, n = int(comp["beats_best_baseline"].sum()), len(comp)
            cls = "all" if n and k == n else ("none" if k == 0 else "")
            best_row = comp.loc[comp["improvement"].idxmax()] if n else None
            detail = ""
            if best_row is not None:
                word = "largest margin" if best_row["improvement"] > 0 else "closest"
                detail = (
                    f"{word}: {_fmt(best_row['improvement'], signed=True)} on "
                    f"{_esc(best_row['task'])} ({_esc(_metric_label(best_row['metric']))}"
                    + (f", {_esc(best_row['batch_level'])}" if n_levels > 1 else "")
                    + ")"
                )
            parts.append(
                f'<div class="card"><div class="name">{_method_html(method, layer)}</div>'
                f'<div class="big {cls}">{k} / {n}</div>'
                f'<div class="small">task × batch-level comparisons (headline metric) where '
                f"it beats the best baseline</div>"
                f'<div class="small">{detail}</div></div>'
            )
        parts.append("</div>")

    items = []
    # the summary speaks of one batch level per task (NR, the usual headline setting, when
    # scored); the per-level numbers are in the tables and the degradation figures
    levels_by_task = agg.groupby("task", sort=False)["batch_level"].agg(
        lambda s: "NR" if (s == "NR").any() else s.iloc[0])
    summary_rows = agg[agg["batch_level"] == agg["task"].map(levels_by_task)]
    for (task, level), grp in summary_rows.groupby(["task", "batch_level"], sort=False):
        metric = headline[task]
        mlabel = _metric_label(metric)
        sub = beyond[
            (beyond["task"] == task)
            & (beyond["batch_level"] == level)
            & (beyond["metric"] == metric)
        ]
        base = grp[(grp["metric"] == metric) & (grp["method_kind"] == "baseline")]
        where = f"<strong>{_esc(_task_label(task))}</strong>" + (
            f" (batch level <code>{_esc(level)}</code>)" if n_levels > 1 else ""
        )
        if base["value_mean"].notna().sum() == 0:
            items.append(f"<li>On {where}, no baseline has a {_esc(mlabel)} value, so there is "
                         f"nothing to compare against.</li>")
            continue
        brow = base.loc[base["value_mean"].idxmax()] if sub.empty else None
        if sub.empty:
            bname, bval = _method_label(brow["method"], brow["layer"]), brow["value_mean"]
        else:
            r0 = sub.iloc[0]
            bname = _method_label(r0["best_baseline"], r0["best_baseline_layer"])
            bval = r0["best_baseline_mean"]
        head = (
            f"{where} — best baseline: <strong>{_esc(bname)}</strong>, "
            f"{_esc(mlabel)} {_fmt(bval)}."
        )
        if str(bname).split("/")[0] == "plate_layout":
            head += (' <span class="warn">Plate layout alone is the best baseline here: this task '
                     "can be solved from where wells sit on the plate, so scores at this batch "
                     "level say little about biology — look at the NSL / NSSL levels.</span>")
        sent = []
        refs = sub[sub["method_kind"] == "reference"]
        ref_best = refs["value_mean"].max() if not refs.empty else float("nan")
        for _, r in sub[sub["method_kind"] == "model"].iterrows():
            name = _method_label(r["method"], r["layer"])
            if _isnan(r["value_mean"]):
                sent.append(f'<span class="verdict na">–</span>{_esc(name)} has no value.')
                continue
            ratio = _fmt_ratio(r["ratio"]) if bval > 0 and r["value_mean"] >= 0 else ""
            ratio = f", {ratio} the baseline" if ratio else ""
            noise = " — within the fold-to-fold spread" if _within_noise(r) else ""
            headroom = ""
            if not _isnan(ref_best) and ref_best - bval > 0 and r["improvement"] > 0:
                frac = (r["value_mean"] - bval) / (ref_best - bval)
                headroom = f"; it closes {100 * frac:.0f} % of the gap to the reference"
            if r["beats_best_baseline"]:
                sent.append(
                    f'<span class="verdict pos">✔</span><strong>{_esc(name)}</strong> beats it: '
                    f"{_fmt(r['value_mean'])} ({_fmt(r['improvement'], signed=True)}{ratio})"
                    f"{noise}{headroom}."
                )
            else:
                sent.append(
                    f'<span class="verdict neg">✘</span><strong>{_esc(name)}</strong> does not '
                    f"beat it: {_fmt(r['value_mean'])} ({_fmt(r['improvement'], signed=True)}"
                    f"{ratio}){noise}."
                )
        for _, r in refs.iterrows():
            name = _method_label(r["method"], r["layer"])
            if _isnan(r["value_mean"]):
                sent.append(f'<span class="verdict na">–</span>{_esc(name)} (reference) has no '
                            "value.")
            else:
                sent.append(
                    f'<span class="verdict ref">◆</span>{_esc(name)} (reference, upper bound) '
                    f"reaches {_fmt(r['value_mean'])}, {_fmt(r['improvement'], signed=True)} "
                    "beyond it"
                    + (" — there is signal left for a model to find." if r["improvement"] > 0
                       else " — the baseline already explains what the reference captures.")
                )
        for _, r in sub[sub["method_kind"] == "null"].iterrows():
            if not _isnan(r["value_mean"]):
                sent.append(
                    f'<span class="verdict na">○</span>{_esc(_method_label(r["method"], r["layer"]))}'
                    f" (chance level) scores {_fmt(r['value_mean'])}."
                )
        if not sent:
            sent.append('<span class="verdict na">–</span>No model or reference was scored '
                        "on this task.")
        items.append(f"<li>{head}<ul>" + "".join(f"<li>{x}</li>" for x in sent) + "</ul></li>")
    if items:
        parts.append(
            '<p class="muted">Headline metric per task (the first one scored); every metric is '
            "in the tables below.</p>"
        )
        parts.append('<ul class="findings">' + "".join(items) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def _leaderboard_html(agg_tl: pd.DataFrame, beyond_tl: pd.DataFrame, table_id: str) -> str:
    """One sortable table: rows = method/layer, columns = score and margin per metric."""
    metrics = list(pd.unique(agg_tl["metric"]))
    has_others = (agg_tl["method_kind"] != "baseline").any()
    methods = (
        agg_tl[["method", "layer", "method_kind"]].drop_duplicates(["method", "layer"])
    )
    vals = {(r.method, r.layer, r.metric): r for r in agg_tl.itertuples(index=False)}
    margins = {(r.method, r.layer, r.metric): r for r in beyond_tl.itertuples(index=False)}
    best_base = {}
    for metric in metrics:
        b = agg_tl[(agg_tl["metric"] == metric) & (agg_tl["method_kind"] == "baseline")]
        b = b[b["value_mean"].notna()]
        if not b.empty:
            rows_b = beyond_tl[beyond_tl["metric"] == metric]
            if not rows_b.empty and rows_b["best_baseline"].iloc[0] is not None:
                best_base[metric] = (rows_b["best_baseline"].iloc[0],
                                     rows_b["best_baseline_layer"].iloc[0])
            else:
                bb = b.sort_values(["method", "layer"]).sort_values(
                    "value_mean", ascending=False, kind="stable").iloc[0]
                best_base[metric] = (bb["method"], bb["layer"])
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
          '<th rowspan="2" data-col="1"><button type="button">Kind</button></th>']
    h2 = ['<tr class="sub">']
    col = 2
    for i, metric in enumerate(metrics):
        h1.append(f'<th colspan="{span}" title="{_esc(metric)}">{_esc(_metric_label(metric))}</th>')
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
            f'<td data-value="{_KIND_ORDER.get(kind, 1)}">{_tag(kind)}</td>',
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
                    cls = "pos" if g.improvement > 0 else "neg"
                    ratio = (_fmt_ratio(g.ratio)
                             if g.best_baseline_mean > 0 and g.value_mean >= 0 else "")
                    cells.append(
                        f'<td class="num" data-value="{float(g.improvement)!r}">'
                        f'<span class="{cls}">{_fmt(g.improvement, signed=True)}</span>'
                        + (f'<span class="ratio">{ratio}</span>' if ratio else "")
                        + "</td>"
                    )
        body.append(f'<tr class="kind-{_esc(kind)}">{"".join(cells)}</tr>')

    return (
        f'<div class="table-wrap"><table class="leaderboard sortable" id="{_esc(table_id)}">'
        f'<thead>{"".join(h1)}{"".join(h2)}</thead><tbody>{"".join(body)}</tbody></table></div>'
    )


def _legend_html(kinds: set[str]) -> str:
    items = [
        f'<span><span class="sw" style="background:{KIND_COLOURS["baseline"]}"></span>baseline</span>',
        f'<span><span class="sw" style="background:{KIND_COLOURS["best_baseline"]}"></span>'
        "best baseline</span>",
    ]
    if "model" in kinds:
        items.append(f'<span><span class="sw" style="background:{KIND_COLOURS["model"]}"></span>'
                     "learned model</span>")
    if "reference" in kinds:
        items.append(f'<span><span class="sw" style="background:{KIND_COLOURS["reference"]}">'
                     "</span>reference (upper bound)</span>")
    if "null" in kinds:
        items.append(f'<span><span class="sw" style="background:{KIND_COLOURS["null"]}">'
                     "</span>null (chance level)</span>")
    items.append('<span><span class="sw dash"></span>best-baseline level</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def _bar_figures_html(agg_tl: pd.DataFrame, beyond_tl: pd.DataFrame, task: str, level: str,
                      n_levels: int) -> str:
    figs = []
    for metric in pd.unique(agg_tl["metric"]):
        a = agg_tl[agg_tl["metric"] == metric]
        b = beyond_tl[beyond_tl["metric"] == metric]
        base = a[(a["method_kind"] == "baseline") & a["value_mean"].notna()]
        best_key, best_val = None, None
        if not base.empty:
            bb = base.sort_values(["method", "layer"]).sort_values(
                "value_mean", ascending=False, kind="stable").iloc[0]
            if not b.empty and b["best_baseline"].iloc[0] is not None:
                best_key = (b["best_baseline"].iloc[0], b["best_baseline_layer"].iloc[0])
                best_val = float(b["best_baseline_mean"].iloc[0])
            else:
                best_key, best_val = (bb["method"], bb["layer"]), float(bb["value_mean"])
        a = a.assign(
            label=[_method_label(m, la) for m, la in zip(a["method"], a["layer"])],
            kind=a["method_kind"],
            mean=a["value_mean"],
            std=a["value_std"],
            is_best=[(m, la) == best_key for m, la in zip(a["method"], a["layer"])],
            _nan=a["value_mean"].isna(),
        ).sort_values(["_nan", "mean"], ascending=[True, False], kind="stable")
        mlabel = _metric_label(metric)
        best_label = _method_label(*best_key) if best_key else None
        svg = bar_chart_svg(a, best_value=best_val, best_label=best_label, title=mlabel)
        runs = int(a["n_runs"].max()) if len(a) else 0
        spread = (f"Bars are means over {runs} runs (folds × seeds), whiskers ± 1 s.d. "
                  if runs > 1 else "One run per method (a single fold and seed). ")
        if best_key:
            meaning = (f"The dashed line is the best baseline, <strong>{_esc(best_label)}</strong> "
                       f"({_fmt(best_val)}): a model has learned something beyond simple image "
                       "statistics only where its bar reaches past that line.")
        else:
            meaning = "No baseline has a value for this metric, so there is no reference line."
        lvl = f", batch level <code>{_esc(level)}</code>" if n_levels > 1 else ""
        figs.append(
            f'<figure id="{_esc(_slug("bar", task, level, metric))}">{svg}<figcaption>'
            f"<strong>{_esc(_task_label(task))} — {_esc(mlabel)}</strong>"
            f" (<code>{_esc(metric)}</code>{lvl}). {spread}{meaning}</figcaption></figure>"
        )
    return f'<div class="figgrid">{"".join(figs)}</div>'


def _perpert_html(per_pert: pd.DataFrame, task: str, lower: set[str]) -> str:
    if per_pert is None or per_pert.empty or "task" not in per_pert.columns:
        return ""
    pp = per_pert[per_pert["task"].astype(str) == task]
    if pp.empty:
        return ""
    levels = list(pd.unique(pp["batch_level"].astype(str))) if "batch_level" in pp else ["all"]
    figs, skipped = [], []
    for metric in pd.unique(pp["metric"].astype(str)):
        if _PVALUE_LIKE.search(metric):
            skipped.append(metric)
            continue
        for level in levels:
            diff = per_perturbation_differential(
                pp, task, metric, batch_level=level if "batch_level" in pp else None,
                lower_is_better=metric in lower,
            )
            if diff.empty or diff["best_baseline_value"].notna().sum() == 0:
                continue
            for (method, layer), d in diff.groupby(["method", "layer"], sort=False):
                if d["method_kind"].iloc[0] == "null":
                    continue  # chance-level controls: nothing to learn from a scatter
                label = _method_label(method, layer)
                mlabel = _metric_label(metric)
                svg = scatter_svg(d, model_label=label, metric_label=mlabel)
                valid = d[d["improvement"].notna()]
                k = int((valid["improvement"] > 0).sum())
                top = valid[valid["improvement"] > 0].head(8)
                lis = "".join(
                    f"<li><strong>{_esc(r['perturbation'])}</strong>: {_fmt(r['value'])} vs "
                    f"{_fmt(r['best_baseline_value'])} "
                    f"({_esc(_method_label(r['best_baseline'], r['best_baseline_layer']))}), "
                    f'<span class="pos">{_fmt(r["improvement"], signed=True)}</span></li>'
                    for _, r in top.iterrows()
                )
                kind = d["method_kind"].iloc[0]
                who = "the reference" if kind == "reference" else "the model"
                lvl = f", batch level <code>{_esc(level)}</code>" if len(levels) > 1 else ""
                outl = (f'<p class="tablenote">Largest gains over the best baseline:</p>'
                        f'<ul class="outliers">{lis}</ul>' if lis else
                        '<p class="tablenote">No perturbation where it beats every baseline.</p>')
                figs.append(
                    f'<figure id="{_esc(_slug("pp", task, level, metric, label))}">{svg}'
                    f"<figcaption><strong>{_esc(label)}</strong> ({_esc(kind)}) — "
                    f"{_esc(mlabel)} per perturbation{lvl}. Each dot is a perturbation: x is "
                    f"the best of all baselines <em>for that perturbation</em>, y is {who}. "
                    f"Dots above the dashed diagonal ({k} of {len(valid)}) are retrieved better "
                    f"by {who} than by any baseline; the furthest are named.</figcaption>"
                    f"{outl}</figure>"
                )
    if not figs:
        return ""
    note = ""
    if skipped:
        note = (f'<p class="tablenote">Not plotted: {", ".join(_esc(s) for s in skipped)} '
                "(p-values are not comparable on a linear scale).</p>")
    return (
        '<h3>Per perturbation: what only the learned representation retrieves</h3>'
        f'<div class="figgrid">{"".join(figs)}</div>{note}'
    )


def _footer_html(agg: pd.DataFrame, lower: set[str]) -> str:
    notes = {m: METHOD_NOTES[m] for m in pd.unique(agg["method"]) if m in METHOD_NOTES}
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
    ]
    if notes:
        parts.append('<dl class="kv">' + "".join(
            f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in notes.items()) + "</dl>")
    parts.append(
        f'<p class="muted">baselens {_esc(__version__)} · generated '
        f'{datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}</p></footer>'
    )
    return "".join(parts)


# --------------------------------------------------------------------------- page
def render_report(
    scores: pd.DataFrame,
    per_perturbation: pd.DataFrame | None = None,
    *,
    title: str = "baselens report",
    context: Mapping[str, Any] | None = None,
    lower_is_better: Iterable[str] = (),
) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    lower = set(lower_is_better)
    agg = aggregate_scores(scores)
    beyond = beyond_best_baseline(scores, lower_is_better=lower)
    tasks = list(pd.unique(agg["task"]))
    levels_all = list(pd.unique(agg["batch_level"]))
    n_levels = len(levels_all)
    kinds = set(agg["method_kind"])

    n_methods = len(agg[["method", "layer"]].drop_duplicates())
    sub = (f"{n_methods} method{'s' if n_methods != 1 else ''} · {len(tasks)} "
           f"task{'s' if len(tasks) != 1 else ''}"
           + (f" · {n_levels} batch levels" if n_levels > 1 else ""))
    toc = "".join(
        f'<a href="#{_esc(_slug("task", t))}">{_esc(_task_label(t))}</a>' for t in tasks
    )
    body = [
        '<header class="hero"><div class="eyebrow">baselens · signal beyond baselines</div>',
        f"<h1>{_esc(title)}</h1>",
        f'<div class="subtitle">{_esc(sub)}</div>',
        _context_html(context),
        (f'<nav class="toc"><a href="#summary">Summary</a>{toc}</nav>' if tasks else ""),
        "</header>",
    ]
    if agg.empty:
        body.append('<p class="note">This run has no scores yet (scores.parquet is empty).</p>')
    else:
        body.append(_summary_html(agg, beyond, n_levels))
        for task in tasks:
            at = agg[agg["task"] == task]
            body.append(
                f'<section class="task" id="{_esc(_slug("task", task))}">'
                f"<h2>{_esc(_task_label(task))}<code>{_esc(task)}</code></h2>"
            )
            levels = list(pd.unique(at["batch_level"]))
            for level in levels:
                atl = at[at["batch_level"] == level]
                btl = beyond[(beyond["task"] == task) & (beyond["batch_level"] == level)]
                if n_levels > 1:
                    body.append(f"<h3>Batch level <code>{_esc(level)}</code></h3>")
                body.append(_leaderboard_html(atl, btl, _slug("table", task, level)))
                runs = int(atl["n_runs"].max()) if len(atl) else 0
                body.append(
                    '<p class="tablenote">Scores are mean'
                    + (f" ± s.d. over up to {runs} runs (folds × seeds)" if runs > 1 else
                       " of a single run")
                    + "; ★ marks the best baseline of each metric. Click a column heading "
                    "to sort.</p>"
                )
                body.append(_legend_html(kinds))
                body.append(_bar_figures_html(atl, btl, task, level, n_levels))
            body.append(_perpert_html(per_perturbation, task, lower))
            body.append("</section>")
    body.append(_footer_html(agg, lower))

    css = _asset("report.css")
    js = _asset("report.js")
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


def _read_table(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_parquet(path)


def write_report(
    run_dir: str | Path,
    *,
    title: str = "baselens report",
    context: dict | None = None,
    lower_is_better: Iterable[str] = (),
) -> Path:
    """Write ``run_dir/report.html`` from the run's results tables and return its path.

    Reads ``run_dir/scores.parquet`` (required) and ``run_dir/per_perturbation.parquet``
    (optional; absent or empty means no per-perturbation figures). The page is rendered in
    memory, written to a temporary file in ``run_dir`` and moved into place with
    :func:`os.replace`, so readers never see a half-written report and a failure leaves any
    previous report untouched.

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
        Metric names where smaller is better (none in the contract).
    """
    run_dir = Path(run_dir)
    scores_path = run_dir / "scores.parquet"
    if not scores_path.exists():
        raise FileNotFoundError(f"no scores.parquet in {run_dir}")
    scores = pd.read_parquet(scores_path)
    per_pert = _read_table(run_dir / "per_perturbation.parquet")
    page = render_report(
        scores, per_pert, title=title, context=context, lower_is_better=lower_is_better
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
