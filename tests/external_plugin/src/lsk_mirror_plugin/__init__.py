"""A tiny third-party model: it mirrors the lower half of the face left-right while the audio is loud.

It exists to prove that a distribution lipsynckit has never heard of plugs in through entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.model import BaseLipSyncModel, ModelInfo, ModelPlugin, parse_model_options
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace


class MirrorOptions(BaseModel):
    """The mirror's one knob (a third-party option: the CLI makes a flag of it)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.01, ge=0.0, description="RMS loudness above which the lower face is mirrored")


class MirrorModel(BaseLipSyncModel):
    def __init__(self, info: ModelInfo, options: MirrorOptions) -> None:
        self.info = info
        self.options = options

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor:
        x = audio.mono().samples[0]
        n = max(1, round(audio.duration * fps))
        hop = x.shape[0] / n
        rms = [float(x[int(i * hop) : int((i + 1) * hop)].pow(2).mean().sqrt()) for i in range(n)]
        return torch.tensor(rms, dtype=torch.float32)[:, None]

    def prepare(self, frame: np.ndarray, face: Face) -> PreparedFace:
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        return PreparedFace(box=(x1, y1, x2, y2), crop=frame[y1:y2, x1:x2].copy())

    def generate(self, batch: ModelBatch) -> list[np.ndarray]:
        out = []
        for item in batch.items:
            crop = item.face.crop.copy()
            if float(item.audio[0]) > self.options.threshold:
                half = crop.shape[0] // 2
                crop[half:] = crop[half:, ::-1]
            out.append(crop)
        return out


class MirrorPlugin(ModelPlugin):
    options_model = MirrorOptions

    def __init__(self, name: str, requires: list[str], extra: str | None) -> None:
        self.info = ModelInfo(
            name=name,
            display_name=f"Mirror ({name}, test plugin)",
            face_size=0,
            needs_weights=False,
            license="MIT",
            weights_license="none",
            requires=requires,
            extra=extra,
        )

    def _load(
        self,
        weights: str | Path | None,
        device: torch.device,
        dtype: torch.dtype | None,
        options: Any,
        download: bool,
    ) -> MirrorModel:
        return MirrorModel(self.info, parse_model_options(options, MirrorOptions, self.info.name))


plugin = MirrorPlugin("mirror", [], None)
fancy_plugin = MirrorPlugin("mirror_fancy", ["lsk_nonexistent_dependency"], "fancy")
