"""Stage 5 — diagnose: what a representation adds beyond the baselines, and why.

* :mod:`.beyond_baseline` — each model against the best baseline per task, batch level
  and ``score`` metric: paired Wilcoxon over perturbations (or folds), Benjamini–Hochberg
  across the run, bootstrap CI, and a ``verdict`` ("beats" only when significant and sized);
* :mod:`.agreement` — Spearman agreement of similarity rankings
  (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026),
  Fig. 1b) and linear CKA between representations, and the baseline each model agrees
  most with;
* :mod:`.dimensionality` — PCA spectrum, effective rank, participation ratio (collapse,
  arXiv 2603.13377 §5.2);
* :mod:`.confounds` — residualization on cell count / pixel statistics and matched
  cell-count strata (arXiv 2603.13377 §5.3), and which representations the report draws
  before and after;
* :mod:`.layers` — the best layer of every method per task, level and metric;
* :mod:`.curation` — bioactivity assays predictable by cell count, curated task list
  (Seal et al. 2026, Nat. Commun., recommendations 1–4);
* :mod:`.classes` — mean mAP per planted phenotype class (synthetic screens);
* :mod:`.run` — :func:`run_diagnostics`, which runs them all and writes
  ``diagnostics/<name>.parquet``.
"""

from baselens.diagnose.run import DIAGNOSTICS, ProfileSet, run_diagnostics

__all__ = ["DIAGNOSTICS", "ProfileSet", "run_diagnostics"]
