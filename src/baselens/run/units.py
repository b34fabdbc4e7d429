"""The unit adapters of the one pipeline: what an item is, how it is keyed, grouped into
folds and scored.

:func:`baselens.run.pipeline.run_pipeline` drives the same stages for every run —
data → extract (chunks on the executor, a per-chunk feature cache, resume) → profile →
evaluate → diagnose → report — and asks the adapter only for what differs between an
imaging screen and a tissue section:

==============  =====================================  ====================================
                :class:`SiteUnits` (screen)             :class:`SpotUnits` (tissue)
==============  =====================================  ====================================
data            load_data table / synthetic screen      ``[data.hest]`` / synthetic tissue
key columns     Plate, Well, Site                       Spot, Sample, Patient, Task
chunks          ≤ ``chunk_size`` sites of one plate     ≤ ``chunk_size`` spots (whole
                                                        network/GNN batches)
in process      representations that read no pixels     representations that need every
                                                        spot at once (``per_spot`` False)
profile         sites → wells → normalization           none: a spot is its own profile
folds           each task's (:mod:`~baselens.           patient-stratified
                evaluate.splits`)                       (:func:`tissue_splits`)
scored by       the registry's tasks (:mod:`~baselens.  the HEST gene-expression probe
                run.tasks`)                             per HEST task, level ``NSPT``
diagnose        :func:`~baselens.diagnose.run.          agreement and dimensionality on a
                run_diagnostics`                        seeded subsample of spots
==============  =====================================  ====================================

:class:`Units` is the interface; :func:`units_for` picks the adapter from the config's
``[data]`` table. A new kind of unit (e.g. single cells, or wells of a profile table read
without sites) is a new class with these methods, not a new pipeline.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from baselens._io import write_parquet_atomic
from baselens.profile.log import FilterLog
from baselens.run import execution
from baselens.run.config import RunConfig

__all__ = ["BATCH_LEVEL", "SiteUnits", "SpotSource", "SpotUnits", "Units", "tissue_splits",
           "units_for"]

#: The batch level of every tissue score: not same patient (HEST's patient-stratified splits).
BATCH_LEVEL = "NSPT"


@runtime_checkable
class Units(Protocol):
    """What :func:`baselens.run.pipeline.run_pipeline` asks of a kind of unit.

    Attributes
    ----------
    unit : str
        The unit's noun (``"site"``, ``"spot"``), used in log lines and ``run.json``.
    source
        The units as the chunk runner reads them: ``read_sites(rows)`` (the inputs of
        ``rows``, e.g. images) and ``channels``.
    meta : DataFrame
        One row per unit, in source order: the key columns its features are cached with.
    context : dict
        Extra inputs handed to every extractor (e.g. a synthetic screen's ground truth).
    one_task_per_method : bool
        Whether a chunk runs as one executor task per representation (units in memory)
        or one task for every representation (inputs read once per chunk).
    in_process_reason : str
        Why :meth:`in_process` representations run in the run's process (for the log).
    t_profile : float
        Seconds spent forming profiles (part of :meth:`score`), reported apart.
    """

    unit: str
    source: Any
    meta: pd.DataFrame
    context: dict
    one_task_per_method: bool
    in_process_reason: str
    t_profile: float

    def load(self, cfg: RunConfig, out: Path, say, log: FilterLog) -> None:
        """Read the data (write what the run keeps of it); set ``source`` and ``meta``."""

    def preflight(self, cfg: RunConfig, log: FilterLog, say) -> dict:
        """Checks before any worker starts; return the ``[tasks]`` table to score."""

    def chunk_size(self, ex_cfg: dict) -> int:
        """Units per cached chunk, from ``[execution]``."""

    def task_batch_size(self, ex_cfg: dict, chunk_size: int) -> int:
        """Units per extractor call inside a chunk."""

    def make_chunks(self, chunk_size: int) -> list:
        """The run's chunks (:class:`baselens.run.execution.Chunk`)."""

    def chunk_identities(self, chunks: list) -> dict[str, str]:
        """Each chunk's input identity: a changed input is a new cache key."""

    def extractor(self, m: dict) -> Any:
        """The representation of a ``[[methods]]`` entry, callable on a ``SiteBatch``."""

    def in_process(self, ex: Any) -> bool:
        """Whether ``ex`` runs in this process over every unit at once."""

    def chunks_for(self, ex: Any, chunks: list) -> list:
        """The chunks ``ex`` is computed in (e.g. one of every spot when it needs all)."""

    def take(self, rows: np.ndarray) -> Any:
        """``source`` restricted to ``rows`` (what a chunk task carries to a worker)."""

    def kind(self, m: dict) -> str:
        """``baseline``, ``model``, ``reference`` or ``null``."""

    def start_scoring(self, cfg: RunConfig, feats_by_method: dict, tasks_cfg: dict,
                      log: FilterLog, say) -> None:
        """Set up scoring (inputs every representation shares)."""

    def score(self, cfg: RunConfig, m: dict, label: str, kind: str, layer: str,
              frame: pd.DataFrame, tasks_cfg: dict, log: FilterLog, say
              ) -> tuple[list, list, Any]:
        """One representation layer → score frames, per-item frames and its
        :class:`~baselens.diagnose.run.ProfileSet` (or ``None``)."""

    def finish_scoring(self) -> None:
        """Tear down what :meth:`start_scoring` set up."""

    def diagnose(self, cfg: RunConfig, profile_sets: list, scores: pd.DataFrame,
                 per: pd.DataFrame, out: Path, log: FilterLog) -> dict[str, pd.DataFrame]:
        """Write ``diagnostics/`` and return its tables (``beyond_baseline`` included)."""

    def run_info(self) -> dict:
        """This unit's part of ``run.json`` (counts, data description)."""

    def task_record(self) -> dict:
        """Warnings and fold plans the tasks reported, for ``run.json``."""

    def report_context(self, info: dict) -> dict:
        """The report's run-information table from ``run.json``."""


def units_for(cfg: RunConfig) -> "SiteUnits | SpotUnits":
    """The adapter of a run: :class:`SpotUnits` for ``[data.hest]`` /
    ``[data.synthetic_tissue]``, else :class:`SiteUnits`."""
    return SpotUnits(cfg) if cfg.unit == "spot" else SiteUnits()


# =========================================================================== screens
def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"table not found: {path}")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _join_perturbation_metadata(ld, pmeta: pd.DataFrame, source: str) -> None:
    """Add ``Metadata_*`` columns of a per-perturbation table (e.g. ``Metadata_moa``)."""
    if "Metadata_Perturbation" not in pmeta.columns:
        raise ValueError(f"{source}: needs a Metadata_Perturbation column")
    new = [c for c in pmeta.columns if c.startswith("Metadata_") and c not in ld.table.columns]
    if not new:
        return
    if pmeta["Metadata_Perturbation"].duplicated().any():
        dup = pmeta.loc[pmeta["Metadata_Perturbation"].duplicated(), "Metadata_Perturbation"]
        raise ValueError(f"{source}: {len(dup)} duplicated perturbations, e.g. {dup.iloc[0]!r}")
    joined = ld.table[["Metadata_Perturbation"]].merge(
        pmeta[["Metadata_Perturbation", *new]], on="Metadata_Perturbation", how="left")
    for c in new:
        ld.table[c] = joined[c].to_numpy()


