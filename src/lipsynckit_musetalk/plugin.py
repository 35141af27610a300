"""MuseTalk plugin objects (entry points ``musetalk`` = v1.5 and ``musetalk_v10``).

Data only at import time (ModelInfo and weight records); torch/diffusers work happens in ``_load``.
The weight folder accepted is the official ``models/`` layout written by MuseTalk's
``download_weights.sh`` (musetalk/, musetalkV15/, sd-vae/, whisper/, face-parse-bisent/); each
file may also be passed alone or found in the lipsynckit cache.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
from pydantic import BaseModel

from lipsynckit.model import (
    LipSyncModel,
    ModelInfo,
    ModelPlugin,
    WeightFile,
    WeightSource,
    parse_model_options,
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
    ),
    sd_vae_file(
        "vae_config",
        "config.json",
        "sd-vae",
        "VAE config (built-in sd-vae-ft-mse config used when absent)",
        optional=True,
    ),
]
_WHISPER = [
    WeightFile(
        key="whisper",
        filename="pytorch_model.bin",
        relpath="whisper/pytorch_model.bin",
        sources=[
            WeightSource(hf_repo="openai/whisper-tiny", hf_filename="pytorch_model.bin", note="official")
        ],
        license="Apache-2.0",
        optional=True,
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
        optional=True,
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
        cpu_seconds_per_frame=6.8,
        license="MIT",
        weights_license=_UNET_LICENSE,
        non_commercial=False,
        weights=[*_unet(version), *_VAE, *_WHISPER, *_PARSING],
        extra="musetalk",
        requires=["diffusers", "cv2", "PIL"],
        default_detector="auto",
    )


# Alternative places inside the official folder (legacy 2024 layout names).
_ALT_RELPATHS = {
    "vae": ["sd-vae-ft-mse/diffusion_pytorch_model.bin", "sd-vae/diffusion_pytorch_model.safetensors"],
    "vae_config": ["sd-vae-ft-mse/config.json"],
    "whisper": ["whisper/model.safetensors"],
}
# Generic file names that must not be picked up from an arbitrary sub-folder.
_GENERIC = {"pytorch_model.bin", "config.json", "diffusion_pytorch_model.bin", "musetalk.json"}


class MuseTalkPlugin(ModelPlugin):
    """Loads MuseTalk from the official models/ folder, single files, or the cache."""

    options_model = MuseTalkOptions

    def __init__(self, version: str) -> None:
        self.version = version
        self.info = _info(version)

    def _find(self, wf: WeightFile, weights: str | Path | None, download: bool) -> Path | None:
        from lipsynckit.errors import WeightsError
        from lipsynckit.weights import model_cache_dir, resolve

        roots: list[Path] = []
        if weights is not None:
            p = Path(weights).expanduser()
            if p.is_file():
                if wf.key == "unet":
                    return p
                roots += [p.parent, p.parent.parent]  # models/musetalkV15/unet.pth -> models/
            elif p.is_dir():
                roots.append(p)
            else:
                raise WeightsError(
                    "weights path does not exist",
                    path=p,
                    stage="weights",
                    remedy="pass the official models/ folder or the UNet file",
                )
        roots.append(model_cache_dir(self.info.name))
        for root in roots:
            rels = [wf.relpath or wf.filename, *_ALT_RELPATHS.get(wf.key, [])]
            if wf.filename not in _GENERIC:
                rels.append(wf.filename)
            for rel in rels:
                if (root / rel).is_file():
                    return root / rel
        if download and any(s.hf_repo for s in wf.sources):
            return resolve(wf, self.info.name, None, download=True)
        if wf.optional:
            return None
        from lipsynckit.weights import where_to_get

        raise WeightsError(
            f"weight file {wf.relpath or wf.filename!r} for model {self.info.name!r} not found"
            + (f" under {weights}" if weights is not None else ""),
            stage="weights",
            remedy=where_to_get(wf, self.info.name),
        )

    def find_weights(self, weights: str | Path | None = None, download: bool = False) -> dict[str, Path]:
        """Resolve every file (official relpaths first; generic names only at their relpath).

        Whisper is required in one of its two forms (transformers folder or openai ``tiny.pt``); the
        transformers one is the one downloaded.
        """
        from lipsynckit.errors import WeightsError

        found: dict[str, Path] = {}
        for wf in self.info.weights:
            got = self._find(wf, weights, download and not wf.optional)
            if got is not None:
                found[wf.key] = got
        if "whisper" not in found and "whisper_openai" not in found:
            hf = next(wf for wf in self.info.weights if wf.key == "whisper")
            got = self._find(hf, weights, True) if download else None
            if got is None:
                raise WeightsError(
                    f"no Whisper-tiny weights for {self.info.name!r}"
                    + (f" under {weights}" if weights is not None else ""),
                    stage="weights",
                    remedy="put openai/whisper-tiny (config.json + pytorch_model.bin) or openai-whisper tiny.pt "
                    f"in models/whisper/, or run `lipsynckit weights fetch {self.info.name}` when online",
                )
            found["whisper"] = got
        return found

    def _load(
        self,
        weights: str | Path | None,
        device: torch.device,
        dtype: torch.dtype | None,
        options: dict[str, Any] | BaseModel | None,
        download: bool,
    ) -> LipSyncModel:
        from lipsynckit.weights import verify
        from lipsynckit_musetalk import networks
        from lipsynckit_musetalk.bisenet import FaceParser, load_bisenet
        from lipsynckit_musetalk.runtime import MuseTalkModel
        from lipsynckit_musetalk.whisper import load_whisper_encoder

        opts = parse_model_options(options, MuseTalkOptions, self.info.name, version=self.version)
        files = self.find_weights(weights, download=download)
        by_key = {wf.key: wf for wf in self.info.weights}
        for key, path in files.items():
            if verify(path, by_key[key]):
                log.info("verified sha256 of %s", path)
        unet = networks.load_unet(files["unet"], files.get("unet_config"))
        vae = networks.load_vae(files["vae"], files.get("vae_config"))
        wpath = files.get("whisper")
        whisper = load_whisper_encoder(wpath.parent if wpath is not None else files["whisper_openai"])
        parser = None
        if "face_parse" in files and opts.face_parsing:
            parser = FaceParser(load_bisenet(files["face_parse"]))
        model = MuseTalkModel(self.info, unet, vae, whisper, parser, opts)
        return model.to(device, dtype)


plugin = MuseTalkPlugin("v1.5")
plugin_v10 = MuseTalkPlugin("v1.0")
