"""Wav2Lip's audio front end, reproduced without librosa.

The checkpoints were trained on librosa 0.7 features: pre-emphasis 0.97, STFT (n_fft 800, hop 200,
periodic Hann, centred with **reflect** padding), magnitude, Slaney mel (80 bands, 55-7600 Hz),
20·log10 with a 1e-5 floor minus 20 dB, then a symmetric ±4 normalisation. librosa ≥ 0.10 pads with
zeros by default, which changes the first and last two frames; we keep reflect padding. Then one
16-frame window per video frame starting at ``int(i·80/fps)`` with a right-aligned tail window.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from lipsynckit.errors import AudioError

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEP = 16  # mel frames per generator input (0.2 s)
MEL_FPS = SAMPLE_RATE / HOP  # 80 mel frames per second


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's ``htk=False``)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = f / f_sp
    above = f >= min_log_hz
    mel = np.where(above, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, mel)
    return mel


def _mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=4)
def mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX
) -> np.ndarray:
    """Slaney-normalised triangular mel filters ``(n_mels, 1 + n_fft//2)`` float32.

    Computed in float64 and stored row by row into float32, then scaled by the area normalisation
    (rounded to float32 again): the same two roundings as librosa, so the result is bit-identical.
    """
    n_bins = 1 + n_fft // 2
    fft_freqs = np.linspace(0.0, float(sr) / 2, n_bins, endpoint=True)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(np.float64(fmin)), _hz_to_mel(np.float64(fmax)), n_mels + 2))
    spacing = np.diff(mel_pts)
    offsets = mel_pts[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, n_bins), dtype=np.float32)
    for i in range(n_mels):
        rising = -offsets[i] / spacing[i]
        falling = offsets[i + 2] / spacing[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    area_norm = 2.0 / (mel_pts[2 : n_mels + 2] - mel_pts[:n_mels])
    weights *= area_norm[:, None]
    return weights


@functools.lru_cache(maxsize=2)
def _hann_periodic(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n, dtype=np.float64) / n)


def preemphasis(wav: np.ndarray, coef: float = PREEMPHASIS) -> np.ndarray:
    """``y[n] = x[n] - coef·x[n-1]`` with zero initial state, in float64."""
    x = np.asarray(wav, dtype=np.float64)
    y = x.copy()
    y[1:] = x[1:] - coef * x[:-1]
    return y


def stft_magnitude(y: np.ndarray) -> np.ndarray:
    """``|STFT|`` ``(1 + n_fft//2, 1 + N//hop)`` float32, centred with reflect padding.

    The complex STFT is rounded to complex64 before the magnitude, as librosa 0.7 stored it.
    """
    pad = N_FFT // 2
    if len(y) <= pad:
        raise AudioError(
            f"audio too short for the Wav2Lip STFT ({len(y)} samples)",
            stage="audio",
            remedy="use at least 0.2 s of audio",
        )
    yp = np.pad(y, pad, mode="reflect")
    n_frames = 1 + (len(yp) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(yp, N_FFT)[::HOP][:n_frames]
    spec = np.fft.rfft(frames * _hann_periodic(WIN)[None, :], axis=1).astype(np.complex64)
    return np.abs(spec).T  # (bins, frames) float32


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """The official normalised log-mel spectrogram ``(80, T)`` float32 of a 16 kHz mono waveform."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(f"expected a mono waveform, got shape {wav.shape}", stage="audio")
    if not np.all(np.isfinite(wav)):
        raise AudioError(
            "audio contains NaN or infinite samples", stage="audio", remedy="check the audio file"
        )
    return mel_from_magnitude(stft_magnitude(preemphasis(wav)))


def mel_from_magnitude(mag: np.ndarray) -> np.ndarray:
    """Normalised log-mel ``(80, T)`` of STFT magnitude columns (split out so a stream can run it on
    the columns it has: each column is independent)."""
    mel = np.dot(mel_filterbank(), mag).astype(np.float64)  # float32 product, as librosa 0.7 did
    # dB and normalisation in float64 (closest to the golden: 7e-7 instead of 1.4e-6 in float32)
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    out = np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)
    if np.isnan(out).any():  # the official code refuses this too
        raise AudioError(
            "mel spectrogram contains NaN", stage="audio", remedy="add a little noise to the audio"
        )
    return out


def chunk_starts(num_mel_frames: int, fps: float) -> np.ndarray:
    """Start column of each 16-frame window, one per output video frame (official rule).

    Window ``i`` starts at ``int(i·80/fps)`` (float64 product, truncation); the first window that
    would run past the end is replaced by the right-aligned tail window ``T-16`` and ends the list.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise AudioError(f"invalid frame rate {fps}", stage="audio", remedy="pass a positive fps")
    t = int(num_mel_frames)
    if t < MEL_STEP:
        raise AudioError(
            f"audio too short: {t} mel frames, Wav2Lip needs at least {MEL_STEP} (about 0.19 s)",
            stage="audio",
            remedy="use a longer audio clip",
        )
    mult = 80.0 / float(fps)
    starts: list[int] = []
    i = 0
    while True:
        s = int(i * mult)
        if s + MEL_STEP > t:
            starts.append(t - MEL_STEP)
            break
        starts.append(s)
        i += 1
    return np.asarray(starts, dtype=np.int64)


def mel_chunks(mel: np.ndarray, fps: float) -> np.ndarray:
    """``(N, 80, 16)`` windows of ``mel`` for a video at ``fps`` (N = number of output frames)."""
    starts = chunk_starts(mel.shape[1], fps)
    idx = starts[:, None] + np.arange(MEL_STEP)[None, :]
    return np.ascontiguousarray(np.transpose(mel[:, idx], (1, 0, 2)))
