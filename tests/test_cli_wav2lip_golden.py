"""Issue: `lipsynckit sync ... --model wav2lip` from the CLI reproduces the official pipeline golden.

The golden's frames go in as a lossless video, its audio as a 16-bit WAV, its detector boxes as
--face-boxes, deterministic weights in the official training-checkpoint container as --weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.cli import main
from lipsynckit.media import VideoSink, read_video_frames

from refdata import load_npz


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    return load_npz(reference_dir / "wav2lip" / "golden_pipeline.npz")


@pytest.fixture(scope="module")
def official_checkpoint(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lipsynckit.testing import deterministic_state_dict, load_manifest

    sd = deterministic_state_dict(load_manifest(reference_dir / "wav2lip" / "manifest_wav2lip.json"))
    path = tmp_path_factory.mktemp("w") / "wav2lip.pth"
    torch.save(
        {"state_dict": {"module." + k: v for k, v in sd.items()}, "global_step": 1, "global_epoch": 1}, path
    )
    return path


@pytest.mark.parametrize("runtime", [[], ["-O", "runtime=onnx"]], ids=["torch", "onnx"])
def test_cli_reproduces_golden_pipeline(
    golden: dict[str, np.ndarray], official_checkpoint: Path, tmp_path: Path, runtime: list[str]
) -> None:
    """Both runtimes: the ONNX one exports the checkpoint on first use and must stay within the same
    tolerance as the torch one."""
    frames_bgr = golden["frames_in"]
    h, w = frames_bgr.shape[1:3]
    video = tmp_path / "in.mkv"
    with VideoSink(video, fps=25.0, size=(w, h), audio=None, mode="ffv1") as sink:
        for f in frames_bgr:
            sink.write(np.ascontiguousarray(f[..., ::-1]))
    assert np.array_equal(read_video_frames(video)[..., ::-1], frames_bgr)  # the input itself is lossless
    wav = tmp_path / "in.wav"
    sf.write(wav, golden["pcm16"], 16000, subtype="PCM_16")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"format": "xyxy", "boxes": golden["raw_boxes_x1y1x2y2"].tolist()}))
    out = tmp_path / "out.mkv"
    rc = main(
        [
            "-q",
            "sync",
            str(video),
            str(wav),
            "-o",
            str(out),
            "--model",
            "wav2lip",
            "--weights",
            str(official_checkpoint),
            "--face-boxes",
            str(boxes),
            "--paste",
            "official",
            "--lossless",
            "--length-mode",
            "loop",  # the official inference loops the video
            "--no-progress",
            "--device",
            "cpu",
            "--no-gate",  # the official pipeline has no voice-activity gate
            *runtime,
        ]
    )
    assert rc == 0
    got = read_video_frames(out)[..., ::-1]  # back to BGR, as the golden stores it
    want = golden["frames_out"]
    assert got.shape == want.shape == (47, h, w, 3)
    diff = np.abs(got.astype(int) - want.astype(int))
    # README tolerance: <= 1 grey level on <= 1e-4 of pixels (floor after x255 can flip)
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 1e-4, (diff > 0).mean()
