"""Network representations: untrained and pretrained CNNs / ViTs, four stages each (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026)).

The arXiv 2603.13377 paper's central finding is that untrained networks match pretrained ones on some
microscopy benchmarks and not on others. Here every network of its Appendix D.1 is one
config line, pretrained or untrained, and each of its four stages is scored as its own
``layer``::

    [[methods]]
    name = "vit_small_patch16_224"                    # untrained: kind "baseline"
    params = { weights = "random", seed = 0, channels = "expand", geometry = "native" }

    [[methods]]
    name = "network"                                   # the generic entry
    params = { arch = "resnet50", weights = "pretrained" }   # trained: kind "model"

    [[methods]]
    name = "resnet50_random"                           # kind "baseline"

Architectures (``arch``; registered names are the same strings)
--------------------------------------------------------------

=================================  ===================  ==========================  ===================================
arch (timm / torchvision name)     paper's weights      layers (results ``layer``)   dims per layer
=================================  ===================  ==========================  ===================================
alexnet (torchvision)              IMAGENET1K_V1        conv2, conv3, conv4, conv5   192, 384, 256, 256
resnet18                           tv_in1k              layer1 … layer4              64, 128, 256, 512
resnet34                           tv_in1k              layer1 … layer4              64, 128, 256, 512
resnet50                           tv2_in1k             layer1 … layer4              256, 512, 1024, 2048
resnet152                          tv2_in1k             layer1 … layer4              256, 512, 1024, 2048
vit_small_patch16_224              augreg_in21k_ft_in1k block3, 6, 9, 12             384 each
vit_base_patch16_224               augreg2_in21k_ft_in1k block3, 6, 9, 12            768 each
vit_large_patch16_224              augreg_in21k_ft_in1k block6, 12, 18, 24           1024 each
vit_huge_patch14_224               orig_in21k           block8, 16, 24, 32           1280 each
vit_small_patch14_dinov2           lvd142m              block3, 6, 9, 12             384 each
vit_base_patch14_dinov2            lvd142m              block3, 6, 9, 12             768 each
vit_large_patch14_dinov2           lvd142m              block6, 12, 18, 24           1024 each
vit_giant_patch14_dinov2           lvd142m              block10, 20, 30, 40          1536 each
=================================  ===================  ==========================  ===================================

Dims are per channel group: ``channels = "per_channel"`` multiplies them by C; ViT
``pooling = "cls_mean"`` doubles them. :func:`layer_dims` computes them for any setting
(on PyTorch's ``meta`` device: no memory, no compute). ``DINOv2-g`` blocks follow seed
004's rule for 40-block ViT-g (H-optimus: {10, 20, 30, 40}). AlexNet's stages are the
ReLU outputs of its conv2–conv5 (conv1 is a 64-filter 11×11 edge bank, closer to
``single_conv``). arXiv 2603.13377 uses the official DINOv2 repository; timm's ``*_dinov2.lvd142m``
are the same weights converted.

Pipeline of one site (every step a param, recorded in the run's config)
-----------------------------------------------------------------------

1. **intensity** → [0, 1] per channel (explicit; MorphoHELM's choice is the default):

   * ``"image_percentile"`` — per site and channel, clip to the ``percentiles``
     (default (0.05, 99.95)) and rescale; removes intensity level differences between sites.
   * ``"plate_percentile"`` — the same with percentiles pooled over ``fit_sites`` sites
     of each plate (computed by :meth:`Network.fit`, which the pipeline calls); keeps
     within-plate intensity differences, removes plate-to-plate drift.
   * ``"fixed"`` — ``(x - lo) / (hi - lo)`` clipped, ``intensity_range`` default
     (0, 65535); keeps absolute intensities.
   * ``"none"`` — raw values (use with your own ``input_norm``).

2. **geometry** (``input_size`` default 224), the same for every model of a run:

   * ``"resize"`` — bilinear (antialiased) resize of the whole site to ``input_size``².
   * ``"tile"`` — a centred grid of ⌊H/s⌋×⌊W/s⌋ non-overlapping ``s``-px crops,
     embeddings averaged over crops (no resampling; more compute on big sites).
   * ``"native"`` — the site as it is; ViTs are built for that size (``img_size``) and
     the site is centre-cropped to a multiple of the patch size (1080 → 1072 for /16).
     Pretrained ViT position embeddings are resampled (timm) to the grid.

3. **channels**:

   * ``"expand"`` (arXiv 2603.13377 D.4): the network is built for RGB, its weights set
     (random or pretrained), then its first layer widened to C channels. ViTs: the
     patch-embedding filters are *copied* cyclically (channel c gets RGB filter c mod 3),
     bias kept, no rescaling. CNNs: ``timm.models.adapt_input_conv`` (what
     ``timm.create_model(in_chans=C)`` does to pretrained weights): filters repeated and
     scaled by 3/C to keep activation magnitudes. Untrained networks go through the same
     expansion, so random vs pretrained differ only in weight values.
   * ``"per_channel"`` (MorphoHELM): each channel repeated to RGB, embedded separately;
     the C embeddings concatenated (feature dim × C; columns name the channel).
   * ``"native"``: the first layer built for C channels and randomly initialized
     (``weights = "random"`` only).

4. **input_norm**: ``"model"`` (default: the architecture's pretrained mean/std —
   ImageNet for ResNet/AlexNet/DINOv2, 0.5/0.5 for AugReg ViTs; cycled over channels
   like the filters), ``"imagenet"`` or ``"none"``.

5. **forward** in ``torch.inference_mode()``, ``eval()`` (BatchNorm uses its running
   statistics — defaults for untrained nets — so a site's features never depend on the
   other sites of its batch), in micro-batches of ``batch_size`` network inputs; device
   ``"auto"`` = CUDA when present; ``dtype = "bfloat16"`` runs under autocast.

6. **pooling**: CNN stages: global average pool. ViT blocks: ``"cls"`` (arXiv 2603.13377, the
   ``<cls>`` token of the block output), ``"mean"`` (mean of patch tokens, prefix tokens
   excluded) or ``"cls_mean"`` (both concatenated). Block outputs are taken before the
   final LayerNorm.

Untrained networks are baselines
--------------------------------

The kind follows the weights, not the name or label: any network with random weights
(``weights = "random"``, the default) has ``method_kind = "baseline"`` — arXiv 2603.13377 treats
untrained networks as baselines a pretrained model must beat to have learned anything —
and only trained weights make a ``"model"`` (:func:`baselens.extract.registry.method_kind`).
Every architecture is registered as ``<arch>`` (any ``weights``) and ``<arch>_random``
(weights fixed to ``"random"``); both are baselines when untrained.

Timm's untrained ResNets use ``zero_init_last`` (the last BatchNorm of every residual
block starts at zero), so an untrained timm ResNet is mostly its stem and downsampling
shortcuts; this is the network arXiv 2603.13377 evaluated (``timm.create_model(pretrained=False)``).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from baselens.extract.registry import SiteBatch, register, weights_kind
from baselens.extract.weights import (
    WeightsError,
    WeightsSpec,
    check_online,
    download,
    load_into,
    load_state_dict,
    parse_weights,
)

__all__ = [
    "ARCHITECTURES",
    "Arch",
    "Network",
    "layer_dims",
    "normalize_intensity",
    "percentile_limits",
    "site_geometry",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Arch:
    """One architecture: how to build it and which four stages to read."""

    name: str
    family: Literal["resnet", "vit", "alexnet"]
    source: Literal["timm", "torchvision"]
    tag: str  # arXiv 2603.13377 pretrained tag
    layers: dict  # results layer name -> module path
    dims: tuple  # feature dim per layer (per channel group, one pooling)
    patch_size: int = 0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    paper: str = "arXiv 2603.13377 Table 3"


def _resnet(name: str, tag: str, dims: tuple) -> Arch:
    return Arch(name, "resnet", "timm", tag, {f"layer{i}": f"layer{i}" for i in range(1, 5)}, dims)


def _vit(name: str, tag: str, blocks: Sequence[int], dim: int, patch: int,
         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), paper="arXiv 2603.13377 Table 3") -> Arch:
    return Arch(name, "vit", "timm", tag, {f"block{b}": f"blocks.{b - 1}" for b in blocks},
                (dim,) * len(blocks), patch, mean, std, paper)


ARCHITECTURES: dict[str, Arch] = {a.name: a for a in [
    Arch("alexnet", "alexnet", "torchvision", "IMAGENET1K_V1",
         {"conv2": "features.4", "conv3": "features.7", "conv4": "features.9", "conv5": "features.11"},
         (192, 384, 256, 256), paper="arXiv 2603.13377 D.1 (torchvision)"),
    _resnet("resnet18", "tv_in1k", (64, 128, 256, 512)),
    _resnet("resnet34", "tv_in1k", (64, 128, 256, 512)),
    _resnet("resnet50", "tv2_in1k", (256, 512, 1024, 2048)),
    _resnet("resnet152", "tv2_in1k", (256, 512, 1024, 2048)),
    _vit("vit_small_patch16_224", "augreg_in21k_ft_in1k", (3, 6, 9, 12), 384, 16),
    _vit("vit_base_patch16_224", "augreg2_in21k_ft_in1k", (3, 6, 9, 12), 768, 16),
    _vit("vit_large_patch16_224", "augreg_in21k_ft_in1k", (6, 12, 18, 24), 1024, 16),
    _vit("vit_huge_patch14_224", "orig_in21k", (8, 16, 24, 32), 1280, 14),
    _vit("vit_small_patch14_dinov2", "lvd142m", (3, 6, 9, 12), 384, 14,
         IMAGENET_MEAN, IMAGENET_STD, "arXiv 2603.13377 D.1 (DINOv2)"),
    _vit("vit_base_patch14_dinov2", "lvd142m", (3, 6, 9, 12), 768, 14,
         IMAGENET_MEAN, IMAGENET_STD, "arXiv 2603.13377 D.1 (DINOv2)"),
    _vit("vit_large_patch14_dinov2", "lvd142m", (6, 12, 18, 24), 1024, 14,
         IMAGENET_MEAN, IMAGENET_STD, "arXiv 2603.13377 D.1 (DINOv2)"),
    _vit("vit_giant_patch14_dinov2", "lvd142m", (10, 20, 30, 40), 1536, 14,
         IMAGENET_MEAN, IMAGENET_STD, "arXiv 2603.13377 D.1 (DINOv2)"),
]}

_INTENSITY = ("image_percentile", "plate_percentile", "fixed", "none")
_GEOMETRY = ("resize", "tile", "native")
_CHANNELS = ("expand", "per_channel", "native")
_POOLING = ("cls", "mean", "cls_mean")
_INPUT_NORM = ("model", "imagenet", "none")


# --------------------------------------------------------------------------- preprocessing
def percentile_limits(images: np.ndarray, percentiles: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (lo, hi) percentiles of ``images`` (..., C, H, W) pooled over all but C.

    Returns two arrays of shape ``images.shape[:-2]`` reduced to (C,) when ``images`` is
    (N, C, H, W), or (C,) for a single (C, H, W) site.
    """
    x = np.asarray(images, dtype=np.float32)
    c = x.shape[-3]
    flat = np.moveaxis(x.reshape(-1, c, x.shape[-2] * x.shape[-1]), 1, 0).reshape(c, -1)
    lo, hi = np.percentile(flat, list(percentiles), axis=1)
    return lo.astype(np.float32), hi.astype(np.float32)


