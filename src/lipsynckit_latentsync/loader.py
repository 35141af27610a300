"""Loading the released LatentSync files strictly, with bounded memory.

The UNet (1.27 G parameters, 5 GB in float32) is built on the ``meta`` device and takes the
memory-mapped checkpoint tensors as its parameters, so the peak is about one copy of the weights
(file-backed, reclaimable pages) rather than two or three.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel

from lipsynckit.errors import WeightsError

from .options import VAE_CONFIG, LatentSyncOptions
from .unet import PositionalEncoding, UNet3DConditionModel, UNet3DConfig

if TYPE_CHECKING:
    from lipsynckit.model import ModelInfo

    from .runtime import LatentSyncRuntime

log = logging.getLogger(__name__)

COMPUTED_BUFFERS = ("pos_encoder.pe",)

# The architecture configs the plugin builds (the released ``stage2*.yaml`` model section and the
# sd-vae-ft-mse config). Module-level so that tests can load small stand-ins through the same path.
UNET_CONFIG: UNet3DConfig = UNet3DConfig()
VAE_ARCH: dict[str, Any] = dict(VAE_CONFIG)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) format


def read_unet_checkpoint(path: str | Path) -> tuple[Mapping[str, torch.Tensor], int | None]:
    """The state dict and ``global_step`` of a ``latentsync_unet.pt`` (``{"state_dict": ...}``); a bare
    state dict and ``module.`` prefixes (DDP saves) are accepted too."""
    p = Path(path)
    try:
        ckpt = _torch_load(p)
    except Exception as exc:  # noqa: BLE001 - reported with the file and what to do
        raise WeightsError(
            f"cannot read the LatentSync UNet checkpoint ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            path=p,
            stage="weights",
            remedy="download latentsync_unet.pt again from ByteDance/LatentSync-1.5 or -1.6 on Hugging Face",
        ) from exc
    if not isinstance(ckpt, dict):
        raise WeightsError(
            "not a LatentSync UNet checkpoint (no state dict inside)",
            path=p,
            stage="weights",
            remedy="pass latentsync_unet.pt from the official checkpoints/ folder",
        )
    step = ckpt.get("global_step") if "state_dict" in ckpt else None
    sd = ckpt["state_dict"] if "state_dict" in ckpt else ckpt
    if any(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd, (int(step) if step is not None else None)


def load_unet(path: str | Path, config: UNet3DConfig | dict[str, Any] | None = None) -> UNet3DConditionModel:
    """Build the UNet from its config and load the released checkpoint strictly.

    Every missing or unexpected key is reported; only the computed ``*.pos_encoder.pe`` buffers may
    be absent (they are recomputed). Shape mismatches are errors. The module is built on the
    ``meta`` device and takes the (memory-mapped) checkpoint tensors as its own (``assign=True``),
    so no second copy of the 5 GB of weights is ever made.
    """
    from lipsynckit.weights import load_strict

    with torch.device("meta"):
        unet = UNet3DConditionModel(config)
    sd, step = read_unet_checkpoint(path)
    with warnings.catch_warnings():  # the check's copy into meta tensors is a deliberate no-op
        warnings.filterwarnings("ignore", message=".*meta parameter.*")
        load_strict(unet, sd, path=path, ignore_missing=COMPUTED_BUFFERS, what="LatentSync UNet")
    full = dict(sd)
    for name, mod in unet.named_modules():
        if isinstance(mod, PositionalEncoding) and f"{name}.pe" not in full:
            full[f"{name}.pe"] = PositionalEncoding.compute(mod.d_model, mod.max_len)
    unet.load_state_dict(full, strict=True, assign=True)
    del sd, full
    log.info("loaded LatentSync UNet from %s%s", path, f" (global_step {step})" if step is not None else "")
    return unet.eval()


def load_vae(path: str | Path, config: dict[str, Any] | None = None) -> Any:
    """sd-vae-ft-mse through the one shared loader (:func:`lipsynckit.nn.sd_vae.load_sd_vae`)."""
    from lipsynckit.nn.sd_vae import load_sd_vae

    return load_sd_vae(path, dict(config or VAE_CONFIG))


def parse_options(
    options: dict[str, Any] | BaseModel | None, model: str, dtype: torch.dtype | None
) -> LatentSyncOptions:
    """The run's options (before any weights are read); an explicit ``dtype`` sets ``fp16``."""
    from lipsynckit.model import parse_model_options

    opts = parse_model_options(options, LatentSyncOptions, model)
    if dtype is not None:
        opts = opts.model_copy(update={"fp16": dtype == torch.float16})
    return opts


def build_runtime(
    info: ModelInfo,
    resolution: int,
    files: Mapping[str, Path],
    device: torch.device,
    opts: LatentSyncOptions,
) -> LatentSyncRuntime:
    """Load the resolved (and, in the cache, verified) files of one LatentSync version into a runtime."""
    from .audio import load_whisper_encoder
    from .runtime import LatentSyncRuntime

    unet = load_unet(files["unet"], UNET_CONFIG)
    vae = load_vae(files.get("vae") or files["vae_bin"], VAE_ARCH)
    encoder = load_whisper_encoder(files["whisper"])
    return LatentSyncRuntime(info, unet, vae, encoder, resolution, opts, device=device)
