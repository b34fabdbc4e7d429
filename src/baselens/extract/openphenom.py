"""OpenPhenom: Recursion's channel-agnostic MAE ViT-S/16 (“Deep Learning for BioImaging: What Are We Learning?” (arXiv 2603.13377, ICML 2026) D.2).

A small re-implementation of the *encoder* published at
https://huggingface.co/recursionpharma/OpenPhenom (model card and ``huggingface_mae.py``,
``vit.py``, ``mae_modules.py``, ``normalizer.py`` of github.com/recursionpharma/maes_microscopy,
© Recursion Pharmaceuticals, non-commercial licence for the weights). We rebuild only
what embedding needs, on timm, so no ``trust_remote_code`` and no hydra/transformers:

* backbone ``timm vit_small_patch16_224(img_size=256, num_classes=0, fc_norm=None,
  class_token=True, init_values=1e-4, block_fn=ParallelScalingBlock, qkv_bias=False,
  qk_norm=True, global_pool="avg")`` (``vit.vit_small_patch16_256``);
* channel-agnostic patch embedding: one ``Conv2d(1, 384, 16, 16)`` applied to every
  channel; tokens ordered channel-major (C × 16 × 16 for a 256² crop)
  (``vit.ChannelAgnosticPatchEmbed``);
* fixed 2-D sin-cos position embeddings repeated for every channel, a zero vector for
  the class token (``vit.generate_2d_sincos_pos_embeddings``); for a grid other than
  16×16 we generate the same function for the actual grid;
* input normalization: ``x / 255`` then per-image, per-channel standardization
  (``InstanceNorm2d(affine=False)``) — so only clipping, not scale, matters upstream;
* embedding (``MAEModel.predict``): ``forward_features`` (blocks + final LayerNorm) and
  the **mean of patch tokens**, class token discarded; ``channelwise=True`` gives the
  per-channel means concatenated (``return_channelwise_embeddings``).

Layers: ``block3``, ``block6``, ``block9`` (raw block outputs, mean of patch tokens) and
``block12`` (after the final LayerNorm, = the model card's embedding), 384-d each.

Weights: ``weights`` is a local snapshot folder (``config.json`` + ``model.safetensors``;
the HF repo stores a ``torch.save`` pickle under that name, read with
``weights_only=True``), a single weights file, ``"hub"`` (``huggingface_hub.snapshot_download``
of ``recursionpharma/OpenPhenom``; needs a connection once) or ``"random"``.
Only ``encoder.*`` keys are used; decoder keys are ignored.

The model was trained on 256×256 crops of 6-channel RxRx images (2 µm/px-ish, uint8).
Defaults follow MorphoHELM: percentile-scaled to [0, 255], ``geometry="resize"`` to 256
(``"tile"`` gives 256² crops averaged, closer to how it was trained on 1080² sites).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from baselens.extract.networks import normalize_intensity, percentile_limits, site_geometry
from baselens.extract.registry import SiteBatch, register, weights_kind
from baselens.extract.weights import WeightsError, check_online, load_into, load_state_dict

__all__ = ["OpenPhenom", "build_encoder", "sincos_pos_embed", "HF_REPO"]

HF_REPO = "recursionpharma/OpenPhenom"
EMBED_DIM = 384
PATCH = 16
MAX_IN_CHANS = 11
LAYERS = {"block3": 2, "block6": 5, "block9": 8, "block12": 11}


def sincos_pos_embed(dim: int, length: int, n_modality: int = 1, class_token: bool = True,
                     scale: float = 10000.0):
    """2-D sin-cos position embeddings (1, [1 +] n_modality·length², dim) as in
    ``vit.generate_2d_sincos_pos_embeddings``: [sin h, cos h, sin w, cos w], dim/4 each."""
    import torch

    pos = torch.arange(length, dtype=torch.float32)
    hh, ww = torch.meshgrid(pos, pos, indexing="ij")
    q = dim // 4
    omega = 1.0 / scale ** (torch.arange(q, dtype=torch.float32) / q)
    h = torch.outer(hh.flatten(), omega)
    w = torch.outer(ww.flatten(), omega)
    pe = torch.cat([torch.sin(h), torch.cos(h), torch.sin(w), torch.cos(w)], dim=1)[None]
    pe = pe.repeat(1, n_modality, 1)
    if class_token:
        pe = torch.cat([torch.zeros(1, 1, dim), pe], dim=1)
    return pe


def build_encoder(img_size: int = 256):
    """The OpenPhenom encoder as a ``torch.nn.Module`` whose state-dict keys match the
    checkpoint's ``encoder.vit_backbone.*`` (with that prefix stripped)."""
    import torch
    from timm.models.vision_transformer import ParallelScalingBlock, VisionTransformer

    class ChannelAgnosticViT(VisionTransformer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.patch_embed.proj = torch.nn.Conv2d(1, self.embed_dim, PATCH, PATCH)
            grid = self.patch_embed.grid_size[0]
            self.pos_embed = torch.nn.Parameter(
                sincos_pos_embed(self.embed_dim, grid, MAX_IN_CHANS), requires_grad=False)

        def tokens(self, x):
            # channel-agnostic patch embedding, channel-major token order
            c = x.shape[1]
            t = torch.stack([self.patch_embed.proj(x[:, i:i + 1]) for i in range(c)], dim=2)
            t = t.flatten(2).transpose(1, 2)  # (B, C*h*w, D)
            gh, gw = x.shape[-2] // PATCH, x.shape[-1] // PATCH
            if gh == gw == self.patch_embed.grid_size[0]:
                pe = self.pos_embed[:, : 1 + t.shape[1]]
            else:
                if gh != gw:
                    raise ValueError(f"OpenPhenom needs square inputs, got {tuple(x.shape[-2:])}")
                pe = sincos_pos_embed(self.embed_dim, gh, c).to(t.device, t.dtype)
            t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
            return self.norm_pre(t + pe)

    return ChannelAgnosticViT(
        img_size=img_size, patch_size=PATCH, embed_dim=EMBED_DIM, depth=12, num_heads=6,
        in_chans=1, num_classes=0, fc_norm=None, class_token=True, init_values=1e-4,
        block_fn=ParallelScalingBlock, qkv_bias=False, qk_norm=True, global_pool="avg")


def _resolve(weights: str) -> Path | None:
    if weights == "random":
        return None
    if weights == "hub":
        check_online(f"the Hugging Face repository {HF_REPO}")
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(HF_REPO, allow_patterns=["*.json", "*.safetensors"]))
        except Exception as exc:
            raise WeightsError(f"could not fetch {HF_REPO} from the Hugging Face hub: {exc}. "
                               "Download the snapshot once (huggingface-cli download "
                               f"{HF_REPO}) and pass its folder as weights.") from None
    p = Path(weights).expanduser()
    if not p.exists():
        raise WeightsError(f"OpenPhenom weights {p} do not exist (a snapshot folder or file)")
    return p


