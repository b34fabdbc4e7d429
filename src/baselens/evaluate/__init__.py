"""Stage 4 — evaluate: tasks that turn profiles into rows of the results contract.

:data:`TASKS` (:mod:`baselens.evaluate.registry`) is the one task registry: every task,
its function, defaults and the metrics it writes (name, direction, kind, headline).
"""

from baselens.evaluate.registry import TASKS, Metric, TaskSpec, metric_spec
from baselens.evaluate.relationship_recall import relationship_recall
from baselens.evaluate.replicate_retrieval import replicate_retrieval

__all__ = ["TASKS", "Metric", "TaskSpec", "metric_spec", "relationship_recall",
           "replicate_retrieval"]
