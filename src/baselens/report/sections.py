"""The report's diagnostic sections.

Each ``*_html`` function returns the inner HTML of one section (the page wraps it in a
``<section>`` with a stable id). Sentences and flags come from the findings table
(``diagnostics/findings.parquet``, :meth:`Ctx.rows`); nothing here decides a finding.
Every function copes with its table being absent or empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from baselens.report.common import (
    KIND_COLOURS,
    LEVEL_NAMES,
    _KIND_ORDER,
    _esc,
    _fmt,
    _isnan,
    _method_html,
    _method_label,
    _metric_label,
    _slug,
    _tag,
    _task_label,
    headline_level,
    is_untrained,
    legend_html,
    order_levels,
    trailing_int,
    trained_name,
)
from baselens.report.inputs import FINDINGS_COLUMNS, best_baseline_map, best_layer_map
from baselens.report.figures import (
    SERIES_PALETTE,
    dumbbell_svg,
    heatmap_svg,
    kind_colours,
    label_ink,
    line_chart_svg,
)



@dataclass
class Ctx:
    """What every section needs: aggregated scores and the run's conventions."""

    agg: pd.DataFrame
    beyond: pd.DataFrame
    lower: set[str]
    headline: dict[str, str]  # task → headline metric
    #: (method, layer) → method kind, in display order (references, models, baselines,
    #: nulls; in order of first appearance within a kind)
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    findings: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: task → the distinct levels shown, strictest first (identical levels folded together)
    shown: dict[str, list[str]] = field(default_factory=dict)
    #: (task, level, metric) → (method, layer, mean) of the best baseline the diagnostics
    #: named (:func:`baselens.report.inputs.best_baseline_map`)
    best: dict[tuple[str, str, str], tuple[str, str, float]] = field(default_factory=dict)
    #: (task, level, metric, method) → (layer, mean) of the method's best layer as
    #: ``diagnostics/best_layers.parquet`` names it; ``None`` when the folder lacks it
    best_layer: dict[tuple[str, str, str, str], tuple[str, float]] | None = None

    @classmethod
    def build(cls, agg: pd.DataFrame, beyond: pd.DataFrame, lower: set[str],
              headline: dict[str, str], findings: pd.DataFrame | None = None,
              best_baseline: pd.DataFrame | None = None,
              best_layer_table: pd.DataFrame | None = None) -> Ctx:
        f = findings if findings is not None else pd.DataFrame(columns=FINDINGS_COLUMNS)
        shown = {}
        lv_rows = f[f["kind"] == "levels"] if len(f) else f
        for r in lv_rows.itertuples(index=False):
            shown[str(r.task)] = [x for x in str(r.levels).split("|") if x]
        for t, g in agg.groupby("task", sort=False):  # a folder without findings: every level
            if not shown.get(t):
                shown[t] = order_levels(g["batch_level"])[::-1]
        pairs = agg[["method", "layer", "method_kind"]].drop_duplicates(["method", "layer"])
        first = {m: i for i, m in enumerate(pd.unique(pairs["method"]))}
        rows = sorted(pairs.itertuples(index=False),
                      key=lambda r: (_KIND_ORDER.get(r.method_kind, 1), first[r.method]))
        kinds = {(r.method, r.layer): r.method_kind for r in rows}
        return cls(agg, beyond, lower, headline, kinds, f, shown,
                   best_baseline_map(beyond, best_baseline), best_layer_map(best_layer_table))

    @cached_property
    def levels(self) -> dict[str, str]:
        """task → the default view of the task: its strictest distinct level (the first of
        :attr:`shown`)."""
        return {t: v[0] for t, v in self.shown.items()}

    @cached_property
    def order(self) -> list[tuple[str, str]]:
        """(method, layer) in display order (the keys of :attr:`kinds`)."""
        return list(self.kinds)

    def rows(self, kind: str, **eq) -> pd.DataFrame:
        """Findings of one kind (``diagnostics/findings.parquet``), filtered by equality."""
        f = self.findings
        if f is None or not len(f):
            return pd.DataFrame(columns=FINDINGS_COLUMNS)
        f = f[f["kind"] == kind]
        for k, v in eq.items():
            f = f[f[k].astype(str) == str(v)]
        return f

    @cached_property
    def _means(self) -> dict[tuple[str, str, str, str, str], float]:
        a = self.agg
        return dict(zip(zip(a["task"], a["batch_level"], a["metric"], a["method"], a["layer"]),
                        a["value_mean"]))

    def mean(self, task: str, level: str | None, metric: str, key: tuple[str, str]) -> float:
        """Mean ``metric`` of representation ``key`` (method, layer) on ``task`` at
        ``level`` (NaN when it was not scored): a look-up in ``agg``, indexed once."""
        return float(self._means.get((task, level, metric, *key), float("nan")))

    def kind(self, method: str, layer: str = "default") -> str:
        k = self.kinds.get((method, layer))
        if k is None:
            k = next((v for (m, _), v in self.kinds.items() if m == method), "model")
        return k

    def sort_keys(self, keys) -> list[tuple[str, str]]:
        pos = {k: i for i, k in enumerate(self.order)}
        return sorted(keys, key=lambda k: (pos.get(k, len(pos)), k))

    def headline_rows(self, task: str) -> pd.DataFrame:
        a = self.agg
        return a[(a["task"] == task) & (a["metric"] == self.headline.get(task))
                 & (a["batch_level"] == self.levels.get(task))]


