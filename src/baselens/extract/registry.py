"""One registry for every representation (timm-style): baselines, models, references.

An extractor turns a batch of sites into per-site features, one table per *layer*
(a network's stage, or ``"default"`` for single-output baselines)::

    @register("pixel_mean", kind="baseline", description="channel-wise mean intensity")
    class PixelMean:
        def __init__(self, **params): ...
        def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]: ...

``get_extractor(name, **params)`` builds one; ``list_extractors()`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import pandas as pd

#: Kinds of representations. Baselines are what every model is measured against;
#: "reference" marks upper bounds such as the simulator's ground truth; "null" marks
#: chance-level controls such as random features.
KINDS = ("baseline", "model", "reference", "null")

DEFAULT_LAYER = "default"


@dataclass
class SiteBatch:
    """A batch of imaging sites.

    Attributes
    ----------
    images : ndarray, shape (N, C, H, W), float32
        Raw intensities (uint16 units, not rescaled), channels in ``channels`` order.
        May be ``None`` for extractors that declare ``needs_images = False``.
    channels : list of str
        Channel names, e.g. ``["DNA", "ER", "RNA", "AGP", "Mito"]``.
    meta : DataFrame
        N rows of ``Metadata_*`` columns, aligned with ``images``.
    context : dict
        Run-wide inputs (e.g. the synthetic ground-truth folder); the same for every batch.
    cache : dict
        Work shared by the extractors of one batch (each batch starts empty).
    """

    images: np.ndarray | None
    channels: list[str]
    meta: pd.DataFrame
    context: dict = field(default_factory=dict)
    #: results shared by the extractors that run on this batch (e.g. nuclei labels,
    #: :func:`baselens.extract.segmentation.batch_nuclei`); new for every batch
    cache: dict = field(default_factory=dict, repr=False)


class Extractor(Protocol):
    """What a registered extractor instance provides."""

    #: whether ``batch.images`` must be loaded (False for e.g. ground_truth, plate_layout)
    needs_images: bool

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        """Return ``{layer: features}``; each DataFrame has N rows (batch order) and
        only feature columns (float), no metadata."""
        ...


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    kind: str
    factory: Callable[..., Extractor]
    description: str


_REGISTRY: dict[str, ExtractorSpec] = {}


def register(name: str, *, kind: str, description: str = "") -> Callable:
    """Class/function decorator registering an extractor factory under ``name``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(factory: Callable[..., Extractor]) -> Callable[..., Extractor]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"extractor {name!r} is already registered")
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = ExtractorSpec(name, kind, factory, doc)
        return factory

    return deco


def _load_builtins() -> None:
    # importing the package registers the built-in extractors
    import baselens.extract  # noqa: F401


def get_spec(name: str) -> ExtractorSpec:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown extractor {name!r}; registered extractors: {known}") from None


def get_extractor(name: str, **params) -> Extractor:
    """Build the extractor registered as ``name`` with its parameters."""
    spec = get_spec(name)
    try:
        return spec.factory(**params)
    except TypeError as exc:
        raise TypeError(f"bad parameters for extractor {name!r}: {exc}") from None


def list_extractors() -> list[ExtractorSpec]:
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
