"""OpenPhenom adapter: re-implemented encoder, local snapshot loading, patch-token mean."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402

from baselens.extract import SiteBatch, get_extractor  # noqa: E402
from baselens.extract.openphenom import (  # noqa: E402
    LAYERS,
    OpenPhenom,
    build_encoder,
    sincos_pos_embed,
)
from baselens.extract.weights import WeightsError  # noqa: E402


def _sites(n=2, c=6, size=64, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 800.0, size=(n, c, size, size)).astype(np.float32)


def _snapshot(tmp_path, *, pickle=False, seed=3):
    """A snapshot folder shaped like recursionpharma/OpenPhenom: config.json + model.safetensors
    with ``encoder.vit_backbone.*`` keys (plus decoder keys that must be ignored)."""
    torch.manual_seed(seed)
    enc = build_encoder(256)
    sd = {f"encoder.vit_backbone.{k}": v.contiguous() for k, v in enc.state_dict().items()}
    sd["decoder.mask_token"] = torch.zeros(1, 1, 256)
    d = tmp_path / "OpenPhenom"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "MAE", "encoder": {"channel_agnostic": True,
                                                                                "max_in_chans": 11}}))
    if pickle:  # the HF repo's file is a torch.save pickle named model.safetensors
        torch.save({"state_dict": sd}, d / "model.safetensors")
    else:
        save_file(sd, str(d / "model.safetensors"))
    return d, enc


def test_architecture_matches_published_encoder():
    enc = build_encoder(256)
    sd = enc.state_dict()
    assert sd["patch_embed.proj.weight"].shape == (384, 1, 16, 16)  # one projection for all channels
    assert sd["pos_embed"].shape == (1, 1 + 11 * 256, 384)  # max_in_chans = 11, zero cls slot
    assert torch.equal(sd["pos_embed"][0, 0], torch.zeros(384))
    assert "blocks.0.attn.q_norm.weight" in sd or any("q_norm" in k for k in sd)  # qk_norm
    assert not any(k.endswith("qkv.bias") for k in sd)  # qkv_bias=False
    assert len(enc.blocks) == 12
    pe = sincos_pos_embed(384, 16, 2)
    torch.testing.assert_close(pe[:, 1:257], pe[:, 257:])  # same positions for each channel


@pytest.mark.parametrize("pickle", [False, True])
def test_local_snapshot_roundtrip_and_patch_token_mean(tmp_path, pickle):
    d, enc = _snapshot(tmp_path, pickle=pickle)
    x = _sites(2, 6, 64)
    op = OpenPhenom(weights=str(d), input_size=64, n_threads=1)
    out = op(SiteBatch(x, [f"c{i}" for i in range(6)], pd.DataFrame(index=range(2))))
    assert list(out) == list(LAYERS)
    assert all(df.shape == (2, 384) and np.isfinite(df.to_numpy()).all() for df in out.values())
    # reference: the model card's predict(): input_norm, forward_features, mean of patch tokens
    enc.eval()
    from baselens.extract.networks import normalize_intensity, percentile_limits

    lims = [percentile_limits(s, (0.05, 99.95)) for s in x]
    xs = normalize_intensity(x, np.stack([a for a, _ in lims]), np.stack([b for _, b in lims])) * 255.0
    with torch.inference_mode():
        t = torch.nn.functional.instance_norm(torch.from_numpy(xs) / 255.0)
        z = enc.norm(enc.blocks(enc.tokens(t)))
        ref = z[:, 1:].mean(1).double().numpy()
    np.testing.assert_allclose(out["block12"].to_numpy(), ref, rtol=1e-4, atol=1e-5)
    # weights really loaded: a differently seeded random model differs
    other = OpenPhenom(weights="random", seed=11, input_size=64, layers=["block12"]).embed(x)["block12"]
    assert not np.allclose(other, ref)


def test_channel_count_and_channelwise(tmp_path):
    d, _ = _snapshot(tmp_path)
    x5 = _sites(1, 5, 64)
    cw = OpenPhenom(weights=str(d), input_size=64, channelwise=True, layers=["block6"]).embed(x5)
    assert cw["block6"].shape == (1, 5 * 384)
    assert OpenPhenom(weights=str(d), input_size=64, layers=["block3"]).embed(x5)["block3"].shape == (1, 384)


def test_registry_and_errors(tmp_path):
    assert get_extractor("openphenom", weights="random").layers == list(LAYERS)
    with pytest.raises(WeightsError, match="do not exist"):
        OpenPhenom(weights=str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({"encoder.vit_backbone.cls_token": torch.zeros(1, 1, 384)}, str(bad / "model.safetensors"))
    with pytest.raises(WeightsError, match="missing key"):
        OpenPhenom(weights=str(bad)).embed(_sites(1, 6, 32))
