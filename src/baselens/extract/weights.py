"""Where a network's weights come from: ``weights = ...`` in a method's params.

One string says it all, so a config stays a one-liner:

================================  ==========================================================
``"random"``                      untrained: the architecture's own initialization (timm /
                                  torchvision defaults), drawn under ``torch.manual_seed(seed)``
                                  in a forked RNG — same seed, same weights; global RNG untouched
``"pretrained"``                  the tag of arXiv 2603.13377 (e.g. ``resnet50`` →
                                  ``tv2_in1k``), fetched through timm / torchvision
``"timm:<tag>"`` or ``"<tag>"``   a named timm tag, e.g. ``"augreg2_in21k_ft_in1k"``; fetched
                                  from the Hugging Face hub by timm (needs a connection the
                                  first time; timm's cache afterwards)
``"hf-hub:<org>/<repo>"``         a timm-format checkpoint on the Hugging Face hub
``"https://..."``                 a file downloaded once into ``~/.cache/baselens/weights``
                                  (``weights_sha256`` param checks it)
a path (``*.safetensors``,        a local file. safetensors is preferred (no code execution);
``*.pt``, ``*.pth``, ``*.bin``)   torch checkpoints are read with ``torch.load(...,
                                  weights_only=True)`` only — a pickle with arbitrary objects
                                  is refused, never executed
================================  ==========================================================

Local files hold a state dict of the *3-channel* (RGB) network, as published (timm or
torchvision key names; a nested ``{"state_dict": ...}`` / ``{"model": ...}`` and a
``module.`` prefix are unwrapped). Channel adaptation happens after loading
(:mod:`baselens.extract.networks`). Classifier heads in the file are ignored; any other
missing or unexpected key is an error that lists them.

Nothing here touches the network unless a tag or URL is asked for.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from baselens._network import check_online as _check_online

__all__ = [
    "WeightsSpec",
    "parse_weights",
    "load_state_dict",
    "download",
    "load_into",
    "WeightsError",
]

_TAG = re.compile(r"^[A-Za-z0-9_]+$")
_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")

#: keys of classifier heads that a feature extractor does not need
_HEAD_PREFIXES = ("head.", "fc.", "classifier.", "head_dist.", "pre_logits.")


class WeightsError(RuntimeError):
    """Weights could not be resolved or loaded (names the source and what to do)."""


@dataclass(frozen=True)
class WeightsSpec:
    """A parsed ``weights`` value.

    kind : {"random", "timm", "hub", "url", "file"}
    value : the tag ("timm"), hub id ("hub"), URL ("url") or path ("file"); "" for random.
    """

    kind: str
    value: str = ""

    @property
    def pretrained(self) -> bool:
        return self.kind != "random"

    def describe(self) -> str:
        return "random" if self.kind == "random" else f"{self.kind}:{self.value}"


def parse_weights(weights: str | os.PathLike, default_tag: str | None = None) -> WeightsSpec:
    """Parse a ``weights`` param (see the module docstring). ``default_tag`` is the
    architecture's arXiv 2603.13377 tag, used for ``"pretrained"``."""
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str) or not weights:
        raise WeightsError(f"weights must be a non-empty string, got {weights!r}")
    w = weights.strip()
    if w == "random":
        return WeightsSpec("random")
    if w == "pretrained":
        if not default_tag:
            raise WeightsError("this architecture has no default pretrained tag; name one "
                               "(weights = 'timm:<tag>') or give a file")
        return WeightsSpec("timm", default_tag)
    if w.startswith("timm:"):
        return WeightsSpec("timm", w[5:])
    if w.startswith("hf-hub:"):
        return WeightsSpec("hub", w[7:])
    if w.startswith(("http://", "https://")):
        return WeightsSpec("url", w)
    if w.startswith("file:"):
        w = w[5:]
    looks_like_path = os.sep in w or "/" in w or w.endswith(_FILE_SUFFIXES) or Path(w).exists()
    if looks_like_path:
        p = Path(w).expanduser()
        if not p.exists():
            raise WeightsError(f"weights file {p} does not exist")
        return WeightsSpec("file", str(p))
    if _TAG.match(w):
        return WeightsSpec("timm", w)
    raise WeightsError(
        f"cannot interpret weights={weights!r}: use 'random', 'pretrained', 'timm:<tag>', "
        "'hf-hub:<org>/<repo>', an https URL, or a path to a .safetensors/.pt file"
    )


