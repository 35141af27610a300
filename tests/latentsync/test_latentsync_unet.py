"""The 3-D UNet against the reference manifests and golden_unet (through the user-facing loader)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.errors import WeightsError
from lipsynckit.testing import load_manifest
from lipsynckit_latentsync.loader import load_unet
from lipsynckit_latentsync.unet import DeepCacheState, UNet3DConditionModel, UNet3DConfig

from ls_testutil import golden_unet_config, golden_unet_state, npz, ref, save_official_unet


def test_released_configs_are_the_default(reference_dir: Path) -> None:
    for version in ("1.5", "1.6"):
        cfg = json.loads(ref(reference_dir, f"unet_config_{version}.json").read_text())
        assert UNet3DConfig.model_validate(cfg) == UNet3DConfig()


def test_real_size_manifest_names_shapes_and_order(reference_dir: Path) -> None:
    """Built on the meta device: no memory for the 1.27 G parameters."""
    with torch.device("meta"):
        unet = UNet3DConditionModel()
    mine = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    man = load_manifest(ref(reference_dir, "manifest_unet.json"))
    assert list(mine) == list(man)
    assert mine == man
    assert len(mine) == 1246
    assert sum(math.prod(s) for s in mine.values()) == 1_267_944_644


def test_golden_unet_through_official_container(reference_dir: Path, tmp_path: Path) -> None:
    g = npz(ref(reference_dir, "golden_unet.npz"))
    path = save_official_unet(tmp_path / "latentsync_unet.pt", golden_unet_state(reference_dir))
    unet = load_unet(path, golden_unet_config(reference_dir))
    pe = unet.state_dict()[
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    ]
    np.testing.assert_allclose(pe.numpy(), g["pe_down0"], atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 13, 4, 32, 32, generator=gen)
    audio = torch.randn(4, 50, 384, generator=gen)
    np.testing.assert_array_equal(sample.numpy(), g["sample"])
    ctx = torch.cat([torch.zeros_like(audio), audio])
    with torch.no_grad():
        out = unet(sample, 981, encoder_hidden_states=ctx)
    assert out.shape == (2, 4, 4, 32, 32)
    np.testing.assert_allclose(out.numpy(), g["out"], atol=1e-4, rtol=0)

    # DeepCache: a cached step on the same input reproduces the full pass; on new input it differs
    cache = DeepCacheState(interval=3)
    with torch.no_grad():
        first = unet(sample, 981, encoder_hidden_states=ctx, cache=cache)
        again = unet(sample, 981, encoder_hidden_states=ctx, cache=cache)
        other = unet(sample * 0.5, 901, encoder_hidden_states=ctx, cache=cache)
        other_full = unet(sample * 0.5, 901, encoder_hidden_states=ctx)
    np.testing.assert_allclose(first.numpy(), g["out"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(again.numpy(), g["out"], atol=1e-4, rtol=0)
    assert float((other - other_full).abs().max()) > 1e-2


def test_loader_reports_missing_and_unexpected_keys(reference_dir: Path, tmp_path: Path) -> None:
    state = golden_unet_state(reference_dir)
    state.pop("conv_in.bias")
    state["conv_in.extra"] = torch.zeros(1)
    path = save_official_unet(tmp_path / "bad.pt", state)
    with pytest.raises(WeightsError) as err:
        load_unet(path, golden_unet_config(reference_dir))
    text = str(err.value)
    assert "conv_in.bias" in text and "conv_in.extra" in text and str(path) in text


def test_loader_rejects_a_non_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "latentsync_unet.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_unet(p)
