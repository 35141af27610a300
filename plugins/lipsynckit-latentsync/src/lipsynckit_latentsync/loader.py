"""Loading the released LatentSync files strictly, with bounded memory.

The UNet (1.27 G parameters, 5 GB in float32) is built on the ``meta`` device and takes the
memory-mapped checkpoint tensors as its parameters, so the peak is about one copy of the weights
(file-backed, reclaimable pages) rather than two or three.

Architectures: the released ones are built in. A ``checkpoints/`` folder may carry its own, as the
official repository's ``configs/`` does: ``unet_config.yaml`` (a copy of ``configs/unet/stage2*.yaml``;
its ``model:`` section and ``data.resolution`` are read) and the diffusers ``config.json`` beside the
VAE weights (``sd-vae-ft-mse/config.json``, as the hub repository ships it).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lipsynckit.errors import WeightsError

from .options import VAE_CONFIG, LatentSyncOptions
from .unet import PositionalEncoding, UNet3DConditionModel, UNet3DConfig

if TYPE_CHECKING:
    from lipsynckit.model import ModelInfo

    from .runtime import LatentSyncRuntime

log = logging.getLogger(__name__)

COMPUTED_BUFFERS = ("pos_encoder.pe",)

CHUNK_FRAMES = 16  # data.num_frames of every released config; the runtime denoises 16-frame chunks


def _torch_load(path: Path) -> Any:
    """lipsynckit's one safe reader (never runs code from the file), memory-mapped where possible."""
    from lipsynckit.weights import load_checkpoint

    return load_checkpoint(path, mmap=True)


def read_unet_checkpoint(path: str | Path) -> tuple[Mapping[str, torch.Tensor], int | None]:
    """The state dict and ``global_step`` of a ``latentsync_unet.pt`` (``{"state_dict": ...}``); a bare
    state dict and ``module.`` prefixes (DDP saves) are accepted too."""
    p = Path(path)
    try:
        ckpt = _torch_load(p)
    except WeightsError:
        raise  # refused or unreadable: already one line naming the file
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


def read_unet_config(path: str | Path) -> tuple[UNet3DConfig, int | None]:
    """The ``model:`` section and ``data.resolution`` of an official ``configs/unet/stage2*.yaml``
    (YAML or JSON, the same structure); other sections and keys are ignored."""
    p = Path(path)

    def bad(what: str) -> WeightsError:
        return WeightsError(
            f"not a LatentSync UNet config: {what}",
            path=p,
            stage="weights",
            remedy="copy configs/unet/stage2_512.yaml (1.6) or stage2.yaml (1.5) of bytedance/LatentSync "
            "to unet_config.yaml, or remove the file to use the released architecture",
        )

    try:
        import yaml
    except ImportError as exc:
        raise WeightsError(
            "reading unet_config.yaml needs PyYAML",
            path=p,
            stage="weights",
            remedy='pip install "lipsynckit[latentsync]" (or pyyaml)',
        ) from exc
    try:
        data = yaml.safe_load(p.read_text())
    except Exception as exc:  # noqa: BLE001 - reported with the file and what to do
        raise bad(f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise bad("no 'model:' section")
    section = data.get("data") or {}
    if not isinstance(section, dict):
        raise bad("'data:' is not a mapping")
    frames = section.get("num_frames", CHUNK_FRAMES)
    if frames != CHUNK_FRAMES:
        raise bad(f"data.num_frames is {frames}; lipsynckit runs the released {CHUNK_FRAMES}-frame chunks")
    res = section.get("resolution")
    if res is not None and (not isinstance(res, int) or res < 8 or res % 8):
        raise bad(f"data.resolution must be a positive multiple of 8, got {res!r}")
    try:
        cfg = UNet3DConfig.model_validate(data["model"])
    except ValueError as exc:
        raise bad(str(exc).splitlines()[0]) from exc
    return cfg, res


def read_vae_config(weights_path: str | Path) -> dict[str, Any]:
    """The VAE architecture: the diffusers ``config.json`` beside the weights when there is one (its
    ``_``-prefixed bookkeeping keys dropped) over the built-in sd-vae-ft-mse config."""
    cfg_path = Path(weights_path).parent / "config.json"
    if not cfg_path.is_file():
        return dict(VAE_CONFIG)
    import json

    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read the VAE config ({exc.__class__.__name__})",
            path=cfg_path,
            stage="weights",
            remedy="download config.json of stabilityai/sd-vae-ft-mse again, or remove it",
        ) from exc
    if not isinstance(data, dict):
        raise WeightsError(
            "the VAE config is not a JSON object", path=cfg_path, stage="weights", remedy="remove it"
        )
    return {**VAE_CONFIG, **{k: v for k, v in data.items() if not k.startswith("_")}}


def build_runtime(
    info: ModelInfo,
    resolution: int,
    files: Mapping[str, Path],
    device: torch.device,
    opts: LatentSyncOptions,
    dtype: torch.dtype | None = None,
) -> LatentSyncRuntime:
    """Load the resolved (and, in the cache, verified) files of one LatentSync version into a runtime
    (``dtype`` None: the official choice, float16 on CUDA GPUs with compute capability > 7)."""
    from .audio import load_whisper_encoder
    from .runtime import LatentSyncRuntime

    unet_cfg = UNet3DConfig()
    if "unet_config" in files:  # the official configs/unet/stage2*.yaml, carried beside the weights
        unet_cfg, res = read_unet_config(files["unet_config"])
        if res is not None and res != resolution:
            resolution = res
            info = info.model_copy(update={"face_size": res})
        log.info("LatentSync architecture from %s (resolution %d)", files["unet_config"], resolution)
    vae_file = files.get("vae") or files["vae_bin"]
    unet = load_unet(files["unet"], unet_cfg)
    vae = load_vae(vae_file, read_vae_config(vae_file))
    encoder = load_whisper_encoder(files["whisper"])
    return LatentSyncRuntime(info, unet, vae, encoder, resolution, opts, device=device, dtype=dtype)
