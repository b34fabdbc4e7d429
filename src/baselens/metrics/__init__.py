"""Pure metric functions (no I/O).

* :func:`average_precision`, :func:`mean_average_precision`, :func:`fraction_retrieved` —
  copairs-compatible retrieval metrics (``baselens.metrics.average_precision``);
* :func:`known_relationship_recall` — EFAAR known-relationship recall
  (``baselens.metrics.relationship_recall``).
"""

from .average_precision import (
    average_precision,
    benjamini_hochberg,
    fraction_retrieved,
    mean_average_precision,
    multilabel_average_precision,
)
from .relationship_recall import filter_relationship_pairs, known_relationship_recall

__all__ = [
    "average_precision",
    "mean_average_precision",
    "multilabel_average_precision",
    "fraction_retrieved",
    "benjamini_hochberg",
    "known_relationship_recall",
    "filter_relationship_pairs",
]
