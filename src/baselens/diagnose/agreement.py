"""Agreement between representations: do two methods see the same relations?

Two complementary measures on the *perturbation profiles* of each representation (the
mean of the normalized well profiles of every non-control perturbation, as in
relationship recall):

Similarity-ranking agreement (arXiv 2603.13377, Fig. 1b)
    For each representation, the cosine similarity of every pair of perturbations
    ``s_ij = <x_i, x_j> / (|x_i| |x_j|)``, ``i < j``. The agreement of two representations
    is the Spearman correlation of their ``s_ij`` over all pairs: 1 when both rank the
    pairs identically, ≈ 0 when their rankings are unrelated. “Deep Learning for
    BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) found pretrained and
    untrained ViTs ranking gene pairs almost identically — they exploit the same
    relational signal.

Linear CKA (Kornblith et al. 2019, "Similarity of neural network representations
revisited", ICML)
    With ``X`` (n × p) and ``Y`` (n × q) the perturbation profiles of two representations
    over the same ``n`` perturbations, ``H = I - 11ᵀ/n`` the centering matrix and the
    centered Gram matrices ``K = H X Xᵀ H``, ``L = H Y Yᵀ H``::

        CKA(X, Y) = <K, L>_F / (‖K‖_F ‖L‖_F)
                  = ‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F)        (Xc = H X, Yc = H Y)

    CKA is 1 for identical representations and invariant to orthogonal transformations
    and isotropic scaling of either (``CKA(X, c X Q) = 1``), but not to arbitrary
    invertible linear maps. For independent representations it is close to 0; its
    (positive) bias is about ``sqrt(p q) / n`` for ``p, q ≪ n`` random features, so read
    small values on few perturbations with care.

Both are computed over the perturbations present in both representations
(``n_perturbations``); a representation with fewer than 3 perturbations gets NaN.

Closest baseline (:func:`closest_baselines`, ``diagnostics/closest_baseline.parquet``)
    For every model and reference, the baseline whose similarity rankings agree most
    with its own: ``argmax_b spearman(model, b)`` over the baselines ``b`` with a finite
    value (linear CKA where the table has no Spearman column); ties go to the
    alphabetically first ``(method, layer)``. A model that agrees closely with a baseline
    has mostly learned what the baseline measures. The report's "agrees most with" lines
    are these rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "AGREEMENT_COLUMNS",
    "CLOSEST_BASELINE_COLUMNS",
    "agreement",
    "closest_baselines",
    "linear_cka",
    "perturbation_matrix",
    "similarity_ranking_spearman",
]

AGREEMENT_COLUMNS = ["method_a", "layer_a", "method_b", "layer_b", "spearman", "cka",
                     "n_perturbations"]
#: Columns of ``diagnostics/closest_baseline.parquet``.
CLOSEST_BASELINE_COLUMNS = ["method", "layer", "method_kind", "baseline", "baseline_layer",
                            "measure", "value", "spearman", "cka", "n_perturbations"]
PERT = "Metadata_Perturbation"


def perturbation_matrix(profiles: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Mean well profile of every non-control perturbation (rows sorted by name).

    Controls are wells whose ``Metadata_ControlType`` is non-empty (``negcon``,
    ``poscon``); non-finite feature values count as 0 (the negative-control mean after
    normalization).
    """
    feats = list(features)
    if "Metadata_ControlType" in profiles.columns:
        ct = profiles["Metadata_ControlType"]
        treated = ct.isna() | ct.astype(str).isin(["", "nan", "None", "trt"])
        profiles = profiles[treated.to_numpy()]
    x = profiles[feats].to_numpy(dtype=np.float64)
    x = np.where(np.isfinite(x), x, 0.0)
    df = pd.DataFrame(x, columns=feats)
    df[PERT] = profiles[PERT].astype(str).to_numpy()
    return df.groupby(PERT, sort=True)[feats].mean()


def _cosine(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    xn = x / np.where(norm > 0, norm, 1.0)
    return xn @ xn.T


def _upper(m: np.ndarray) -> np.ndarray:
    return m[np.triu_indices(len(m), k=1)]


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v)  # average ranks for ties


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def similarity_ranking_spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of the pairwise cosine similarities of the rows of ``x`` and
    ``y`` (same rows, same order): ``spearman({s^X_ij}, {s^Y_ij})`` over ``i < j``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError("x and y need the same rows")
    if len(x) < 3:
        return float("nan")
    return _pearson(_ranks(_upper(_cosine(x))), _ranks(_upper(_cosine(y))))


def _centered_gram(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0, keepdims=True)
    return xc @ xc.T  # = H X Xᵀ H


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError("x and y need the same rows")
    k, l_ = _centered_gram(x), _centered_gram(y)
    den = np.linalg.norm(k) * np.linalg.norm(l_)
    return float(np.sum(k * l_) / den) if den > 0 else float("nan")


