"""Batch correction: ComBat (own implementation) and Harmony (optional, GPL-3 harmonypy).

ComBat — Johnson, Li & Rabinovic (2007), "Adjusting batch effects in microarray expression
data using empirical Bayes methods", Biostatistics 8:118-127; follows ``sva::ComBat``
(parametric priors, ``mean.only``). For feature ``g``, sample ``j`` of batch ``i``:

    Y_ijg = alpha_g + X_ij beta_g + gamma_ig + delta_ig eps_ijg

1. Least squares of ``Y`` on ``[batch indicators, covariates]``;
   ``alpha_g = Σ_i (n_i / n) B_ig``; pooled variance
   ``sigma2_g = mean_j (Y_jg - (D B)_jg)^2`` (divides by n, as sva).
2. Standardize: ``Z = (Y - alpha - X beta) / sigma``.
3. Batch estimates: ``gamma_hat_ig = mean_j Z_ijg``; ``delta2_hat_ig = var_j Z_ijg`` (ddof 1).
4. Priors per batch over features: ``gamma ~ N(gamma_bar_i, tau2_i)`` with
   ``gamma_bar_i = mean_g gamma_hat_ig``, ``tau2_i = var_g gamma_hat_ig`` (ddof 1);
   ``delta2 ~ InvGamma(a_i, b_i)`` by moments: with ``m, s2`` the mean and variance
   (ddof 1) of ``delta2_hat_i``, ``a = (2 s2 + m^2)/s2``, ``b = (m s2 + m^3)/s2``.
5. Posterior means, iterated to relative change < 1e-4:
   ``gamma* = (n_i tau2 gamma_hat + delta2* gamma_bar) / (n_i tau2 + delta2*)``,
   ``delta2* = (b + ½ Σ_j (Z_ijg - gamma*)^2) / (n_i/2 + a - 1)``.
6. ``Y* = sigma (Z - gamma*) / sqrt(delta2*) + alpha + X beta``.

``mean_only=True`` fixes ``delta2* = 1`` and, as sva does, uses
``gamma* = (tau2 gamma_hat + gamma_bar) / (tau2 + 1)`` (needed when a batch has a single
sample).
``reference_batch`` (sva's ``ref.batch``): that batch's mean and variance anchor the
others and its rows are returned unchanged.

Harmony — Korsunsky et al. (2019), Nat. Methods 16:1289, via ``harmonypy``
(GPL-3.0-or-later, so an optional extra: ``pip install baselens[harmony]``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from baselens.profile.aggregate import feature_columns
from baselens.profile.log import FilterLog

BATCH_COLUMN = "Metadata_Batch"


def _design(df: pd.DataFrame, batch: str, covariates: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list]:
    codes, levels = pd.factorize(df[batch].astype(str), sort=True)
    onehot = np.eye(len(levels))[codes]
    cov_cols = []
    for c in covariates:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col):
            cov_cols.append(col.to_numpy(dtype=np.float64)[:, None])
        else:  # categorical: treatment coding, first level dropped
            d = pd.get_dummies(col.astype(str), drop_first=True, dtype=float).to_numpy()
            cov_cols.append(d)
    design = np.hstack([onehot] + cov_cols) if cov_cols else onehot
    return design, codes, list(levels)


def combat_array(
    y: np.ndarray,
    batch_codes: np.ndarray,
    design: np.ndarray,
    *,
    mean_only: bool = False,
    reference: int | None = None,
    conv: float = 1e-4,
    max_iter: int = 1000,
) -> np.ndarray:
    """Parametric ComBat on ``y`` (samples × features); ``design`` starts with the batch one-hot."""
    n, g = y.shape
    nb = int(batch_codes.max()) + 1
    n_batch = np.bincount(batch_codes, minlength=nb).astype(float)
    b_hat, *_ = np.linalg.lstsq(design, y, rcond=None)
    if reference is None:
        grand_mean = (n_batch / n) @ b_hat[:nb]
        resid = y - design @ b_hat
        var_pooled = (resid ** 2).mean(axis=0)
    else:
        grand_mean = b_hat[reference]
        rr = batch_codes == reference
        resid = (y - design @ b_hat)[rr]
        var_pooled = (resid ** 2).mean(axis=0)
    cov_part = design.copy()
    cov_part[:, :nb] = 0
    stand_mean = grand_mean[None, :] + cov_part @ b_hat
    sd = np.sqrt(var_pooled)
    z = (y - stand_mean) / sd
    gamma_hat = np.vstack([z[batch_codes == i].mean(axis=0) for i in range(nb)])
    if mean_only:
        delta_hat = np.ones((nb, g))
    else:
        delta_hat = np.vstack([z[batch_codes == i].var(axis=0, ddof=1) for i in range(nb)])
    gamma_bar = gamma_hat.mean(axis=1)
    t2 = gamma_hat.var(axis=1, ddof=1)
    m = delta_hat.mean(axis=1)
    s2 = delta_hat.var(axis=1, ddof=1)
    gamma_star = np.empty_like(gamma_hat)
    delta_star = np.ones_like(delta_hat)
    for i in range(nb):
        zi = z[batch_codes == i]
        ni = n_batch[i]
        if mean_only:
            # sva (and neuroCombat) call postmean(g_hat, g_bar, n = 1, d = 1, t2) here
            gamma_star[i] = (t2[i] * gamma_hat[i] + gamma_bar[i]) / (t2[i] + 1.0)
            continue
        a = (2 * s2[i] + m[i] ** 2) / s2[i]
        b = (m[i] * s2[i] + m[i] ** 3) / s2[i]
        g_old, d_old = gamma_hat[i].copy(), delta_hat[i].copy()
        for _ in range(max_iter):
            g_new = (t2[i] * ni * gamma_hat[i] + d_old * gamma_bar[i]) / (t2[i] * ni + d_old)
            sum2 = ((zi - g_new) ** 2).sum(axis=0)
            d_new = (0.5 * sum2 + b) / (ni / 2.0 + a - 1.0)
            # sva's it.sol criterion (denominator without abs, as in sva and neuroCombat)
            change = max(np.max(np.abs(g_new - g_old) / g_old),
                         np.max(np.abs(d_new - d_old) / d_old))
            g_old, d_old = g_new, d_new
            if change < conv:
                break
        gamma_star[i], delta_star[i] = g_old, d_old
    if reference is not None:
        gamma_star[reference] = 0.0
        delta_star[reference] = 1.0
    out = (z - gamma_star[batch_codes]) / np.sqrt(delta_star[batch_codes]) * sd + stand_mean
    if reference is not None:
        out[batch_codes == reference] = y[batch_codes == reference]
    return out


def combat(
    df: pd.DataFrame,
    *,
    batch: str = BATCH_COLUMN,
    features: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
    mean_only: bool = False,
    reference_batch: object | None = None,
    log: FilterLog | None = None,
) -> pd.DataFrame:
    """ComBat-correct ``features`` for ``batch`` (see the module docstring).

    ``covariates`` are biological columns whose effect must be preserved (numeric columns
    enter as is, others as treatment-coded dummies), e.g. ``Metadata_Perturbation`` when
    every perturbation appears in several batches. Features that are constant within some
    batch (ComBat divides by the within-batch variance) are removed and logged.
    """
    if batch not in df.columns:
        raise ValueError(f"ComBat needs a batch column {batch!r}")
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    design, codes, levels = _design(df, batch, covariates)
    if len(levels) < 2:
        log.add("combat", "features", 0, len(features), f"only one {batch}; nothing to correct")
        return df.copy()
    sizes = np.bincount(codes)
    if not mean_only and sizes.min() < 2:
        raise ValueError(f"ComBat: batch {levels[int(np.argmin(sizes))]!r} has a single row; "
                         "use mean_only=True (sva's mean.only) or merge it with another batch")
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ValueError("ComBat: covariates are confounded with the batch (design not full "
                         "rank); drop covariates that are constant within batches")
    y = df[features].to_numpy(dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("ComBat: features hold NaN or inf; run feature_select first")
    const = np.zeros(len(features), dtype=bool)
    for i in range(len(levels)):
        yi = y[codes == i]
        if len(yi) > 1:
            const |= np.ptp(yi, axis=0) == 0
    if mean_only:
        const |= np.ptp(y, axis=0) == 0
    keep = [f for f, c in zip(features, const) if not c]
    log.add("combat", "features", int(const.sum()), len(keep),
            f"constant within some {batch} (cannot be scaled)",
            [f for f, c in zip(features, const) if c])
    if not keep:
        raise ValueError("ComBat: every feature is constant within some batch")
    ref = None if reference_batch is None else levels.index(str(reference_batch))
    out = combat_array(y[:, ~const], codes, design, mean_only=mean_only, reference=ref)
    meta = df[[c for c in df.columns if c not in set(features)]]
    return pd.concat([meta, pd.DataFrame(out, columns=keep, index=df.index)], axis=1)


def harmony(
    df: pd.DataFrame,
    *,
    batch: str | Sequence[str] = BATCH_COLUMN,
    features: Sequence[str] | None = None,
    random_state: int = 0,
    log: FilterLog | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Harmony integration of ``features`` (usually PCs) over ``batch`` via harmonypy.

    harmonypy is GPL-3.0-or-later and is imported only here; extra ``kwargs`` go to
    ``harmonypy.run_harmony`` (e.g. ``theta``, ``max_iter_harmony``).
    """
    try:
        import harmonypy
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Harmony batch correction needs the optional harmonypy package (GPL-3.0): "
            "pip install 'baselens[harmony]'") from e
    features = list(features) if features is not None else feature_columns(df)
    log = log if log is not None else FilterLog()
    vars_use = [batch] if isinstance(batch, str) else list(batch)
    x = df[features].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("Harmony: features hold NaN or inf; run feature_select first")
    meta = df[vars_use].astype(str).reset_index(drop=True)
    ho = harmonypy.run_harmony(x, meta, vars_use, random_state=random_state, verbose=False, **kwargs)
    z = np.asarray(ho.Z_corr)
    if z.shape != x.shape:  # harmonypy < 0.2 returned features × cells
        z = z.T
    log.add("harmony", "features", 0, len(features), f"Harmony over {', '.join(vars_use)}")
    rest = df[[c for c in df.columns if c not in set(features)]]
    return pd.concat([rest, pd.DataFrame(z, columns=features, index=df.index)], axis=1)