def sentences(rows: pd.DataFrame) -> list[str]:
    """The ``sentence`` of each finding, escaped, in table order (a finding is rendered as
    written; the report adds nothing to it)."""
    if rows is None or not len(rows):
        return []
    return [_esc(x) for x in rows["sentence"].astype(str) if x]


def findings_list(rows: pd.DataFrame, cls: str = "findings") -> str:
    items = sentences(rows)
    return (f'<ul class="{cls}">' + "".join(f"<li>{x}</li>" for x in items) + "</ul>"
            if items else "")


def absent(what: str, table: str) -> str:
    return (f'<p class="absent">{what} — <code>diagnostics/{_esc(table)}.parquet</code> is not in '
            "this run folder (the diagnostics step did not write it).</p>")


def _best_baseline_of(ctx: Ctx, task: str, level: str, metric: str):
    """``((method, layer), mean)`` of the best baseline the diagnostics named, or
    ``(None, nan)``."""
    b = ctx.best.get((task, level, metric))
    if b is None:
        return None, float("nan")
    return (b[0], b[1]), b[2]


def _kind_legend(kinds: set[str]) -> str:
    names = [("baseline", "baselines"), ("model", "learned models"),
             ("reference", "reference (upper bound)"), ("null", "null (chance level)")]
    return legend_html([(t, KIND_COLOURS[k]) for k, t in names if k in kinds], swatch="sw line")


# --------------------------------------------------------------------------- batch levels
def batch_levels_html(ctx: Ctx) -> str:
    parts = ['<p class="lead">How each representation holds up as the evaluation forbids '
             "shortcuts: from matching replicates on the same plate (SP) to matching them only "
             "across sources and well positions (NSSL). A curve that falls steeply was "
             "retrieving plate, batch or well-position effects rather than biology.</p>"]
    figs, tables = [], []
    for task, metric in ctx.headline.items():
        a = ctx.agg[(ctx.agg["task"] == task) & (ctx.agg["metric"] == metric)]
        levels = order_levels(a["batch_level"])
        if len(levels) < 2:
            continue
        keys = ctx.sort_keys(set(zip(a["method"], a["layer"])))
        colours = kind_colours([(k, ctx.kind(*k)) for k in keys])
        vals = {(r.method, r.layer, r.batch_level): r.value_mean for r in a.itertuples()}
        series = []
        for key in keys:
            kind = ctx.kind(*key)
            label = _method_label(*key)
            pts = [(i, vals.get((*key, lv), float("nan")),
                    f"{label} · {lv}: {_fmt(vals.get((*key, lv), float('nan')))}")
                   for i, lv in enumerate(levels)]
            series.append(dict(label=label, points=pts, colour=colours[(key, kind)],
                               ink=label_ink(kind), width=2.2 if kind != "baseline" else 1.5,
                               dash="4 3" if kind == "null" else None))
        # draw baselines first, the rest on top
        series.sort(key=lambda s: 0 if s["ink"] == label_ink("baseline") else 1)
        mlabel = _metric_label(metric)
        svg = line_chart_svg(series, title=f"{_task_label(task)}: {mlabel} by batch level",
                             x_label="batch level (left: easiest → right: strictest)",
                             y_label=mlabel, x_ticks=[(i, lv) for i, lv in enumerate(levels)])
        figs.append(
            f'<figure id="{_slug("levels", task)}">{svg}<figcaption><strong>'
            f"{_esc(_task_label(task))}</strong> — {_esc(mlabel)} at each batch level "
            f"({', '.join(f'{lv} = {LEVEL_NAMES[lv]}' for lv in levels if lv in LEVEL_NAMES)})."
            "</figcaption></figure>")
        rows = []
        for key in keys:
            cells = "".join(
                f'<td class="num">{_fmt(vals.get((*key, lv), float("nan")))}</td>' for lv in levels)
            first, last = vals.get((*key, levels[0])), vals.get((*key, levels[-1]))
            hl = vals.get((*key, ctx.levels.get(task)), first)
            keep = (f"{100 * last / hl:.0f} %" if hl and not _isnan(hl) and hl > 0
                    and last is not None and not _isnan(last) else "—")
            rows.append(f'<tr class="kind-{_esc(ctx.kind(*key))}"><td>{_method_html(*key)}</td>'
                        f'{cells}<td class="num">{keep}</td></tr>')
        tables.append(
            f"<h4>{_esc(_task_label(task))} — {_esc(mlabel)}</h4>"
            '<div class="table-wrap"><table class="plain"><thead><tr><th>method</th>'
            + "".join(f"<th>{_esc(lv)}</th>" for lv in levels)
            + f'<th title="value at {_esc(levels[-1])} ÷ value at {_esc(ctx.levels.get(task))}">'
            f"kept at {_esc(levels[-1])}</th></tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table></div>")
    if not figs:
        parts.append('<p class="absent">Every task was scored at a single batch level, so there '
                     "is no degradation to show.</p>")
        return "".join(parts)
    parts.append(_kind_legend(set(ctx.kinds.values())))
    parts.append(f'<div class="figgrid wide">{"".join(figs)}</div>')
    parts.append('<details><summary>Numbers behind the curves</summary>'
                 + "".join(tables) + "</details>")
    return "".join(parts)


