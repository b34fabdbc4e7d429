"""Run configuration: a TOML file, validated with clear errors for unknown keys.

Example (every key optional except a data source)::

    title = "My screen vs baselines"

    [data]
    load_data = "load_data.parquet"        # or: [data.synthetic] preset = "demo"
    channels = ["DNA", "ER", "RNA", "AGP", "Mito"]
    illum = false
    annotations = ["CORUM.txt", "HuMAP.txt"]   # entity1,entity2 pair tables

    [[methods]]
    name = "pixel_stats"                  # a registered extractor (`baselens list`)

    [[methods]]
    name = "single_conv"
    label = "single_conv_seed1"           # how it is called in the results
    params = { seed = 1 }

    [profile]
    aggregate = "mean"                    # site -> well: mean | median
    normalize = "standardize"             # per plate: standardize | mad_robustize | none
    reference = "negcon"                  # negcon | all

    [tasks.replicate_retrieval]
    null_size = 10000
    threshold = 0.05

    [tasks.relationship_recall]
    thresholds = [[0.05, 0.95]]
    upper_tail = 0.05

    [execution]
    batch_size = 32                       # sites per extractor call
    chunk_size = 64                       # sites per cached chunk (one plate at most)
    executor = "dask"                     # dask (default) | processes | serial
    workers = 8                           # default: one per core (one per GPU for GPU models)
    scheduler = "tcp://host:8786"         # an existing dask cluster instead of a LocalCluster

A tissue run (H&E spots with gene expression; :class:`baselens.run.units.SpotUnits`)
uses the same schema with a tissue data source, tissue representations and the
gene-expression task instead of a screen's; ``[profile]`` does not apply::

    title = "H&E representations vs baselines"
    [data.synthetic_tissue]               # or [data.hest]
    preset = "demo"                       # demo | quick, plus SyntheticTissueConfig overrides
    # [data.hest]
    # root = "${data_dir}/bench_data"; task = "IDC"; coarsen = "1nn"; genes = [...]
    [[methods]]
    name = "tissue_count"                 # `baselens list`, modality tissue
    [tasks.gene_expression]
    n_components = 256
    model = "ridge"                       # ridge | xgboost
    [diagnostics]
    max_spots = 400                       # spots subsampled for agreement / dimensionality

Variables in strings: ``${data_dir}`` and ``${annotations_dir}`` anywhere in a string value
(paths in ``[data]``, method ``params``) are replaced before validation. ``data_dir`` is
``baselens run --data-dir DIR``, else ``data/<dataset>`` under the current directory, where
``dataset = "jump-cp"`` is a top-level key (what ``baselens download DATASET --out
data/DATASET`` wrote); ``annotations_dir`` is ``--annotations-dir``, else
``${data_dir}/annotations``. Both become absolute paths. See ``protocols/`` and
``docs/protocols.md``.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __import__("sys").version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration problem, with the offending key named."""


# Schema: key -> type (or nested dict schema). "methods" is a list of tables.
_METHOD_SCHEMA = {"name": str, "label": str, "params": dict, "profile": dict}
_SCHEMA: dict[str, Any] = {
    "title": str,
    "dataset": str,  # names the default ${data_dir}: data/<dataset> under the current directory
    "data": {
        "load_data": str,
        "root": str,
        "channels": list,
        "illum": bool,
        "path_map": dict,
        "channel_map": dict,  # {channel name: channel as named in the table}, e.g. {DNA = "ch5"}
        "annotations": list,
        "bioactivity": str,  # Metadata_Perturbation, assay, active (, assay_type)
        "targets": str,  # Metadata_Plate, Metadata_Well + continuous per-well targets
        "perturbation_metadata": str,  # Metadata_Perturbation + Metadata_* to join (e.g. Metadata_moa)
        "synthetic": dict,  # validated by SyntheticConfig.from_dict
        # tissue spots (run.units.SpotUnits): one of these instead of load_data/synthetic
        "synthetic_tissue": dict,  # validated by SyntheticTissueConfig.from_dict
        "hest": {"root": str, "task": str, "genes": list, "sample_ids": list,
                 "n_genes": int, "coarsen": str, "grid": str},
    },
    "methods": list,
    "profile": {"aggregate": str, "normalize": str, "reference": str, "steps": (str, list)},
    "tasks": dict,  # validated against the task functions' signatures (run.tasks)
    "diagnostics": {"max_spots": int, "enabled": bool},  # tissue runs: the spot subsample
    # extraction: see baselens.run.execution (executor: "serial" | "processes" | "dask";
    # scheduler: address of an existing dask cluster; chunk_size: sites per cached chunk)
    "execution": {"batch_size": int, "prefetch": int, "read_workers": int, "workers": int,
                  "executor": str, "scheduler": str, "chunk_size": int,
                  "dashboard_address": str},
}

