"""Entry points ``wav2lip`` and ``wav2lip_gan``: what the models are, in data.

Imports nothing heavy: the network and runtime are imported in :meth:`Wav2LipPlugin.build`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from lipsynckit.model import (
    LipSyncModel,
    ModelInfo,
    ModelPlugin,
    WeightFile,
    WeightSource,
)
from lipsynckit_wav2lip.options import Wav2LipOptions

log = logging.getLogger(__name__)

LICENSE_TEXT = "research/non-commercial only (trained on LRS2; commercial licences via sync.so)"
_SHAREPOINT = "https://iiitaphyd-my.sharepoint.com/:u:/g/personal/radrabha_m_research_iiit_ac_in/"
_DRIVE_FOLDER = "https://drive.google.com/drive/folders/153HLrqlBNxzZcHi17PEvP09kkAfzRshM"
_DRIVE_GAN = "https://drive.google.com/file/d/15G3U08c8xsCkOqQxE38Z2XXDnPcOptNk"

S3FD_WEIGHTS = WeightFile(
    key="detector",
    filename="s3fd.pth",
    sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
    size_bytes=89_843_225,
    sources=[
        WeightSource(
            url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
            note="official (face-alignment)",
        ),
        WeightSource(
            hf_repo="camenduru/Wav2Lip", hf_filename="checkpoints/s3fd-619a316812.pth", note="mirror"
        ),
        WeightSource(hf_repo="Kedreamix/Linly-Talker", hf_filename="checkpoints/s3fd.pth", note="mirror"),
    ],
    license="BSD-3-Clause (face-alignment)",
    description="S3FD face detector used by official Wav2Lip inference (also named s3fd-619a316812.pth)",
    optional=True,
)

WAV2LIP_WEIGHTS = WeightFile(
    key="generator",
    filename="wav2lip.pth",
    sha256=None,  # no published digest; record it on first download
    size_bytes=None,
    sources=[
        WeightSource(
            url=_SHAREPOINT + "Eb3LEzbfuKlJiR600lQWRxgBIY27JZg80f7V9jtMfbNDaQ",
            note="official (expired links are common)",
        ),
        WeightSource(
            url=_DRIVE_FOLDER, note="official, current README: TorchScript Wav2Lip-SD-NOGAN.pt, also accepted"
        ),
        WeightSource(hf_repo="rippertnt/wav2lip", hf_filename="checkpoints/wav2lip.pth", note="mirror"),
        WeightSource(hf_repo="numz/wav2lip_studio", hf_filename="Wav2lip/wav2lip.pth", note="mirror"),
        WeightSource(hf_repo="Nekochu/Wav2Lip", hf_filename="wav2lip.pth", note="mirror"),
    ],
    license=LICENSE_TEXT,
    non_commercial=True,
    description="Wav2Lip generator trained without the visual-quality GAN (best lip sync)",
    any_of="generator",
)

WAV2LIP_GAN_WEIGHTS = WeightFile(
    key="generator",
    filename="wav2lip_gan.pth",
    sha256="ca9ab7b7b812c0e80a6e70a5977c545a1e8a365a6c49d5e533023c034d7ac3d8",
    size_bytes=435_801_865,
    sources=[
        WeightSource(
            url=_SHAREPOINT + "EdjI7bZlgApMqsVoEUUXpLsBxqXbn5z8VTmoxp55YNDcIA",
            note="official (expired links are common)",
        ),
        WeightSource(
            url=_DRIVE_GAN, note="official, current README: TorchScript Wav2Lip-SD-GAN.pt, also accepted"
        ),
        WeightSource(hf_repo="camenduru/Wav2Lip", hf_filename="checkpoints/wav2lip_gan.pth", note="mirror"),
        WeightSource(hf_repo="numz/wav2lip_studio", hf_filename="Wav2lip/wav2lip_gan.pth", note="mirror"),
        WeightSource(
            hf_repo="Kedreamix/Linly-Talker", hf_filename="checkpoints/wav2lip_gan.pth", note="mirror"
        ),
        WeightSource(hf_repo="Cong-HGMedia/wav2lip", hf_filename="wav2lip_gan.pth", note="mirror"),
    ],
    license=LICENSE_TEXT,
    non_commercial=True,
    description="Wav2Lip generator trained with the visual-quality GAN (sharper, slightly worse sync)",
    any_of="generator",
)


def _torchscript_record(name: str, url: str, what: str) -> WeightFile:
    return WeightFile(
        key="generator_torchscript",
        filename=name,
        sources=[WeightSource(url=url, note="official, current README")],
        license=LICENSE_TEXT,
        non_commercial=True,
        description=f"{what} as the TorchScript archive the current README links (used when the .pth is absent)",
        any_of="generator",
    )


def _info(
    name: str, display: str, generator: WeightFile, torchscript: WeightFile, description: str
) -> ModelInfo:
    return ModelInfo(
        name=name,
        display_name=display,
        version="2020 (Rudrabha/Wav2Lip 5c90fa9b)",
        description=description,
        homepage="https://github.com/Rudrabha/Wav2Lip",
        face_size=96,
        audio_sample_rate=16000,
        chunk_frames=1,
        min_vram_gb=1.0,
        supports_cpu=True,
        # `--model auto`: strong sync, blurry 96 px mouth; the GAN variant looks better. 24.9 fps at batch 16
        quality=0.6 if "gan" in name else 0.5,
        quality_basis="an anchor of lipsynckit's quality scale (QUALITY_SCALE)",
        cpu_seconds_per_frame=0.04,
        license="none stated (README: non-commercial only)",
        weights_license=LICENSE_TEXT,
        non_commercial=True,
        weights=[generator, torchscript, S3FD_WEIGHTS],
        requires=["cv2"],
        dtypes=("float32", "float16", "bfloat16", "int8"),  # fp16/bf16: autocast; int8: runtime="onnx" only
        default_detector="s3fd",
        needs_weights=True,
    )


WAV2LIP_INFO = _info(
    "wav2lip",
    "Wav2Lip",
    WAV2LIP_WEIGHTS,
    _torchscript_record("Wav2Lip-SD-NOGAN.pt", _DRIVE_FOLDER, "wav2lip.pth"),
    "Wav2Lip (2020) 96x96 lower-face generator, best lip-sync accuracy; official inference reproduced exactly.",
)
WAV2LIP_GAN_INFO = _info(
    "wav2lip_gan",
    "Wav2Lip + GAN",
    WAV2LIP_GAN_WEIGHTS,
    _torchscript_record("Wav2Lip-SD-GAN.pt", _DRIVE_GAN, "wav2lip_gan.pth"),
    "Wav2Lip trained with a visual-quality discriminator: sharper mouths, slightly weaker sync.",
)


class Wav2LipPlugin(ModelPlugin):
    """Loads the Wav2Lip generator from any form users hold (see :func:`runtime.load_generator`)."""

    options_model = Wav2LipOptions
    # --official: inference.py pastes the whole box, moves the mouth in pauses and loops the video
    official_sync = {"gate": False, "length_mode": "loop"}
    official_options = {"paste": "official"}

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def find_generator(self, weights: str | Path | None = None, download: bool = False) -> Path:
        """The generator: the .pth, else the TorchScript archive (an any-of group resolved by core)."""
        from lipsynckit.weights import resolve_all

        files = resolve_all(self.info, weights, download=download)
        return files.get("generator") or files["generator_torchscript"]

    def find_weights(self, weights: str | Path | None = None) -> dict[str, Path]:
        """Resolve locally (no download); the TorchScript archive counts as the generator."""
        return {"generator": self.find_generator(weights)}

    def check_precision(self, options: Wav2LipOptions, dtype: torch.dtype | None) -> None:
        """int8 runs on the ONNX runtime only; the ONNX runtime runs float32 or int8."""
        from lipsynckit_wav2lip.onnx_runtime import onnx_precision

        onnx_precision(options.runtime, dtype)

    def build(
        self,
        files: dict[str, Path],
        options: Wav2LipOptions,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> LipSyncModel:
        from lipsynckit_wav2lip.onnx_engines import require_engine
        from lipsynckit_wav2lip.onnx_runtime import load_onnx_model, onnx_precision
        from lipsynckit_wav2lip.runtime import Wav2LipModel, load_generator

        path = files.get("generator") or files["generator_torchscript"]
        onnx = onnx_precision(options.runtime, dtype)  # checked already (check_precision): a mode here
        if onnx is not None:
            require_engine(device)  # the engine's package is there, before the weights load
        log.info("loading %s generator from %s", self.info.display_name, path)
        net = load_generator(path)
        if onnx is not None:
            return load_onnx_model(self.info, net, options, device, path, dtype)
        model = Wav2LipModel(self.info, net, options, device=device, weights_path=path)
        if dtype is not None:
            model.to(device, dtype)
        return model


plugin = Wav2LipPlugin(WAV2LIP_INFO)
plugin_gan = Wav2LipPlugin(WAV2LIP_GAN_INFO)
