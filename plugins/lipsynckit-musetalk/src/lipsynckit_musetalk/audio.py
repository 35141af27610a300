"""MuseTalk's audio path: whisper log-mel, per-frame whisper windows and the positional encoding.

Two front ends exist upstream (see SPEC section 5): ``head`` (transformers Whisper, per-30-s
segments padded with silence, post-LayerNorm last state, zero-padded windows) and ``legacy`` (the
2024 vendored openai-whisper: whole-file log-mel padded with zeros in log-mel space, pre-LayerNorm
last state, clamped windows, two extra chunks). Both are reproduced here so that v1.0 outputs can
match either era.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from lipsynckit.nn.whisper import WhisperEncoder, segment_states
from lipsynckit.nn.whisper import log_mel as _log_mel

SAMPLE_RATE = 16000
SEGMENT_SAMPLES = 30 * SAMPLE_RATE  # 480000
AUDIO_FPS = 50  # whisper encoder frames per second
WINDOW_FRAMES = 10  # whisper frames per video frame window (2 * (2 + 2 + 1))


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Whisper's normalised log-mel of a 16 kHz mono waveform: (80, len // 160) float32.

    Same recipe in both front ends (:func:`lipsynckit.nn.whisper.log_mel`, filterbank computed in
    float64 and rounded once); they differ only in what waveform they feed.
    """
    return _log_mel(wave, librosa_rounding=False)


def head_mel_segments(wave: torch.Tensor) -> list[torch.Tensor]:
    """HEAD: 30-s pieces, each zero-padded *in sample space* to 30 s, then log-mel: [(1, 80, 3000)]."""
    wave = wave.to(torch.float32).reshape(-1)
    out = []
    for start in range(0, max(1, wave.numel()), SEGMENT_SAMPLES):
        piece = wave[start : start + SEGMENT_SAMPLES]
        piece = torch.nn.functional.pad(piece, (0, SEGMENT_SAMPLES - piece.numel()))
        out.append(log_mel(piece)[None])
    return out


@torch.no_grad()
def head_hidden_states(
    encoder: WhisperEncoder, wave: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """HEAD whisper features: (A, 5, 384) with A = floor(N / 16000 * 50), last state post-LayerNorm."""
    n = int(wave.numel())
    p = next(encoder.parameters())
    dtype = dtype or p.dtype
    feats = []
    for mel in head_mel_segments(wave):
        feats.append(encoder.hidden_states(mel.to(p.device, dtype), final_norm=True)[0])  # (1500, 5, 384)
    whole = torch.cat(feats, dim=0)
    return whole[: math.floor((n / SAMPLE_RATE) * AUDIO_FPS)]


def legacy_hidden_states(
    encoder: WhisperEncoder, wave: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """2024 v1.0 features: whole-file log-mel, 3000-frame segments zero-padded in log-mel space,
    last state taken before ``ln_post``; keeps floor(frames / 2) per segment: (L, 5, 384)."""
    return segment_states(encoder, log_mel(wave), dtype, final_norm=False)


def head_window_indices(num_samples: int, fps: float) -> np.ndarray:
    """Whisper-frame index of each of the 10 window slots per video frame (HEAD); -1 = zero pad.

    ``fps`` is truncated to an integer first, as HEAD does (29.97 -> 29).
    """
    fps_i = int(fps)
    mult = AUDIO_FPS / fps_i
    num_frames = math.floor((num_samples / SAMPLE_RATE) * fps_i)
    actual = math.floor((num_samples / SAMPLE_RATE) * AUDIO_FPS)
    left = math.ceil(mult) * 2
    idx = np.full((num_frames, WINDOW_FRAMES), -1, dtype=np.int64)
    for i in range(num_frames):
        s = math.floor(i * mult) - left
        for t in range(WINDOW_FRAMES):
            j = s + t
            if 0 <= j < actual:
                idx[i, t] = j
    return idx


def legacy_window_indices(num_features: int, fps: float) -> np.ndarray:
    """2024 v1.0 windows: centre int(i*50/fps), slots c-4..c+5 clamped; stops after c > L."""
    rows = []
    mult = 50.0 / fps
    i = 0
    while True:
        start = int(i * mult)
        centre = int(i * 50 / fps)
        rows.append([min(num_features - 1, max(0, j)) for j in range(centre - 4, centre + 6)])
        i += 1
        if start > num_features:
            break
    return np.asarray(rows, dtype=np.int64)


def gather_windows(features: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
    """Gather (T, 10) windows from (A, 5, C) features into (T, 50, C), time-major (token 5*t + layer).

    Index -1 gives zeros (HEAD padding).
    """
    a, layers, c = features.shape
    padded = torch.cat([features, features.new_zeros(1, layers, c)], dim=0)
    idx = torch.as_tensor(indices, dtype=torch.long)
    idx = torch.where(idx < 0, torch.full_like(idx, a), idx)
    out = padded[idx.reshape(-1)].reshape(idx.shape[0], idx.shape[1] * layers, c)
    return out


@lru_cache(maxsize=4)
def _pe_table(d_model: int, max_len: int) -> torch.Tensor:
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe


@lru_cache(maxsize=8)
def _pe_table_on(d_model: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # kept on the device: a copy per batch from pageable memory would make the host wait for the
    # compute stream and undo the scheduler's overlap of copies and compute
    return _pe_table(d_model, 5000).to(device=device, dtype=dtype)


def positional_encoding(x: torch.Tensor) -> torch.Tensor:
    """Add the inference-time sinusoidal encoding over the 50 tokens (table cast to x's dtype)."""
    _, seq, d = x.shape
    return x + _pe_table_on(d, x.device, x.dtype)[:seq][None]
