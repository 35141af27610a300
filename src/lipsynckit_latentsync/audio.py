"""LatentSync's audio front end: Whisper-tiny encoder states and the per-frame audio windows.

Written from ``latentsync/whisper/audio2feature.py`` and the bundled (modified) openai-whisper
``transcribe``/``log_mel_spectrogram`` of bytedance/LatentSync: the whole clip's log-Mel spectrogram
is cut into 30 s segments, each zero-padded to 3000 Mel frames, run through the encoder, and the
input plus the output of every residual block (5 states × 384 for tiny) are kept at 50 per second.
A video frame ``i`` then sees the 10 feature rows around ``int(i * 50 / fps)`` (2 frames before,
2 after), flattened to a (50, 384) cross-attention context.

The encoder is our own small module with openai-whisper's parameter names, so the official
``checkpoints/whisper/tiny.pt`` (``{"dims": ..., "model_state_dict": ...}``) loads strictly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lipsynckit.errors import WeightsError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
SEGMENT_FRAMES = 3000  # 30 s of Mel frames per encoder call
FEATURES_PER_SECOND = 50


# ----------------------------------------------------------------------------------------------
# Mel filterbank (librosa's Slaney-style filters, as openai-whisper's mel_filters.npz stores them)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) float32 triangular filters, Slaney mel scale and area normalisation
    (what ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`` returns; Whisper ships that array)."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mels = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2)
    mel_f = _mel_to_hz(mels)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


_FILTERS: dict[str, torch.Tensor] = {}


def log_mel_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """Whisper's log-Mel spectrogram of a 16 kHz mono waveform: (80, len // 160).

    The dynamic range is clipped to 8 (log10) below the maximum of the WHOLE clip, as the official
    front end computes it once for the clip before cutting it into segments.
    """
    key = str(audio.device)
    if key not in _FILTERS:
        _FILTERS[key] = torch.from_numpy(mel_filters()).to(audio.device)
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    magnitudes = stft[:, :-1].abs() ** 2
    mel = _FILTERS[key] @ magnitudes
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


# ----------------------------------------------------------------------------------------------
# Whisper audio encoder (openai-whisper layout and parameter names)


def _sinusoids(length: int, channels: int, max_timescale: float = 10000) -> torch.Tensor:
    log_inc = np.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class _MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        b, n, d = q.shape
        scale = (d // self.n_head) ** -0.25
        q = q.view(b, n, self.n_head, -1).permute(0, 2, 1, 3) * scale
        k = k.view(b, n, self.n_head, -1).permute(0, 2, 3, 1) * scale
        v = v.view(b, n, self.n_head, -1).permute(0, 2, 1, 3)
        w = F.softmax((q @ k).float(), dim=-1).to(q.dtype)
        return self.out((w @ v).permute(0, 2, 1, 3).flatten(start_dim=2))


class _LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # computed in float32, as openai-whisper does
        return super().forward(x.float()).type(x.dtype)


class _ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.attn = _MultiHeadAttention(n_state, n_head)
        self.attn_ln = _LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, n_state * 4), nn.GELU(), nn.Linear(n_state * 4, n_state))
        self.mlp_ln = _LayerNorm(n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder; :meth:`hidden_states` returns the stack LatentSync conditions on."""

    def __init__(
        self, n_mels: int = 80, n_ctx: int = 1500, n_state: int = 384, n_head: int = 6, n_layer: int = 4
    ) -> None:
        super().__init__()
        self.n_state = n_state
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", _sinusoids(n_ctx, n_state))
        self.blocks = nn.ModuleList([_ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)])
        self.ln_post = _LayerNorm(n_state)

    def hidden_states(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 80, 3000) log-Mel → (B, n_layer + 1, 1500, n_state): the input embedding and every
        block's output (``ln_post`` is not part of what LatentSync uses)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        pos: torch.Tensor = self.positional_embedding  # type: ignore[assignment]
        x = (x + pos).to(x.dtype)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return torch.stack(states, dim=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(mel)


def load_whisper_encoder(path: str | Path, device: torch.device | str = "cpu") -> WhisperEncoder:
    """Build the encoder from an openai-whisper checkpoint (``tiny.pt``) and load it strictly.

    The decoder half of the file is ignored; every missing or unexpected encoder key is reported.
    """
    from lipsynckit.weights import load_strict

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise WeightsError(
            f"cannot read the Whisper checkpoint ({exc.__class__.__name__}: {exc})",
            path=path,
            stage="weights",
            remedy="use the official openai-whisper tiny.pt (checkpoints/whisper/tiny.pt of LatentSync)",
        ) from exc
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "dims" not in ckpt:
        raise WeightsError(
            "not an openai-whisper checkpoint (expected the keys 'dims' and 'model_state_dict')",
            path=path,
            stage="weights",
            remedy="use the official openai-whisper tiny.pt (checkpoints/whisper/tiny.pt of LatentSync)",
        )
    dims: dict[str, Any] = dict(ckpt["dims"])
    enc = WhisperEncoder(
        n_mels=int(dims["n_mels"]),
        n_ctx=int(dims["n_audio_ctx"]),
        n_state=int(dims["n_audio_state"]),
        n_head=int(dims["n_audio_head"]),
        n_layer=int(dims["n_audio_layer"]),
    )
    sd = {k[len("encoder.") :]: v for k, v in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
    load_strict(enc, sd, path=path, what="Whisper encoder")
    return enc.to(device).eval()


@torch.no_grad()
def whisper_features(
    encoder: WhisperEncoder, audio: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Encoder states at 50 per second, (T, n_layer + 1, n_state), float32, as the official
    ``Audio2Feature.audio2feat`` returns them for a 16 kHz mono waveform."""
    device = next(encoder.parameters()).device
    mel = log_mel_spectrogram(audio.to(device=device, dtype=torch.float32))
    n = mel.shape[-1]
    out = []
    seek = 0
    while seek < n:
        end = min(seek + SEGMENT_FRAMES, n)
        seg = mel[:, seek : seek + SEGMENT_FRAMES]
        if seg.shape[-1] < SEGMENT_FRAMES:
            seg = F.pad(seg, (0, SEGMENT_FRAMES - seg.shape[-1]))
        states = encoder.hidden_states(seg[None].to(dtype))[0]  # (L+1, 1500, C)
        keep = int((end - seek) / 2)
        out.append(states.permute(1, 0, 2)[:keep].float().cpu())
        seek += SEGMENT_FRAMES
    if not out:
        return torch.zeros(0, len(encoder.blocks) + 1, encoder.n_state)
    return torch.cat(out, dim=0)


def quantize_int16(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Round to the 16-bit grid, as the official loader (ffmpeg → s16le / 32768) sees every input."""
    w = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    return torch.clamp(torch.round(w * 32768.0), -32768, 32767) / 32768.0


# ----------------------------------------------------------------------------------------------
# Per-frame windows


def window_indices(
    center_frame: int, num_features: int, fps: float, left: int = 2, right: int = 2
) -> list[int]:
    """Feature rows for video frame ``center_frame``: ``int(i*50/fps)`` − 2·left … + 2·(right+1) − 1,
    clamped into the clip (the official ``get_sliced_feature``)."""
    center = int(center_frame * FEATURES_PER_SECOND / fps)
    lo = center - left * 2
    hi = center + (right + 1) * 2
    return [min(num_features - 1, max(0, i)) for i in range(lo, hi)]


def frame_window(
    features: torch.Tensor, frame: int, fps: float, feat_length: tuple[int, int] = (2, 2)
) -> torch.Tensor:
    """(10·5, 384) context of one video frame."""
    idx = window_indices(frame, len(features), fps, *feat_length)
    return features[idx].reshape(-1, features.shape[-1])


def feature_chunks(features: torch.Tensor, fps: float, feat_length: tuple[int, int] = (2, 2)) -> torch.Tensor:
    """All per-frame windows, (N, 50, 384): the official ``feature2chunks``."""
    n = _count_chunks(len(features), fps)
    return torch.stack([frame_window(features, i, fps, feat_length) for i in range(n)])


def _count_chunks(num_features: int, fps: float) -> int:
    mult = FEATURES_PER_SECOND / fps
    i = 0
    while True:
        start = int(i * mult)
        i += 1
        if start > num_features:
            return i


def crop_overlap_window(
    features: torch.Tensor, start: int, num_frames: int = 16, feat_length: tuple[int, int] = (2, 2)
) -> torch.Tensor:
    """Windows of ``num_frames`` consecutive frames from ``start`` at 25 fps (the official
    ``crop_overlap_audio_window``, used for training clips)."""
    return torch.stack(
        [frame_window(features, i, 25.0, feat_length) for i in range(start, start + num_frames)]
    )


def num_features(num_samples_16k: int) -> int:
    """Feature rows the front end makes for a 16 kHz clip (segment by segment, half the Mel frames)."""
    n = num_samples_16k // HOP_LENGTH
    return sum(int((min(s + SEGMENT_FRAMES, n) - s) / 2) for s in range(0, n, SEGMENT_FRAMES))


__all__ = [
    "WhisperEncoder",
    "crop_overlap_window",
    "num_features",
    "feature_chunks",
    "frame_window",
    "load_whisper_encoder",
    "log_mel_spectrogram",
    "mel_filters",
    "quantize_int16",
    "whisper_features",
    "window_indices",
]
