"""How many jobs to keep in flight on one loaded model (the manifest runner and ``sync_batch``)."""

from __future__ import annotations


def default_concurrency(device: str | None) -> int:
    """Jobs kept in flight when not told: on a CPU two (one job decodes and encodes while the other's
    frames are in the model); on a GPU four, so the shared scheduler's batches stay full."""
    if device is not None:
        return 4 if str(device).startswith("cuda") else 2
    try:
        import torch

        return 4 if torch.cuda.is_available() else 2
    except ImportError:
        return 2
