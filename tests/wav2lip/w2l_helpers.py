"""Shared helpers for the Wav2Lip plugin tests (a plain module: tests/ has no packages, and a second
conftest.py would shadow the root one's ``load_npz``). Results are cached per process."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lipsynckit_wav2lip.runtime import Wav2LipModel

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
W2L_REF = REFERENCE / "wav2lip"


@functools.cache
def golden(name: str) -> dict[str, np.ndarray]:
    """A golden npz of ``reference/wav2lip`` as a dict of arrays (read-only by convention)."""
    with np.load(W2L_REF / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@functools.cache
def manifest(name: str) -> dict[str, tuple[int, ...]]:
    from lipsynckit.testing import load_manifest

    return load_manifest(W2L_REF / f"manifest_{name}.json")


@functools.cache
def state_dict(name: str) -> dict[str, torch.Tensor]:
    """``deterministic_state_dict`` of a manifest (the shared convention for checkpoint checks)."""
    from lipsynckit.testing import deterministic_state_dict

    return deterministic_state_dict(manifest(name))


def save_training_checkpoint(path: Path) -> Path:
    """The official training container: DataParallel ``module.`` keys, Adam state, step counters,
    written in the legacy (non-zip) format the 2020 files use (torch ~1.1)."""
    sd = state_dict("wav2lip")
    some = [k for k, v in sd.items() if v.is_floating_point()][:2]
    optimizer = {
        "state": {
            i: {
                "step": torch.tensor(7.0),
                "exp_avg": torch.zeros_like(sd[k]),
                "exp_avg_sq": torch.zeros_like(sd[k]),
            }
            for i, k in enumerate(some)
        },
        "param_groups": [
            {
                "lr": 1e-4,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "weight_decay": 0,
                "amsgrad": False,
                "params": [0, 1],
            }
        ],
    }
    torch.save(
        {
            "state_dict": {"module." + k: v for k, v in sd.items()},
            "optimizer": optimizer,
            "global_step": 250000,
            "global_epoch": 80,
        },
        path,
        _use_new_zipfile_serialization=False,
    )
    return path


def save_s3fd(path: Path) -> Path:
    """``s3fd.pth`` as released: a plain state dict."""
    torch.save(state_dict("s3fd"), path)
    return path


def load_model(plugin: Any, **kwargs: Any) -> Wav2LipModel:
    """``plugin.load`` (the user-facing loader), typed as the Wav2Lip runtime for the checks."""
    model = plugin.load(**kwargs)
    assert isinstance(model, Wav2LipModel)
    return model
