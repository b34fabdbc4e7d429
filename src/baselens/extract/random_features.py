"""A null representation: seeded Gaussian noise per site, ignoring the image.

Its scores are what chance gives on each task (e.g. relationship recall ≈ 0.10 at the
(0.05, 0.95) tails, mAP at the positives' prevalence), so the report can show how far
every baseline and model is from nothing at all.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, register


@register("random", kind="null", description="seeded Gaussian noise per site (chance level)")
class RandomFeatures:
    """Gaussian noise features, a deterministic function of (seed, plate, well, site)."""

    needs_images = False

    def __init__(self, n_features: int = 32, seed: int = 0):
        self.n_features = int(n_features)
        self.seed = int(seed)

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        rows = []
        for key in batch.meta[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].astype(str).itertuples(index=False):
            digest = hashlib.sha256(f"{self.seed}|{'|'.join(key)}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            rows.append(rng.standard_normal(self.n_features))
        cols = [f"random_{i:03d}" for i in range(self.n_features)]
        return {DEFAULT_LAYER: pd.DataFrame(np.asarray(rows).reshape(-1, self.n_features), columns=cols)}
