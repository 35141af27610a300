"""Avatar mode: time per frame for a first audio track on a template, then for a second one.

The first run detects faces and prepares every used source frame (for MuseTalk: crop, face parsing,
VAE encoding of the masked and reference crops) and caches them; the second run reuses the cache and
pays only for the model step and decoding. Usage:

    python benchmarks/avatar_mode.py --model musetalk --weights models/ --video talk.mp4 --audio a.wav --audio2 b.wav
    python benchmarks/avatar_mode.py --model musetalk --make-musetalk-models /tmp/models ...   # deterministic weights
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lipsynckit as lsk
from lipsynckit.bench import machine_name

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="musetalk")
    ap.add_argument("--weights")
    ap.add_argument(
        "--make-musetalk-models", type=Path, help="build a deterministic official models/ folder here"
    )
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--audio2", help="second track (default: the first again)")
    args = ap.parse_args()
    weights = args.weights
    if args.make_musetalk_models is not None:
        reference = REPO / "tests" / "reference"
        sys.path[:0] = [str(REPO / "tests" / "musetalk"), str(REPO / "tests")]
        from mt_helpers import build_models_dir

        weights = str(build_models_dir(args.make_musetalk_models, reference))
    model = lsk.load_model(args.model, weights=weights, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        avatar = Path(d) / "avatar"
        for name, audio in (
            ("first track (prepares)", args.audio),
            ("second track (cached)", args.audio2 or args.audio),
        ):
            t0 = time.perf_counter()
            r = lsk.sync(
                args.video, audio, model=model, output=Path(d) / "out.mp4", avatar_dir=avatar, progress=False
            )
            wall = time.perf_counter() - t0
            rows.append(
                {
                    "run": name,
                    "frames": r.frames,
                    "seconds_per_frame": round(wall / r.frames, 3),
                    "stage_seconds": {k: round(v, 2) for k, v in r.stage_seconds.items()},
                    "avatar_hits": r.avatar_hits,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"machine": machine_name(), "model": args.model, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
