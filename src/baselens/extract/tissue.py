"""Tissue representations of H&E spots: images, structure only, cell count (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) §3.1, E).

Every non-network name is registered in :mod:`baselens.extract.registry` with
``modality="tissue"`` (:class:`TissueExtractor`); the screen's ``pixel_stats``, ``random``
and ``ground_truth`` are different code, so the tissue ones are ``tissue_*`` and the old
names are aliases in tissue configs (:data:`TISSUE_ALIASES`).
:func:`tissue_representations` turns a :class:`~baselens.data.hest.TissueDataset` into
``{label: {"kind", "layers": {layer: (n_spots, d) array}}}`` for the methods of a run.
Method dicts follow the Cell Painting config (``name``, optional ``label`` and
``params``):

==========================  ==========  ======================================================
name                        kind        what it sees
==========================  ==========  ======================================================
``<arch>`` / ``network``    model       a network of :mod:`baselens.extract.networks`
/ ``<arch>_random``         (baseline)  (``weights`` random or pretrained) on the H&E patch
                                        (``input = "image"``, default) or on the rendered
                                        5-NN graph (``input = "structure"``, kind baseline)
``structure_image``         baseline    arXiv 2603.13377 §3.1 (i), E.2: nuclei centroids → 5-NN graph
                                        drawn at 1 px/µm, resized to the encoder's input,
                                        fed to ``encoder`` (default ``resnet18``, random)
``tissue_gcn``              baseline    §3.1 (ii), D.3: GCN on the kNN graph, untrained
                                        (seeded) or ``trained = true`` on the E.3 synthetic
                                        classification task; penultimate embedding
``tissue_egnn``             baseline    the same with the E(n)-equivariant GNN
``tissue_points``           baseline    19 point-set statistics (:func:`point_features`)
``tissue_count``            baseline    E.1: the 16 count transforms, optionally tiled to
                                        ``dim`` with tiny noise
``tissue_pixel_stats`` /    baseline    §3.1: RGB per-channel mean, SD, skewness / mean
``tissue_pixel_mean``                   (old names ``pixel_stats`` / ``pixel_mean``)
``tissue_random``           null        seeded Gaussian noise per spot (old name ``random``)
``tissue_ground_truth``     reference   synthetic tissue: the four standardized latent
                                        drivers (``TissueDataset.latents``; old name
                                        ``ground_truth``)
==========================  ==========  ======================================================

Networks read H&E patches as RGB in [0, 255] (``intensity = "fixed"``,
``intensity_range = (0, 255)``, the architecture's ImageNet normalisation, resize to
``input_size``); graph images in [0, 1] repeated to three channels. Every default can be
overridden in ``params``. The GCN/EGNN reuse :mod:`baselens.extract.cell_graph`
(:class:`~baselens.extract.cell_graph.GCNEncoder`,
:class:`~baselens.extract.cell_graph.EGNNEncoder`): the untrained encoder *is* that
class; the trained one starts from the same weights (as torch parameters), gains a
linear classifier and is trained briefly on point sets of a separate synthetic tissue
(:func:`baselens.data.tissue.synthetic_point_sets`, seed ``train_seed``) — never on the
spots being scored — as arXiv 2603.13377 pre-trains its GNNs on E.3 synthetic data (F.4).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from baselens.extract.cell_count import count_features
from baselens.extract.cell_graph import (
    POINT_FEATURE_NAMES,
    EGNNEncoder,
    GCNEncoder,
    degree_profile,
    knn_edges,
    point_features,
    render_graph,
)

__all__ = [
    "structure_image",
    "tissue_count_features",
    "tissue_representations",
    "gnn_embeddings",
    "train_gnn",
    "TISSUE_METHODS",
    "TISSUE_ALIASES",
    "TissueExtractor",
    "tissue_name",
    "spot_extractor",
]


# ------------------------------------------------------------------------------ structure image
def structure_image(centroids: np.ndarray, pixel_size_um: float, size: int = 224, k: int = 5,
                    patch_um: float = 112.0, px_per_um: float = 1.0, node_radius: float = 0.0) -> np.ndarray:
    """The 5-nearest-neighbour graph of a patch's nuclei as an image (arXiv 2603.13377 E.2).

    The symmetrized k-NN graph (:func:`~baselens.extract.cell_graph.knn_edges`) of the
    centroids is drawn with 1-px lines (value 1 on a 0 background) on a canvas of
    ``round(patch_um · px_per_um)`` px — "the pixel count given by the dimensions of
    the patch ... scaled by the estimated pixel size per µm", i.e. the same physical
    scale for every dataset — then resized to ``size`` × ``size`` by linear
    interpolation (exactly binary when the canvas already has ``size`` px).

    Parameters
    ----------
    centroids : (n, 2) array
        (row, col) in patch pixels.
    pixel_size_um : float
        µm per patch pixel.
    size : int
        Output side (the encoder's input, 224).
    k : int
        Neighbours (5 in arXiv 2603.13377: density variations vs outlines of cell formations).
    patch_um : float
        Physical side of the patch (112 µm for HEST; larger for HEST-1k-1NN crops).
    px_per_um, node_radius
        Drawing scale and node dots (0 = edges only): "we control apparent magnification
        and visibility by adjusting the drawing scale and edge width" (§3.1).

    Returns
    -------
    (size, size) float32 in [0, 1]
    """
    if not pixel_size_um > 0 or not patch_um > 0 or not px_per_um > 0:
        raise ValueError("pixel_size_um, patch_um and px_per_um must be > 0")
    pts = np.asarray(centroids, dtype=np.float64).reshape(-1, 2) * float(pixel_size_um)  # µm
    canvas = max(2, int(round(patch_um * px_per_um)))
    edges = knn_edges(pts, k)
    # render_graph maps [0, shape-1] onto [0, size-1]; µm → canvas px
    img = render_graph(pts * px_per_um, edges, (canvas, canvas), canvas, node_radius=node_radius) if node_radius > 0 \
        else _draw_edges(pts * px_per_um, edges, canvas)
    if canvas == size:
        return img
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(img)[None, None]
    out = F.interpolate(t, size=(int(size), int(size)), mode="bilinear", align_corners=False,
                        antialias=canvas > size)
    return out[0, 0].numpy().astype(np.float32)


def _draw_edges(p: np.ndarray, edges: np.ndarray, side: int) -> np.ndarray:
    """1-px lines between points (canvas px), no node dots; points outside are clipped."""
    img = np.zeros((side, side), np.float32)
    for i, j in edges:
        a, b = p[i], p[j]
        m = int(np.ceil(np.abs(b - a).max())) + 1
        t = np.linspace(0.0, 1.0, m)
        rr = np.round(a[0] + t * (b[0] - a[0])).astype(int)
        cc = np.round(a[1] + t * (b[1] - a[1])).astype(int)
        ok = (rr >= 0) & (rr < side) & (cc >= 0) & (cc < side)
        img[rr[ok], cc[ok]] = 1.0
    return img


# ------------------------------------------------------------------------------ cell count
def tissue_count_features(n_cells: np.ndarray, dim: int | None = None, noise: float = 1e-3, seed: int = 0,
                          count_scale: float = 100.0, standardize: bool = False) -> np.ndarray:
    """The 16 hand-crafted cell-count features of arXiv 2603.13377 E.1.

    :func:`baselens.extract.cell_count.count_features` (polynomial, root, logarithmic,
    exponential and sine/cosine transforms of the count per patch), optionally
    standardized (E.1 evaluates "standardized and raw" and keeps the better), and, with
    ``dim``, tiled to ``dim`` columns (16 repeated, truncated) plus Gaussian noise of SD
    ``noise`` ("to avoid issues during PCA computation we tile the embeddings to the
    target size 256 and add a small amount of Gaussian noise").

    Returns
    -------
    (n, 16) or (n, dim) float64
    """
    x = count_features(np.asarray(n_cells, dtype=np.float64), count_scale).to_numpy()
    if standardize:
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    if dim is None:
        return x
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    reps = int(np.ceil(dim / x.shape[1]))
    x = np.tile(x, (1, reps))[:, :dim]
    return x + np.random.default_rng(seed).normal(0.0, float(noise), x.shape)


# ------------------------------------------------------------------------------ GNNs
def _graphs(nuclei: Sequence[np.ndarray], k: int, kind: str) -> list[tuple]:
    """(points, kNN edges, local degree profile or None) per point set."""
    out = []
    for p in nuclei:
        p = np.asarray(p, float).reshape(-1, 2)
        e = knn_edges(p, k)
        out.append((p, e, degree_profile(len(p), e) if kind == "egnn" and len(p) else None))
    return out


def _batch(graphs, sides, kind: str, rotate: np.ndarray | None = None):
    """Concatenate graphs: node inputs, directed edges (both ways), node → graph index."""
    import torch

    xs, srcs, dsts, gid, profs = [], [], [], [], []
    off = 0
    for g, ((p, e, prof), side) in enumerate(zip(graphs, sides)):
        n = len(p)
        if n == 0:
            continue
        q = p
        if rotate is not None:  # E.3 augmentation: rotation about the patch centre
            c, s = np.cos(rotate[g]), np.sin(rotate[g])
            q = (p - side / 2) @ np.array([[c, -s], [s, c]]).T + side / 2
        if kind == "gcn":
            xs.append(2.0 * q / side - 1.0)  # GCNEncoder: 2 p / shape - 1
        else:
            xs.append(q)
            profs.append(prof)
        if len(e):
            srcs.append(np.concatenate([e[:, 0], e[:, 1]]) + off)
            dsts.append(np.concatenate([e[:, 1], e[:, 0]]) + off)
        gid.append(np.full(n, g))
        off += n
    f32 = torch.float32
    x = torch.as_tensor(np.concatenate(xs) if xs else np.zeros((0, 2)), dtype=f32)
    src = torch.as_tensor(np.concatenate(srcs) if srcs else np.zeros(0, int), dtype=torch.long)
    dst = torch.as_tensor(np.concatenate(dsts) if dsts else np.zeros(0, int), dtype=torch.long)
    gi = torch.as_tensor(np.concatenate(gid) if gid else np.zeros(0, int), dtype=torch.long)
    prof = torch.as_tensor(np.concatenate(profs) if profs else np.zeros((len(x), 5)), dtype=f32)
    return x, src, dst, gi, prof


def _params_of(enc) -> list:
    """The encoder's weight tensors, in a fixed order (GCNEncoder / EGNNEncoder layout)."""
    if isinstance(enc, GCNEncoder):
        flat = [*enc.proj] + [t for wb in enc.layers for t in wb] + [*enc.head]
    else:
        flat = [*enc.embed] + [t for lay in enc.layers for key in ("e1", "e2", "x1", "h1", "h2") for t in lay[key]]
        flat += [*enc.head]
    return flat


def _forward(kind: str, w: list, enc, x, src, dst, gi, prof, n_graphs: int):
    """Batched forward of :class:`GCNEncoder` / :class:`EGNNEncoder` with weights ``w``
    (the same equations, over a block-diagonal batch): (n_graphs, hidden) embeddings."""
    import torch

    h_dim = enc.hidden
    if len(x) == 0:
        return torch.zeros((n_graphs, h_dim))
    n = len(x)
    has = torch.zeros(n_graphs, dtype=torch.bool)
    has[gi] = True
    if kind == "gcn":
        loops = torch.arange(n)
        s = torch.cat([src, loops])
        d = torch.cat([dst, loops])
        deg = torch.zeros(n).index_add_(0, d, torch.ones(len(d)))
        norm = (deg[s] * deg[d]).rsqrt()[:, None]
        h = x @ w[0] + w[1]
        outs = []
        for i in range(enc.n_layers):
            W, b = w[2 + 2 * i], w[3 + 2 * i]
            hw = h @ W
            h = torch.relu(torch.zeros_like(hw).index_add_(0, d, norm * hw[s]) + b)
            outs.append(h)
        cat = torch.cat(outs, 1)
        pooled = torch.full((n_graphs, cat.shape[1]), -torch.inf).scatter_reduce(
            0, gi[:, None].expand_as(cat), cat, reduce="amax", include_self=True)
        pooled = torch.where(has[:, None], pooled, torch.zeros_like(pooled))
        z = torch.relu(pooled @ w[-2] + w[-1])
        z = torch.where(has[:, None], z, torch.zeros_like(z))  # no nuclei: zeros, as GCNEncoder
    else:
        silu = torch.nn.functional.silu
        h = prof @ w[0] + w[1]
        ne = torch.zeros(n_graphs).index_add_(0, gi[src], torch.ones(len(src))) if len(src) else torch.zeros(n_graphs)
        if len(src):
            # coordinates / the graph's mean edge length (EGNNEncoder: scale-free)
            el = (x[src] - x[dst]).norm(dim=1)
            mean_len = torch.zeros(n_graphs).index_add_(0, gi[src], el) / ne.clamp_min(1)
            x = x / mean_len.clamp_min(1e-6)[gi][:, None]
            deg = torch.zeros(n).index_add_(0, src, torch.ones(len(src))).clamp_min(1)[:, None]
            active = (ne[gi] > 0)[:, None].float()  # graphs without edges skip the layers
            for i in range(enc.n_layers):
                e1w, e1b, e2w, e2b, x1w, x1b, h1w, h1b, h2w, h2b = w[2 + 10 * i: 12 + 10 * i]
                diff = x[src] - x[dst]
                d2 = (diff ** 2).sum(1, keepdim=True)
                m = silu(torch.cat([h[src], h[dst], d2], 1) @ e1w + e1b)
                m = silu(m @ e2w + e2b)
                x = x + torch.zeros_like(x).index_add_(0, src, diff * (m @ x1w + x1b)) / deg
                agg = torch.zeros_like(h).index_add_(0, src, m)
                h = h + active * (silu(torch.cat([h, agg], 1) @ h1w + h1b) @ h2w + h2b)
        cnt = torch.zeros(n_graphs).index_add_(0, gi, torch.ones(n)).clamp_min(1)[:, None]
        pooled = torch.zeros((n_graphs, h.shape[1])).index_add_(0, gi, h) / cnt
        z = torch.relu(pooled @ w[-2] + w[-1])
        z = torch.where(has[:, None], z, torch.zeros_like(z))
    return z


def _encoder(kind: str, hidden: int, seed: int):
    return GCNEncoder(hidden, 4, seed) if kind == "gcn" else EGNNEncoder(hidden, 3, seed)


def gnn_embeddings(nuclei: Sequence[np.ndarray], sides: Sequence[float], kind: str = "gcn", *, hidden: int = 64,
                   seed: int = 0, k: int = 5, weights: list | None = None, batch_size: int = 64) -> np.ndarray:
    """(n, hidden) embeddings of point sets by the GCN or EGNN of
    :mod:`baselens.extract.cell_graph` (weights from ``seed``, or trained ``weights``
    from :func:`train_gnn`); ``sides`` = each patch's side in px (GCN coordinates are
    ``2 p / side − 1``, arXiv 2603.13377 E.2)."""
    import torch

    if kind not in ("gcn", "egnn"):
        raise ValueError(f"kind must be 'gcn' or 'egnn', got {kind!r}")
    enc = _encoder(kind, hidden, seed)
    w = [t.detach() for t in (weights or _params_of(enc))]
    graphs = _graphs(nuclei, k, kind)
    sides = np.asarray(sides, float)
    out = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for b0 in range(0, len(graphs), batch_size):
                sl = slice(b0, b0 + batch_size)
                g = graphs[sl]
                out.append(_forward(kind, w, enc, *_batch(g, sides[sl], kind), len(g)).numpy())
    finally:
        torch.set_num_threads(before)
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, hidden))


