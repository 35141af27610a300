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

from lipsynckit.errors import FrameGenerationError, FrameOutOfMemoryError, SchedulerClosedError
from lipsynckit.scheduler.core import BatchScheduler
from lipsynckit.scheduler.jobs import Job
from lipsynckit.scheduler.memory import (
    CudaMemoryMeter,
    MemoryMeter,
    RssMemoryMeter,
    forget_batch_sizes,
    remember_batch_size,
    remembered_batch_size,
)
from lipsynckit.scheduler.options import (
    SchedulerOptions,
    SchedulerStats,
    is_out_of_memory,
)
from lipsynckit.scheduler.stages import map_ordered
from lipsynckit.scheduler.transfer import StagedGenerate, device_to_host, host_to_device

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