DEFAULT_METHODS = [
    {"name": "pixel_mean"},
    {"name": "pixel_stats"},
    {"name": "cell_count"},
    {"name": "single_conv"},
    # CellProfiler-style features: a fast subset for the demo budget; every group, object
    # and channel is available (see baselens.extract.classic)
    {"name": "classic", "params": {
        "objects": ["Cells"], "groups": ["intensity", "texture", "radial"],
        "group_channels": {"texture": ["Mito"], "radial": ["RNA"]}, "gray_levels": 16,
        "edge_measurements": False, "aggregations": ["median"]}},
    {"name": "plate_layout"},
    {"name": "cell_graph", "params": {"variants": ["points", "gcn", "egnn", "image"],
                                      "encoder_params": {"n_filters": 32}}},
    # untrained networks (arXiv 2603.13377, "Deep Learning for BioImaging"): four stages
    # each; 112 px inputs keep the demo in budget
    {"name": "vit_small_patch16_224", "label": "vit_s16_random",
     "params": {"weights": "random", "seed": 0, "channels": "expand",
                "intensity": "image_percentile", "geometry": "resize", "input_size": 112}},
    {"name": "resnet50", "label": "resnet50_random",
     "params": {"weights": "random", "seed": 0, "channels": "expand",
                "intensity": "image_percentile", "geometry": "resize", "input_size": 112}},
    {"name": "random"},
    {"name": "ground_truth"},
]


def _check(d: dict, schema: dict, where: str) -> None:
    for key, value in d.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown key {key!r} in {where or 'the top level'}{hint} "
                f"(allowed: {', '.join(sorted(schema))})"
            )
        expected = schema[key]
        name = f"{where}.{key}" if where else key
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a table, got {type(value).__name__}")
            _check(value, expected, name)
        elif isinstance(expected, tuple):
            if not isinstance(value, expected):
                names = " or ".join(t.__name__ for t in expected)
                raise ConfigError(f"{name} must be {names}, got {value!r}")
        elif expected is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{name} must be {expected.__name__}, got {value!r}")


