"""Which optional extras a representation, task or config needs, and whether they are here.

``pip install baselens`` is the core: profile tables and precomputed embeddings, metrics,
tasks, diagnostics, the report, ``compare`` and the Python API (numpy, scipy, pandas,
pyarrow, scikit-learn, dask). Everything that reads images or runs a network is an extra
(``pyproject.toml``):

========== ============================================================ =====================
extra      enables                                                      modules checked
========== ============================================================ =====================
images     image reading, nuclei segmentation, pixel baselines,          skimage, tifffile,
           ``cell_count``, ``single_conv``, ``classic`` (cp_measure),    imagecodecs, imageio,
           synthetic screens                                             cp_measure
networks   pretrained and untrained CNNs/ViTs, OpenPhenom, the GCN/EGNN  torch, torchvision,
           encoders of ``cell_graph`` and the tissue graphs              timm, safetensors
xgboost    ``models = ["xgboost"]`` of bioactivity / gene expression     xgboost
tissue     HEST-1k patches and expression, ``.h5ad`` embeddings         h5py
========== ============================================================ =====================

A config that names a method whose extra is missing fails at validation, before any
work, with one line naming the extra (:func:`check_requirements`). Availability is judged
with :func:`importlib.util.find_spec` (nothing is imported).

This module imports nothing of the pipeline at import time (``run`` and the CLI use it).
"""

from __future__ import annotations

import importlib.util
from typing import Iterable, Mapping

__all__ = [
    "EXTRAS",
    "MissingExtraError",
    "available_extras",
    "check_requirements",
    "import_error_hint",
    "install_hint",
    "method_extras",
    "missing_extras",
    "requirements",
    "requirements_text",
]

#: extra -> the import names it provides (what :func:`missing_extras` looks for;
#: threadpoolctl, also in ``images``, comes with scikit-learn and is not checked)
EXTRAS: dict[str, tuple[str, ...]] = {
    "images": ("skimage", "tifffile", "imagecodecs", "imageio", "cp_measure"),
    "networks": ("torch", "torchvision", "timm", "safetensors"),
    "xgboost": ("xgboost",),
    "tissue": ("h5py",),
}

#: extractor module (``baselens.extract.<module>``) -> extras beyond reading images
_MODULE_EXTRAS: dict[str, tuple[str, ...]] = {
    "networks": ("networks",),
    "openphenom": ("networks",),
}

#: tissue representations (``baselens.extract.tissue``, on in-memory patches) -> extras;
#: the others (pixel_stats, tissue_count, ...) need only the core, networks need networks
_TISSUE_METHOD_EXTRAS: dict[str, tuple[str, ...]] = {
    "tissue_gcn": ("networks",),
    "tissue_egnn": ("networks",),
    "structure_image": ("networks",),  # torch resize + an encoder
}

#: ``cell_graph`` variants that run torch encoders (the others are numpy)
_CELL_GRAPH_TORCH = {"gcn", "egnn"}


class MissingExtraError(ValueError):
    """A config needs an extra that is not installed (the message is the pip line)."""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-installed package
        return False


def missing_modules(extra: str) -> list[str]:
    """The import names of ``extra`` that cannot be found in this environment.

    Parameters
    ----------
    extra : str
        A key of :data:`EXTRAS`.

    Returns
    -------
    list of str
        Empty when the extra is installed.
    """
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return [m for m in EXTRAS[extra] if not _importable(m)]


def missing_extras(extras: Iterable[str]) -> list[str]:
    """The extras among ``extras`` that are not (fully) installed, in :data:`EXTRAS` order."""
    wanted = set(extras)
    return [e for e in EXTRAS if e in wanted and missing_modules(e)]


def available_extras() -> dict[str, bool]:
    """``{extra: installed}`` for every extra."""
    return {e: not missing_modules(e) for e in EXTRAS}


def install_hint(extras: Iterable[str]) -> str:
    """The pip line that installs ``extras``: ``pip install "baselens[images,networks]"``."""
    names = [e for e in EXTRAS if e in set(extras)]
    return f'pip install "baselens[{",".join(names)}]"'


def import_error_hint(exc: ImportError) -> str | None:
    """One line for an ImportError of an extra's module (the command line's safety net
    when work that validation could not foresee, e.g. ``inspect`` on an image folder,
    needs an extra); ``None`` for any other module.

    Parameters
    ----------
    exc : ImportError
        The error; its ``name`` is the module that could not be imported.

    Returns
    -------
    str or None
    """
    top = (getattr(exc, "name", None) or "").split(".")[0]
    for extra, modules in EXTRAS.items():
        if top in modules:
            return f"this needs baselens[{extra}] ({top} is not installed): {install_hint([extra])}"
    return None


