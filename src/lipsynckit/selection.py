"""`--model auto`: the best model that the hardware and the installed weights allow, with the reason."""

from __future__ import annotations

import logging

import torch

from lipsynckit.registry import DEFAULT_MODEL, list_models

log = logging.getLogger(__name__)

CPU_SECONDS_PER_FRAME_LIMIT = 2.0  # slower than this on CPU is not a sensible automatic choice


def _gpu_memory_gb() -> float:
    if not torch.cuda.is_available():
        return 0.0
    return torch.cuda.get_device_properties(0).total_memory / 1024**3


def choose_model(weights: str | None = None, device: str | None = None) -> tuple[str, str]:
    """Return (model name, why). Core names no plugin: the choice is made from ModelInfo data."""
    on_gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    vram = _gpu_memory_gb() if on_gpu else 0.0
    candidates = []
    skipped = []
    for row in list_models(weights):
        if row.info is None:
            continue
        if not row.usable:
            skipped.append(f"{row.name}: {row.reason}")
            continue
        info = row.info
        if on_gpu and info.min_vram_gb > vram:
            skipped.append(f"{row.name}: needs {info.min_vram_gb:g} GB VRAM, this GPU has {vram:.0f} GB")
            continue
        if not on_gpu:
            if not info.supports_cpu:
                skipped.append(f"{row.name}: GPU only")
                continue
            spf = info.cpu_seconds_per_frame
            if spf is not None and spf > CPU_SECONDS_PER_FRAME_LIMIT:
                skipped.append(f"{row.name}: about {spf:g} s per frame on CPU")
                continue
        candidates.append((info.quality, row.name))
    if not candidates:
        return DEFAULT_MODEL, "no usable model found; using the built-in weight-free model"
    candidates.sort(reverse=True)
    name = candidates[0][1]
    where = "GPU" if on_gpu else "CPU"
    if candidates[0][0] <= 0:
        why = (
            f"no model weights found, so the embedded weight-free '{name}' model is used "
            "(install weights: `lipsynckit weights list`)"
        )
    else:
        why = f"'{name}' is the best usable model on this {where}"
    if skipped:
        why += "; not chosen: " + "; ".join(skipped)
    return name, why
