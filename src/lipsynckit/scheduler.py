"""The batching scheduler: one device thread batches work items across frames and concurrent jobs.

Why one engine: every model spends its time in ``generate`` on batches of face crops. Batching frames
(and frames of several concurrent jobs) keeps the device busy; bounded queues keep memory flat with
video length; halving the batch on out-of-memory turns a crash into a slower run; per-job ordering
lets the compositor and encoder stream results as they arrive.

Usage::

    with BatchScheduler(model.generate, SchedulerOptions(max_batch=16)) as sched:
        job = sched.open_job()
        # producer thread: job.submit(WorkItem(job.id, i, face, audio)) ...; job.close()
        for index, face in job.results():  # submit order
            ...
    print(sched.stats())

On CUDA, ``generate`` may be a :class:`StagedGenerate` (``to_device`` / ``compute`` / ``to_host``): the
scheduler then runs host-to-device copies, compute and device-to-host copies on three CUDA streams
joined by events, so that the copies of one batch overlap the compute of the next. Plain callables
simply run (their batches' audio tensors are pinned so ``.to(device, non_blocking=True)`` overlaps).

CPU stages of the pipeline (decode, prepare, composite, encode) overlap with :func:`map_ordered`.

Batch formation: a batch launches when it is full, or once ``max_wait_ms`` has passed since its first
frame was queued and it holds ``min_batch`` frames, or at once when no more work can come (every job
closed or its producer blocked on a full queue). A consumer waiting in ``results()`` for a frame that is
queued also flushes it after ``max_wait_ms``, so ``min_batch`` never deadlocks a thread that submits and
then reads. Memory: ``queue_size`` bounds each job's input queue; generated frames wait in the job
until ``results()`` takes them, so read results while submitting (another thread) for flat memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lipsynckit.errors import DeviceOutOfMemoryError, LipSyncError
from lipsynckit.types import ModelBatch, WorkItem

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_OOM_REMEDY = (
    "free device memory (close other programs using the GPU), use a smaller input resolution or a "
    "half-precision dtype, or run on CPU with --device cpu"
)


# --------------------------------------------------------------------------------------------------
# Options, stats, errors
# --------------------------------------------------------------------------------------------------


def _default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


class SchedulerOptions(BaseModel):
    """How the scheduler forms batches. Defaults follow the official inference (Wav2Lip: batches of 16)."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(default=16, ge=1, description="largest batch, in frames")
    min_batch: int = Field(
        default=1,
        ge=1,
        description="smallest batch launched once max_wait_ms has passed, unless no more work can come "
        "(jobs closed, a producer blocked on a full queue, a consumer waiting on the queued frames)",
    )
    max_wait_ms: float = Field(
        default=5.0, ge=0.0, description="how long to wait for more work to fill a batch"
    )
    queue_size: int = Field(default=64, ge=1, description="queued frames per job before submit() blocks")
    result_buffer: int | None = Field(
        default=None,
        ge=1,
        description="generated frames a job may hold unread before its work is passed over (None: no bound); "
        "bounds memory when a consumer is slow, so results() must run beside submit()",
    )
    chunk_frames: int = Field(
        default=1,
        ge=1,
        description="frames generated together (LatentSync: 16); chunks are never split or mixed, so a "
        "batch holds at least one chunk even when max_batch is smaller",
    )
    device: str = Field(default="cpu", description="'cpu', 'cuda' or 'cuda:N'")
    pin_memory: bool | None = Field(
        default=None, description="stage through pinned host memory (None: on CUDA)"
    )
    workers: int = Field(default_factory=_default_workers, ge=0, description="threads per CPU stage")
    memory_budget_bytes: int | None = Field(
        default=None,
        ge=1,
        description="device working memory a batch may use; the batch size is probed from it",
    )
    model_name: str = Field(default="", description="key of the process-wide batch-size table")

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        try:
            kind = torch.device(v).type
        except RuntimeError as exc:
            raise ValueError(f"not a torch device: {v!r} ({exc})") from None
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {v!r}")
        return v

    @model_validator(mode="after")
    def _check_sizes(self) -> SchedulerOptions:
        if self.min_batch > self.max_batch:
            raise ValueError(f"min_batch ({self.min_batch}) > max_batch ({self.max_batch})")
        return self