# --------------------------------------------------------------------------- layers
def layer_families(ctx: Ctx) -> dict[str, list[str]]:
    """Methods with several layers that carry a depth number, layers ordered by depth."""
    out = {}
    methods = list(dict.fromkeys(m for m, _ in ctx.order))
    for m in methods:
        layers = [la for mm, la in ctx.order if mm == m]
        if len(layers) >= 2 and all(trailing_int(la) is not None for la in layers):
            out[m] = sorted(layers, key=lambda la: (trailing_int(la), la))
    return out


def network_pairs(ctx: Ctx) -> list[tuple[str, str]]:
    """(trained, untrained) method pairs such as ``vit_s16`` / ``vit_s16_random``."""
    methods = list(dict.fromkeys(m for m, _ in ctx.order))
    pairs = []
    for u in methods:
        if is_untrained(u):
            t = trained_name(u)
            match = next((m for m in methods if m != u and not is_untrained(m)
                          and (m == t or m.lower() == t.lower())), None)
            if match:
                pairs.append((match, u))
    return pairs


def _best_layer(ctx: Ctx, task: str, method: str):
    """``(layer, mean)`` of ``method``'s best layer on the task's headline metric at its
    shown level, as ``diagnostics/best_layers.parquet`` names it (``(None, nan)`` when it
    names none)."""
    b = (ctx.best_layer or {}).get((task, ctx.levels.get(task), ctx.headline.get(task),
                                    method))
    return (None, float("nan")) if b is None else b


def layers_html(ctx: Ctx) -> str:
    fams = layer_families(ctx)
    if not fams:
        return ('<p class="absent">No method in this run has several numbered layers '
                "(e.g. <code>layer1…layer4</code>, <code>block3…block12</code>), so there are no "
                "layer-wise curves.</p>")
    pairs = network_pairs(ctx)
    untrained_of = {u: t for t, u in pairs}
    colour: dict[str, str] = {}
    i = 0
    for m in fams:
        base = untrained_of.get(m, m)
        if base not in colour:
            colour[base] = SERIES_PALETTE[i % len(SERIES_PALETTE)]
            i += 1
        colour[m] = colour[base]
    parts = ['<p class="lead">Score against depth for every network with several layers '
             "(headline metric of each task at its headline batch level). Depth is the layer's "
             "number divided by the deepest one, so networks of different depth share an axis."
             " Solid lines are trained networks, dashed ones untrained (randomly initialised) "
             "twins; the grey dashed line is the best baseline, the orange one the reference."
             "</p>"]
    findings = sentences(ctx.rows("untrained_twin"))
    if findings:
        parts.append('<ul class="findings">' + "".join(f"<li>{f}</li>" for f in findings)
                     + "</ul>")
    figs = []
    best_rows = []
    for task, metric in ctx.headline.items():
        h = ctx.headline_rows(task)
        vals = {(r.method, r.layer): r.value_mean for r in h.itertuples()}
        series = []
        for m, layers in fams.items():
            deepest = max(trailing_int(la) for la in layers)
            pts = [(trailing_int(la) / deepest, vals.get((m, la), float("nan")),
                    f"{m}/{la}: {_fmt(vals.get((m, la), float('nan')))}") for la in layers]
            if all(_isnan(p[1]) for p in pts):
                continue
            series.append(dict(label=m, points=pts, colour=colour[m], ink=colour[m],
                               dash="6 4" if is_untrained(m) else None, width=2.2))
        if not series:
            continue
        hl = []
        level = ctx.levels.get(task)
        key, bval = _best_baseline_of(ctx, task, level, metric)
        if key is not None:
            hl.append(dict(y=bval, label=f"best baseline ({_method_label(*key)})",
                           colour="#52606d", ink="#52606d"))
        # each reference at its best layer (diagnostics/best_layers.parquet)
        for m in pd.unique(h.loc[h["method_kind"] == "reference", "method"]):
            la, v = _best_layer(ctx, task, m)
            if la is not None and not _isnan(v):
                hl.append(dict(y=float(v), label=f"{_method_label(m, la)} (reference)",
                               colour=KIND_COLOURS["reference"], ink="#9a6700"))
        mlabel = _metric_label(metric)
        svg = line_chart_svg(series, title=f"{_task_label(task)}: {mlabel} by depth",
                             x_label="relative depth (layer number ÷ deepest layer)",
                             y_label=mlabel, hlines=hl, width=560, plot_height=220,
                             x_ticks=[(0.25, "25 %"), (0.5, "50 %"), (0.75, "75 %"), (1.0, "100 %")])
        figs.append(f'<figure id="{_slug("layers", task)}">{svg}<figcaption><strong>'
                    f"{_esc(_task_label(task))}</strong> — {_esc(mlabel)}"
                    f" (<code>{_esc(level)}</code>).</figcaption></figure>")
        cells = []
        for m in fams:
            la, v = _best_layer(ctx, task, m)
            cells.append(f'<td class="num">{_esc(la) if la else "—"}'
                         f'{"" if la is None else f" <span class=sd>{_fmt(v)}</span>"}</td>')
        best_rows.append(f"<tr><td>{_esc(_task_label(task))}</td>{''.join(cells)}</tr>")
    parts.append(f'<div class="figgrid">{"".join(figs)}</div>')
    if ctx.best_layer is None:
        parts.append(absent("No best layer per network (the diagnostics choose it, with the "
                            "reference line of each curve)", "best_layers"))
        return "".join(parts)
    parts.append('<details><summary>Best layer of each network per task</summary>'
                 '<div class="table-wrap"><table class="plain"><thead><tr><th>task</th>'
                 + "".join(f"<th>{_esc(m)}</th>" for m in fams)
                 + f"</tr></thead><tbody>{''.join(best_rows)}</tbody></table></div></details>")
    return "".join(parts)


