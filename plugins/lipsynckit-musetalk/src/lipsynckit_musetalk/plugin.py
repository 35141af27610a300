"""MuseTalk plugin objects (entry points ``musetalk`` = v1.5 and ``musetalk_v10``).

Data only at import time (ModelInfo and weight records); torch/diffusers work happens in ``build``.
The weight folder accepted is the official ``models/`` layout written by MuseTalk's
``download_weights.sh`` (musetalk/, musetalkV15/, sd-vae/, whisper/, face-parse-bisent/; the 2024
names sd-vae-ft-mse/ and whisper/tiny.pt as ``alt_relpaths`` / an any-of group); a single file given
pulls the rest of the layout from the folders above it. All of it is :func:`lipsynckit.weights.resolve_all`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from lipsynckit.model import (
    LipSyncModel,
    ModelInfo,
    ModelPlugin,
    WeightFile,
    WeightSource,
)
from lipsynckit.nn.sd_vae import sd_vae_file
from lipsynckit_musetalk.options import MuseTalkOptions

log = logging.getLogger(__name__)

_UNET_LICENSE = (
    "MuseTalk weights: GitHub README 'available for any purpose, even commercially'; HF card says "
    "creativeml-openrail-m (ambiguous: check before commercial use)"
)
_HF = "TMElyralab/MuseTalk"

_VAE = [
    sd_vae_file(
        "vae",
        "diffusion_pytorch_model.bin",
        "sd-vae",
        "sd-vae-ft-mse AutoencoderKL (diffusers 0.4 attention names, renamed on load)",
        alt_relpaths=[
            "sd-vae-ft-mse/diffusion_pytorch_model.bin",
            "sd-vae/diffusion_pytorch_model.safetensors",
        ],
    ),
    sd_vae_file(
        "vae_config",
        "config.json",
        "sd-vae",
        "VAE config (built-in sd-vae-ft-mse config used when absent)",
        optional=True,
        alt_relpaths=["sd-vae-ft-mse/config.json"],
    ),
]
_WHISPER = [
    WeightFile(
        key="whisper",
        filename="pytorch_model.bin",
        relpath="whisper/pytorch_model.bin",
        alt_relpaths=["whisper/model.safetensors"],
        sources=[
            WeightSource(hf_repo="openai/whisper-tiny", hf_filename="pytorch_model.bin", note="official")
        ],
        license="Apache-2.0",
        any_of="whisper",  # Whisper-tiny in one of two forms; this one is downloaded
        description="whisper-tiny (transformers names); only the encoder is used",
    ),
    WeightFile(
        key="whisper_config",
        filename="config.json",
        relpath="whisper/config.json",
        sources=[WeightSource(hf_repo="openai/whisper-tiny", hf_filename="config.json", note="official")],
        license="Apache-2.0",
        optional=True,
        description="whisper-tiny config (tiny defaults used when absent)",
    ),
    WeightFile(
        key="whisper_openai",
        filename="tiny.pt",
        relpath="whisper/tiny.pt",
        sha256="65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9",
        sources=[
            WeightSource(
                url="https://openaipublic.azureedge.net/main/whisper/models/"
                "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9/tiny.pt",
                note="official openai-whisper (2024 MuseTalk v1.0 layout)",
            )
        ],
        license="MIT",
        any_of="whisper",
        description="openai-whisper tiny checkpoint; used when the transformers files are absent",
    ),
]
_PARSING = [
    WeightFile(
        key="face_parse",
        filename="79999_iter.pth",
        relpath="face-parse-bisent/79999_iter.pth",
        sources=[
            WeightSource(
                url="https://drive.google.com/uc?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812",
                note="official (zllrunning/face-parsing.PyTorch)",
            )
        ],
        license="MIT code; trained on CelebAMask-HQ (non-commercial research data)",
        optional=True,
        description="BiSeNet face parsing for the official blend mask (feathered fallback without it)",
    ),
    WeightFile(
        key="resnet18",
        filename="resnet18-5c106cde.pth",
        relpath="face-parse-bisent/resnet18-5c106cde.pth",
        sources=[
            WeightSource(url="https://download.pytorch.org/models/resnet18-5c106cde.pth", note="torchvision")
        ],
        license="BSD-3-Clause",
        optional=True,
        description="BiSeNet backbone init upstream; fully overwritten by 79999_iter.pth, not needed here",
    ),
]


def _unet(version: str) -> list[WeightFile]:
    folder, fname = ("musetalkV15", "unet.pth") if version == "v1.5" else ("musetalk", "pytorch_model.bin")
    return [
        WeightFile(
            key="unet",
            filename=fname,
            relpath=f"{folder}/{fname}",
            sources=[WeightSource(hf_repo=_HF, hf_filename=f"{folder}/{fname}", note="official")],
            license=_UNET_LICENSE,
            description=f"MuseTalk {version} UNet2DConditionModel, flat fp32 state dict (~3.4 GB)",
        ),
        WeightFile(
            key="unet_config",
            filename="musetalk.json",
            relpath=f"{folder}/musetalk.json",
            sources=[WeightSource(hf_repo=_HF, hf_filename=f"{folder}/musetalk.json", note="official")],
            license=_UNET_LICENSE,
            optional=True,
            description="UNet config (the released config is built in)",
        ),
    ]


def _info(version: str) -> ModelInfo:
    v15 = version == "v1.5"
    return ModelInfo(
        name="musetalk" if v15 else "musetalk_v10",
        display_name=f"MuseTalk {version}",
        version=version,
        description="Single-step latent inpainting of the lower face conditioned on whisper-tiny features.",
        homepage="https://github.com/TMElyralab/MuseTalk",
        face_size=256,
        audio_sample_rate=16000,
        chunk_frames=1,
        min_vram_gb=4.0,
        supports_cpu=True,
        # `--model auto`: between LatentSync and Wav2Lip; 6.8 CPU s/frame measured at batch 4 (2-core CPU)
        quality=0.8 if v15 else 0.7,
        quality_basis="an anchor of lipsynckit's quality scale (QUALITY_SCALE)",
        cpu_seconds_per_frame=6.8,
        license="MIT",
        weights_license=_UNET_LICENSE,
        non_commercial=False,
        weights=[*_unet(version), *_VAE, *_WHISPER, *_PARSING],
        requires=["diffusers", "cv2", "PIL"],
        dtypes=("float32", "float16"),  # float16 on CUDA only (the official --use_float16)
        default_detector="auto",
    )


class MuseTalkPlugin(ModelPlugin):
    """Loads MuseTalk from the official models/ folder, single files, or the cache (found by the core
    resolver from the records above); it keeps only its state-dict remaps (in ``networks``)."""

    options_model = MuseTalkOptions
    # --official: the mouth moves in pauses too; the frames cycle forward then backward (frame_list_cycle)
    official_sync = {"gate": False, "length_mode": "pingpong"}

    def __init__(self, version: str) -> None:
        self.version = version
        self.info = _info(version)

    def option_defaults(self) -> dict[str, Any]:
        return {"version": self.version}

    def build(
        self,
        files: dict[str, Path],
        options: MuseTalkOptions,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> LipSyncModel:
        from lipsynckit_musetalk import networks
        from lipsynckit_musetalk.bisenet import FaceParser, load_bisenet
        from lipsynckit_musetalk.runtime import MuseTalkModel
        from lipsynckit_musetalk.whisper import load_whisper_encoder

        unet = networks.load_unet(files["unet"], files.get("unet_config"))
        vae = networks.load_vae(files["vae"], files.get("vae_config"))
        wpath = files.get("whisper")
        whisper = load_whisper_encoder(wpath.parent if wpath is not None else files["whisper_openai"])
        parser = None
        if "face_parse" in files and options.face_parsing:
            parser = FaceParser(load_bisenet(files["face_parse"]))
        model = MuseTalkModel(self.info, unet, vae, whisper, parser, options)
        return model.to(device, dtype)


plugin = MuseTalkPlugin("v1.5")
plugin_v10 = MuseTalkPlugin("v1.0")
