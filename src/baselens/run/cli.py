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


def cmd_demo(args) -> int:
    from baselens.run.pipeline import run_pipeline

    t = time.perf_counter()
    res = run_pipeline(_demo_config(args), args.out, progress=not args.quiet)
    print(f"finished in {time.perf_counter() - t:.1f} s")
    print(f"report: {res.report.resolve()}")
    return 0


def cmd_run(args) -> int:
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    cfg = RunConfig.from_toml(args.config)
    t = time.perf_counter()
    res = run_pipeline(cfg, args.out, progress=not args.quiet)
    print(f"finished in {time.perf_counter() - t:.1f} s")
    print(f"report: {res.report.resolve()}")
    return 0


def cmd_list(args) -> int:
    from baselens.extract.registry import list_extractors

    for spec in list_extractors():
        print(f"{spec.name:<16} {spec.kind:<10} {spec.description}")
    return 0


def cmd_synth(args) -> int:
    from baselens.data.synthetic import generate_screen
    from baselens.run.config import synthetic_config

    over = {"preset": args.preset, "seed": args.seed}
    if args.batch_effect is not None:
        over["batch_effect"] = args.batch_effect
    path = generate_screen(synthetic_config(over), args.out)
    print(f"load_data: {Path(path).resolve()}")
    return 0


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
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run a TOML config")
    r.add_argument("config", help="TOML config file")
    r.add_argument("--out", required=True, help="run folder")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list registered representations")
    ls.set_defaults(func=cmd_list)

    s = sub.add_parser("synth", help="write a synthetic screen (images + load_data + ground truth)")
    s.add_argument("--out", required=True)
    s.add_argument("--preset", choices=["demo", "quick"], default="demo")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-effect", type=float, default=None)
    s.set_defaults(func=cmd_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[baselens] %(levelname)s %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"baselens: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
