"""Streaming latency on real speech: viseme on a 512x512 photo, Wav2Lip on a 360p talking-face video.

Real LibriVox speech is pushed in 20-40 ms chunks at real-time pace (0.4 s pauses between sentences,
an interrupt every 6 s) into real-time sessions; each row reports push-to-play latency (from a
chunk's push to the emission of the frame that plays its last sample), the slowest session's fps,
late frames, underruns, interrupt-to-idle time, whether every frame carried exactly its audio, drift
and whether the frame rate held; session counts 1, 2, 4, ... up to --sessions. --soak adds one long
session (drift). Wav2Lip uses deterministic weights in the official container: real cost, meaningless
pixels.

Usage: python benchmarks/stream_latency.py OUT_DIR [--models viseme,wav2lip] [--seconds 20]
       [--sessions 4] [--soak 60] [--budget-ms 80]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from make_inputs import carphone
from official_layouts import wav2lip_checkpoint

from lipsynckit.media import VideoSink, read_video_frames
from lipsynckit.streaming.bench import LIBRIVOX, machine, markdown, run_stream_bench

REPO = Path(__file__).resolve().parents[1]


def talk360(out: Path, seconds: float = 4.0) -> Path:
    """The carphone clip upscaled to 440x360 on a 640x360 canvas (ping-ponged, 25 fps)."""
    path = out / "talk360.mp4"
    if path.is_file():
        return path
    frames = read_video_frames(carphone())
    with VideoSink(path, fps=25.0, size=(640, 360), audio=None, mode="mp4") as sink:
        for i in range(int(seconds * 25)):
            k = i % (2 * len(frames) - 2)
            f = frames[k if k < len(frames) else 2 * len(frames) - 2 - k]
            canvas = np.zeros((360, 640, 3), np.uint8)
            canvas[:, 100:540] = cv2.resize(f, (440, 360), interpolation=cv2.INTER_CUBIC)
            sink.write(canvas)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--models", default="viseme,wav2lip")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--soak", type=float)
    p.add_argument("--budget-ms", type=float, help="render budget of an utterance's first frame")
    p.add_argument("--device")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    speech = sorted(LIBRIVOX.glob("*.wav"))
    extra = {} if args.budget_ms is None else {"render_budget_s": args.budget_ms / 1000}
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name == "viseme":
            rows += run_stream_bench(
                ["viseme"],
                REPO / "examples" / "astronaut.jpg",
                speech,
                args.seconds,
                args.sessions,
                args.soak,
                device=args.device,
                avatar_dir=args.out / "avatar-viseme",
                **extra,
            )
        elif name == "wav2lip":
            ckpt = args.out / "wav2lip.pth"
            if not ckpt.is_file():
                wav2lip_checkpoint(ckpt, REPO / "tests" / "reference")
            rows += run_stream_bench(
                ["wav2lip"],
                talk360(args.out),
                speech,
                args.seconds,
                args.sessions,
                args.soak,
                weights=str(ckpt),
                device=args.device,
                avatar_dir=args.out / "avatar-wav2lip",
                **extra,
            )
        else:
            print(f"unknown model {name}", file=sys.stderr)
            return 2
    md = f"Machine: {machine()}\n\n" + markdown(rows)
    (args.out / "stream.md").write_text(md)
    (args.out / "stream.json").write_text(json.dumps([r.model_dump() for r in rows], indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
