"""The deterministic-weight convention: every tensor of a state dict is a function of its own name.

Two implementations that agree on parameter names and shapes therefore get bit-identical weights, and
the goldens made by running the official code with these weights can be checked here without a real
checkpoint. The rule, per tensor:

- ``*num_batches_tracked`` is an int64 zero, ``*running_mean`` zeros, ``*running_var`` ones;
- everything else is ``torch.randn(shape)`` from a CPU generator seeded with ``zlib.crc32(name)``,
  float32, then scaled: by ``1/sqrt(prod(shape[1:]))`` (the fan-in) for tensors of rank 2 or more,
  by ``0.1`` otherwise; rank-0/1 tensors whose name ends in ``.weight`` (norm scales) get ``+ 1``.

A manifest is a JSON object ``{parameter name: shape}`` in state-dict order.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

_CONSTANT_BUFFERS = {
    "num_batches_tracked": lambda shape: torch.zeros(shape, dtype=torch.int64),
    "running_mean": lambda shape: torch.zeros(shape, dtype=torch.float32),
    "running_var": lambda shape: torch.ones(shape, dtype=torch.float32),
}


def deterministic_tensor(name: str, shape: Sequence[int]) -> torch.Tensor:
    """The tensor the convention assigns to parameter ``name`` of ``shape``."""
    shape = tuple(int(s) for s in shape)
    for suffix, make in _CONSTANT_BUFFERS.items():
        if name.endswith(suffix):
            return make(shape)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(zlib.crc32(name.encode("utf-8")))
    values = torch.randn(shape, generator=generator, dtype=torch.float32)
    if len(shape) >= 2:
        return values / math.sqrt(math.prod(shape[1:]))
    values = values * 0.1
    return values + 1.0 if name.endswith(".weight") else values


def deterministic_state_dict(manifest: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """A whole state dict, in the manifest's order."""
    return {name: deterministic_tensor(name, shape) for name, shape in manifest.items()}


def load_manifest(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Read a manifest file (``{name: shape}``), keeping its order."""
    data = json.loads(Path(path).read_text())
    return {name: tuple(int(s) for s in shape) for name, shape in data.items()}
