"""baselens: what have microscopy image representations actually learned?

Data flows one way::

    data -> extract -> profile -> evaluate -> diagnose -> report

driven by :mod:`baselens.run` (config, pipeline, execution). The Python API::

    import baselens
    results = baselens.Benchmark(table, perturbation="Metadata_broad_sample", negcon="DMSO").run()

(:mod:`baselens.api`, imported on first use: ``import baselens`` stays light).
"""

__version__ = "0.1.0"

__all__ = ["Benchmark", "Results", "__version__"]


def __getattr__(name: str):
    if name in ("Benchmark", "Results"):
        from baselens import api

        return getattr(api, name)
    raise AttributeError(f"module 'baselens' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["Benchmark", "Results"])
