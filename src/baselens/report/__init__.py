"""Stage 6 — report: one self-contained HTML file per run."""
