"""LatentSync plugin objects: ``latentsync`` (1.6, 512 px, default) and ``latentsync_15`` (1.5, 256 px).

Data only at import time (ModelInfo and weight records); torch/diffusers work happens in ``build``.
``--weights DIR`` accepts the official ``checkpoints/`` layout (``latentsync_unet.pt``,
``whisper/tiny.pt``) plus the VAE (``sd-vae-ft-mse/``, which the official code fetches from the hub
itself); each file may also sit in the lipsynckit cache, or be downloaded when ``download=True``.
An optional ``unet_config.yaml`` (a copy of the official ``configs/unet/stage2*.yaml``) and the VAE's
``config.json`` carry a non-released architecture (see ``loader``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from lipsynckit.model import LipSyncModel, ModelInfo, ModelPlugin, WeightFile, WeightSource
from lipsynckit.nn.sd_vae import sd_vae_file

from .options import LatentSyncOptions

_WEIGHTS_LICENSE = (
    "LatentSync checkpoints: licence on the Hugging Face model card of ByteDance/LatentSync-1.5 / -1.6 "
    "(openrail++ with use restrictions when this was written): read it before use"
)


def _unet(version: str) -> WeightFile:
    repo = f"ByteDance/LatentSync-{version}"
    return WeightFile(
        key="unet",
        filename="latentsync_unet.pt",
        relpath="latentsync_unet.pt",
        sources=[WeightSource(hf_repo=repo, hf_filename="latentsync_unet.pt", note="official")],
        license=_WEIGHTS_LICENSE,
        description=f"LatentSync {version} 3-D UNet ({{'state_dict', 'global_step'}}, 1.27 G parameters)",
    )


def _whisper(version: str) -> WeightFile:
    return WeightFile(
        key="whisper",
        filename="tiny.pt",
        relpath="whisper/tiny.pt",
        sources=[
            WeightSource(
                hf_repo=f"ByteDance/LatentSync-{version}", hf_filename="whisper/tiny.pt", note="official"
            ),
            WeightSource(
                url="https://openaipublic.azureedge.net/main/whisper/models/"
                "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9/tiny.pt",
                note="openai-whisper release (same format; its URL carries its sha256)",
            ),
        ],
        license="MIT (openai-whisper)",
        description="openai-whisper tiny checkpoint; only the audio encoder is used",
    )


_VAE = [
    sd_vae_file(
        "vae",
        "diffusion_pytorch_model.safetensors",
        "sd-vae-ft-mse",
        "sd-vae-ft-mse AutoencoderKL (diffusers format); the .bin twin is accepted too",
        any_of="vae",
    ),
    sd_vae_file(
        "vae_bin",
        "diffusion_pytorch_model.bin",
        "sd-vae-ft-mse",
        "sd-vae-ft-mse AutoencoderKL as a torch pickle (used when the safetensors file is absent)",
        any_of="vae",
    ),
]


def _unet_config(version: str) -> WeightFile:
    stage = "stage2_512.yaml" if version == "1.6" else "stage2.yaml"
    return WeightFile(
        key="unet_config",
        filename="unet_config.yaml",
        relpath="unet_config.yaml",
        sources=[
            WeightSource(
                url=f"https://raw.githubusercontent.com/bytedance/LatentSync/main/configs/unet/{stage}",
                note="official configs/ (the released architecture is built in)",
            )
        ],
        license="Apache-2.0 (bytedance/LatentSync code)",
        optional=True,
        description=f"UNet architecture and face resolution: a copy of configs/unet/{stage} "
        "(model: and data.resolution are read); without it the released config is used",
    )


def _info(name: str, version: str, resolution: int, vram: float) -> ModelInfo:
    return ModelInfo(
        name=name,
        display_name=f"LatentSync {version}",
        version=version,
        description=f"audio-conditioned latent diffusion lip-sync (ByteDance), {resolution} px faces",
        homepage="https://github.com/bytedance/LatentSync",
        face_size=resolution,
        audio_sample_rate=16000,
        chunk_frames=16,
        min_vram_gb=vram,
        supports_cpu=True,
        # `--model auto`: the newest diffusion model ranks first; CPU cost at 20 steps, 2-core CPU
        # (1.5 measured 17.6 CPU s/frame at 2 steps; 1.6 has 4x the latent pixels)
        quality=0.9 if resolution >= 512 else 0.85,
        quality_basis="an anchor of lipsynckit's quality scale (QUALITY_SCALE)",
        cpu_seconds_per_frame=176.0 if resolution < 512 else 700.0,
        license="Apache-2.0",
        weights_license=_WEIGHTS_LICENSE,
        non_commercial=False,
        weights=[_unet(version), _whisper(version), *_VAE, _unet_config(version)],
        requires=["diffusers", "safetensors"],
        dtypes=("float32", "float16"),
        default_detector="insightface",
        needs_weights=True,
    )


class LatentSyncPlugin(ModelPlugin):
    """Loads one LatentSync version (the UNet config is the same; the face resolution differs)."""

    options_model = LatentSyncOptions
    # --official: the mouth moves in pauses too; the video is looped forward then backward (loop_video)
    official_sync = {"gate": False, "length_mode": "pingpong"}
    #: why ``lsk.stream`` refuses it (read by lipsynckit.streaming before anything loads)
    stream_refusal = (
        "LatentSync denoises 16-frame chunks (640 ms of video, plus audio context) over 20 DDIM steps, "
        "so its first frame needs over 0.7 s of audio before it can even start and each chunk takes "
        "seconds on a GPU"
    )

    def __init__(self, name: str, version: str, resolution: int, vram: float) -> None:
        self.info = _info(name, version, resolution, vram)
        self.resolution = resolution

    def build(
        self,
        files: dict[str, Path],
        options: LatentSyncOptions,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> LipSyncModel:
        from .loader import build_runtime

        return build_runtime(self.info, self.resolution, files, device, options, dtype)


plugin = LatentSyncPlugin("latentsync", "1.6", 512, 18.0)
plugin_15 = LatentSyncPlugin("latentsync_15", "1.5", 256, 8.0)