def method_extras(name: str, params: Mapping | None = None, *, tissue: bool = False) -> tuple[str, ...]:
    """The extras a representation needs (empty: the core is enough).

    Parameters
    ----------
    name : str
        A registered extractor (``baselens list``) or, with ``tissue``, a tissue
        representation (``baselens.extract.tissue.TISSUE_METHODS``) or a network.
    params : mapping, optional
        The method's ``params`` (``cell_graph`` variants, ``precomputed`` path).
    tissue : bool
        Whether the method runs in a tissue config (on patches already in memory).

    Returns
    -------
    tuple of str
        Extras in :data:`EXTRAS` order; unknown names need nothing here (the config's
        name check reports them).
    """
    params = dict(params or {})
    need: set[str] = set()
    if tissue:
        from baselens.extract.tissue import TISSUE_METHODS, _network_names

        if name in TISSUE_METHODS:
            need.update(_TISSUE_METHOD_EXTRAS.get(name, ()))
        elif name in _network_names():
            need.add("networks")
        return tuple(e for e in EXTRAS if e in need)
    from baselens.extract.registry import get_spec

    try:
        spec = get_spec(name)
    except KeyError:
        return ()
    module = spec.factory.__module__.rsplit(".", 1)[-1]
    need.update(_MODULE_EXTRAS.get(module, ()))
    if getattr(spec.factory, "needs_images", True):
        need.add("images")  # reads pixels (tifffile/imageio), segments, measures
    if name == "cell_graph":
        variants = params.get("variants")
        if variants is None or _CELL_GRAPH_TORCH & set(variants):
            need.add("networks")
    if name == "precomputed" and _names_h5ad(params) and not _importable("anndata"):
        need.add("tissue")
    return tuple(e for e in EXTRAS if e in need)


def _names_h5ad(params: Mapping) -> bool:
    paths = [params.get("path")]
    if isinstance(params.get("layers"), Mapping):
        paths += list(params["layers"].values())
    return any(isinstance(p, str) and p.lower().endswith(".h5ad") for p in paths)


def requirements(methods: Iterable[Mapping], data: Mapping | None = None,
                 tasks: Mapping | None = None, *, tissue: bool = False) -> dict[str, list[str]]:
    """What each extra is needed for, in a (run or tissue) config.

    Parameters
    ----------
    methods : iterable of mappings
        The config's ``[[methods]]`` (``name``, optional ``label`` and ``params``).
    data : mapping, optional
        The config's ``[data]`` (``synthetic`` screens are written with tifffile;
        ``hest`` reads HEST-1k ``.h5`` patches).
    tasks : mapping, optional
        The config's ``[tasks]`` (``bioactivity.models`` / ``gene_expression.model``
        naming ``xgboost``).
    tissue : bool
        A tissue config (``[data.synthetic_tissue]`` / ``[data.hest]``).

    Returns
    -------
    dict
        ``{extra: [what needs it, as named in the config]}``, in :data:`EXTRAS` order;
        empty when the core is enough.
    """
    by_extra: dict[str, list[str]] = {e: [] for e in EXTRAS}
    data = data or {}
    if "synthetic" in data:
        by_extra["images"].append("[data.synthetic]")
    if "synthetic_tissue" in data:
        by_extra["images"].append("[data.synthetic_tissue]")  # slide thumbnails (Pillow)
    if "hest" in data:
        by_extra["tissue"].append("[data.hest]")
        by_extra["images"].append("[data.hest]")
    for m in methods:
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
            continue  # the config's own checks name the bad entry
        label = m.get("label", m["name"])
        for e in method_extras(m["name"], m.get("params"), tissue=tissue):
            by_extra[e].append(str(label))
    tasks = tasks or {}
    bio = tasks.get("bioactivity")
    if isinstance(bio, Mapping) and "xgboost" in (bio.get("models") or ()):
        by_extra["xgboost"].append("tasks.bioactivity.models")
    ge = tasks.get("gene_expression")
    if isinstance(ge, Mapping) and ge.get("model") == "xgboost":
        by_extra["xgboost"].append("tasks.gene_expression.model")
    return {e: v for e, v in by_extra.items() if v}


def check_requirements(methods: Iterable[Mapping], data: Mapping | None = None,
                       tasks: Mapping | None = None, *, tissue: bool = False) -> None:
    """Raise :class:`MissingExtraError` (one line, the pip line in it) when the config
    needs an extra that is not installed; do nothing otherwise."""
    need = requirements(methods, data, tasks, tissue=tissue)
    missing = missing_extras(need)
    if not missing:
        return
    parts = []
    for e in missing:
        absent = missing_modules(e)
        partly = f"; {', '.join(absent)} missing" if len(absent) < len(EXTRAS[e]) else ""
        parts.append(f"baselens[{e}] (for {_short(need[e])}{partly})")
    raise MissingExtraError(f"this environment lacks {' and '.join(parts)}: "
                            f"{install_hint(missing)}, or remove those entries from the config")


def _short(items: list[str], n: int = 4) -> str:
    return ", ".join(items) if len(items) <= n else \
        f"{', '.join(items[:n])} and {len(items) - n} more"


def requirements_text(methods: Iterable[Mapping], data: Mapping | None = None,
                      tasks: Mapping | None = None, *, tissue: bool = False) -> str:
    """What a config would need, as lines for ``baselens inspect CONFIG.toml``."""
    need = requirements(methods, data, tasks, tissue=tissue)
    if not need:
        return "needs: the core only (pip install baselens)"
    missing = missing_extras(need)
    lines = [f"needs: {install_hint(need)}"]
    for e, users in need.items():
        state = "missing here" if e in missing else "installed"
        lines.append(f"  baselens[{e}] ({state}): {', '.join(users)}")
    if missing:
        lines.append(f"install the missing ones: {install_hint(missing)}")
    return "\n".join(lines)
