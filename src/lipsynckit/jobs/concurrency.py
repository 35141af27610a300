"""How many jobs to keep in flight (the manifest runner and ``sync_batch``), and where they run."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def on_gpu(device: str | None) -> bool:
    """Whether jobs on ``device`` (None: CUDA when there is one) run on a GPU."""
    if device is not None:
        return str(device).startswith("cuda")
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def default_concurrency(device: str | None) -> int:
    """Jobs kept in flight when not told: on a CPU one worker process per usable core; on a GPU four
    jobs on threads, so the shared scheduler's batches stay full."""
    if on_gpu(device):
        return 4
    return max(1, usable_cores())
