"""Stage 5 — diagnose: how much each model adds beyond the strongest baseline."""
