"""The stage rules of docs/architecture.md, checked by parsing every import in src/baselens.

Each rule lists the offending ``file:line`` so a failure says what to move.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "baselens"
PIPELINE = ("data", "extract", "profile", "evaluate", "diagnose", "report", "run")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, path: Path) -> str:
    """Absolute module name of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path) -> list[tuple[int, str]]:
    """Every ``baselens`` module imported anywhere in ``path`` (top level or in a function).

    ``from baselens.x import y`` yields ``baselens.x.y`` too, so a submodule imported by
    name from its package (``from baselens import run``) is seen.
    """
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node, path)
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
    return [(line, m) for line, m in out if m == "baselens" or m.startswith("baselens.")]


def _stage_files(stage: str) -> list[Path]:
    root = PKG / stage
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


def violations(stages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """``file:line imports module`` for each import of a ``forbidden`` package by ``stages``."""
    bad: dict[str, str] = {}
    for stage in stages:
        for path in _stage_files(stage):
            for line, mod in imports(path):
                top = mod.split(".")[1] if "." in mod else ""
                if top in forbidden and top != stage:
                    bad.setdefault(f"{path.relative_to(SRC)}:{line}", mod)
    return [f"{where} imports {mod}" for where, mod in sorted(bad.items())]


def test_the_import_parser_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "baselens" / "report"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("import os\n\ndef g():\n    from baselens.run import cli\n"
                 "from ..extract import registry\nfrom . import common\n")
    global SRC
    old, SRC = SRC, tmp_path
    try:
        got = imports(f)
    finally:
        SRC = old
    assert (4, "baselens.run") in got and (4, "baselens.run.cli") in got
    assert (5, "baselens.extract") in got and (5, "baselens.extract.registry") in got
    assert (6, "baselens.report.common") in got
    assert not [m for _, m in got if m == "os"]


@pytest.mark.parametrize("rule, stages, forbidden", [
    ("no stage imports run",
     ("data", "extract", "profile", "evaluate", "diagnose", "report", "metrics"), ("run",)),
    ("report reads tables only",
     ("report",), ("run", "extract", "profile", "evaluate", "diagnose")),
    ("extract and evaluate never import each other", ("extract",), ("evaluate",)),
    ("extract and evaluate never import each other", ("evaluate",), ("extract",)),
    ("metrics imports nothing of the pipeline", ("metrics",), PIPELINE),
    ("data comes first: it imports no later stage",
     ("data",), ("extract", "profile", "evaluate", "diagnose", "report", "run")),
])
def test_stage_rule(rule, stages, forbidden):
    bad = violations(stages, forbidden)
    assert not bad, f"{rule}:\n  " + "\n  ".join(bad)


def test_metrics_imports_only_itself_and_private_helpers():
    bad = [f"{p.relative_to(SRC)}:{line} imports {m}"
           for p in _stage_files("metrics") for line, m in imports(p)
           if m != "baselens" and not (m.startswith("baselens.metrics")
                   or m.split(".")[1].startswith("_"))]
    assert not bad, "metrics imports nothing of the pipeline:\n  " + "\n  ".join(bad)