@dataclass
class RunConfig:
    """A validated run configuration (see the module docstring for the TOML form)."""

    title: str = "baselens run"
    data: dict = field(default_factory=dict)
    methods: list[dict] = field(default_factory=lambda: [dict(m) for m in DEFAULT_METHODS])
    profile: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    execution: dict = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    diagnostics: dict = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """``"spot"`` for tissue (``[data.hest]`` / ``[data.synthetic_tissue]``), else
        ``"site"`` (:mod:`baselens.run.units`)."""
        return "spot" if is_tissue_config({"data": self.data}) else "site"

    @property
    def gene_expression(self) -> dict:
        """``[tasks.gene_expression]`` of a tissue run."""
        return dict(self.tasks.get("gene_expression", {}))

    @classmethod
    def from_dict(cls, d: dict, base_dir: str | os.PathLike | None = None,
                  variables: dict[str, str | os.PathLike | None] | None = None) -> "RunConfig":
        d = substitute_variables(d, config_variables(d, variables))
        _check(d, _SCHEMA, "")
        if is_tissue_config(d):
            return cls._from_tissue_dict(d, base_dir)
        if "diagnostics" in d:
            raise ConfigError("[diagnostics] applies to tissue runs ([data.hest] or "
                              "[data.synthetic_tissue]); remove it from a screen's config")
        if "gene_expression" in d.get("tasks", {}):
            raise ConfigError("tasks.gene_expression scores tissue spots ([data.hest] or "
                              "[data.synthetic_tissue]); a screen's tasks are listed by "
                              "`baselens list`")
        methods = d.get("methods", [dict(m) for m in DEFAULT_METHODS])
        _check_method_tables(methods)
        data = d.get("data", {})
        if "load_data" in data and "synthetic" in data:
            raise ConfigError("data: give either load_data or synthetic, not both")
        if "load_data" not in data and "synthetic" not in data:
            data = {**data, "synthetic": {"preset": "demo"}}
        if "synthetic" in data:
            _validate_synthetic(data["synthetic"])
        cfg = cls(
            title=d.get("title", "baselens run"),
            data=data,
            methods=methods,
            profile=d.get("profile", {}),
            tasks=d.get("tasks", {}),
            execution=d.get("execution", {}),
            base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
        )
        cfg._check_values()
        cfg.methods = [cfg._resolve_method_paths(m) for m in cfg.methods]
        from baselens.run.tasks import validate_tasks

        validate_tasks(cfg.tasks)
        check_extras(cfg.methods, cfg.data, cfg.tasks)
        return cfg

    def _check_values(self) -> None:
        from baselens.extract.registry import get_spec

        for i, m in enumerate(self.methods):
            _check_method(m, f"methods[{i}]")
        choices = {"aggregate": ("mean", "median"),
                   "normalize": ("standardize", "mad_robustize", "robustize", "center", "none"),
                   "reference": ("negcon", "all")}
        profiles = [("profile", self.profile)] + [
            (f"methods[{i}].profile", m["profile"]) for i, m in enumerate(self.methods) if "profile" in m]
        for where, prof in profiles:
            _check(prof, _SCHEMA["profile"], where)
            for key, allowed in choices.items():
                if key in prof and prof[key] not in allowed:
                    raise ConfigError(f"{where}.{key} must be one of {allowed}, got {prof[key]!r}")
            if "steps" in prof:
                from baselens.profile.protocols import expand_steps, parse_step

                try:
                    for step in expand_steps(prof["steps"]):
                        parse_step(step)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{where}.steps: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike,
                  variables: dict[str, str | os.PathLike | None] | None = None) -> "RunConfig":
        return load_toml_config(cls, path, variables)

    def _resolve_method_paths(self, m: dict) -> dict:
        """File-path parameters of an extractor (its ``PATH_PARAMS``, e.g. precomputed's
        ``path``/``layers``/``metadata``) resolved against the config's folder, like
        ``[data]`` paths: a config works from any current directory."""
        from baselens.extract.registry import get_spec

        names = getattr(get_spec(m["name"]).factory, "PATH_PARAMS", ())
        params = m.get("params") or {}
        if not names or not any(k in params for k in names):
            return m
        new = dict(params)
        for k in names:
            v = new.get(k)
            if isinstance(v, str):
                new[k] = str(self.resolve(v))
            elif isinstance(v, dict):
                new[k] = {lk: str(self.resolve(lv)) if isinstance(lv, str) else lv
                          for lk, lv in v.items()}
        return {**m, "params": new}

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    def to_dict(self) -> dict:
        d = {"title": self.title, "data": self.data, "methods": self.methods,
             "profile": self.profile, "tasks": self.tasks, "execution": self.execution}
        if self.unit == "spot":
            d = {k: v for k, v in d.items() if k != "profile"}
            d["diagnostics"] = self.diagnostics
        return d

    @classmethod
    def _from_tissue_dict(cls, d: dict, base_dir) -> "RunConfig":
        """The tissue form of the schema (:mod:`baselens.run.units`, ``SpotUnits``):
        one of ``[data.synthetic_tissue]`` / ``[data.hest]``, tissue representations,
        ``[tasks.gene_expression]``, ``[diagnostics]``; no ``[profile]`` (a spot is its own
        profile)."""
        data = d.get("data", {})
        screen = sorted(set(data) - {"synthetic_tissue", "hest"})
        if screen:
            raise ConfigError(f"data: {', '.join(screen)} describe a screen; a tissue run "
                              "takes only [data.synthetic_tissue] or [data.hest]")
        if ("synthetic_tissue" in data) == ("hest" in data):
            raise ConfigError("data: give exactly one of [data.synthetic_tissue] or [data.hest]")
        if "profile" in d:
            raise ConfigError("[profile] does not apply to tissue spots (each spot is its own "
                              "profile); remove it")
        if "synthetic_tissue" in data:
            try:
                synthetic_tissue_config(data["synthetic_tissue"])
            except (ValueError, TypeError, KeyError) as exc:
                raise ConfigError(f"data.synthetic_tissue: {exc}") from None
        else:
            h = data["hest"]
            if "root" not in h:
                raise ConfigError("data.hest needs a root (the HEST-1k or bench_data folder)")
            if h.get("coarsen", "none") not in _COARSEN_CHOICES:
                raise ConfigError(f"data.hest.coarsen must be one of {_COARSEN_CHOICES}, "
                                  f"got {h['coarsen']!r}")
        methods = d.get("methods", [dict(m) for m in DEFAULT_TISSUE_METHODS])
        _check_method_tables(methods, tissue=True)
        _check_method_names(methods)
        tasks = d.get("tasks", {})
        other = sorted(set(tasks) - {"gene_expression"})
        if other:
            raise ConfigError(f"unknown task {other[0]!r} in [tasks] of a tissue run (known: "
                              "gene_expression)")
        ge = tasks.get("gene_expression", {})
        _check(ge, _GENE_EXPRESSION_KEYS, "tasks.gene_expression")
        if ge.get("model", "ridge") not in _MODEL_CHOICES:
            raise ConfigError(f"tasks.gene_expression.model must be one of {_MODEL_CHOICES}, "
                              f"got {ge['model']!r}")
        if isinstance(ge.get("alpha"), str) and ge["alpha"] != "hest":
            raise ConfigError(f"tasks.gene_expression.alpha must be 'hest' or a number, "
                              f"got {ge['alpha']!r}")
        check_extras(methods, data, tasks, tissue=True)  # before any work
        return cls(title=d.get("title", "baselens tissue run"), data=data,
                   methods=[dict(m) for m in methods], tasks=tasks,
                   diagnostics=d.get("diagnostics", {}), execution=d.get("execution", {}),
                   base_dir=Path(base_dir) if base_dir is not None else Path.cwd())


