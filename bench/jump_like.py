"""A synthetic well-profile table with a JUMP-like design, for scoring benches.

Design (cpg0016-like, scaled to ``n_wells``):

* plates of 384 wells, 16 DMSO wells per plate (``Metadata_ControlType = "negcon"``),
  the other 368 wells hold compounds;
* every compound has ``replicates`` (default 4) wells, each on a **different plate**: the
  plates are dealt into ``replicates`` interleaved sets and a compound takes one random
  well of the k-th plate of each set, so its replicates lie in different batches and,
  with 3 sources, in different sources;
* plates are numbered in acquisition order; ``plates_per_batch`` consecutive plates form a
  batch and batches go to ``sources`` sources round-robin (``Metadata_Batch``,
  ``Metadata_Source``);
* a share ``moa_fraction`` of the compounds carries one of ``n_moa`` mechanisms
  (``Metadata_moa``; empty for the others and for DMSO);
* features: per-compound effect (half of the compounds active, effect norm varying) + MoA
  effect + plate, batch and source offsets in a low-rank "technical" subspace + Gaussian
  noise. ``representation`` varies the mix (``"profiles"``, ``"batchy"`` = strong batch
  offsets, ``"noise"`` = no biology), so three representations differ as real ones do.

Everything is drawn from ``seed``; no file is written unless asked (``--out``).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

PLATE_SIZE = 384
DMSO_PER_PLATE = 16
ROWS, COLS = "ABCDEFGHIJKLMNOP", 24


def jump_like_design(n_wells: int = 20_000, *, replicates: int = 4, sources: int = 3,
                     plates_per_batch: int = 4, moa_fraction: float = 0.3, n_moa: int = 60,
                     seed: int = 0) -> pd.DataFrame:
    """Metadata of a JUMP-like screen with about ``n_wells`` wells (whole plates).

    Parameters
    ----------
    n_wells : int
        Number of wells: the design is laid out on whole plates (a multiple of
        ``replicates``) and cut after ``n_wells`` wells (the last plates' compounds then
        have fewer replicates).
    replicates, sources, plates_per_batch, moa_fraction, n_moa, seed
        See the module docstring.

    Returns
    -------
    pandas.DataFrame
        ``Metadata_Plate, Metadata_Well, Metadata_Batch, Metadata_Source,
        Metadata_Perturbation, Metadata_ControlType, Metadata_moa``, one row per well.
    """
    rng = np.random.default_rng(seed)
    n_plates = max(replicates, replicates * math.ceil(n_wells / PLATE_SIZE / replicates))
    per_set = n_plates // replicates
    cpd_wells = PLATE_SIZE - DMSO_PER_PLATE
    wells = np.array([f"{r}{c:02d}" for r in ROWS for c in range(1, COLS + 1)])
    rows = []
    # DMSO positions: the same 16 wells on every plate (JUMP: fixed control columns)
    dmso_pos = np.sort(rng.choice(PLATE_SIZE, DMSO_PER_PLATE, replace=False))
    cpd_pos = np.setdiff1d(np.arange(PLATE_SIZE), dmso_pos)
    n_cpd = per_set * cpd_wells
    cpd_moa = np.where(rng.random(n_cpd) < moa_fraction,
                       rng.integers(0, n_moa, n_cpd), -1)
    for p in range(n_plates):
        batch = p // plates_per_batch
        source = batch % sources
        k = p % per_set  # plate k of replicate set p // per_set: a compound's wells are per_set plates apart
        # compound j of plate-slot k sits at a random compound position on each replicate plate
        perm = np.random.default_rng([seed, p]).permutation(cpd_wells)
        cpds = k * cpd_wells + np.arange(cpd_wells)
        for w in dmso_pos:
            rows.append((f"P{p:05d}", wells[w], f"B{batch:04d}", f"S{source}", "DMSO", "negcon", ""))
        for j, w in zip(cpds, cpd_pos[perm]):
            moa = f"moa{cpd_moa[j]:03d}" if cpd_moa[j] >= 0 else ""
            rows.append((f"P{p:05d}", wells[w], f"B{batch:04d}", f"S{source}", f"C{j:06d}", "", moa))
    rows = rows[:n_wells]  # whole plates, then cut to n_wells (the last plate partly filled)
    return pd.DataFrame(rows, columns=["Metadata_Plate", "Metadata_Well", "Metadata_Batch",
                                       "Metadata_Source", "Metadata_Perturbation",
                                       "Metadata_ControlType", "Metadata_moa"])


def jump_like_features(meta: pd.DataFrame, n_features: int = 1000, *,
                       representation: str = "profiles", seed: int = 0,
                       dtype=np.float64) -> np.ndarray:
    """Feature matrix (wells x ``n_features``) for :func:`jump_like_design` metadata.

    ``representation``: ``"profiles"`` (biology + modest batch), ``"batchy"`` (biology +
    strong plate/batch/source offsets), ``"noise"`` (batch offsets and noise only).
    """
    scale = {"profiles": (1.0, 0.15), "batchy": (1.0, 0.6), "noise": (0.0, 0.3)}[representation]
    bio, tech = scale
    rng = np.random.default_rng([seed, sum(map(ord, representation))])
    n, d = len(meta), n_features
    x = rng.standard_normal((n, d)).astype(dtype)
    pert_codes, perts = pd.factorize(meta["Metadata_Perturbation"])
    if bio:
        eff = rng.standard_normal((len(perts), d)) * 0.25
        active = rng.random(len(perts)) < 0.5
        strength = np.where(active, rng.uniform(0.5, 2.0, len(perts)), 0.0)
        strength[perts.get_loc("DMSO")] = 0.0
        eff *= strength[:, None]
        x += (bio * eff[pert_codes]).astype(dtype)
        moa_codes, moas = pd.factorize(meta["Metadata_moa"].replace("", np.nan))
        if len(moas):
            m_eff = rng.standard_normal((len(moas), d)) * 0.3
            has = moa_codes >= 0
            x[has] += (bio * m_eff[moa_codes[has]]).astype(dtype)
    # technical offsets in a 20-dimensional subspace
    basis = rng.standard_normal((20, d)) / math.sqrt(20)
    for col, s in (("Metadata_Plate", 0.4), ("Metadata_Batch", 0.6), ("Metadata_Source", 0.8)):
        codes, uniq = pd.factorize(meta[col])
        off = rng.standard_normal((len(uniq), 20)) * s * tech
        x += (off[codes] @ basis).astype(dtype)
    return x


def jump_like_profiles(n_wells: int = 20_000, n_features: int = 1000,
                       representation: str = "profiles", seed: int = 0,
                       **design) -> tuple[pd.DataFrame, list[str]]:
    """Design (``design``: keywords of :func:`jump_like_design`) + features as one profile
    table; returns ``(table, feature_columns)``."""
    meta = jump_like_design(n_wells, seed=seed, **design)
    x = jump_like_features(meta, n_features, representation=representation, seed=seed)
    feats = [f"X_{i}" for i in range(n_features)]
    return pd.concat([meta, pd.DataFrame(x, columns=feats)], axis=1), feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells", type=int, default=20_000)
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--representation", default="profiles")
    ap.add_argument("--out", required=True, help="Parquet or CSV file to write")
    args = ap.parse_args()
    table, _ = jump_like_profiles(args.wells, args.features, args.representation)
    if args.out.endswith(".parquet"):
        table.to_parquet(args.out, index=False)
    else:
        table.to_csv(args.out, index=False)
    print(f"{len(table)} wells, {table.Metadata_Plate.nunique()} plates, "
          f"{table.Metadata_Perturbation.nunique() - 1} compounds -> {args.out}")


if __name__ == "__main__":
    main()
