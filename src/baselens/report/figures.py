"""Hand-built inline SVG figures (no plotting library, no network)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from baselens.report.common import (
    KIND_COLOURS,
    _domain,
    _esc,
    _fmt,
    _fmt_tick,
    _isnan,
    _method_label,
    _nice_ticks,
    _text_width,
    _truncate,
)

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
    # bold 12 px labels run to ~0.64 em a character: the margin fits the longest label whole
    # (truncated at 28 characters; the full name is the label's tooltip)
    labels = [_truncate(str(x), 28) for x in rows["label"]]
    left = min(250.0, max(90.0, max((0.64 * 12 * len(s) for s in labels), default=60) + 18))
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


def square_axes(ticks: list[float], ml: float, mt: float, pw: float, *,
                zero_stroke: str = "#eef0f3"):
    """Scales and scaffolding of a square scatter whose x and y axes share ``ticks``.

    The plot is ``pw`` wide and high, its top-left corner at ``(ml, mt)``. Returns
    ``(sx, sy, grid, frame)``: the two scales (value → SVG coordinate), the tick lines
    with their labels on both axes (the lines at 0 drawn in ``zero_stroke``), and the
    border with the dashed diagonal y = x.
    """
    d0, d1 = ticks[0], ticks[-1]

    def sx(v: float) -> float:
        return ml + pw * (float(v) - d0) / (d1 - d0)

    def sy(v: float) -> float:
        return mt + pw - pw * (float(v) - d0) / (d1 - d0)

    grid = "".join(
        f'<line x1="{sx(t):.1f}" y1="{mt:.1f}" x2="{sx(t):.1f}" y2="{mt + pw:.1f}" '
        f'stroke="{zero_stroke if t == 0 else "#eef0f3"}"/>'
        f'<line x1="{ml:.1f}" y1="{sy(t):.1f}" x2="{ml + pw:.1f}" y2="{sy(t):.1f}" '
        f'stroke="{zero_stroke if t == 0 else "#eef0f3"}"/>'
        f'<text x="{sx(t):.1f}" y="{mt + pw + 15:.1f}" font-size="11" fill="#616e7c" '
        f'text-anchor="middle">{_esc(_fmt_tick(t, ticks))}</text>'
        f'<text x="{ml - 6:.1f}" y="{sy(t) + 4:.1f}" font-size="11" fill="#616e7c" '
        f'text-anchor="end">{_esc(_fmt_tick(t, ticks))}</text>' for t in ticks)
    frame = (f'<rect x="{ml:.1f}" y="{mt:.1f}" width="{pw:.1f}" height="{pw:.1f}" fill="none" '
             f'stroke="#cbd2d9"/>'
             f'<line x1="{sx(d0):.1f}" y1="{sy(d0):.1f}" x2="{sx(d1):.1f}" y2="{sy(d1):.1f}" '
             f'stroke="#52606d" stroke-width="1.2" stroke-dasharray="5 4"/>')
    return sx, sy, grid, frame


def scatter_svg(diff: pd.DataFrame, *, model_label: str, metric_label: str, n_labels: int = 5
                ) -> str:
    """Per-perturbation scatter: x = best baseline for that perturbation, y = the model.

    ``diff`` is one method's slice of ``diagnostics/per_perturbation_differential.parquet``
    (:func:`baselens.diagnose.differential.per_perturbation_table`). Points above
    the diagonal are perturbations where the model beats every baseline; the ``n_labels``
    largest improvements are named.
    """
    d = diff[diff["value"].notna() & diff["best_baseline_value"].notna()]
    size, ml, mb, mt, mr = 440.0, 54.0, 46.0, 14.0, 18.0
    pw = size - ml - mr
    ticks = _domain(list(d["value"]) + list(d["best_baseline_value"]))
    d0, d1 = ticks[0], ticks[-1]
    width, height = size, mt + pw + mb
    sx, sy, grid, frame = square_axes(ticks, ml, mt, pw)

    title = f"{model_label} vs best baseline, per perturbation ({metric_label})"
    out = [
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
        # region where the model beats every baseline
        f'<polygon points="{sx(d0):.1f},{sy(d0):.1f} {sx(d0):.1f},{sy(d1):.1f} '
        f'{sx(d1):.1f},{sy(d1):.1f}" fill="#0072b2" fill-opacity="0.05"/>',
        grid,
        frame,
        f'<text x="{ml + 8:.1f}" y="{mt + 16:.1f}" font-size="11" fill="#0b4f8a">'
        f"model better ↑</text>"
        f'<text x="{ml + pw - 8:.1f}" y="{mt + pw - 8:.1f}" font-size="11" fill="#616e7c" '
        f'text-anchor="end">baseline better ↓</text>'
        f'<text x="{ml + pw / 2:.1f}" y="{mt + pw + 34:.1f}" font-size="11.5" fill="#3e4c59" '
        f'text-anchor="middle">best baseline for the perturbation ({_esc(metric_label)})</text>'
        f'<text transform="translate({14:.1f},{mt + pw / 2:.1f}) rotate(-90)" font-size="11.5" '
        f'fill="#3e4c59" text-anchor="middle">{_esc(_truncate(model_label, 40))} '
        f"({_esc(metric_label)})</text>",
    ]
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
        tip = (f"{r['perturbation']}: {_fmt(r['value'])} vs {_fmt(r['best_baseline_value'])} "
               f"({_method_label(r['best_baseline'], r['best_baseline_layer'])})")
        if idx in top_idx:
            out.append(
                f'<circle cx="{sx(r["best_baseline_value"]):.1f}" cy="{sy(r["value"]):.1f}" r="4.5" '
                f'fill="#0072b2" stroke="#ffffff" stroke-width="1.2"><title>{_esc(tip)}</title></circle>'
            )
        else:
            fill = "#0072b2" if better else "#9aa5b1"
            out.append(
                f'<circle cx="{sx(r["best_baseline_value"]):.0f}" cy="{sy(r["value"]):.0f}" r="3" '
                f'fill="{fill}" fill-opacity=".45"><title>{_esc(tip)}</title></circle>'
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




# --------------------------------------------------------------------------- line charts
#: Colour cycles within a kind: one hue family per kind, so kinds stay recognisable.
KIND_PALETTES = {
    "baseline": ["#9aa5b1", "#7b8794", "#616e7c", "#b3bcc7", "#52606d", "#aab4be", "#3e4c59"],
    "model": ["#0072b2", "#56b4e9", "#1f4e79", "#3d8fd1", "#0b4f8a", "#7fb8e0", "#2a6f97",
              "#005a8c", "#4a90c2", "#15406a"],
    "reference": ["#e69f00", "#c77c00", "#f0b94d"],
    "null": ["#cc79a7", "#a8578a"],
}
#: Distinct hues for curves that are not kinds (networks in the layer-wise figure).
SERIES_PALETTE = ["#0072b2", "#d55e00", "#009e73", "#7b4ea3", "#56b4e9", "#b5850b",
                  "#cc79a7", "#3e4c59"]
_LABEL_INK = {"baseline": "#52606d", "model": "#0b4f8a", "reference": "#9a6700", "null": "#8c3d6b"}


def kind_colours(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A colour per (key, kind), cycling through the kind's palette in order of appearance."""
    seen: dict[str, int] = {}
    out = {}
    for key, kind in keys:
        pal = KIND_PALETTES.get(kind, KIND_PALETTES["model"])
        i = seen.get(kind, 0)
        seen[kind] = i + 1
        out[(key, kind)] = pal[i % len(pal)]
    return out