# --------------------------------------------------------------------------- phenotype classes
def _class_order(classes) -> list[str]:
    cl = sorted(set(map(str, classes)))
    return [c for c in cl if c not in ("inert", "control")] + [c for c in cl if c in ("inert",
                                                                                        "control")]


def class_table(ctx: Ctx, pc: pd.DataFrame | None) -> pd.DataFrame | None:
    """Phenotype-class scores at one batch level and metric: rows (method, layer, class)."""
    if pc is None or pc.empty:
        return None
    pc = pc.copy()
    for c in ("method", "layer", "phenotype_class", "batch_level", "metric"):
        if c in pc.columns:
            pc[c] = pc[c].astype(str)
    if "layer" not in pc.columns:
        pc["layer"] = "default"
    if "batch_level" in pc.columns:
        pc = pc[pc["batch_level"] == headline_level(pc["batch_level"])]
    if "metric" in pc.columns and len(pc):
        metrics = list(pd.unique(pc["metric"]))
        pc = pc[pc["metric"] == ("mean_average_precision" if "mean_average_precision" in metrics
                                 else metrics[0])]
    if "method_kind" not in pc.columns:
        pc["method_kind"] = [ctx.kind(m, la) for m, la in zip(pc["method"], pc["layer"])]
    pc = pc.groupby(["method", "method_kind", "layer", "phenotype_class"], sort=False,
                    as_index=False)["value"].mean()
    return pc if len(pc) else None


def classes_html(ctx: Ctx, pc: pd.DataFrame | None, source: str) -> str:
    if pc is None:
        return absent("No per-phenotype-class scores (only synthetic screens know each "
                      "perturbation's class)", "phenotype_classes")
    classes = _class_order(pc["phenotype_class"])
    keys = ctx.sort_keys(set(zip(pc["method"], pc["layer"])))
    vals = {(r.method, r.layer, r.phenotype_class): r.value for r in pc.itertuples()}
    m = np.array([[vals.get((*k, c), np.nan) for c in classes] for k in keys])
    caps = ctx.rows("class_capture")
    cap = {(str(r.method), str(r.layer)): set(str(r.subject).split("|"))
           for r in caps[caps["verdict"].isin(["captures", "captures none"])].itertuples()}
    mark = [[c in cap.get(k, set()) for c in classes] for k in keys]
    svg = heatmap_svg([_method_label(*k) for k in keys], m, col_labels=classes, vmin=0.0,
                      title="replicate mAP per phenotype class",
                      inks=[label_ink(ctx.kind(*k)) for k in keys], mark=mark)
    return (
        '<p class="lead">Which kinds of biology each representation retrieves: the mean '
        "replicate-retrieval mAP of the perturbations in each planted phenotype class. A "
        "framed cell means the method <em>captures</em> the class (the diagnostics' finding; "
        "its criterion is stated in each sentence below).</p>"
        + findings_list(caps)
        + f'<figure id="classes-heatmap" class="scroll">{svg}<figcaption>Rows: methods '
        "(grey baselines, blue models, orange reference, pink null); columns: phenotype "
        f"classes. Source: {_esc(source)}.</figcaption></figure>"
    )


# --------------------------------------------------------------------------- residualization
_STRATUM_MEAN = "(stratum mean)"


def _panel_frame(panels: pd.DataFrame | None) -> pd.DataFrame | None:
    """``diagnostics/residualization_panels.parquet`` with its keys as strings, in drawing
    order (``None`` when the run folder lacks it)."""
    if panels is None:
        return None
    p = panels.copy()
    for c in ("task", "batch_level", "metric", "confound", "method", "layer"):
        p[c] = p[c].where(p[c].notna(), "").astype(str) if c in p.columns else ""
    if "panel" in p.columns:
        p = p.sort_values("panel", kind="stable")
    return p