def _check_method_tables(methods: list, *, tissue: bool = False) -> None:
    """Each ``[[methods]]`` entry is a table with a ``name`` and method keys only (no
    ``profile`` for tissue spots); labels are distinct."""
    labels: set[str] = set()
    for i, m in enumerate(methods):
        if not isinstance(m, dict) or (tissue and "name" not in m):
            raise ConfigError(f"methods[{i}] must be a table with a 'name'")
        if tissue and "profile" in m:
            raise ConfigError(f"methods[{i}].profile does not apply to tissue spots")
        _check(m, _METHOD_SCHEMA, f"methods[{i}]")
        if "name" not in m:
            raise ConfigError(f"methods[{i}] needs a 'name' (see `baselens list`)")
        label = m.get("label", m["name"])
        if label in labels:
            raise ConfigError(f"two methods are labelled {label!r}; give one a distinct 'label'")
        labels.add(label)


def check_extras(methods: list[dict], data: dict, tasks: dict, *, tissue: bool = False) -> None:
    """A method, data source or task whose optional extra is not installed fails here,
    before any work, with one line naming the extra (``pip install "baselens[networks]"``)."""
    from baselens._extras import MissingExtraError, check_requirements

    try:
        check_requirements(methods, data, tasks, tissue=tissue)
    except MissingExtraError as exc:
        raise ConfigError(str(exc)) from None


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def config_variables(d: dict, given: dict | None = None) -> dict[str, str]:
    """``${...}`` values for a config: ``data_dir`` and ``annotations_dir`` (absolute).

    ``given`` (e.g. the CLI's ``--data-dir``) wins; ``data_dir`` defaults to
    ``./data/<dataset>`` when the config names a ``dataset``; ``annotations_dir`` to
    ``<data_dir>/annotations``. Relative paths are taken from the current directory.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    out = {k: str(Path(v).expanduser().resolve()) for k, v in given.items()}
    if "data_dir" not in out and isinstance(d.get("dataset"), str) and d["dataset"]:
        out["data_dir"] = str((Path.cwd() / "data" / d["dataset"]).resolve())
    if "annotations_dir" not in out and "data_dir" in out:
        out["annotations_dir"] = str(Path(out["data_dir"]) / "annotations")
    return out


def substitute_variables(d: Any, variables: dict[str, str], where: str = "") -> Any:
    """Replace ``${name}`` in every string of a parsed config (recursively).

    Raises :class:`ConfigError` naming the key for an unknown or unset variable.
    """
    if isinstance(d, dict):
        return {k: substitute_variables(v, variables, f"{where}.{k}" if where else str(k))
                for k, v in d.items()}
    if isinstance(d, list):
        return [substitute_variables(v, variables, f"{where}[{i}]") for i, v in enumerate(d)]
    if not isinstance(d, str) or "${" not in d:
        return d

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name in variables:
            return variables[name]
        if name in ("data_dir", "annotations_dir"):
            raise ConfigError(f"{where} uses ${{{name}}} but no data folder is known: pass "
                              "--data-dir DIR (or set a top-level `dataset` key: data/<dataset>)")
        raise ConfigError(f"{where}: unknown variable ${{{name}}} "
                          f"(known: {', '.join('${%s}' % k for k in sorted(variables)) or 'none'})")

    return _VARIABLE.sub(one, d)


def load_toml_config(cls, path: str | os.PathLike, variables: dict | None = None):
    """``cls.from_dict`` of a TOML file (relative paths from its folder); every error is a
    :class:`ConfigError` that names the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return cls.from_dict(d, base_dir=path.parent, variables=variables)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


