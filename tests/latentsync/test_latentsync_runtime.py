"""How the runtime maps scheduler batches onto the official 16-frame chunks and per-job noise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lipsynckit.model import ModelInfo
from lipsynckit.types import ModelBatch, PreparedFace, WorkItem
from lipsynckit_latentsync.options import LatentSyncOptions
from lipsynckit_latentsync.runtime import ChunkResult, LatentSyncRuntime
from lipsynckit_latentsync.unet import UNet3DConditionModel

from ls_testutil import golden_unet_config, ref


@pytest.fixture()
def runtime(reference_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LatentSyncRuntime, list[Any]]:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**json.loads(ref(reference_dir, "golden_pipeline_vae_config.json").read_text()))
    info = ModelInfo(name="t", display_name="t", face_size=64, chunk_frames=16)
    rt = LatentSyncRuntime(
        info, UNet3DConditionModel(golden_unet_config(reference_dir)), vae, None, 64, LatentSyncOptions()
    )
    calls: list[Any] = []

    def fake_chunk(
        gen: torch.Generator, noise: torch.Tensor, faces: np.ndarray, audio: torch.Tensor
    ) -> ChunkResult:
        calls.append((id(gen), noise.clone(), faces.shape[0]))
        x = torch.zeros(faces.shape[0], 3, 64, 64)
        return ChunkResult(decoded=x, pasted=x)

    monkeypatch.setattr(rt, "run_chunk", fake_chunk)
    return rt, calls


def items(job: int, indices: list[int]) -> ModelBatch:
    face = PreparedFace(box=(0, 0, 1, 1), crop=np.zeros((64, 64, 3), np.uint8))
    return ModelBatch([WorkItem(job, i, face, torch.zeros(50, 384)) for i in indices])


def test_batches_split_on_official_chunk_boundaries(runtime: tuple[LatentSyncRuntime, list[Any]]) -> None:
    rt, calls = runtime
    out = rt.generate(items(1, list(range(32))))
    assert len(out) == 32 and out[0].dtype == np.float32  # the default: the exact (float) hand-off
    assert [c[2] for c in calls] == [16, 16]
    calls.clear()
    rt.generate(items(1, [32, 33, 35, 40]))  # a frame without a face (34) stays out of its chunk
    rt.generate(items(1, [48, 49]))
    assert [c[2] for c in calls] == [4, 2]


def test_noise_is_shared_within_a_job_and_seeded(runtime: tuple[LatentSyncRuntime, list[Any]]) -> None:
    rt, calls = runtime
    rt.generate(items(1, list(range(16))))
    rt.generate(items(1, list(range(16, 20))))
    rt.generate(items(2, list(range(16))))
    (g1, n1, _), (g1b, n1b, _), (g2, n2, _) = calls
    assert g1 == g1b and g1 != g2  # one generator per job, kept across its chunks
    assert n1.shape == (1, 4, 1, 32, 32)  # ONE noise frame, repeated over every frame of the job
    torch.testing.assert_close(n1, n1b)
    torch.testing.assert_close(n1, n2)  # same seed, same noise
    rt.end_job(1)
    assert 1 not in rt._jobs


def test_options_reject_unknown_names() -> None:
    with pytest.raises(ValueError):
        LatentSyncOptions.model_validate({"stepz": 3})
    assert LatentSyncOptions().steps == 20 and LatentSyncOptions().guidance == 1.5
    assert LatentSyncOptions().exact_restore  # the official float restoration is the default path
