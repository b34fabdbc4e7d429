"""Structure-only baselines (``cell_graph``): what cell *positions* alone explain.

“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) (§3.1, Appendix E.2) keeps the nuclei centroids of a site and throws away
every pixel of appearance. If such a representation scores on a task, the task is
(partly) solvable from cell arrangement and density alone. Layers:

``points``
    Point-set features of the centroids: count, density, nearest-neighbour distance
    statistics (mean, SD, CV, quantiles of the 1st..k-th NN distance), Clark–Evans
    ratio (mean NN distance / its expectation 0.5/sqrt(density) under complete spatial
    randomness), local-density variation (CV and quantiles of the k-NN density
    estimate, quadrat-count variance/mean ratio), kNN-graph edge-length statistics.
``image`` (or ``image_<encoder layer>``)
    The k-nearest-neighbour graph (k = 5, symmetrized) drawn as a binary image
    (1-px lines between centroids and a dot per node) at ``render_size`` px (default:
    the site size; 224 for ImageNet encoders), repeated over the batch's channels
    (value 65535 on edges, 0 elsewhere, so encoders see uint16-unit intensities) and
    fed to any registered image encoder, ``encoder`` (default ``single_conv``) with
    ``encoder_params``.
``gcn``
    Untrained 4-layer GCN (Kipf & Welling) on the kNN graph; node features = a linear
    projection of centroid coordinates normalized to [-1, 1] (not E(2)-invariant, as
    in arXiv 2603.13377); layer outputs concatenated, global max pool, then the first layer
    of a 2-layer MLP (the last linear layer removed), ``hidden`` wide.
``egnn``
    Untrained 3-layer E(n)-equivariant GNN (Satorras et al. 2021); node features =
    local degree profile (degree and min/max/mean/SD of neighbour degrees, Cai & Wang
    2022), messages from squared distances, coordinates updated equivariantly; mean
    pool, then the MLP's first layer. Invariant to rotations, translations and
    reflections of the centroids.

Networks are pure torch (a GCN and an EGNN layer are ~10 lines each with a dense
adjacency; graphs have ~10-300 nodes, so sparse kernels would buy nothing), seeded by
``seed`` so features are reproducible; torch-geometric is not needed.

Centroids come from :func:`baselens.extract.segmentation.segment_nuclei` on
``nuclei_channel``; :func:`centroids_to_features` takes centroids directly (e.g. from a
CellViT/StarDist table).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, get_extractor, register
from baselens.extract.segmentation import batch_nuclei

__all__ = [
    "CellGraph",
    "knn_edges",
    "render_graph",
    "point_features",
    "GCNEncoder",
    "EGNNEncoder",
    "VARIANTS",
    "centroids",
]

VARIANTS: tuple[str, ...] = ("points", "image", "gcn", "egnn")
UINT16_MAX = 65535.0


def centroids(labels: np.ndarray) -> np.ndarray:
    """(n, 2) row/column centroids of labels 1..n (absent labels skipped)."""
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros((0, 2))
    ids = np.flatnonzero(np.bincount(labels.ravel(), minlength=n + 1)[1:] > 0) + 1
    return np.array(ndi.center_of_mass(np.ones(labels.shape), labels, ids), dtype=np.float64).reshape(-1, 2)


def knn_edges(points: np.ndarray, k: int = 5) -> np.ndarray:
    """Undirected edges (i < j) of the symmetrized k-nearest-neighbour graph, shape (E, 2)."""
    n = len(points)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    kk = min(k, n - 1)
    _, idx = cKDTree(points).query(points, kk + 1)
    idx = np.asarray(idx).reshape(n, kk + 1)[:, 1:]
    src = np.repeat(np.arange(n), kk)
    dst = idx.ravel()
    e = np.sort(np.stack([src, dst], 1), axis=1)
    return np.unique(e, axis=0)


def render_graph(points: np.ndarray, edges: np.ndarray, shape: tuple[int, int], size: int | tuple[int, int] | None = None,
                 node_radius: float = 1.0) -> np.ndarray:
    """Binary image (float32, 0/1) of the graph drawn at the site's geometry, then
    scaled to ``size`` (square int or (H, W); None = ``shape``): coordinates are scaled
    before drawing, so lines stay 1 px wide at any resolution."""
    h, w = shape
    if size is None:
        oh, ow = h, w
    elif isinstance(size, (int, np.integer)):
        oh = ow = int(size)
    else:
        oh, ow = (int(size[0]), int(size[1]))
    img = np.zeros((oh, ow), np.float32)
    if len(points) == 0:
        return img
    p = np.asarray(points, float) * np.array([(oh - 1) / max(h - 1, 1), (ow - 1) / max(w - 1, 1)])
    for i, j in edges:
        a, b = p[i], p[j]
        m = int(np.ceil(np.abs(b - a).max())) + 1
        t = np.linspace(0.0, 1.0, m)
        rr = np.clip(np.round(a[0] + t * (b[0] - a[0])).astype(int), 0, oh - 1)
        cc = np.clip(np.round(a[1] + t * (b[1] - a[1])).astype(int), 0, ow - 1)
        img[rr, cc] = 1.0
    r = int(np.ceil(node_radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (yy**2 + xx**2) <= node_radius**2
    for y, x in np.round(p).astype(int):
        ys, xs = y + yy[disk], x + xx[disk]
        ok = (ys >= 0) & (ys < oh) & (xs >= 0) & (xs < ow)
        img[ys[ok], xs[ok]] = 1.0
    return img


POINT_FEATURE_NAMES: tuple[str, ...] = (
    "Points_Count", "Points_Density_per_10kpx", "Points_NN1_Mean", "Points_NN1_SD", "Points_NN1_CV",
    "Points_NN1_P10", "Points_NN1_P50", "Points_NN1_P90", "Points_NNk_Mean", "Points_NNk_CV",
    "Points_ClarkEvans", "Points_LocalDensity_CV", "Points_LocalDensity_P10", "Points_LocalDensity_P90",
    "Points_Quadrat_VMR", "Points_Edge_Mean", "Points_Edge_CV", "Points_Degree_Mean", "Points_Degree_Max",
)


def point_features(points: np.ndarray, shape: tuple[int, int], k: int = 5, quadrats: int = 4) -> dict[str, float]:
    """Point-set features of one site (see module doc); distances in px, densities per
    10,000 px². Sites with < 2 points get NN distances = the site diagonal and 0 spread."""
    h, w = shape
    area = float(h * w)
    n = len(points)
    diag = float(np.hypot(h, w))
    f = dict.fromkeys(POINT_FEATURE_NAMES, 0.0)
    f["Points_Count"] = float(n)
    f["Points_Density_per_10kpx"] = n / area * 1e4
    for key in ("Points_NN1_Mean", "Points_NN1_P10", "Points_NN1_P50", "Points_NN1_P90", "Points_NNk_Mean", "Points_Edge_Mean"):
        f[key] = diag
    if n >= 1:
        qy = np.clip((points[:, 0] / h * quadrats).astype(int), 0, quadrats - 1)
        qx = np.clip((points[:, 1] / w * quadrats).astype(int), 0, quadrats - 1)
        counts = np.bincount(qy * quadrats + qx, minlength=quadrats * quadrats).astype(float)
        f["Points_Quadrat_VMR"] = float(counts.var() / counts.mean()) if counts.mean() > 0 else 0.0
    if n < 2:
        return f
    kk = min(k, n - 1)
    d, _ = cKDTree(points).query(points, kk + 1)
    d = np.asarray(d).reshape(n, kk + 1)[:, 1:]
    nn1, nnk = d[:, 0], d[:, -1]

    def cv(x):
        m = float(np.mean(x))
        return float(np.std(x) / m) if m > 0 else 0.0

    f.update({
        "Points_NN1_Mean": float(nn1.mean()), "Points_NN1_SD": float(nn1.std()), "Points_NN1_CV": cv(nn1),
        "Points_NN1_P10": float(np.percentile(nn1, 10)), "Points_NN1_P50": float(np.median(nn1)),
        "Points_NN1_P90": float(np.percentile(nn1, 90)), "Points_NNk_Mean": float(nnk.mean()), "Points_NNk_CV": cv(nnk),
        "Points_ClarkEvans": float(nn1.mean() / (0.5 / np.sqrt(n / area))),
    })
    local = kk / (np.pi * np.maximum(nnk, 1e-6) ** 2) * 1e4
    f["Points_LocalDensity_CV"] = cv(local)
    f["Points_LocalDensity_P10"] = float(np.percentile(local, 10))
    f["Points_LocalDensity_P90"] = float(np.percentile(local, 90))
    e = knn_edges(points, k)
    lengths = np.linalg.norm(points[e[:, 0]] - points[e[:, 1]], axis=1)
    deg = np.bincount(e.ravel(), minlength=n)
    f["Points_Edge_Mean"], f["Points_Edge_CV"] = float(lengths.mean()), cv(lengths)
    f["Points_Degree_Mean"], f["Points_Degree_Max"] = float(deg.mean()), float(deg.max())
    return f


# ------------------------------------------------------------------------------ GNNs


def _torch():
    import torch

    return torch


def _single_threaded(fn):
    """Run ``fn`` with one torch thread: graphs of ~10-300 nodes are hundreds of tiny ops,
    where intra-op threads only add synchronisation (measured: EGNN 51 -> 10 ms per site
    on 2 cores)."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _adjacency(n: int, edges: np.ndarray):
    torch = _torch()
    a = torch.zeros((n, n), dtype=torch.float32)
    if len(edges):
        e = torch.as_tensor(edges, dtype=torch.long)
        a[e[:, 0], e[:, 1]] = 1.0
        a[e[:, 1], e[:, 0]] = 1.0
    return a


