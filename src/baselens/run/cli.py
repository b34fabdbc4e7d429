"""Command line: ``baselens demo``, ``baselens run``, ``baselens list``, ``baselens synth``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def _demo_config(args):
    from baselens.run.config import RunConfig

    synthetic = {"preset": "quick" if args.quick else "demo", "seed": args.seed}
    if args.batch_effect is not None:
        synthetic["batch_effect"] = args.batch_effect
    return RunConfig.from_dict({
        "title": "baselens demo — synthetic ground-truth screen"
                 + (" (quick)" if args.quick else ""),
        "data": {"synthetic": synthetic},
        "tasks": {"replicate_retrieval": {"null_size": 2000 if args.quick else 10000},
                  "moa_retrieval": {"null_size": 2000 if args.quick else 10000}},
    })


def _apply_execution(cfg, args):
    """``--workers`` / ``--scheduler`` / ``--executor`` / ``--chunk-size`` over ``[execution]``."""
    over = {"workers": getattr(args, "workers", None),
            "scheduler": getattr(args, "scheduler", None),
            "executor": getattr(args, "executor", None),
            "chunk_size": getattr(args, "chunk_size", None)}
    cfg.execution = {**cfg.execution, **{k: v for k, v in over.items() if v is not None}}
    if cfg.execution.get("scheduler") and cfg.execution.get("executor") is None:
        cfg.execution["executor"] = "dask"
    return cfg


def _add_execution_options(p) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="extraction workers (default: one per core; one per GPU for GPU models)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run extraction on an existing dask cluster, e.g. tcp://host:8786")
    p.add_argument("--executor", choices=["dask", "processes", "serial"], default=None,
                   help="where extraction runs (default: worker processes on this machine; "
                        "dask with --scheduler)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="sites per cached chunk (default 64)")


def cmd_demo(args) -> int:
    from baselens.run.pipeline import run_pipeline

    if getattr(args, "tissue", False):  # the synthetic HEST protocol (protocols/hest_synthetic.toml)
        from baselens.run.config import RunConfig

        cfg = RunConfig.from_dict({
            "title": "baselens demo — synthetic tissue (H&E + gene expression)"
                     + (" (quick)" if args.quick else ""),
            "data": {"synthetic_tissue": {"preset": "quick" if args.quick else "demo",
                                          "seed": args.seed}}})
    else:
        cfg = _demo_config(args)
    t = time.perf_counter()
    res = run_pipeline(_apply_execution(cfg, args), args.out, progress=not args.quiet)
    print(f"finished in {time.perf_counter() - t:.1f} s")
    print(f"report: {res.report.resolve()}")
    return 0


def protocol_dirs() -> list[Path]:
    """Where built-in protocols live: ``./protocols`` and the source tree's ``protocols/``
    (a git checkout or an editable install)."""
    import baselens

    src = Path(baselens.__file__).resolve().parents[2] / "protocols"
    return [d for d in (Path.cwd() / "protocols", src) if d.is_dir()]


def find_config(name: str) -> str:
    """A config path as given, else a built-in protocol by name (``rxrx3_core`` or
    ``rxrx3_core.toml`` → ``protocols/rxrx3_core.toml``)."""
    if Path(name).exists() or "/" in name or "\\" in name:
        return name
    stem = name[:-5] if name.endswith(".toml") else name
    for d in protocol_dirs():
        if (d / f"{stem}.toml").is_file():
            return str(d / f"{stem}.toml")
    known = sorted({p.stem for d in protocol_dirs() for p in d.glob("*.toml")})
    raise FileNotFoundError(f"config file not found: {name}"
                            + (f" (built-in protocols: {', '.join(known)})" if known else ""))


def cmd_run(args) -> int:
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    args.config = find_config(args.config)
    variables = {"data_dir": getattr(args, "data_dir", None),
                 "annotations_dir": getattr(args, "annotations_dir", None)}
    cfg = _apply_execution(RunConfig.from_toml(args.config, variables=variables), args)
    if getattr(args, "reference", None):  # --reference all: screens without negative controls
        if cfg.unit == "spot":
            raise SystemExit("error: --reference applies to screens; a tissue run has no "
                             "profile normalization")
        cfg.profile = {**cfg.profile, "reference": args.reference}
    t = time.perf_counter()
    res = run_pipeline(cfg, args.out, progress=not args.quiet)
    print(f"finished in {time.perf_counter() - t:.1f} s")
    print(f"report: {res.report.resolve()}")
    return 0


def cmd_status(args) -> int:
    from baselens.run.execution import status_report

    print(status_report(args.dir))
    return 0


def cmd_compare(args) -> int:
    from baselens.run.compare import compare_runs

    report = compare_runs(args.runs, args.out, title=args.title,
                          allow_different_screens=args.allow_different_screens)
    print(f"report: {report.resolve()}")
    return 0


def cmd_list(args) -> int:
    from baselens._extras import install_hint, method_extras, missing_extras
    from baselens.extract.registry import list_extractors

    from baselens.extract.registry import KINDS, MODALITIES
    from baselens.extract.tissue import TISSUE_ALIASES

    lacking: set[str] = set()
    specs = list_extractors()
    for modality in MODALITIES:
        print(f"{modality} representations"
              + (" (sites of a Cell Painting screen)" if modality == "screen" else
                 " (spots of [data.hest] / [data.synthetic_tissue]; networks above run on "
                 "the H&E patch too)"))
        for kind in KINDS:
            for spec in specs:
                if spec.modality != modality or spec.kind != kind:
                    continue
                missing = missing_extras(method_extras(spec.name, tissue=modality == "tissue"))
                lacking.update(missing)
                mark = "available" if not missing else f"needs [{','.join(missing)}]"
                print(f"  {spec.name:<24} {spec.kind:<10} {mark:<23} {spec.description}")
        if modality == "tissue":
            print("  old names in tissue configs: " + ", ".join(
                f"{old} = {new}" for old, new in TISSUE_ALIASES.items()))
    if lacking:
        print(f"representations marked 'needs [...]' are not installed here: {install_hint(lacking)}")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in PAPERS.items()))
    return 0


#: The papers ``baselens list`` and the docstrings cite, in full.
PAPERS = {
    "arXiv 2603.13377": '"Deep Learning for BioImaging: What Are We Learning?" (ICML 2026)',
    "Seal et al. 2026": '"Counting cells can accurately predict small-molecule bioactivity '
                        'benchmarks", Nat. Commun.',
    "MorphoHELM": "Hayir, Crawford & Lu 2026 (microsoft/MorphoHELM)",
}


def cmd_synth(args) -> int:
    from baselens.data.synthetic import generate_screen
    from baselens.run.config import synthetic_config

    over = {"preset": args.preset, "seed": args.seed}
    if args.batch_effect is not None:
        over["batch_effect"] = args.batch_effect
    path = generate_screen(synthetic_config(over), args.out)
    print(f"load_data: {Path(path).resolve()}")
    return 0


def cmd_download(args) -> int:
    from baselens.data.datasets import download_dataset

    ms = str(args.max_sites).lower()
    if ms not in ("all", "0") and not ms.isdigit():
        raise ValueError(f"--max-sites must be a number or 'all', got {args.max_sites!r}")
    max_sites = None if ms in ("all", "0") else int(ms)
    download_dataset(args.dataset, args.out, plates=args.plates, source=args.source,
                     batch=args.batch, max_sites=max_sites, sites_per_well=args.sites_per_well,
                     wells=args.wells, channels=args.channels, shards=args.shards,
                     embeddings=not args.no_embeddings, annotations=not args.no_annotations,
                     moa=args.moa, moa_table=args.moa_table, base_url=args.base_url,
                     revision=args.revision, dry_run=args.dry_run, retries=args.retries,
                     backoff=args.backoff, timeout=args.timeout)
    return 0


def _inspect_config(path: str) -> int:
    """What a run config would need: its extras, which of them are installed here."""
    from baselens._extras import requirements_text
    from baselens.run.config import (DEFAULT_METHODS, DEFAULT_TISSUE_METHODS,
                                     is_tissue_config, tomllib)

    d = tomllib.loads(Path(path).read_text())
    tissue = is_tissue_config(d)
    methods = d.get("methods", DEFAULT_TISSUE_METHODS if tissue else DEFAULT_METHODS)
    data = dict(d.get("data") or {})
    if not tissue and "load_data" not in data:
        data.setdefault("synthetic", {})  # what a run does without a load_data table
    print(f"config: {path} ({len(methods)} methods)")
    print(requirements_text(methods, data, d.get("tasks"), tissue=tissue))
    return 0


def cmd_inspect(args) -> int:
    from baselens.run.inspect import inspect_path

    if str(args.path).endswith(".toml"):
        return _inspect_config(args.path)

    path_map = dict(kv.split("=", 1) for kv in args.path_map or [])
    rep = inspect_path(args.path, channels=args.channels, illum=args.illum, path_map=path_map,
                       channel_map=args.channel_map, pattern=args.pattern, plate=args.plate,
                       platemap=args.platemap, perturbation=args.perturbation,
                       negcon=args.negcon, metadata=args.metadata,
                       platemap_options={k: v for k, v in {
                           "negcon": args.negcon, "fill_empty": args.fill_empty,
                           "perturbation": args.perturbation}.items() if v})
    print(rep.text())
    if rep.problems:  # the error a run would stop at, as a run reports it
        print(f"baselens: error: {rep.problems[0]}", file=sys.stderr)
        return 2
    return 0


def _usable_profile_source(args) -> str:
    """A profile table's unusable feature columns (NaN/inf, constant) stop ``load-data``
    with their names and ``--drop-nonfinite-columns``; with the flag, a copy without them
    goes to ``OUT/<name>.parquet`` (counted in ``OUT/dropped_columns.json``)."""
    import json

    from baselens.api import unusable_columns
    from baselens.run.inspect import detect_kind
    from baselens.data.profiles import read_profile_file, read_profiles

    src = Path(args.source).expanduser()
    if src.is_dir() or detect_kind(src) != "profiles":
        return args.source
    pt = read_profiles(src, perturbation=args.perturbation, negcon=args.negcon)
    nonfinite, constant, what = unusable_columns(pt.table, pt.features)
    if not nonfinite and not constant:
        return args.source
    if not args.drop_nonfinite_columns:
        raise ValueError(f"{src}: feature columns no representation can use: {what}; drop "
                         "them with --drop-nonfinite-columns, or fix them in the table")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{src.name.split('.')[0]}.parquet"
    read_profile_file(src).drop(columns=nonfinite + constant).to_parquet(copy, index=False)
    (out / "dropped_columns.json").write_text(json.dumps(
        {"source": str(src), "nonfinite": nonfinite, "constant": constant}, indent=2))
    print(f"dropped {len(nonfinite) + len(constant)} of {len(pt.features)} feature columns: "
          f"{what} (listed in {out / 'dropped_columns.json'})")
    return str(copy)


def cmd_load_data(args) -> int:
    from baselens.run.inspect import build_run_inputs

    source = args.inspect_source = _usable_profile_source(args)
    cfg, summary = build_run_inputs(
        source, args.out, pattern=args.pattern, plate=args.plate, platemap=args.platemap,
        platemap_options={k: v for k, v in {"negcon": args.negcon, "fill_empty": args.fill_empty,
                                            "perturbation": args.perturbation}.items() if v},
        channel_map=args.channel_map, plane=args.plane, on_missing=args.on_missing,
        perturbation=args.perturbation, negcon=args.negcon, embeddings=args.embeddings,
        image_root=args.image_root, title=args.title)
    print(summary)
    print(f"config: {cfg.resolve()}")
    print(f"next: {_next_inspect(args, cfg)}  then  baselens run {_quote(cfg)} "
          f"--out {_quote(Path('runs') / cfg.parent.name)}")
    return 0


def _quote(p) -> str:
    import shlex

    return shlex.quote(str(p))


def _next_inspect(args, cfg: Path) -> str:
    """The ``baselens inspect`` command that works on what ``load-data`` wrote: the
    load_data table of images, or, for a profile table (its load_data is metadata only),
    the profile table itself with the same perturbation / control flags."""
    for name in ("load_data.csv", "load_data.parquet"):
        ld = cfg.parent / name
        if not ld.exists():
            continue
        from baselens.run.inspect import detect_kind

        try:
            if detect_kind(ld) == "load_data":
                return f"baselens inspect {_quote(ld)}"
        except ValueError:
            pass
    cmd = f"baselens inspect {_quote(getattr(args, 'inspect_source', args.source))}"
    if args.perturbation:
        cmd += f" --perturbation {_quote(args.perturbation)}"
    if args.negcon:
        cmd += " --negcon " + " ".join(_quote(v) for v in args.negcon)
    return cmd


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baselens",
        description="Score image representations next to diagnostic baselines.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every filter step")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole pipeline on the built-in synthetic screen")
    d.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    d.add_argument("--quick", action="store_true", help="a tiny screen (~30 s) for tests")
    d.add_argument("--seed", type=int, default=0, help="simulator seed")
    d.add_argument("--batch-effect", type=float, default=None,
                   help="batch-effect strength of the synthetic screen (0 = none)")
    d.add_argument("--tissue", action="store_true",
                   help="synthetic H&E tissue with gene expression instead (the HEST protocol of "
                        "\"Deep Learning for BioImaging\", arXiv 2603.13377)")
    d.add_argument("--quiet", action="store_true")
    _add_execution_options(d)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run a TOML config")
    r.add_argument("config", help="TOML config file, or a built-in protocol's name "
                   "(protocols/: jump_cp_controls, rxrx3_core, morphohelm_moa, hest_synthetic)")
    r.add_argument("--out", required=True, help="run folder")
    r.add_argument("--data-dir", default=None, metavar="DIR",
                   help="downloaded dataset folder: replaces ${data_dir} in the config "
                        "(default: data/<dataset> under the current directory)")
    r.add_argument("--annotations-dir", default=None, metavar="DIR",
                   help="relationship tables (CORUM.txt, ...): replaces ${annotations_dir} "
                        "(default: <data dir>/annotations)")
    r.add_argument("--reference", choices=["negcon", "all"], default=None,
                   help="wells each plate is normalized to: its negative controls (default) or "
                        "all its wells (screens without negative controls); as [profile] "
                        "reference")
    r.add_argument("--quiet", action="store_true")
    _add_execution_options(r)
    r.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help="what is done and what is left in a run folder")
    st.add_argument("dir", help="run folder (the --out of demo/run)")
    st.set_defaults(func=cmd_status)

    cmp_ = sub.add_parser("compare", help="merge run folders into one report")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with scores.parquet)")
    cmp_.add_argument("--out", required=True, help="folder for the merged tables and report")
    cmp_.add_argument("--title", default=None, help="report title")
    cmp_.add_argument("--allow-different-screens", action="store_true",
                      help="merge runs that scored different perturbations or wells; each "
                           "run's models are then compared with their own run's baselines")
    cmp_.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="list registered representations (and whether their "
                                     "extras are installed)")
    ls.set_defaults(func=cmd_list)

    s = sub.add_parser("synth", help="write a synthetic screen (images + load_data + ground truth)")
    s.add_argument("--out", required=True)
    s.add_argument("--preset", choices=["demo", "quick"], default="demo")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-effect", type=float, default=None)
    s.set_defaults(func=cmd_synth)

    dl = sub.add_parser(
        "download", help="fetch a public dataset (jump-cp, rxrx3-core, cpgNNNN-<name>) with "
                         "resume, retries, checksums and a manifest; writes load_data.parquet")
    dl.add_argument("dataset", metavar="DATASET",
                    help="jump-cp | rxrx3-core | a Cell Painting Gallery project such as "
                         "cpg0000-jump-pilot")
    dl.add_argument("--out", default=None, help="folder (default data/<DATASET>)")
    dl.add_argument("--plates", nargs="+", default=None, metavar="PLATE",
                    help="plate barcodes (jump-cp default: BR00126114 BR00126115)")
    dl.add_argument("--source", default=None, help="e.g. source_4 (jump-cp, cpg*)")
    dl.add_argument("--batch", default=None, help="batch folder (cpg* datasets)")
    dl.add_argument("--max-sites", default="64", metavar="N",
                    help="sites per plate (jump-cp, cpg*) or in all (rxrx3-core); "
                         "'all' for every site (default 64)")
    dl.add_argument("--sites-per-well", type=int, default=None, metavar="K",
                    help="at most K sites per well before --max-sites (spreads over wells)")
    dl.add_argument("--wells", choices=["all", "controls"], default="all",
                    help="jump-cp, cpg*: 'controls' keeps only negcon/poscon wells (DMSO and "
                         "the positive controls) before --sites-per-well and --max-sites")
    dl.add_argument("--channels", nargs="+", default=None,
                    help="load_data channels to fetch (default the 5 Cell Painting channels)")
    dl.add_argument("--shards", nargs="+", type=int, default=None,
                    help="rxrx3-core image shards 0-34 to fetch (default 0; ~0.5 GB each)")
    dl.add_argument("--no-embeddings", action="store_true",
                    help="rxrx3-core: skip the 532 MB OpenPhenom embeddings file")
    dl.add_argument("--no-annotations", action="store_true",
                    help="rxrx3-core: skip efaar-benchmarking's CORUM/HuMAP/Reactome/SIGNOR/"
                         "StringDB tables (DIR/annotations/; CORUM and SIGNOR are CC-BY-NC)")
    dl.add_argument("--moa", action="store_true",
                    help="jump-cp: write DIR/compound_moa.csv from the Drug Repurposing Hub "
                         "(InChIKey join; non-commercial use only)")
    dl.add_argument("--moa-table", default=None, metavar="PATH_OR_URL",
                    help="jump-cp: MoA labels from this table instead (JCP2022 id or InChIKey "
                         "+ an MoA column, e.g. MorphoHELM's labeled_moa_samples.csv); "
                         "implies --moa")
    dl.add_argument("--base-url", default=None, metavar="URL",
                    help="mirror root: https://HOST/PATH is read from URL/HOST/PATH "
                         "(default $BASELENS_MIRROR, else the upstream hosts)")
    dl.add_argument("--revision", default=None,
                    help="git revision of the JUMP metadata / Hugging Face repo (default main)")
    dl.add_argument("--dry-run", action="store_true",
                    help="fetch only the index files (metadata, load_data) and list the rest "
                         "with sizes")
    dl.add_argument("--retries", type=int, default=5, help="retries per file (default 5)")
    dl.add_argument("--backoff", type=float, default=1.0,
                    help="seconds before the first retry, doubled each time (default 1)")
    dl.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    dl.set_defaults(func=cmd_download)

    ins = sub.add_parser("inspect", help="what baselens sees in a load_data table, an image "
                                         "folder, a profile table or an embeddings file; "
                                         "for a run config (.toml), the extras it needs")
    ins.add_argument("path", help="load_data (.csv/.parquet), image folder, profile table, "
                                  "embeddings (.parquet/.csv/.npy/.h5ad), RxRx3 metadata or "
                                  "a run config (.toml)")
    ins.add_argument("--channels", nargs="+", default=None, help="channels to read (load_data)")
    ins.add_argument("--illum", action="store_true", help="apply the illumination functions")
    ins.add_argument("--path-map", nargs="+", default=None, metavar="PREFIX=DIR",
                     help="replace a PathName prefix, e.g. s3://cellpainting-gallery=/data/cpg")
    ins.add_argument("--channel-map", default=None, metavar="MAP",
                     help="NAME=CHANNEL,... (e.g. DNA=ch5,ER=ch4) or a preset (jump_phenix)")
    ins.add_argument("--pattern", default="auto",
                     help="image folder file names: auto | opera | imagexpress | baselens | a regex")
    ins.add_argument("--plate", default=None, help="plate name for an image folder")
    ins.add_argument("--platemap", default=None, help="plate map CSV/TSV for an image folder")
    ins.add_argument("--perturbation", default=None,
                     help="column naming the perturbation (profile tables, plate maps)")
    ins.add_argument("--negcon", nargs="+", default=None, metavar="VALUE",
                     help="perturbation value(s) that are negative controls (e.g. DMSO)")
    ins.add_argument("--fill-empty", default=None, metavar="NAME",
                     help="perturbation of plate-map wells left empty (e.g. DMSO)")
    ins.add_argument("--metadata", default=None, help="metadata table of a .npy embeddings file")
    ins.set_defaults(func=cmd_inspect)

    ld = sub.add_parser("load-data", help="build a run's inputs (load_data + run.toml) from an "
                                          "image folder and plate map, a profile table or "
                                          "RxRx3 metadata")
    ld.add_argument("source", help="image folder, profile table or metadata_rxrx3_core.csv")
    ld.add_argument("--out", required=True, help="folder for load_data and run.toml")
    ld.add_argument("--pattern", default="auto",
                    help="file names: auto | opera | imagexpress | baselens | a regex with "
                         "(?P<well>) or (?P<row>)(?P<col>), (?P<channel>), (?P<site>), (?P<plate>)")
    ld.add_argument("--plate", default=None, help="plate name when the file names carry none")
    ld.add_argument("--platemap", default=None,
                    help="CSV/TSV: well (, plate), perturbation, control_type (negcon/poscon)")
    ld.add_argument("--perturbation", default=None,
                    help="plate-map / profile column naming the perturbation")
    ld.add_argument("--negcon", nargs="+", default=None, metavar="VALUE",
                    help="perturbation value(s) that are negative controls (e.g. DMSO)")
    ld.add_argument("--fill-empty", default=None, metavar="NAME",
                    help="perturbation of plate-map wells left empty (e.g. DMSO)")
    ld.add_argument("--channel-map", default=None, metavar="MAP",
                    help="NAME=CHANNEL,... (e.g. DNA=ch5,ER=ch4,RNA=ch3,AGP=ch2,Mito=ch1) or "
                         "a preset (jump_phenix, pediatric_atlas)")
    ld.add_argument("--plane", type=int, default=None, help="keep one z-plane (Opera p<NN>)")
    ld.add_argument("--on-missing", choices=["error", "drop"], default="error",
                    help="a site missing a channel: stop (default) or leave it out (counted)")
    ld.add_argument("--embeddings", default=None,
                    help="embeddings to score: a profile-table source takes a model's "
                         "embeddings of the same wells (plate + well columns), scored next to "
                         "the table's classic and cell_count baselines; RxRx3: "
                         "OpenPhenom_rxrx3_core_embeddings.parquet")
    ld.add_argument("--image-root", default=None, help="RxRx3: folder of the unpacked images")
    ld.add_argument("--title", default=None, help="report title")
    ld.add_argument("--drop-nonfinite-columns", action="store_true",
                    help="profile tables: leave out feature columns with NaN/inf values or a "
                         "single value (listed in OUT/dropped_columns.json)")
    ld.set_defaults(func=cmd_load_data)
    return p


def _log_failure(out, exc: BaseException) -> Path | None:
    """Append the traceback and a one-line ``error:`` to ``OUT/run.log`` (``baselens
    status`` shows that last line); returns the log's path, or None without a run folder."""
    import os
    import traceback

    if out is None or not Path(out).is_dir():
        return None
    log = Path(out) / "run.log"
    stamp = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}]"
    try:
        with open(log, "a") as f:
            f.write("".join(f"{stamp} {ln}\n" for ln in "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()))
            f.write(f"{stamp} error: {_error_text(exc)}\n")
    except OSError:  # pragma: no cover - a read-only folder
        return None
    return log


def _error_text(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    known = (ValueError, FileNotFoundError, KeyError, RuntimeError)
    return str(msg) if isinstance(exc, known) else f"{type(exc).__name__}: {msg}"


def main(argv: list[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[baselens] %(levelname)s %(message)s")
    runs = args.command in ("run", "demo")
    if runs and not args.verbose:
        # dask's INFO lines and its workers' copy of a task's traceback stay off the
        # terminal (workers inherit the environment); the error is printed once below
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        log = _log_failure(getattr(args, "out", None), exc) if runs else None
        print(f"baselens: error: {_error_text(exc)}"
              + (f" (details in {log})" if log else ""), file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional extra (baselens[images], ...) is not installed
        from baselens._extras import import_error_hint

        hint = import_error_hint(exc)
        if hint is None:
            raise
        print(f"baselens: error: {hint}", file=sys.stderr)
        return 2
    except Exception as exc:  # a worker's error in a run: once, without the raw traceback
        if not runs:
            raise
        log = _log_failure(getattr(args, "out", None), exc)
        print(f"baselens: error: {_error_text(exc)}"
              + (f" (traceback in {log})" if log else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
