"""The report's tissue section: gene-wise panels for spatial-transcriptomics runs.

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026)
scores H&E patch representations by how well they predict each spot's gene
expression (HEST-1k; PCA-256 + ridge, per-gene Pearson r, :mod:`baselens.evaluate.
gene_expression`). Its tissue findings need three pictures beyond the leaderboard, drawn
per task (HEST subset) at the headline batch level:

``#tissue-genes-<task>``
    Gene-wise scatter of the best image model against the best structure-only model
    (arXiv 2603.13377 Fig. 4a): x = image, y = structure, one dot per gene (mean r over folds);
    dots are coloured by the gene's planted driver on synthetic tissue (density,
    clustering, regularity, appearance, mixed).
``#tissue-count-matched-<task>``
    The count-matched comparison (arXiv 2603.13377 §5.3): every representation's Pearson r next
    to its r *within strata of equal cell count* (``pearson_count_matched``), and per gene
    the best structure model against the cell-count baseline. A representation whose
    score only reflects cell count falls to ≈ 0 when count is held fixed.
``#tissue-drivers-<task>``
    Mean r per driver (``pearson_<driver>`` scores) for the best structure model, the
    cell-count baseline, the best image model, pixel statistics, the ground truth and the
    random null (synthetic tissue only).

Inputs: the aggregated scores (``ctx``), ``per_perturbation.parquet`` (one row per gene,
``perturbation`` = gene) and small tables the tissue pipeline writes under
``diagnostics/``: ``tissue_inputs.parquet`` (per task and representation its input
and whether it is the best of that input, decided by :mod:`baselens.diagnose.tissue`),
``best_layers.parquet`` (each method's best layer, the count-matched panel's rows,
decided by :mod:`baselens.diagnose.layers`) and ``tissue_genes.parquet`` (``task, gene,
driver``: the colours). Which representation stands for an input, which layer stands for
a method, and what that says (the summary's tissue sentences, findings of kind
``tissue``), is the diagnostics'; a run folder without ``tissue_inputs.parquet`` gets a
note instead of the panels, one without ``best_layers.parquet`` a note instead of the
count-matched dumbbells.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from baselens.report.common import (
    _domain,
    _esc,
    _fmt,
    _fmt_tick,
    _isnan,
    _method_label,
    _slug,
    _text_width,
    _truncate,
    legend_html,
)
from baselens.report.figures import dumbbell_svg, square_axes

__all__ = ["DRIVER_COLOURS", "INPUT_COLOURS", "TABLES", "is_tissue_run",
           "tissue_section_html"]

#: Extra tables the tissue pipeline writes under ``diagnostics/`` (``write_report`` reads
#: them with the diagnostics).
TABLES = ("tissue_genes", "tissue_methods", "tissue_inputs")

#: Planted drivers of synthetic genes, in display order, with their colours (Okabe–Ito).
DRIVER_COLOURS = {
    "density": "#0072b2",
    "clustering": "#009e73",
    "regularity": "#cc79a7",
    "appearance": "#d55e00",
    "mixed": "#e69f00",
}
_UNKNOWN = "#7b8794"
DRIVER_NOTES = {
    "density": "expression follows how many cells the spot holds",
    "clustering": "follows how clustered the cells are (count held fixed)",
    "regularity": "follows how regular the cell arrangement is",
    "appearance": "follows stain/texture only — invisible to coordinates",
    "mixed": "a mixture of structure and appearance",
}
INPUT_COLOURS = {
    "structure": "#009e73",
    "count": "#52606d",
    "image": "#0072b2",
    "pixel": "#b3bcc7",
    "reference": "#e69f00",
    "null": "#cc79a7",
}


def _pearson_tasks(ctx) -> list[str]:
    a = ctx.agg
    return [t for t in pd.unique(a["task"]) if (a[(a["task"] == t)]["metric"] == "pearson").any()]


def is_tissue_run(ctx, diag: Mapping | None) -> bool:
    """A tissue run: the pipeline's tables are there, or a task other than the Cell
    Painting ``regression_probe`` is scored by Pearson r."""
    diag = diag or {}
    for name in ("tissue_inputs", "tissue_methods"):
        t = diag.get(name)
        if t is not None and len(t):
            return True
    return any(t != "regression_probe" for t in _pearson_tasks(ctx))


def _input_rows(diag: Mapping, task: str) -> pd.DataFrame | None:
    """The task's rows of ``diagnostics/tissue_inputs.parquet`` (``None`` when the run
    folder lacks the table or the task)."""
    t = diag.get("tissue_inputs")
    need = {"task", "method", "layer", "input", "best_of_input", "value"}
    if t is None or not len(t) or not need <= set(t.columns):
        return None
    t = t[t["task"].astype(str) == task]
    if t.empty:
        return None
    t = t.assign(method=t["method"].astype(str), layer=t["layer"].astype(str),
                 input=t["input"].astype(str),
                 value=pd.to_numeric(t["value"], errors="coerce"))
    return t


def _inputs(tm: pd.DataFrame) -> dict[str, str]:
    """method → input (as the diagnostics recorded it)."""
    return dict(zip(tm["method"], tm["input"]))


def _drivers(diag: Mapping, task: str) -> dict[str, str]:
    t = diag.get("tissue_genes")
    if t is None or not len(t) or not {"gene", "driver"} <= set(t.columns):
        return {}
    if "task" in t.columns and (t["task"].astype(str) == task).any():
        t = t[t["task"].astype(str) == task]
    return {g: d for g, d in zip(t["gene"].astype(str), t["driver"].fillna("").astype(str)) if d}


def _gene_pairs(gv: pd.DataFrame, x_key: tuple, y_key: tuple, drivers: dict) -> pd.DataFrame:
    """Per gene, representation ``x_key``'s value as ``x`` and ``y_key``'s as ``y`` (genes
    scored by both), coloured by the gene's planted driver."""
    def one(k):
        return gv[(gv["method"] == k[0]) & (gv["layer"] == k[1])].set_index("gene")["value"]

    pts = pd.DataFrame({"x": one(x_key), "y": one(y_key)}).dropna().reset_index(names="gene")
    pts["colour"] = [DRIVER_COLOURS.get(drivers.get(g, ""), _UNKNOWN) for g in pts["gene"]]
    return pts


