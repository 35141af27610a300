"""The whole pipeline (batching scheduler, overlapped stages) against a plain frame-by-frame loop.

Why: most lip-sync scripts run "read a frame, crop, run the model on it, paste, write" one frame at a
time. This runs exactly that loop with a real lipsynckit model, and ``lipsynckit.sync``'s pipeline,
on the same video, audio and face boxes (found once beforehand, so detection is in neither timing),
both writing lossless FFV1. It prints one JSON object: frames per second of each, their ratio, and
how far the two outputs differ (batched convolutions may round a few pixels differently).

    .venv/bin/python benchmarks/pipeline_vs_loop.py --model wav2lip --weights wav2lip.pth \\
        --video talk720.mp4 --audio speech4.wav --batch 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import lipsynckit as lsk
from lipsynckit.faces import load_face_boxes
from lipsynckit.media import VideoSink, VideoSource, index_map, load_audio, read_video_frames
from lipsynckit.model import LipSyncModel
from lipsynckit.options import SyncOptions
from lipsynckit.pipeline import sync_file
from lipsynckit.types import AudioClip, FaceTrack, ModelBatch, WorkItem

log = logging.getLogger("pipeline_vs_loop")


def write_boxes(track: FaceTrack, path: Path) -> None:
    boxes = [None if f is None else [float(v) for v in f.box] for f in track.faces]
    landmarks = [None if f is None or f.landmarks is None else f.landmarks.tolist() for f in track.faces]
    data: dict[str, object] = {"format": "xyxy", "boxes": boxes}
    if any(lm is not None for lm in landmarks):
        data["landmarks"] = landmarks
    path.write_text(json.dumps(data))


def plain_loop(model: LipSyncModel, video: Path, clip: AudioClip, track: FaceTrack, out: Path) -> int:
    """One frame at a time: read, prepare, generate (batch of one), composite, write."""
    src = VideoSource(video)
    info = src.info
    features = model.audio_features(clip, float(info.fps))
    index = index_map(len(features), info.num_frames, "loop")
    # as the pipeline (and the official Wav2Lip): box rules over the frames the audio needs only
    needed = FaceTrack(faces=track.faces[: int(index.max()) + 1], detector=track.detector)
    adjusted = model.adjust_track(needed, (info.height, info.width))
    with VideoSink(
        out, fps=src.fps_fraction, size=(info.width, info.height), audio=clip, mode="ffv1"
    ) as sink:
        for k, frame in enumerate(src.frames(int(s) for s in index)):
            face = adjusted.faces[int(index[k])]
            if face is None:
                sink.write(frame)
                continue
            prepared = model.prepare(frame, face)
            generated = model.generate(ModelBatch([WorkItem(0, k, prepared, features[k])]))[0]
            sink.write(model.composite(frame, prepared, generated))
    return len(index)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="wav2lip")
    ap.add_argument("--weights")
    ap.add_argument("--video", required=True, type=Path)
    ap.add_argument("--audio", required=True, type=Path)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="best of N runs per path (interleaved)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = lsk.load_model(args.model, weights=args.weights, device=args.device)
    clip = load_audio(args.audio)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_src = VideoSource(args.video).info.num_frames
        track = lsk.detect_faces(read_video_frames(args.video)[:n_src])
        boxes = work / "boxes.json"
        write_boxes(track, boxes)
        opts = SyncOptions(
            face_boxes=boxes, batch_size=args.batch, output_mode="ffv1", progress=False, gate=False
        )
        t_loop = t_pipe = float("inf")
        frames = 0
        for _ in range(args.repeats):  # interleaved: both paths see the same machine load
            t0 = time.perf_counter()
            frames = plain_loop(model, args.video, clip, load_face_boxes(boxes, n_src), work / "loop.mkv")
            t_loop = min(t_loop, time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = sync_file(args.video, clip, model, work / "pipe.mkv", opts)
            t_pipe = min(t_pipe, time.perf_counter() - t0)
        a = read_video_frames(work / "loop.mkv").astype(np.int16)
        b = read_video_frames(work / "pipe.mkv").astype(np.int16)
        diff = np.abs(a - b)
    print(
        json.dumps(
            {
                "model": args.model,
                "device": args.device,
                "frames": frames,
                "batch": args.batch,
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "loop_fps": round(frames / t_loop, 2),
                "pipeline_fps": round(frames / t_pipe, 2),
                "speedup": round(t_loop / t_pipe, 3),
                "max_abs_diff": int(diff.max()),
                "differing_pixel_fraction": float((diff > 0).mean()),
                "pipeline_stage_seconds": {k: round(v, 3) for k, v in result.stage_seconds.items()},
                "device_busy_fraction": result.scheduler.get("device_busy_fraction"),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
