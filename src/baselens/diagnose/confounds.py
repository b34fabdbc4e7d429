"""Confound control: residualize on cell count / pixel statistics, and matched strata.

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) (§5.3)
warns that a representation's score may come from the cell count (or other trivial image
statistics) rather than morphology, and asks for analyses *conditioned on cell count*. Two
such analyses:

Residualization
    For a representation with well profiles ``X`` (wells × features) and a confound
    matrix ``C`` (wells × k), every feature is regressed on the confound by ordinary
    least squares across all wells, with an intercept, and replaced by its residual::

        X_res = X − D (Dᵀ D)⁺ Dᵀ X,      D = [1, C]

    (equivalent to per-feature OLS). Whatever a feature shares *linearly* with the
    confound is removed; what is left is re-scored with replicate retrieval at NR — the
    per-perturbation mAP of ``baselens.evaluate.replicate_retrieval`` (cosine similarity,
    same-perturbation wells as positives, negative-control wells as negatives), without
    its permutation p-values. Confounds:

    * ``none`` — the profiles as they are (the reference for the other rows);
    * ``cell_count`` — the well's cell count (``Metadata_CellCount``, the mean nuclei
      count the ``cell_count`` method measured) **and its logarithm** (two regressors):
      pixel sums grow linearly with the number of cells, while rates and latent
      phenotypes move with its logarithm (``n ~ Poisson(n₀ · e^{0.5·count})`` in the
      synthetic screen), and one linear term alone leaves the other behind;
    * ``pixel_stats`` — the ``pixel_stats`` representation's well profile of the same
      well (intensity mean/std/... per channel), reduced to its leading principal
      components (standardized features, PCA over all ``pixel_stats`` wells; at most
      ``max_confound_dims``, 16 by default, and no more than 99.9 % of its variance) so
      the regression cannot absorb everything on a small screen. The ``pixel_stats``
      representation itself is not residualized on itself (no rows).

    Wells whose confound is missing are dropped (and logged) for that confound.

Matched strata
    Per non-control perturbation, its cell-count change versus DMSO: the mean over its
    wells of ``log(count_well / mean count of the negative-control wells of the same
    plate)``. Perturbations are binned into quartiles of the *absolute* change
    (``q1`` = the least change … ``q4`` = the most, typically cytotoxic/proliferative);
    the mean per-perturbation mAP of every representation within a stratum compares
    models at matched cytotoxicity: a model that only wins in ``q4`` wins on cell
    count.

Output (``residualized`` table): ``method, method_kind, layer, confound, task,
batch_level, metric, perturbation, phenotype_class, stratum, value`` — per-perturbation
mAP rows (``stratum`` = that perturbation's quartile, ``""`` without cell counts;
``phenotype_class`` from the planted classes, ``""`` if unknown) and, for every
representation and *every* confound, one row per stratum with
``perturbation = "(stratum mean)"`` and ``phenotype_class = ""`` (filter
``confound == "none"`` for the plain matched-strata comparison). ``task`` is always
``replicate_retrieval``, ``batch_level`` ``NR``, ``metric`` ``mean_average_precision``.

Panels (:func:`residualization_panels`, ``diagnostics/residualization_panels.parquet``)
    Which representations the report draws as per-class before/after small multiples,
    and on which confound: on one slice of the ``residualized`` table (task
    ``replicate_retrieval``, else the first; batch level NR, else the first in canonical
    order; metric ``mean_average_precision``, else the first), the confound
    ``cell_count`` (else the first other than ``none``); the references and models with
    the highest mAP as is (mean over perturbations, ``confound = "none"``), at most
    :data:`PANEL_MODELS`, references first, then the baselines with the highest mAP as is
    up to :data:`PANEL_TOTAL` panels in all (at least :data:`PANEL_MIN_BASELINES`). Only
    when the perturbations have phenotype classes (the panels are per class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from baselens.diagnose.findings import order_levels

__all__ = [
    "CONFOUNDS",
    "PANEL_COLUMNS",
    "RESIDUALIZED_COLUMNS",
    "STRATUM_MEAN",
    "cell_count_change",
    "cell_count_strata",
    "per_perturbation_map",
    "residualization_panels",
    "residualize",
    "residualized_retrieval",
]

CONFOUNDS = ("none", "cell_count", "pixel_stats")
RESIDUALIZED_COLUMNS = ["method", "method_kind", "layer", "confound", "task", "batch_level",
                        "metric", "perturbation", "phenotype_class", "stratum", "value"]
STRATUM_MEAN = "(stratum mean)"
#: Columns of ``diagnostics/residualization_panels.parquet``.
PANEL_COLUMNS = ["task", "batch_level", "metric", "confound", "panel", "method", "layer",
                 "method_kind", "value"]
#: Small multiples: at most this many references and models, this many panels in all, and
#: at least this many baselines.
PANEL_MODELS = 4
PANEL_TOTAL = 6
PANEL_MIN_BASELINES = 2
_PANEL_KIND_ORDER = {"reference": 0, "model": 1, "baseline": 2, "null": 3}
PERT = "Metadata_Perturbation"
WELL_KEYS = ["Metadata_Plate", "Metadata_Well"]


# ------------------------------------------------------------------------------ residuals
def residualize(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Residuals of every column of ``x`` after OLS on ``[1, c]`` (rows = observations).

    ``x − Q Qᵀ x`` with ``Q`` an orthonormal basis of the design's column space: the
    same residuals as ``lstsq`` per feature, at the cost of two thin matrix products.
    ``Q`` comes from the eigendecomposition of the small ``k × k`` matrix ``Dᵀ D`` of the
    centered, standardized confound columns (the intercept is orthogonal to them), so
    constant or collinear confound columns are dropped rather than failing.
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if len(c) != len(x):
        raise ValueError("x and the confound need the same rows")
    n = len(x)
    cc = c - c.mean(axis=0)
    sd = cc.std(axis=0)
    cc = cc[:, sd > 0] / sd[sd > 0]
    out = x - x.mean(axis=0)  # the intercept
    if cc.shape[1]:
        lam, v = np.linalg.eigh(cc.T @ cc)
        ok = lam > lam.max() * 1e-10
        q = cc @ (v[:, ok] / np.sqrt(lam[ok]))
        out = out - q @ (q.T @ out)
    return out if n else x


def _leading_components(c: np.ndarray, max_dims: int, var: float = 0.999) -> np.ndarray:
    """Principal-component scores of a standardized confound matrix (at most ``max_dims``)."""
    c = np.where(np.isfinite(c), c, 0.0)
    c = c - c.mean(axis=0)
    sd = c.std(axis=0)
    c = c[:, sd > 0] / sd[sd > 0]
    if c.shape[1] == 0:
        return c
    lam, v = np.linalg.eigh(c.T @ c)
    lam, v = lam[::-1], v[:, ::-1]
    lam = np.clip(lam, 0, None)
    k = int(np.searchsorted(np.cumsum(lam) / lam.sum(), var - 1e-12)) + 1
    k = max(1, min(k, max_dims, int((lam > 1e-10 * lam[0]).sum())))
    return c @ v[:, :k]


# ------------------------------------------------------------------------------ cell count
def _well_counts(profiles: pd.DataFrame, well_cell_counts: pd.DataFrame | None) -> pd.Series:
    """Cell count of every row of ``profiles`` (NaN where unknown)."""
    if well_cell_counts is not None and len(well_cell_counts) and \
            set(WELL_KEYS) <= set(profiles.columns):
        wc = well_cell_counts[[*WELL_KEYS, "Metadata_CellCount"]].copy()
        for k in WELL_KEYS:
            wc[k] = wc[k].astype(str)
        wc = wc.drop_duplicates(WELL_KEYS)
        keys = profiles[WELL_KEYS].astype(str).reset_index(drop=True)
        v = keys.merge(wc, on=WELL_KEYS, how="left")["Metadata_CellCount"]
        return pd.Series(pd.to_numeric(v, errors="coerce").to_numpy(dtype=np.float64),
                         index=profiles.index)
    if "Metadata_CellCount" in profiles.columns:
        return pd.to_numeric(profiles["Metadata_CellCount"], errors="coerce").astype(float)
    return pd.Series(np.nan, index=profiles.index)


def _is_negcon(meta: pd.DataFrame) -> np.ndarray:
    if "Metadata_ControlType" not in meta.columns:
        return np.zeros(len(meta), dtype=bool)
    return (meta["Metadata_ControlType"].astype(str) == "negcon").to_numpy()


def _is_treated(meta: pd.DataFrame) -> np.ndarray:
    if "Metadata_ControlType" not in meta.columns:
        return np.ones(len(meta), dtype=bool)
    ct = meta["Metadata_ControlType"]
    return (ct.isna() | ct.astype(str).isin(["", "nan", "None", "trt"])).to_numpy()


def well_log_count_change(meta: pd.DataFrame, counts: pd.Series) -> pd.Series:
    """``log(count / mean negative-control count of the well's plate)`` per row of ``meta``
    (plates without negative controls use the mean of all their wells)."""
    c = pd.Series(np.asarray(counts, dtype=np.float64), index=meta.index)
    plate = meta["Metadata_Plate"].astype(str) if "Metadata_Plate" in meta.columns \
        else pd.Series("all", index=meta.index)
    neg = pd.Series(_is_negcon(meta), index=meta.index)
    ref_neg = c[neg].groupby(plate[neg]).mean()
    ref_all = c.groupby(plate).mean()
    ref = plate.map(ref_neg).fillna(plate.map(ref_all))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(c.clip(lower=0.5) / ref.clip(lower=0.5))
    return out.where(c.notna())


def cell_count_change(meta: pd.DataFrame, well_cell_counts: pd.DataFrame | None) -> pd.Series:
    """Per non-control perturbation: mean over its wells of the log cell-count change vs
    DMSO (:func:`well_log_count_change`). ``meta`` needs ``Metadata_Plate``,
    ``Metadata_Well``, ``Metadata_Perturbation`` (``Metadata_ControlType`` marks
    controls); counts come from ``well_cell_counts`` or ``meta['Metadata_CellCount']``."""
    meta = meta.reset_index(drop=True)
    change = well_log_count_change(meta, _well_counts(meta, well_cell_counts))
    treated = _is_treated(meta)
    v = change[treated]
    return v.groupby(meta.loc[treated, PERT].astype(str).to_numpy()).mean().dropna()


def cell_count_strata(change: pd.Series, n_strata: int = 4) -> pd.Series:
    """``"q1"`` … ``"q{n}"`` per perturbation by quantiles of ``|change|`` (q1 = least).

    Ties are split by rank (first come first), so strata have equal sizes ±1.
    """
    a = change.abs().dropna()
    if len(a) < n_strata:
        return pd.Series("", index=a.index, dtype=object)
    labels = [f"q{i + 1}" for i in range(n_strata)]
    r = a.rank(method="first")
    return pd.qcut(r, n_strata, labels=labels).astype(str)


# ------------------------------------------------------------------------------ scoring
_REF = "Metadata_reference_index"
_NR_RULES = dict(pos_sameby=[PERT, _REF], pos_diffby=[], neg_sameby=[], neg_diffby=[PERT, _REF])


def _retrieval_meta(meta: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """copairs metadata of replicate retrieval (NR): controls get unique reference ids."""
    negcon = _is_negcon(meta)
    if negcon.sum() < 2:
        raise ValueError("replicate retrieval needs ≥ 2 negative-control wells")
    m = pd.DataFrame({PERT: meta[PERT].astype(str).to_numpy(),
                      _REF: np.where(negcon, np.arange(len(meta)), -1)})
    return m, negcon


def per_perturbation_map(meta: pd.DataFrame, x: np.ndarray) -> pd.Series:
    """Per-perturbation mAP of replicate retrieval at NR — the ``mean_average_precision``
    of :func:`baselens.evaluate.replicate_retrieval` (same pairs: same-perturbation
    treated wells are positives, negative-control wells negatives; cosine similarity),
    without its permutation p-values (not needed here)."""
    from baselens import metrics

    m, negcon = _retrieval_meta(meta)
    ap = metrics.average_precision(m, x, **_NR_RULES)
    keep = (ap["n_pos_pairs"].to_numpy() > 0) & ~negcon & ap["average_precision"].notna().to_numpy()
    if not keep.any():
        raise ValueError("no query has an eligible positive")
    ap = ap[keep]
    return ap.groupby(ap[PERT].astype(str), sort=True)["average_precision"].mean()


def _say(log, stage: str, removed: int, kept: int, reason: str) -> None:
    if log is None:
        return
    if hasattr(log, "add"):
        log.add(stage, "rows", removed, kept, reason, quiet=not removed)
    elif callable(log):
        log(f"{stage}: {reason}")


def _well_index(profiles: pd.DataFrame) -> pd.Series:
    """``plate\x00well`` key of every row (empty strings without the columns)."""
    if not set(WELL_KEYS) <= set(profiles.columns):
        return pd.Series([""] * len(profiles), index=profiles.index)
    return (profiles["Metadata_Plate"].astype(str) + "\x00"
            + profiles["Metadata_Well"].astype(str))


def residualized_retrieval(
    profile_sets: Sequence,
    *,
    well_cell_counts: pd.DataFrame | None = None,
    phenotype_classes: pd.Series | None = None,
    confounds: Sequence[str] = CONFOUNDS,
    pixel_stats_method: str = "pixel_stats",
    max_confound_dims: int = 16,
    n_strata: int = 4,
    log=None,
) -> pd.DataFrame:
    """Replicate-retrieval mAP per perturbation after residualizing every profile set on
    each confound, plus matched-stratum means (module docstring)."""
    if not profile_sets:
        return pd.DataFrame(columns=RESIDUALIZED_COLUMNS)
    # strata: from the wells of every set (they normally share one plate map)
    meta_cols = [*WELL_KEYS, PERT, "Metadata_ControlType", "Metadata_CellCount"]
    metas = [ps.profiles[[c for c in meta_cols if c in ps.profiles.columns]]
             for ps in profile_sets]
    meta = pd.concat(metas, ignore_index=True)
    has_wells = set(WELL_KEYS) <= set(meta.columns)
    if has_wells:
        meta = meta.drop_duplicates(WELL_KEYS).reset_index(drop=True)
    change = cell_count_change(meta, well_cell_counts) if has_wells else pd.Series(dtype=float)
    strata = cell_count_strata(change, n_strata) if len(change) else pd.Series(dtype=object)
    # cell count of every well, looked up by key
    count_of = pd.Series(dtype=float)
    if has_wells:
        count_of = pd.Series(_well_counts(meta, well_cell_counts).to_numpy(),
                             index=_well_index(meta).to_numpy())
    count_of = count_of[~count_of.index.duplicated()]

    pix = next((ps for ps in profile_sets if ps.method == pixel_stats_method
                and ps.layer == "default"), None) \
        or next((ps for ps in profile_sets if ps.method == pixel_stats_method), None)
    pix_scores = None  # leading principal components of pixel_stats, indexed by well key
    if pix is not None and set(WELL_KEYS) <= set(pix.profiles.columns):
        c = pix.profiles[list(pix.features)].to_numpy(dtype=np.float64)
        pc = _leading_components(c, max_confound_dims)
        pix_scores = pd.DataFrame(pc, index=_well_index(pix.profiles).to_numpy())
        pix_scores = pix_scores[~pix_scores.index.duplicated()]

    cls_map = (phenotype_classes.astype(str).to_dict() if phenotype_classes is not None
               else {})
    parts: list[tuple[str, str, str, str, pd.Series]] = []
    for ps in profile_sets:
        prof = ps.profiles
        x = prof[list(ps.features)].to_numpy(dtype=np.float64)
        x = np.where(np.isfinite(x), x, 0.0)
        rmeta = pd.DataFrame({
            PERT: prof[PERT].astype(str).to_numpy(),
            "Metadata_ControlType": (prof["Metadata_ControlType"].astype(str).to_numpy()
                                     if "Metadata_ControlType" in prof.columns else ""),
        })
        keys = _well_index(prof).to_numpy()
        label = f"{ps.method}/{ps.layer}: residualized"
        for conf in confounds:
            if conf == "none":
                keep, xr = np.ones(len(prof), dtype=bool), x
            elif conf == "cell_count":
                cnt = count_of.reindex(keys).to_numpy(dtype=np.float64) if len(count_of) \
                    else np.full(len(prof), np.nan)
                keep = np.isfinite(cnt)
                if not keep.any():
                    _say(log, label, 0, len(prof), "cell_count confound skipped: no cell counts")
                    continue
                c = np.column_stack([cnt[keep], np.log1p(np.clip(cnt[keep], 0, None))])
                xr = residualize(x[keep], c)
            elif conf == "pixel_stats":
                if pix_scores is None:
                    _say(log, label, 0, len(prof),
                         f"pixel_stats confound skipped: no {pixel_stats_method!r} profiles")
                    continue
                if ps is pix or (ps.method == pix.method and ps.layer == pix.layer):
                    continue  # residualizing a representation on itself leaves nothing
                c = pix_scores.reindex(keys).to_numpy(dtype=np.float64)
                keep = np.isfinite(c).all(axis=1)
                if not keep.any():
                    _say(log, label, 0, len(prof), "pixel_stats confound skipped: no shared wells")
                    continue
                xr = residualize(x[keep], c[keep])
            else:
                raise ValueError(f"unknown confound {conf!r} (known: {', '.join(CONFOUNDS)})")
            if not keep.all():
                _say(log, label, int((~keep).sum()), int(keep.sum()),
                     f"{conf}: wells without a confound value dropped")
            try:
                m = per_perturbation_map(rmeta[keep].reset_index(drop=True), xr)
            except ValueError as exc:
                _say(log, label, 0, int(keep.sum()), f"{conf}: replicate retrieval failed: {exc}")
                continue
            parts.append((ps.method, ps.method_kind, ps.layer, conf, m))
    if not parts:
        return pd.DataFrame(columns=RESIDUALIZED_COLUMNS)
    lengths = [len(m) for *_, m in parts]
    per = pd.DataFrame({
        "method": np.repeat([p[0] for p in parts], lengths),
        "method_kind": np.repeat([p[1] for p in parts], lengths),
        "layer": np.repeat([p[2] for p in parts], lengths),
        "confound": np.repeat([p[3] for p in parts], lengths),
        "perturbation": np.concatenate([m.index.astype(str).to_numpy() for *_, m in parts]),
        "value": np.concatenate([m.to_numpy(dtype=np.float64) for *_, m in parts]),
    })
    sdict = {str(k): str(v) for k, v in strata.items()}
    per["stratum"] = [sdict.get(p, "") for p in per["perturbation"]]
    per["phenotype_class"] = [cls_map.get(p, "") for p in per["perturbation"]]
    keys = ["method", "method_kind", "layer", "confound"]
    means = (per[per["stratum"] != ""].groupby([*keys, "stratum"], sort=False)["value"].mean()
             .reset_index().sort_values("stratum", kind="stable"))
    means["perturbation"] = STRATUM_MEAN
    means["phenotype_class"] = ""
    out = pd.concat([per, means], ignore_index=True)
    out["task"] = "replicate_retrieval"
    out["batch_level"] = "NR"
    out["metric"] = "mean_average_precision"
    # rows grouped by representation and confound, per-perturbation rows before the means
    order = {k: i for i, k in enumerate(dict.fromkeys(zip(*(per[k] for k in keys))))}
    out["_o"] = [order[k] for k in zip(*(out[k] for k in keys))]
    out["_s"] = (out["perturbation"] == STRATUM_MEAN).astype(int)
    out = out.sort_values(["_o", "_s"], kind="stable")
    out = out[RESIDUALIZED_COLUMNS].reset_index(drop=True)
    out["value"] = out["value"].astype(np.float64)
    return out


def _slice(res: pd.DataFrame) -> pd.DataFrame:
    """The slice of ``residualized`` the panels are drawn on (module docstring), with text
    columns as strings."""
    r = res.copy()
    for c in ("method", "layer", "confound", "task", "batch_level", "metric", "perturbation",
              "phenotype_class"):
        if c in r.columns:
            r[c] = r[c].where(r[c].notna(), "").astype(str)
        else:
            r[c] = "default" if c == "layer" else ""
    r["value"] = pd.to_numeric(r["value"], errors="coerce")
    if len(r):
        tasks = list(pd.unique(r["task"]))
        r = r[r["task"] == ("replicate_retrieval" if "replicate_retrieval" in tasks
                            else tasks[0])]
        levels = order_levels(r["batch_level"])
        r = r[r["batch_level"] == ("NR" if "NR" in levels else levels[0])]
        metrics = list(pd.unique(r["metric"]))
        r = r[r["metric"] == ("mean_average_precision" if "mean_average_precision" in metrics
                              else metrics[0])]
    return r


def residualization_panels(residualized: pd.DataFrame | None,
                           kinds: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """The representations drawn as before/after small multiples (module docstring).

    Parameters
    ----------
    residualized
        :func:`residualized_retrieval`'s table (``diagnostics/residualized.parquet``).
    kinds
        ``(method, layer) → method_kind`` in order of appearance in ``scores.parquet``
        (:func:`baselens.diagnose.run.method_kinds`): the kind of each representation
        (else its method's, else the table's ``method_kind``) and the order that breaks
        ties (methods in order of first appearance, a method's layers in order).

    Returns
    -------
    DataFrame
        :data:`PANEL_COLUMNS`, one row per panel in drawing order (``panel`` = 0, 1, …;
        ``value`` = mAP as is, the number the choice rests on); empty without phenotype
        classes, without a ``none`` row or without a confound.
    """
    if residualized is None or residualized.empty or "confound" not in residualized.columns:
        return pd.DataFrame(columns=PANEL_COLUMNS)
    r = _slice(residualized)
    per = r[r["perturbation"] != STRATUM_MEAN]
    confounds = [c for c in pd.unique(per["confound"]) if c != "none"]
    if per.empty or not (per["phenotype_class"] != "").any() or "none" not in \
            set(per["confound"]) or not confounds:
        return pd.DataFrame(columns=PANEL_COLUMNS)
    conf = "cell_count" if "cell_count" in confounds else confounds[0]
    kinds = dict(kinds or {})
    table_kind = (dict(zip(zip(per["method"], per["layer"]), per["method_kind"].astype(str)))
                  if "method_kind" in per.columns else {})

    def kind(k: tuple[str, str]) -> str:
        if k in kinds:
            return kinds[k]
        return next((v for (m, _), v in kinds.items() if m == k[0]),
                    table_kind.get(k, "model"))

    as_is = per[per["confound"] == "none"].groupby(["method", "layer"], sort=False)[
        "value"].mean()
    pos = {k: i for i, k in enumerate(kinds)}
    first: dict[str, int] = {}
    for (m, _), i in pos.items():
        first.setdefault(m, i)
    keys = list(dict.fromkeys(zip(per["method"], per["layer"])))
    n = len(pos)

    def rank(k: tuple[str, str]):
        v = as_is.get(k, np.nan)
        return (_PANEL_KIND_ORDER.get(kind(k), 1), 0 if np.isfinite(v) else 1,
                -v if np.isfinite(v) else 0.0, first.get(k[0], n), pos.get(k, n))

    ranked = sorted(keys, key=rank)
    shown = [k for k in ranked if kind(k) in ("reference", "model")][:PANEL_MODELS]
    shown += [k for k in ranked if kind(k) == "baseline"][
        :max(PANEL_MIN_BASELINES, PANEL_TOTAL - len(shown))]
    task, level, metric = (str(per[c].iloc[0]) for c in ("task", "batch_level", "metric"))
    out = pd.DataFrame([dict(task=task, batch_level=level, metric=metric, confound=conf,
                             panel=i, method=k[0], layer=k[1], method_kind=kind(k),
                             value=float(as_is.get(k, np.nan)))
                        for i, k in enumerate(shown)], columns=PANEL_COLUMNS)
    out["panel"] = out["panel"].astype(np.int64)
    out["value"] = out["value"].astype(np.float64)
    return out