def prepare_screen(cfg: RunConfig, out: Path, say) -> tuple[Any, dict, dict]:
    """Read the sites and the task inputs: annotation pairs, assay labels, per-well targets.

    Returns
    -------
    (LoadData, dict, dict)
        The sites, the task inputs (``pairs``, ``bioactivity``, ``targets``) and the
        extractors' context (``ground_truth_dir`` of a synthetic screen).
    """
    from baselens.data.annotations import read_relationship_pairs
    from baselens.data.load_data import read_load_data
    from baselens.run.config import synthetic_config

    data = cfg.data
    context: dict = {}
    inputs: dict = {}
    if "synthetic" in data:
        from baselens.data.synthetic import generate_screen

        syn = synthetic_config(data["synthetic"])
        t = time.perf_counter()
        ld_path = Path(generate_screen(syn, out / "data"))
        say(f"data: synthetic screen ready at {ld_path.parent} ({time.perf_counter() - t:.1f} s)")
        gt_dir = ld_path.parent / "ground_truth"
        context["ground_truth_dir"] = gt_dir
        ld = read_load_data(ld_path, channels=data.get("channels"))
        inputs["pairs"] = read_relationship_pairs(gt_dir / "relationships.csv")
        inputs["bioactivity"] = pd.read_parquet(gt_dir / "bioactivity.parquet")
        # compounds' mechanism of action, for MoA retrieval and the kNN probe
        pert = pd.read_parquet(gt_dir / "perturbations.parquet")
        is_cpd = pert["Metadata_PerturbationType"].astype(str) == "compound"
        moa = pert["Metadata_Group"].astype(str).where(is_cpd & (pert["Metadata_Group"].astype(str) != ""))
        _join_perturbation_metadata(
            ld, pd.DataFrame({"Metadata_Perturbation": pert["Metadata_Perturbation"],
                              "Metadata_moa": moa}), "synthetic perturbations")
        # per-well continuous targets: the realized latent phenotype and the true cell count
        sp = pd.read_parquet(gt_dir / "site_phenotypes.parquet")
        tcols = [c for c in sp.columns if c.startswith("GT_") or c == "n_cells"]
        inputs["targets"] = (sp.groupby(["Metadata_Plate", "Metadata_Well"], observed=True)[tcols]
                             .mean().reset_index())
    else:
        ld = read_load_data(
            cfg.resolve(data["load_data"]),
            channels=data.get("channels"),
            root=cfg.resolve(data["root"]) if "root" in data else None,
            path_map=data.get("path_map"),
            illum=bool(data.get("illum", False)),
            channel_map=data.get("channel_map"),
        )
    ann = data.get("annotations") or []
    if ann:
        extra = [read_relationship_pairs(cfg.resolve(a)) for a in ann]
        inputs["pairs"] = pd.concat(([inputs["pairs"]] if "pairs" in inputs else []) + extra,
                                    ignore_index=True)
    if "bioactivity" in data:
        inputs["bioactivity"] = _read_table(cfg.resolve(data["bioactivity"]))
    if "targets" in data:
        inputs["targets"] = _read_table(cfg.resolve(data["targets"]))
    if "perturbation_metadata" in data:
        path = cfg.resolve(data["perturbation_metadata"])
        _join_perturbation_metadata(ld, _read_table(path), str(path))
    from baselens.run.inspect import run_data_problems

    problems = run_data_problems(ld.table)  # the words `baselens inspect` uses
    if problems:
        raise problems[0]
    ld.table["Metadata_ControlType"] = ld.table["Metadata_ControlType"].fillna("").astype(str)
    return ld, inputs, context


def well_cell_counts(feats_by_method: dict) -> pd.DataFrame | None:
    """Mean nuclei count per well from a ``cell_count`` run, as ``Metadata_CellCount``.

    Profile steps such as MorphoHELM's cell-count QC and Seal et al.'s |r| > 0.95 filter
    read it; ``None`` when no cell_count method ran.
    """
    for layers in feats_by_method.values():
        if "default" not in layers:
            continue
        if hasattr(layers, "columns") and "Count_Nuclei" not in layers.columns("default"):
            continue  # features on disk: the schema says, nothing is read
        df = layers["default"]
        if "Count_Nuclei" in df.columns:
            return (df.groupby(["Metadata_Plate", "Metadata_Well"], observed=True)["Count_Nuclei"]
                    .mean().rename("Metadata_CellCount").reset_index())
    return None


class _Prefixed(FilterLog):
    def __init__(self, inner: FilterLog, prefix: str):
        self.inner, self.prefix = inner, prefix

    def add(self, stage, *args, **kwargs):
        self.inner.add(f"{self.prefix}: {stage}", *args, **kwargs)

    @property
    def events(self):
        return self.inner.events