class GCNEncoder:
    """Untrained GCN (seeded): Linear(2→h) on normalized coordinates, 4 GCN layers
    H' = ReLU(D^-1/2 (A+I) D^-1/2 H W), concat of the layer outputs, global max pool,
    Linear(4h→h) + ReLU (the MLP's first layer). Output: ``hidden`` floats."""

    def __init__(self, hidden: int = 64, n_layers: int = 4, seed: int = 0) -> None:
        torch = _torch()
        g = torch.Generator().manual_seed(int(seed))
        self.hidden, self.n_layers = int(hidden), int(n_layers)

        def lin(i, o):
            bound = 1.0 / np.sqrt(i)
            return ((torch.rand((i, o), generator=g) * 2 - 1) * bound, (torch.rand(o, generator=g) * 2 - 1) * bound)

        self.proj = lin(2, self.hidden)
        self.layers = [lin(self.hidden, self.hidden) for _ in range(self.n_layers)]
        self.head = lin(self.hidden * self.n_layers, self.hidden)

    def __call__(self, points: np.ndarray, edges: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        torch = _torch()
        n = len(points)
        if n == 0:
            return np.zeros(self.hidden)
        scale = np.array([shape[0], shape[1]], float)
        x = torch.as_tensor(2.0 * points / scale - 1.0, dtype=torch.float32)
        with torch.no_grad():
            a = _adjacency(n, edges) + torch.eye(n)
            dinv = a.sum(1).rsqrt()
            an = dinv[:, None] * a * dinv[None, :]
            h = x @ self.proj[0] + self.proj[1]
            outs = []
            for w, b in self.layers:
                h = torch.relu(an @ (h @ w) + b)
                outs.append(h)
            pooled = torch.cat(outs, 1).max(0).values
            z = torch.relu(pooled @ self.head[0] + self.head[1])
        return z.numpy().astype(np.float64)


def degree_profile(n: int, edges: np.ndarray) -> np.ndarray:
    """Local degree profile (Cai & Wang 2022): degree, min/max/mean/SD of neighbour degrees."""
    deg = np.bincount(edges.ravel(), minlength=n).astype(float) if len(edges) else np.zeros(n)
    nbrs = [[] for _ in range(n)]
    for i, j in edges:
        nbrs[i].append(deg[j])
        nbrs[j].append(deg[i])
    prof = np.zeros((n, 5))
    for i in range(n):
        v = np.asarray(nbrs[i]) if nbrs[i] else np.zeros(1)
        prof[i] = (deg[i], v.min(), v.max(), v.mean(), v.std())
    return prof


class EGNNEncoder:
    """Untrained E(n)-equivariant GNN (seeded), Satorras et al. 2021, 3 layers::

        m_ij = φ_e(h_i, h_j, ||x_i − x_j||²),   x_i ← x_i + C Σ_j (x_i − x_j) φ_x(m_ij),
        h_i ← h_i + φ_h(h_i, Σ_j m_ij)

    over kNN-graph edges, node features = local degree profile, coordinates in px
    divided by the site's mean NN distance (scale-free). Mean pool of the last h,
    then Linear(h→h) + ReLU. Invariant to rotations, translations and reflections."""

    def __init__(self, hidden: int = 64, n_layers: int = 3, seed: int = 0) -> None:
        torch = _torch()
        g = torch.Generator().manual_seed(int(seed))
        self.hidden, self.n_layers = int(hidden), int(n_layers)

        def lin(i, o):
            bound = 1.0 / np.sqrt(i)
            return ((torch.rand((i, o), generator=g) * 2 - 1) * bound, (torch.rand(o, generator=g) * 2 - 1) * bound)

        h = self.hidden
        self.embed = lin(5, h)
        self.layers = [dict(e1=lin(2 * h + 1, h), e2=lin(h, h), x1=lin(h, 1), h1=lin(2 * h, h), h2=lin(h, h))
                       for _ in range(self.n_layers)]
        self.head = lin(h, h)

    def __call__(self, points: np.ndarray, edges: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        torch = _torch()
        n = len(points)
        if n == 0:
            return np.zeros(self.hidden)
        silu = torch.nn.functional.silu
        prof = degree_profile(n, edges)
        with torch.no_grad():
            h = torch.as_tensor(prof, dtype=torch.float32)
            h = h @ self.embed[0] + self.embed[1]
            x = torch.as_tensor(points, dtype=torch.float32)
            if len(edges):
                e = torch.as_tensor(np.concatenate([edges, edges[:, ::-1]]), dtype=torch.long)
                src, dst = e[:, 0], e[:, 1]
                scale = (x[src] - x[dst]).norm(dim=1).mean().clamp_min(1e-6)
                x = x / scale
                deg = torch.bincount(src, minlength=n).clamp_min(1).float()[:, None]
                for p in self.layers:
                    diff = x[src] - x[dst]
                    d2 = (diff**2).sum(1, keepdim=True)
                    m = silu(torch.cat([h[src], h[dst], d2], 1) @ p["e1"][0] + p["e1"][1])
                    m = silu(m @ p["e2"][0] + p["e2"][1])
                    x = x + torch.zeros_like(x).index_add_(0, src, diff * (m @ p["x1"][0] + p["x1"][1])) / deg
                    agg = torch.zeros_like(h).index_add_(0, src, m)
                    h = h + (silu(torch.cat([h, agg], 1) @ p["h1"][0] + p["h1"][1]) @ p["h2"][0] + p["h2"][1])
            z = torch.relu(h.mean(0) @ self.head[0] + self.head[1])
        return z.numpy().astype(np.float64)


@register(
    "cell_graph",
    kind="baseline",
    description="structure only: nuclei-centroid point-set features, kNN graph image → encoder, untrained GCN/EGNN",
)
class CellGraph:
    """Structure-only representations of a site from its nuclei centroids.

    Parameters
    ----------
    variants : list of str
        Layers to return, from ``points``, ``image``, ``gcn``, ``egnn`` (default all).
    k : int
        Neighbours in the kNN graph (default 5, arXiv 2603.13377).
    encoder : str
        Registered image extractor fed the rendered graph (default ``single_conv``).
    encoder_params : dict
        Its parameters.
    render_size : int or None
        Side of the rendered graph image in px; None = the site's size (use 224 for
        ImageNet-size encoders).
    hidden, seed
        Width and seed of the untrained GCN and EGNN (default 64, 0).
    nuclei_channel : str
        Nuclear stain channel (default ``DNA``); ``segmentation`` = keyword arguments of
        :func:`~baselens.extract.segmentation.segment_nuclei`.
    """

    needs_images: bool = True

    def __init__(self, *, variants: Iterable[str] = VARIANTS, k: int = 5, encoder: str = "single_conv",
                 encoder_params: dict | None = None, render_size: int | None = None, hidden: int = 64,
                 seed: int = 0, nuclei_channel: str = "DNA", segmentation: dict | None = None) -> None:
        variants = list(variants)
        bad = [v for v in variants if v not in VARIANTS]
        if bad or not variants:
            raise ValueError(f"variants must be a non-empty subset of {VARIANTS}, got {variants!r}")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if encoder == "cell_graph":
            raise ValueError("cell_graph cannot encode its own graph images")
        self.variants = [v for v in VARIANTS if v in variants]
        self.k = int(k)
        self.encoder_name = encoder
        self.encoder_params = dict(encoder_params or {})
        self.encoder = get_extractor(encoder, **self.encoder_params) if "image" in self.variants else None
        self.render_size = render_size
        self.nuclei_channel = nuclei_channel
        self.seg_params = dict(segmentation or {})
        self.gcn = GCNEncoder(hidden, 4, seed) if "gcn" in self.variants else None
        self.egnn = EGNNEncoder(hidden, 3, seed) if "egnn" in self.variants else None

    def centroids(self, batch: SiteBatch) -> list[np.ndarray]:
        channels = list(batch.channels)
        if self.nuclei_channel not in channels:
            raise ValueError(f"cell_graph: nuclei channel {self.nuclei_channel!r} not in the batch; "
                             f"available channels: {channels}")
        return [centroids(lab) for lab in batch_nuclei(batch, self.nuclei_channel, self.seg_params)]

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        if batch.images is None:
            raise ValueError("cell_graph needs images, but batch.images is None")
        shape = tuple(batch.images.shape[-2:])
        pts = self.centroids(batch)
        edges = [knn_edges(p, self.k) for p in pts]
        out: dict[str, pd.DataFrame] = {}
        if "points" in self.variants:
            out["points"] = pd.DataFrame([point_features(p, shape, self.k) for p in pts], columns=list(POINT_FEATURE_NAMES), dtype=np.float64)
        if "image" in self.variants:
            imgs = np.stack([render_graph(p, e, shape, self.render_size) for p, e in zip(pts, edges)])
            nch = len(batch.channels)
            stack = np.repeat(imgs[:, None] * np.float32(UINT16_MAX), nch, axis=1).astype(np.float32)
            enc = self.encoder(SiteBatch(stack, list(batch.channels), batch.meta, batch.context))
            for layer, df in enc.items():
                name = "image" if (layer == DEFAULT_LAYER and len(enc) == 1) else f"image_{layer}"
                out[name] = df.reset_index(drop=True).astype(np.float64)
        for name, net in (("gcn", self.gcn), ("egnn", self.egnn)):
            if net is not None:
                z = (_single_threaded(lambda: np.stack([net(p, e, shape) for p, e in zip(pts, edges)]))
                     if pts else np.zeros((0, net.hidden)))
                out[name] = pd.DataFrame(z, columns=[f"{name.upper()}_{i}" for i in range(net.hidden)])
        return out