class SchedulerStats(BaseModel):
    """What the scheduler did: how full the batches were and where the time went."""

    batches: int = 0
    items: int = 0
    failed_items: int = 0
    mean_batch_fill: float = 0.0  # items / batch size in force, averaged over batches
    device_busy_fraction: float = 0.0  # time inside generate / wall time since start
    wall_s: float = 0.0
    stage_s: dict[str, float] = Field(default_factory=dict)  # seconds per stage (wait, generate, route, ...)
    max_queue_depth: dict[int, int] = Field(default_factory=dict)  # job id -> most frames queued at once
    oom_retries: int = 0
    batch_size: int = 0  # batch size now in force
    batch_size_history: list[int] = Field(default_factory=list)  # every batch size in force, in order


class FrameGenerationError(LipSyncError):
    """``generate`` failed on a batch; names the job and the frames that were in it."""

    def __init__(
        self, message: str, *, job_id: int, indices: Sequence[int], remedy: str | None = None
    ) -> None:
        self.job_id = job_id
        self.indices = list(indices)
        super().__init__(message, stage="model", remedy=remedy)


class FrameOutOfMemoryError(DeviceOutOfMemoryError):
    """Out of device memory at the smallest batch (one frame or one chunk); names job and frames."""

    def __init__(self, message: str, *, job_id: int, indices: Sequence[int]) -> None:
        self.job_id = job_id
        self.indices = list(indices)
        super().__init__(message, stage="model", remedy=_OOM_REMEDY)


