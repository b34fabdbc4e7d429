"""baselens: what have microscopy image representations actually learned?

Data flows one way::

    data -> extract -> profile -> evaluate -> diagnose -> report

driven by :mod:`baselens.run` (config, pipeline, execution).
"""

__version__ = "0.1.0"
