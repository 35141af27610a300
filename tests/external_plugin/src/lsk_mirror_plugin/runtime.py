"""The mirror's runtime (torch): imported by ``MirrorPlugin.build`` only."""

from __future__ import annotations

import numpy as np
import torch

from lipsynckit.model import BaseLipSyncModel, ModelInfo
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace
from lsk_mirror_plugin import MirrorOptions


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
