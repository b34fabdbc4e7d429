"""Pixel-level baselines: global per-channel intensity statistics (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) §3.1).

``pixel_mean`` (channel-wise means) and ``pixel_stats`` (channel-wise mean, standard
deviation and skewness) ignore spatial layout and morphology entirely. They are the
lower bound every image representation should beat: whatever a task scores with
them is explained by global intensity distributions alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, register

__all__ = ["PixelMean", "PixelStats", "channel_means", "channel_moments"]


def _check_images(batch: SiteBatch) -> np.ndarray:
    images = batch.images
    if images is None:
        raise ValueError("pixel baselines need images, but batch.images is None")
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"batch.images must have shape (N, C, H, W), got {images.shape}")
    if images.shape[1] != len(batch.channels):
        raise ValueError(
            f"batch.images has {images.shape[1]} channels but batch.channels names "
            f"{len(batch.channels)}: {list(batch.channels)}"
        )
    return images


def channel_means(image: np.ndarray) -> np.ndarray:
    """Mean of every channel of one site, ``(C, H, W)`` → ``(C,)``, in float64 (the
    ``mean`` of :func:`channel_moments` without the higher moments)."""
    return np.asarray(image, dtype=np.float64).reshape(image.shape[0], -1).mean(axis=1)


def channel_moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and skewness of every channel of one site.

    Parameters
    ----------
    image : ndarray, shape (C, H, W)
        One site; computed in float64 whatever the input dtype.

    Returns
    -------
    mean, std, skew : ndarray, shape (C,)
        With :math:`x` the :math:`P = H W` pixels of a channel and
        :math:`m_k = \\frac{1}{P}\\sum_i (x_i - \\bar x)^k`:

        * ``mean`` :math:`= \\bar x`
        * ``std`` :math:`= \\sqrt{m_2}` (population, ``ddof=0``, as ``numpy.std``)
        * ``skew`` :math:`= m_3 / m_2^{3/2}`, the biased Fisher-Pearson coefficient
          (``scipy.stats.skew(x, bias=True)``).

        A constant channel (:math:`m_2` at or below float64 resolution relative to the
        mean, the same test scipy uses) has skewness **0**, not NaN: a flat
        distribution is treated as symmetric, so features stay finite.
    """
    x = np.asarray(image, dtype=np.float64).reshape(image.shape[0], -1)
    mean = x.mean(axis=1)
    d = x - mean[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    m3 = (d2 * d).mean(axis=1)
    std = np.sqrt(m2)
    flat = m2 <= (np.finfo(np.float64).resolution * np.abs(mean)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(flat, 0.0, m3 / np.where(flat, 1.0, m2) ** 1.5)
    return mean, std, skew


@register("pixel_mean", kind="baseline", description="channel-wise mean intensity (arXiv 2603.13377 §3.1)")
class PixelMean:
    """Channel-wise mean intensity, one feature per channel: ``pixel_mean_<channel>``.

    Intensities are the raw values of ``batch.images`` (uint16 units), averaged in
    float64. No parameters.
    """

    needs_images: bool = True

    def __init__(self) -> None:
        pass

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        images = _check_images(batch)
        n, c = images.shape[:2]
        means = np.empty((n, c), dtype=np.float64)
        for i in range(n):  # per site: bounded float64 memory for large batches
            means[i] = channel_means(images[i])
        cols = [f"pixel_mean_{ch}" for ch in batch.channels]
        return {DEFAULT_LAYER: pd.DataFrame(means, columns=cols)}


@register(
    "pixel_stats",
    kind="baseline",
    description="channel-wise mean, standard deviation and skewness (arXiv 2603.13377 §3.1)",
)
class PixelStats:
    """Channel-wise mean, standard deviation and skewness (see :func:`channel_moments`).

    Columns, all means first, then all standard deviations, then all skewnesses:
    ``pixel_mean_<ch>``, ``pixel_std_<ch>``, ``pixel_skew_<ch>``. Standard deviation is
    the population one (``ddof=0``); skewness of a constant channel is defined as 0.
    No parameters.
    """

    needs_images: bool = True

    def __init__(self) -> None:
        pass

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        images = _check_images(batch)
        n, c = images.shape[:2]
        out = np.empty((n, 3, c), dtype=np.float64)
        for i in range(n):
            out[i] = np.stack(channel_moments(images[i]))
        cols = [f"pixel_{stat}_{ch}" for stat in ("mean", "std", "skew") for ch in batch.channels]
        return {DEFAULT_LAYER: pd.DataFrame(out.reshape(n, 3 * c), columns=cols)}
