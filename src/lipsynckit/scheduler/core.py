"""The batching scheduler's device thread: batch formation, memory probe, OOM halving, CUDA streams."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from lipsynckit.errors import FrameGenerationError, FrameOutOfMemoryError, LipSyncError, SchedulerClosedError
from lipsynckit.scheduler.jobs import Job, _Launched, _Unit
from lipsynckit.scheduler.memory import (
    BatchKey,
    CudaMemoryMeter,
    MemoryMeter,
    RssMemoryMeter,
    remember_batch_size,
    remembered_batch_size,
)
from lipsynckit.scheduler.options import (
    SchedulerOptions,
    SchedulerStats,
    is_out_of_memory,
)
from lipsynckit.scheduler.stages import map_ordered
from lipsynckit.scheduler.transfer import StagedGenerate
from lipsynckit.types import ModelBatch

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


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
                left = job.take_queued(with_partial=True)
                if left:
                    n = sum(len(u.items) for u in left)
                    job.fail_units(
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
            if j.ready():
                n += j.queued_items
                urgent = urgent or j.urgent
        return n, urgent

    def _take(self) -> list[_Unit]:
        """Round-robin over jobs, one unit at a time, up to the batch size (at least one unit)."""
        units: list[_Unit] = []
        total = 0
        jobs = [j for j in self._jobs if j.ready()]
        if not jobs:
            return units
        start = self._rr % len(jobs)
        order = jobs[start:] + jobs[:start]
        progress = True
        while progress:
            progress = False
            for j in order:
                nxt = j.next_unit_size()
                if nxt is None or (units and total + nxt > self._batch_size):
                    continue
                units.append(j.pop())
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
                if j.finished:
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
            no_more = all(j.producer_idle for j in self._jobs)
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
                    job.fail_units(job.take_queued(), exc)
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
                    if not job.deliver(q, it.index, outs[k]):  # failed earlier: reported by that error
                        self._failed += 1
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
                job.fail_units(us, err)
                dropped = job.take_queued()
                job.fail_units(dropped, err)
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
