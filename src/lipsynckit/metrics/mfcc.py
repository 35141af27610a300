"""MFCCs exactly as ``python_speech_features.mfcc`` computes them with its defaults.

SyncNet (syncnet_python) was trained on these features, so LSE-D/LSE-C are only comparable with
published numbers when the audio side is bit-for-bit the same arithmetic. The package itself is
unmaintained, so the few lines it runs are reimplemented here in numpy (float64 throughout, like the
original): pre-emphasis 0.97, 25 ms frames every 10 ms with zero padding at the end, rectangular
window, |rfft(512)|² / 512, 26 triangular mel filters on the integer FFT bins, log, orthonormal
DCT-II, first 13 coefficients, sinusoidal liftering (L = 22), and c0 replaced by the log frame energy.
"""

from __future__ import annotations

import decimal
import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.fft import dct

__all__ = ["MFCCOptions", "mel_filterbank", "mfcc", "syncnet_mfcc"]


class MFCCOptions(BaseModel):
    """``python_speech_features.mfcc`` keyword defaults (version 0.6, as syncnet_python used it)."""

    model_config = ConfigDict(frozen=True)

    sample_rate: int = 16000
    winlen: float = 0.025
    winstep: float = 0.01
    numcep: int = 13
    nfilt: int = 26
    nfft: int = 512
    lowfreq: float = 0.0
    highfreq: float | None = None
    preemph: float = 0.97
    ceplifter: int = 22
    append_energy: bool = True


def _round_half_up(x: float) -> int:
    """The original rounds frame lengths with ``decimal`` ROUND_HALF_UP (not banker's rounding)."""
    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def _hz2mel(hz: np.ndarray | float) -> np.ndarray:
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0))


def _mel2hz(mel: np.ndarray | float) -> np.ndarray:
    return np.asarray(700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0))


def mel_filterbank(
    nfilt: int, nfft: int, sample_rate: int, lowfreq: float = 0.0, highfreq: float | None = None
) -> np.ndarray:
    """Triangular filters on integer FFT bins, ``(nfilt, nfft // 2 + 1)`` float64.

    The bin edges are ``floor((nfft + 1) * hz / sample_rate)`` as in the original; filters are not
    area-normalised.
    """
    high = highfreq or sample_rate / 2
    melpoints = np.linspace(_hz2mel(lowfreq), _hz2mel(high), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(melpoints) / sample_rate)
    fb = np.zeros((nfilt, nfft // 2 + 1), dtype=np.float64)
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(int(lo), int(mid)):
            fb[j, i] = (i - lo) / (mid - lo)
        for i in range(int(mid), int(hi)):
            fb[j, i] = (hi - i) / (hi - mid)
    return fb


def _frames(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Overlapping frames; the tail is zero-padded so that every sample falls in some frame."""
    n = len(signal)
    if n <= frame_len:
        num = 1
    else:
        num = 1 + int(math.ceil((1.0 * n - frame_len) / frame_step))
    padlen = int((num - 1) * frame_step + frame_len)
    padded = np.concatenate((signal, np.zeros((padlen - n,), dtype=np.float64)))
    idx = np.arange(frame_len)[None, :] + (np.arange(num) * frame_step)[:, None]
    return padded[idx]


def mfcc(signal: np.ndarray, options: MFCCOptions | None = None) -> np.ndarray:
    """MFCC features ``(num_frames, numcep)`` float64 of a 1-D signal (any numeric dtype, unscaled).

    syncnet_python feeds the raw int16 sample values (not [-1, 1] floats); the scale matters for
    c0 (log energy) and for the log filterbank energies.
    """
    o = options or MFCCOptions()
    sig = np.asarray(signal)
    if sig.ndim != 1:
        raise ValueError(f"mfcc expects a 1-D signal, got shape {sig.shape}")
    sig = sig.astype(np.float64)
    sig = np.append(sig[0], sig[1:] - o.preemph * sig[:-1]) if len(sig) else sig
    frames = _frames(sig, _round_half_up(o.winlen * o.sample_rate), _round_half_up(o.winstep * o.sample_rate))
    pspec = np.square(np.abs(np.fft.rfft(frames, o.nfft))) / o.nfft
    eps = np.finfo(float).eps
    energy = np.sum(pspec, axis=1)
    energy = np.where(energy == 0, eps, energy)
    fb = mel_filterbank(o.nfilt, o.nfft, o.sample_rate, o.lowfreq, o.highfreq)
    feat = pspec @ fb.T
    feat = np.where(feat == 0, eps, feat)
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, : o.numcep]
    if o.ceplifter > 0:
        n = np.arange(feat.shape[1])
        feat = feat * (1.0 + (o.ceplifter / 2.0) * np.sin(np.pi * n / o.ceplifter))
    if o.append_energy:
        feat[:, 0] = np.log(energy)
    return np.asarray(feat)


def syncnet_mfcc(pcm16: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """``(13, num_frames)`` MFCCs at 100 Hz of 16-bit PCM, laid out as syncnet_python stacks them."""
    return np.ascontiguousarray(mfcc(np.asarray(pcm16), MFCCOptions(sample_rate=sample_rate)).T)