def normalize_intensity(images: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``clip((x - lo) / (hi - lo), 0, 1)`` with lo/hi broadcast per channel
    (shape (C,) or (N, C)); a channel with hi <= lo maps to 0."""
    x = np.asarray(images, dtype=np.float32)
    lo = np.asarray(lo, np.float32)[..., None, None]
    hi = np.asarray(hi, np.float32)[..., None, None]
    span = hi - lo
    out = (x - lo) / np.where(span > 0, span, 1.0)
    out = np.where(span > 0, out, 0.0)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def site_geometry(h: int, w: int, geometry: str, input_size: int, patch: int = 0) -> dict:
    """What ``geometry`` does to an h×w site: ``{"mode", "size": (H, W) fed to the
    network, "tiles": [(y0, x0)], "crop": (y0, x0, H, W)}``."""
    if geometry == "resize":
        return {"mode": "resize", "size": (input_size, input_size), "tiles": [(0, 0)]}
    if geometry == "tile":
        ny, nx = h // input_size, w // input_size
        if ny < 1 or nx < 1:
            raise ValueError(f"geometry='tile' needs sites of at least {input_size}×{input_size} "
                             f"px, got {h}×{w}; use geometry='resize' or a smaller input_size")
        y0, x0 = (h - ny * input_size) // 2, (w - nx * input_size) // 2
        tiles = [(y0 + i * input_size, x0 + j * input_size) for i in range(ny) for j in range(nx)]
        return {"mode": "tile", "size": (input_size, input_size), "tiles": tiles}
    if geometry == "native":
        hh, ww = (h // patch * patch, w // patch * patch) if patch else (h, w)
        if hh < 1 or ww < 1:
            raise ValueError(f"site {h}×{w} is smaller than the patch size {patch}")
        return {"mode": "native", "size": (hh, ww), "tiles": [((h - hh) // 2, (w - ww) // 2)]}
    raise ValueError(f"geometry must be one of {_GEOMETRY}, got {geometry!r}")


# --------------------------------------------------------------------------- model building
@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _build_trunk(arch: Arch, in_chans: int, img_size: tuple[int, int] | None, spec: WeightsSpec,
                 seed: int, device: str = "cpu"):
    """Build ``arch`` with ``in_chans`` input channels and load its weights (3-channel
    weights when pretrained). Returns the torch module (classifier head removed)."""
    import torch

    meta = device == "meta"
    ctx = torch.device("meta") if meta else nullcontext()
    kwargs: dict = {}
    if arch.family == "vit" and img_size is not None:
        kwargs["img_size"] = tuple(int(s) for s in img_size)
    with _seeded(seed), ctx:
        if arch.source == "torchvision":
            import torchvision

            if spec.kind == "timm" and not meta:
                check_online(f"torchvision weights {arch.name}.{spec.value}")
                try:
                    model = torchvision.models.get_model(arch.name, weights=spec.value)
                except Exception as exc:
                    raise WeightsError(
                        f"could not fetch torchvision weights {arch.name}.{spec.value}: {exc}. "
                        "Offline? Download them once and pass the file as weights."
                    ) from None
            else:
                model = torchvision.models.get_model(arch.name, weights=None)
            if in_chans != 3:
                conv = model.features[0]
                model.features[0] = torch.nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size,
                                                    conv.stride, conv.padding)
            model.classifier = torch.nn.Identity()
        else:
            import timm

            if spec.kind in ("timm", "hub") and not meta:
                name = f"{arch.name}.{spec.value}" if spec.kind == "timm" else f"hf-hub:{spec.value}"
                check_online(f"pretrained weights {name!r}")
                try:
                    model = timm.create_model(name, pretrained=True, num_classes=0,
                                              in_chans=in_chans, **kwargs)
                except Exception as exc:
                    raise WeightsError(
                        f"could not fetch pretrained weights {name!r} through timm: {exc}. "
                        "Offline? Fetch them once on a connected machine (they land in the "
                        "Hugging Face cache) or pass a local .safetensors file as weights."
                    ) from None
            else:
                model = timm.create_model(arch.name, pretrained=False, num_classes=0,
                                          in_chans=in_chans, **kwargs)
    if spec.kind in ("file", "url") and not meta:
        path = spec.value if spec.kind == "file" else str(download(spec.value))
        sd = load_state_dict(path)
        filt = None
        if arch.family == "vit":
            from timm.models.vision_transformer import checkpoint_filter_fn as filt
        load_into(model, sd, filter_fn=filt, what=f"weights file {path}")
    return model


def _first_layer_path(arch: Arch) -> str:
    return {"vit": "patch_embed.proj", "resnet": "conv1", "alexnet": "features.0"}[arch.family]


def _expand_first_layer(model, arch: Arch, n_channels: int) -> None:
    """arXiv 2603.13377 D.4 channel expansion of an RGB network to ``n_channels`` inputs (in place)."""
    import torch

    path = _first_layer_path(arch)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    conv = getattr(parent, attr)
    w = conv.weight.detach()
    if w.shape[1] == n_channels:
        return
    if arch.family == "vit":
        idx = torch.arange(n_channels, device=w.device) % w.shape[1]
        new_w = w[:, idx].clone()  # copy filters cyclically, no rescaling (D.4)
    else:
        from timm.models import adapt_input_conv

        new_w = adapt_input_conv(n_channels, w)  # repeat + scale by 3/C (timm in_chans)
    new = torch.nn.Conv2d(n_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, bias=conv.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(new_w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())  # bias kept as is
    setattr(parent, attr, new)
    if arch.family == "vit" and hasattr(model, "patch_embed"):
        model.patch_embed.in_chans = n_channels  # cosmetic (repr)


# --------------------------------------------------------------------------- the extractor
class _StopForward(Exception):
    """Raised by the hook of the last requested stage to skip the rest of the network."""


class Network:
    """A torchvision/timm network read at four stages (see the module docstring).

    Parameters
    ----------
    arch : str
        A key of :data:`ARCHITECTURES`.
    weights : str
        ``"random"`` (default), ``"pretrained"`` (arXiv 2603.13377 tag), ``"timm:<tag>"``,
        ``"hf-hub:<id>"``, an URL or a local ``.safetensors`` / ``.pt`` file
        (:mod:`baselens.extract.weights`).
    seed : int
        Seed of the random initialization (also recorded as the results' ``seed``).
    channels : {"expand", "per_channel", "native"}
    intensity : {"image_percentile", "plate_percentile", "fixed", "none"}
    percentiles : (float, float)
        Lower/upper percentiles (0–100) for the percentile modes. Default (0.05, 99.95).
    intensity_range : (float, float)
        ``"fixed"`` mode range. Default (0, 65535).
    fit_sites : int
        Sites sampled per plate by :meth:`fit` for ``"plate_percentile"``. Default 16.
    geometry : {"resize", "tile", "native"}
    input_size : int
        Side of the network input for "resize"/"tile". Default 224.
    input_norm : {"model", "imagenet", "none"}
    pooling : {"cls", "mean", "cls_mean"}
        ViT token pooling (ignored by CNNs, which average-pool). Default "cls".
    layers : list of str, optional
        Subset of the architecture's layers (default: all four).
    batch_size : int
        Network inputs per forward pass (bounds memory). Default 32.
    device : str
        "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    dtype : {"float32", "bfloat16"}
    n_threads : int, optional
        ``torch.set_num_threads`` while extracting (restored after); None leaves torch's.
    weights_sha256 : str, optional
        Checksum of a downloaded ``weights`` URL.
    """

    needs_images: bool = True

    def __init__(
        self,
        arch: str = "resnet50",
        *,
        weights: str = "random",
        seed: int = 0,
        channels: str = "expand",
        intensity: str = "image_percentile",
        percentiles: Sequence[float] = (0.05, 99.95),
        intensity_range: Sequence[float] = (0.0, 65535.0),
        fit_sites: int = 16,
        geometry: str = "resize",
        input_size: int = 224,
        input_norm: str = "model",
        pooling: str = "cls",
        layers: Sequence[str] | None = None,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "float32",
        n_threads: int | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHITECTURES)}")
        self.arch = ARCHITECTURES[arch]
        for name, value, allowed in [("channels", channels, _CHANNELS), ("intensity", intensity, _INTENSITY),
                                     ("geometry", geometry, _GEOMETRY), ("pooling", pooling, _POOLING),
                                     ("input_norm", input_norm, _INPUT_NORM),
                                     ("dtype", dtype, ("float32", "bfloat16"))]:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.spec = parse_weights(weights, self.arch.tag)
        if channels == "native" and self.spec.pretrained:
            raise ValueError("channels='native' builds a new first layer and needs weights='random'; "
                             "use 'expand' or 'per_channel' with pretrained weights")
        if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles!r}")
        if len(intensity_range) != 2 or not intensity_range[0] < intensity_range[1]:
            raise ValueError(f"intensity_range must be (lo, hi) with lo < hi, got {intensity_range!r}")
        self.weights = str(weights)
        self.weights_sha256 = weights_sha256
        self.seed = int(seed)
        self.channels = channels
        self.intensity = intensity
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.intensity_range = (float(intensity_range[0]), float(intensity_range[1]))
        self.fit_sites = int(fit_sites)
        self.geometry = geometry
        self.input_size = int(input_size)
        if self.input_size < 1:
            raise ValueError(f"input_size must be >= 1, got {input_size!r}")
        self.input_norm = input_norm
        self.pooling = pooling
        all_layers = list(self.arch.layers)
        if layers is None:
            self.layers = all_layers
        else:
            bad = [layer for layer in layers if layer not in self.arch.layers]
            if bad or not layers:
                raise ValueError(f"layers {bad or layers} not among {all_layers} of {arch}")
            self.layers = [layer for layer in all_layers if layer in layers]
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.device_name = device
        self.dtype = dtype
        self.n_threads = None if n_threads is None else int(n_threads)
        self._models: dict = {}
        self._plate_limits: dict = {}

    # ---------------------------------------------------------------- description
    @property
    def geometry_policy(self) -> str:
        """The geometry policy as a string (the pipeline warns if a run mixes policies)."""
        return self.geometry if self.geometry == "native" else f"{self.geometry}:{self.input_size}"

    def layer_dim(self, layer: str, n_channels: int) -> int:
        d = self.arch.dims[list(self.arch.layers).index(layer)]
        if self.arch.family == "vit" and self.pooling == "cls_mean":
            d *= 2
        return d * (n_channels if self.channels == "per_channel" else 1)

    def feature_names(self, layer: str, channel_names: Sequence[str]) -> list[str]:
        d = self.layer_dim(layer, 1)
        width = max(4, len(str(d - 1)))
        if self.channels == "per_channel":
            return [f"{layer}_{ch}_{j:0{width}d}" for ch in channel_names for j in range(d)]
        return [f"{layer}_{j:0{width}d}" for j in range(d)]

    def describe(self) -> dict:
        return {"arch": self.arch.name, "weights": self.spec.describe(), "seed": self.seed,
                "channels": self.channels, "intensity": self.intensity,
                "percentiles": self.percentiles, "intensity_range": self.intensity_range,
                "geometry": self.geometry_policy, "input_norm": self.input_norm,
                "pooling": self.pooling if self.arch.family == "vit" else "avg", "layers": self.layers}

    # ---------------------------------------------------------------- device / model
    def _device(self):
        import torch

        if self.device_name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device_name)

    def model(self, n_channels: int, size: tuple[int, int], device: str | None = None):
        """The network for ``n_channels`` inputs of ``size`` (built once, then cached)."""
        in_model = 3 if self.channels == "per_channel" else n_channels
        img_size = tuple(size) if self.arch.family == "vit" else None
        dev = device or str(self._device())
        key = (in_model, img_size, dev)
        if key not in self._models:
            build_c = in_model if self.channels == "native" else 3
            spec = self.spec
            if spec.kind == "url" and dev != "meta":
                spec = WeightsSpec("file", str(download(spec.value, sha256=self.weights_sha256)))
            model = _build_trunk(self.arch, build_c, img_size, spec, self.seed,
                                 device="meta" if dev == "meta" else "cpu")
            if self.channels == "expand":
                with _seeded(self.seed):  # the new conv's throwaway init must not touch global RNG
                    _expand_first_layer(model, self.arch, in_model)
            model.eval()
            if dev != "meta":
                model.to(dev)
            for p in model.parameters():
                p.requires_grad_(False)
            if len(self._models) >= 4:  # bounded: sites of many sizes under "native"
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return self._models[key]

    def _mean_std(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.input_norm == "none":
            return np.zeros(n, np.float32), np.ones(n, np.float32)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.input_norm == "imagenet" else (self.arch.mean, self.arch.std)
        idx = np.arange(n) % 3
        return np.asarray(mean, np.float32)[idx], np.asarray(std, np.float32)[idx]

    # ---------------------------------------------------------------- plate statistics
    def fit(self, load_data, *, progress=None) -> None:
        """Per-plate percentiles for ``intensity = "plate_percentile"`` (no-op otherwise).

        Samples ``fit_sites`` sites per plate (``numpy.random.default_rng(seed)``, sorted),
        pools their pixels per channel, and stores the ``percentiles``. Called by the
        pipeline before extraction with the run's :class:`~baselens.data.load_data.LoadData`.
        """
        if self.intensity != "plate_percentile":
            return
        plates = load_data.table["Metadata_Plate"].astype(str).to_numpy()
        rng = np.random.default_rng(self.seed)
        for plate in pd.unique(plates):
            rows = np.flatnonzero(plates == plate)
            take = np.sort(rng.choice(rows, size=min(self.fit_sites, len(rows)), replace=False))
            images = load_data.read_sites(take)
            self._plate_limits[plate] = percentile_limits(images, self.percentiles)
        if progress:
            progress(f"fit: {self.arch.name} plate percentiles for {len(self._plate_limits)} plates")

    def fit_images(self, images: np.ndarray, plates: Sequence) -> None:
        """:meth:`fit` from arrays: ``images`` (N, C, H, W) with each site's plate."""
        plates = np.asarray([str(p) for p in plates])
        for plate in pd.unique(plates):
            self._plate_limits[plate] = percentile_limits(images[plates == plate], self.percentiles)

    def _scaled(self, images: np.ndarray, meta: pd.DataFrame) -> np.ndarray:
        if self.intensity == "none":
            return np.asarray(images, np.float32)
        if self.intensity == "fixed":
            lo, hi = self.intensity_range
            c = images.shape[1]
            return normalize_intensity(images, np.full(c, lo), np.full(c, hi))
        if self.intensity == "image_percentile":
            lims = [percentile_limits(site, self.percentiles) for site in images]
            lo = np.stack([a for a, _ in lims])
            hi = np.stack([b for _, b in lims])
            return normalize_intensity(images, lo, hi)
        # plate_percentile
        if "Metadata_Plate" not in meta.columns:
            raise ValueError("intensity='plate_percentile' needs Metadata_Plate in the batch metadata")
        plates = meta["Metadata_Plate"].astype(str).to_numpy()
        missing = sorted(set(plates) - set(self._plate_limits))
        if missing:
            raise RuntimeError(
                f"intensity='plate_percentile': no statistics for plate(s) {missing[:5]} "
                f"({len(missing)} in all); call fit(load_data) or fit_images(images, plates) first "
                "(the pipeline does this)")
        lo = np.stack([self._plate_limits[p][0] for p in plates])
        hi = np.stack([self._plate_limits[p][1] for p in plates])
        return normalize_intensity(images, lo, hi)

    # ---------------------------------------------------------------- forward
    def _inputs(self, scaled: np.ndarray, geo: dict):
        """Network inputs for a chunk of sites: tensor (N*T[*C], c, H, W) in float32."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(scaled))
        n, c, h, w = x.shape
        if geo["mode"] == "resize":
            if (h, w) != tuple(geo["size"]):
                x = F.interpolate(x, size=geo["size"], mode="bilinear", align_corners=False, antialias=True)
            x = x[:, None]
        else:
            sh, sw = geo["size"]
            x = torch.stack([x[:, :, y0:y0 + sh, x0:x0 + sw] for (y0, x0) in geo["tiles"]], dim=1)
        # x: (N, T, C, H, W)
        if self.channels == "per_channel":
            mean, std = self._mean_std(3)
            x = x.unsqueeze(3).expand(-1, -1, -1, 3, -1, -1)  # (N, T, C, 3, H, W)
            x = (x - torch.from_numpy(mean)[:, None, None]) / torch.from_numpy(std)[:, None, None]
            return x.reshape(-1, 3, *x.shape[-2:])
        mean, std = self._mean_std(c)
        x = (x - torch.from_numpy(mean)[:, None, None]) / torch.from_numpy(std)[:, None, None]
        return x.reshape(-1, c, *x.shape[-2:])

    def _forward(self, model, x) -> dict:
        """Pooled features {layer: (B, D) float32 tensor on CPU} for a micro-batch."""
        import torch

        captured: dict = {}
        hooks = []

        def keep(_m, _i, out, layer):
            captured[layer] = out
            if len(captured) == len(self.layers):
                raise _StopForward  # nothing after the last requested stage is computed

        for layer in self.layers:
            mod = model.get_submodule(self.arch.layers[layer])
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, out, layer=layer: keep(_m, _i, out, layer)))
        dev = next(model.parameters()).device
        autocast = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
                    if self.dtype == "bfloat16" and dev.type != "meta" else nullcontext())
        try:
            with torch.inference_mode(), autocast:
                x = x.to(dev, non_blocking=True)
                try:
                    if self.arch.family == "alexnet":
                        model.features(x)
                    else:
                        model.forward_features(x)
                except _StopForward:
                    pass
        finally:
            for h in hooks:
                h.remove()
        out = {}
        for layer in self.layers:
            t = captured[layer]
            if self.arch.family == "vit":
                npre = int(getattr(model, "num_prefix_tokens", 1))
                cls = t[:, 0] if getattr(model, "has_class_token", True) else t[:, npre:].mean(1)
                mean = t[:, npre:].mean(1)
                f = {"cls": cls, "mean": mean}.get(self.pooling)
                if f is None:
                    f = torch.cat([cls, mean], dim=1)
            else:
                f = t.float().mean(dim=(2, 3))
            out[layer] = f.float().cpu() if dev.type != "meta" else f
        return out

    def embed(self, images: np.ndarray, meta: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
        """{layer: (N, D) float64} embeddings of ``images`` (N, C, H, W) raw intensities."""
        import torch

        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
        n, c, h, w = images.shape
        meta = meta if meta is not None else pd.DataFrame(index=range(n))
        geo = site_geometry(h, w, self.geometry, self.input_size, self.arch.patch_size)
        if self.arch.family == "vit" and geo["size"][0] < self.arch.patch_size:
            raise ValueError(f"input {geo['size']} smaller than patch size {self.arch.patch_size}")
        model = self.model(c, geo["size"])
        per_site = len(geo["tiles"]) * (c if self.channels == "per_channel" else 1)
        chunk = max(1, self.batch_size // per_site)
        feats: dict[str, list] = {layer: [] for layer in self.layers}
        old_threads = torch.get_num_threads()
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        try:
            for s0 in range(0, n, chunk):
                sl = slice(s0, min(n, s0 + chunk))
                scaled = self._scaled(images[sl], meta.iloc[sl])
                x = self._inputs(scaled, geo)
                parts: dict[str, list] = {layer: [] for layer in self.layers}
                for b0 in range(0, len(x), self.batch_size):
                    for layer, f in self._forward(model, x[b0:b0 + self.batch_size]).items():
                        parts[layer].append(f)
                m = sl.stop - sl.start
                for layer in self.layers:
                    f = torch.cat(parts[layer]).double()
                    if self.channels == "per_channel":
                        f = f.reshape(m, len(geo["tiles"]), c * f.shape[-1])  # channel-major
                    else:
                        f = f.reshape(m, len(geo["tiles"]), f.shape[-1])
                    feats[layer].append(f.mean(dim=1).numpy())
        finally:
            if self.n_threads:
                torch.set_num_threads(old_threads)
        return {layer: np.concatenate(v) for layer, v in feats.items()}

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        if batch.images is None:
            raise ValueError(f"{self.arch.name} needs images, but batch.images is None")
        emb = self.embed(batch.images, batch.meta)
        chans = list(batch.channels) if batch.channels else [f"ch{i}" for i in range(batch.images.shape[1])]
        return {layer: pd.DataFrame(v, columns=self.feature_names(layer, chans))
                for layer, v in emb.items()}


def layer_dims(arch: str, n_channels: int, size: int | tuple[int, int] = 224, **params) -> dict[str, int]:
    """Feature dim per layer of ``arch`` for ``n_channels`` inputs, by running the network
    on PyTorch's ``meta`` device (shapes only: no weights allocated, no compute). The
    architecture is constructed for real (with meta tensors), so this checks the
    documented dims against timm/torchvision."""
    import torch

    params = {**params, "weights": "random"}
    net = Network(arch, **params)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    geo = site_geometry(*hw, net.geometry, net.input_size, net.arch.patch_size)
    model = net.model(n_channels, geo["size"], device="meta")
    c_in = 3 if net.channels == "per_channel" else n_channels
    x = torch.empty((1, c_in, *geo["size"]), device="meta")
    out = net._forward(model, x)
    mult = n_channels if net.channels == "per_channel" else 1
    return {layer: int(t.shape[-1]) * mult for layer, t in out.items()}


# --------------------------------------------------------------------------- registry
def _describe_arch(a: Arch, random: bool) -> str:
    stages = ", ".join(a.layers)
    w = "untrained (random init)" if random else f"pretrained ({a.tag}) or random"
    return f"{a.name}, {w}; stages {stages} ({a.paper})"


def _make_factory(arch_name: str, random_only: bool):
    def factory(**params) -> Network:
        if "arch" in params:
            raise TypeError(f"'{arch_name}' fixes arch; use name = 'network' to choose one")
        if random_only and params.get("weights", "random") != "random":
            raise TypeError(f"'{arch_name}_random' is untrained; use '{arch_name}' for weights="
                            f"{params['weights']!r}")
        return Network(arch_name, **params)

    factory.__name__ = f"{arch_name}{'_random' if random_only else ''}"
    factory.__doc__ = Network.__doc__
    return factory


register("network", kind="model", kind_for=weights_kind("random"),
         description="any architecture of baselens.extract.networks.ARCHITECTURES: params arch, "
                     "weights, channels, intensity, geometry, layers (arXiv 2603.13377 D.1); kind "
                     "baseline when weights are random")(Network)

for _a in ARCHITECTURES.values():
    register(_a.name, kind="model", kind_for=weights_kind("random"),
             description=_describe_arch(_a, False) + "; kind baseline when weights are random"
             )(_make_factory(_a.name, False))
    register(f"{_a.name}_random", kind="baseline",
             description=_describe_arch(_a, True) + "; kind baseline")(_make_factory(_a.name, True))