def _resid_frame(res: pd.DataFrame | None, panels: pd.DataFrame | None = None
                 ) -> pd.DataFrame | None:
    """The slice of ``residualized`` the section shows: the one the diagnostics drew the
    panels on (``panels``), else replicate retrieval (or the first task) at the headline
    level on mAP (or the first metric)."""
    if res is None or res.empty:
        return None
    r = res.copy()
    for c in ("method", "layer", "confound", "task", "batch_level", "metric", "perturbation",
              "phenotype_class", "stratum"):
        if c in r.columns:
            r[c] = r[c].where(r[c].notna(), "").astype(str)
        else:
            r[c] = "default" if c == "layer" else ""
    if "method_kind" not in r.columns:
        r["method_kind"] = "model"
    if panels is not None and len(panels):
        p = panels.iloc[0]
        r = r[(r["task"] == p["task"]) & (r["batch_level"] == p["batch_level"])
              & (r["metric"] == p["metric"])]
    elif len(r):
        tasks = list(pd.unique(r["task"]))
        task = "replicate_retrieval" if "replicate_retrieval" in tasks else tasks[0]
        r = r[r["task"] == task]
        r = r[r["batch_level"] == headline_level(r["batch_level"])]
        metrics = list(pd.unique(r["metric"]))
        if metrics:
            r = r[r["metric"] == ("mean_average_precision" if "mean_average_precision" in metrics
                                  else metrics[0])]
    return r if len(r) else None


def _resid_by_class(r: pd.DataFrame) -> pd.DataFrame:
    """Mean over perturbations per (method, layer, confound, class); '' = every class."""
    pp = r[r["perturbation"] != _STRATUM_MEAN]
    keys = ["method", "method_kind", "layer", "confound"]
    by = pp.groupby([*keys, "phenotype_class"], sort=False, as_index=False)["value"].mean()
    allc = pp.groupby(keys, sort=False, as_index=False)["value"].mean().assign(phenotype_class="")
    return pd.concat([by[by["phenotype_class"] != ""], allc], ignore_index=True)


def _retained(before: float, after: float) -> float:
    if _isnan(before) or _isnan(after) or before <= 0:
        return float("nan")
    return max(after, 0.0) / before


