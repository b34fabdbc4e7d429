"""Ground-truth synthetic Cell Painting screen with real image rendering.

Sources → batches → plates → wells → sites, five-channel uint16 images of cells whose
phenotype along named latent axes is known, so every task has a ground truth. What each
axis does to the pixels, the technical effects and the budget: ``docs/synthetic.md``.

* :mod:`.config` — :class:`SyntheticConfig`, axes, classes, controls, seeded streams;
* :mod:`.design` — perturbations, relationships, bioactivity, plates, layout, technical
  effects, realized site phenotypes (no images);
* :mod:`.render` — cell placement, textures, :func:`render_site`;
* :mod:`.write` — :func:`generate_screen` (files on disk, layout in docs/architecture.md).

Examples
--------
>>> from baselens.data.synthetic import SyntheticConfig, generate_screen
>>> load_data_path = generate_screen(SyntheticConfig.quick(), "runs/synthetic")  # doctest: +SKIP
"""

from __future__ import annotations

from baselens.data.synthetic.config import (
    AXES,
    GENERATOR_VERSION,
    GT_COLUMNS,
    MORPHOLOGY_AXES,
    NEGCON,
    PHENOTYPE_CLASSES,
    POSCONS,
    SyntheticConfig,
)
from baselens.data.synthetic.design import (  # noqa: F401  (_technical_parameters: tests)
    _technical_parameters,
    make_bioactivity,
    make_layout,
    make_perturbations,
    make_plates,
    make_relationships,
    realize_site_phenotypes,
)
from baselens.data.synthetic.render import gaussian_random_field, place_cells, render_site
from baselens.data.synthetic.write import generate_screen
from baselens.data.wells import well_name

__all__ = [
    "AXES",
    "GENERATOR_VERSION",
    "GT_COLUMNS",
    "PHENOTYPE_CLASSES",
    "MORPHOLOGY_AXES",
    "NEGCON",
    "POSCONS",
    "SyntheticConfig",
    "generate_screen",
    "make_perturbations",
    "make_relationships",
    "make_bioactivity",
    "make_plates",
    "make_layout",
    "realize_site_phenotypes",
    "gaussian_random_field",
    "place_cells",
    "render_site",
    "well_name",
]
