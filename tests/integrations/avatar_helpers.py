"""Shared helpers for the voice-agent integration tests (a plain module, as tests/ has no packages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf


def speech_int16(path: Path, seconds: float) -> tuple[np.ndarray, int]:
    """Real speech (LibriVox, 16 kHz mono) as int16, what TTS services hand to Pipecat and LiveKit."""
    x, sr = sf.read(str(path), dtype="int16")
    return np.ascontiguousarray(x[: int(seconds * sr)]), int(sr)


def tts_chunks(x: np.ndarray, sr: int, ms: int = 20) -> Iterator[np.ndarray]:
    """``x`` in the fixed-size chunks a streaming TTS emits (the last one shorter)."""
    n = sr * ms // 1000
    for i in range(0, len(x), n):
        yield x[i : i + n]


def padded(x: np.ndarray, sr: int, fps: float = 25.0) -> np.ndarray:
    """``x`` followed by silence up to the end of its last frame (what its frames carry)."""
    n = int(np.ceil(len(x) * fps / sr - 1e-9))
    end = int(round(n * sr / fps))
    return np.concatenate([x, np.zeros(end - len(x), dtype=x.dtype)])
