"""`--model auto`: the best model that the hardware and the installed weights allow, with the reason."""

from __future__ import annotations

import logging

import torch

from lipsynckit.registry import DEFAULT_MODEL, list_models

log = logging.getLogger(__name__)

CPU_SECONDS_PER_FRAME_LIMIT = 2.0  # slower than this on CPU is not a sensible automatic choice
#: the distributions of this repository; a model from any other is named as third-party when chosen
OUR_DISTRIBUTIONS = ("lipsynckit", "lipsynckit-wav2lip", "lipsynckit-musetalk", "lipsynckit-latentsync")


def _gpu_memory_gb() -> float:
    if not torch.cuda.is_available():
        return 0.0
    return torch.cuda.get_device_properties(0).total_memory / 1024**3


def choose_model(weights: str | None = None, device: str | None = None) -> tuple[str, str]:
    """Return (model name, why): ``why`` is one line (the model and the main reason); every model that
    was passed over, and why, is logged at DEBUG (``-v``). Core names no plugin: the choice is made
    from ModelInfo data."""
    on_gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    vram = _gpu_memory_gb() if on_gpu else 0.0
    candidates: list[tuple[float, str, str]] = []
    skipped: list[str] = []
    groups: dict[str, list[str]] = {}  # short reason -> model names

    def skip(name: str, group: str, reason: str) -> None:
        skipped.append(f"{name}: {reason}")
        groups.setdefault(group, []).append(name)

    for row in list_models(weights):
        if row.info is None:
            skip(row.name, "not installed", row.reason)
            continue
        if not row.usable:
            group = "no weights installed" if row.info.needs_weights and not row.weights_found else "unusable"
            skip(row.name, group, row.reason)
            continue
        info = row.info
        if on_gpu and info.min_vram_gb > vram:
            skip(
                row.name, "too little VRAM", f"needs {info.min_vram_gb:g} GB VRAM, this GPU has {vram:.0f} GB"
            )
            continue
        if not on_gpu:
            if not info.supports_cpu:
                skip(row.name, "GPU only", "GPU only")
                continue
            spf = info.cpu_seconds_per_frame
            if spf is not None and spf > CPU_SECONDS_PER_FRAME_LIMIT:
                skip(row.name, "too slow on CPU", f"about {spf:g} s per frame on CPU")
                continue
        candidates.append((info.quality, row.name, row.distribution))
    if skipped:
        log.debug("model auto, not chosen: %s", "; ".join(skipped))
    where = "GPU" if on_gpu else "CPU"
    if not candidates:
        return DEFAULT_MODEL, f"{DEFAULT_MODEL} (no usable model found; -v says why)"
    candidates.sort(reverse=True)
    quality, name, dist = candidates[0]
    origin = "" if dist in OUR_DISTRIBUTIONS or not dist else f", a third-party plugin from {dist}"
    if candidates[0][0] <= 0 and "no weights installed" in groups:
        missing = ", ".join(groups["no weights installed"])
        return (
            name,
            f"{name} (no weights installed for {missing}; `lipsynckit weights list` says where to get them)",
        )
    others = "".join(f"; {group}: {', '.join(names)}" for group, names in groups.items())
    return name, f"{name} (quality {quality:g}, the highest usable on this {where}{origin}{others})"
