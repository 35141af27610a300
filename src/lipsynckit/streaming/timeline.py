"""The session's timeline: which utterance frame plays at which output frame (tick), decided from
timestamps alone so that the same pushes at the same clock times always give the same frames.

Frame ``j`` of an utterance is *committed* once its audio and its model's look-ahead have arrived
(or the utterance is flushed). In real time it is planned at the tick after the previous one; the
first frame of an utterance (and the first after an underrun) is planned ``render_budget_s`` after it
was committed, so it has time to render and push jitter does not starve the next frames.

Audio is the master clock: ticks are never moved once planned. Each real-time frame also gets a
*deadline* (its tick plus one frame, or its push plus 3/4 of ``max_latency_ms``, whichever is later);
a frame
not rendered by then plays its audio with a stand-in picture, so a slow render costs pictures, not
a delay that the rest of the utterance would keep.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipsynckit.streaming.audio import to_mono_float


def frame_bound(j: int, sample_rate: int, fps: float) -> int:
    """First sample of frame ``j`` at ``sample_rate`` (rounded, so fractional frame lengths add up)."""
    return int(round(j * sample_rate / fps))


@dataclass
class Utterance:
    """Audio pushed between two flushes (or interrupts), as pushed, plus what the renderer has fed."""

    id: int
    sample_rate: int
    fps: float
    feats: Any  # StreamFeatures
    resampler: Any  # StreamResampler to the feature rate
    needed_model: Any  # frame -> model-rate samples its features need
    chunks: list[np.ndarray] = field(default_factory=list)
    chunk_starts: list[int] = field(default_factory=list)
    base: int = 0  # sample index of chunks[0][0] (older samples were released)
    n: int = 0  # samples pushed
    closed: bool = False
    planned: int = 0  # frames planned so far
    emitted: int = 0  # frames emitted so far
    finished: bool = False  # the features were told the utterance ended (renderer thread)
    pushes: list[tuple[int, float]] = field(default_factory=list)  # (end sample, push time) for latency
    last_push: float = 0.0
    model_chunks: list[np.ndarray] = field(default_factory=list)  # mono float32 at the features' rate
    model_n: int = 0  # samples resampled so far (all of model_chunks, fed or not)

    @property
    def n_frames(self) -> int | None:
        """Frames of a closed utterance: enough to play every pushed sample."""
        if not self.closed:
            return None
        return int(math.ceil(self.n * self.fps / self.sample_rate - 1e-9))

    def bound(self, j: int) -> int:
        return frame_bound(j, self.sample_rate, self.fps)

    def committed(self, j: int) -> bool:
        nf = self.n_frames
        if nf is not None:
            return j < nf
        return self.n >= self.bound(j + 1) and self.model_n >= int(self.needed_model(j))

    def append(self, arr: np.ndarray, now: float) -> None:
        self.chunks.append(arr)
        self.chunk_starts.append(self.n)
        self.n += len(arr)
        self.pushes.append((self.n, now))
        self.last_push = now
        self._resampled(self.resampler.push(to_mono_float(arr)))

    def close(self) -> None:
        """End of input: the resampler's tail goes to the features too."""
        if not self.closed:
            self.closed = True
            self._resampled(self.resampler.finish())

    def _resampled(self, y: np.ndarray) -> None:
        if len(y):
            self.model_chunks.append(y)
            self.model_n += len(y)

    def samples(self, a: int, b: int, like: np.ndarray) -> np.ndarray:
        """Samples ``[a, b)``; zeros past the end (the last frame of a flushed utterance)."""
        shape = (b - a,) + like.shape[1:]
        out = np.zeros(shape, dtype=like.dtype)
        for start, c in zip(self.chunk_starts, self.chunks, strict=True):
            lo, hi = max(a, start), min(b, start + len(c))
            if lo < hi:
                out[lo - a : hi - a] = c[lo - start : hi - start]
        return out

    def push_time(self, end: int) -> float:
        """Clock time of the push that brought sample ``end - 1`` (the last push if beyond)."""
        for e, t in self.pushes:
            if e >= end:
                return t
        return self.last_push

    def forget_pushes(self, before: int) -> None:
        """Drop push stamps of samples before ``before`` (already played)."""
        i = 0
        while i < len(self.pushes) - 1 and self.pushes[i][0] < before:
            i += 1
        if i:
            del self.pushes[:i]

    def release(self) -> None:
        """Drop chunks that planning no longer needs (the features get their own resampled copy)."""
        keep = self.bound(self.planned)
        while self.chunks and self.chunk_starts[0] + len(self.chunks[0]) <= keep:
            self.chunks.pop(0)
            self.chunk_starts.pop(0)


@dataclass
class PlannedFrame:
    """One speech frame with its output tick, its audio and (once rendered) its image."""

    tick: int
    utt: Utterance
    j: int
    template_index: int
    audio: np.ndarray
    last: bool  # the utterance's last frame (known when it was planned)
    pushed_at: float = 0.0  # clock time of the push that brought its last sample (for latency)
    deadline: float = math.inf  # clock time after which it is not worth rendering (real time)
    image: np.ndarray | None = None
    error: BaseException | None = None
    cancelled: bool = False
    dropped: bool = False  # not rendered by its deadline: plays with a stand-in picture
    done: threading.Event = field(default_factory=threading.Event)


def next_tick(
    now: float,
    t0: float,
    fps: float,
    last_planned: int,
    next_emit: int,
    first_of_run: bool,
    budget_s: float,
    realtime: bool,
) -> tuple[int, bool]:
    """Tick for a frame committed at ``now``; also whether it starts a new run (start or underrun)."""
    floor_tick = max(last_planned + 1, next_emit)
    if not realtime:
        return floor_tick, False
    k_now = int(math.ceil((now - t0) * fps - 1e-9))  # first tick not in the past
    if first_of_run or last_planned + 1 < k_now:
        k = int(math.ceil((now + budget_s - t0) * fps - 1e-9))
        return max(k, floor_tick), True
    return floor_tick, False
