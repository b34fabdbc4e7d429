"""Shared fixtures: reference implementations used as test oracles, real test data."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches beyond this machine: weight fetches fail fast instead (the code that
    downloads is tested against a 127.0.0.1 HTTP server)."""
    monkeypatch.setenv("BASELENS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-data folder (``BASELENS_TEST_DATA``), or skip with the reason."""
    root = os.environ.get("BASELENS_TEST_DATA")
    if not root:
        pytest.skip("BASELENS_TEST_DATA is not set (point it at shared/realdata)")
    return Path(root)


@pytest.fixture(scope="session")
def dsb2018(realdata):
    """The DSB 2018 nuclei image (float32) and its label mask (125 nuclei)."""
    import numpy as np
    import tifffile

    path = realdata / "images" / "nuclei_dsb2018" / "img2d.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found under BASELENS_TEST_DATA")
    return tifffile.imread(path).astype(np.float32), tifffile.imread(path.with_name("mask2d.tif"))


@pytest.fixture(scope="session")
def efaar():
    """Import efaar_benchmarking.benchmarking without its heavy dependencies.

    The module imports ``torch.from_numpy`` and ``geomloss.SamplesLoss`` at top level for its
    energy-distance benchmarks; neither is installed (efaar-benchmarking is installed with
    --no-deps) and neither is used by known_relationship_benchmark / compute_recall. We
    insert stub modules for the import only and remove them afterwards, because SciPy's
    array-API helpers look for ``sys.modules["torch"]`` at run time and would trip over a
    stub. SciPy/sklearn/joblib are imported first for the same reason.
    """
    pytest.importorskip("joblib")
    import scipy.stats  # noqa: F401
    import sklearn.metrics.pairwise  # noqa: F401
    import sklearn.utils  # noqa: F401

    stubs = {
        "torch": types.ModuleType("torch"),
        "geomloss": types.ModuleType("geomloss"),
    }
    stubs["torch"].from_numpy = lambda array: array
    stubs["geomloss"].SamplesLoss = lambda *args, **kwargs: None
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        bench = pytest.importorskip(
            "efaar_benchmarking.benchmarking", reason="efaar-benchmarking (test oracle) not installed"
        )
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    return bench


