"""Work units and jobs: one job is one output video's stream of frames into the scheduler."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lipsynckit.errors import SchedulerClosedError
from lipsynckit.types import WorkItem

if TYPE_CHECKING:
    import threading

    from lipsynckit.scheduler.options import SchedulerOptions


class JobHost(Protocol):
    """What a :class:`Job` needs of the scheduler that owns it (its lock, its state, its options), so
    that this module does not import the scheduler (:class:`~lipsynckit.scheduler.core.BatchScheduler`)."""

    options: SchedulerOptions
    _cv: threading.Condition
    _stopped: bool

    def _thread_alive(self) -> bool: ...


@dataclass
class _Unit:
    """Frames that must be generated together: one frame, or one chunk of consecutive frames of a job."""

    job: Job
    seqs: list[int]
    items: list[WorkItem]


@dataclass
class _Launched:
    """A batch in flight on the CUDA streams."""

    units: list[_Unit]
    keep: list[Any]  # device handles kept alive until the copies that use them are done
    outputs: list[np.ndarray]
    done: Any  # torch.cuda.Event after device-to-host copies
    start: Any  # compute start / end events (timing)
    end: Any


class Job:
    """One stream of work items (one output video). Created by :meth:`BatchScheduler.open_job`.

    ``submit`` from a producer thread, ``results`` from a consumer thread (or the same thread after
    ``close``). Results come back in submit order.
    """

    def __init__(self, sched: JobHost, job_id: int) -> None:
        self.id = job_id
        self._s = sched
        self._queue: deque[_Unit] = deque()
        self._queued_items = 0
        self._partial: list[tuple[int, WorkItem]] = []
        self._next_seq = 0
        self._closed = False
        self._done: dict[int, tuple[int, np.ndarray]] = {}
        self._errors: dict[int, BaseException] = {}
        self._failure: BaseException | None = None
        self._consumer_waiting = False
        self._producer_blocked = False
        self.max_queue_depth = 0
        self.items_done = 0

    def __repr__(self) -> str:
        return f"Job(id={self.id}, submitted={self._next_seq}, done={self.items_done}, closed={self._closed})"

    @property
    def submitted(self) -> int:
        return self._next_seq

    def submit(self, item: WorkItem) -> None:
        """Queue one frame; blocks while this job already has ``queue_size`` frames queued (back-pressure)."""
        if item.job_id != self.id:
            raise ValueError(f"WorkItem.job_id is {item.job_id}, but it was submitted to job {self.id}")
        s = self._s
        with s._cv:
            self._check_open()
            seq = self._next_seq
            self._next_seq += 1
            self._partial.append((seq, item))
            if len(self._partial) >= s.options.chunk_frames:
                self._enqueue_partial()

    def close(self) -> None:
        """No more items: flushes a short last chunk and lets ``results`` finish."""
        s = self._s
        with s._cv:
            if self._closed:
                return
            if self._partial and self._failure is None and not s._stopped:
                self._enqueue_partial(block=False)
            self._closed = True
            s._cv.notify_all()

    def cancel(self) -> int:
        """Withdraw the frames still queued (not yet in a batch) and close the job: ``results()`` raises
        :class:`SchedulerClosedError` for them. Returns how many were withdrawn. For a consumer that
        stopped wanting them (a closed streaming session), so the device does not generate them."""
        s = self._s
        with s._cv:
            left = self.take_queued(with_partial=True)
            n = sum(len(u.items) for u in left)
            if left:
                self.fail_units(left, SchedulerClosedError(f"job {self.id} cancelled", stage="model"))
            self._closed = True
            s._cv.notify_all()
            return n

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def results(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(item.index, output)`` in submit order; raises the error of the first failed frame."""
        s = self._s
        seq = 0
        while True:
            with s._cv:
                while True:
                    if seq in self._errors:
                        raise self._errors[seq]
                    if seq in self._done:
                        out = self._done.pop(seq)
                        if s.options.result_buffer is not None:
                            s._cv.notify_all()  # the device may have passed this job over
                        break
                    if self._closed and seq >= self._next_seq:
                        return
                    if s._stopped and not s._thread_alive():
                        raise SchedulerClosedError(
                            f"scheduler stopped before frame {seq} of job {self.id} was generated",
                            stage="model",
                        )
                    if not self._consumer_waiting:  # notify on the change only: no wake-up storms
                        self._consumer_waiting = True
                        s._cv.notify_all()
                    s._cv.wait(timeout=0.5)
                self._consumer_waiting = False
            yield out
            seq += 1

    # -- internals (called with the scheduler's condition held) ----------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise SchedulerClosedError(f"job {self.id} is closed; open a new job", stage="model")
        if self._s._stopped:
            raise SchedulerClosedError(
                "the scheduler has stopped",
                stage="model",
                remedy="submit work inside the scheduler's with-block",
            )

    def _enqueue_partial(self, block: bool = True) -> None:
        s = self._s
        unit = _Unit(self, [q for q, _ in self._partial], [it for _, it in self._partial])
        self._partial = []
        cap = s.options.queue_size
        while block and self._queue and self._queued_items + len(unit.items) > cap:
            if not self._producer_blocked:  # notify on the change only: no wake-up storms
                self._producer_blocked = True
                s._cv.notify_all()
            s._cv.wait()
            if self._failure is not None or s._stopped:
                self._producer_blocked = False
                self.fail_units(
                    [unit], self._failure or SchedulerClosedError("scheduler stopped", stage="model")
                )
                self._check_open()
        self._producer_blocked = False
        self._queue.append(unit)
        self._queued_items += len(unit.items)
        self.max_queue_depth = max(self.max_queue_depth, self._queued_items)
        s._cv.notify_all()

    # -- the scheduler's side (called with its condition held; the only way it touches a job) ---------

    @property
    def queued_items(self) -> int:
        return self._queued_items

    @property
    def urgent(self) -> bool:
        """Waiting for more frames is pointless: closed, or its producer or consumer is waiting on us."""
        return self._closed or self._producer_blocked or self._consumer_waiting

    @property
    def producer_idle(self) -> bool:
        """No more frames are coming soon (closed, or the producer is blocked on a full queue)."""
        return self._closed or self._producer_blocked

    @property
    def finished(self) -> bool:
        """Closed, nothing queued, and every frame generated or the job failed."""
        return (
            self._closed
            and not self._queue
            and not self._partial
            and (self.items_done >= self._next_seq or self._failure is not None)
        )

    def ready(self) -> bool:
        """Work queued, and room for its results (``result_buffer``)."""
        buf = self._s.options.result_buffer
        return bool(self._queue) and (buf is None or len(self._done) < buf)

    def next_unit_size(self) -> int | None:
        return len(self._queue[0].items) if self._queue else None

    def pop(self) -> _Unit:
        unit = self._queue.popleft()
        self._queued_items -= len(unit.items)
        return unit

    def take_queued(self, with_partial: bool = False) -> list[_Unit]:
        """Remove and return every queued unit (and the short chunk being filled, when asked)."""
        left = list(self._queue)
        self._queue.clear()
        self._queued_items = 0
        if with_partial and self._partial:
            left.append(_Unit(self, [q for q, _ in self._partial], [it for _, it in self._partial]))
            self._partial = []
        return left

    def deliver(self, seq: int, index: int, output: np.ndarray) -> bool:
        """Store one generated frame; False when the job had already failed (the frame is reported
        through that error instead)."""
        self.items_done += 1
        if self._failure is None:
            self._done[seq] = (index, output)
            return True
        self._errors.setdefault(seq, self._failure)
        return False

    def fail_units(self, units: Iterable[_Unit], exc: BaseException) -> None:
        for u in units:
            for q in u.seqs:
                self._errors.setdefault(q, exc)
        if self._failure is None:
            self._failure = exc