def train_gnn(kind: str = "gcn", *, hidden: int = 64, seed: int = 0, k: int = 5, epochs: int = 6,
              lr: float = 3e-3, batch_size: int = 32, train_seed: int = 1, train_config=None,
              progress: Callable[[str], None] | None = None) -> tuple[list, dict]:
    """Pre-train the GCN/EGNN on the E.3-style synthetic classification task.

    Point sets and their classes (``Metadata_Class``: sparse/dense × regular/disordered,
    clustered) come from :func:`baselens.data.tissue.synthetic_point_sets` of
    ``train_config`` (default: 6 patients × 8 × 8 spots of 112 µm, seed ``train_seed``):
    a tissue apart from the one being scored. The encoder starts from
    ``GCNEncoder/EGNNEncoder(hidden, seed=seed)`` weights; a linear classifier on the
    embedding (the 2-layer MLP of D.3: the encoder's last layer + this one) is trained
    with Adam and cross-entropy, random rotations as augmentation (E.3). Returns the
    encoder weights (the classifier dropped: penultimate embedding) and a summary
    (final training accuracy, chance level, seconds).
    """
    import time

    import torch

    from baselens.data.tissue import SyntheticTissueConfig, synthetic_point_sets

    t0 = time.perf_counter()
    cfg = train_config or SyntheticTissueConfig.quick(n_patients=6, grid_shape=(8, 8), seed=int(train_seed))
    nuclei, classes, _ = synthetic_point_sets(cfg)
    labels, y = np.unique(classes, return_inverse=True)
    enc = _encoder(kind, hidden, seed)
    w = [torch.nn.Parameter(t.detach().clone()) for t in _params_of(enc)]
    g = torch.Generator().manual_seed(int(seed) + 7)
    bound = 1.0 / np.sqrt(hidden)
    cw = torch.nn.Parameter((torch.rand((hidden, len(labels)), generator=g) * 2 - 1) * bound)
    cb = torch.nn.Parameter(torch.zeros(len(labels)))
    opt = torch.optim.Adam(w + [cw, cb], lr=lr)
    graphs = _graphs(nuclei, k, kind)
    side = float(cfg.patch_px)
    rng = np.random.default_rng([int(seed), int(train_seed)])
    yt = torch.as_tensor(y, dtype=torch.long)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    acc = float("nan")
    try:
        for ep in range(int(epochs)):
            order = rng.permutation(len(graphs))
            correct = 0
            for b0 in range(0, len(order), batch_size):
                idx = order[b0:b0 + batch_size]
                gb = [graphs[i] for i in idx]
                rot = rng.uniform(0, 2 * np.pi, len(idx))
                z = _forward(kind, w, enc, *_batch(gb, np.full(len(idx), side), kind, rotate=rot), len(idx))
                logits = z @ cw + cb
                loss = torch.nn.functional.cross_entropy(logits, yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                correct += int((logits.argmax(1) == yt[idx]).sum())
            acc = correct / len(order)
            if progress:
                progress(f"train {kind}: epoch {ep + 1}/{epochs} loss {float(loss.detach()):.3f} accuracy {acc:.2f}")
    finally:
        torch.set_num_threads(before)
    chance = float(np.bincount(y).max() / len(y))
    return [t.detach() for t in w], {"train_accuracy": acc, "majority_class": chance, "n_train": len(graphs),
                                     "classes": labels.tolist(), "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------ dispatch
def _network_names() -> set[str]:
    from baselens.extract.networks import ARCHITECTURES

    return {"network"} | set(ARCHITECTURES) | {f"{a}_random" for a in ARCHITECTURES}


def _patch_um(ds) -> np.ndarray:
    if "Metadata_PatchSize" in ds.spots.columns:
        return ds.spots["Metadata_PatchSize"].to_numpy(np.float64) * ds.pixel_size_um
    return np.full(len(ds), 112.0)


def _patch_side_px(ds) -> np.ndarray:
    if "Metadata_PatchSize" in ds.spots.columns:
        return ds.spots["Metadata_PatchSize"].to_numpy(np.float64)
    return 112.0 / ds.pixel_size_um


_STRUCT_KEYS = ("k", "px_per_um", "node_radius", "render_size")


class _NetworkOnSpots:
    """A network of :mod:`baselens.extract.networks` on the spots' H&E patches
    (``input = "image"``) or rendered 5-NN graphs (``input = "structure"``, kind baseline);
    built once, applied to any spots (:meth:`__call__`), so chunks of spots share it."""

    per_spot = True  # a spot's features do not depend on the other spots
    info = None

    def __init__(self, name: str, params: dict, batch_size: int):
        from baselens.extract.registry import get_extractor, method_kind

        params = dict(params)
        inp = params.pop("input", "image")
        if inp not in ("image", "structure"):
            raise ValueError(f"{name}: params.input must be 'image' or 'structure', got {inp!r}")
        self.sp = {key: params.pop(key) for key in _STRUCT_KEYS if key in params}
        params.setdefault("channels", "expand")
        params.setdefault("intensity", "fixed")
        params.setdefault("intensity_range", (0.0, 1.0) if inp == "structure" else (0.0, 255.0))
        params.setdefault("batch_size", batch_size)
        self.name, self.inp, self.batch_size = name, inp, batch_size
        self.input = inp  # what it is computed from (TissueExtractor.INPUT)
        self.net = get_extractor(name, **params)
        self.kind = "baseline" if inp == "structure" else method_kind(name, params)

    def __call__(self, ds, say=None) -> dict[str, np.ndarray]:
        sp, net, batch_size = self.sp, self.net, self.batch_size
        size = int(sp.get("render_size", getattr(net, "input_size", 224)))
        pum = _patch_um(ds)
        feats: dict[str, list] = {}
        n = len(ds)
        for b0 in range(0, n, batch_size):
            idx = np.arange(b0, min(n, b0 + batch_size))
            if self.inp == "image":
                x = ds.patches(idx).astype(np.float32).transpose(0, 3, 1, 2)
            else:
                x = np.stack([structure_image(ds.nuclei[i], ds.pixel_size_um[i], size, int(sp.get("k", 5)), pum[i],
                                              float(sp.get("px_per_um", 1.0)), float(sp.get("node_radius", 0.0)))
                              for i in idx])
                x = np.repeat(x[:, None], 3, axis=1)
            for layer, v in net.embed(x).items():
                feats.setdefault(layer, []).append(np.asarray(v, np.float64))
            if say and (b0 // batch_size) % 10 == 0:
                say(f"extract {self.name} ({self.inp}): {idx[-1] + 1}/{n} spots")
        return {layer: np.concatenate(v) for layer, v in feats.items()}


def _pixel(ds, batch_size: int, mean_only: bool) -> np.ndarray:
    from baselens.extract.pixel import channel_means, channel_moments

    rows = []
    for b0 in range(0, len(ds), batch_size):
        for img in ds.patches(np.arange(b0, min(len(ds), b0 + batch_size))):
            chw = np.moveaxis(img, -1, 0)
            rows.append(channel_means(chw) if mean_only else np.concatenate(channel_moments(chw)))
    return np.asarray(rows, np.float64).reshape(len(ds), -1)


def _random(ds, n_features: int, seed: int) -> np.ndarray:
    out = np.zeros((len(ds), int(n_features)))
    for i, s in enumerate(ds.spots["Metadata_Spot"].astype(str)):
        digest = hashlib.sha256(f"{seed}|{s}".encode()).digest()
        out[i] = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(int(n_features))
    return out


def _check_params(name: str, params: dict, allowed: Sequence[str]) -> None:
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise ValueError(f"{name}: unknown params {bad}; allowed: {sorted(allowed)}")


# ------------------------------------------------------------------------------ registry
#: Old tissue-config names of representations that mean different code on a screen
#: (``pixel_stats`` of a screen reads uint16 channels of a site, of tissue the RGB patch):
#: in a tissue config they still work, as these registered tissue extractors.
TISSUE_ALIASES: dict[str, str] = {"pixel_stats": "tissue_pixel_stats",
                                  "pixel_mean": "tissue_pixel_mean",
                                  "random": "tissue_random",
                                  "ground_truth": "tissue_ground_truth"}


class TissueExtractor:
    """A registered tissue representation (``modality="tissue"``): the spots of a
    :class:`~baselens.data.hest.TissueDataset` → ``{layer: (n_spots, d) float64}``.

    Subclasses set ``NAME``, ``KIND``, ``PARAMS`` (allowed keys) and implement
    :meth:`__call__`; ``info`` may carry what training found (trained GNNs).
    """

    NAME = ""
    KIND = "baseline"
    #: what the representation is computed from: image, structure (nuclei positions),
    #: count, pixel (statistics), reference or null (what the tissue panels group by)
    INPUT = "image"
    PARAMS: tuple[str, ...] = ()
    modality = "tissue"
    needs_images = False
    #: whether a spot's features depend only on that spot (then spots may be extracted in
    #: chunks, :func:`spot_extractor`); False where features use every spot at once
    per_spot = True

    def __init__(self, **params):
        _check_params(self.NAME, params, self.PARAMS)
        self.params = params
        self.info: dict | None = None

    @property
    def kind(self) -> str:
        return self.KIND

    def __call__(self, ds, *, batch_size: int = 32,
                 say: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError


#: Names registered by :func:`_tissue`, in order (the start of :data:`TISSUE_METHODS`).
_REGISTERED: list[str] = []


def _tissue(name: str, kind: str, description: str):
    """Register a :class:`TissueExtractor` subclass under ``name`` (modality tissue)."""
    from baselens.extract.registry import register

    def deco(cls):
        cls.NAME, cls.KIND = name, kind
        _REGISTERED.append(name)
        return register(name, kind=kind, description=description, modality="tissue")(cls)

    return deco


@_tissue("structure_image", "baseline", "5-NN graph of the nuclei drawn as an image, through "
         "an untrained encoder (arXiv 2603.13377 §3.1, E.2); structure only")
class StructureImage(TissueExtractor):
    INPUT = "structure"
    PARAMS = ("encoder", "encoder_params", *_STRUCT_KEYS)

    def __call__(self, ds, *, batch_size=32, say=None):
        net = getattr(self, "_net", None)
        if net is None or net.batch_size != batch_size:
            params = dict(self.params)
            enc = str(params.pop("encoder", "resnet18"))
            ep = {"weights": "random", **dict(params.pop("encoder_params", {}) or {}), **params,
                  "input": "structure"}
            net = self._net = _NetworkOnSpots(enc, ep, batch_size)
        return net(ds, say or (lambda _m: None))


class _GNN(TissueExtractor):
    INPUT = "structure"
    PARAMS = ("trained", "hidden", "seed", "k", "epochs", "lr", "train_seed", "batch_size")
    GNN = "gcn"

    def __call__(self, ds, *, batch_size=32, say=None):
        say = say or (lambda _m: None)
        p = self.params
        hidden, seed, k = int(p.get("hidden", 64)), int(p.get("seed", 0)), int(p.get("k", 5))
        weights = getattr(self, "_weights", None)
        if p.get("trained", False) and weights is None:
            weights, self.info = train_gnn(self.GNN, hidden=hidden, seed=seed, k=k,
                                           epochs=int(p.get("epochs", 6)),
                                           lr=float(p.get("lr", 3e-3)),
                                           batch_size=int(p.get("batch_size", 32)),
                                           train_seed=int(p.get("train_seed", 1)), progress=say)
            say(f"extract {self.NAME}: trained on {self.info['n_train']} synthetic point sets, "
                f"accuracy {self.info['train_accuracy']:.2f} (majority class "
                f"{self.info['majority_class']:.2f})")
            self._weights = weights
        return {"default": gnn_embeddings(ds.nuclei, _patch_side_px(ds), self.GNN, hidden=hidden,
                                          seed=seed, k=k, weights=weights)}


@_tissue("tissue_gcn", "baseline", "GCN on the nuclei kNN graph, untrained or trained on "
         "synthetic point sets (arXiv 2603.13377 D.3, E.3)")
class TissueGCN(_GNN):
    GNN = "gcn"


@_tissue("tissue_egnn", "baseline", "E(n)-equivariant GNN on the nuclei kNN graph, untrained "
         "or trained on synthetic point sets (arXiv 2603.13377 D.3, E.3)")
class TissueEGNN(_GNN):
    GNN = "egnn"


@_tissue("tissue_points", "baseline", "19 point-set statistics of the nuclei centroids")
class TissuePoints(TissueExtractor):
    INPUT = "structure"
    PARAMS = ("k",)

    def __call__(self, ds, *, batch_size=32, say=None):
        side = _patch_side_px(ds)
        f = [point_features(p, (s, s), int(self.params.get("k", 5))) for p, s in zip(ds.nuclei, side)]
        return {"default": pd.DataFrame(f, columns=list(POINT_FEATURE_NAMES)).to_numpy(np.float64)}


@_tissue("tissue_count", "baseline", "the 16 cell-count transforms of a spot, optionally "
         "tiled to dim with tiny noise (arXiv 2603.13377 E.1)")
class TissueCount(TissueExtractor):
    INPUT = "count"
    PARAMS = ("dim", "noise", "seed", "count_scale", "standardize")

    @property
    def per_spot(self) -> bool:  # standardizing and the tiling noise use every spot at once
        return self.params.get("dim") is None and not self.params.get("standardize", False)

    def __call__(self, ds, *, batch_size=32, say=None):
        p = self.params
        return {"default": tissue_count_features(ds.n_cells, p.get("dim"), float(p.get("noise", 1e-3)),
                                                 int(p.get("seed", 0)), float(p.get("count_scale", 100.0)),
                                                 bool(p.get("standardize", False)))}


@_tissue("tissue_pixel_stats", "baseline", "RGB per-channel mean, SD and skewness of the H&E "
         "patch (arXiv 2603.13377 §3.1); tissue configs also accept 'pixel_stats'")
class TissuePixelStats(TissueExtractor):
    INPUT = "pixel"
    MEAN_ONLY = False

    def __call__(self, ds, *, batch_size=32, say=None):
        return {"default": _pixel(ds, batch_size, self.MEAN_ONLY)}


@_tissue("tissue_pixel_mean", "baseline", "RGB per-channel mean of the H&E patch; tissue "
         "configs also accept 'pixel_mean'")
class TissuePixelMean(TissuePixelStats):
    MEAN_ONLY = True


@_tissue("tissue_random", "null", "seeded Gaussian noise per spot (chance level); tissue "
         "configs also accept 'random'")
class TissueRandom(TissueExtractor):
    INPUT = "null"
    PARAMS = ("n_features", "seed")

    def __call__(self, ds, *, batch_size=32, say=None):
        return {"default": _random(ds, int(self.params.get("n_features", 32)),
                                   int(self.params.get("seed", 0)))}


@_tissue("tissue_ground_truth", "reference", "synthetic tissue: the four standardized latent "
         "drivers of each spot (upper bound); tissue configs also accept 'ground_truth'")
class TissueGroundTruth(TissueExtractor):
    INPUT = "reference"
    def __call__(self, ds, *, batch_size=32, say=None):
        if ds.latents is None:
            raise ValueError("ground_truth needs the synthetic tissue's latent drivers "
                             "(TissueDataset.latents); this dataset has none (real HEST data): "
                             "drop the method")
        return {"default": ds.latents.to_numpy(np.float64)}


#: Registered tissue representation names, then the old names still accepted
#: (:data:`TISSUE_ALIASES`); networks of :mod:`baselens.extract.networks` come on top.
TISSUE_METHODS: tuple[str, ...] = (*_REGISTERED, *TISSUE_ALIASES)


def tissue_name(name: str) -> str:
    """The registered tissue extractor an old tissue-config name means (:data:`TISSUE_ALIASES`),
    else ``name`` unchanged."""
    return TISSUE_ALIASES.get(str(name), str(name))


def tissue_representations(ds, methods: list[dict], *, batch_size: int = 32,
                           progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Representations of every spot of ``ds`` for each method (module docstring).

    Parameters
    ----------
    ds : TissueDataset
    methods : list of dict
        ``{"name": ..., "label": ... (default name), "params": {...}}``; ``name`` is a
        tissue extractor of the registry (``baselens list``, modality tissue), an old
        name of :data:`TISSUE_ALIASES`, or a network.
    batch_size : int
        Patches read and embedded at a time (bounds memory).
    progress : callable, optional
        Called with progress lines.

    Returns
    -------
    dict
        ``{label: {"kind": "baseline" | "model" | "reference" | "null",
        "layers": {layer: (n_spots, d) float64}}}``; single-output methods use layer
        ``"default"``; networks their four stages; trained GNNs add ``"info"``.
    """
    say = progress or (lambda _m: None)
    out: dict[str, dict] = {}
    for m in methods:
        label = str(m.get("label", m["name"]))
        if label in out:
            raise ValueError(f"duplicate method label {label!r}; give each method a distinct label")
        ex = spot_extractor(m, batch_size)
        out[label] = {"kind": ex.kind, "layers": ex(ds, say)}
        if ex.info is not None:
            out[label]["info"] = ex.info
        say(f"extract {label}: " + ", ".join(f"{ly} {v.shape[1]}" for ly, v in out[label]["layers"].items()) + " dims")
    return out


class _Bound:
    """A registered :class:`TissueExtractor` with its batch size: ``(ds, say) -> layers``."""

    def __init__(self, ex: TissueExtractor, batch_size: int):
        self.ex, self.batch_size = ex, batch_size

    kind = property(lambda self: self.ex.kind)
    input = property(lambda self: self.ex.INPUT)
    info = property(lambda self: self.ex.info)
    per_spot = property(lambda self: self.ex.per_spot)

    def __call__(self, ds, say=None) -> dict[str, np.ndarray]:
        return self.ex(ds, batch_size=self.batch_size, say=say)


def spot_extractor(m: dict, batch_size: int = 32):
    """The representation of one method dict, built once for any spots.

    Parameters
    ----------
    m : dict
        ``{"name": ..., "params": {...}}``: a tissue extractor of the registry
        (``baselens list``, modality tissue), an old name of :data:`TISSUE_ALIASES`, or a
        network (on the H&E patch or, with ``input = "structure"``, the rendered graph).
    batch_size : int
        Patches read and embedded at a time.

    Returns
    -------
    object
        ``ex(ds, say=None) -> {layer: (n_spots, d) float64}`` with ``ex.kind``, ``ex.info``
        (trained GNNs) and ``ex.per_spot`` (whether chunks of spots give the same rows as
        all spots at once).
    """
    from baselens.extract.registry import get_extractor, list_extractors

    name = tissue_name(m["name"])
    params = dict(m.get("params") or {})
    if name in {s.name for s in list_extractors("tissue")}:
        return _Bound(get_extractor(name, **params), batch_size)
    nets = _network_names()
    if name not in nets:
        raise ValueError(f"unknown tissue method {name!r}; known: {', '.join(TISSUE_METHODS)} and the "
                         f"networks ({', '.join(sorted(nets))})")
    return _NetworkOnSpots(name, params, batch_size)
