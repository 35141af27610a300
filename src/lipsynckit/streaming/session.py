"""A streaming session: audio chunks in, lip-synced frames out, each frame carrying its own audio.

The invariant that keeps sound and picture together: the concatenation of ``frame.audio`` over a
session is the pushed audio, sample for sample at the pushed rate, with silence for idle frames (and
for the rest of the last frame of an utterance). A transport never needs a second audio path.

Threads: the caller pushes (``push_audio``/``flush``/``interrupt``: cheap, under one lock); the
renderer (two threads) makes planned frames; the consumer iterating ``frames()`` paces them. Every
decision about *which* frame plays at *which* tick is made from clock timestamps under the lock
(:mod:`lipsynckit.streaming.timeline`), so with a :class:`~lipsynckit.streaming.clock.ManualClock`
a session is deterministic; rendering speed only decides whether a frame's picture is rendered or
dropped (its audio always plays, on its tick: audio is the master clock).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipsynckit.errors import AudioError, LipSyncError, StreamClosedError
from lipsynckit.streaming.audio import StreamResampler, as_pcm
from lipsynckit.streaming.avatar import StreamAvatar
from lipsynckit.streaming.clock import Clock, MonotonicClock, wait_until
from lipsynckit.streaming.features import features_for
from lipsynckit.streaming.options import StreamOptions
from lipsynckit.streaming.render import Renderer
from lipsynckit.streaming.stats import StreamStats
from lipsynckit.streaming.timeline import PlannedFrame, Utterance, frame_bound, next_tick

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One output frame and the exact audio that plays with it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, the full template frame with the new mouth (read-only)
    audio: np.ndarray  # the samples that play with this frame, at the pushed rate, dtype and channels
    index: int  # output frame number (idle frames included in real time)
    pts: float  # media time: index / fps
    speaking: bool
    utterance: int | None = None  # which utterance (counted from 0) this speech frame belongs to
    end_of_speech: bool = False  # the last frame of an utterance


class StreamSession:
    """Made by :func:`lipsynckit.stream`; see the user guide's "Real-time streaming"."""

    def __init__(
        self,
        model: Any,
        avatar: StreamAvatar,
        options: StreamOptions,
        clock: Clock | None = None,
    ) -> None:
        from lipsynckit.pipeline import shared_scheduler

        self.model = model
        self.avatar = avatar
        self.options = options
        self.fps = float(options.fps)
        self.clock: Clock = clock or MonotonicClock()
        self._cv = threading.Condition()
        self._rate: int | None = None
        self._like = np.zeros(0, dtype=np.float32)  # dtype and channels of frame audio
        self._utts: deque[Utterance] = deque()  # utterances with frames still to plan
        self._plan: deque[PlannedFrame] = deque()  # planned, not yet taken by the pacer
        self._next_utt = 0
        self._last_planned = -1
        self._next_emit = 0
        self._playing: Utterance | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._waiting: PlannedFrame | None = None  # the frame the pacer waits on (woken by close)
        self._last_image: tuple[int, np.ndarray] | None = None  # (utterance, picture) last shown
        self.stats = StreamStats()
        # a frame is waited for until a quarter of the budget before it runs out: emitting a dropped
        # frame (waking the pacer on a loaded machine) then still lands within max_latency_ms
        self._wait_s = 0.75 * options.max_latency_ms / 1000.0
        self._timed = isinstance(self.clock, MonotonicClock)
        self._wake_late = 0.0  # how late waits that ran out woke up (moving average; wall clock only)
        shared = shared_scheduler(model, options.batch_size)
        scheduler = shared.__enter__()
        try:
            self._renderer = Renderer(model, avatar, scheduler, self._cv, self.clock)
        except BaseException:
            shared.__exit__(None, None, None)
            raise
        # close() or, for a session dropped without it, garbage collection stops the renderer and
        # releases the scheduler (the renderer's threads hold no reference to the session)
        self._finalizer = weakref.finalize(
            self, self._renderer.shutdown, lambda: shared.__exit__(None, None, None)
        )
        self._t0 = self.clock.now()

    # -- input ----------------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """The rate of ``frame.audio``: the first push's, ``options.sample_rate`` before it."""
        return self._rate or self.options.sample_rate

    @property
    def queued_seconds(self) -> float:
        """Pushed audio not yet played (seconds). A live source that cannot pause (a microphone) can
        trim its quiet input while this stays above the latency it wants (``serve`` does)."""
        with self._cv:
            return self._queued_s()

    def push_audio(self, pcm: Any, sample_rate: int) -> int | None:
        """Queue a chunk of any size: float32 in [-1, 1] or int16, ``(n,)`` or ``(n, channels)``, or
        int16 bytes. The first push fixes the session's rate, dtype and channels. Returns the id of the
        utterance the chunk joined (``frame.utterance`` of the frames that play it)."""
        arr = as_pcm(pcm, sample_rate)
        with self._cv:
            self._check_open()
            if self._rate is None:
                self._rate = int(sample_rate)
                self._like = np.zeros((0,) + arr.shape[1:], dtype=arr.dtype)
            elif (
                int(sample_rate) != self._rate
                or arr.dtype != self._like.dtype
                or arr.shape[1:] != self._like.shape[1:]
            ):
                raise AudioError(
                    f"pushed {arr.dtype} {arr.shape[1:] or 'mono'} at {sample_rate} Hz, but this session "
                    f"carries {self._like.dtype} {self._like.shape[1:] or 'mono'} at {self._rate} Hz",
                    stage="stream",
                    remedy="push one format per session (frames hand the pushed samples back as they came)",
                )
            if len(arr) == 0:
                return None
            if (
                self.options.realtime
                and self.options.max_queued_s is not None
                and self._queued_s() + len(arr) / self._rate > self.options.max_queued_s
            ):
                raise AudioError(
                    f"more than {self.options.max_queued_s} s of audio queued",
                    stage="stream",
                    remedy="consume frames() while pushing, or raise StreamOptions.max_queued_s",
                )
            now = self.clock.now()
            if not self._utts or self._utts[-1].closed:
                self._utts.append(self._new_utterance())
            utt = self._utts[-1]
            utt.append(arr, now)
            self.stats.pushed_samples += len(arr)
            self._plan_frames(now)
            self._cv.notify_all()
            return utt.id

    def flush(self) -> None:
        """End of an utterance: its last frames are rendered now, the missing look-ahead read as silence."""
        with self._cv:
            self._check_open()
            if self._utts and not self._utts[-1].closed:
                self._utts[-1].close()
                self._plan_frames(self.clock.now())
            self._cv.notify_all()

    def interrupt(self) -> float:
        """Barge-in: drop every queued sample and unplayed frame; returns the seconds of the current
        utterance (the one last pushed to) that played or are playing: 0.0 if it had not started or had
        already played to its end. At most one more speech frame follows."""
        with self._cv:
            self._check_open()
            for pf in self._plan:
                pf.cancelled = True
            self._plan.clear()
            played = 0.0
            u = self._utts[-1] if self._utts else self._playing
            nf = u.n_frames if u is not None else None
            if u is not None and (nf is None or u.emitted < nf):  # cut while it was playing (or queued)
                played = min(u.bound(u.emitted), u.n) / u.sample_rate
            self._utts.clear()
            self._playing = None
            self._last_planned = self._next_emit - 1
            self.stats.interrupts += 1
            self._cv.notify_all()
        log.debug("stream: interrupted after %.3f s", played)
        return played

    def close(self) -> None:
        """Stop at once (whatever is backed up): iteration ends, the renderer stops, and the model's
        scheduler is released once frames already handed to it come back (on a background thread)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            for pf in self._plan:
                pf.cancelled = True
            self._plan.clear()
            self._utts.clear()  # their audio and resampler states go now, not at interpreter exit
            self._playing = None
            waiting = self._waiting
            self._cv.notify_all()
        if waiting is not None:  # the pacer waits on this frame's render: let it go
            waiting.cancelled = True
            waiting.done.set()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- output ---------------------------------------------------------------------------------------

    def frames(self, stop_when_drained: bool | None = None) -> Iterator[Frame]:
        """Frames in order. Real time: one per ``1/fps`` of the clock, until ``close`` (or, with
        ``stop_when_drained=True``, until everything pushed has played: the first idle tick with no
        audio left; unflushed audio is auto-flushed after ``auto_flush_s``).
        Otherwise: one per ``1/fps`` of pushed audio, as fast as made; with ``stop_when_drained``
        (the default off real time) the iteration ends once everything pushed has played (unflushed
        audio at that point is flushed)."""
        if self.options.realtime:
            return self._frames_realtime(bool(stop_when_drained))
        return self._frames_offline(True if stop_when_drained is None else stop_when_drained)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    async def __aiter__(self) -> AsyncIterator[Frame]:
        """``async for frame in session``: the same frames, each waited for on a worker thread."""
        it = self.frames()
        loop = asyncio.get_running_loop()
        end = object()
        while True:
            frame = await loop.run_in_executor(None, next, it, end)
            if frame is end:
                return
            yield frame  # type: ignore[misc]

    def _frames_realtime(self, stop: bool = False) -> Iterator[Frame]:
        while True:
            with self._cv:
                if self._closed:
                    return
                k = self._next_emit
                t = self._t0 + k / self.fps
            self.clock.sleep_until(t)
            with self._cv:
                if self._closed:
                    return
                now = self.clock.now()
                if now - t > self.options.max_lag_s and not self._plan and not self._utts:
                    # far behind with nothing to say: skip idle frames. Behind during speech, the
                    # frames are emitted as fast as they come (no tick moves): latency returns.
                    self._t0 = now - k / self.fps
                    t = now
                    self.stats.reanchors += 1
                self._auto_flush(now)
                pf = self._take(k)
                if pf is None and stop and self.stats.pushed_samples and not self._plan and not self._utts:
                    return  # everything pushed has played
                self._next_emit = k + 1
                self._waiting = pf
            try:
                frame = self._emit(pf, k, t)
            finally:
                self._waiting = None
            if self._closed:
                return
            yield frame

    def _frames_offline(self, stop: bool) -> Iterator[Frame]:
        while True:
            with self._cv:
                while not self._plan:
                    if self._closed or self._error is not None:
                        return
                    if stop:
                        if not self._utts:
                            return
                        self._utts[-1].close()  # nothing more can be rendered: end of input
                        self._plan_frames(self.clock.now())
                        if self._plan:
                            break
                    self._cv.wait()
                pf = self._plan[0]
                k = pf.tick
                self._take(k)
                self._next_emit = k + 1
            yield self._emit(pf, k, None)

    # -- internals ------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError(
                "the stream session is closed", stage="stream", remedy="open a new session"
            )

    def _queued_s(self) -> float:
        return sum((u.n - min(u.n, u.bound(u.emitted))) / u.sample_rate for u in self._utts)

    def _new_utterance(self) -> Utterance:
        assert self._rate is not None
        feats = features_for(self.model, self.fps, self.options.history_s)
        uid = self._next_utt
        self._next_utt += 1
        return Utterance(
            id=uid,
            sample_rate=self._rate,
            fps=self.fps,
            feats=feats,
            resampler=StreamResampler(self._rate, feats.sample_rate),
            needed_model=feats.needed_samples,
        )

    def _plan_frames(self, now: float) -> None:
        """Give every newly committed frame its tick (the caller holds the lock)."""
        while self._utts:
            u = self._utts[0]
            while u.committed(u.planned):
                j = u.planned
                k, new_run = next_tick(
                    now,
                    self._t0,
                    self.fps,
                    self._last_planned,
                    self._next_emit,
                    j == 0,
                    self.options.render_budget_s,
                    self.options.realtime,
                )
                if new_run and j > 0:
                    self.stats.underruns += 1
                nf = u.n_frames
                pushed_at = u.push_time(min(u.bound(j + 1), u.n))
                deadline = math.inf
                if self.options.realtime:
                    deadline = max(self._t0 + (k + 1) / self.fps, pushed_at + self._wait_s)
                pf = PlannedFrame(
                    tick=k,
                    utt=u,
                    j=j,
                    template_index=self.avatar.index(k),
                    audio=u.samples(u.bound(j), u.bound(j + 1), self._like),
                    last=nf is not None and j == nf - 1,
                    pushed_at=pushed_at,
                    deadline=deadline,
                )
                self._plan.append(pf)
                self._renderer.put(pf)
                self._last_planned = k
                u.planned += 1
            u.release()
            nf = u.n_frames
            if nf is None or u.planned < nf:
                break
            self._utts.popleft()

    def _auto_flush(self, now: float) -> None:
        limit = self.options.auto_flush_s
        if limit is None or not self._utts:
            return
        u = self._utts[-1]
        if not u.closed and u.n > 0 and now - u.last_push >= limit:
            u.close()
            self.stats.auto_flushes += 1
            self._plan_frames(now)

    def _take(self, k: int) -> PlannedFrame | None:
        """The planned frame for tick ``k``, if any (the caller holds the lock)."""
        if self._plan and self._plan[0].tick == k:
            pf = self._plan.popleft()
            pf.utt.emitted += 1
            self._playing = pf.utt
            return pf
        return None

    def _idle(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = frame_bound(k + 1, self.sample_rate, self.fps) - frame_bound(k, self.sample_rate, self.fps)
        return self.avatar.frames[self.avatar.index(k)], np.zeros(
            (n,) + self._like.shape[1:], self._like.dtype
        )

    def _emit(self, pf: PlannedFrame | None, k: int, tick_time: float | None) -> Frame:
        pts = k / self.fps
        if pf is not None:
            # stop waiting early by how late this thread has been waking up (wall clock only), so a
            # dropped frame still goes out within the budget when the machine is starved
            give_up = pf.deadline - self._wake_late
            if not wait_until(self.clock, pf.done, give_up):  # audio is the master: drop the picture
                pf.cancelled = True
                pf.dropped = True
                if self._timed:
                    late = max(0.0, self.clock.now() - give_up)
                    self._wake_late = min(self._wait_s / 2, 0.8 * self._wake_late + 0.2 * late)
            if pf.error is not None and not (self._closed or pf.cancelled):  # after close: just end
                with self._cv:
                    self._error = pf.error
                raise LipSyncError(
                    f"frame {pf.j} of utterance {pf.utt.id} failed: {pf.error}", stage="stream"
                ) from pf.error
        now = self.clock.now()
        late = tick_time is not None and now - tick_time > 1.0 / self.fps
        u = pf.utt if pf is not None else None
        if (
            pf is None
            or u is None
            or (pf.image is None and not pf.dropped)
            or (pf.cancelled and not pf.dropped)
        ):
            image, audio = self._idle(k)
            if pf is not None:  # cancelled by an interrupt after the pacer took it: its audio is dropped
                audio = np.zeros_like(pf.audio)
            self.stats.record_idle(late)
            return Frame(image=image, audio=audio, index=k, pts=pts, speaking=False)
        repeated = False
        if pf.dropped or pf.image is None:  # not rendered in time: the last face of this utterance
            last = self._last_image
            repeated = last is not None and last[0] == u.id
            image = last[1] if repeated and last is not None else self.avatar.frames[pf.template_index]
        else:
            image = self._fade(pf)
            self._last_image = (u.id, image)
        u.forget_pushes(u.bound(pf.j))
        self.stats.record_speech(late, now - pf.pushed_at, dropped=pf.dropped, repeated=repeated)
        return Frame(
            image=image,
            audio=pf.audio,
            index=k,
            pts=pts,
            speaking=True,
            utterance=u.id,
            end_of_speech=pf.last,
        )

    def _fade(self, pf: PlannedFrame) -> np.ndarray:
        """Blend the new mouth in over the first frames of an utterance and out over its last ones."""
        c = self.options.crossfade_frames if self.options.realtime else 0
        assert pf.image is not None
        if c == 0:
            return pf.image
        alpha = min(1.0, (pf.j + 1) / (c + 1))
        nf = pf.utt.n_frames
        if nf is not None:
            alpha = min(alpha, (nf - pf.j) / (c + 1))
        if alpha >= 1.0:
            return pf.image
        base = self.avatar.frames[pf.template_index].astype(np.float32)
        blend = base + alpha * (pf.image.astype(np.float32) - base)
        return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
