"""The session's renderer: planned frames → features → the model's shared scheduler → composite.

Two threads per session: one computes features and submits work items to the session's job on the
model's scheduler (which batches them with every other session's), the other reads the job's results
in order and pastes each face back. Frames are rendered in tick order as soon as they are planned,
so a frame is usually ready before its tick; the pacer waits on the frame's event until the frame's
deadline. When rendering falls behind, the submit thread skips frames it cannot finish by their
deadline (judged by the recent submit-to-result time) and hands the rest to the scheduler back to
back, so they are generated in one batch (the scheduler batches whatever is queued, up to its
``max_batch``): the renderer catches up instead of making every later frame late.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from typing import Any

import numpy as np

from lipsynckit.streaming.avatar import StreamAvatar
from lipsynckit.streaming.clock import MonotonicClock
from lipsynckit.streaming.timeline import PlannedFrame
from lipsynckit.types import WorkItem

log = logging.getLogger(__name__)


_CLOSING: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # shutdowns still under way


@atexit.register
def _finish_closing(limit_s: float = 30.0) -> None:
    """At exit, let closed sessions' last batch finish: a model still running in a daemon thread when
    the interpreter goes away aborts the process ("terminate called without an active exception")."""
    end = time.monotonic() + limit_s
    for t in list(_CLOSING):
        t.join(max(0.0, end - time.monotonic()))


class Renderer:
    """Renders :class:`PlannedFrame` s queued with :meth:`put`; sets each frame's ``done`` event."""

    def __init__(
        self, model: Any, avatar: StreamAvatar, scheduler: Any, lock: threading.Condition, clock: Any
    ) -> None:
        self.model = model
        self.avatar = avatar
        self.clock = clock
        self._lock = lock  # the session's condition: guards utterance audio
        # recent submit-to-result time (moving average), measured on the wall clock only: under a
        # ManualClock it would depend on how far the consumer's thread had moved the time, so there
        # only frames whose deadline has already passed are skipped (deterministic)
        self.expected_s = 0.0
        self._timed = isinstance(clock, MonotonicClock)
        self.skipped = 0
        self._job = scheduler.open_job()
        self._queue: deque[PlannedFrame] = deque()
        self._inflight: deque[tuple[PlannedFrame, float]] = deque()  # (frame, clock time submitted)
        self._cv = threading.Condition()
        self._stop = False
        self.render_s = 0.0
        self.rendered = 0
        self._submit_t = threading.Thread(target=self._submit_loop, name="lsk-stream-submit", daemon=True)
        self._collect_t = threading.Thread(target=self._collect_loop, name="lsk-stream-collect", daemon=True)
        self._submit_t.start()
        self._collect_t.start()

    def put(self, frame: PlannedFrame) -> None:
        with self._cv:
            self._queue.append(frame)
            self._cv.notify_all()

    def shutdown(self, release: Any = None) -> None:
        """Stop without waiting: queued frames are cancelled now; a background thread lets the frames
        already with the scheduler come back, then calls ``release`` (the scheduler's reference)."""
        with self._cv:
            self._stop = True
            for pf in self._queue:
                pf.cancelled = True
                pf.done.set()
            self._queue.clear()
            self._cv.notify_all()

        def finish() -> None:
            try:
                self._submit_t.join()
                self._job.cancel()  # frames not yet in a batch are not generated for nobody
                self._collect_t.join()
            finally:
                if release is not None:
                    release()

        t = threading.Thread(target=finish, name="lsk-stream-close", daemon=True)
        _CLOSING.add(t)
        t.start()

    def _feed(self, pf: PlannedFrame) -> None:
        """Hand the utterance's new resampled samples to its features (outside the session lock)."""
        utt = pf.utt
        with self._lock:
            new, utt.model_chunks = utt.model_chunks, []  # handed over: the features keep what they need
            closed = utt.closed
        for c in new:
            utt.feats.push(c)
        if closed and not utt.finished:
            utt.feats.finish()
            utt.finished = True

    def _submit_loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                pf = self._queue.popleft()
            if pf.cancelled:
                pf.done.set()
                continue
            if self.clock.now() + self.expected_s > pf.deadline:  # cannot be ready in time: skip it
                pf.dropped = True
                self.skipped += 1
                self.expected_s *= 0.5  # the estimate must come down again, or it would skip forever
                pf.done.set()
                continue
            t0 = time.perf_counter()
            try:
                self._feed(pf)
                row = pf.utt.feats.row(pf.j)
                face = self.avatar.faces[pf.template_index]
                if face is None:  # no face in this template frame: it plays unchanged
                    pf.image = self.avatar.frames[pf.template_index]
                    pf.done.set()
                    continue
                with self._cv:
                    self._inflight.append((pf, self.clock.now()))
                self._job.submit(WorkItem(job_id=self._job.id, index=pf.tick, face=face, audio=row))
            except BaseException as exc:  # noqa: BLE001 - reported by the frame, raised by the pacer
                log.error("stream: frame %d of utterance %d failed: %s", pf.j, pf.utt.id, exc)
                pf.error = exc
                pf.done.set()
                with self._cv:
                    self._inflight = deque(e for e in self._inflight if e[0] is not pf)
            finally:
                self.render_s += time.perf_counter() - t0

    def _collect_loop(self) -> None:
        try:
            for _index, generated in self._job.results():
                with self._cv:
                    pf, submitted = self._inflight.popleft()
                if self._timed:
                    self.expected_s = 0.7 * self.expected_s + 0.3 * (self.clock.now() - submitted)
                t0 = time.perf_counter()
                try:
                    if not pf.cancelled:
                        frame = self.avatar.frames[pf.template_index]
                        face = self.avatar.faces[pf.template_index]
                        assert face is not None
                        pf.image = self.model.composite(frame, face, np.asarray(generated))
                        self.rendered += 1
                except BaseException as exc:  # noqa: BLE001
                    pf.error = exc
                finally:
                    self.render_s += time.perf_counter() - t0
                    pf.done.set()
        except BaseException as exc:  # noqa: BLE001 - a failed batch fails the frames waiting on it
            if not self._stop:  # after shutdown the job was cancelled on purpose
                log.error("stream: the model failed: %s", exc)
            with self._cv:
                left = list(self._inflight)
                self._inflight.clear()
            for pf, _t in left:
                pf.error = exc
                pf.done.set()
