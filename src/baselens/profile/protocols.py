"""Named normalization profiles as lists of composable steps, and the QC filters they use.

A *step* is a string ``"name[:arg[:arg...]]"`` (positional arguments, see :data:`STEPS`)
or a table ``{step = "name", key = value, ...}`` (keyword arguments of the function).
``"none"`` means ``None``; ``by`` lists are comma-separated; ``feature_select``
operations are ``+``-separated. ``"profile:<name>"`` (or just ``"<name>"`` when it names a
profile in :data:`PROFILES`) expands into that profile's steps. In TOML::

    [profile]
    steps = ["normalize:standardize:negcon", "feature_select", "pca:64", "tvn"]
    # or a named profile:       steps = "morphohelm"
    # or tables where needed:   steps = ["normalize:standardize:all",
    #                                    {step = "combat", batch = "Metadata_Batch",
    #                                     covariates = ["Metadata_Perturbation"]},
    #                                    "pca:64:negcon"]

Steps (positional arguments in order; the keyword arguments of the named function are
accepted in table form):

====================  =====================================  =====================================
step                  positional arguments (defaults)        function
====================  =====================================  =====================================
aggregate             operation (mean), by (Plate,Well)      :func:`.aggregate.aggregate`
consensus             operation (mean), by (Perturbation)    :func:`.aggregate.consensus`
normalize             method (standardize), reference        :func:`.normalize.normalize`
                      (negcon), by (Metadata_Plate)
feature_select        operations (baselens default)          :func:`.feature_select.feature_select`
cell_count_filter     threshold (0.95), column               ``feature_select`` ``cell_count``
                      (Metadata_CellCount)
pca                   n_components, reference (all), solver  :func:`.transform.pca`
spherize              method (ZCA-cor), reference (negcon),  :func:`.transform.spherize`
                      by (none)
tvn                   coral_by (none), reference (negcon),   :func:`.transform.tvn`
                      by (none)
combat                batch (Metadata_Batch)                 :func:`.batch_correct.combat`
harmony               batch (Metadata_Batch)                 :func:`.batch_correct.harmony`
qc_cell_count         quantile (0.05), column                :func:`qc_cell_count`
                      (Metadata_CellCount)
qc_negcon_distance    max_deviation (0.2), batch             :func:`qc_negcon_distance`
                      (Metadata_Batch)
====================  =====================================  =====================================

Every step reports the rows and features it removed, and why, in the
:class:`~baselens.profile.log.FilterLog`.

What each step is fitted on (``fit_on``, :func:`step_fit_on`)
    A step fitted on more than the negative controls sees the wells a probe later holds
    out, and one fitted with perturbation covariates sees their labels. baselens does not
    refit profile steps inside each probe fold; instead every such step is *declared*, and
    the scores of the probes that hold out groups (``knn_probe``, ``regression_probe``,
    ``bioactivity``) carry a ``warning`` naming the steps (:func:`probe_warning`; the run
    pipeline stamps it). Retrieval tasks train nothing and get no warning. The choice per
    step:

    ====================  ===================  ==================================================
    step                  fit_on               probe warning
    ====================  ===================  ==================================================
    normalize             its ``reference``    when ``all`` (per-group mean/scale of all wells)
    pca, spherize, tvn    its ``reference``    when ``all`` (axes / whitening of all wells)
    feature_select        its ``reference``    when ``all`` and an operation estimates a
                                               statistic across wells (frequency,
                                               correlation, cell count); ``drop_na_columns``,
                                               ``drop_nonfinite``, ``variance_threshold``
                                               (variance ≤ 1e-6: constant features only)
                                               and ``blocklist`` are validity filters and
                                               never warn
    cell_count_filter     ``all``              yes (correlation with cell count over all wells)
    combat                ``all``, or          yes; ``all+perturbation`` (its ``covariates``
                          ``all+perturbation``  are biological labels) says labels were used
    harmony               ``all``              yes (clusters of all wells)
    qc_cell_count         ``all``              no (drops low-count wells; no feature is fitted)
    qc_negcon_distance    ``negcon``           no
    aggregate, consensus  ``none``             no (within a well / a perturbation)
    ====================  ===================  ==================================================

    A step table may set ``fit_on = "negcon"`` or ``"all"`` for the steps with a
    ``reference`` (it is that argument); built-in profiles fit on negative controls wherever
    their reference implementation does (``morphohelm`` and ``efaar`` center-scale and
    reduce on all wells as MorphoHELM and efaar-benchmarking do, so their probe scores carry
    the warning).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from baselens.profile import aggregate as _agg
from baselens.profile import batch_correct as _bc
from baselens.profile import feature_select as _fs
from baselens.profile import normalize as _norm
from baselens.profile import transform as _tf
from baselens.profile.log import FilterLog
from baselens.profile.normalize import reference_mask

CELL_COUNT_COLUMN = _fs.CELL_COUNT_COLUMN
BATCH_COLUMN = _bc.BATCH_COLUMN

#: Named profiles. ``morphohelm`` is MorphoHELM's main profile
#: ``CSAll_Plate__PCA64__MADCtrl_Plate__NoSph`` (microsoft/MorphoHELM,
#: configs/normalize_splits.yaml) followed by its benchmark-time QC.
PROFILES: dict[str, list] = {
    # baselens' default: the current per-plate standardization to negative controls,
    # with NaN/inf columns and constant features removed and reported.
    "baselens": [
        "feature_select:drop_na_columns+drop_nonfinite",
        "normalize:standardize:negcon:Metadata_Plate",
        "feature_select:variance_threshold",
    ],
    # pycytominer's usual recipe (normalize to DMSO, then feature_select's standard ops)
    "pycytominer": [
        "normalize:standardize:negcon:Metadata_Plate",
        "feature_select:drop_na_columns+variance_threshold+correlation_threshold+blocklist",
    ],
    # MorphoHELM: center-scale per plate on all wells → PCA 64 (deterministic) →
    # MAD-robustize per plate on controls; then QC (bottom 5 % cell count wells,
    # batches whose control cosine distance deviates by > 0.2).
    "morphohelm": [
        "normalize:standardize:all:Metadata_Plate",
        "pca:64:all:full",
        "normalize:mad_robustize:negcon:Metadata_Plate",
        "qc_cell_count:0.05",
        "qc_negcon_distance:0.2:Metadata_Batch",
    ],
    # MorphoHELM without its QC (for data without cell counts or batches)
    "morphohelm_noqc": [
        "normalize:standardize:all:Metadata_Plate",
        "pca:64:all:full",
        "normalize:mad_robustize:negcon:Metadata_Plate",
    ],
    # efaar-benchmarking's map building: standardize per batch → PCA 128 → TVN with CORAL
    "efaar": [
        "normalize:standardize:all:Metadata_Batch",
        "pca:128:all:full",
        "tvn:Metadata_Batch",
    ],
}


# ----------------------------------------------------------------------------- QC


def qc_cell_count(
    df: pd.DataFrame,
    *,
    quantile: float = 0.05,
    column: str = CELL_COUNT_COLUMN,
    log: FilterLog | None = None,
) -> pd.DataFrame:
    """Drop wells whose cell count is below the ``quantile`` of all wells (MorphoHELM QC).

    Threshold ``t = Q_quantile(count)`` (linear interpolation, pandas' default); wells with
    ``count >= t`` are kept. MorphoHELM (benchmarks/qc/cell_count_qc.py) estimates ``t`` on
    a stratified sample of 5,000 wells; on tables of ≤ 5,000 wells that is all of them.
    """
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
    if column not in df.columns:
        raise ValueError(f"cell-count QC needs a {column!r} column (per-well cell count)")
    counts = pd.to_numeric(df[column], errors="coerce")
    if counts.isna().any():
        raise ValueError(f"cell-count QC: {int(counts.isna().sum())} row(s) lack a {column}")
    log = log if log is not None else FilterLog()
    t = float(counts.quantile(quantile))
    keep = (counts >= t).to_numpy()
    ex = (df.loc[~keep, "Metadata_Well"].astype(str).tolist() if "Metadata_Well" in df.columns else [])
    log.add("qc_cell_count", "rows", int((~keep).sum()), int(keep.sum()),
            f"{column} below its {quantile:g} quantile ({t:g})", ex)
    return df.loc[keep]


def negcon_cosine_distance(x: np.ndarray) -> float:
    """Mean pairwise cosine distance ``1 - cos(x_i, x_k)`` over pairs ``i < k`` of rows."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norm > 0, norm, 1.0)
    s = u @ u.T
    iu = np.triu_indices(len(x), k=1)
    return float(np.mean(1.0 - s[iu]))


def qc_negcon_distance(
    df: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    max_deviation: float = 0.2,
    batch: str = BATCH_COLUMN,
    reference: str = "negcon",
    log: FilterLog | None = None,
) -> pd.DataFrame:
    """Drop batches whose negative controls are atypically spread (MorphoHELM batch QC).

    For batch ``b``: ``d_b`` = mean pairwise cosine distance between its negative-control
    profiles; a batch is dropped when ``|d_b - median_b(d_b)| > max_deviation`` (0.2).
    MorphoHELM states the rule ("negative-control cosine distance deviates by more than
    0.2") without code in its repository; this is baselens' reading of it. Batches with
    fewer than 2 controls cannot be judged and are kept (logged).
    """
    if batch not in df.columns:
        raise ValueError(f"negative-control QC needs a batch column {batch!r}")
    features = list(features) if features is not None else _agg.feature_columns(df)
    log = log if log is not None else FilterLog()
    ref = reference_mask(df, reference)
    x = df[features].to_numpy(dtype=np.float64)
    dist: dict[Any, float] = {}
    unjudged = []
    for b, idx in df.groupby(batch, sort=True, observed=True).indices.items():
        r = idx[ref[idx]]
        if len(r) < 2:
            unjudged.append(str(b))
            continue
        dist[b] = negcon_cosine_distance(x[r])
    if unjudged:
        log.add("qc_negcon_distance", "rows", 0, len(df),
                f"{len(unjudged)} {batch}(s) with < 2 {reference} rows kept unjudged", unjudged)
    if not dist:
        return df
    med = float(np.median(list(dist.values())))
    bad = [b for b, d in dist.items() if abs(d - med) > max_deviation]
    drop = df[batch].isin(bad).to_numpy()
    log.add("qc_negcon_distance", "rows", int(drop.sum()), int((~drop).sum()),
            f"{len(bad)} {batch}(s) whose {reference} mean cosine distance deviates by "
            f"> {max_deviation:g} from the median {med:.3f}",
            [f"{b} ({dist[b]:.3f})" for b in bad])
    return df.loc[~drop]


# ----------------------------------------------------------------------------- steps

Result = tuple[pd.DataFrame, list[str]]


def _new_features(out: pd.DataFrame, before: pd.DataFrame, features: Sequence[str]) -> list[str]:
    meta = [c for c in before.columns if c not in set(features)]
    return [c for c in out.columns if c not in set(meta) or c in set(features)]


def _s_aggregate(df, features, log, operation="mean", by=_agg.WELL_KEYS):
    out = _agg.aggregate(df, by=_as_list(by), operation=operation, features=features)
    log.add("aggregate", "rows", len(df) - len(out), len(out), f"{operation} over {', '.join(_as_list(by))}")
    return out, list(features)


def _s_consensus(df, features, log, operation="mean", by=_agg.PERTURBATION_KEYS, **kw):
    out = _agg.consensus(df, by=_as_list(by), operation=operation, features=features, **kw)
    log.add("consensus", "rows", len(df) - len(out), len(out), f"{operation} over {', '.join(_as_list(by))}")
    return out, list(features)


def _s_normalize(df, features, log, method="standardize", reference="negcon", by="Metadata_Plate", **kw):
    out = _norm.normalize(df, method=method, reference=reference, by=_by(by), features=features, log=log, **kw)
    return out, [f for f in features if f in out.columns]


def _s_feature_select(df, features, log, operations=_fs.DEFAULT_OPERATIONS, **kw):
    ops = operations.split("+") if isinstance(operations, str) else list(operations)
    out = _fs.feature_select(df, features=features, operations=ops, log=log, **kw)
    return out, [f for f in features if f in out.columns]


def _s_cell_count_filter(df, features, log, threshold=0.95, column=CELL_COUNT_COLUMN, **kw):
    out = _fs.feature_select(df, features=features, operations=["cell_count"], log=log,
                             cell_count=column, cell_count_threshold=float(threshold), **kw)
    return out, [f for f in features if f in out.columns]


def _s_pca(df, features, log, n_components=64, reference="all", solver="full", **kw):
    out = _tf.pca(df, int(n_components), features=features, reference=reference, solver=solver, log=log, **kw)
    return out, _new_features(out, df, features)


def _s_spherize(df, features, log, method="ZCA-cor", reference="negcon", by=None, **kw):
    out = _tf.spherize(df, features=features, method=method, reference=reference, by=_by(by), log=log, **kw)
    return out, _new_features(out, df, features)


def _s_tvn(df, features, log, coral_by=None, reference="negcon", by=None, **kw):
    out = _tf.tvn(df, features=features, coral_by=_by(coral_by), reference=reference, by=_by(by), log=log, **kw)
    return out, _new_features(out, df, features)


def _s_combat(df, features, log, batch=BATCH_COLUMN, **kw):
    out = _bc.combat(df, batch=batch, features=features, log=log, **kw)
    return out, [f for f in features if f in out.columns]


def _s_harmony(df, features, log, batch=BATCH_COLUMN, **kw):
    out = _bc.harmony(df, batch=batch, features=features, log=log, **kw)
    return out, list(features)


def _s_qc_cell_count(df, features, log, quantile=0.05, column=CELL_COUNT_COLUMN):
    return qc_cell_count(df, quantile=float(quantile), column=column, log=log), list(features)


def _s_qc_negcon(df, features, log, max_deviation=0.2, batch=BATCH_COLUMN, **kw):
    out = qc_negcon_distance(df, features=features, max_deviation=float(max_deviation), batch=batch, log=log, **kw)
    return out, list(features)


#: step name → (function, names of its positional arguments)
STEPS: dict[str, tuple[Callable[..., Result], tuple[str, ...]]] = {
    "aggregate": (_s_aggregate, ("operation", "by")),
    "consensus": (_s_consensus, ("operation", "by")),
    "normalize": (_s_normalize, ("method", "reference", "by")),
    "feature_select": (_s_feature_select, ("operations",)),
    "cell_count_filter": (_s_cell_count_filter, ("threshold", "column")),
    "pca": (_s_pca, ("n_components", "reference", "solver")),
    "spherize": (_s_spherize, ("method", "reference", "by")),
    "tvn": (_s_tvn, ("coral_by", "reference", "by")),
    "combat": (_s_combat, ("batch",)),
    "harmony": (_s_harmony, ("batch",)),
    "qc_cell_count": (_s_qc_cell_count, ("quantile", "column")),
    "qc_negcon_distance": (_s_qc_negcon, ("max_deviation", "batch")),
}


def _as_list(by) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def _by(by):
    if by is None or (isinstance(by, str) and by.lower() == "none"):
        return None
    if isinstance(by, str) and "," in by:
        return [b.strip() for b in by.split(",")]
    return by


def _value(text: str) -> Any:
    if text.lower() in ("none", "null", ""):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if "," in text:
        return [t.strip() for t in text.split(",")]
    return text


#: steps whose ``reference`` argument is what they are fitted on (and its default)
_REFERENCE_DEFAULT = {"normalize": "negcon", "feature_select": "all", "pca": "all",
                      "spherize": "negcon", "tvn": "negcon"}

#: feature_select operations that are validity filters, not statistics fitted across wells
VALIDITY_OPERATIONS = frozenset({"drop_na_columns", "drop_nonfinite", "variance_threshold",
                                 "blocklist"})

FIT_ON = ("none", "negcon", "all", "all+perturbation")


def step_fit_on(step: str | Mapping[str, Any]) -> str:
    """Which wells (and labels) a step is fitted on: one of :data:`FIT_ON`.

    ``"none"``: no statistic across wells; ``"negcon"``: the negative controls only;
    ``"all"``: every well (no labels); ``"all+perturbation"``: every well and biological
    labels (ComBat covariates). Module docstring: the table per step.
    """
    name, kwargs = parse_step(step)
    if name in _REFERENCE_DEFAULT:
        ref = str(kwargs.get("reference", _REFERENCE_DEFAULT[name]))
        return "negcon" if ref == "negcon" else "all"
    if name == "combat":
        return "all+perturbation" if list(kwargs.get("covariates", ()) or ()) else "all"
    if name in ("harmony", "cell_count_filter", "qc_cell_count"):
        return "all"
    if name == "qc_negcon_distance":
        return "negcon"
    return "none"


def _warns(step: str | Mapping[str, Any]) -> bool:
    name, kwargs = parse_step(step)
    fit_on = step_fit_on(step)
    if fit_on in ("none", "negcon") or name == "qc_cell_count":
        return False
    if name == "feature_select":
        ops = kwargs.get("operations", _fs.DEFAULT_OPERATIONS)
        ops = ops.split("+") if isinstance(ops, str) else list(ops)
        return any(op not in VALIDITY_OPERATIONS for op in ops)
    return True


def probe_warning(steps: str | Sequence[str | Mapping[str, Any]]) -> str:
    """The ``warning`` for grouped-probe scores of profiles made by ``steps``; ``""`` when
    every step is fitted on negative controls (or fits nothing, or is a validity filter).

    Example: ``"profile steps fitted on all wells, held-out wells included: pca:64:all:full
    (all); probe scores may be optimistic"``.
    """
    bad = [(s, step_fit_on(s)) for s in expand_steps(steps) if _warns(s)]
    if not bad:
        return ""
    labels = any(f == "all+perturbation" for _, f in bad)
    names = ", ".join(f"{_step_text(s)} ({f})" for s, f in bad)
    return ("profile steps fitted on all wells, held-out wells included"
            + (" and perturbation labels" if labels else "")
            + f": {names}; probe scores may be optimistic")


def _step_text(step: str | Mapping[str, Any]) -> str:
    if isinstance(step, str):
        return step
    name, kwargs = parse_step(step)
    return name + "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def parse_step(step: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``"pca:64"`` → ``("pca", {"n_components": 64})``; tables pass through (``step`` key).

    A table's ``fit_on`` (``"negcon"``/``"all"``) sets ``reference`` for the steps that
    have one (:data:`_REFERENCE_DEFAULT`); elsewhere it must equal the step's declared
    :func:`step_fit_on` (it documents the choice) or a ``ValueError`` says so.
    """
    if isinstance(step, Mapping):
        if "step" not in step:
            raise ValueError(f"a step table needs a 'step' key naming one of {sorted(STEPS)}: {dict(step)}")
        name, kwargs = str(step["step"]), {k: v for k, v in step.items() if k != "step"}
        if "fit_on" in kwargs:
            fit_on = str(kwargs.pop("fit_on"))
            if fit_on not in FIT_ON:
                raise ValueError(f"step {name!r}: fit_on must be one of {FIT_ON}, got {fit_on!r}")
            if name in _REFERENCE_DEFAULT and fit_on in ("negcon", "all"):
                if "reference" in kwargs and str(kwargs["reference"]) != fit_on:
                    raise ValueError(f"step {name!r}: fit_on={fit_on!r} contradicts "
                                     f"reference={kwargs['reference']!r}")
                kwargs["reference"] = fit_on
            elif name in STEPS and step_fit_on({"step": name, **kwargs}) != fit_on:
                raise ValueError(f"step {name!r} is fitted on "
                                 f"{step_fit_on({'step': name, **kwargs})!r}; it cannot be "
                                 f"fitted on {fit_on!r}")
    elif isinstance(step, str):
        name, *args = step.split(":")
        if name not in STEPS:
            raise ValueError(f"unknown profile step {name!r}; choose from {sorted(STEPS)} "
                             f"or a named profile {sorted(PROFILES)}")
        pos = STEPS[name][1]
        if len(args) > len(pos):
            raise ValueError(f"step {step!r}: {name} takes at most {len(pos)} argument(s) {pos}")
        kwargs = {k: _value(a) for k, a in zip(pos, args)}
    else:
        raise TypeError(f"a profile step is a string or a table, got {type(step).__name__}")
    if name not in STEPS:
        raise ValueError(f"unknown profile step {name!r}; choose from {sorted(STEPS)}")
    return name, kwargs


def expand_steps(steps: str | Sequence[str | Mapping[str, Any]]) -> list[str | Mapping[str, Any]]:
    """Resolve named profiles (``"morphohelm"`` or ``"profile:morphohelm"``) into steps."""
    if isinstance(steps, str):
        steps = [steps]
    out: list = []
    for s in steps:
        if isinstance(s, str):
            name = s.split(":", 1)[1] if s.startswith("profile:") else s
            if name in PROFILES:
                out.extend(expand_steps(PROFILES[name]))
                continue
            if s.startswith("profile:"):
                raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
        parse_step(s)  # validate early, before any work is done
        out.append(s)
    return out


def apply_profile(
    df: pd.DataFrame,
    features: Sequence[str],
    steps: str | Sequence[str | Mapping[str, Any]],
    log: FilterLog | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Apply ``steps`` in order; returns the new table and its feature columns.

    ``steps`` is a profile name, or a list of step strings / tables (module docstring).
    All steps are validated before the first one runs.
    """
    log = log if log is not None else FilterLog()
    resolved = expand_steps(steps)
    features = list(features)
    for s in resolved:
        name, kwargs = parse_step(s)
        fn = STEPS[name][0]
        try:
            df, features = fn(df, features, log, **kwargs)
        except TypeError as e:
            if "argument" not in str(e):
                raise
            raise ValueError(f"profile step {s!r}: {e}") from e
    return df, features