def _gene_values(per_pert: pd.DataFrame | None, task: str, level: str,
                 metric: str = "pearson") -> pd.DataFrame:
    """Mean over folds per (method, layer, gene): columns method, layer, gene, value."""
    cols = ["method", "layer", "gene", "value"]
    if per_pert is None or per_pert.empty:
        return pd.DataFrame(columns=cols)
    pp = per_pert[(per_pert["task"].astype(str) == task)
                  & (per_pert["metric"].astype(str) == metric)]
    if "batch_level" in pp.columns:
        pp = pp[pp["batch_level"].astype(str) == level]
    if pp.empty:
        return pd.DataFrame(columns=cols)
    pp = pp.assign(layer=pp["layer"].astype(str) if "layer" in pp.columns else "default",
                   gene=pp["perturbation"].astype(str),
                   value=pd.to_numeric(pp["value"], errors="coerce"))
    out = pp.groupby(["method", "layer", "gene"], sort=False)["value"].mean().reset_index()
    return out[cols]


def _best_of(tm: pd.DataFrame, kind_of_input: str) -> tuple[tuple[str, str] | None, float]:
    """The (method, layer) the diagnostics named best of ``kind_of_input`` on the task
    (``best_of_input`` of ``tissue_inputs.parquet``) and its mean Pearson r."""
    b = tm[tm["best_of_input"].astype(bool) & (tm["input"] == kind_of_input)]
    if b.empty:
        return None, float("nan")
    return (b["method"].iloc[0], b["layer"].iloc[0]), float(b["value"].iloc[0])


def _score(ctx, task: str, key: tuple[str, str] | None, metric: str) -> float:
    """The mean ``metric`` of ``key`` at the task's shown level (a look-up)."""
    return float("nan") if key is None else ctx.mean(task, ctx.levels.get(task), metric, key)