class SchedulerClosedError(LipSyncError):
    """Work submitted to, or left in, a scheduler that has stopped."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the errors that mean "this batch does not fit" (CUDA OOM, CPU allocator failures)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, (MemoryError, DeviceOutOfMemoryError)):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "can't allocate memory" in msg
    return False


# --------------------------------------------------------------------------------------------------
# Process-wide batch-size table (memory budget probes and OOM reductions are remembered here)
# --------------------------------------------------------------------------------------------------

BatchKey = tuple[str, str, tuple[int, ...]]
_TABLE_LOCK = threading.Lock()
_BATCH_TABLE: dict[BatchKey, int] = {}


def remembered_batch_size(model_name: str, device: str, resolution: tuple[int, ...]) -> int | None:
    """The batch size learned for (model, device, crop resolution) in this process, if any."""
    with _TABLE_LOCK:
        return _BATCH_TABLE.get((model_name, str(device), tuple(resolution)))


def remember_batch_size(model_name: str, device: str, resolution: tuple[int, ...], size: int) -> None:
    """Record a batch size that fits, so later schedulers for the same key skip the probe."""
    with _TABLE_LOCK:
        _BATCH_TABLE[(model_name, str(device), tuple(resolution))] = int(size)


def forget_batch_sizes() -> None:
    """Clear the table (tests; or after the device's free memory changed)."""
    with _TABLE_LOCK:
        _BATCH_TABLE.clear()


# --------------------------------------------------------------------------------------------------
# Memory meters for the budget probe
# --------------------------------------------------------------------------------------------------


class MemoryMeter(Protocol):
    """Measures the peak memory a probe batch used."""

    def reset(self) -> int:
        """Start a measurement; returns the bytes in use now."""
        ...

    def peak(self) -> int:
        """Peak bytes in use since :meth:`reset`."""
        ...


class CudaMemoryMeter:
    """Peak bytes allocated by torch's caching allocator on one CUDA device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> int:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device))


class RssMemoryMeter:
    """Peak resident set size of this process (Linux: VmHWM, reset through /proc/self/clear_refs).

    It sees every allocator (torch, numpy) but also other threads of the process, and memory the
    allocator reuses without touching new pages: an estimate, which OOM halving backs up.
    """

    @staticmethod
    def available() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return RssMemoryMeter._read("VmHWM") > 0
        except OSError:
            return False

    @staticmethod
    def _read(field_name: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def reset(self) -> int:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return self._read("VmRSS")

    def peak(self) -> int:
        return self._read("VmHWM")


# --------------------------------------------------------------------------------------------------
# CUDA staging hooks
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class StagedGenerate(Protocol):
    """A generate split in three so copies and compute overlap on separate CUDA streams.

    ``to_device`` runs with ``stream`` current (a copy stream; None on CPU) and should copy from pinned
    host memory with ``non_blocking=True`` (see :func:`host_to_device`); ``compute`` runs on the compute
    stream; ``to_host`` runs on the device-to-host stream and may return numpy views of pinned tensors
    filled by non-blocking copies (see :func:`device_to_host`): the scheduler waits on an event before
    handing them to jobs.
    """

    def to_device(self, batch: ModelBatch, stream: Any | None) -> Any: ...

    def compute(self, handle: Any) -> Any: ...

    def to_host(self, device_out: Any, stream: Any | None) -> list[np.ndarray]: ...


def host_to_device(
    arrays: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    device: torch.device | str,
    pin_memory: bool = True,
) -> torch.Tensor:
    """Stack host arrays into one (pinned) tensor and copy it to ``device`` on the current stream.

    The copy is asynchronous when the buffer is pinned; the caching host allocator keeps the pinned
    block alive until the copy is done.
    """
    if isinstance(arrays, torch.Tensor):
        host = arrays
    elif isinstance(arrays, np.ndarray):
        host = torch.from_numpy(np.ascontiguousarray(arrays))
    else:
        host = torch.from_numpy(np.ascontiguousarray(np.stack(list(arrays))))
    dev = torch.device(device)
    if dev.type != "cuda":
        return host.to(dev)
    if pin_memory and not host.is_pinned():
        host = host.pin_memory()
    return host.to(dev, non_blocking=pin_memory)


def device_to_host(tensor: torch.Tensor, pin_memory: bool = True) -> torch.Tensor:
    """Start a copy of a device tensor into a fresh (pinned) host tensor on the current stream.

    The result is valid only after the stream has reached this point (the scheduler waits on an event).
    """
    if tensor.device.type != "cuda":
        return tensor.detach().cpu()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=pin_memory)
    host.copy_(tensor.detach(), non_blocking=pin_memory)
    return host


# --------------------------------------------------------------------------------------------------
# CPU stage overlap
# --------------------------------------------------------------------------------------------------


def map_ordered(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    workers: int,
    max_pending: int | None = None,
    on_time: Callable[[float], None] | None = None,
) -> Iterator[R]:
    """Apply ``fn`` in a thread pool, yielding results in input order with at most ``max_pending`` in flight.

    Why: decode, detection, cropping, blending and encoding release the GIL in numpy/OpenCV/PyAV, so a
    few threads overlap them with each other and with the device thread, while the bound keeps memory
    flat. ``workers=0`` runs inline. An exception of ``fn`` is raised at its item's position.
    ``on_time(seconds)`` receives the time of each call (stage timing).
    """

    def timed(x: T) -> R:
        t0 = time.perf_counter()
        try:
            return fn(x)
        finally:
            if on_time is not None:
                on_time(time.perf_counter() - t0)

    if workers <= 0:
        for x in iterable:
            yield timed(x)
        return
    bound = max(1, max_pending if max_pending is not None else 2 * workers)
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lsk-cpu")
    try:
        for x in iterable:
            pending.append(pool.submit(timed, x))
            if len(pending) >= bound:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------


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

    def __init__(self, sched: BatchScheduler, job_id: int) -> None:
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
                self._fail_units(
                    [unit], self._failure or SchedulerClosedError("scheduler stopped", stage="model")
                )
                self._check_open()
        self._producer_blocked = False
        self._queue.append(unit)
        self._queued_items += len(unit.items)
        self.max_queue_depth = max(self.max_queue_depth, self._queued_items)
        s._cv.notify_all()

    def _ready(self) -> bool:
        """Work queued, and room for its results (``result_buffer``)."""
        buf = self._s.options.result_buffer
        return bool(self._queue) and (buf is None or len(self._done) < buf)

    def _pop(self) -> _Unit:
        unit = self._queue.popleft()
        self._queued_items -= len(unit.items)
        return unit

    def _fail_units(self, units: Iterable[_Unit], exc: BaseException) -> None:
        for u in units:
            for q in u.seqs:
                self._errors.setdefault(q, exc)
        if self._failure is None:
            self._failure = exc


# --------------------------------------------------------------------------------------------------
# The scheduler
# --------------------------------------------------------------------------------------------------


class BatchScheduler:
    """Runs ``generate`` on batches formed across frames and jobs, from one device thread.

    Fair: the device thread takes one unit (frame or chunk) from each job in turn, so concurrent jobs
    share batches. Ordered: each job's results come back in submit order. Bounded: ``submit`` blocks
    while the job has ``queue_size`` frames queued. Robust: on out-of-memory the batch is split in two
    and retried, and the smaller size is kept (and remembered per model, device and resolution); a
    failing batch fails only the jobs that had frames in it.
    """

    def __init__(
        self,
        generate: Callable[[ModelBatch], list[np.ndarray]] | StagedGenerate,
        options: SchedulerOptions | None = None,
        memory_meter: MemoryMeter | None = None,
    ) -> None:
        self.options = options or SchedulerOptions()
        self._generate = generate
        self._device = torch.device(self.options.device)
        self._cuda = self._device.type == "cuda" and torch.cuda.is_available()
        if self._device.type == "cuda" and not self._cuda:
            log.warning(
                "scheduler: device %s requested but CUDA is not available; running without streams",
                self.options.device,
            )
        pin = self.options.pin_memory
        self._pin = self._cuda if pin is None else (pin and self._cuda)
        self._staged = isinstance(generate, StagedGenerate)
        self._meter = memory_meter
        self._cv = threading.Condition()
        self._jobs: list[Job] = []
        self._next_job_id = 0
        self._rr = 0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._batch_size = self.options.max_batch
        self._key: BatchKey | None = None
        # stats
        self._t_start = 0.0
        self._t_stop: float | None = None
        self._busy_s = 0.0
        self._batches = 0
        self._items = 0
        self._failed = 0
        self._fill_sum = 0.0
        self._oom_retries = 0
        self._history: list[int] = [self._batch_size]
        self._stage_s: dict[str, float] = {}
        self._all_depths: dict[int, int] = {}
        self._stats_lock = threading.Lock()
        # CUDA streams (created on the device thread's first use)
        self._streams: tuple[Any, Any, Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> BatchScheduler:
        self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the device thread (the context manager does this)."""
        if self._thread is not None:
            return
        self._t_start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="lsk-device", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop: generate what is queued, fail what open jobs still hold back (short chunks), join the thread.

        Frames that were not generated are reported through their jobs' ``results()`` as
        :class:`SchedulerClosedError`; nothing is dropped silently.
        """
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._cv:
            for job in self._jobs:
                left = list(job._queue)
                job._queue.clear()
                job._queued_items = 0
                if job._partial:
                    left.append(_Unit(job, [q for q, _ in job._partial], [it for _, it in job._partial]))
                    job._partial = []
                if left:
                    n = sum(len(u.items) for u in left)
                    job._fail_units(
                        left,
                        SchedulerClosedError(
                            f"scheduler closed with {n} frame(s) of job {job.id} not generated",
                            stage="model",
                            remedy="close() every job and read its results() before leaving the scheduler",
                        ),
                    )
                    self._failed += n
            self._cv.notify_all()
        if self._t_stop is None:
            self._t_stop = time.perf_counter()

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def open_job(self) -> Job:
        """A new job; its items are batched together with those of every other open job."""
        if self._thread is None:
            self.start()
        with self._cv:
            if self._stopped:
                raise SchedulerClosedError("the scheduler has stopped", stage="model")
            job = Job(self, self._next_job_id)
            self._next_job_id += 1
            self._jobs.append(job)
            return job

    def map_ordered(
        self, fn: Callable[[T], R], iterable: Iterable[T], stage: str, max_pending: int | None = None
    ) -> Iterator[R]:
        """:func:`map_ordered` with ``options.workers`` threads, its time recorded under ``stage``."""
        return map_ordered(fn, iterable, self.options.workers, max_pending, on_time=self.stage_timer(stage))

    def stage_timer(self, stage: str) -> Callable[[float], None]:
        """A callback adding seconds to ``stats().stage_s[stage]`` (for the pipeline's CPU stages)."""

        def add(seconds: float) -> None:
            with self._stats_lock:
                self._stage_s[stage] = self._stage_s.get(stage, 0.0) + seconds

        return add

    @property
    def batch_size(self) -> int:
        """The batch size in force (frames)."""
        return self._batch_size

    def stats(self) -> SchedulerStats:
        """A snapshot of what the scheduler did so far."""
        with self._cv, self._stats_lock:
            end = self._t_stop if self._t_stop is not None else time.perf_counter()
            wall = max(1e-9, end - self._t_start) if self._t_start else 0.0
            depths = dict(self._all_depths)
            for j in self._jobs:
                depths[j.id] = j.max_queue_depth
            return SchedulerStats(
                batches=self._batches,
                items=self._items,
                failed_items=self._failed,
                mean_batch_fill=self._fill_sum / self._batches if self._batches else 0.0,
                device_busy_fraction=min(1.0, self._busy_s / wall) if wall else 0.0,
                wall_s=wall,
                stage_s=dict(self._stage_s),
                max_queue_depth=depths,
                oom_retries=self._oom_retries,
                batch_size=self._batch_size,
                batch_size_history=list(self._history),
            )

    # -- batch formation (device thread) -----------------------------------------------------------

    def _available(self) -> tuple[int, bool]:
        """Frames queued, and whether waiting for more is pointless (nothing more can come soon)."""
        n = 0
        urgent = False
        for j in self._jobs:
            if j._ready():
                n += j._queued_items
                if j._closed or j._producer_blocked or j._consumer_waiting:
                    urgent = True
        return n, urgent

    def _take(self) -> list[_Unit]:
        """Round-robin over jobs, one unit at a time, up to the batch size (at least one unit)."""
        units: list[_Unit] = []
        total = 0
        jobs = [j for j in self._jobs if j._ready()]
        if not jobs:
            return units
        start = self._rr % len(jobs)
        order = jobs[start:] + jobs[:start]
        progress = True
        while progress:
            progress = False
            for j in order:
                if not j._queue:
                    continue
                nxt = len(j._queue[0].items)
                if units and total + nxt > self._batch_size:
                    continue
                units.append(j._pop())
                total += nxt
                progress = True
                if total >= self._batch_size:
                    break
            if total >= self._batch_size:
                break
        self._rr += 1
        self._cv.notify_all()  # producers blocked on a full queue
        return units

    def _wait_for_batch(self, idle_ok: bool) -> list[_Unit] | None:
        """Wait for work and form the next batch. None: stopped and drained (or nothing and ``idle_ok``)."""
        opts = self.options
        t_first: float | None = None
        while True:
            # forget finished jobs (keeping their queue-depth figures): a long-lived scheduler stays small
            for j in list(self._jobs):
                if (
                    j._closed
                    and not j._queue
                    and not j._partial
                    and (j.items_done >= j._next_seq or j._failure is not None)
                ):
                    self._all_depths[j.id] = j.max_queue_depth
                    self._jobs.remove(j)
            n, urgent = self._available()
            if n == 0:
                if self._stopped or idle_ok:
                    return None
                t_first = None
                self._cv.wait()
                continue
            now = time.perf_counter()
            if t_first is None:
                t_first = now
            waited = (now - t_first) * 1000.0
            full = n >= self._batch_size
            timed_out = waited >= opts.max_wait_ms
            no_more = all(j._closed or j._producer_blocked for j in self._jobs)
            if full or self._stopped or no_more or (timed_out and (n >= opts.min_batch or urgent)):
                return self._take()
            if timed_out:  # below min_batch: wait for more work or for a reason to flush
                self._cv.wait(timeout=0.05)
            else:
                self._cv.wait(timeout=(opts.max_wait_ms - waited) / 1000.0)

    # -- device thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        inflight: deque[_Launched] = deque()
        try:
            while True:
                t0 = time.perf_counter()
                with self._cv:
                    units = self._wait_for_batch(idle_ok=bool(inflight))
                self.stage_timer("wait")(time.perf_counter() - t0)
                if units is None:
                    while inflight:
                        self._retire(inflight.popleft())
                    with self._cv:
                        if self._stopped and self._available()[0] == 0:
                            return
                    continue
                if self._maybe_probe(units):
                    continue
                if self._cuda and self._staged:
                    self._launch_or_split(units, inflight)
                    while len(inflight) > 1:  # keep one batch in flight: its copies overlap our next launch
                        self._retire(inflight.popleft())
                else:
                    self._run_units(units)
        except BaseException as exc:  # noqa: BLE001 - never leave consumers waiting on a dead thread
            log.exception("scheduler device thread crashed")
            with self._cv:
                for lb in inflight:
                    self._fail(lb.units, exc)
                for job in self._jobs:
                    job._fail_units(list(job._queue), exc)
                    job._queue.clear()
                self._stopped = True
                self._cv.notify_all()

    def _key_for(self, units: list[_Unit]) -> BatchKey:
        crop = units[0].items[0].face.crop
        res = tuple(int(d) for d in np.shape(crop)[:2])
        return (self.options.model_name, str(self._device), res)

    def _set_batch_size(self, size: int, remember: bool) -> None:
        size = max(1, min(self.options.max_batch, int(size)))
        if size != self._batch_size:
            log.info("scheduler: batch size %d -> %d", self._batch_size, size)
            self._batch_size = size
            with self._stats_lock:
                self._history.append(size)
        if remember and self._key is not None:
            remember_batch_size(*self._key, size)

    def _maybe_probe(self, units: list[_Unit]) -> bool:
        """On the first batch: take a remembered size, or probe the memory budget with one or two units.

        True when the probe ran (and generated) the whole batch.
        """
        if self._key is not None:
            return False
        self._key = self._key_for(units)
        known = remembered_batch_size(*self._key)
        if known is not None:
            self._set_batch_size(known, remember=False)
            self._run_in_pieces(units)  # this batch was formed before the size was known
            return True
        budget = self.options.memory_budget_bytes
        if budget is None:
            return False
        meter = self._meter
        if meter is None:
            if self._cuda:
                meter = CudaMemoryMeter(self._device)
            elif RssMemoryMeter.available():
                meter = RssMemoryMeter()
            else:
                log.warning("scheduler: no way to measure memory here; ignoring memory_budget_bytes")
                return False
        # probe: the first unit alone, then the next two together when there are that many
        peaks: list[tuple[int, int]] = []  # (frames, bytes used)
        probes = [units[:1]]
        if len(units) >= 3:
            probes.append(units[1:3])
        rest = units[sum(len(p) for p in probes) :]
        ooms_before = self._oom_retries
        for p in probes:
            base = meter.reset()
            ok = self._run_units(p)
            if not ok:
                break
            peaks.append((sum(len(u.items) for u in p), max(0, meter.peak() - base)))
        if peaks:
            if len(peaks) == 2 and peaks[1][0] > peaks[0][0] and peaks[1][1] > peaks[0][1]:
                per_frame = (peaks[1][1] - peaks[0][1]) / (peaks[1][0] - peaks[0][0])
                fixed = max(0.0, peaks[0][1] - per_frame * peaks[0][0])
            else:
                per_frame = peaks[0][1] / max(1, peaks[0][0])
                fixed = 0.0
            chunk = self.options.chunk_frames
            fit = int((budget - fixed) // per_frame) if per_frame > 0 else self.options.max_batch
            fit = max(chunk, fit // chunk * chunk) if chunk > 1 else max(1, fit)
            if self._oom_retries != ooms_before:  # the probe itself ran out of memory: never grow past that
                fit = min(fit, self._batch_size)
            log.info(
                "scheduler: probe %s: %.1f MB per frame, %.1f MB fixed, budget %.1f MB -> batch %d",
                self._key,
                per_frame / 2**20,
                fixed / 2**20,
                budget / 2**20,
                min(fit, self.options.max_batch),
            )
            self._set_batch_size(fit, remember=True)
        self._run_in_pieces(rest)  # the rest of the first batch, at the probed size
        return True

    def _run_in_pieces(self, units: list[_Unit]) -> None:
        """Run units in batches of the size in force (whole units, at least one per batch)."""
        rest = list(units)
        while rest:
            take: list[_Unit] = []
            total = 0
            while rest and (not take or total + len(rest[0].items) <= self._batch_size):
                total += len(rest[0].items)
                take.append(rest.pop(0))
            if self._cuda and self._staged:
                inflight: deque[_Launched] = deque()
                self._launch_or_split(take, inflight)
                while inflight:
                    self._retire(inflight.popleft())
            else:
                self._run_units(take)

    def _call(self, batch: ModelBatch) -> list[np.ndarray]:
        gen = self._generate
        if self._staged:
            assert isinstance(gen, StagedGenerate)
            outs = list(gen.to_host(gen.compute(gen.to_device(batch, None)), None))
            if self._cuda:  # to_host may have queued non-blocking copies into pinned memory
                torch.cuda.current_stream(self._device).synchronize()
            return outs
        if self._pin:
            for it in batch.items:
                if isinstance(it.audio, torch.Tensor) and not it.audio.is_pinned():
                    it.audio = it.audio.pin_memory()
        assert callable(gen)
        return list(gen(batch))

    def _on_oom(self, units: list[_Unit], exc: BaseException) -> None:
        self._oom_retries += 1
        if self._cuda:
            torch.cuda.empty_cache()
        n = sum(len(u.items) for u in units)
        log.warning(
            "scheduler: out of memory on a batch of %d frame(s) (%s); splitting it",
            n,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )

    def _halve(self, units: list[_Unit]) -> tuple[list[_Unit], list[_Unit]]:
        half = (len(units) + 1) // 2
        first, second = units[:half], units[half:]
        self._set_batch_size(sum(len(u.items) for u in first), remember=True)
        return first, second

    def _run_units(self, units: list[_Unit]) -> bool:
        """Run one batch synchronously; split it on out-of-memory. False when it (partly) failed."""
        if not units:
            return True
        items = [it for u in units for it in u.items]
        batch = ModelBatch(items)
        t0 = time.perf_counter()
        try:
            outs = self._call(batch)
        except BaseException as exc:  # noqa: BLE001 - routed to the jobs concerned
            dt = time.perf_counter() - t0
            self._account_busy(dt)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if is_out_of_memory(exc):
                self._on_oom(units, exc)
                if len(units) == 1:
                    self._fail(units, exc)
                    return False
                first, second = self._halve(units)
                ok1 = self._run_units(first)
                ok2 = self._run_units(second)
                return ok1 and ok2
            self._fail(units, exc)
            return False
        dt = time.perf_counter() - t0
        self._account_busy(dt)
        return self._route(units, outs)

    def _account_busy(self, dt: float) -> None:
        with self._stats_lock:
            self._busy_s += dt
            self._stage_s["generate"] = self._stage_s.get("generate", 0.0) + dt

    def _route(self, units: list[_Unit], outs: Sequence[np.ndarray]) -> bool:
        t0 = time.perf_counter()
        n = sum(len(u.items) for u in units)
        if len(outs) != n:
            self._fail(units, ValueError(f"generate returned {len(outs)} outputs for a batch of {n} frames"))
            return False
        with self._cv:
            k = 0
            for u in units:
                job = u.job
                for q, it in zip(u.seqs, u.items, strict=True):
                    if job._failure is None:
                        job._done[q] = (it.index, outs[k])
                    else:  # the job failed earlier: this frame is reported through that error
                        job._errors.setdefault(q, job._failure)
                        self._failed += 1
                    job.items_done += 1
                    k += 1
            self._batches += 1
            self._items += n
            self._fill_sum += n / max(1, self._batch_size)
            self._cv.notify_all()
        self.stage_timer("route")(time.perf_counter() - t0)
        return True

    def _fail(self, units: list[_Unit], exc: BaseException) -> None:
        """Give each job of a failed batch an error naming its frames; drop what it still has queued."""
        with self._cv:
            by_job: dict[int, tuple[Job, list[_Unit]]] = {}
            for u in units:
                by_job.setdefault(u.job.id, (u.job, []))[1].append(u)
            for job, us in by_job.values():
                indices = [it.index for u in us for it in u.items]
                err: LipSyncError
                if is_out_of_memory(exc):
                    err = FrameOutOfMemoryError(
                        f"out of device memory generating job {job.id} frame(s) {_fmt(indices)} even at the "
                        f"smallest batch ({self.options.chunk_frames} frame(s))",
                        job_id=job.id,
                        indices=indices,
                    )
                else:
                    cause = exc.message if isinstance(exc, LipSyncError) else f"{type(exc).__name__}: {exc}"
                    remedy = exc.remedy if isinstance(exc, LipSyncError) else None
                    err = FrameGenerationError(
                        f"generate failed on job {job.id} frame(s) {_fmt(indices)}: {cause}",
                        job_id=job.id,
                        indices=indices,
                        remedy=remedy or "see the cause above; the other jobs in the batch went on",
                    )
                    if isinstance(exc, LipSyncError):
                        err.exit_code = exc.exit_code
                err.__cause__ = exc
                job._fail_units(us, err)
                dropped = list(job._queue)
                job._queue.clear()
                job._queued_items = 0
                job._fail_units(dropped, err)
                n = sum(len(u.items) for u in us) + sum(len(u.items) for u in dropped)
                job.items_done += sum(len(u.items) for u in us)
                self._failed += n
                log.error("scheduler: job %d failed at frame(s) %s: %s", job.id, _fmt(indices), exc)
            self._cv.notify_all()

    # -- CUDA staged path ------------------------------------------------------------------------

    def _get_streams(self) -> tuple[Any, Any, Any]:
        if self._streams is None:
            dev = self._device
            self._streams = (torch.cuda.Stream(dev), torch.cuda.Stream(dev), torch.cuda.Stream(dev))
        return self._streams

    def _launch(self, units: list[_Unit]) -> _Launched:
        """Queue copies in, compute and copies out of one batch on three streams joined by events."""
        gen = self._generate
        assert isinstance(gen, StagedGenerate)
        h2d, comp, d2h = self._get_streams()
        batch = ModelBatch([it for u in units for it in u.items])
        with torch.cuda.device(self._device):
            with torch.cuda.stream(h2d):
                handle = gen.to_device(batch, h2d)
                ev_in = torch.cuda.Event()
                ev_in.record(h2d)
            comp.wait_event(ev_in)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            with torch.cuda.stream(comp):
                start.record(comp)
                dev_out = gen.compute(handle)
                end.record(comp)
            d2h.wait_event(end)
            with torch.cuda.stream(d2h):
                outs = list(gen.to_host(dev_out, d2h))
                done = torch.cuda.Event()
                done.record(d2h)
        # handle and dev_out stay referenced until `done`: the caching allocator cannot hand their
        # blocks to another stream while the copies that read them may still run
        return _Launched(units, [handle, dev_out], outs, done, start, end)

    def _launch_or_split(self, units: list[_Unit], inflight: deque[_Launched]) -> None:
        try:
            inflight.append(self._launch(units))
            return
        except BaseException as exc:  # noqa: BLE001 - routed to the jobs concerned
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            try:  # kernels of this batch may be queued: let them finish before its tensors are freed
                torch.cuda.synchronize(self._device)
            except RuntimeError:
                log.debug("scheduler: synchronize after a failed launch failed too", exc_info=True)
            while inflight:  # settle what is in flight before retrying in less memory
                self._retire(inflight.popleft())
            if not is_out_of_memory(exc):
                self._fail(units, exc)
                return
            self._on_oom(units, exc)
            if len(units) == 1:
                self._fail(units, exc)
                return
            first, second = self._halve(units)
        for part in (first, second):
            self._launch_or_split(part, inflight)
            while inflight:
                self._retire(inflight.popleft())

    def _retire(self, lb: _Launched) -> None:
        try:
            lb.done.synchronize()
            busy = lb.start.elapsed_time(lb.end) / 1000.0
        except BaseException as exc:  # noqa: BLE001 - asynchronous CUDA errors surface here
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._fail(lb.units, exc)
            return
        self._account_busy(busy)
        lb.keep.clear()
        self._route(lb.units, lb.outputs)


def _fmt(indices: Sequence[int]) -> str:
    if len(indices) <= 8:
        return ", ".join(str(i) for i in indices)
    return f"{indices[0]}..{indices[-1]} ({len(indices)} frames)"


__all__ = [
    "BatchScheduler",
    "CudaMemoryMeter",
    "FrameGenerationError",
    "FrameOutOfMemoryError",
    "Job",
    "MemoryMeter",
    "RssMemoryMeter",
    "SchedulerClosedError",
    "SchedulerOptions",
    "SchedulerStats",
    "StagedGenerate",
    "device_to_host",
    "forget_batch_sizes",
    "host_to_device",
    "is_out_of_memory",
    "map_ordered",
    "remember_batch_size",
    "remembered_batch_size",
]
