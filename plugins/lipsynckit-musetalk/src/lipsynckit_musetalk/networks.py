"""Building and loading MuseTalk's UNet and the sd-vae-ft-mse VAE from the official containers.

The UNet is a diffusers ``UNet2DConditionModel`` built from the released ``musetalk.json`` and
loaded strictly from a flat ``torch.save``d state dict; the VAE is a diffusers ``AutoencoderKL``
from a diffusers folder whose ``.bin`` still uses the 0.4-era attention names. Models are built on
the meta device and the checkpoint tensors are assigned (memory-mapped where possible), so the
3.4 GB UNet is never held twice in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lipsynckit.errors import WeightsError
from lipsynckit.nn.sd_vae import SD_VAE_SCALING_FACTOR, load_sd_vae
from lipsynckit.weights import load_strict, read_state_dict

log = logging.getLogger(__name__)

DEFAULT_SCALING_FACTOR = SD_VAE_SCALING_FACTOR

# The released musetalk.json (identical for v1.0 and v1.5); used when no json sits next to the weights.
UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}


def _config_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def read_json(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read config: {exc}", path=path, stage="weights") from exc
    if not isinstance(data, dict):
        raise WeightsError("config is not a JSON object", path=path, stage="weights")
    return data


def build_unet(config: Mapping[str, Any] | None = None, meta: bool = True) -> nn.Module:
    """``UNet2DConditionModel`` from a musetalk.json dict (released config by default)."""
    from diffusers import UNet2DConditionModel

    cfg = _config_kwargs(config or UNET_CONFIG)
    if meta:
        with torch.device("meta"):
            return UNet2DConditionModel.from_config(cfg)
    return UNet2DConditionModel.from_config(cfg)


def load_unet(weights: str | Path, config: str | Path | Mapping[str, Any] | None = None) -> nn.Module:
    """Load a MuseTalk UNet (``musetalk/pytorch_model.bin`` or ``musetalkV15/unet.pth``) strictly.

    ``config``: a musetalk.json path or dict; default the json next to the weights, else the
    released config.
    """
    p = Path(weights)
    if config is None:
        side = p.parent / "musetalk.json"
        config = side if side.is_file() else None
    cfg = read_json(config) if isinstance(config, (str, Path)) else config
    unet = build_unet(cfg)
    load_strict(unet, read_state_dict(p), path=p, what="MuseTalk UNet", assign=True)
    return unet.eval()


def load_vae(path: str | Path, config: str | Path | Mapping[str, Any] | None = None) -> nn.Module:
    """sd-vae-ft-mse through the one shared loader (:func:`lipsynckit.nn.sd_vae.load_sd_vae`)."""
    vae: nn.Module = load_sd_vae(path, config)
    return vae


def scaling_factor(vae: nn.Module) -> float:
    cfg = getattr(vae, "config", None)
    value = getattr(cfg, "scaling_factor", None) if cfg is not None else None
    return float(value) if value is not None else DEFAULT_SCALING_FACTOR


def crops_to_vae_input(crops_bgr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 256, 256, 3) BGR uint8 -> (masked, reference) VAE inputs in [-1, 1], (B, 3, 256, 256).

    Official arithmetic: /255 in float64, cast to float32, lower half zeroed in pixel space, then
    Normalize(0.5, 0.5) (the masked half becomes exactly -1).
    """
    rgb = np.ascontiguousarray(crops_bgr[..., ::-1])
    x = torch.from_numpy((rgb / 255.0).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    h = x.shape[-2]
    keep = torch.zeros(h, x.shape[-1])
    keep[: h // 2] = 1
    masked = ((x * (keep > 0.5)) - 0.5) / 0.5
    ref = (x - 0.5) / 0.5
    return masked, ref


class Posterior:
    """Mean and std of the VAE posterior of a batch (what ``latent_dist`` holds)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean
        self.std = std


@torch.no_grad()
def vae_posterior(vae: nn.Module, x: torch.Tensor) -> Posterior:
    p = next(vae.parameters())
    dist = vae.encode(x.to(p.device, p.dtype)).latent_dist  # type: ignore[operator]
    return Posterior(dist.mean, dist.std)


def sample_latent(
    post: Posterior,
    factor: float,
    sampling: str = "sample",
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """``factor * (mean + std * eps)`` (official ``sample()``) or ``factor * mean`` (``mode``)."""
    if sampling == "mode":
        return factor * post.mean
    if eps is None:
        eps = torch.randn(post.mean.shape, generator=generator, device="cpu", dtype=torch.float32)
    eps = eps.to(post.mean.device, post.mean.dtype)
    return factor * (post.mean + post.std * eps)


@torch.no_grad()
def decode_latents_on_device(vae: nn.Module, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """UNet output -> (decoded float before clamp, uint8 RGB (B, H, W, 3)), both on the VAE's device.

    The official scaling multiplies by the python reciprocal of the factor (dividing flips a few
    pixels); the official ``(x * 255).round()`` runs in float32 after the permute, as on the CPU.
    """
    p = next(vae.parameters())
    z = (1 / scaling_factor(vae)) * latents.to(p.device, p.dtype)
    decoded = vae.decode(z).sample  # type: ignore[operator]
    img = (decoded / 2 + 0.5).clamp(0, 1)
    rgb = (img.detach().permute(0, 2, 3, 1).float() * 255).round().to(torch.uint8)
    return decoded, rgb


def decode_latents(vae: nn.Module, latents: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """UNet output -> (decoded float before clamp, uint8 RGB (B, H, W, 3) on the host)."""
    decoded, rgb = decode_latents_on_device(vae, latents)
    return decoded, rgb.cpu().numpy()
