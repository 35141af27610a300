"""Shared helpers for the streaming tests (a plain module, as tests/ has no packages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf


def speech(path: Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Real speech as float32 mono (LibriVox, 16 kHz), optionally cut to ``seconds``."""
    x, sr = sf.read(str(path), dtype="float32")
    if seconds is not None:
        x = x[: int(seconds * sr)]
    return np.ascontiguousarray(x), int(sr)


def chunks(x: np.ndarray, sr: int, seed: int = 0, lo_ms: int = 20, hi_ms: int = 40) -> Iterator[np.ndarray]:
    """``x`` cut into chunks of 20-40 ms (random sizes, as a TTS engine or a microphone hands them out)."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(x):
        n = int(rng.integers(lo_ms * sr // 1000, hi_ms * sr // 1000 + 1))
        yield x[i : i + n]
        i += n


def padded(x: np.ndarray, sr: int, fps: float = 25.0) -> np.ndarray:
    """``x`` followed by silence up to the end of its last frame (what its frames carry)."""
    n = int(np.ceil(len(x) * fps / sr - 1e-9))
    end = int(round(n * sr / fps))
    return np.concatenate([x, np.zeros(end - len(x), dtype=x.dtype)])
