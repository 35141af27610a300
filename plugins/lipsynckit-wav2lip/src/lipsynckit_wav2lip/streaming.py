"""Wav2Lip's mel windows on a stream, equal to the file path's (``audio_features``) frame by frame.

Frame ``j``'s 16-column window starts at column ``int(j·80/fps)``: it covers the 200 ms *after* the
frame starts, so a frame can be made once about 170 ms of audio past its end has arrived. Columns are
computed once each, as samples arrive (pre-emphasis carried across chunks, reflect padding at the
start as the file path does); ``finish`` adds the file path's reflect padding at the end and its
right-aligned tail window, so a flushed utterance gives the file's features for every frame the file
has (frames past the file's last one reuse its tail window).
"""

from __future__ import annotations

import numpy as np
import torch

from lipsynckit.errors import LipSyncError
from lipsynckit_wav2lip.audio import (
    HOP,
    MEL_STEP,
    N_FFT,
    PREEMPHASIS,
    SAMPLE_RATE,
    WIN,
    _hann_periodic,
    mel_from_magnitude,
)

PAD = N_FFT // 2  # the STFT is centred: column c covers pre-emphasised samples [c·hop - pad, c·hop + pad)
MIN_SAMPLES = (MEL_STEP - 1) * HOP + PAD  # one full window with no end padding


class Wav2LipStreamFeatures:
    """:class:`lipsynckit.streaming.StreamFeatures` for Wav2Lip (16 kHz mono float32 in)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise LipSyncError(f"invalid frame rate {fps}", stage="stream")
        self.mult = 80.0 / float(fps)
        self._y = np.zeros(0, dtype=np.float64)  # pre-emphasised samples from _y0 on
        self._y0 = 0
        self._last_x = 0.0
        self._n = 0
        self._head: np.ndarray | None = None  # reflect padding before sample 0
        self._mel = np.zeros((80, 0), dtype=np.float32)  # columns from _mel0 on
        self._mel0 = 0
        self._total_cols: int | None = None  # set by finish()

    def _start(self, frame: int) -> int:
        return int(frame * self.mult)  # float64 product, truncation: the official rule

    def needed_samples(self, frame: int) -> int:
        return max(MIN_SAMPLES, (self._start(frame) + MEL_STEP - 1) * HOP + PAD)

    def push(self, samples: np.ndarray) -> None:
        if self._total_cols is not None:
            raise LipSyncError("audio pushed after finish()", stage="stream")
        x = samples.astype(np.float64)
        if len(x) == 0:
            return
        y = x.copy()
        y[0] = x[0] - PREEMPHASIS * self._last_x if self._n else x[0]
        y[1:] = x[1:] - PREEMPHASIS * x[:-1]
        self._last_x = float(x[-1])
        self._y = np.concatenate([self._y, y])
        self._n += len(x)
        if self._head is None and self._n > PAD:
            self._head = self._y[1 : PAD + 1][::-1].copy()

    def finish(self) -> None:
        """End of the utterance: pad the end as the file path does (silence first if it is very short)."""
        if self._total_cols is not None:
            return
        if self._n < MIN_SAMPLES:  # the file path refuses under 16 columns; a stream pads with silence
            self.push(np.zeros(MIN_SAMPLES - self._n, dtype=np.float32))
        tail = self._y[-2 : -PAD - 2 : -1]  # np.pad(mode="reflect") on the right
        self._y = np.concatenate([self._y, tail])
        self._total_cols = 1 + self._n // HOP

    def _yp(self, a: int, b: int) -> np.ndarray:
        """Samples ``[a, b)`` of the padded signal (index ``PAD`` is sample 0)."""
        if a >= PAD:
            return self._y[a - PAD - self._y0 : b - PAD - self._y0]
        assert self._head is not None and self._y0 == 0
        return np.concatenate([self._head[a:], self._y[: b - PAD]])

    def _ensure_columns(self, upto: int) -> None:
        have = self._mel0 + self._mel.shape[1]
        if upto <= have:
            return
        seg = self._yp(have * HOP, (upto - 1) * HOP + N_FFT)
        frames = np.lib.stride_tricks.sliding_window_view(seg, N_FFT)[::HOP][: upto - have]
        spec = np.fft.rfft(frames * _hann_periodic(WIN)[None, :], axis=1).astype(np.complex64)
        self._mel = np.concatenate([self._mel, mel_from_magnitude(np.abs(spec).T)], axis=1)

    def row(self, frame: int) -> torch.Tensor:
        """``(1, 80, 16)``: the frame's mel window, as ``Wav2LipModel.audio_features`` gives it."""
        s = self._start(frame)
        if self._total_cols is not None:
            s = min(s, self._total_cols - MEL_STEP)  # the file path's right-aligned tail window
        elif self._n < self.needed_samples(frame):
            raise LipSyncError(f"mel window of frame {frame} asked before its audio arrived", stage="stream")
        if s < self._mel0:
            raise LipSyncError(f"mel window of frame {frame} was already released", stage="stream")
        self._ensure_columns(s + MEL_STEP)
        win = self._mel[:, s - self._mel0 : s - self._mel0 + MEL_STEP]
        self._release(min(s, self._start(frame + 1)))
        return torch.from_numpy(np.ascontiguousarray(win))[None]

    def _release(self, col: int) -> None:
        """Forget columns before ``col`` and the samples only they used (memory stays flat)."""
        if self._total_cols is not None:
            col = min(col, self._total_cols - MEL_STEP)
        if col > self._mel0:
            self._mel = self._mel[:, col - self._mel0 :]
            self._mel0 = col
        have = self._mel0 + self._mel.shape[1]
        keep_from = min(have * HOP - PAD, self._n - PAD - 2)  # the end reflection needs the last samples
        if keep_from > self._y0 and self._head is not None:
            self._y = self._y[keep_from - self._y0 :]
            self._y0 = keep_from
