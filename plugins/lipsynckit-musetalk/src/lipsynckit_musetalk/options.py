"""Options of the MuseTalk plugin; defaults reproduce the official HEAD inference of each version."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MuseTalkOptions(BaseModel):
    """What the official ``scripts/inference.py`` flags set, plus the legacy (2024) v1.0 behaviour.

    ``None`` means "the official default for this version / audio front end".
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal["v1.5", "v1.0"] = Field(
        "v1.5", description="model version (set by the plugin: musetalk = v1.5, musetalk_v10 = v1.0)"
    )
    audio_frontend: Literal["head", "legacy"] = Field(
        "head", description="head = transformers Whisper path (2025+); legacy = 2024 v1.0 openai-whisper path"
    )
    bbox_shift: int = Field(0, description="v1.0 only: moves the crop's nose anchor (pixels); v1.5 forces 0")
    extra_margin: int = Field(10, description="v1.5 only: pixels added below the chin")
    parsing_mode: Literal["jaw", "raw", "neck", "legacy"] | None = Field(
        None, description="blend region: v1.5 jaw, v1.0 raw, legacy v1.0 labels 1..13"
    )
    cheek_width: int = Field(
        90, description="jaw mode: cheek columns kept from the eroded mask (scripts: 90)"
    )
    blend_expand: float | None = Field(None, description="expanded blend box factor: 1.5 (legacy 1.2)")
    blur_ratio: float | None = Field(
        None, description="feather kernel / box width: 0.05 normal (0.1 real-time, legacy)"
    )
    realtime_blending: bool = Field(False, description="use the real-time mask feathering (blur 0.1)")
    face_parsing: bool = Field(True, description="use BiSeNet face parsing when its weights are present")
    latent_sampling: Literal["sample", "mode"] = Field(
        "sample", description="VAE posterior: official inference samples; 'mode' is deterministic"
    )
    seed: int | None = Field(
        None, description="seed for the posterior sample (None: global torch RNG, as official)"
    )
    batch_size: int = Field(8, ge=1, description="official default batch; generate accepts any size")

    def resolved_parsing_mode(self) -> str:
        if self.parsing_mode is not None:
            return self.parsing_mode
        if self.version == "v1.5":
            return "jaw"
        return "legacy" if self.audio_frontend == "legacy" else "raw"

    def resolved_expand(self) -> float:
        if self.blend_expand is not None:
            return self.blend_expand
        return 1.2 if self.is_legacy else 1.5

    def resolved_blur(self) -> float:
        if self.blur_ratio is not None:
            return self.blur_ratio
        return 0.1 if (self.is_legacy or self.realtime_blending) else 0.05

    @property
    def is_legacy(self) -> bool:
        return self.version == "v1.0" and self.audio_frontend == "legacy"
