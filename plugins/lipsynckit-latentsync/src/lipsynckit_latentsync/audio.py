"""LatentSync's audio front end: Whisper-tiny encoder states and the per-frame audio windows.

Written from ``latentsync/whisper/audio2feature.py`` and the bundled (modified) openai-whisper
``transcribe``/``log_mel_spectrogram`` of bytedance/LatentSync: the whole clip's log-Mel spectrogram
is cut into 30 s segments, each zero-padded to 3000 Mel frames, run through the encoder, and the
input plus the output of every residual block (5 states × 384 for tiny) are kept at 50 per second.
A video frame ``i`` then sees the 10 feature rows around ``int(i * 50 / fps)`` (2 frames before,
2 after), flattened to a (50, 384) cross-attention context.

The log-Mel front end and the encoder are the shared :mod:`lipsynckit.nn.whisper` ones (openai-whisper
parameter names and numerics), so the official ``checkpoints/whisper/tiny.pt``
(``{"dims": ..., "model_state_dict": ...}``) loads strictly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lipsynckit.errors import WeightsError
from lipsynckit.nn.whisper import (
    FEATURES_PER_SECOND,
    HOP_LENGTH,
    SEGMENT_FRAMES,
    WhisperEncoder,
    encoder_from_state_dict,
    log_mel,
    mel_filters,
    segment_states,
)

log = logging.getLogger(__name__)


def log_mel_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """Whisper's log-Mel spectrogram of a 16 kHz mono waveform: (80, len // 160), on its device.

    The dynamic range is clipped to 8 (log10) below the maximum of the WHOLE clip, as the official
    front end computes it once for the clip before cutting it into segments; the filterbank is
    openai-whisper's ``mel_filters.npz`` (librosa's float32 rounding).
    """
    return log_mel(audio, librosa_rounding=True)


def load_whisper_encoder(path: str | Path, device: torch.device | str = "cpu") -> WhisperEncoder:
    """Build the encoder from an openai-whisper checkpoint (``tiny.pt``) and load it strictly, with
    openai-whisper's numerics (q/k scaled by d**-0.25 each, float32 softmax and LayerNorms).

    The decoder half of the file is ignored; every missing or unexpected encoder key is reported.
    """
    remedy = "use the official openai-whisper tiny.pt (checkpoints/whisper/tiny.pt of LatentSync)"
    try:
        from lipsynckit.weights import load_checkpoint  # the one safe reader

        ckpt = load_checkpoint(path)
    except WeightsError:
        raise  # refused or unreadable: already one line naming the file
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise WeightsError(
            f"cannot read the Whisper checkpoint ({exc.__class__.__name__}: {exc})",
            path=path,
            stage="weights",
            remedy=remedy,
        ) from exc
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "dims" not in ckpt:
        raise WeightsError(
            "not an openai-whisper checkpoint (expected the keys 'dims' and 'model_state_dict')",
            path=path,
            stage="weights",
            remedy=remedy,
        )
    dims: dict[str, Any] = dict(ckpt["dims"])
    sd = {k: v for k, v in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
    enc = encoder_from_state_dict(sd, dims, numerics="openai", path=path, what="Whisper encoder")
    return enc.to(device).eval()


@torch.no_grad()
def whisper_features(
    encoder: WhisperEncoder, audio: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Encoder states at 50 per second, (T, n_layer + 1, n_state), float32, as the official
    ``Audio2Feature.audio2feat`` returns them for a 16 kHz mono waveform (the input embedding and
    every block's output; ``ln_post`` is not part of what LatentSync uses)."""
    device = next(encoder.parameters()).device
    mel = log_mel_spectrogram(audio.to(device=device, dtype=torch.float32))
    return segment_states(encoder, mel, dtype, final_norm=False).float().cpu()


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
