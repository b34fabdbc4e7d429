"""Linear transforms of profiles: PCA, sphering (whitening) and typical variation normalization.

All solvers are deterministic (no randomized SVD: MorphoHELM found that randomized PCA made
their results non-reproducible).

* :func:`pca` — ``Z = (X - mean(X_R)) V_k`` with ``V_k`` the top-``k`` right singular vectors
  of the centred fitting rows ``X_R``; each component's sign is fixed so that its
  largest-|.| loading is positive (sklearn's ``svd_flip(u_based_decision=False)``), so
  the output equals ``sklearn.decomposition.PCA(svd_solver="full")``.
* :func:`spherize` — pycytominer's ``Spherize`` (Kessy, Lewin & Strimmer 2018, "Optimal
  whitening and decorrelation", Am. Stat. 72:309; arXiv:1512.00809). With ``Xc`` the
  centred (``-cor``: standardized, ddof = 0) fitting rows, ``Xc = U S V^T`` (full SVD),
  ``s_i -> s_i + eps`` (and, when ``n <= d``, singular values past the rank padded with
  ``s_r``): ``W_PCA = V diag(1/s) sqrt(n - 1)``, ``W_ZCA = W_PCA V^T``; ``Z = Xc' W``.
  ``ZCA-cor`` with ``eps = 1e-6`` is pycytominer's default.
* :func:`tvn` — typical variation normalization (Ando, McLean & Berndl 2017, bioRxiv
  161422) as in efaar-benchmarking 1.0's ``tvn_on_controls`` (Apache-2.0; Celik et al.
  2024, "Building, benchmarking, and exploring perturbative maps of transcriptional and
  morphological data"): standardize on controls, PCA fitted on the controls (all
  components), standardize on controls again, then optionally CORAL per batch
  (Sun, Feng & Saenko 2016): ``Z_b <- Z_b (Cov(Z_b[controls]) + lambda I)^(-1/2)``,
  ``lambda = 0.5``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import linalg

from baselens.profile.aggregate import feature_columns
from baselens.profile.log import FilterLog
from baselens.profile.normalize import reference_mask

SPHERIZE_METHODS = ("PCA", "ZCA", "PCA-cor", "ZCA-cor")


def _replace_features(df: pd.DataFrame, features: Sequence[str], values: np.ndarray,
                      names: Sequence[str]) -> pd.DataFrame:
    meta = df[[c for c in df.columns if c not in set(features)]]
    return pd.concat([meta, pd.DataFrame(values, columns=list(names), index=df.index)], axis=1)


def _groups(df: pd.DataFrame, by: str | Sequence[str] | None) -> list[tuple[object, np.ndarray]]:
    if by is None:
        return [("<all rows>", np.arange(len(df)))]
    missing = [c for c in ([by] if isinstance(by, str) else by) if c not in df.columns]
    if missing:
        raise ValueError(f"cannot group by {missing}: columns not in the table")
    return list(df.groupby(by, sort=True, observed=True).indices.items())


def _finite(x: np.ndarray, stage: str) -> None:
    if not np.isfinite(x).all():
        raise ValueError(f"{stage}: features hold NaN or inf; run feature_select "
                         "(drop_na_columns, drop_nonfinite) or normalize first")


def pca_fit(x: np.ndarray, n_components: int | None = None,
            solver: str = "full") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic PCA of ``x`` (rows = samples).

    Returns ``(mean, components (k, d), explained_variance (k,))``. ``solver``:
    ``"full"`` (SVD of the centred data, LAPACK gesdd) or ``"covariance_eigh"``
    (eigendecomposition of ``Xc^T Xc``; faster when n >> d, slightly less accurate for
    tiny eigenvalues). Signs follow sklearn's ``svd_flip(u_based_decision=False)``.
    """
    n, d = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    kmax = min(n, d)
    k = kmax if n_components is None else int(n_components)
    if not 1 <= k <= kmax:
        raise ValueError(f"n_components={k} must lie in [1, min(n_samples, n_features)={kmax}]")
    if solver == "full":
        _, s, vt = linalg.svd(xc, full_matrices=False, lapack_driver="gesdd")
        var = s ** 2 / max(n - 1, 1)
    elif solver == "covariance_eigh":
        evals, evecs = linalg.eigh(xc.T @ xc)
        order = np.argsort(evals)[::-1][:kmax]
        var = np.clip(evals[order], 0, None) / max(n - 1, 1)
        vt = evecs[:, order].T
    else:
        raise ValueError(f"PCA solver must be 'full' or 'covariance_eigh', got {solver!r}")
    vt = vt[:k]
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    return mean, vt * signs[:, None], var[:k]


