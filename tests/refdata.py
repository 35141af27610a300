"""Helpers for reading the reference data (a module of its own: several conftest.py files exist)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