#: ``weights`` values people write that name no checkpoint baselens can fetch.
_VAGUE_WEIGHTS = {"imagenet", "imagenet1k", "imagenet-1k", "imagenet_1k", "in1k", "default",
                  "true", "yes", "pretrain", "trained", "untrained", "none", "scratch"}


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


def _accepted_params(factory) -> list[str] | None:
    """Keyword parameters an extractor factory takes (``None``: it takes any)."""
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return None
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        # the per-architecture network factories pass everything on to Network
        from baselens.extract import networks

        if getattr(factory, "__doc__", None) == networks.Network.__doc__:
            params = inspect.signature(networks.Network).parameters
            return [n for n in params if n != "arch"]
        return None
    return [n for n, p in params.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _check_method(m: dict, where: str) -> None:
    """An extractor name and its ``params``, in the config's words (did-you-mean)."""
    from baselens.extract.registry import get_spec, list_extractors

    try:
        spec = get_spec(m["name"])
    except KeyError:
        names = [s.name for s in list_extractors()]
        raise ConfigError(f"{where}.name: unknown extractor {m['name']!r}"
                          f"{_did_you_mean(m['name'], names)} (`baselens list` shows all "
                          f"{len(names)})") from None
    if spec.modality != "screen":
        raise ConfigError(f"{where}.name: {m['name']!r} is a {spec.modality} representation "
                          "(it reads the spots of [data.hest] / [data.synthetic_tissue]), not "
                          "the sites of a screen; `baselens list` groups them by modality")
    params = m.get("params") or {}
    accepted = _accepted_params(spec.factory)
    if accepted is not None:
        for key in params:
            if key not in accepted:
                raise ConfigError(f"{where}.params: {m['name']!r} has no parameter {key!r}"
                                  f"{_did_you_mean(key, accepted)} (parameters: "
                                  f"{', '.join(accepted)})")
    w = params.get("weights")
    if isinstance(w, str) and w.strip().lower() in _VAGUE_WEIGHTS:
        raise ConfigError(
            f"{where}.params.weights = {w!r} does not name a checkpoint; accepted values: "
            "\"random\" (untrained), \"pretrained\" (the architecture's published weights, "
            "ImageNet for the timm/torchvision networks; see `baselens list`), "
            "\"timm:<tag>\", \"hf-hub:<org>/<repo>\", an https URL, or a path to a "
            ".safetensors/.pt file")


def _validate_synthetic(d: dict) -> None:
    from baselens.data.synthetic import SyntheticConfig

    try:
        synthetic_config(d, SyntheticConfig)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"data.synthetic: {exc}") from None