def load_encoder_state(path: Path) -> dict:
    """Encoder state dict (keys without ``encoder.vit_backbone.``) from a snapshot folder
    or file."""
    if path.is_dir():
        cands = [path / "model.safetensors", *sorted(path.glob("*.safetensors")),
                 *sorted(path.glob("*.bin")), *sorted(path.glob("*.pt"))]
        files = [c for c in cands if c.is_file()]
        if not files:
            raise WeightsError(f"no model.safetensors / *.bin in snapshot folder {path}")
        cfg = path / "config.json"
        if cfg.is_file():
            enc = json.loads(cfg.read_text()).get("encoder", {})
            if enc and not enc.get("channel_agnostic", True):
                raise WeightsError(f"{cfg}: not a channel-agnostic encoder")
        path = files[0]
    sd = load_state_dict(path)
    pre = "encoder.vit_backbone."
    if any(k.startswith(pre) for k in sd):
        sd = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
    return sd


@register("openphenom", kind="model", kind_for=weights_kind(None),
          description="OpenPhenom channel-agnostic MAE ViT-S/16 (recursionpharma/OpenPhenom), "
                      "mean of patch tokens, blocks 3/6/9/12 (arXiv 2603.13377 D.2)")
class OpenPhenom:
    """OpenPhenom embeddings (see the module docstring).

    Parameters
    ----------
    weights : str
        Snapshot folder, weights file, ``"hub"`` or ``"random"`` (seeded). Required.
    seed : int
        Seed for ``weights="random"``.
    intensity : {"image_percentile", "fixed"}
        How raw intensities become [0, 255] (MorphoHELM: 0.05/99.95 percentiles → uint8).
    percentiles, intensity_range : as in :class:`~baselens.extract.networks.Network`.
    geometry : {"resize", "tile", "native"}; input_size : int (default 256)
    channelwise : bool
        Concatenate per-channel patch-token means (384·C) instead of one mean (384).
    layers, batch_size, device, n_threads : as in ``Network``.
    """

    needs_images = True

    def __init__(self, *, weights: str, seed: int = 0, intensity: str = "image_percentile",
                 percentiles: Sequence[float] = (0.05, 99.95),
                 intensity_range: Sequence[float] = (0.0, 65535.0), geometry: str = "resize",
                 input_size: int = 256, channelwise: bool = False,
                 layers: Sequence[str] | None = None, batch_size: int = 16,
                 device: str = "auto", n_threads: int | None = None) -> None:
        if intensity not in ("image_percentile", "fixed"):
            raise ValueError(f"intensity must be 'image_percentile' or 'fixed', got {intensity!r}")
        self.weights = str(weights)
        self.path = _resolve(self.weights)
        self.seed = int(seed)
        self.intensity = intensity
        self.percentiles = tuple(float(p) for p in percentiles)
        self.intensity_range = tuple(float(r) for r in intensity_range)
        self.geometry = geometry
        self.input_size = int(input_size)
        self.channelwise = bool(channelwise)
        self.layers = list(LAYERS) if layers is None else [x for x in LAYERS if x in layers]
        if not self.layers or (layers is not None and len(self.layers) != len(layers)):
            raise ValueError(f"layers must be among {list(LAYERS)}, got {layers!r}")
        self.batch_size = int(batch_size)
        self.device_name = device
        self.n_threads = n_threads
        self._model = None

    @property
    def geometry_policy(self) -> str:
        return self.geometry if self.geometry == "native" else f"{self.geometry}:{self.input_size}"

    def model(self):
        import torch

        if self._model is None:
            from baselens.extract.networks import _seeded

            with _seeded(self.seed):
                m = build_encoder(256)
            if self.path is not None:
                sd = load_encoder_state(self.path)
                load_into(m, sd, what=f"OpenPhenom weights {self.path}")
                stored = sd.get("pos_embed")
                if stored is not None and not torch.allclose(stored.float(), m.pos_embed.float(), atol=1e-5):
                    raise WeightsError("OpenPhenom checkpoint has position embeddings that are not "
                                       "the published 2-D sin-cos ones; wrong checkpoint?")
            dev = ("cuda" if torch.cuda.is_available() else "cpu") if self.device_name == "auto" else self.device_name
            self._model = m.eval().to(dev)
        return self._model

    def embed(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        images = np.asarray(images, np.float32)
        n, c, h, w = images.shape
        if c > MAX_IN_CHANS and h // PATCH == 16:
            raise ValueError(f"OpenPhenom supports at most {MAX_IN_CHANS} channels, got {c}")
        geo = site_geometry(h, w, self.geometry, self.input_size, PATCH)
        model = self.model()
        dev = next(model.parameters()).device
        old = torch.get_num_threads()
        if self.n_threads:
            torch.set_num_threads(int(self.n_threads))
        out: dict[str, list] = {k: [] for k in self.layers}
        try:
            for s0 in range(0, n, max(1, self.batch_size // len(geo["tiles"]))):
                x = images[s0:s0 + max(1, self.batch_size // len(geo["tiles"]))]
                if self.intensity == "fixed":
                    lo, hi = self.intensity_range
                    x = normalize_intensity(x, np.full(c, lo), np.full(c, hi))
                else:
                    lims = [percentile_limits(s, self.percentiles) for s in x]
                    x = normalize_intensity(x, np.stack([a for a, _ in lims]), np.stack([b for _, b in lims]))
                t = torch.from_numpy(np.ascontiguousarray(x * 255.0))
                m = len(t)
                if geo["mode"] == "resize":
                    if (h, w) != geo["size"]:
                        t = F.interpolate(t, size=geo["size"], mode="bilinear", antialias=True)
                else:
                    sh, sw = geo["size"]
                    t = torch.cat([t[:, :, y:y + sh, x0:x0 + sw] for (y, x0) in geo["tiles"]])  # tile-major
                with torch.inference_mode():
                    t = t.to(dev).float() / 255.0
                    t = F.instance_norm(t)  # self-standardization per image and channel
                    z = model.tokens(t)
                    last = max(LAYERS[k] for k in self.layers)
                    for i, blk in enumerate(model.blocks):
                        if i > last:
                            break
                        z = blk(z)
                        for k in self.layers:
                            if LAYERS[k] == i:
                                zz = model.norm(z) if k == "block12" else z
                                p = zz[:, 1:]
                                if self.channelwise:
                                    f = p.reshape(len(p), c, -1, p.shape[-1]).mean(2).reshape(len(p), -1)
                                else:
                                    f = p.mean(1)
                                f = f.double().cpu().reshape(len(geo["tiles"]), m, -1).mean(0)
                                out[k].append(f.numpy())
        finally:
            if self.n_threads:
                torch.set_num_threads(old)
        return {k: np.concatenate(v) for k, v in out.items()}

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        if batch.images is None:
            raise ValueError("openphenom needs images, but batch.images is None")
        emb = self.embed(batch.images)
        chans = list(batch.channels)
        res = {}
        for k, v in emb.items():
            if self.channelwise:
                cols = [f"{k}_{ch}_{j:04d}" for ch in chans for j in range(EMBED_DIM)]
            else:
                cols = [f"{k}_{j:04d}" for j in range(v.shape[1])]
            res[k] = pd.DataFrame(v, columns=cols)
        return res