def pca(
    df: pd.DataFrame,
    n_components: int,
    *,
    features: Sequence[str] | None = None,
    reference: str = "all",
    solver: str = "full",
    prefix: str = "PC",
    log: FilterLog | None = None,
) -> pd.DataFrame:
    """Project ``features`` on the first ``n_components`` principal components.

    The PCA is fitted on the ``reference`` rows (``"all"`` or ``"negcon"``) and applied to
    every row; the new columns are ``PC1..PCk``. At most
    ``k_max = min(n_ref - 1, n_features)`` components are kept: ``n_ref`` centred
    reference rows span at most ``n_ref - 1`` directions, so a further component has
    zero reference variance (a later ``normalize`` to the same controls would divide by
    ~1e-16). When fewer than ``n_components`` are kept the cap and its reason are logged.

    Raises
    ------
    ValueError
        If fewer than 2 reference rows exist (nothing to fit).
    """
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    x = df[features].to_numpy(dtype=np.float64)
    _finite(x, "pca")
    ref = reference_mask(df, reference)
    n_ref = int(ref.sum())
    if n_ref < 2:
        raise ValueError(f"pca: {n_ref} {reference} row(s) to fit on (need ≥ 2); mark controls with "
                         "Metadata_ControlType='negcon' or fit on all rows (pca:<k>:all)")
    kmax = min(n_ref - 1, len(features))
    k = min(int(n_components), kmax)
    mean, comps, var = pca_fit(x[ref], k, solver)
    z = (x - mean) @ comps.T
    if k >= n_components:
        note = ""
    elif n_ref - 1 < len(features):
        note = (f"; capped at {kmax} = {n_ref} {reference} rows - 1 (centred, they span at most "
                f"{kmax} directions; further components have zero {reference} variance), "
                f"{n_components} were asked")
    else:
        note = f"; only {kmax} exist, {n_components} were asked"
    log.add("pca", "features", len(features) - k, k,
            f"projected {len(features)} features on {k} principal components fitted on "
            f"{n_ref} {reference} rows ({solver} solver)" + note)
    return _replace_features(df, features, z, [f"{prefix}{i + 1}" for i in range(k)])


