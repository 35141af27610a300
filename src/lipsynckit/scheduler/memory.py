"""What the scheduler remembers and measures about memory: the per-process batch-size table (memory
budget probes and out-of-memory reductions) and the meters the budget probe reads."""

from __future__ import annotations

import threading
from typing import Protocol

import torch

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
