"""Shared pieces of the report: colours, labels, number formatting, axis ticks."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

# MorphoHELM's batch levels and their canonical order: one definition, in baselens._tables
from baselens._tables import LEVEL_NAMES, LEVEL_ORDER, order_levels  # noqa: F401

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
    "classic": "hand-crafted per-cell morphology features (intensity, shape, texture), "
               "CellProfiler-style — the field's traditional profile",
    "plate_layout": "where the well sits (row, column, distance to the edge, plate) and nothing "
                    "else — a score it reaches is position, not biology",
    "cell_graph": "a graph of the cells of a site (neighbourhoods of segmented nuclei), "
                  "encoded by a small image network — spatial arrangement of cells",
    "precomputed": "embeddings or profiles given as a table (a model run outside baselens)",
    "openphenom": "OpenPhenom (Recursion's masked-autoencoder ViT for Cell Painting)",
}

#: The four kinds of method, always explained at the foot of the page.
KIND_NOTES = {
    "baseline": "deliberately simple representations (intensity statistics, cell counts, "
                "plate position, classic features, untrained networks): what a model must "
                "beat to show it learned something",
    "model": "a learned representation (pretrained network, foundation model, precomputed "
             "embeddings): what the report judges",
    "reference": "an upper bound (the true phenotype of a synthetic screen): the gap between "
                 "it and the best baseline is the room a model can fill",
    "null": "chance level (random features): any score near it means no signal",
}


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


_WORDS = {"moa": "MoA", "knn": "kNN"}


def _task_label(task: str) -> str:
    words = task.split("_")
    s = " ".join(_WORDS.get(w, w) for w in words)
    return s if words[0] in _WORDS else s[:1].upper() + s[1:]


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


def legend_html(items: Iterable[tuple[str, str]], *, swatch: str = "sw", extra: str = "") -> str:
    """A row of colour keys: a swatch (CSS class ``swatch``) and a label per ``(label,
    colour)``, then the HTML ``extra``."""
    return ('<div class="legend">' + "".join(
        f'<span><span class="{swatch}" style="background:{c}"></span>{_esc(t)}</span>'
        for t, c in items) + extra + "</div>")


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



def _fmt_tick(t: float, ticks: list[float]) -> str:
    """Tick label with as few decimals as the tick step needs (0.25 → two, 0.2 → one)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    digits = 0
    while digits < 4 and abs(step * 10**digits - round(step * 10**digits)) > 1e-6:
        digits += 1
    s = f"{t:.{digits}f}"
    return s.lstrip("-") if float(s) == 0 else s.replace("-", "−")


# --------------------------------------------------------------------------- ordering
def headline_level(levels: Iterable[str]) -> str:
    """The level the summary talks about: NR when scored, else the first in order."""
    lv = order_levels(levels)
    return "NR" if "NR" in lv else (lv[0] if lv else "all")


_TRAILING_INT = re.compile(r"(\d+)$")


def trailing_int(layer: str) -> int | None:
    m = _TRAILING_INT.search(str(layer))
    return int(m.group(1)) if m else None


_UNTRAINED = re.compile(r"(?:^|[_\-. ])(?:random|untrained|randinit|scratch)(?:$|[_\-. ])",
                        re.IGNORECASE)


def is_untrained(method: str) -> bool:
    """``vit_s16_random``, ``random-resnet50``, ``ViT-S untrained`` … (not the null ``random``)."""
    return bool(_UNTRAINED.search(str(method))) and str(method).lower() != "random"


def trained_name(method: str) -> str:
    """``vit_s16_random`` → ``vit_s16``: the name of the trained twin of an untrained network."""
    s = _UNTRAINED.sub("_", str(method)).strip("_-. ")
    return re.sub(r"__+", "_", s)


def is_secondary_metric(metric: str) -> bool:
    """Sub-metrics (per assay / per source / counts / warnings) kept out of the main tables."""
    m = str(metric)
    return ":" in m or m.startswith(("n_", "warning")) or m.endswith("_chance") \
        or m.startswith("chance_")