def agreement(profile_sets: Sequence, *, include_diagonal: bool = True) -> pd.DataFrame:
    """Spearman similarity-ranking agreement and linear CKA for every pair of profile sets.

    ``profile_sets``: objects with ``method, layer, profiles, features`` (e.g.
    :class:`baselens.diagnose.run.ProfileSet`). One row per unordered pair ``a ≤ b`` in the
    given order (the diagonal, always 1, included unless ``include_diagonal=False``).
    Rankings and centered Gram matrices are computed once per set when every set covers
    the same perturbations (the usual case), else per pair on the shared perturbations.
    """
    mats = [perturbation_matrix(ps.profiles, ps.features) for ps in profile_sets]
    names = [tuple(m.index) for m in mats]
    common = set(names[0]) if names else set()
    for n in names[1:]:
        common &= set(n)
    same = all(set(n) == common for n in names)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def prepared(i: int, rows: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """(ranks of the pairwise similarities, unit-norm centered Gram) of set i."""
        if rows is None and i in cache:
            return cache[i]
        x = mats[i].to_numpy() if rows is None else mats[i].loc[rows].to_numpy()
        r = _ranks(_upper(_cosine(x))) if len(x) >= 3 else np.array([])
        k = _centered_gram(x)
        nk = np.linalg.norm(k)
        k = k / nk if nk > 0 else np.full_like(k, np.nan)
        if rows is None:
            cache[i] = (r, k)
        return r, k

    rows = []
    for i, a in enumerate(profile_sets):
        for j in range(i if include_diagonal else i + 1, len(profile_sets)):
            b = profile_sets[j]
            if same:
                shared = None
                n = len(names[i])
            else:
                shared = sorted(set(names[i]) & set(names[j]))
                n = len(shared)
            if n < 3:
                rho = cka = float("nan")
            else:
                ra, ka = prepared(i, shared)
                rb, kb = prepared(j, shared)
                rho = _pearson(ra, rb)
                cka = float(np.sum(ka * kb))
            rows.append([a.method, a.layer, b.method, b.layer, rho, cka, n])
    out = pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
    out["n_perturbations"] = out["n_perturbations"].astype("int64")
    return out


def _key(method, layer) -> tuple[str, str]:
    return str(method), "default" if layer is None or pd.isna(layer) else str(layer)


def closest_baselines(agreement_table: pd.DataFrame | None,
                      kinds: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """The baseline each model and reference agrees most with (module docstring).

    Parameters
    ----------
    agreement_table
        :func:`agreement`'s table (``diagnostics/agreement.parquet``).
    kinds
        ``(method, layer) → method_kind`` of every representation (a layer missing from
        it takes its method's kind: see :func:`baselens.diagnose.run.method_kinds`);
        ``model`` and ``reference`` get a row, ``baseline`` are the candidates.

    Returns
    -------
    DataFrame
        :data:`CLOSEST_BASELINE_COLUMNS`, one row per model or reference with a finite
        agreement to some baseline, in order of first appearance in ``agreement_table``:
        ``measure`` (``spearman``, else ``cka``) decided, ``value`` is its value for the
        chosen pair, ``spearman``/``cka``/``n_perturbations`` the pair's row.
    """
    cols = CLOSEST_BASELINE_COLUMNS
    ag = agreement_table
    if ag is None or ag.empty or not {"method_a", "method_b"} <= set(ag.columns):
        return pd.DataFrame(columns=cols)
    measure = "spearman" if "spearman" in ag.columns else "cka"
    if measure not in ag.columns:
        return pd.DataFrame(columns=cols)
    ag = ag.copy()
    for c in ("spearman", "cka", "n_perturbations"):  # numbers, also when written as text
        if c in ag.columns:
            ag[c] = pd.to_numeric(ag[c], errors="coerce").astype(np.float64)

    def kind(k: tuple[str, str]) -> str:
        if k in kinds:
            return kinds[k]
        return next((v for (m, _), v in kinds.items() if m == k[0]), "model")

    pairs = {}  # (representation, baseline) → row, both orientations of every pair
    order: list[tuple[str, str]] = []
    for r in ag.to_dict("records"):
        a, b = _key(r["method_a"], r.get("layer_a")), _key(r["method_b"], r.get("layer_b"))
        for x in (a, b):
            if x not in order:
                order.append(x)
        for x, y in ((a, b), (b, a)):
            if x != y and kind(x) in ("model", "reference") and kind(y) == "baseline":
                pairs.setdefault(x, []).append((y, r))
    rows = []
    for k in order:
        cand = [(y, r) for y, r in pairs.get(k, []) if np.isfinite(r[measure])]
        if not cand:
            continue
        # largest value; ties: the alphabetically first baseline
        y, r = min(cand, key=lambda c: (-float(c[1][measure]), c[0]))
        rows.append(dict(method=k[0], layer=k[1], method_kind=kind(k), baseline=y[0],
                         baseline_layer=y[1], measure=measure, value=float(r[measure]),
                         spearman=float(r.get("spearman", np.nan)),
                         cka=float(r.get("cka", np.nan)),
                         n_perturbations=float(r.get("n_perturbations", np.nan))))
    out = pd.DataFrame(rows, columns=cols)
    for c in ("value", "spearman", "cka", "n_perturbations"):
        out[c] = out[c].astype(np.float64)
    return out
