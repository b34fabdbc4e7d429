"""Stage 4 — evaluate: tasks that turn profiles into rows of the results contract."""

from baselens.evaluate.relationship_recall import relationship_recall
from baselens.evaluate.replicate_retrieval import replicate_retrieval

TASKS = {
    "replicate_retrieval": replicate_retrieval,
    "relationship_recall": relationship_recall,
}

__all__ = ["TASKS", "relationship_recall", "replicate_retrieval"]