def residualization_html(ctx: Ctx, res: pd.DataFrame | None,
                         panels: pd.DataFrame | None = None) -> str:
    """The residualization section: the panels ``diagnostics/residualization_panels.parquet``
    names (which representations, which confound), then every method's numbers."""
    panels = _panel_frame(panels)
    r = _resid_frame(res, panels)
    if r is None:
        return absent("No residualization results", "residualized")
    t = _resid_by_class(r)
    confounds = [c for c in pd.unique(t["confound"]) if c != "none"]
    if "none" not in set(t["confound"]) or not confounds:
        return ('<p class="absent">The residualization table has no before/after pair '
                "(confound <code>none</code> and a confound).</p>")
    keys = ctx.sort_keys(set(zip(t["method"], t["layer"])))
    has_classes = (t["phenotype_class"] != "").any()
    parts = ['<p class="lead">Each representation is regressed on a confound (the site\'s '
             "cell count; pixel statistics) and scored again on what is left. Signal that "
             "survives is not a by-product of how many cells there are; signal that vanishes "
             "was the confound.</p>"]
    parts.append(findings_list(ctx.rows("residualization")))
    val = {(a.method, a.layer, a.confound, a.phenotype_class): a.value for a in t.itertuples()}
    if has_classes:
        classes = _class_order(t.loc[t["phenotype_class"] != "", "phenotype_class"])
        # small multiples of the representations the diagnostics chose, on their confound
        figs = []
        if panels is None:
            parts.append(absent("No per-class panels (the diagnostics choose which "
                                "representations to draw)", "residualization_panels"))
            shown, conf = [], ""
        else:
            shown = list(zip(panels["method"], panels["layer"]))
            conf = str(panels["confound"].iloc[0]) if len(panels) else ""
        for k in shown:
            rows = [(c, val.get((*k, "none", c), float("nan")), val.get((*k, conf, c), float("nan")))
                    for c in classes]
            svg = dumbbell_svg(rows, title=f"{_method_label(*k)}: mAP per class before and "
                               f"after residualizing on {conf}", x_label="mAP",
                               before_label="as is", after_label=f"residualized on {conf}")
            figs.append(f'<figure id="{_slug("resid", *k)}">{svg}<figcaption><strong>'
                        f"{_esc(_method_label(*k))}</strong> ({_esc(ctx.kind(*k))}): per "
                        f"phenotype class, mAP as is (open) and after removing "
                        f"<code>{_esc(conf)}</code> (filled; red where it drops).</figcaption>"
                        "</figure>")
        if figs:
            parts.append(f'<div class="figgrid narrow">{"".join(figs)}</div>')
        cols = classes + [""]
        head = "".join(f"<th>{_esc(c or 'all')}</th>" for c in cols)
        body = []
        for k in keys:
            for cf in ["none", *confounds]:
                cells = "".join(f'<td class="num">{_fmt(val.get((*k, cf, c)), digits=2)}</td>'
                                for c in cols)
                body.append(f'<tr class="kind-{_esc(ctx.kind(*k))}"><td>{_method_html(*k)}</td>'
                            f"<td>{_esc(cf)}</td>{cells}</tr>")
        parts.append('<details><summary>Every method and class (mAP as is and residualized)'
                     '</summary><div class="table-wrap"><table class="plain"><thead><tr>'
                     f"<th>method</th><th>residualized on</th>{head}</tr></thead><tbody>"
                     f"{''.join(body)}</tbody></table></div></details>")
    else:
        body = []
        for k in keys:
            b = val.get((*k, "none", ""))
            cells = "".join(
                f'<td class="num">{_fmt(val.get((*k, cf, "")))}'
                f'<span class="ratio">{_pct(_retained(b, val.get((*k, cf, ""), float("nan"))))}'
                "</span></td>" for cf in confounds)
            body.append(f'<tr class="kind-{_esc(ctx.kind(*k))}"><td>{_method_html(*k)}</td>'
                        f'<td class="num">{_fmt(b)}</td>{cells}</tr>')
        parts.append('<div class="table-wrap"><table class="plain"><thead><tr><th>method</th>'
                     "<th>as is</th>" + "".join(f"<th>residualized on {_esc(c)}</th>"
                                                for c in confounds)
                     + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    strata = r[r["perturbation"] == _STRATUM_MEAN]
    if len(strata) and (strata["stratum"] != "").any():
        st = sorted(set(strata["stratum"]) - {""})
        sv = strata.groupby(["method", "layer", "confound", "stratum"])["value"].mean().to_dict()
        body = []
        for k in keys:
            for cf in ["none", *confounds]:
                if not any((*k, cf, s) in sv for s in st):
                    continue
                body.append(f'<tr class="kind-{_esc(ctx.kind(*k))}"><td>{_method_html(*k)}</td>'
                            f"<td>{_esc(cf)}</td>" + "".join(
                                f'<td class="num">{_fmt(sv.get((*k, cf, s)), digits=2)}</td>'
                                for s in st) + "</tr>")
        parts.append('<details><summary>Within strata of matched cell-count change</summary>'
                     '<p class="tablenote">Perturbations binned by how much they change the cell '
                     "count (q1 smallest … q4 largest); mean mAP per bin. A representation that "
                     "keeps its mAP in q1 retrieves perturbations that do not move cell count."
                     '</p><div class="table-wrap"><table class="plain"><thead><tr><th>method</th>'
                     "<th>residualized on</th>" + "".join(f"<th>{_esc(s)}</th>" for s in st)
                     + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div></details>")
    return "".join(parts)


def _pct(x: float) -> str:
    return "" if _isnan(x) else f"{100 * x:.0f} %"


# --------------------------------------------------------------------------- agreement
def _closest_lines(ctx: Ctx, closest: pd.DataFrame | None) -> str:
    """The "agrees most with" list: the rows of ``diagnostics/closest_baseline.parquet``
    (which baseline each model and reference agrees most with, and the numbers), in the
    report's method order; a note when the run folder lacks the table."""
    if closest is None:
        return absent("No closest baseline per model (the diagnostics choose it)",
                      "closest_baseline")
    c = closest.copy()
    for col in ("method", "layer", "baseline", "baseline_layer", "measure"):
        c[col] = (c[col].where(c[col].notna(), "default" if "layer" in col else "").astype(str)
                  if col in c.columns else ("default" if "layer" in col else "spearman"))
    by_key = {(r["method"], r["layer"]): r for r in c.to_dict("records")}
    lines = []
    for k in ctx.sort_keys(by_key):
        r = by_key[k]
        v, cka = r.get("value"), r.get("cka")
        if r["measure"] == "spearman":
            nums = f"ρ = {_fmt(v, digits=2)}" + ("" if _isnan(cka) else
                                                 f", CKA {_fmt(cka, digits=2)}")
        else:
            nums = f"CKA = {_fmt(v, digits=2)}"
        lines.append(f"<li><strong>{_esc(_method_label(*k))}</strong> agrees most with "
                     f"<strong>{_esc(_method_label(r['baseline'], r['baseline_layer']))}"
                     f"</strong> ({nums})</li>")
    return (f'<details open><summary>Closest baseline of each model</summary><ul class="compact">'
            f'{"".join(lines)}</ul></details>' if lines else "")


def agreement_html(ctx: Ctx, ag: pd.DataFrame | None,
                   closest: pd.DataFrame | None = None) -> str:
    if ag is None or ag.empty:
        return absent("No agreement between methods", "agreement")
    ag = ag.copy()
    for c in ("method_a", "layer_a", "method_b", "layer_b"):
        ag[c] = ag[c].where(ag[c].notna(), "default").astype(str)
    keys = ctx.sort_keys(set(zip(ag["method_a"], ag["layer_a"])) | set(zip(ag["method_b"],
                                                                           ag["layer_b"])))
    idx = {k: i for i, k in enumerate(keys)}
    labels = [_method_label(*k) for k in keys]
    inks = [label_ink(ctx.kind(*k)) for k in keys]
    figs = []
    for col, name in (("spearman", "Spearman ρ of the perturbation-similarity rankings"),
                      ("cka", "linear CKA")):
        if col not in ag.columns:
            continue
        m = np.full((len(keys), len(keys)), np.nan)
        np.fill_diagonal(m, 1.0)
        for r in ag.itertuples():
            i, j = idx[(r.method_a, r.layer_a)], idx[(r.method_b, r.layer_b)]
            v = getattr(r, col)
            if not _isnan(v):
                m[i, j] = m[j, i] = float(v)
        svg = heatmap_svg(labels, m, title=name, inks=inks,
                          vmin=-1.0 if col == "spearman" and np.nanmin(m) < 0 else 0.0)
        figs.append(f'<figure id="agreement-{col}" class="scroll">{svg}<figcaption><strong>'
                    f"{_esc(name)}</strong>"
                    + (" between every two methods: 1 = they order perturbation pairs by "
                       "similarity identically." if col == "spearman" else
                       ": similarity of the representations themselves (1 = the same up to "
                       "rotation and scale).") + "</figcaption></figure>")
    n = int(ag["n_perturbations"].max()) if "n_perturbations" in ag.columns and len(ag) else 0
    return (
        '<p class="lead">Do two representations see the same biology? For every pair of methods, '
        "how alike their rankings of perturbation–perturbation similarity are (Spearman), and "
        "how alike the representations are (CKA)"
        + (f", over {n:,} perturbations" if n else "") + ". A model that agrees closely with a "
        "baseline has mostly learned what the baseline measures.</p>"
        + _closest_lines(ctx, closest)
        + f'<div class="figgrid wide">{"".join(figs)}</div>'
    )


# --------------------------------------------------------------------------- dimensionality
def dimensionality_html(ctx: Ctx, dim: pd.DataFrame | None) -> str:
    if dim is None or dim.empty:
        return absent("No dimensionality analysis", "dimensionality")
    d = dim.copy()
    d["layer"] = d["layer"].where(d["layer"].notna(), "default").astype(str)
    d["method"] = d["method"].astype(str)
    keys = ctx.sort_keys(set(zip(d["method"], d["layer"])))
    kinds = {k: ctx.kinds.get(k) or (d.loc[(d["method"] == k[0]) & (d["layer"] == k[1]),
                                           "method_kind"].iloc[0] if "method_kind" in d else "model")
             for k in keys}
    cum = d[d["metric"] == "cumulative_explained_variance"]
    parts = ['<p class="lead">How many directions a representation really uses. The curves '
             "show the cumulative share of variance explained by the first <em>k</em> principal "
             "components of each method's perturbation profiles; a curve that jumps to 1 within a"
             " few components has collapsed onto a handful of signals (often cell count or "
             "intensity).</p>"]
    if len(cum):
        colours = kind_colours([(k, kinds[k]) for k in keys])
        series = []
        kmax = 1
        by_key = dict(iter(cum.groupby(["method", "layer"], sort=False)))
        for k in keys:
            if k not in by_key:
                continue
            g = by_key[k].sort_values("component")
            kmax = max(kmax, int(g["component"].max()))
            pts = [(int(c), float(v), f"{_method_label(*k)}: {_fmt(v, digits=2)} at {int(c)}")
                   for c, v in zip(g["component"], g["value"])]
            series.append(dict(label=_method_label(*k), points=pts, colour=colours[(k, kinds[k])],
                               ink=label_ink(kinds[k]), markers=False,
                               width=2.0 if kinds[k] != "baseline" else 1.4))
        series.sort(key=lambda s: 0 if s["ink"] == label_ink("baseline") else 1)
        svg = line_chart_svg(series, title="cumulative explained variance", log_x=kmax > 30,
                             x_label="number of principal components" + (" (log scale)"
                                                                          if kmax > 30 else ""),
                             y_label="cumulative explained variance",
                             y_ticks=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        parts.append(_kind_legend(set(kinds.values())))
        parts.append(f'<figure id="dimensionality-curves" class="single">{svg}<figcaption>One line per method '
                     "and layer; dots of the same colour family are the same kind of method."
                     "</figcaption></figure>")
    scal = d[d["metric"].isin(["effective_rank", "participation_ratio", "n_components_90",
                               "top1_variance"])]
    if len(scal):
        col = ctx.rows("collapse")
        collapsed = set(zip(col["method"].astype(str), col["layer"].astype(str)))
        sv = scal.groupby(["method", "layer", "metric"])["value"].mean().to_dict()
        cols = [("effective_rank", "effective rank"), ("participation_ratio",
                                                       "participation ratio"),
                ("n_components_90", "components for 90 %"), ("top1_variance", "top PC share")]
        body = []
        for k in keys:
            if not any((*k, c) in sv for c, _ in cols):
                continue
            cells = []
            for c, _ in cols:
                v = sv.get((*k, c), float("nan"))
                txt = "—" if _isnan(v) else (f"{v:.0f}" if c == "n_components_90" else
                                             (f"{100 * v:.0f} %" if c == "top1_variance" else
                                              f"{v:.1f}"))
                cls = " warn" if c == "top1_variance" and k in collapsed else ""
                cells.append(f'<td class="num{cls}" data-value="{"" if _isnan(v) else repr(float(v))}">'
                             f"{txt}</td>")
            body.append(f'<tr class="kind-{_esc(kinds[k])}"><td data-value="{_esc(_method_label(*k))}">'
                        f'{_method_html(*k)}</td><td class="kindcol" data-value="{_KIND_ORDER.get(kinds[k], 1)}">'
                        f'{_tag(kinds[k])}</td>{"".join(cells)}</tr>')
        head = "".join(f'<th data-col="{i + 2}"><button type="button">{_esc(t)}</button></th>'
                       for i, (_, t) in enumerate(cols))
        parts.append('<div class="table-wrap"><table class="leaderboard sortable compact" '
                     'id="dimensionality-table"><thead><tr class="sub"><th data-col="0" class="left"><button '
                     'type="button">method</button></th><th data-col="1" class="left kindcol"><button type="button">'
                     f"kind</button></th>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                     "</table></div>"
                     '<p class="tablenote">Effective rank = exp(entropy of the normalised '
                     "eigenvalues); participation ratio = (Σλ)² / Σλ². Both count the directions "
                     "in use. A flagged top-component share is the diagnostics' collapse "
                     "finding:</p>" + findings_list(ctx.rows("collapse")))
    return "".join(parts)


# --------------------------------------------------------------------------- assays
def assays_html(ctx: Ctx, asy: pd.DataFrame | None) -> str:
    if asy is None or asy.empty:
        return absent("No assay confound table", "assay_confounds")
    verdicts = {str(r.subject): str(r.verdict) for r in ctx.rows("assay").itertuples()}
    rank = {"predictable by cell count": 0, "inconclusive": 1}
    a = asy.assign(_v=[verdicts.get(str(x), "") for x in asy["assay"]])
    a = a.assign(_o=a["_v"].map(lambda v: rank.get(v, 2))).sort_values(
        ["_o", "cell_count_balanced_accuracy"] if "cell_count_balanced_accuracy" in a.columns
        else ["_o"], ascending=[True, False][:2 if "cell_count_balanced_accuracy" in a.columns
                                            else 1], kind="stable")
    words = {"predictable by cell count": '<span class="warn">yes — cell count alone</span>',
             "inconclusive": '<span class="caveat" title="balanced accuracy reaches the '
                             'threshold but the groups do not differ significantly">'
                             "inconclusive — too few compounds</span>",
             "not predictable by cell count": "no", "not tested": "not tested",
             "": "— (no finding)"}
    rows = []
    for r in a.to_dict("records"):
        v = r["_v"]
        rows.append(
            f'<tr class="{"flagged" if v == "predictable by cell count" else ""}">'
            f'<td><code>{_esc(r.get("assay", ""))}</code></td>'
            f'<td>{_esc(r.get("assay_type", ""))}</td>'
            f'<td class="num">{_fmt_int(r.get("n_actives"))}</td>'
            f'<td class="num">{_fmt_int(r.get("n_inactives"))}</td>'
            f'<td class="num">{_fmt(r.get("t_statistic"), digits=2)}</td>'
            f'<td class="num">{_fmt_p(r.get("p_value"))}</td>'
            f'<td class="num">{_fmt(r.get("cell_count_balanced_accuracy"), digits=2)}</td>'
            f'<td class="num">{_fmt(r.get("threshold"), digits=2)}</td>'
            f"<td>{words.get(v, _esc(v))}</td></tr>")
    return (
        '<p class="lead">Before trusting a bioactivity score: could the number of cells alone '
        "have predicted the assay? For each assay, a t-test of cell count between actives and "
        "inactives and the balanced accuracy of the best single cell-count threshold (Seal et "
        "al. 2026, Nat. Commun.). The last column is the diagnostics' finding for the assay; "
        "the summary counts the same rows.</p>"
        + findings_list(ctx.rows("assays"))
        + '<div class="table-wrap"><table class="plain" id="assay-table"><thead><tr>'
        "<th>assay</th><th>type</th><th>actives</th><th>inactives</th><th>t</th><th>p</th>"
        "<th>cell-count balanced accuracy</th><th>at threshold</th><th>predictable by cell count</th>"
        "</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>")


def _fmt_int(x) -> str:
    return "—" if _isnan(x) else f"{int(x):,}"


def _fmt_p(x) -> str:
    if _isnan(x):
        return "—"
    x = float(x)
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}"


