"""The staged-generate protocol and the host/device copy helpers its stages use on CUDA streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from lipsynckit.types import ModelBatch


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
