"""Throughput of registered extractors vs. merely reading the images, in one run.

Any registered name works (networks, baselines, openphenom, ...)::

    python bench/extract_throughput.py                       # ViT-S/16 + ResNet50 + baselines
    python bench/extract_throughput.py --methods resnet18 pixel_stats single_conv \\
        --params '{"geometry": "native"}' --image-size 160 --sites 64
    python bench/extract_throughput.py --methods 'vit_small_patch16_224={"geometry":"resize"}'

``NAME=JSON`` gives one method its own params; ``--params`` applies to every method that
accepts them (networks). For an extractor with a ``layers`` param each layer is also timed
alone (the network is cut after that stage), so the table shows what each depth costs.
Data: ``--load-data`` (a load_data table) or, by default, a small synthetic screen made with
``generate_screen(SyntheticConfig.quick(image_size=...), dir)`` (cached in --data-dir).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _parse_method(s: str) -> tuple[str, dict]:
    if "=" in s:
        name, js = s.split("=", 1)
        return name, json.loads(js)
    return s, {}


def _accepts(factory, key: str) -> bool:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    return key in sig.parameters or any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=[
        'vit_small_patch16_224={"weights": "random", "geometry": "native"}',
        'resnet50={"weights": "random", "geometry": "native"}',
        "pixel_stats", "single_conv"])
    ap.add_argument("--params", default="{}", help="JSON params for every method that takes them")
    ap.add_argument("--load-data", help="a load_data table (default: a synthetic quick screen)")
    ap.add_argument("--image-size", type=int, default=64, help="synthetic site size (px)")
    ap.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "baselens_bench_screen"))
    ap.add_argument("--sites", type=int, default=48, help="sites timed (after one warm-up batch)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--no-per-layer", action="store_true", help="skip timing each layer alone")
    ap.add_argument("--no-segmentation", action="store_true",
                    help="skip the segmentation and per-group classic-feature rows")
    args = ap.parse_args(argv)

    from baselens.data.load_data import read_load_data
    from baselens.extract.registry import SiteBatch, get_extractor, get_spec

    if args.load_data:
        ld = read_load_data(args.load_data)
        where = args.load_data
    else:
        from baselens.data.synthetic import SyntheticConfig, generate_screen

        d = Path(args.data_dir) / f"quick_{args.image_size}"
        ld = read_load_data(generate_screen(SyntheticConfig.quick(image_size=args.image_size), d))
        where = f"synthetic quick screen, {args.image_size} px ({d})"
    n = min(args.sites, len(ld))
    idx = np.arange(n)
    bs = args.batch_size
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        import torch

        threads = torch.get_num_threads()
        dev = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    except ImportError:
        threads, dev = None, "cpu"
    print(f"# data: {where}; {n} sites × {len(ld.channels)} channels; batch {bs}")
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {threads}, device {dev}, python {platform.python_version()}")

    # reading alone (cold-ish: first pass; then the timed pass that the extractors also get)
    ld.read_sites(idx[:bs])
    t = time.perf_counter()
    batches = [ld.read_sites(idx[s:s + bs]) for s in range(0, n, bs)]
    t_read = time.perf_counter() - t
    meta = ld.metadata.reset_index(drop=True)
    mk = [(s, SiteBatch(b, list(ld.channels), meta.iloc[s:s + len(b)].reset_index(drop=True)))
          for s, b in zip(range(0, n, bs), batches)]
    rows = [("(read images from disk)", "", "", n / t_read, 1000 * t_read / n)]

    common = json.loads(args.params)
    for spec_s in args.methods:
        name, own = _parse_method(spec_s)
        spec = get_spec(name)
        params = {k: v for k, v in common.items() if _accepts(spec.factory, k)} | own

        def run(p):
            ex = get_extractor(name, **p)
            if hasattr(ex, "fit"):
                ex.fit(ld)
            ex(mk[0][1])  # warm-up: model construction, first-call overheads
            t0 = time.perf_counter()
            out = None
            for _, b in mk:
                out = ex(b)
            return time.perf_counter() - t0, out

        dt, out = run(params)
        layers = list(out)
        dims = ",".join(str(out[k].shape[1]) for k in layers)
        rows.append((f"{name}", spec.kind, "all: " + ",".join(layers) + f" (dims {dims})", n / dt, 1000 * dt / n))
        if not args.no_per_layer and len(layers) > 1 and _accepts(spec.factory, "layers"):
            for layer in layers:
                dl, _ = run(params | {"layers": [layer]})
                rows.append(("", "", layer, n / dl, 1000 * dl / n))
        if params:
            print(f"# {name} params: {json.dumps(params)}")
    if not args.no_segmentation:
        # segmentation (nuclei + cells) and each CellProfiler measurement group alone
        from baselens.extract.classic import GROUPS, time_classic
        from baselens.extract.segmentation import time_segmentation

        imgs = np.concatenate(batches)
        seg = time_segmentation(imgs, list(ld.channels))
        rows.append(("(segmentation: nuclei + cells)", "", f"{seg['nuclei_per_site']:.0f} nuclei/site",
                     seg["sites_per_second"], 1000 / seg["sites_per_second"]))
        cl = time_classic(imgs[: min(len(imgs), 16)], list(ld.channels), groups=GROUPS)
        for g in GROUPS:
            sec = cl.get(f"{g}_s_per_site")
            if sec:
                rows.append(("(classic group, all channels)" if g == GROUPS[0] else "", "", g,
                             1 / sec, 1000 * sec))
        rows.append(("", "", "classic: every group", cl["sites_per_second"],
                     1000 / cl["sites_per_second"]))
    w = max(len(r[0]) for r in rows)
    wl = max(len(r[2]) for r in rows)
    print(f"{'method':<{w}}  {'kind':<8}  {'layer (cut after)':<{wl}}  {'images/s':>9}  {'ms/image':>9}")
    for name, kind, layer, ips, ms in rows:
        print(f"{name:<{w}}  {kind:<8}  {layer:<{wl}}  {ips:9.1f}  {ms:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
