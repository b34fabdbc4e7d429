"""Representations: every extractor registers itself in :mod:`baselens.extract.registry`.

Built-ins: ``pixel_mean``, ``pixel_stats`` (:mod:`.pixel`), ``cell_count``
(:mod:`.cell_count`), ``single_conv`` (:mod:`.single_conv`), all baselines, and
``ground_truth`` (:mod:`.ground_truth`, reference, synthetic screens only) and
``random`` (:mod:`.random_features`, reference, chance level).
"""

from baselens.extract.registry import (
    DEFAULT_LAYER,
    KINDS,
    SiteBatch,
    get_extractor,
    list_extractors,
    register,
)

# importing the modules registers their extractors
from baselens.extract import cell_count, ground_truth, pixel, random_features, single_conv  # noqa: E402,F401
# networks (torch/timm imported lazily, at first use), OpenPhenom, bring-your-own embeddings
from baselens.extract import networks, openphenom, precomputed  # noqa: E402,F401
from baselens.extract import cell_graph, classic, plate_layout, segmentation  # noqa: E402,F401
# no-pixel cell_count / classic baselines from a profile table
from baselens.extract import profile_table  # noqa: E402,F401
# tissue representations (modality "tissue": spots of a TissueDataset)
from baselens.extract import tissue  # noqa: E402,F401

__all__ = [
    "DEFAULT_LAYER",
    "KINDS",
    "SiteBatch",
    "get_extractor",
    "list_extractors",
    "register",
]
