"""Pushed audio: checking and converting PCM chunks, and resampling a stream for the model's features.

A session keeps the pushed samples exactly as they came (dtype, rate, channels) because each frame
hands its own slice back to the transport; the model sees a mono float32 copy at its own rate.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lipsynckit.errors import AudioError


def as_pcm(pcm: object, sample_rate: int) -> np.ndarray:
    """A pushed chunk as an array ``(n,)`` or ``(n, channels)``: float32 in [-1, 1] or int16.

    ``bytes`` are read as little-endian int16 mono (what TTS engines and WebRTC hand out).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(
            f"sample_rate must be a positive integer, got {sample_rate!r}",
            stage="stream",
            remedy="pass the rate of the pushed PCM, e.g. push_audio(chunk, 16000)",
        )
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % 2:
            raise AudioError(
                f"{len(pcm)} bytes is not a whole number of int16 samples",
                stage="stream",
                remedy="push int16 little-endian PCM in whole samples",
            )
        arr = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.int16)
    elif isinstance(pcm, torch.Tensor):
        arr = pcm.detach().cpu().numpy()
    else:
        arr = np.asarray(pcm)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype not in (np.float32, np.int16):
        raise AudioError(
            f"pushed audio has dtype {arr.dtype}; expected float32 in [-1, 1] or int16",
            stage="stream",
            remedy="convert the chunk, e.g. chunk.astype(np.float32) / 32768",
        )
    if arr.ndim not in (1, 2):
        raise AudioError(
            f"pushed audio has shape {arr.shape}; expected (samples,) or (samples, channels)",
            stage="stream",
            remedy="push mono samples or interleaved frames as (samples, channels)",
        )
    if arr.dtype == np.float32 and arr.size and not np.isfinite(arr).all():
        raise AudioError("pushed audio contains NaN or infinite samples", stage="stream")
    return np.ascontiguousarray(arr)


def to_mono_float(arr: np.ndarray) -> np.ndarray:
    """Mono float32 in [-1, 1] (channels averaged, int16 scaled by 1/32768)."""
    x = arr.astype(np.float32) / 32768.0 if arr.dtype == np.int16 else arr.astype(np.float32, copy=False)
    return x.mean(axis=1) if x.ndim == 2 else x


class StreamResampler:
    """Resamples a stream chunk by chunk to the same samples as resampling the whole signal at once.

    Each output sample depends on input within the sinc kernel's half width; blocks are cut on
    multiples of the reduced input period and given that much context on both sides, so only the
    float rounding of the convolution can differ from :func:`lipsynckit.media.resample.resample`.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        self.orig_sr, self.new_sr = int(orig_sr), int(new_sr)
        g = math.gcd(self.orig_sr, self.new_sr)
        self.p, self.q = self.orig_sr // g, self.new_sr // g
        self.identity = self.orig_sr == self.new_sr
        width = 0
        if not self.identity:
            from lipsynckit.media.resample import sinc_resample_kernel

            _kernel, width = sinc_resample_kernel(self.orig_sr, self.new_sr)
        self.margin = int(math.ceil((width + self.p) / self.p)) * self.p  # context, in input samples
        self._buf = np.zeros(self.margin, dtype=np.float32)  # silence before the start, as resample pads
        self._buf_start = -self.margin  # input index of _buf[0]
        self._next_block = 0  # next output block (in units of q output samples)
        self._n_in = 0

    @property
    def lookahead(self) -> int:
        """Input samples beyond an output sample's time needed before it comes out."""
        return 0 if self.identity else self.margin + self.p

    def push(self, x: np.ndarray) -> np.ndarray:
        """Resampled output that is final given the input so far."""
        if self.identity:
            return x.astype(np.float32, copy=False)
        self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        self._n_in += len(x)
        last_block = (self._n_in - self.margin) // self.p  # blocks whose right context is all here
        return self._emit(last_block)

    def finish(self) -> np.ndarray:
        """The rest, with silence after the end (as resampling the whole signal pads it)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        total_out = math.ceil(self.q * self._n_in / self.p)
        self._buf = np.concatenate([self._buf, np.zeros(self.margin + self.p, dtype=np.float32)])
        out = self._emit(math.ceil(self._n_in / self.p))
        done_before = self._next_block * self.q - len(out)
        keep = max(0, total_out - done_before)
        return out[:keep]

    def _emit(self, last_block: int) -> np.ndarray:
        if last_block <= self._next_block:
            return np.zeros(0, dtype=np.float32)
        a_in = self._next_block * self.p - self.margin
        b_in = last_block * self.p + self.margin
        seg = self._buf[a_in - self._buf_start : b_in - self._buf_start]
        from lipsynckit.media.resample import resample

        out = resample(torch.from_numpy(np.ascontiguousarray(seg))[None], self.orig_sr, self.new_sr)[0]
        skip = (self.margin // self.p) * self.q
        res = out[skip : skip + (last_block - self._next_block) * self.q].numpy()
        self._next_block = last_block
        # keep only the left context the next block needs
        drop = (self._next_block * self.p - self.margin) - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return res
