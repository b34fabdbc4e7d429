"""The lean install: which extras a config needs, and a clear error when one is missing.

A missing extra is simulated by making :func:`importlib.util.find_spec` return ``None``
for its modules (nothing is uninstalled); the core-only environment itself is checked
end to end by ``.ci/core_env_check.py`` (run by ``.ci/run``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from baselens import _extras
from baselens._extras import EXTRAS, install_hint, method_extras, requirements
from baselens.run.config import ConfigError, RunConfig

ROOT = Path(__file__).resolve().parents[1]

VIT = {"name": "vit_small_patch16_224", "label": "vit_s16_random",
       "params": {"weights": "random", "seed": 0}}
TABLE_ROUTE = [{"name": "precomputed", "label": "my_table",
                "params": {"path": "profiles.parquet", "keys": "well"}},
               {"name": "plate_layout"}, {"name": "random"}]


def _without(monkeypatch, *extras: str) -> None:
    """Pretend the modules of ``extras`` are not installed."""
    gone = {m for e in extras for m in EXTRAS[e]}
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.split(".")[0] in gone:
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def _config(methods, **extra) -> dict:
    return {"data": {"load_data": "load_data.parquet", "channels": []},
            "methods": methods, **extra}


# ------------------------------------------------------------------ what needs what
def test_method_extras_by_kind_of_work():
    assert method_extras("plate_layout") == ()
    assert method_extras("random") == ()
    assert method_extras("precomputed", {"path": "x.parquet"}) == ()
    assert method_extras("pixel_stats") == ("images",)
    assert method_extras("classic") == ("images",)
    assert method_extras("vit_small_patch16_224") == ("images", "networks")
    assert method_extras("resnet50_random") == ("images", "networks")
    assert method_extras("openphenom") == ("images", "networks")
    # cell_graph runs torch only for its GCN/EGNN variants
    assert method_extras("cell_graph") == ("images", "networks")
    assert method_extras("cell_graph", {"variants": ["points", "image"]}) == ("images",)
    assert method_extras("cell_graph", {"variants": ["egnn"]}) == ("images", "networks")


def test_requirements_name_what_needs_each_extra():
    need = requirements(TABLE_ROUTE + [VIT, {"name": "pixel_mean"}],
                        data={"load_data": "x"},
                        tasks={"bioactivity": {"models": ["logistic", "xgboost"]}})
    assert need == {"images": ["vit_s16_random", "pixel_mean"],
                    "networks": ["vit_s16_random"],
                    "xgboost": ["tasks.bioactivity.models"]}
    assert requirements(TABLE_ROUTE, data={"load_data": "x"},
                        tasks={"bioactivity": {"models": ["logistic"]}}) == {}
    # a synthetic screen writes TIFFs
    assert requirements([], data={"synthetic": {}}) == {"images": ["[data.synthetic]"]}


def test_tissue_requirements():
    methods = [{"name": "pixel_stats"}, {"name": "tissue_count"},
               {"name": "tissue_gcn", "label": "gcn"}, {"name": "resnet18_random"}]
    need = requirements(methods, data={"hest": {"root": "x"}},
                        tasks={"gene_expression": {"model": "xgboost"}}, tissue=True)
    assert need == {"images": ["[data.hest]"], "networks": ["gcn", "resnet18_random"],
                    "xgboost": ["tasks.gene_expression.model"], "tissue": ["[data.hest]"]}


def test_install_hint_lists_extras_in_a_fixed_order():
    assert install_hint(["networks"]) == 'pip install "baselens[networks]"'
    assert install_hint(["tissue", "images"]) == 'pip install "baselens[images,tissue]"'


# ------------------------------------------------------------------ missing extras
def test_missing_networks_fails_at_validation_with_one_line(monkeypatch):
    _without(monkeypatch, "networks")
    assert _extras.missing_extras(["networks", "images"]) == ["networks"]
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict(_config(TABLE_ROUTE + [VIT]))
    msg = str(exc.value)
    assert 'pip install "baselens[networks]"' in msg
    assert "vit_s16_random" in msg
    assert "\n" not in msg
    assert "images" not in msg  # only what is missing is named


def test_missing_extra_names_partly_installed_modules(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "cp_measure" else real(name, *a, **k))
    with pytest.raises(ConfigError, match=r'cp_measure missing.*pip install "baselens\[images\]"'):
        RunConfig.from_dict(_config([{"name": "classic"}]))


def test_table_route_validates_without_any_extra(monkeypatch):
    _without(monkeypatch, *EXTRAS)
    cfg = RunConfig.from_dict(_config(TABLE_ROUTE))
    assert [m["name"] for m in cfg.methods] == ["precomputed", "plate_layout", "random"]


def test_default_config_and_xgboost_task_fail_without_their_extras(monkeypatch):
    _without(monkeypatch, "images", "xgboost")
    with pytest.raises(ConfigError, match=r'pip install "baselens\[images\]"') as exc:
        RunConfig.from_dict({})  # the demo: a synthetic screen and image baselines
    assert "[data.synthetic]" in str(exc.value)
    with pytest.raises(ConfigError, match=r'tasks\.bioactivity\.models.*baselens\[xgboost\]'):
        RunConfig.from_dict(_config(TABLE_ROUTE, tasks={
            "bioactivity": {"models": ["logistic", "xgboost"]}}))


def test_tissue_config_fails_without_networks(monkeypatch):
    _without(monkeypatch, "networks")
    with pytest.raises(ConfigError, match=r'tissue_gcn_random.*pip install "baselens\[networks\]"'):
        RunConfig.from_dict({"data": {"synthetic_tissue": {"preset": "quick"}},
                                "methods": [{"name": "random"},
                                            {"name": "tissue_gcn", "label": "tissue_gcn_random"}]})


def test_cli_run_prints_one_line_and_starts_nothing(monkeypatch, tmp_path, capsys):
    from baselens.run.cli import main

    _without(monkeypatch, "networks")
    cfg = tmp_path / "vit.toml"
    cfg.write_text(textwrap.dedent("""
        [data]
        load_data = "load_data.parquet"
        channels = []

        [[methods]]
        name = "vit_small_patch16_224"
        label = "vit_s16_random"
        params = { weights = "random" }
        """))
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("baselens: error:") and 'pip install "baselens[networks]"' in err
    assert not (tmp_path / "run").exists()


def test_list_marks_unavailable_representations(monkeypatch, capsys):
    from baselens.run.cli import main

    _without(monkeypatch, "networks")
    assert main(["list"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert "needs [networks]" in lines["resnet50_random"]
    assert "available" in lines["plate_layout"] and "available" in lines["pixel_stats"]
    assert 'pip install "baselens[networks]"' in lines["representations"]


def test_inspect_config_says_what_it_needs(monkeypatch, tmp_path, capsys):
    from baselens.run.cli import main

    _without(monkeypatch, "networks")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[data]\nload_data = "x.parquet"\n\n[[methods]]\nname = "pixel_mean"\n\n'
                   '[[methods]]\nname = "resnet50"\nlabel = "rn50"\n')
    assert main(["inspect", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert 'needs: pip install "baselens[images,networks]"' in out
    assert "baselens[images] (installed): pixel_mean, rn50" in out
    assert "baselens[networks] (missing here): rn50" in out
    assert 'install the missing ones: pip install "baselens[networks]"' in out


# ------------------------------------------------------------------ packaging
def test_core_dependencies_hold_no_extra_and_all_has_every_extra():
    from baselens.run.config import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for dist in ("torch", "timm", "scikit-image", "tifffile", "cp_measure", "xgboost", "h5py"):
        assert dist not in core, f"{dist} is a core dependency"
    opt = project["optional-dependencies"]
    assert set(EXTRAS) <= set(opt)
    assert opt["all"] == [f"baselens[{','.join(EXTRAS)}]"]


def test_no_module_imports_an_extra_at_import_time():
    """Every baselens module imports with the extras blocked (the table route's imports
    are all lazy); a top-level ``import torch`` anywhere would fail here."""
    blocked = sorted({m for mods in EXTRAS.values() for m in mods})  # threadpoolctl: sklearn
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        BLOCKED = {blocked!r}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked extra: {{name}}")
        sys.meta_path.insert(0, Block())
        import baselens
        bad = []
        for m in pkgutil.walk_packages(baselens.__path__, "baselens."):
            try:
                importlib.import_module(m.name)
            except ImportError as exc:
                bad.append(f"{{m.name}}: {{exc}}")
        print("\\n".join(bad))
        sys.exit(1 if bad else 0)
        """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ,
                            "PYTHONPATH": str(ROOT / "src")})
    assert p.returncode == 0, p.stdout + p.stderr


def test_cli_turns_an_extra_import_error_into_the_install_line(monkeypatch, capsys):
    """Work no config names (e.g. ``inspect`` on an image folder) still ends with the pip
    line, not a traceback; other ImportErrors are not hidden."""
    from baselens.run import cli

    def needs_tifffile(args):
        raise ModuleNotFoundError("No module named 'tifffile'", name="tifffile")

    def needs_other(args):
        raise ModuleNotFoundError("No module named 'nothere'", name="nothere")

    monkeypatch.setattr(cli, "cmd_inspect", needs_tifffile)
    assert cli.main(["inspect", "images/"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ('baselens: error: this needs baselens[images] (tifffile is not installed): '
                   'pip install "baselens[images]"')
    monkeypatch.setattr(cli, "cmd_inspect", needs_other)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["inspect", "images/"])