def synthetic_config(d: dict, cls=None):
    """Build a SyntheticConfig from ``{"preset": "demo"|"quick", **overrides}``."""
    if cls is None:
        from baselens.data.synthetic import SyntheticConfig as cls
    return cls.from_preset(d)



# --------------------------------------------------------------------------- tissue
# Tissue runs ([data.synthetic_tissue] / [data.hest]) use the same RunConfig and schema;
# these are the tissue-only defaults and choices (RunConfig._from_tissue_dict).

#: Representations of the HEST synthetic protocol (``protocols/hest_synthetic.toml``).
DEFAULT_TISSUE_METHODS: list[dict] = [
    {"name": "tissue_ground_truth", "label": "ground_truth"},
    {"name": "tissue_random", "label": "random"},
    {"name": "tissue_pixel_stats", "label": "pixel_stats"},
    {"name": "tissue_count"},
    {"name": "structure_image"},
    {"name": "tissue_gcn", "label": "tissue_gcn_random", "params": {"trained": False}},
    {"name": "tissue_gcn", "label": "tissue_gcn_trained", "params": {"trained": True}},
    {"name": "tissue_egnn", "label": "tissue_egnn_random", "params": {"trained": False}},
    {"name": "tissue_egnn", "label": "tissue_egnn_trained", "params": {"trained": True}},
    {"name": "resnet18", "label": "resnet18_random",
     "params": {"weights": "random", "input": "image"}},
]

_GENE_EXPRESSION_KEYS = {"n_components": int, "model": str, "alpha": (str, int, float),
                         "n_splits": int, "seed": int, "count_matched": bool,
                         "stratum_size": int, "xgb_params": dict, "n_jobs": int,
                         "hest_splits": bool}
_MODEL_CHOICES = ("ridge", "xgboost")
_COARSEN_CHOICES = ("none", "1nn")


def is_tissue_config(d: dict) -> bool:
    """Whether a parsed config describes tissue data (``[data.synthetic_tissue]`` or
    ``[data.hest]``)."""
    data = d.get("data") if isinstance(d, dict) else None
    return isinstance(data, dict) and ("synthetic_tissue" in data or "hest" in data)


def is_tissue_config_file(path: str | os.PathLike) -> bool:
    """Whether the TOML file at ``path`` is a tissue config (False when unreadable: the
    Cell Painting loader then reports the problem)."""
    try:
        return is_tissue_config(tomllib.loads(Path(path).read_text()))
    except (OSError, ValueError):
        return False


def _check_method_names(methods: list[dict]) -> None:
    """Unknown tissue representation names fail before any data is generated or read."""
    try:
        from baselens.extract.tissue import TISSUE_METHODS, _network_names
    except ImportError:  # pragma: no cover - extraction reports it later
        return
    known = set(TISSUE_METHODS) | _network_names()  # what spot_extractor builds
    for i, m in enumerate(methods):
        if m["name"] not in known:
            raise ConfigError(f"methods[{i}]: unknown tissue representation {m['name']!r}"
                              + _did_you_mean(m["name"], sorted(known))
                              + f" (tissue methods: {', '.join(TISSUE_METHODS)}, or a network "
                              "such as resnet50 / vit_small_patch16_224)")


def synthetic_tissue_config(d: dict):
    """``SyntheticTissueConfig`` from ``{"preset": "demo"|"quick", **overrides}``."""
    from baselens.data.tissue import SyntheticTissueConfig

    return SyntheticTissueConfig.from_preset(d)