def profile_wells(site_df: pd.DataFrame, profile_cfg: dict, log: FilterLog,
                  label: str, well_counts: pd.DataFrame | None = None
                  ) -> tuple[pd.DataFrame, list[str]]:
    """Sites → wells → the configured profile steps (or the legacy normalize keys).

    Parameters
    ----------
    site_df : DataFrame
        One representation layer's per-site features (``Metadata_*`` + features).
    profile_cfg : dict
        ``[profile]`` merged with the method's own ``profile``.
    log : FilterLog
        Where removed sites and wells are counted.
    label : str
        ``method/layer``, the prefix of the log's stages.
    well_counts : DataFrame, optional
        ``Metadata_CellCount`` per well (:func:`well_cell_counts`).

    Returns
    -------
    (DataFrame, list of str)
        Well profiles and their feature columns.
    """
    from baselens.profile.aggregate import aggregate, feature_columns
    from baselens.profile.normalize import normalize

    feats = feature_columns(site_df)
    x = site_df[feats].to_numpy()
    bad_rows = ~np.isfinite(x).all(axis=1)
    if bad_rows.any():
        # a site whose features are all NaN (e.g. failed extraction) is removed and reported
        all_bad = ~np.isfinite(x).any(axis=1)
        ex = site_df.loc[all_bad, ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].astype(str)
        log.add(f"{label}: profile", "sites", int(all_bad.sum()), int((~all_bad).sum()),
                "every feature non-finite", ["/".join(r) for r in ex.to_numpy()])
        site_df = site_df[~all_bad]
    wells = aggregate(site_df, operation=profile_cfg.get("aggregate", "mean"), features=feats,
                      log=log, stage=f"{label}: profile")
    if well_counts is not None and "Metadata_CellCount" not in wells.columns:
        wells = wells.merge(well_counts, on=["Metadata_Plate", "Metadata_Well"], how="left")
    plog = _Prefixed(log, label)
    if "steps" in profile_cfg:
        from baselens.profile.protocols import apply_profile

        out, out_feats = apply_profile(wells, feats, profile_cfg["steps"], plog)
        return out, list(out_feats)
    normed = normalize(wells, method=profile_cfg.get("normalize", "standardize"),
                       reference=profile_cfg.get("reference", "negcon"),
                       features=feats, log=plog)
    return normed, feature_columns(normed.drop(columns=["Metadata_n_sites"], errors="ignore"))


#: tasks that fit on some wells and score held-out ones: profile steps fitted on all wells
#: (or with perturbation labels) can carry the held-out wells into them
GROUPED_PROBES = ("knn_probe", "regression_probe", "bioactivity")


def warn_probes(frames: list[pd.DataFrame], profile_cfg: dict) -> list[pd.DataFrame]:
    """Add :func:`baselens.profile.protocols.probe_warning` of the profile's steps to the
    ``warning`` of the grouped probes' score rows (module docstring of protocols)."""
    from baselens.profile.protocols import probe_warning

    steps = profile_cfg.get("steps") or [
        f"normalize:{profile_cfg.get('normalize', 'standardize')}:"
        f"{profile_cfg.get('reference', 'negcon')}"]
    text = probe_warning(steps)
    if not text:
        return frames
    out = []
    for s in frames:
        if len(s) and s["task"].iat[0] in GROUPED_PROBES:
            s = s.assign(warning=[w + ("; " if w else "") + text for w in s["warning"]])
        out.append(s)
    return out


def _headline(scores: list[pd.DataFrame]) -> str:
    """One line per representation: each task's main metric at NR, mean over folds."""
    if not scores:
        return "no task scored"
    s = pd.concat(scores)
    s = s[s["batch_level"] == "NR"]
    first = s.groupby("task", sort=False)["metric"].first()
    parts = []
    for task, metric in first.items():
        v = s[(s["task"] == task) & (s["metric"] == metric)]["value"].mean()
        parts.append(f"{task}/{metric}={v:.3f}")
    return ", ".join(parts)


def _fold_plans(plans: list[dict]) -> dict[str, str]:
    """``task → how its folds were formed`` (one line; methods that differ are named)."""
    by_task: dict[str, dict[str, list[str]]] = {}
    for r in plans:
        by_task.setdefault(r["task"], {}).setdefault(r["fold_plan"], []).append(r["method"])
    out = {}
    for task, variants in by_task.items():
        if len(variants) == 1:
            out[task] = next(iter(variants))
        else:
            out[task] = " | ".join(f"{plan} ({', '.join(ms[:3])}{', …' if len(ms) > 3 else ''})"
                                   for plan, ms in variants.items())
    return out


def _warnings_line(rows: list[dict]) -> str:
    """Warnings raised inside tasks, summed per (task, batch level, category) over methods."""
    if not rows:
        return "none"
    agg: dict[tuple, list] = {}
    for r in rows:
        k = (r["task"], r["batch_level"], r["category"])
        a = agg.setdefault(k, [0, set(), r["message"]])
        a[0] += int(r["count"])
        a[1].add(r["method"])
    return "\n".join(f"{t} at {lv}: {n} × {cat} in {len(ms)} method/layer(s), e.g. {msg[:160]}"
                     for (t, lv, cat), (n, ms, msg) in sorted(agg.items()))


