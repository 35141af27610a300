"""The runtime (torch, numpy, OpenCV): imported by ``MouthBlurPlugin.build`` only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lipsynckit.model import BaseLipSyncModel, ModelInfo
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace
from lsk_mouthblur.plugin import MouthBlurOptions


def read_kernel(path: Path) -> np.ndarray:
    """The weight file: one 9x9 float32 tensor named ``kernel`` that sums to 1."""
    kernel = load_file(str(path))["kernel"].numpy()
    if kernel.shape != (9, 9):
        raise ValueError(f"{path}: expected a 9x9 kernel, got {kernel.shape}")
    return kernel


def write_kernel(path: Path, sigma: float = 2.0) -> Path:
    """Write the weight file (what a release would carry): a normalised Gaussian."""
    g = cv2.getGaussianKernel(9, sigma).astype(np.float32)
    save_file({"kernel": torch.from_numpy(g @ g.T)}, str(path))
    return path


class MouthBlurModel(BaseLipSyncModel):
    def __init__(self, info: ModelInfo, kernel: np.ndarray, options: MouthBlurOptions) -> None:
        self.info = info
        self.kernel = kernel
        self.options = options

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor:
        """One loudness value (RMS) per output frame: its length fixes the number of frames."""
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
            crop = item.face.crop
            weight = min(1.0, self.options.strength * float(item.audio[0]) * 20.0)
            half = crop.shape[0] // 2
            face = crop.copy()
            blurred = cv2.filter2D(crop[half:].astype(np.float32), -1, self.kernel)
            face[half:] = np.clip(crop[half:] * (1 - weight) + blurred * weight + 0.5, 0, 255).astype(
                np.uint8
            )
            out.append(face)
        return out
