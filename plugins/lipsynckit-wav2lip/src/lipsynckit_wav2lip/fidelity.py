"""How far one Wav2Lip runtime's pasted frames are from another's (the ONNX fidelity figures).

Used by the ONNX tests and ``benchmarks/wav2lip_runtime.py`` so both state the same numbers: the
protocol driven as the file pipeline drives it (adjust → prepare → generate in batches → composite)
on given frames, boxes and audio, then level differences of the pasted frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pydantic import BaseModel

from lipsynckit.types import Face, FaceTrack, ModelBatch, WorkItem
from lipsynckit_wav2lip.runtime import Wav2LipModel


class FrameDiff(BaseModel):
    """Differences of two runs' pasted frames, in 8-bit levels over every pixel and channel."""

    max: int
    mean: float
    share_off_by_more_than_1: float


def frame_diff(reference: np.ndarray, other: np.ndarray) -> FrameDiff:
    """``reference`` and ``other`` are ``(N, H, W, 3)`` uint8 of the same shape."""
    if reference.shape != other.shape:
        raise ValueError(f"frame stacks differ in shape: {reference.shape} vs {other.shape}")
    d = np.abs(reference.astype(np.int16) - other.astype(np.int16))
    return FrameDiff(max=int(d.max()), mean=float(d.mean()), share_off_by_more_than_1=float((d > 1).mean()))


def pasted_frames(
    model: Wav2LipModel,
    frames_rgb: Sequence[np.ndarray],
    boxes: np.ndarray,
    feats: torch.Tensor,
    batch: int = 16,
) -> np.ndarray:
    """``(len(feats), H, W, 3)`` RGB: frame ``i`` is source frame ``i % len(frames)`` with the mouth of
    mel window ``i``; ``boxes`` are the detector's x1y1x2y2 per source frame (before pads/smoothing)."""
    h, w = frames_rgb[0].shape[:2]
    track = FaceTrack([Face(box=np.asarray(b, dtype=np.float32)) for b in boxes], detector="given")
    adj = model.adjust_track(track, (h, w))
    prepared = []
    for f, face in zip(frames_rgb, adj.faces, strict=True):
        if face is None:
            raise ValueError("every frame needs a face box here")
        prepared.append(model.prepare(f, face))
    n = len(frames_rgb)
    items = [WorkItem(0, i, prepared[i % n], feats[i]) for i in range(len(feats))]
    out: list[np.ndarray] = []
    for s in range(0, len(items), batch):
        chunk = items[s : s + batch]
        for item, gen in zip(chunk, model.generate(ModelBatch(chunk)), strict=True):
            out.append(model.composite(frames_rgb[item.index % n], item.face, gen))
    return np.stack(out)