class SiteUnits:
    """Imaging sites of a screen, aggregated into well profiles and scored by the
    registry's tasks at every batch-effect level (module docstring)."""

    unit = "site"
    in_process_reason = "reads no pixels"

    def __init__(self) -> None:
        self.source = None  # LoadData
        self.meta: pd.DataFrame | None = None
        self.inputs: dict = {}
        self.context: dict = {}
        self.record: dict = {}  # warnings counted and fold plans of every task (run.json)
        self.well_counts: pd.DataFrame | None = None
        self.t_profile = 0.0
        self._scoring = None

    # ------------------------------------------------------------------ data
    def load(self, cfg: RunConfig, out: Path, say, log: FilterLog) -> None:
        """Read the screen; write ``screen.parquet`` (the wells this run scores, which
        ``baselens compare`` checks runs share)."""
        ld, self.inputs, self.context = prepare_screen(cfg, out, say)
        self.source = ld
        self.meta = ld.metadata.reset_index(drop=True)
        cols = [c for c in ("Metadata_Plate", "Metadata_Well", "Metadata_Perturbation",
                            "Metadata_ControlType") if c in ld.table.columns]
        wells = ld.table[cols].drop_duplicates(["Metadata_Plate", "Metadata_Well"])
        write_parquet_atomic(wells.astype(str).reset_index(drop=True), out / "screen.parquet")
        say(f"data: {len(ld)} sites, {ld.table['Metadata_Plate'].nunique()} plates, "
            f"channels {ld.channels}")

    def preflight(self, cfg: RunConfig, log: FilterLog, say) -> dict:
        """The checks ``baselens inspect`` makes, before any worker starts: stop on what
        would stop the run later (with the same message), skip the tasks that lack their
        input (the reason goes to run.json and the report). Returns the ``[tasks]`` table
        to score."""
        from baselens.run.inspect import preflight
        from baselens.run.tasks import enabled_tasks

        ld = self.source
        enabled = [t for t in enabled_tasks(cfg.tasks)
                   # a configured label or row filter: the task decides (run.tasks) itself
                   if not (t == "knn_probe" and {"label", "where"} & set(cfg.tasks.get(t, {})))]
        steps = "steps" in cfg.profile or any("profile" in m for m in cfg.methods)
        errors, skips = preflight(ld.metadata, tasks=enabled,
                                  reference=None if steps else cfg.profile.get("reference", "negcon"))
        if errors:
            raise errors[0]
        if ld.channels:
            from baselens.run.inspect import image_header_problems

            t = time.perf_counter()
            bad = image_header_problems(ld)
            if bad:
                raise bad[0]
            say.log(f"preflight: image headers decoded ({time.perf_counter() - t:.1f} s)")
        tasks_cfg = dict(cfg.tasks)
        for task, why in sorted(skips.items()):
            tasks_cfg[task] = {**tasks_cfg.get(task, {}), "enabled": False}
            log.add(f"preflight: {task}", "tasks", 1, 0, f"task skipped: {why}", quiet=True)
            say(f"preflight: {task} skipped: {why}")
        return tasks_cfg

    # ------------------------------------------------------------------ extract
    def chunk_size(self, ex_cfg: dict) -> int:
        batch_size = int(ex_cfg.get("batch_size", 32))
        return int(ex_cfg.get("chunk_size", max(execution.DEFAULT_CHUNK_SIZE, batch_size)))

    def task_batch_size(self, ex_cfg: dict, chunk_size: int) -> int:
        return int(ex_cfg.get("batch_size", 32))

    def make_chunks(self, chunk_size: int) -> list:
        return execution.make_chunks(self.source, chunk_size)

    def chunk_identities(self, chunks: list) -> dict[str, str]:
        return execution.chunk_identities(self.source, chunks)

    def extractor(self, m: dict):
        from baselens.extract.registry import get_extractor

        return get_extractor(m["name"], **m.get("params", {}))

    def in_process(self, ex) -> bool:
        """A representation that reads no pixels runs in this process over every site."""
        return not getattr(ex, "needs_images", True)

    def chunks_for(self, ex, chunks: list) -> list:
        return chunks

    one_task_per_method = False

    def take(self, rows: np.ndarray):
        ld = self.source
        return replace(ld, table=ld.table.iloc[rows].reset_index(drop=True))

    def kind(self, m: dict) -> str:
        from baselens.extract.registry import method_kind

        return method_kind(m["name"], m.get("params"))  # follows the weights, not the label

    # ------------------------------------------------------------------ evaluate
    def start_scoring(self, cfg: RunConfig, feats_by_method: dict, tasks_cfg: dict, log, say):
        from baselens.run.pipeline import ScoringProgress
        from baselens.run.tasks import enabled_tasks

        self.well_counts = well_cell_counts(feats_by_method)
        self._scoring = ScoringProgress(say, sum(len(v) for v in feats_by_method.values())
                                        * len(enabled_tasks(tasks_cfg)))

    def score(self, cfg: RunConfig, m: dict, label: str, kind: str, layer: str,
              site_df: pd.DataFrame, tasks_cfg: dict, log: FilterLog, say):
        """One representation layer: well profiles, the tasks' score and per-item rows,
        and its :class:`~baselens.diagnose.run.ProfileSet`."""
        from baselens.diagnose.run import ProfileSet
        from baselens.run.tasks import run_tasks

        prof_cfg = {**cfg.profile, **m.get("profile", {})}
        t = time.perf_counter()
        profiles, feats = profile_wells(site_df, prof_cfg, log, f"{label}/{layer}",
                                        self.well_counts)
        self.t_profile += time.perf_counter() - t
        scores, per = run_tasks(profiles, feats, self.inputs, tasks_cfg, log, f"{label}/{layer}",
                                record=self.record,
                                progress=self._scoring.for_representation(f"{label}/{layer}"))
        scores = warn_probes(scores, prof_cfg)
        ident = {"method": label, "method_kind": kind, "layer": layer}
        seed = int(m.get("params", {}).get("seed", 0))
        say(f"evaluate: {label}/{layer}: {_headline(scores)}")
        return ([s.assign(**ident, seed=seed) for s in scores], [p.assign(**ident) for p in per],
                ProfileSet(method=label, method_kind=kind, layer=layer, profiles=profiles,
                           features=list(feats)))

    def finish_scoring(self) -> None:
        if self._scoring is not None:
            self._scoring.close()

    # ------------------------------------------------------------------ diagnose
    def diagnose(self, cfg: RunConfig, profile_sets: list, scores: pd.DataFrame,
                 per: pd.DataFrame, out: Path, log: FilterLog) -> dict[str, pd.DataFrame]:
        from baselens.diagnose.run import run_diagnostics

        classes = None
        if "ground_truth_dir" in self.context:  # synthetic: each perturbation's planted class
            classes = (pd.read_parquet(Path(self.context["ground_truth_dir"]) / "perturbations.parquet")
                       .set_index("Metadata_Perturbation")["Metadata_PhenotypeClass"])
        return run_diagnostics(profile_sets, scores, per, inputs=self.inputs,
                               well_cell_counts=self.well_counts, phenotype_classes=classes,
                               out_dir=out, log=log)

    # ------------------------------------------------------------------ run.json, report
    def run_info(self) -> dict:
        ld = self.source
        return {"n_sites": len(ld), "n_plates": int(ld.table["Metadata_Plate"].nunique()),
                "channels": ld.channels}

    def task_record(self) -> dict:
        return {"task_warnings": self.record.get("warnings", []),
                "fold_plans": _fold_plans(self.record.get("fold_plans", []))}

    def report_context(self, info: dict) -> dict:
        data = info["config"]["data"]
        source = (f"synthetic screen ({json.dumps(data['synthetic'])})" if "synthetic" in data
                  else str(data.get("load_data")))
        removed = [f"{e['stage']}: {e['removed']} {e['what']} ({e['reason']})"
                   for e in info["filters"] if e["removed"] and not e.get("quiet")]
        # skips repeat for every representation: list each (task, reason) once
        skips = sorted({f"{e['stage'].split(': ', 1)[-1]}: {e['reason']}"
                        for e in info["filters"] if e.get("quiet")})
        return {
            "data": source,
            "sites": info["n_sites"],
            "plates": info["n_plates"],
            "channels": ", ".join(info["channels"]),
            "methods": ", ".join(m.get("label", m["name"]) for m in info["config"]["methods"]),
            "profile": json.dumps(info["config"]["profile"] or {"aggregate": "mean",
                                                                "normalize": "standardize",
                                                                "reference": "negcon"}),
            "filters": "; ".join(removed) if removed else "nothing removed",
            "skipped": "\n".join(skips) if skips else "nothing skipped",
            "folds": "\n".join(f"{t}: {p}" for t, p in info.get("fold_plans", {}).items())
                     or "as each task's default (no fold plan reported)",
            "warnings in tasks": _warnings_line(info.get("task_warnings", [])),
            "timings (s)": ", ".join(f"{k} {v}" for k, v in info["timings_s"].items()),
            "baselens": info["baselens_version"],
        }