# --------------------------------------------------------------------------- figures
def gene_scatter_svg(points: pd.DataFrame, *, x_label: str, y_label: str, title: str,
                     n_labels: int = 4) -> str:
    """One dot per gene (columns ``gene, x, y, colour``), equal axes, dashed diagonal.

    The ``n_labels`` genes furthest from the diagonal on each side are named.
    """
    d = points[points["x"].notna() & points["y"].notna()]
    size, ml, mb, mt, mr = 420.0, 54.0, 46.0, 14.0, 18.0
    pw = size - ml - mr
    ticks = _domain(list(d["x"]) + list(d["y"]))
    sx, sy, grid, frame = square_axes(ticks, ml, mt, pw, zero_stroke="#cbd2d9")
    out = [f'<svg viewBox="0 0 {size:.0f} {mt + pw + mb:.0f}" role="img" '
           f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>', grid, frame,
           f'<text x="{ml + pw / 2:.1f}" y="{mt + pw + 34:.1f}" font-size="11.5" fill="#3e4c59" '
           f'text-anchor="middle">{_esc(_truncate(x_label, 60))}</text>'
           f'<text transform="translate(14,{mt + pw / 2:.1f}) rotate(-90)" font-size="11.5" '
           f'fill="#3e4c59" text-anchor="middle">{_esc(_truncate(y_label, 50))}</text>']
    if d.empty:
        out.append(f'<text x="{ml + pw / 2:.1f}" y="{mt + pw / 2:.1f}" font-size="12" '
                   f'fill="#9aa5b1" text-anchor="middle">no gene with both values</text></svg>')
        return "".join(out)
    for r in d.itertuples(index=False):
        tip = f"{r.gene}: {_fmt(r.x)} (x), {_fmt(r.y)} (y)"
        out.append(f'<circle cx="{sx(r.x):.1f}" cy="{sy(r.y):.1f}" r="4" fill="{r.colour}" '
                   f'fill-opacity=".8" stroke="#ffffff" stroke-width=".8">'
                   f"<title>{_esc(tip)}</title></circle>")
    gap = d["y"] - d["x"]
    named = pd.concat([d.loc[gap.nlargest(n_labels).index[gap.nlargest(n_labels) > 0.05]],
                       d.loc[gap.nsmallest(n_labels).index[gap.nsmallest(n_labels) < -0.05]]])
    placed: list[float] = []
    for r in named.sort_values("y", ascending=False).itertuples(index=False):
        px, py = sx(r.x), sy(r.y)
        ly = py + 4
        for p in placed:
            if abs(ly - p) < 12:
                ly = p + 12
        ly = min(ly, mt + pw - 3)
        placed.append(ly)
        name = _truncate(str(r.gene), 18)
        right = px + 8 + _text_width(name, 10.5) < ml + pw
        out.append(f'<text x="{px + 7 if right else px - 7:.1f}" y="{ly:.1f}" font-size="10.5" '
                   f'fill="#1f2933" text-anchor="{"start" if right else "end"}" '
                   f'paint-order="stroke" stroke="#ffffff" stroke-width="3">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def grouped_bars_svg(groups: list[str], series: list[tuple[str, str]],
                     values: Mapping[tuple[str, str], float], *, title: str,
                     x_label: str = "Pearson r") -> str:
    """Horizontal bars grouped by ``groups`` (rows), one bar per ``series`` entry
    ``(label, colour)``; ``values[(group, label)]`` (NaN → "no value")."""
    n_s = max(len(series), 1)
    bar_h, gap = 11.0, 12.0
    left = max(96.0, max((_text_width(g, 12) for g in groups), default=60) + 16)
    width, right, top = 560.0, 54.0, 16.0
    group_h = bar_h * n_s + gap
    axis_y = top + group_h * max(len(groups), 1)
    ticks = _domain([v for v in values.values() if not _isnan(v)])
    d0, d1 = ticks[0], ticks[-1]
    x0, x1 = left, width - right

    def sx(v: float) -> float:
        return x0 + (x1 - x0) * (float(v) - d0) / (d1 - d0)

    out = [f'<svg viewBox="0 0 {width:.0f} {axis_y + 40:.0f}" role="img" '
           f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>']
    for t in ticks:
        out.append(f'<line x1="{sx(t):.1f}" y1="{top - 4:.1f}" x2="{sx(t):.1f}" y2="{axis_y:.1f}" '
                   f'stroke="{"#9aa5b1" if t == 0 else "#e4e7eb"}"/>'
                   f'<text x="{sx(t):.1f}" y="{axis_y + 15:.1f}" font-size="11" fill="#616e7c" '
                   f'text-anchor="middle">{_esc(_fmt_tick(t, ticks))}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{axis_y + 31:.1f}" font-size="11.5" '
               f'fill="#3e4c59" text-anchor="middle">{_esc(x_label)}</text>')
    zero = sx(min(max(0.0, d0), d1))
    for i, g in enumerate(groups):
        gy = top + group_h * i
        out.append(f'<text x="{left - 8:.1f}" y="{gy + bar_h * n_s / 2 + 4:.1f}" font-size="12" '
                   f'text-anchor="end" fill="{DRIVER_COLOURS.get(g, "#1f2933")}" '
                   f'font-weight="600">{_esc(g)}</text>')
        for j, (label, colour) in enumerate(series):
            v = values.get((g, label), float("nan"))
            yc = gy + bar_h * j
            if _isnan(v):
                continue
            xa, xb = sorted([zero, sx(v)])
            out.append(f'<rect x="{xa:.1f}" y="{yc + 1:.1f}" width="{max(xb - xa, 1.0):.1f}" '
                       f'height="{bar_h - 2:.1f}" fill="{colour}"><title>{_esc(label)} · '
                       f'{_esc(g)}: {_fmt(v)}</title></rect>'
                       f'<text x="{max(xb, zero) + 4:.1f}" y="{yc + bar_h - 2:.1f}" '
                       f'font-size="9.5" fill="#52606d">{_esc(_fmt(v, digits=2))}</text>')
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- panels
def _genes_panel(ctx, task, gv, tm, drivers) -> str:
    img, img_v = _best_of(tm, "image")
    st, st_v = _best_of(tm, "structure")
    fid = _slug("tissue-genes", task)
    if img is None or st is None:
        missing = " and ".join(w for w, k in (("image", img), ("structure-only", st)) if k is None)
        return (f'<figure id="{_esc(fid)}"><p class="absent">No {missing} representation was '
                "scored on this task, so there is no gene-wise comparison.</p></figure>")
    pts = _gene_pairs(gv, img, st, drivers)
    il, sl = _method_label(*img), _method_label(*st)
    svg = gene_scatter_svg(pts, x_label=f"best image model: {il} (Pearson r)",
                           y_label=f"best structure model: {sl} (r)",
                           title=f"{task}: per gene, {sl} vs {il}")
    k = int((pts["y"] > pts["x"]).sum())
    leg = legend_html([(d, c) for d, c in DRIVER_COLOURS.items() if d in set(drivers.values())]) \
        if drivers else ""
    by = ""
    if drivers and len(pts):
        pts["driver"] = [drivers.get(g, "") for g in pts["gene"]]
        parts = []
        for d in DRIVER_COLOURS:
            sub = pts[pts["driver"] == d]
            if len(sub):
                parts.append(f"{_esc(d)}: structure {_fmt(sub['y'].mean(), digits=2)} vs image "
                             f"{_fmt(sub['x'].mean(), digits=2)}")
        by = " Mean r by driver — " + "; ".join(parts) + "."
    return (f'<figure id="{_esc(fid)}">{svg}<figcaption><strong>Gene by gene (arXiv 2603.13377 '
            f"Fig. 4a)</strong>: each dot is one of {len(pts)} genes, x the best image model "
            f"(<strong>{_esc(il)}</strong>, mean r {_fmt(img_v)}), y the best structure-only "
            f"model (<strong>{_esc(sl)}</strong>, {_fmt(st_v)}). {k} genes lie above the "
            f"diagonal: predicted better from cell positions alone than from the pixels."
            f"{by}</figcaption>{leg}</figure>")


def _count_panel(ctx, task, gv, tm, drivers) -> str:
    mods = _inputs(tm)
    a = ctx.agg
    lvl = ctx.levels[task]
    fid = _slug("tissue-count-matched", task)
    sub = a[(a["task"] == task) & (a["batch_level"] == lvl)]
    if not (sub["metric"] == "pearson_count_matched").any():
        return (f'<figure id="{_esc(fid)}"><p class="absent">No count-matched scores '
                "(<code>pearson_count_matched</code>): the run had no cell counts per spot."
                "</p></figure>")
    keys = _best_layers(ctx, task)
    if keys is None:
        return (f'<figure id="{_esc(fid)}"><p class="absent">No count-matched comparison: '
                "<code>diagnostics/best_layers.parquet</code> (each method's best layer, "
                "decided by the diagnostics) is not in this run folder.</p></figure>")
    rows = []
    for key in keys:
        if mods.get(key[0], "image") == "null":
            continue
        before = _score(ctx, task, key, "pearson")
        after = _score(ctx, task, key, "pearson_count_matched")
        if _isnan(before) and _isnan(after):
            continue
        rows.append((_method_label(*key), before, after))
    rows.sort(key=lambda r: -(r[2] if not _isnan(r[2]) else -9))
    svg = dumbbell_svg(rows, title=f"{task}: Pearson r before and after matching on cell count",
                       x_label="mean Pearson r over genes", before_label="all spots",
                       after_label="within equal cell count")
    parts = [f'<figure id="{_esc(fid)}">{svg}<figcaption><strong>Count-matched comparison '
             "(arXiv 2603.13377 §5.3)</strong>: open dots are each representation's mean "
             "Pearson r; "
             "filled dots the same predictions scored only <em>within</em> groups of spots "
             "that hold the same number of cells (each method's best layer). Whatever a "
             "representation predicts through cell count alone vanishes there; what remains "
             "is arrangement or appearance."
             "</figcaption></figure>"]
    cnt, cnt_v = _best_of(tm, "count")
    st, _ = _best_of(tm, "structure")
    if cnt is not None and st is not None:
        pts = _gene_pairs(gv, cnt, st, drivers)
        cl, sl = _method_label(*cnt), _method_label(*st)
        svg2 = gene_scatter_svg(pts, x_label=f"cell count: {cl} (Pearson r)",
                                y_label=f"structure: {sl} (r)",
                                title=f"{task}: per gene, {sl} vs the cell-count baseline")
        gain = (pts["y"] - pts["x"]).mean() if len(pts) else float("nan")
        parts.append(
            f'<figure id="{_esc(_slug("tissue-count-genes", task))}">{svg2}<figcaption>'
            f"<strong>Gain over cell count, per gene</strong>: x the cell-count baseline "
            f"(<strong>{_esc(cl)}</strong>), y the best structure-only model "
            f"(<strong>{_esc(sl)}</strong>); mean gain {_fmt(gain, signed=True)}. Genes on the "
            "diagonal are explained by count alone.</figcaption></figure>")
    return "".join(parts)


def _best_layers(ctx, task: str) -> list[tuple[str, str]] | None:
    """Per method, its best layer on Pearson r at the task's shown level as
    ``diagnostics/best_layers.parquet`` names it, in display order (``None`` when the run
    folder lacks the table)."""
    if ctx.best_layer is None:
        return None
    level = ctx.levels.get(task)
    best = {m: (m, la) for (t, lv, met, m), (la, _) in ctx.best_layer.items()
            if t == task and lv == level and met == "pearson"}
    return [k for k in ctx.order if best.get(k[0]) == k]


def _driver_series(tm) -> list[tuple[str, tuple[str, str], str]]:
    """(label, key, colour) of the representatives shown per driver."""
    out = []
    for mod in ("structure", "count", "image", "pixel", "reference", "null"):
        key, _ = _best_of(tm, mod)
        if key is not None:
            out.append((f"{_method_label(*key)} ({mod})", key, INPUT_COLOURS[mod]))
    return out


def _drivers_panel(ctx, task, tm, drivers) -> str:
    mods = _inputs(tm)
    fid = _slug("tissue-drivers", task)
    a = ctx.agg
    present = [d for d in DRIVER_COLOURS
               if ((a["task"] == task) & (a["metric"] == f"pearson_{d}")).any()]
    if not present:
        return (f'<figure id="{_esc(fid)}"><p class="absent">No per-driver scores '
                "(<code>pearson_&lt;driver&gt;</code>): the genes of this task have no planted "
                "driver (real data).</p></figure>")
    series = _driver_series(tm)
    values = {(d, lab): _score(ctx, task, key, f"pearson_{d}")
              for d in present for lab, key, _ in series}
    svg = grouped_bars_svg(present, [(lab, c) for lab, _, c in series], values,
                           title=f"{task}: mean Pearson r per gene driver")
    # the same numbers for every representation, as a table
    keys = [k for k in ctx.order if mods.get(k[0]) is not None]
    head = "".join(f"<th>{_esc(d)}</th>" for d in present)
    body = []
    for k in keys:
        vals = [_score(ctx, task, k, f"pearson_{d}") for d in present]
        if all(_isnan(v) for v in vals):
            continue
        cells = "".join(f'<td class="num">{_fmt(v)}</td>' for v in vals)
        body.append(f"<tr><td>{_esc(_method_label(*k))}</td><td>{_esc(mods.get(k[0]))}</td>"
                    f"<td class=\"num\">{_fmt(_score(ctx, task, k, 'pearson'))}</td>{cells}</tr>")
    n_genes = {d: sum(1 for v in drivers.values() if v == d) for d in present}
    notes = "; ".join(f"<strong>{_esc(d)}</strong> ({n_genes.get(d, 0)} genes): "
                      f"{_esc(DRIVER_NOTES.get(d, ''))}" for d in present)
    table = (f'<div class="table-wrap"><table class="plain dense" id="{_esc(_slug("tissue-driver-table", task))}">'
             f"<thead><tr><th>representation</th><th>input</th><th>all genes</th>{head}"
             f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    return (f'<div class="figgrid"><figure id="{_esc(fid)}">{svg}<figcaption><strong>Per '
            f"driver</strong>: mean Pearson r over the genes of each planted driver. {notes}."
            f"</figcaption>{legend_html([(lab, c) for lab, _, c in series])}</figure>"
            f"<div>{table}</div></div>")


def tissue_section_html(ctx, per_perturbation: pd.DataFrame | None,
                        diagnostics: Mapping | None) -> str:
    """The whole ``<section id="tissue">`` (empty string when this is not a tissue run)."""
    diag = dict(diagnostics or {})
    if ctx.agg.empty or not is_tissue_run(ctx, diag):
        return ""
    tasks = [t for t in _pearson_tasks(ctx) if t != "regression_probe"] or _pearson_tasks(ctx)
    parts = ['<p class="lead">Spatial transcriptomics (“Deep Learning for BioImaging: What Are '
             "We Learning?”, arXiv 2603.13377, ICML 2026, §4.2, §5.3): how well each "
             "representation of a spot predicts its genes (Pearson r per gene on held-out "
             "patients, PCA-256 + ridge). Structure-only models see nothing but the "
             "positions of the cells; the cell-count baseline only how many there are.</p>"]
    for task in tasks:
        drivers = _drivers(diag, task)
        tm = _input_rows(diag, task)
        head = (f'<div class="task" id="{_esc(_slug("tissue-task", task))}">'
                f"<h3>{_esc(task)}</h3>")
        if tm is None:
            parts.append(head + '<p class="absent">No tissue panels: <code>diagnostics/'
                         "tissue_inputs.parquet</code> (which representation is best of "
                         "each input, decided by the diagnostics) is not in this run folder"
                         " for this task; rerun the run to write it.</p></div>")
            continue
        gv = _gene_values(per_perturbation, task, ctx.levels[task])  # both scatters' genes
        parts.append(head + '<div class="figgrid">'
                     + _genes_panel(ctx, task, gv, tm, drivers)
                     + _count_panel(ctx, task, gv, tm, drivers)
                     + "</div>" + _drivers_panel(ctx, task, tm, drivers) + "</div>")
    return ('<section class="block" id="tissue"><h2>Tissue: genes, cell count and structure'
            f"</h2>{''.join(parts)}</section>")
