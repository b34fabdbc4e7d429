"""One registry for every representation (timm-style): baselines, models, references.

An extractor turns a batch of sites into per-site features, one table per *layer*
(a network's stage, or ``"default"`` for single-output baselines)::

    @register("pixel_mean", kind="baseline", description="channel-wise mean intensity")
    class PixelMean:
        def __init__(self, **params): ...
        def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]: ...

Tissue representations (:mod:`baselens.extract.tissue`) register here too, with
``modality="tissue"``: they turn the spots of a
:class:`~baselens.data.hest.TissueDataset` into per-spot features instead of a
:class:`SiteBatch` into per-site ones. ``get_extractor(name, **params)`` builds one;
``list_extractors(modality=None)`` lists them.
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

#: What an extractor reads: imaging sites of a screen (Cell Painting wells) or the spots
#: of a tissue section (H&E patch + nuclei; :mod:`baselens.extract.tissue`).
MODALITIES = ("screen", "tissue")

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
    #: the kind for given params, where the params decide it (a network's ``weights``:
    #: random weights make a baseline, whatever the name or label); ``None`` = ``kind``
    kind_for: Callable[[dict], str] | None = None
    #: ``"screen"`` (sites of a Cell Painting screen) or ``"tissue"`` (spots)
    modality: str = "screen"

    def kind_of(self, params: dict | None = None) -> str:
        """The kind of this extractor built with ``params`` (see ``kind_for``)."""
        if self.kind_for is None:
            return self.kind
        kind = self.kind_for(dict(params or {}))
        if kind not in KINDS:
            raise ValueError(f"extractor {self.name!r}: kind_for gave {kind!r}, not one of {KINDS}")
        return kind


_REGISTRY: dict[str, ExtractorSpec] = {}


def register(name: str, *, kind: str, description: str = "",
             kind_for: Callable[[dict], str] | None = None,
             modality: str = "screen") -> Callable:
    """Class/function decorator registering an extractor factory under ``name``.

    Parameters
    ----------
    name : str
        The name configs use (``[[methods]] name``); one name, one implementation.
    kind : str
        One of :data:`KINDS`.
    description : str
        One line for ``baselens list`` (default: the factory's first docstring line).
    kind_for : callable, optional
        ``kind_for(params) -> kind`` where the params change what the representation is
        (an untrained network is a baseline: :func:`weights_kind`).
    modality : str
        One of :data:`MODALITIES`: what the extractor reads.

    Returns
    -------
    callable
        The decorator (it returns the factory unchanged).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def deco(factory: Callable[..., Extractor]) -> Callable[..., Extractor]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"extractor {name!r} is already registered")
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = ExtractorSpec(name, kind, factory, doc, kind_for, modality)
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


def method_kind(name: str, params: dict | None = None) -> str:
    """The ``method_kind`` of extractor ``name`` built with ``params``.

    The kind follows what the representation is, not its name or label: any network with
    random (untrained) weights is a ``"baseline"`` (“Deep Learning for BioImaging: What Are
    We Learning?”, arXiv 2603.13377, ICML 2026, treats untrained networks as baselines a
    pretrained model must beat), only trained weights make a ``"model"``.
    """
    return get_spec(name).kind_of(params)


def weights_kind(default_weights: str | None = "random") -> Callable[[dict], str]:
    """``kind_for`` of a network extractor: ``"baseline"`` when ``params["weights"]`` (or
    ``default_weights`` when absent) is ``"random"``, else ``"model"``."""

    def kind_for(params: dict) -> str:
        w = params.get("weights", default_weights)
        return "baseline" if w is None or str(w).strip().lower() == "random" else "model"

    return kind_for


def get_extractor(name: str, **params) -> Extractor:
    """Build the extractor registered as ``name`` with its parameters."""
    spec = get_spec(name)
    try:
        return spec.factory(**params)
    except TypeError as exc:
        raise TypeError(f"bad parameters for extractor {name!r}: {exc}") from None


def list_extractors(modality: str | None = None) -> list[ExtractorSpec]:
    """Registered extractors by name, all or those of one ``modality``.

    Parameters
    ----------
    modality : str, optional
        ``"screen"`` or ``"tissue"`` (:data:`MODALITIES`); ``None`` lists every one.

    Returns
    -------
    list of ExtractorSpec
    """
    _load_builtins()
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return [_REGISTRY[k] for k in sorted(_REGISTRY)
            if modality is None or _REGISTRY[k].modality == modality]