# =========================================================================== tissue
#: the key columns a spot's features are cached with (those the dataset has)
SPOT_KEYS = ("Metadata_Spot", "Metadata_Sample", "Metadata_Patient", "Metadata_Task")


@dataclass
class SpotSource:
    """Spots as the chunk runner reads them (the role a load_data table plays for sites):
    ``read_sites(rows)`` is the :class:`~baselens.data.hest.TissueDataset` of those spots,
    which a tissue representation embeds."""

    ds: Any  # TissueDataset
    channels: tuple = ()

    def __len__(self) -> int:
        return len(self.ds)

    def read_sites(self, rows) -> Any:
        rows = np.asarray(rows, dtype=np.int64)
        return self.ds if len(rows) == len(self.ds) and (rows == np.arange(len(rows))).all() \
            else self.ds.subset(rows)

    def take(self, rows) -> "SpotSource":
        return SpotSource(self.read_sites(rows))


class SpotExtractor:
    """A tissue representation as the chunk runner calls extractors: ``ex(batch)`` with
    ``batch.images`` the spots' dataset, returning ``{layer: DataFrame(f0, f1, …)}``.

    Features are rounded to float32 (the precision tissue features have always been
    scored at). The representation itself (:func:`baselens.extract.tissue.spot_extractor`)
    is built where it first runs, so a worker receives only the method's config.
    """

    needs_images = True  # reads the spots' patches (or their nuclei)

    def __init__(self, m: dict, label: str, batch_size: int):
        self.m, self.label, self.batch_size = m, label, int(batch_size)
        self._ex = None

    @property
    def ex(self):
        if self._ex is None:
            from baselens.extract.tissue import spot_extractor

            self._ex = spot_extractor({**self.m, "label": self.label}, self.batch_size)
        return self._ex

    kind = property(lambda self: self.ex.kind)
    per_spot = property(lambda self: bool(getattr(self.ex, "per_spot", False)))

    def __getstate__(self):
        return {**self.__dict__, "_ex": None}

    def __call__(self, batch) -> dict[str, pd.DataFrame]:
        ds = batch.images
        out = {}
        for layer, x in self.ex(ds, None).items():
            x = np.asarray(x, dtype=np.float32)
            if x.shape[0] != len(ds):
                raise RuntimeError(f"extract: {self.label}/{layer} has {x.shape[0]} rows for "
                                   f"{len(ds)} spots")
            out[layer] = pd.DataFrame(x.astype(np.float64),
                                      columns=[f"f{i}" for i in range(x.shape[1])])
        return out


