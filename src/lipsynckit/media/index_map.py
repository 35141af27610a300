"""Which source frame each output frame shows when the audio and the video lengths differ."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["IndexMode", "index_map"]

IndexMode = Literal["loop", "pingpong", "cut"]
_MODES = ("loop", "pingpong", "cut")


def index_map(n_out: int, n_src: int, mode: str = "loop") -> np.ndarray:
    """Source frame index for each output frame, as an int64 array.

    - ``"loop"``: ``i % n_src`` (0, 1, ..., n-1, 0, 1, ...).
    - ``"pingpong"``: forward then backward with each end shown twice, as LatentSync loops a video:
      for 20 source frames 0..19, 19, 18, ..., 0, 0, 1, ... (period ``2 * n_src``). Backward runs never
      jump, so the motion stays continuous.
    - ``"cut"``: the output stops where the source ends: ``arange(min(n_out, n_src))``. The result is
      *shorter* than ``n_out`` when the audio outlasts the video; the caller then trims the audio to
      ``len(result)`` frames. Nothing is repeated.

    ``n_out`` of 0 gives an empty array; ``n_src`` must be at least 1.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown index mode {mode!r}; use one of {', '.join(_MODES)}")
    if n_src < 1:
        raise ValueError(f"the source must have at least one frame, got n_src={n_src}")
    if n_out < 0:
        raise ValueError(f"n_out must be >= 0, got {n_out}")
    i = np.arange(n_out, dtype=np.int64)
    if mode == "loop":
        return i % n_src
    if mode == "pingpong":
        p = i % (2 * n_src)
        return np.where(p < n_src, p, 2 * n_src - 1 - p)
    return i[: min(n_out, n_src)]
