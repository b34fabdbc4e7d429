"""``baselens compare RUN_A RUN_B …``: several run folders in one report.

A typical use puts a user's foundation-model embeddings (a run of ``precomputed``
representations) next to a baseline run on the same data. :func:`compare_runs`

* concatenates the runs' ``scores.parquet`` and ``per_perturbation.parquet``, adding a
  ``run`` column (the run folder's name) to every row;
* keeps method names as they are unless the same method name appears in more than one run:
  then every copy is renamed ``<run>:<method>`` (so two runs' ``cell_count`` stay apart);
* concatenates whichever ``diagnostics/*.parquet`` tables exist (renamed the same way) and
  recomputes ``diagnostics/beyond_baseline.parquet`` over the merged scores — the best
  baseline may now come from another run. A paired Wilcoxon p-value of a source run is kept
  only where the best baseline it was computed against is still the best baseline;
* recomputes ``findings`` and the tables the report draws (``best_baseline``,
  ``per_perturbation_differential``, ``best_layers``, ``closest_baseline``,
  ``residualization_panels``, ``tissue_inputs``:
  :func:`baselens.diagnose.run.derived_tables`) over the merged runs;
* writes ``OUT/scores.parquet``, ``OUT/per_perturbation.parquet``,
  ``OUT/diagnostics/*.parquet`` and ``OUT/report.html``.

Merging only makes sense for runs of the same screen: :func:`screen_differences` checks
that the runs scored the same perturbations (and the same wells, where both ran a
well-level task such as the kNN probe) and :func:`merge_runs` stops with what differs
unless ``allow_different_screens=True`` (``baselens compare --allow-different-screens``).
Then every method is named ``<run>:<method>`` and each run's models are compared with the
baselines of their own run only (``baseline_run`` in ``beyond_baseline``): a baseline of
another screen is not a baseline for them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from baselens._io import write_parquet_atomic
from baselens.diagnose.beyond_baseline import beyond_best_baseline
from baselens.diagnose.findings import findings
from baselens.diagnose.run import derived_tables
from baselens.evaluate.registry import metrics_table

__all__ = ["compare_runs", "merge_runs", "screen_differences", "DifferentScreensError"]

#: Tasks whose items are wells (their scores only compare over the same wells).
WELL_LEVEL_TASKS = ("knn_probe", "regression_probe", "batch_mixing", "control_retrieval")
#: The screen a run scored (written by the pipeline; older runs: see :func:`_screen_of`).
SCREEN_FILE = "screen.parquet"


class DifferentScreensError(ValueError):
    """The runs given to compare did not score the same screen."""

#: Diagnostics tables merged from the runs (``metrics`` and ``findings`` are recomputed over
#: the merged tables, like ``beyond_baseline``'s verdicts).
DIAGNOSTICS = ("beyond_baseline", "agreement", "dimensionality", "residualized",
               "assay_confounds", "phenotype_classes")
#: Tables recomputed over the merged runs for the report (:func:`derived_tables`).
_DERIVED = ("best_baseline", "per_perturbation_differential", "tissue_inputs", "best_layers",
            "closest_baseline", "residualization_panels")
#: Columns that name a method, per diagnostics table (the results tables use ``method``).
_METHOD_COLUMNS = {"agreement": ("method_a", "method_b"), "assay_confounds": ()}


def _run_names(dirs: list[Path]) -> list[str]:
    """Folder names, made unique with the parent folder (then an index) where they repeat."""
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{d.parent.name}/{d.name}" if c > 1 else n
                 for d, n, c in zip(dirs, names, (Counter(names)[n] for n in names))]
    seen: Counter = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _screen_of(run_dir: Path) -> dict | None:
    """What screen a run scored, or ``None`` when the folder does not say:
    ``{"perturbations": set | None, "wells": set | None, "scored": set | None, "tasks": set}``.

    ``perturbations`` and ``wells`` come from ``screen.parquet`` (one row per well, written
    by the pipeline), else from a consolidated ``features/*.parquet`` (its Metadata
    columns); ``scored`` is the perturbations of ``per_perturbation.parquet``'s replicate
    retrieval rows (older runs without either file)."""
    tasks = set(pd.read_parquet(run_dir / "scores.parquet", columns=["task"])["task"].astype(str))
    t = None
    if (run_dir / SCREEN_FILE).exists():
        t = pd.read_parquet(run_dir / SCREEN_FILE)
    else:
        for f in sorted((run_dir / "features").glob("*.parquet")):
            try:
                t = pd.read_parquet(f, columns=["Metadata_Plate", "Metadata_Well",
                                                "Metadata_Perturbation"])
                break
            except (KeyError, ValueError, OSError):
                continue
    out = {"perturbations": None, "wells": None, "scored": None, "tasks": tasks}
    if t is not None:
        out["perturbations"] = set(t["Metadata_Perturbation"].astype(str))
        out["wells"] = set(zip(t["Metadata_Plate"].astype(str), t["Metadata_Well"].astype(str)))
    pp_path = run_dir / "per_perturbation.parquet"
    pp = pd.read_parquet(pp_path, columns=["task", "perturbation"]) if pp_path.exists() else None
    if pp is not None and len(pp):
        rr = pp[pp["task"].astype(str) == "replicate_retrieval"]
        if len(rr):
            out["scored"] = set(rr["perturbation"].astype(str))
    if out["perturbations"] is None and out["scored"] is None:
        return None
    return out


def _examples(items: set, n: int = 3) -> str:
    return ", ".join(map(str, sorted(items, key=str)[:n])) + (" …" if len(items) > n else "")


def screen_differences(run_dirs, names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """How the runs' screens differ from the first run's: ``(differences, unchecked)``.

    ``differences`` lists one sentence per difference (perturbations scored; wells, where
    both runs ran a well-level task of :data:`WELL_LEVEL_TASKS`); ``unchecked`` names the
    runs whose folder does not say what they scored."""
    dirs = [Path(d) for d in run_dirs]
    names = names or _run_names(dirs)
    screens = [_screen_of(d) for d in dirs]
    unchecked = [n for n, sc in zip(names, screens) if sc is None]
    if len(screens) - len(unchecked) >= 2:  # runs whose files say too little to compare
        base = next(sc for sc in screens if sc is not None)
        unchecked += [n for n, sc in zip(names, screens) if sc is not None and sc is not base
                      and not ((sc["perturbations"] is not None
                                and base["perturbations"] is not None)
                               or (sc["scored"] is not None and base["scored"] is not None))]
    known = [(n, sc) for n, sc in zip(names, screens) if sc is not None]
    diffs: list[str] = []
    if len(known) < 2:
        return diffs, unchecked
    (n0, s0), rest = known[0], known[1:]
    for n, sc in rest:
        key = ("perturbations" if s0["perturbations"] is not None
               and sc["perturbations"] is not None else "scored")
        a, b = s0[key], sc[key]
        if a is not None and b is not None and a != b:
            diffs.append(f"{n0} and {n} scored different perturbations ({len(a)} vs {len(b)}; "
                         f"{len(a - b)} only in {n0}"
                         + (f", e.g. {_examples(a - b)}" if a - b else "")
                         + f"; {len(b - a)} only in {n}"
                         + (f", e.g. {_examples(b - a)}" if b - a else "") + ")")
        both = sorted(set(WELL_LEVEL_TASKS) & s0["tasks"] & sc["tasks"])
        if both and s0["wells"] is not None and sc["wells"] is not None \
                and s0["wells"] != sc["wells"]:
            wa, wb = s0["wells"], sc["wells"]
            diffs.append(f"{n0} and {n} scored different wells ({len(wa)} vs {len(wb)}; "
                         f"{len(wa - wb)} only in {n0}, {len(wb - wa)} only in {n}"
                         + (f", e.g. {_examples({'/'.join(w) for w in (wa ^ wb)})}"
                            if wa ^ wb else "")
                         + f") and both ran well-level task(s) {', '.join(both)}")
    return diffs, unchecked


def merge_runs(run_dirs, *, lower_is_better=None,
               allow_different_screens: bool = False) -> dict[str, pd.DataFrame]:
    """The merged tables: ``scores``, ``per_perturbation`` (maybe empty) and every
    diagnostics table present in at least one run (``beyond_baseline`` always).

    Raises
    ------
    DifferentScreensError
        The runs scored different perturbations (or wells, for well-level tasks), unless
        ``allow_different_screens``: then every method is prefixed with its run and each
        run's models are compared with their own run's baselines.
    """
    dirs = _run_dirs(run_dirs)
    names = _run_names(dirs)
    diffs, _ = _screens(dirs, names, allow_different_screens)
    return _merge(dirs, names, diffs, () if lower_is_better is None else lower_is_better)


def _run_dirs(run_dirs) -> list[Path]:
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("compare needs at least one run folder")
    for d in dirs:
        if not (d / "scores.parquet").exists():
            raise FileNotFoundError(f"no scores.parquet in {d} (is it a run folder?)")
    return dirs


def _screens(dirs: list[Path], names: list[str], allow_different_screens: bool
             ) -> tuple[list[str], list[str]]:
    """:func:`screen_differences`, stopping on a difference unless allowed."""
    diffs, unchecked = screen_differences(dirs, names)
    if diffs and not allow_different_screens:
        raise DifferentScreensError(
            "compare: these runs are not the same screen, so their scores (and a best "
            "baseline taken from another run) are not comparable: " + "; ".join(diffs)
            + ". Score both representations on the same screen, or merge them anyway with "
            "`baselens compare ... --allow-different-screens` (Python: "
            "allow_different_screens=True): each run's models are then compared with their "
            "own run's baselines only.")
    return diffs, unchecked


def _merge(dirs: list[Path], names: list[str], diffs: list[str],
           lower_is_better) -> dict[str, pd.DataFrame]:
    """:func:`merge_runs` once the runs are checked (``diffs``: how their screens differ)."""
    separate = bool(diffs)
    scores = {n: pd.read_parquet(d / "scores.parquet") for n, d in zip(names, dirs)}
    # a method name seen in more than one run is prefixed with its run everywhere
    # (different screens: every method, so every panel says which run it comes from)
    owners: dict[str, set[str]] = {}
    for n, s in scores.items():
        for m in pd.unique(s["method"].astype(str)):
            owners.setdefault(m, set()).add(n)
    clash = set(owners) if separate else {m for m, runs in owners.items() if len(runs) > 1}

    def rename(df: pd.DataFrame, run: str, cols=("method",)) -> pd.DataFrame:
        df = df.copy()
        for c in cols:
            if c in df.columns:
                df[c] = [f"{run}:{m}" if m in clash else m for m in df[c].astype(str)]
        df["run"] = run
        return df

    out: dict[str, pd.DataFrame] = {}
    out["scores"] = pd.concat([rename(s, n) for n, s in scores.items()], ignore_index=True)
    pps = [rename(p, n) for n, d in zip(names, dirs)
           if (p := _read(d / "per_perturbation.parquet")) is not None]
    out["per_perturbation"] = (pd.concat(pps, ignore_index=True) if pps else
                               pd.DataFrame(columns=["method", "method_kind", "layer", "task",
                                                     "batch_level", "perturbation", "metric",
                                                     "value", "fold", "run"]))
    for name in DIAGNOSTICS:
        parts = [rename(t, n, _METHOD_COLUMNS.get(name, ("method",)))
                 for n, d in zip(names, dirs)
                 if (t := _read(d / "diagnostics" / f"{name}.parquet")) is not None]
        if not parts:
            continue
        t = pd.concat(parts, ignore_index=True)
        if name == "assay_confounds":  # the same screen's assays, seen from several runs
            t = t.drop_duplicates([c for c in t.columns if c != "run"])
        out[name] = t

    # verdicts are recomputed over the merged runs (paired over the perturbations both
    # scored): a source run's verdict was against its own best baseline, which the merge
    # may replace
    s, pp = out["scores"], out["per_perturbation"]
    if separate:  # each run against its own baselines
        parts = [beyond_best_baseline(s[s["run"] == n], pp[pp["run"] == n],
                                      lower_is_better=lower_is_better).assign(run=n)
                 for n in names if (s["run"] == n).any()]
        bb = pd.concat(parts, ignore_index=True)
    else:
        bb = beyond_best_baseline(s, pp, lower_is_better=lower_is_better)
    run_of = dict(zip(s["method"].astype(str), s["run"]))
    if "best_baseline" in bb.columns:
        bb["baseline_run"] = [run_of.get(str(b)) if isinstance(b, str) else None
                              for b in bb["best_baseline"]]
    out["beyond_baseline"] = bb
    out["metrics"] = metrics_table(s[["task", "metric"]])
    # the same findings table a run writes (diagnose decides, the report renders)
    out["findings"] = findings(s, bb, out["metrics"], per_perturbation=pp,
                               assay_confounds=out.get("assay_confounds"),
                               residualized=out.get("residualized"),
                               phenotype_classes=out.get("phenotype_classes"),
                               dimensionality=out.get("dimensionality"))
    # what the report draws: best baselines, per-perturbation scatters, tissue inputs
    out.update(derived_tables(s, pp, out, lower_is_better=lower_is_better))
    return out


def compare_runs(run_dirs, out_dir, *, title: str | None = None, lower_is_better=None,
                 allow_different_screens: bool = False) -> Path:
    """Merge ``run_dirs`` into ``out_dir`` and write its ``report.html``; returns that path
    (see :func:`merge_runs` for ``allow_different_screens``)."""
    from baselens.report.html import write_report
    from baselens.report.inputs import find_phenotypes

    lower_is_better = () if lower_is_better is None else lower_is_better
    dirs = [Path(d) for d in run_dirs]
    out = Path(out_dir)
    if any(out.resolve() == d.resolve() for d in dirs):
        raise ValueError(f"--out {out} is one of the runs being compared; choose a new folder")
    dirs = _run_dirs(dirs)
    names = _run_names(dirs)
    diffs, unchecked = _screens(dirs, names, allow_different_screens)
    tables = _merge(dirs, names, diffs, lower_is_better)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(tables["scores"], out / "scores.parquet")
    write_parquet_atomic(tables["per_perturbation"], out / "per_perturbation.parquet")
    for name in (*DIAGNOSTICS, "metrics", "findings", *_DERIVED):
        if name in tables:
            write_parquet_atomic(tables[name], out / "diagnostics" / f"{name}.parquet")
    phenotypes = next((p for d in dirs if (p := find_phenotypes(d)) is not None), None)
    s = tables["scores"]
    context = {
        "runs": {n: str(d.resolve()) for n, d in zip(names, dirs)},
        "methods per run": {n: ", ".join(pd.unique(s.loc[s["run"] == n, "method"].astype(str)))
                            for n in names},
    }
    if diffs:
        context["different screens"] = ("; ".join(diffs) + ". Each run's models are compared "
                                         "with their own run's baselines (method names carry "
                                         "the run).")
    if unchecked:
        context["screen not checked"] = (f"{', '.join(unchecked)}: the run folder does not say "
                                         "which perturbations and wells it scored")
    title = title or "baselens comparison — " + " vs ".join(names)
    return write_report(out, title=title, context=context, lower_is_better=lower_is_better,
                        phenotypes=phenotypes)
