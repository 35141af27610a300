"""Streaming latency as a curve: p50/p95/max push-to-play latency and dropped frames against CPU load
(K busy processes beside the sessions) and against concurrent sessions (1, 2, 4, 8).

Real LibriVox speech is pushed in 20-40 ms chunks at real-time pace into real-time sessions on one
loaded model (``lipsynckit.streaming.bench.run_config``). Each row also reports the process's CPU use
(cores) and the load average when it ended. It runs against whichever lipsynckit is on the path, so
the same script measures a before/after pair in one sitting (``PYTHONPATH=old/src`` then the new one):
a version without ``set_stream_threads`` runs with torch's default threads, as it shipped.

Wav2Lip uses deterministic stand-in weights in the official container: real cost, meaningless pixels.

Usage: python benchmarks/stream_load_curve.py OUT_DIR [--label after] [--models viseme]
       [--seconds 15] [--loads 0,2,4,6] [--sessions 1,2,4,8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def busy(k: int) -> Iterator[None]:
    """``k`` busy processes (pure-Python spin loops) while the block runs. Kept here, not imported from
    ``lipsynckit.streaming.bench.busy_load``: the script also measures older trees that lack it."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def measure(model, template, speech, sessions, load, seconds, avatar_dir) -> dict:  # noqa: ANN001
    from lipsynckit.streaming.bench import run_config

    t_cpu = sum(os.times()[:2])
    t0 = time.perf_counter()
    with busy(load):
        row = run_config(model, template, speech, sessions, seconds, avatar_dir)
    cores = (sum(os.times()[:2]) - t_cpu) / (time.perf_counter() - t0)
    d = row.model_dump()
    return {
        "model": d["model"],
        "load": load,
        "sessions": sessions,
        "p50_ms": d["p50_ms"],
        "p95_ms": d["p95_ms"],
        "max_ms": d["max_ms"],
        "dropped": d.get("dropped_frames", 0),
        "speech_frames": d.get("speech_frames", 0),
        "late": d["late_frames"],
        "frames": d["frames"],
        "fps_min": d["fps_min"],
        "clock_resets": d["reanchors"],
        "audio_invariant": d["audio_invariant"],
        "cores": cores,
        "loadavg": os.getloadavg()[0],
    }


def line(label: str, r: dict) -> str:
    drop = f"{r['dropped']}/{r['speech_frames']}" if r["speech_frames"] else f"{r['dropped']}/-"
    return (
        f"| {label} | {r['model']} | {r['load']} | {r['sessions']} | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} / "
        f"{r['max_ms']:.0f} | {drop} | {r['late']}/{r['frames']} | {r['fps_min']:.2f} | {r['clock_resets']} | "
        f"{'yes' if r['audio_invariant'] else 'NO'} | {r['cores']:.2f} | {r['loadavg']:.1f} |"
    )


HEAD = (
    "| code | model | busy procs | sessions | latency p50 / p95 / max ms | dropped / speech frames "
    "| late frames | fps (min) | clock resets | audio invariant | CPU cores used | load avg after |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--label", default="this tree")
    p.add_argument("--models", default="viseme")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--loads", default="0,2,4,6")
    p.add_argument("--sessions", default="1,2,4,8")
    p.add_argument("--threads", type=int, default=1, help="torch threads where the code can set them")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    import lipsynckit.streaming as streaming
    from lipsynckit.api import resolve_model
    from lipsynckit.streaming.bench import LIBRIVOX, load_speech, machine

    if hasattr(streaming, "set_stream_threads"):
        streaming.set_stream_threads(args.threads)
    import torch

    speech = load_speech(sorted(LIBRIVOX.glob("*.wav")))
    loads = [int(v) for v in args.loads.split(",") if v]
    counts = [int(v) for v in args.sessions.split(",") if v]
    print(f"Machine: {machine()}; torch threads {torch.get_num_threads()}\n\n{HEAD}", flush=True)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name == "wav2lip":
            sys.path.insert(0, str(REPO / "benchmarks"))
            from official_layouts import wav2lip_checkpoint
            from stream_latency import talk360

            ckpt = args.out / "wav2lip.pth"
            if not ckpt.is_file():
                wav2lip_checkpoint(ckpt, REPO / "tests" / "reference")
            model, template = resolve_model("wav2lip", str(ckpt), None), talk360(args.out)
        else:
            model, template = resolve_model(name, None, None), REPO / "examples" / "astronaut.jpg"
        plan = [(1, k) for k in loads] + [(n, 0) for n in counts if n != 1 or 0 not in loads]
        for sessions, load in plan:
            r = measure(model, template, speech, sessions, load, args.seconds, args.out / f"avatar-{name}")
            rows.append(r)
            print(line(args.label, r), flush=True)
    (args.out / f"curve-{args.label.replace(' ', '_')}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
