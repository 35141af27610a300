"""Scheduler settings, statistics and the errors it raises (and how it recognises out-of-memory)."""

from __future__ import annotations

import os

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lipsynckit.errors import (
    DeviceOutOfMemoryError,
)


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