def label_ink(kind: str) -> str:
    return _LABEL_INK.get(kind, _LABEL_INK["model"])


def _spread(ys: list[float], lo: float, hi: float, gap: float) -> list[float]:
    """Move sorted label positions apart by at least ``gap`` while staying in [lo, hi]."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    pos = [min(max(ys[i], lo), hi) for i in order]
    for i in range(1, len(pos)):
        pos[i] = max(pos[i], pos[i - 1] + gap)
    if pos and pos[-1] > hi:
        pos[-1] = hi
        for i in range(len(pos) - 2, -1, -1):
            pos[i] = min(pos[i], pos[i + 1] - gap)
    out = [0.0] * len(ys)
    for k, i in enumerate(order):
        out[i] = pos[k]
    return out


def line_chart_svg(
    series: Sequence[dict],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    log_x: bool = False,
    hlines: Sequence[dict] = (),
    y_ticks: Sequence[float] | None = None,
    width: float = 640.0,
    plot_height: float = 250.0,
) -> str:
    """Lines with a label at the right end of each (labels nudged apart, never overlapping).

    ``series``: dicts with ``label``, ``points`` (list of ``(x, y)`` or ``(x, y, tooltip)``;
    NaN ``y`` breaks the line), ``colour``, optional ``dash`` (SVG dasharray), ``ink``
    (label colour), ``width`` and ``opacity``. ``hlines``: dicts with ``y``, ``label``,
    ``colour`` (dashed horizontal references such as the best baseline). ``x_ticks`` gives
    categorical positions and names; without it ticks are chosen from the data.
    """
    pts_all = [(float(p[0]), float(p[1])) for s in series for p in s["points"]
               if not _isnan(p[1]) and math.isfinite(float(p[1]))]
    labels = [_truncate(str(s["label"]), 26) for s in series]
    n_lab = len(series) + len(hlines)
    all_labels = labels + [_truncate(str(h["label"]), 26) for h in hlines]
    right = min(190.0, max(60.0, max((_text_width(x, 11) for x in all_labels), default=40) + 18))
    ml, mt, mb = 52.0, 16.0, 44.0
    ph = max(plot_height, 12.5 * n_lab + 10)
    pw = width - ml - right
    ys = [p[1] for p in pts_all] + [float(h["y"]) for h in hlines if not _isnan(h["y"])]
    ticks = list(y_ticks) if y_ticks else _domain(ys)
    y0, y1 = ticks[0], ticks[-1]
    xs = [p[0] for p in pts_all] + [t[0] for t in (x_ticks or [])]
    if log_x:
        xs = [x for x in xs if x > 0]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if log_x:
        lx0, lx1 = math.log10(x0), math.log10(x1)
        if lx1 <= lx0:
            lx1 = lx0 + 1

    def sx(x: float) -> float:
        if log_x:
            return ml + pw * (math.log10(max(x, 1e-12)) - lx0) / (lx1 - lx0)
        pad = 0.0 if x_ticks is None else 0.04 * (x1 - x0)
        return ml + pw * (x - x0 + pad) / (x1 - x0 + 2 * pad)

    def sy(y: float) -> float:
        return mt + ph - ph * (min(max(y, y0), y1) - y0) / (y1 - y0)

    height = mt + ph + mb
    out = [f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(title)}">',
           f"<title>{_esc(title)}</title>"]
    for t in ticks:
        out.append(f'<line x1="{ml:.0f}" y1="{sy(t):.1f}" x2="{ml + pw:.0f}" y2="{sy(t):.1f}" '
                   f'stroke="{"#9aa5b1" if t == 0 else "#eef0f3"}"/>'
                   f'<text x="{ml - 6:.0f}" y="{sy(t) + 4:.1f}" font-size="11" fill="#616e7c" '
                   f'text-anchor="end">{_esc(_fmt_tick(t, ticks))}</text>')
    if x_ticks is None:
        if log_x:
            xt = [10 ** k for k in range(math.floor(lx0), math.ceil(lx1) + 1)
                  if lx0 - 1e-9 <= k <= lx1 + 1e-9]
            xt_lab = [(x, f"{x:g}") for x in xt]
        else:
            nt = _nice_ticks(x0, x1)
            xt_lab = [(x, _fmt_tick(x, nt)) for x in nt if x0 - 1e-9 <= x <= x1 + 1e-9]
    else:
        xt_lab = list(x_ticks)
    for x, lab in xt_lab:
        out.append(f'<line x1="{sx(x):.1f}" y1="{mt:.0f}" x2="{sx(x):.1f}" y2="{mt + ph:.0f}" '
                   f'stroke="#f3f4f6"/>'
                   f'<text x="{sx(x):.1f}" y="{mt + ph + 15:.0f}" font-size="11" fill="#616e7c" '
                   f'text-anchor="middle">{_esc(lab)}</text>')
    out.append(f'<rect x="{ml:.0f}" y="{mt:.0f}" width="{pw:.0f}" height="{ph:.0f}" fill="none" '
               f'stroke="#cbd2d9"/>'
               f'<text x="{ml + pw / 2:.0f}" y="{mt + ph + 34:.0f}" font-size="11.5" '
               f'fill="#3e4c59" text-anchor="middle">{_esc(x_label)}</text>'
               f'<text transform="translate(13,{mt + ph / 2:.0f}) rotate(-90)" font-size="11.5" '
               f'fill="#3e4c59" text-anchor="middle">{_esc(_truncate(y_label, 44))}</text>')
    ends: list[tuple[float, float, str, str, str]] = []  # (x, y, label, ink, tooltip)
    for h in hlines:
        if _isnan(h["y"]):
            continue
        yy = sy(float(h["y"]))
        out.append(f'<line x1="{ml:.0f}" y1="{yy:.1f}" x2="{ml + pw:.0f}" y2="{yy:.1f}" '
                   f'stroke="{h.get("colour", "#52606d")}" stroke-width="1.3" '
                   f'stroke-dasharray="5 4"><title>{_esc(h["label"])}: {_fmt(h["y"])}</title>'
                   f"</line>")
        ends.append((ml + pw, yy, _truncate(str(h["label"]), 26), h.get("ink", "#52606d"),
                     f'{h["label"]}: {_fmt(h["y"])}'))
    for s, lab in zip(series, labels):
        colour = s.get("colour", KIND_COLOURS["model"])
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        opacity = s.get("opacity", 1.0)
        segs: list[list[tuple[float, float]]] = [[]]
        dots = []
        last = None
        for p in s["points"]:
            x, y = float(p[0]), p[1]
            if _isnan(y) or (log_x and x <= 0):
                if segs[-1]:
                    segs.append([])
                continue
            px, py = sx(x), sy(float(y))
            segs[-1].append((px, py))
            tip = p[2] if len(p) > 2 else f"{s['label']}: {_fmt(y)}"
            dots.append((px, py, tip))
            last = (px, py)
        for seg in segs:
            if len(seg) > 1:
                d = " ".join(f"{px:.1f},{py:.1f}" for px, py in seg)
                out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" '
                           f'stroke-width="{s.get("width", 1.8)}" stroke-opacity="{opacity}" '
                           f'stroke-linejoin="round"{dash}/>')
        if s.get("markers", True):
            for px, py, tip in dots:
                out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.8" fill="{colour}" '
                           f'fill-opacity="{opacity}"><title>{_esc(tip)}</title></circle>')
        if last is not None:
            ends.append((last[0], last[1], lab, s.get("ink", colour), str(s["label"])))
    if ends:
        placed = _spread([e[1] + 4 for e in ends], mt + 8, mt + ph + 4, 12.0)
        lx = ml + pw + 8
        for (px, py, lab, ink, tip), ly in zip(ends, placed):
            if abs(ly - 4 - py) > 2 or px < ml + pw - 1:
                out.append(f'<polyline points="{px:.1f},{py:.1f} {ml + pw + 2:.1f},{py:.1f} '
                           f'{lx - 2:.1f},{ly - 4:.1f}" fill="none" stroke="#cbd2d9" '
                           f'stroke-width=".8"/>')
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="11" fill="{ink}">'
                       f"<title>{_esc(tip)}</title>{_esc(lab)}</text>")
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- heatmap
def _diverging(v: float) -> str:
    """White at 0, blue towards +1, red towards −1."""
    if _isnan(v):
        return "#f5f7fa"
    v = max(-1.0, min(1.0, float(v)))
    end = (11, 79, 138) if v >= 0 else (180, 35, 24)
    a = abs(v) ** 0.85
    rgb = [round(255 + (c - 255) * a) for c in end]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def heatmap_svg(labels: Sequence[str], matrix, *, title: str, inks: Sequence[str] | None = None,
                col_labels: Sequence[str] | None = None, vmin: float = -1.0,
                digits: int = 2, mark: Sequence[Sequence[bool]] | None = None) -> str:
    """A labelled matrix of values in [-1, 1] (or [0, 1]) drawn as coloured cells.

    Rows are ``labels``; columns ``col_labels`` (default: the same). Cells show their value
    when there is room; ``mark`` outlines chosen cells (e.g. classes a method captures).
    """
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    nr, nc = m.shape
    rlab = [_truncate(str(x), 26) for x in labels]
    clab = [_truncate(str(x), 26) for x in (col_labels if col_labels is not None else labels)]
    cell = 30.0 if max(nr, nc) <= 12 else (24.0 if max(nr, nc) <= 24 else 16.0)
    left = max(60.0, max((_text_width(x, 11) for x in rlab), default=40) + 12)
    top = max(40.0, max((_text_width(x, 11) for x in clab), default=40) * 0.72 + 16)
    width = left + cell * nc + 14 + max(0.0, _text_width(clab[-1], 11) * 0.72 - cell / 2)
    height = top + cell * nr + 44
    show = cell >= 24
    out = [f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(title)}" '
           f'style="max-width:{width:.0f}px">', f"<title>{_esc(title)}</title>"]
    full_c = [str(x) for x in (col_labels if col_labels is not None else labels)]
    for j, lab in enumerate(clab):
        x = left + cell * j + cell / 2
        out.append(f'<text transform="translate({x + 3:.1f},{top - 6:.1f}) rotate(-45)" '
                   f'font-size="11" fill="{(inks or ["#1f2933"] * nc)[j] if col_labels is None else "#1f2933"}">'
                   f"<title>{_esc(full_c[j])}</title>{_esc(lab)}</text>")
    for i, lab in enumerate(rlab):
        y = top + cell * i + cell / 2
        ink = inks[i] if inks else "#1f2933"
        out.append(f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
                   f'fill="{ink}"><title>{_esc(labels[i])}</title>{_esc(lab)}</text>')
        for j in range(nc):
            v = m[i, j]
            vv = (v - vmin) / (1 - vmin) if vmin >= 0 and not _isnan(v) else v
            fill = _diverging(vv)
            x = left + cell * j
            tip = f"{labels[i]} × {(col_labels if col_labels is not None else labels)[j]}: {_fmt(v, digits=digits)}"
            out.append(f'<rect x="{x:.1f}" y="{top + cell * i:.1f}" width="{cell:.1f}" '
                       f'height="{cell:.1f}" fill="{fill}" stroke="#ffffff" stroke-width="1">'
                       f"<title>{_esc(tip)}</title></rect>")
            if mark is not None and mark[i][j]:
                out.append(f'<rect x="{x + 1.5:.1f}" y="{top + cell * i + 1.5:.1f}" '
                           f'width="{cell - 3:.1f}" height="{cell - 3:.1f}" fill="none" '
                           f'stroke="#e69f00" stroke-width="2.2"/>')
            if show and not _isnan(v):
                dark = abs(vv) > 0.55
                txt = f"{v:.{digits}f}".replace("-", "−")
                if txt.startswith("0."):
                    txt = txt[1:]
                elif txt.startswith("−0."):
                    txt = "−" + txt[2:]
                out.append(f'<text x="{x + cell / 2:.1f}" y="{top + cell * i + cell / 2 + 3.5:.1f}" '
                           f'font-size="{9.5 if cell < 30 else 10.5}" text-anchor="middle" '
                           f'fill="{"#ffffff" if dark else "#1f2933"}" pointer-events="none">'
                           f"{txt}</text>")
    # colour bar
    by = top + cell * nr + 16
    bw = min(180.0, cell * nc)
    steps = 20
    lo = vmin
    for k in range(steps):
        v = lo + (1 - lo) * (k + 0.5) / steps
        vv = (v - vmin) / (1 - vmin) if vmin >= 0 else v
        out.append(f'<rect x="{left + bw * k / steps:.1f}" y="{by:.1f}" width="{bw / steps + .4:.1f}" '
                   f'height="8" fill="{_diverging(vv)}"/>')
    for v, anchor in ((lo, "start"), (1.0, "end")):
        out.append(f'<text x="{left + (bw if v == 1.0 else 0):.1f}" y="{by + 21:.1f}" '
                   f'font-size="10.5" fill="#616e7c" text-anchor="{anchor}">'
                   f'{_esc(_fmt(v, digits=0 if float(v).is_integer() else 1))}</text>')
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- dumbbells
def dumbbell_svg(rows: Sequence[tuple[str, float, float]], *, title: str, x_label: str,
                 before_label: str = "before", after_label: str = "after") -> str:
    """One row per item: an open dot (before) joined to a filled dot (after).

    Rows whose value drops are drawn red, those that hold or rise blue.
    """
    labs = [_truncate(str(r[0]), 22) for r in rows]
    left = max(80.0, max((_text_width(x, 11.5) for x in labs), default=40) + 14)
    width, right, top, row_h = 420.0, 46.0, 26.0, 20.0
    height = top + row_h * max(len(rows), 1) + 40
    ticks = _domain([v for r in rows for v in r[1:]])
    d0, d1 = ticks[0], ticks[-1]
    pw = width - left - right

    def sx(v: float) -> float:
        return left + pw * (float(v) - d0) / (d1 - d0)

    axis_y = top + row_h * max(len(rows), 1)
    out = [f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(title)}">',
           f"<title>{_esc(title)}</title>",
           f'<circle cx="{left:.0f}" cy="10" r="4" fill="#ffffff" stroke="#52606d" '
           f'stroke-width="1.4"/><text x="{left + 8:.0f}" y="14" font-size="11" fill="#3e4c59">'
           f'{_esc(before_label)}</text>'
           f'<circle cx="{left + 24 + _text_width(before_label, 11):.0f}" cy="10" r="4" '
           f'fill="#52606d"/><text x="{left + 32 + _text_width(before_label, 11):.0f}" y="14" '
           f'font-size="11" fill="#3e4c59">{_esc(after_label)}</text>']
    for t in ticks:
        out.append(f'<line x1="{sx(t):.1f}" y1="{top - 4:.0f}" x2="{sx(t):.1f}" y2="{axis_y:.0f}" '
                   f'stroke="{"#9aa5b1" if t == 0 else "#eef0f3"}"/>'
                   f'<text x="{sx(t):.1f}" y="{axis_y + 14:.0f}" font-size="10.5" fill="#616e7c" '
                   f'text-anchor="middle">{_esc(_fmt_tick(t, ticks))}</text>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{axis_y + 30:.0f}" font-size="11.5" '
               f'fill="#3e4c59" text-anchor="middle">{_esc(x_label)}</text>')
    for i, ((name, b, a), lab) in enumerate(zip(rows, labs)):
        yc = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 8:.0f}" y="{yc + 4:.1f}" font-size="11.5" text-anchor="end" '
                   f'fill="#1f2933">{_esc(lab)}</text>')
        if _isnan(b) or _isnan(a):
            continue
        col = "#b42318" if a < b - 0.02 else "#0072b2"
        tip = f"{name}: {_fmt(b)} → {_fmt(a)}"
        out.append(f'<line x1="{sx(b):.1f}" y1="{yc:.1f}" x2="{sx(a):.1f}" y2="{yc:.1f}" '
                   f'stroke="{col}" stroke-width="2.2" stroke-opacity=".55"/>'
                   f'<circle cx="{sx(b):.1f}" cy="{yc:.1f}" r="4" fill="#ffffff" stroke="#52606d" '
                   f'stroke-width="1.4"><title>{_esc(tip)}</title></circle>'
                   f'<circle cx="{sx(a):.1f}" cy="{yc:.1f}" r="4.2" fill="{col}">'
                   f"<title>{_esc(tip)}</title></circle>"
                   f'<text x="{max(sx(a), sx(b)) + 8:.1f}" y="{yc + 4:.1f}" font-size="10.5" '
                   f'fill="#616e7c">{_esc(_fmt(a, digits=2))}</text>')
    out.append("</svg>")
    return "".join(out)
