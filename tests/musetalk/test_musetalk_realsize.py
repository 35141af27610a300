"""Real-size MuseTalk: the official models/ layout with deterministic weights at the released sizes.

One module-scoped folder (UNet 3.4 GB on disk, memory-mapped on load) serves both tests: the real-size
UNet golden through ``plugin.load(weights=models/)`` and one prepare/generate/composite on a real photo.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.types import Face, ModelBatch, WorkItem
from lipsynckit_musetalk.plugin import plugin
from lipsynckit_musetalk.runtime import MuseTalkModel

from mt_helpers import build_models_dir, read_rgb
from refdata import load_npz

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # 3.4 GB of weights written, then memory-mapped


@pytest.fixture(scope="module")
def models_dir(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models_dir(tmp_path_factory.mktemp("mt_real") / "models", reference_dir, version="v1.5")


@pytest.fixture(scope="module")
def real_model(models_dir: Path) -> Iterator[MuseTalkModel]:
    models = models_dir
    gc.collect()
    model = plugin.load(weights=str(models), device="cpu")
    assert isinstance(model, MuseTalkModel)
    yield model
    del model
    gc.collect()


def test_unet_realsize_golden(real_model: MuseTalkModel, reference_dir: Path) -> None:
    g = load_npz(reference_dir / "musetalk" / "golden_unet_realsize.npz")
    assert sum(p.numel() for p in real_model.unet.parameters()) == 849_947_844
    assert sum(p.numel() for p in real_model.vae.parameters()) == 83_653_863
    with torch.no_grad():
        out = real_model.unet(
            torch.from_numpy(g["unet_input_latents"]),
            torch.from_numpy(g["timestep"]),
            encoder_hidden_states=torch.from_numpy(g["encoder_hidden_states"]),
        ).sample
    np.testing.assert_allclose(out.numpy(), g["unet_output_latents"], atol=1e-4, rtol=0)


def test_generate_real_photo_realsize(real_model: MuseTalkModel, grace_hopper_jpg: Path) -> None:
    frame = read_rgb(grace_hopper_jpg)
    prepared = real_model.prepare(frame, Face(box=np.array([170, 120, 350, 330])))
    assert prepared.data["parsed"] is True
    assert tuple(prepared.data["latents"].shape) == (8, 32, 32)
    window = torch.zeros(50, 384)
    out = real_model.generate(ModelBatch([WorkItem(0, 0, prepared, window)]))
    assert len(out) == 1 and out[0].shape == (256, 256, 3) and out[0].dtype == np.uint8
    assert out[0].std() > 0
    result = real_model.composite(frame, prepared, out[0])
    assert result.shape == frame.shape
    x1, y1, x2, y2 = prepared.box
    changed = np.any(result != frame, axis=-1)
    assert changed[y1:y2, x1:x2].any()
    assert not changed[: y1 + (y2 - y1) // 4].any()  # the upper face is never touched


def test_cli_sync_realsize_changes_only_the_mouth_region(
    models_dir: Path, grace_hopper_jpg: Path, speech_wav: Path, tmp_path: Path
) -> None:
    """Issue: `lipsynckit sync photo speech --model musetalk --weights models/` runs end to end on CPU."""
    import json

    import soundfile as sf

    from lipsynckit.cli import main
    from lipsynckit.media import load_audio, read_video_frames

    clip = load_audio(speech_wav, sample_rate=16000).numpy()
    wav = tmp_path / "short.wav"
    sf.write(wav, clip[16000 : 16000 + 4000], 16000)  # 0.25 s of real speech: 6 frames at 25 fps
    x1, y1, x2, y2 = 170, 120, 350, 330
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"boxes": [[x1, y1, x2, y2]]}))
    out = tmp_path / "out.mkv"
    rc = main(
        [
            "-q",
            "sync",
            str(grace_hopper_jpg),
            str(wav),
            "-o",
            str(out),
            "--model",
            "musetalk",
            "--weights",
            str(models_dir),
            "--face-boxes",
            str(boxes),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    frames = read_video_frames(out)
    photo = read_rgb(grace_hopper_jpg)
    assert frames.shape == (6, *photo.shape)
    changed = np.any(frames != photo[None], axis=-1).any(axis=0)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    w, h = x2 - x1, y2 - y1
    assert ys.min() >= y1 + h // 4  # the upper face is never touched
    assert xs.min() >= x1 - w // 2 and xs.max() <= x2 + w // 2 and ys.max() <= y2 + h // 2
