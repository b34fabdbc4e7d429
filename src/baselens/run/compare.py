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
* writes ``OUT/scores.parquet``, ``OUT/per_perturbation.parquet``,
  ``OUT/diagnostics/*.parquet`` and ``OUT/report.html``.

Merging only makes sense for runs scored on the same perturbations (same screen, same
tasks); nothing here checks the science, but the report lists the runs it merged.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from baselens._io import write_parquet_atomic
from baselens.diagnose.beyond_baseline import beyond_best_baseline

__all__ = ["compare_runs", "merge_runs"]

DIAGNOSTICS = ("beyond_baseline", "agreement", "dimensionality", "residualized",
               "assay_confounds", "phenotype_classes")
#: Columns that name a method, per diagnostics table (the results tables use ``method``).
_METHOD_COLUMNS = {"agreement": ("method_a", "method_b"), "assay_confounds": ()}
_WILCOXON = ("wilcoxon_p", "n_paired", "paired_over")


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


def merge_runs(run_dirs, *, lower_is_better=None) -> dict[str, pd.DataFrame]:
    """The merged tables: ``scores``, ``per_perturbation`` (maybe empty) and every
    diagnostics table present in at least one run (``beyond_baseline`` always)."""
    if lower_is_better is None:
        from baselens.run.tasks import LOWER_IS_BETTER as lower_is_better
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("compare needs at least one run folder")
    for d in dirs:
        if not (d / "scores.parquet").exists():
            raise FileNotFoundError(f"no scores.parquet in {d} (is it a run folder?)")
    names = _run_names(dirs)
    scores = {n: pd.read_parquet(d / "scores.parquet") for n, d in zip(names, dirs)}
    # a method name seen in more than one run is prefixed with its run everywhere
    owners: dict[str, set[str]] = {}
    for n, s in scores.items():
        for m in pd.unique(s["method"].astype(str)):
            owners.setdefault(m, set()).add(n)
    clash = {m for m, runs in owners.items() if len(runs) > 1}

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

    bb = beyond_best_baseline(out["scores"], lower_is_better=lower_is_better)
    old = out.get("beyond_baseline")
    if old is not None and "wilcoxon_p" in old.columns:
        keys = ["task", "batch_level", "metric", "method", "layer", "best_baseline",
                "best_baseline_layer"]
        old = old.copy()
        for k in keys:
            old[k] = old[k].astype(str)
        keep = old[[*keys, *[c for c in _WILCOXON if c in old.columns]]].drop_duplicates(keys)
        left = bb.assign(**{k: bb[k].astype(str) for k in keys})
        merged = left.merge(keep, on=keys, how="left")
        for c in _WILCOXON:
            if c in merged.columns:
                bb[c] = merged[c].to_numpy()
    out["beyond_baseline"] = bb
    return out


def compare_runs(run_dirs, out_dir, *, title: str | None = None, lower_is_better=None) -> Path:
    """Merge ``run_dirs`` into ``out_dir`` and write its ``report.html``; returns that path."""
    from baselens.report.html import write_report
    from baselens.report.inputs import find_phenotypes

    if lower_is_better is None:
        from baselens.run.tasks import LOWER_IS_BETTER as lower_is_better
    dirs = [Path(d) for d in run_dirs]
    out = Path(out_dir)
    if any(out.resolve() == d.resolve() for d in dirs):
        raise ValueError(f"--out {out} is one of the runs being compared; choose a new folder")
    tables = merge_runs(dirs, lower_is_better=lower_is_better)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(tables["scores"], out / "scores.parquet")
    write_parquet_atomic(tables["per_perturbation"], out / "per_perturbation.parquet")
    for name in DIAGNOSTICS:
        if name in tables:
            write_parquet_atomic(tables[name], out / "diagnostics" / f"{name}.parquet")
    names = _run_names(dirs)
    phenotypes = next((p for d in dirs if (p := find_phenotypes(d)) is not None), None)
    s = tables["scores"]
    context = {
        "runs": {n: str(d.resolve()) for n, d in zip(names, dirs)},
        "methods per run": {n: ", ".join(pd.unique(s.loc[s["run"] == n, "method"].astype(str)))
                            for n in names},
    }
    title = title or "baselens comparison — " + " vs ".join(names)
    return write_report(out, title=title, context=context, lower_is_better=lower_is_better,
                        phenotypes=phenotypes)