def tissue_splits(spots: pd.DataFrame, *, use_hest: bool = True, n_splits: int = 5,
                  seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Patient-stratified splits of one task's spots and how they were made.

    HEST's own splits when the data carry them (``Metadata_Fold``: the test split holding
    each sample; test = the fold's spots, train = every other spot) and there are ≥ 2;
    else :func:`~baselens.evaluate.gene_expression.patient_folds` on ``Metadata_Patient``
    (Jaume et al. 2024, NeurIPS Datasets and Benchmarks, HEST-1k).

    Parameters
    ----------
    spots : DataFrame
        One task's spots (``Metadata_Patient``, optionally ``Metadata_Fold``).
    use_hest : bool
        Use HEST's splits when present.
    n_splits : int
        Folds over patients otherwise.
    seed : int
        Seed of the patient folds.

    Returns
    -------
    (list of (train, test) index arrays, str)
        The splits and one line saying how they were formed.
    """
    from baselens.evaluate.gene_expression import patient_folds

    if use_hest and "Metadata_Fold" in spots.columns:
        f = pd.to_numeric(spots["Metadata_Fold"], errors="coerce").fillna(-1).to_numpy()
        ks = sorted(int(k) for k in np.unique(f) if k >= 0)
        if len(ks) >= 2:
            return ([(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in ks],
                    f"HEST splits ({len(ks)} test splits from splits/test_<k>.csv)")
    groups = spots["Metadata_Patient"].astype(str).to_numpy()
    folds = patient_folds(groups, n_splits=n_splits, seed=seed)
    n_p = len(np.unique(groups))
    how = ("leave-one-patient-out" if n_p <= n_splits else f"GroupKFold({n_splits}) over patients")
    return folds, f"{how} ({n_p} patients, {len(folds)} folds)"


def _file_signature(ds) -> list:
    """(name, size, mtime) of the task folder's patch files: new pixels, new features."""
    tdir = Path(ds.info.get("task_dir", ds.root or "."))
    files = sorted((tdir / "patches").glob("*.h5")) if (tdir / "patches").is_dir() else []
    return [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in files]


def _score_rows(res, ident: dict, task: str, drivers: dict[str, str], seed: int
                ) -> tuple[list, list]:
    """Results-contract rows of one gene-expression probe result.

    ``scores``: ``pearson`` (the HEST score), ``pearson_count_matched`` (the same
    predictions within strata of equal cell count) and, on synthetic tissue,
    ``pearson_<driver>`` (the genes of one planted driver), one row per fold with ``n`` the
    genes averaged. ``per_perturbation``: one row per (gene, fold), the gene in
    ``perturbation``.
    """
    pg = res.per_gene
    base = {**ident, "task": task, "batch_level": BATCH_LEVEL, "seed": seed}
    rows = []
    metrics = [("pearson", None, "pearson")]
    if "pearson_count_matched" in pg.columns:
        metrics.append(("pearson_count_matched", None, "pearson_count_matched"))
    for d in ("density", "clustering", "regularity", "appearance", "mixed"):
        genes = [g for g, v in drivers.items() if v == d]
        if genes:
            metrics.append((f"pearson_{d}", genes, "pearson"))
    n_genes = len(res.genes)
    for metric, genes, column in metrics:
        fs = res.fold_scores(column, genes)
        for r in fs.itertuples(index=False):
            missing = (len(genes) if genes is not None else n_genes) - int(r.n)
            warn = (f"{missing} gene(s) without a value in this fold (constant in the test "
                    "spots or predicted as a constant)" if missing > 0 else "")
            rows.append({**base, "metric": metric, "fold": int(r.fold), "value": float(r.value),
                         "n": int(r.n), "warning": warn})
    per = []
    for column in ("pearson", "pearson_count_matched"):
        if column not in pg.columns:
            continue
        sub = pg[["fold", "gene", column]].dropna()
        per.append(pd.DataFrame({**{k: v for k, v in base.items() if k != "seed"},
                                 "perturbation": sub["gene"].astype(str).to_numpy(),
                                 "metric": column, "value": sub[column].to_numpy(dtype=float),
                                 "fold": sub["fold"].to_numpy(dtype=np.int64)}))
    return rows, per


class SpotUnits:
    """H&E spots paired with spatial-transcriptomics expression (HEST-1k; Jaume et al.
    2024, NeurIPS Datasets and Benchmarks), scored by the HEST-Benchmark protocol:
    PCA-256 + ridge per gene, Pearson r on held-out patients
    (:mod:`baselens.evaluate.gene_expression`), at batch level ``NSPT`` (not same
    patient), the only level that protocol defines. Every spot is its own profile.

    ``scores.parquet`` rows have ``task`` = the HEST subset (``IDC``, ``PRAD``, … or
    ``synthetic``); the metrics are in :func:`_score_rows`. Besides the diagnostics,
    ``diagnostics/tissue_genes.parquet`` (``task, gene, driver``) and
    ``diagnostics/tissue_methods.parquet`` (``method, method_kind, input, name``) feed
    :func:`baselens.diagnose.run.derived_tables`, which decides what the report's tissue
    panels draw (``diagnostics/tissue_inputs.parquet``).
    """

    unit = "spot"
    in_process_reason = "uses every spot at once"
    one_task_per_method = True  # spots are in memory: methods run side by side

    def __init__(self, cfg: RunConfig | None = None) -> None:
        self.batch_size = int((cfg.execution if cfg is not None else {}).get("batch_size", 32))
        self.source: SpotSource | None = None
        self.meta: pd.DataFrame | None = None
        self.context: dict = {}
        self.ident: dict = {}
        self.t_profile = 0.0
        self.split_info: dict = {}  # task -> how its splits were formed (run.json)
        # task -> (spot rows, splits, patient, targets and (count_matched) nuclei count of
        # each spot): a task's inputs, the same for every representation layer
        self.tasks: dict = {}
        self.use_counts = False  # pearson_count_matched scored (nuclei counts vary)
        self.seed, self.probe_kw, self.drivers = 0, {}, {}
        self.diag_enabled, self.diag_idx = True, np.arange(0)
        self.diag_meta: pd.DataFrame | None = None  # the subsample's spots, as profile keys
        self._built: dict[str, SpotExtractor] = {}  # label -> its representation, for kind/input

    @property
    def ds(self):
        return self.source.ds

    # ------------------------------------------------------------------ data
    def load(self, cfg: RunConfig, out: Path, say, log: FilterLog) -> None:
        """The :class:`~baselens.data.hest.TissueDataset` (generated for synthetic tissue,
        1NN-coarsened when ``coarsen = "1nn"``), spots with a non-finite target removed
        (counted)."""
        from baselens.data.hest import coarsen_1nn, read_hest
        from baselens.run.config import synthetic_tissue_config

        data = cfg.data
        if "synthetic_tissue" in data:
            from baselens.data.tissue import generate_tissue

            syn = synthetic_tissue_config(data["synthetic_tissue"])
            t = time.perf_counter()
            root = Path(generate_tissue(syn, out / "data"))
            say(f"data: synthetic tissue ready at {root} ({time.perf_counter() - t:.1f} s)")
            ds = read_hest(root)
            ident = {"synthetic_tissue": syn.to_dict()}
            coarsen = "none"
        else:
            h = data["hest"]
            root = cfg.resolve(h["root"])
            ds = read_hest(root, h.get("task"), genes=h.get("genes"), sample_ids=h.get("sample_ids"),
                           **({"n_genes": h["n_genes"]} if "n_genes" in h else {}))
            coarsen = h.get("coarsen", "none")
            ident = {"hest": {**h, "root": str(root)}, "files": _file_signature(ds)}
        if coarsen == "1nn":
            n0 = len(ds)
            ds = coarsen_1nn(ds, data.get("hest", {}).get("grid", "auto"))
            say(f"data: 1NN coarsening (Jaume et al. 2024, as in arXiv 2603.13377 C.3): "
                f"{n0} → {len(ds)} spots")
        ident["coarsen"] = coarsen
        ok = np.isfinite(ds.targets.to_numpy(dtype=np.float64)).all(axis=1)
        if not ok.all():
            bad = ds.spots.loc[~ok, "Metadata_Spot"].astype(str).tolist()
            log.add("data", "spots", int((~ok).sum()), int(ok.sum()),
                    "a target gene is not finite", bad[:5])
            say(f"data: {int((~ok).sum())} spot(s) with a non-finite target removed "
                f"(e.g. {bad[0]})")
            ds = ds.subset(np.flatnonzero(ok))
        self.source, self.ident = SpotSource(ds), ident
        keys = [c for c in SPOT_KEYS if c in ds.spots.columns]
        self.meta = ds.spots[keys].reset_index(drop=True)
        self.meta["Metadata_Spot"] = self.meta["Metadata_Spot"].astype(str)
        n_cells = np.asarray(ds.n_cells)
        say(f"data: {len(ds)} spots, {ds.spots['Metadata_Sample'].nunique()} samples, "
            f"{ds.spots['Metadata_Patient'].nunique()} patients, {ds.targets.shape[1]} genes, "
            f"{n_cells.mean():.1f} nuclei per spot on average")

    def preflight(self, cfg: RunConfig, log: FilterLog, say) -> dict:
        """Each task's patient-stratified splits (one line each) and whether
        ``pearson_count_matched`` can be scored; returns ``[tasks]``."""
        ge = cfg.gene_expression
        counts = np.asarray(self.ds.n_cells, dtype=np.float64)
        want = bool(ge.get("count_matched", True))
        self.use_counts = want and len(np.unique(counts)) > 1
        if want and not self.use_counts:
            log.add("evaluate", "metrics", 1, 0, "pearson_count_matched skipped: every spot "
                    "has the same number of nuclei (no segmentation?)")
        seed = int(ge.get("seed", 0))
        tasks = self.ds.spots["Metadata_Task"].astype(str).to_numpy()
        for task in pd.unique(tasks):
            idx = np.flatnonzero(tasks == task)
            spots = self.ds.spots.iloc[idx].reset_index(drop=True)
            splits, how = tissue_splits(spots, use_hest=bool(ge.get("hest_splits", True)),
                                        n_splits=int(ge.get("n_splits", 5)), seed=seed)
            self.tasks[task] = (idx, splits, spots["Metadata_Patient"].astype(str).to_numpy(),
                                self.ds.targets.iloc[idx],
                                counts[idx] if self.use_counts else None)
            self.split_info[task] = {"splits": how, "n_spots": int(len(idx)),
                                     "n_patients": int(spots["Metadata_Patient"].nunique()),
                                     "n_genes": int(self.ds.targets.shape[1])}
            say(f"evaluate: {task}: {len(idx)} spots, {self.ds.targets.shape[1]} genes, {how}")
        return dict(cfg.tasks)

    # ------------------------------------------------------------------ extract
    def chunk_size(self, ex_cfg: dict) -> int:
        """Spots per chunk: ``[execution] chunk_size`` rounded up to whole batches of the
        networks (``batch_size``) and of the GNNs (64 graphs), so every spot sees the same
        batch as without chunks."""
        from math import lcm

        batch_size = int(ex_cfg.get("batch_size", 32))
        unit = lcm(batch_size, 64)
        want = int(ex_cfg.get("chunk_size", max(4 * execution.DEFAULT_CHUNK_SIZE, batch_size)))
        return max(unit, -(-want // unit) * unit)

    def task_batch_size(self, ex_cfg: dict, chunk_size: int) -> int:
        return chunk_size  # one call per chunk; the representation batches inside it

    def make_chunks(self, chunk_size: int) -> list:
        n = len(self.source)
        return [execution.Chunk(f"spots-{k:05d}", "spots", tuple(range(s, min(n, s + chunk_size))))
                for k, s in enumerate(range(0, n, chunk_size))]

    def chunk_identities(self, chunks: list) -> dict[str, str]:
        """A chunk's spots (keys and positions), their nuclei counts and where the data
        came from (the synthetic config, or HEST's files and options)."""
        ds = self.ds
        keys = [c for c in ("Metadata_Spot", "Metadata_Sample", "Metadata_X", "Metadata_Y")
                if c in ds.spots.columns]
        base = json.dumps(self.ident, sort_keys=True, default=str).encode()
        counts = np.asarray(ds.n_cells, dtype=np.float64)
        out = {}
        for c in chunks:
            rows = np.asarray(c.rows, dtype=np.int64)
            h = hashlib.sha256(base)
            h.update(pd.util.hash_pandas_object(ds.spots[keys].iloc[rows], index=False)
                     .to_numpy().tobytes())
            h.update(counts[rows].tobytes())
            out[c.id] = h.hexdigest()[:24]
        return out

    def extractor(self, m: dict) -> SpotExtractor:
        return SpotExtractor(m, m.get("label", m["name"]), self.batch_size)

    def in_process(self, ex) -> bool:
        return False  # whole-dataset representations run as one chunk on the executor

    def chunks_for(self, ex, chunks: list) -> list:
        """Every chunk for a per-spot representation; one chunk of every spot for one that
        needs them all at once (standardizing, a GNN trained on the section)."""
        if ex.per_spot:
            return chunks
        return [execution.Chunk("all-00000", "all", tuple(range(len(self.source))))]

    def take(self, rows: np.ndarray) -> SpotSource:
        return self.source.take(rows)

    def _spot(self, m: dict) -> "SpotExtractor":
        label = m.get("label", m["name"])
        if label not in self._built:
            self._built[label] = self.extractor(m)
        return self._built[label]

    def kind(self, m: dict) -> str:
        return self._spot(m).kind

    def input(self, m: dict) -> str:
        """What the representation is computed from (the extractor's ``INPUT``: image,
        structure, count, pixel, reference, null), the ``input`` column of
        ``diagnostics/tissue_methods.parquet`` that :mod:`baselens.diagnose.tissue` groups
        by (distinct from the registry's *modality*, screen or tissue)."""
        return self._spot(m).ex.input

    # ------------------------------------------------------------------ evaluate
    def start_scoring(self, cfg: RunConfig, feats_by_method: dict, tasks_cfg: dict, log, say):
        ge = cfg.gene_expression
        self.seed = int(ge.get("seed", 0))
        self.probe_kw = {k: ge[k] for k in ("n_components", "model", "alpha", "stratum_size",
                                            "xgb_params", "n_jobs") if k in ge}
        drv = getattr(self.ds, "gene_drivers", None)
        self.drivers = ({str(g): str(v) for g, v in drv["driver"].items()}
                        if drv is not None and "driver" in drv.columns else {})
        dcfg = cfg.diagnostics
        self.diag_enabled = bool(dcfg.get("enabled", True))
        n = len(self.ds)
        rng = np.random.default_rng(self.seed)
        self.diag_idx = np.sort(rng.choice(n, size=min(int(dcfg.get("max_spots", 400)), n),
                                           replace=False))
        self.diag_meta = pd.DataFrame({"Metadata_Perturbation": self.meta["Metadata_Spot"]
                                       .to_numpy()[self.diag_idx], "Metadata_ControlType": ""})

    def score(self, cfg: RunConfig, m: dict, label: str, kind: str, layer: str,
              frame: pd.DataFrame, tasks_cfg: dict, log: FilterLog, say):
        """The gene-expression probe on one representation layer, per HEST task; the
        :class:`~baselens.diagnose.run.ProfileSet` of a seeded subsample of spots
        (standardized features, each spot its own item) for agreement and
        dimensionality."""
        from baselens.diagnose.run import ProfileSet
        from baselens.evaluate.gene_expression import gene_expression_probe

        x = frame.drop(columns=[c for c in frame.columns if c.startswith("Metadata_")]) \
            .to_numpy(dtype=np.float32)
        mseed = int((m.get("params") or {}).get("seed", 0))
        rows_all, per_all = [], []
        for task, (idx, splits, groups, targets, counts) in self.tasks.items():
            t = time.perf_counter()
            res = gene_expression_probe(x[idx], targets, groups, splits=splits,
                                        seed=self.seed, counts=counts, **self.probe_kw)
            ident = {"method": label, "method_kind": kind, "layer": layer}
            rows, per = _score_rows(res, ident, task, self.drivers, mseed)
            rows_all += rows
            per_all += per
            mean = res.fold_scores()["value"].mean()
            say(f"evaluate: {label}/{layer}: {task} pearson={mean:.3f} "
                f"({time.perf_counter() - t:.1f} s)")
        scores = [_typed_scores(pd.DataFrame(rows_all))] if rows_all else []
        pset = None
        if self.diag_enabled:
            idx = self.diag_idx
            a = np.asarray(x[idx], dtype=np.float64)
            sd = a.std(axis=0)
            a = (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            feats = [f"f{i}" for i in range(a.shape[1])]
            pset = ProfileSet(method=label, method_kind=kind, layer=layer,
                              profiles=pd.concat([self.diag_meta, pd.DataFrame(a, columns=feats)],
                                                 axis=1),
                              features=feats)
        return scores, per_all, pset

    def finish_scoring(self) -> None:
        pass

    # ------------------------------------------------------------------ diagnose
    def diagnose(self, cfg: RunConfig, profile_sets: list, scores: pd.DataFrame,
                 per: pd.DataFrame, out: Path, log: FilterLog) -> dict[str, pd.DataFrame]:
        """beyond_baseline (paired Wilcoxon over genes), agreement and dimensionality on
        the spot subsample, findings; the Cell Painting–only tables written empty so the
        report says they do not apply; the tissue panels' gene and method tables."""
        from baselens.diagnose.agreement import agreement
        from baselens.diagnose.beyond_baseline import beyond_best_baseline
        from baselens.diagnose.dimensionality import dimensionality
        from baselens.diagnose.findings import findings
        from baselens.diagnose.run import DIAGNOSTICS, derived_tables, empty_table, parquet_safe
        from baselens.evaluate.registry import metrics_table

        d = out / "diagnostics"
        tables: dict[str, pd.DataFrame] = {}
        # the task column is the dataset's task (IDC, PRAD, …): every one is the registry's
        # gene_expression task, whose declarations (metrics, pairing over genes) apply
        alias = {str(t): "gene_expression" for t in pd.unique(scores["task"].astype(str))}
        tables["metrics"] = metrics_table(scores, alias)
        tables["beyond_baseline"] = beyond_best_baseline(scores, per, task_alias=alias)
        if self.diag_enabled:
            tables["agreement"] = agreement(profile_sets)
            tables["dimensionality"] = dimensionality(profile_sets)
        tables["findings"] = findings(scores, tables["beyond_baseline"], tables["metrics"],
                                      per_perturbation=per,
                                      dimensionality=tables.get("dimensionality"))
        mt = pd.DataFrame([{"method": m.get("label", m["name"]), "method_kind": self.kind(m),
                            "input": self.input(m), "name": m["name"]} for m in cfg.methods])
        # what the report draws and says of each input is decided in diagnose
        tables.update(derived_tables(scores, per, tables, mt))
        for name in DIAGNOSTICS:
            if name not in tables:
                tables[name] = empty_table(name)
                log.add(f"diagnose: {name}", "tables", 0, 0,
                        "not applicable to spots (Cell Painting wells only)", quiet=True)
        for name, df in tables.items():
            write_parquet_atomic(parquet_safe(df), d / f"{name}.parquet")
        ds = self.ds
        genes = pd.DataFrame({"gene": [str(g) for g in ds.targets.columns]})
        drv = getattr(ds, "gene_drivers", None)
        genes["driver"] = ([str(drv["driver"].get(g, "")) for g in genes["gene"]]
                           if drv is not None and "driver" in drv.columns else "")
        tasks = pd.unique(ds.spots["Metadata_Task"].astype(str))
        genes = pd.concat([genes.assign(task=t) for t in tasks], ignore_index=True)
        write_parquet_atomic(genes[["task", "gene", "driver"]], d / "tissue_genes.parquet")
        write_parquet_atomic(mt, d / "tissue_methods.parquet")
        return tables

    # ------------------------------------------------------------------ run.json, report
    def run_info(self) -> dict:
        ds = self.ds
        return {"kind": "tissue", "n_spots": int(len(ds)),
                "n_samples": int(ds.spots["Metadata_Sample"].nunique()),
                "n_patients": int(ds.spots["Metadata_Patient"].nunique()),
                "genes": [str(g) for g in ds.targets.columns], "tasks": self.split_info,
                "data_info": json.loads(json.dumps(getattr(ds, "info", {}), default=str))}

    def task_record(self) -> dict:
        return {}

    def report_context(self, info: dict) -> dict:
        data = info["config"]["data"]
        source = (f"synthetic tissue ({json.dumps(data['synthetic_tissue'])})"
                  if "synthetic_tissue" in data else f"HEST ({json.dumps(data['hest'])})")
        ge = info["config"]["tasks"].get("gene_expression", {})
        removed = [f"{e['stage']}: {e['removed']} {e['what']} ({e['reason']})"
                   for e in info["filters"] if e["removed"] and not e.get("quiet")]
        return {
            "data": source,
            "spots": info["n_spots"],
            "samples / patients": f"{info['n_samples']} / {info['n_patients']}",
            "genes": len(info["genes"]),
            "splits": "; ".join(f"{t}: {v['splits']}" for t, v in info["tasks"].items()),
            "probe": (f"PCA-{ge.get('n_components', 256)} + {ge.get('model', 'ridge')}"
                      + (" (alpha = 100 / (k · genes), HEST)" if ge.get("model", "ridge") == "ridge"
                         and ge.get("alpha", "hest") == "hest" else "")
                      + f", batch level {BATCH_LEVEL} = not same patient"),
            "methods": ", ".join(m.get("label", m["name"]) for m in info["config"]["methods"]),
            "filters": "; ".join(removed) if removed else "nothing removed",
            "timings (s)": ", ".join(f"{k} {v}" for k, v in info["timings_s"].items()),
            "baselens": info["baselens_version"],
        }


def _typed_scores(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("fold", "seed", "n"):
        df[c] = df[c].astype("int64")
    return df

