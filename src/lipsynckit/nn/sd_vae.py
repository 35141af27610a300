"""The stabilityai/sd-vae-ft-mse ``AutoencoderKL`` architecture, as a plain dict.

:func:`load_sd_vae` is the one loader of its weights (MuseTalk, LatentSync). The published
``config.json`` has no ``scaling_factor`` key (diffusers then uses 0.18215); a plugin
that wants the key spelled out adds :data:`SD_VAE_SCALING_FACTOR` to its copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the records and config are read at plugin discovery, without torch
    import torch

SD_VAE_SCALING_FACTOR = 0.18215

SD_VAE_FT_MSE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_old_vae_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers 0.4 attention names (query/key/value/proj_attn) → to_q/to_k/to_v/to_out.0; the 1×1
    convolution projections of even older saves become linear weights."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _OLD_ATTENTION:
            parts[-2] = _OLD_ATTENTION[parts[-2]]
            k = ".".join(parts)
            if v.ndim == 4 and v.shape[-1] == 1 and v.shape[-2] == 1:
                v = v[:, :, 0, 0]
        out[k] = v
    return out


def load_sd_vae(path: str | Path, config: str | Path | Mapping[str, Any] | None = None) -> Any:
    """The one sd-vae-ft-mse loader: a diffusers ``AutoencoderKL`` from a folder (config.json +
    diffusion_pytorch_model.bin/.safetensors) or a single file, strictly.

    Accepts training containers (``state_dict``, ``module.``), old attention names and 1×1 convs.
    Built on the ``meta`` device and given the (memory-mapped) checkpoint tensors, so the weights are
    never held twice. ``config``: a path or dict; default the config.json beside the file, else
    :data:`SD_VAE_FT_MSE_CONFIG`.
    """
    import torch
    from diffusers import AutoencoderKL

    from lipsynckit.errors import WeightsError
    from lipsynckit.weights import load_strict, read_state_dict

    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")]
        files = [f for f in found if f.is_file()]
        if not files:
            raise WeightsError(
                "no VAE weights in this folder",
                path=p,
                stage="weights",
                remedy="download stabilityai/sd-vae-ft-mse config.json + diffusion_pytorch_model.safetensors into it",
            )
        p = files[0]
    if config is None:
        side = p.parent / "config.json"
        config = side if side.is_file() else SD_VAE_FT_MSE_CONFIG
    if isinstance(config, (str, Path)):
        try:
            cfg = dict(json.loads(Path(config).read_text()))
        except (OSError, ValueError) as exc:
            raise WeightsError(f"cannot read the VAE config: {exc}", path=config, stage="weights") from exc
    else:
        cfg = dict(config)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    load_strict(vae, rename_old_vae_keys(read_state_dict(p)), path=p, what="sd-vae-ft-mse VAE", assign=True)
    return vae.eval()


def sd_vae_file(key: str, filename: str, folder: str, description: str, **fields: Any) -> Any:
    """The ``WeightFile`` record of one file of stabilityai/sd-vae-ft-mse (MIT) inside ``folder`` of a
    plugin's official layout (``fields``: ``optional``, ``any_of``, ...)."""
    from lipsynckit.model_info import WeightFile, WeightSource

    return WeightFile(
        key=key,
        filename=filename,
        relpath=f"{folder}/{filename}",
        sources=[WeightSource(hf_repo="stabilityai/sd-vae-ft-mse", hf_filename=filename, note="official")],
        license="MIT",
        description=description,
        **fields,
    )
