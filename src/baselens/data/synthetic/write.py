"""Writing a synthetic screen to disk (layout in docs/architecture.md): images, load_data,
ground truth, and a completion marker so an identical config is never regenerated."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from baselens._io import write_atomic, write_parquet_atomic, write_text_atomic
from baselens.data import JUMP_CHANNELS, SITE_KEYS
from baselens.data.synthetic.config import (
    GENERATOR_VERSION,
    GT_COLUMNS,
    AXES,
    SyntheticConfig,
    _rng,
)
from baselens.data.synthetic.design import (
    _technical_parameters,
    make_bioactivity,
    make_layout,
    make_perturbations,
    make_plates,
    make_relationships,
    realize_site_phenotypes,
)
from baselens.data.synthetic.render import render_site


# ----------------------------------------------------------------------------- output
def _config_digest(config: SyntheticConfig) -> str:
    payload = json.dumps(
        {"generator_version": GENERATOR_VERSION, "config": config.to_dict()}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


_MARKER = ".complete"


def _is_complete(out_dir: Path, config: SyntheticConfig) -> bool:
    marker = out_dir / _MARKER
    cfg = out_dir / "ground_truth" / "config.json"
    if not (marker.is_file() and cfg.is_file() and (out_dir / "load_data.parquet").is_file()):
        return False
    try:
        same = json.loads(cfg.read_text()) == json.loads(json.dumps(config.to_dict()))
    except (OSError, ValueError):
        return False
    return same and marker.read_text().strip() == _config_digest(config)


def _n_jobs(n_jobs: int | None, n_sites: int) -> int:
    if n_jobs is None:
        n_jobs = min(4, os.cpu_count() or 1)
    return max(1, min(int(n_jobs), max(1, n_sites // 64)))


def _render_sites(config: SyntheticConfig, sources: list, jobs: list) -> None:
    """Render and write the sites in ``jobs`` (one process's share of the screen)."""
    import tifffile  # baselens[images]

    for well, site, plate_i, gt_row, n_cells, gain, src_i, paths in jobs:
        rng = _rng(config.seed, "site", plate_i, well, site)
        img = render_site(dict(zip(AXES, gt_row)), n_cells, config, rng, gain=gain,
                          source=sources[src_i])
        for c, path in enumerate(paths):
            write_atomic(
                path,
                lambda p, a=img[c]: tifffile.imwrite(p, a, photometric="minisblack", metadata=None),
            )


def generate_screen(config: SyntheticConfig, out_dir: str | os.PathLike, *,
                    n_jobs: int | None = None) -> Path:
    """Generate (or reuse) a synthetic screen on disk.

    Parameters
    ----------
    config : SyntheticConfig
    out_dir : path
        Output folder (layout in ``docs/architecture.md``). If it already holds a
        complete screen generated with the same config (``ground_truth/config.json`` and
        the completion marker), nothing is regenerated. Every file is written to a
        temporary name and moved into place; the marker is written last.
    n_jobs : int, optional
        Processes rendering sites (default: one per core, at most 4). Every site draws
        from its own seeded stream, so the files are byte-identical for any ``n_jobs``.

    Returns
    -------
    pathlib.Path
        Path of ``load_data.parquet``.
    """
    out = Path(out_dir)
    load_path = out / "load_data.parquet"
    if _is_complete(out, config):
        return load_path
    out.mkdir(parents=True, exist_ok=True)
    marker = out / _MARKER
    if marker.exists():
        marker.unlink()
    if (out / "ground_truth" / "config.json").is_file() and (out / "images").is_dir():
        shutil.rmtree(out / "images")  # stale screen from another config

    perts = make_perturbations(config)
    plates = make_plates(config)
    layout = make_layout(config, perts, plates)
    wells, sources = _technical_parameters(config, plates, layout)
    sites = realize_site_phenotypes(config, wells, plates, perts)

    rep = np.repeat(np.arange(len(wells)), config.sites_per_well)
    gains = wells[[f"gain_{ch}" for ch in JUMP_CHANNELS]].to_numpy()[rep]
    src_idx = wells["source_index"].to_numpy()[rep]
    plate_idx = plates.set_index("Metadata_Plate").loc[sites["Metadata_Plate"], "plate_index"]
    plate_idx = plate_idx.to_numpy()
    gt = sites[list(GT_COLUMNS)].to_numpy()

    load = sites[list(SITE_KEYS)].copy()
    load["Metadata_Row"] = wells["Metadata_Row"].to_numpy()[rep]
    load["Metadata_Col"] = wells["Metadata_Col"].to_numpy()[rep]
    load["Metadata_Perturbation"] = sites["Metadata_Perturbation"]
    load["Metadata_ControlType"] = wells["Metadata_ControlType"].to_numpy()[rep]
    for ch in JUMP_CHANNELS:
        load[f"FileName_Orig{ch}"] = [
            f"{pl}_{w}_s{s}_{ch}.tiff"
            for pl, w, s in zip(
                load["Metadata_Plate"], load["Metadata_Well"], load["Metadata_Site"]
            )
        ]
        load[f"PathName_Orig{ch}"] = "images/" + load["Metadata_Plate"]

    jobs = [
        (
            str(sites["Metadata_Well"].iat[i]),
            int(sites["Metadata_Site"].iat[i]),
            int(plate_idx[i]),
            gt[i],
            int(sites["n_cells"].iat[i]),
            gains[i],
            int(src_idx[i]),
            [out / load["PathName_OrigDNA"].iat[i] / load[f"FileName_Orig{ch}"].iat[i]
             for ch in JUMP_CHANNELS],
        )
        for i in range(len(sites))
    ]
    n_jobs = _n_jobs(n_jobs, len(jobs))
    if n_jobs == 1:
        _render_sites(config, sources, jobs)
    else:  # every site has its own random stream: the same bytes whatever the split
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        chunks = [jobs[k::n_jobs * 4] for k in range(n_jobs * 4)]
        with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn")) as pool:
            for f in [pool.submit(_render_sites, config, sources, c) for c in chunks if c]:
                f.result()

    gt_dir = out / "ground_truth"
    write_parquet_atomic(perts, gt_dir / "perturbations.parquet")
    write_parquet_atomic(sites, gt_dir / "site_phenotypes.parquet")
    write_parquet_atomic(make_bioactivity(perts, config), gt_dir / "bioactivity.parquet")
    rel = make_relationships(perts)
    write_atomic(gt_dir / "relationships.csv", lambda p: rel.to_csv(p, index=False))
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    write_text_atomic(config_json, gt_dir / "config.json")
    write_parquet_atomic(load, load_path)
    write_text_atomic(_config_digest(config) + "\n", marker)
    return load_path