def _unwrap(obj: object) -> dict:
    import torch

    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("checkpoint is not a state dict of tensors")
    out = {}
    for k, v in obj.items():
        out[k[7:] if k.startswith("module.") else k] = v
    return out


def load_state_dict(path: str | os.PathLike) -> dict:
    """Read a state dict from a local file, on CPU.

    ``.safetensors`` is read with :func:`safetensors.torch.load_file`. Anything else, or
    a ``.safetensors`` name holding a torch pickle (some Hugging Face repos save
    ``torch.save`` output under that name), is read with ``torch.load(path,
    map_location="cpu", weights_only=True)``, which refuses arbitrary Python objects.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return _unwrap(load_file(str(p), device="cpu"))
        except Exception as exc:  # maybe a torch pickle with a .safetensors name
            first = exc
        else:  # pragma: no cover
            first = None
    else:
        first = None
    try:
        with open(p, "rb") as fh:  # a file object: torch.load would dispatch on the suffix
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:
        hint = f" (as safetensors: {first})" if first else ""
        raise WeightsError(
            f"could not read {p} as a weights file: {exc}{hint}. Only safetensors files and "
            "torch checkpoints loadable with weights_only=True are accepted; convert other "
            "checkpoints with `safetensors.torch.save_file(state_dict, 'model.safetensors')`."
        ) from None
    return _unwrap(obj)


def cache_dir() -> Path:
    return Path(os.environ.get("BASELENS_CACHE", Path.home() / ".cache" / "baselens")) / "weights"


def check_online(what: str, url: str | None = None) -> None:
    """Raise :class:`WeightsError` when offline, unless ``url`` is on the loopback.

    Parameters
    ----------
    what : str
        What needs the network (starts the message).
    url : str, optional
        The URL to be fetched; a loopback URL is allowed even offline.

    Raises
    ------
    WeightsError
        From :func:`baselens._network.check_online`, with the fix for weights.
    """
    _check_online(what, url, error=WeightsError,
                  fix="fetch the weights once on a connected machine (or download the file) "
                      "and pass the local .safetensors file as weights")


def download(url: str, *, sha256: str | None = None, dest_dir: str | os.PathLike | None = None,
             timeout: float = 60.0) -> Path:
    """Download ``url`` once into ``dest_dir`` (default :func:`cache_dir`) and return the
    file. ``sha256`` (hex) is checked when given; a mismatching file is not kept."""
    check_online(f"downloading {url}", url)
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "weights"
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    target = dest / f"{tag}_{name}"
    if target.exists() and (sha256 is None or _sha256(target) == sha256.lower()):
        return target
    fd, tmp = tempfile.mkstemp(dir=dest, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, fh)
        if sha256 is not None and _sha256(Path(tmp)) != sha256.lower():
            raise WeightsError(f"{url}: sha256 mismatch (expected {sha256})")
        os.replace(tmp, target)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"could not download {url}: {exc}. Download it yourself and pass "
                           "the local path as weights.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_into(model, state_dict: dict, *, filter_fn=None, what: str = "checkpoint") -> None:
    """Load ``state_dict`` into ``model``; classifier-head keys are ignored, any other
    mismatch raises :class:`WeightsError` naming the keys."""
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    own = model.state_dict()
    sd = {k: v for k, v in state_dict.items()
          if not (k.startswith(_HEAD_PREFIXES) and k not in own)}
    missing = [k for k in own if k not in sd and not k.startswith(_HEAD_PREFIXES)]
    unexpected = [k for k in sd if k not in own]
    shape = [f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
             for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or shape:
        def few(xs):
            return ", ".join(xs[:6]) + (f", … ({len(xs)} in all)" if len(xs) > 6 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
        if shape:
            parts.append(f"{len(shape)} shape mismatch(es): {few(shape)}")
        raise WeightsError(f"{what} does not fit the architecture — " + "; ".join(parts)
                           + ". Is it the 3-channel checkpoint of this architecture?")
    model.load_state_dict(sd, strict=False)