def spherize_fit(x: np.ndarray, method: str = "ZCA-cor", epsilon: float = 1e-6,
                 center: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycytominer's ``Spherize.fit``: returns ``(mean, scale, W)`` with ``Z = ((x-mean)/scale) W``."""
    if method not in SPHERIZE_METHODS:
        raise ValueError(f"spherize method must be one of {SPHERIZE_METHODS}, got {method!r}")
    n, d = x.shape
    if method.endswith("-cor"):
        mean, scale = x.mean(axis=0), x.std(axis=0)
        if np.any(scale == 0):
            raise ValueError("spherize: a feature is constant in the fitting rows; remove "
                             "zero-variance features first (feature_select: variance_threshold)")
    else:
        mean = x.mean(axis=0) if center else np.zeros(d)
        scale = np.ones(d)
    xt = (x - mean) / scale
    r = np.linalg.matrix_rank(xt)
    if not (r == d or (center and r == n - 1) or (not center and r == n)):
        raise ValueError(f"spherize: the fitting matrix is not full rank (n = {n}, d = {d}, "
                         f"rank = {r}); remove linearly dependent features (e.g. "
                         "feature_select: correlation_threshold) or fit on more rows")
    _, s, vt = np.linalg.svd(xt, full_matrices=True)
    if n <= d:
        s = np.concatenate((s[:r], np.repeat(s[r - 1], d - r)))
    s = s + epsilon
    w = (vt / s[:, None]).T * np.sqrt(n - 1)
    if method.startswith("ZCA"):
        w = w @ vt
    return mean, scale, w


def spherize(
    df: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    method: str = "ZCA-cor",
    epsilon: float = 1e-6,
    reference: str = "negcon",
    by: str | Sequence[str] | None = None,
    min_reference: int = 2,
    log: FilterLog | None = None,
) -> pd.DataFrame:
    """Whiten ``features`` with a transform fitted on the ``reference`` rows of each ``by`` group.

    ``by=None`` fits one transform on the whole table (pycytominer's ``normalize(...,
    method="spherize")``). ``ZCA*`` keeps the feature names (the output stays close to
    the input); ``PCA*`` names the outputs ``PC1..PCd``.
    """
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    x = df[features].to_numpy(dtype=np.float64)
    _finite(x, "spherize")
    ref = reference_mask(df, reference)
    out = np.empty_like(x)
    for g, idx in _groups(df, by):
        r = idx[ref[idx]]
        if len(r) < min_reference:
            raise ValueError(f"spherize: group {g!r} has {len(r)} {reference} row(s) "
                             f"(need ≥ {min_reference})")
        mean, scale, w = spherize_fit(x[r], method, epsilon)
        out[idx] = ((x[idx] - mean) / scale) @ w
    names = features if method.startswith("ZCA") else [f"PC{i + 1}" for i in range(len(features))]
    log.add("spherize", "features", 0, len(features),
            f"{method} whitening (eps={epsilon:g}) fitted on {reference} rows per {by or 'table'}")
    return _replace_features(df, features, out, names)


def _standardize_on(x: np.ndarray, ref: np.ndarray, groups) -> np.ndarray:
    out = x.copy()
    for _, idx in groups:
        r = idx[ref[idx]]
        mu, sd = x[r].mean(axis=0), x[r].std(axis=0)
        sd[sd == 0] = 1.0  # sklearn StandardScaler's _handle_zeros_in_scale
        out[idx] = (x[idx] - mu) / sd
    return out


def tvn(
    df: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    reference: str = "negcon",
    by: str | Sequence[str] | None = None,
    coral_by: str | Sequence[str] | None = None,
    coral_lambda: float = 0.5,
    rel_tol: float = 1e-10,
    prefix: str = "TVN",
    log: FilterLog | None = None,
) -> pd.DataFrame:
    """Typical variation normalization on controls (efaar-benchmarking's recipe).

    1. standardize every row on the ``reference`` rows (per ``by`` group; efaar: the
       whole table, ``by=None``);
    2. PCA fitted on the reference rows, keeping every component (those with variance
       below ``rel_tol`` × the largest — the null space when there are fewer controls than
       features — are dropped and logged, as they would be scaled by ~1/0);
    3. standardize on the reference rows again (per ``by``);
    4. if ``coral_by`` is set, CORAL per group: ``Z_b <- Z_b (C_b + lambda I)^(-1/2)``, with
       ``C_b`` the covariance (ddof = 1) of the group's reference rows.
    """
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    x = df[features].to_numpy(dtype=np.float64)
    _finite(x, "tvn")
    ref = reference_mask(df, reference)
    if ref.sum() < 2:
        raise ValueError(f"tvn needs ≥ 2 {reference} rows, found {int(ref.sum())}")
    groups = _groups(df, by)
    z = _standardize_on(x, ref, groups)
    mean, comps, var = pca_fit(z[ref], None, "full")
    keep = var > rel_tol * var.max()
    z = (z - mean) @ comps[keep].T
    k = int(keep.sum())
    log.add("tvn", "features", len(features) - k, k,
            f"PCA on {int(ref.sum())} {reference} rows kept {k} components with non-zero "
            f"control variance (of {len(features)} features)")
    z = _standardize_on(z, ref, groups)
    if coral_by is not None:
        for g, idx in _groups(df, coral_by):
            r = idx[ref[idx]]
            if len(r) < 2:
                raise ValueError(f"tvn CORAL: group {g!r} has {len(r)} {reference} row(s) (need ≥ 2)")
            cov = np.cov(z[r], rowvar=False, ddof=1) + coral_lambda * np.eye(k)
            evals, evecs = linalg.eigh(cov)
            z[idx] = z[idx] @ (evecs @ np.diag(evals ** -0.5) @ evecs.T)
    return _replace_features(df, features, z, [f"{prefix}{i + 1}" for i in range(k)])
