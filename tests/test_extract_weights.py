"""Weights resolution and offline loading: safetensors, torch (weights_only), URL, errors."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402

from baselens.extract.networks import Network  # noqa: E402
from baselens.extract.weights import (  # noqa: E402
    WeightsError,
    download,
    load_state_dict,
    parse_weights,
)


def _sites(n=2, c=5, size=32):
    return np.random.default_rng(0).gamma(2.0, 800.0, size=(n, c, size, size)).astype(np.float32)


def _rgb_state(arch, seed=7, size=(32, 32)):
    """State dict of the RGB network as a user's checkpoint (seeded random 'pretrained')."""
    m = Network(arch, seed=seed, channels="per_channel").model(3, size)
    return {k: v.clone().contiguous() for k, v in m.state_dict().items()}


def test_parse_weights(tmp_path):
    assert parse_weights("random").kind == "random"
    assert parse_weights("pretrained", "tv2_in1k") == parse_weights("timm:tv2_in1k")
    assert parse_weights("augreg_in21k_ft_in1k").kind == "timm"
    assert parse_weights("hf-hub:timm/resnet50.a1_in1k").kind == "hub"
    assert parse_weights("https://example.org/w.safetensors").kind == "url"
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"")
    assert parse_weights(str(f)).kind == "file"
    with pytest.raises(WeightsError, match="does not exist"):
        parse_weights(str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsError, match="no default pretrained tag"):
        parse_weights("pretrained", None)


@pytest.mark.parametrize("arch", ["resnet18", "vit_small_patch16_224", "alexnet"])
def test_local_safetensors_and_torch_checkpoint_roundtrip(tmp_path, arch):
    sd = _rgb_state(arch)
    st, pt = tmp_path / "w.safetensors", tmp_path / "w.pt"
    save_file(sd, str(st))
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, pt)  # wrapped + DDP prefix
    x = _sites()
    kw = dict(geometry="native", layers=None)
    ref = Network(arch, weights="random", seed=7, **kw).embed(x)  # same weights, built directly
    for path in (st, pt):
        got = Network(arch, weights=str(path), seed=999, **kw).embed(x)  # seed must not matter
        for layer in ref:
            np.testing.assert_allclose(got[layer], ref[layer], rtol=1e-5, atol=1e-6)


def test_loaded_weights_are_expanded_after_loading(tmp_path):
    sd = _rgb_state("vit_small_patch16_224")
    save_file(sd, str(tmp_path / "w.safetensors"))
    m = Network("vit_small_patch16_224", weights=str(tmp_path / "w.safetensors")).model(6, (32, 32))
    w = m.patch_embed.proj.weight
    for c in range(6):
        torch.testing.assert_close(w[:, c], sd["patch_embed.proj.weight"][:, c % 3])


def test_vit_checkpoint_at_other_resolution_is_resampled(tmp_path):
    sd = _rgb_state("vit_small_patch16_224", size=(224, 224))
    save_file(sd, str(tmp_path / "w224.safetensors"))
    out = Network("vit_small_patch16_224", weights=str(tmp_path / "w224.safetensors"),
                  geometry="native").embed(_sites(1, 5, 64))
    assert out["block12"].shape == (1, 384) and np.isfinite(out["block12"]).all()


def test_pickle_with_objects_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": functools.partial(print, "x")}, p)
    with pytest.raises(WeightsError, match="weights_only"):
        load_state_dict(p)


def test_torch_pickle_named_safetensors_is_read(tmp_path):
    p = tmp_path / "model.safetensors"  # what recursionpharma/OpenPhenom ships
    torch.save({"state_dict": {"a": torch.ones(2)}}, p)
    assert torch.equal(load_state_dict(p)["a"], torch.ones(2))


def test_wrong_checkpoint_names_keys(tmp_path):
    save_file(_rgb_state("resnet18"), str(tmp_path / "r18.safetensors"))
    net = Network("resnet50", weights=str(tmp_path / "r18.safetensors"))
    with pytest.raises(WeightsError, match=r"missing key|unexpected key|shape mismatch"):
        net.embed(_sites(1))


def test_offline_timm_fetch_gives_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = Network("resnet18", weights="pretrained")
    with pytest.raises(WeightsError, match="BASELENS_OFFLINE.*local .safetensors"):
        net.embed(_sites(1))


def test_download_from_local_http_server(tmp_path):
    sd = _rgb_state("resnet18")
    served = tmp_path / "srv"
    served.mkdir()
    save_file(sd, str(served / "r18.safetensors"))
    digest = hashlib.sha256((served / "r18.safetensors").read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/r18.safetensors"
        cache = tmp_path / "cache"
        path = download(url, sha256=digest, dest_dir=cache)
        assert load_state_dict(path).keys() == sd.keys()
        with pytest.raises(WeightsError, match="sha256"):
            download(url, sha256="0" * 64, dest_dir=tmp_path / "cache2")
        assert not list((tmp_path / "cache2").glob("*"))  # nothing half-written kept
        import os
        os.environ["BASELENS_CACHE"] = str(cache)
        try:
            got = Network("resnet18", weights=url, weights_sha256=digest, geometry="native").embed(_sites(1))
        finally:
            del os.environ["BASELENS_CACHE"]
        ref = Network("resnet18", weights="random", seed=7, geometry="native").embed(_sites(1))
        np.testing.assert_allclose(got["layer4"], ref["layer4"], rtol=1e-5, atol=1e-6)
    finally:
        server.shutdown()
