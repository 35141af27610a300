"""`lipsynckit bench`: init time, FPS (model step and whole pipeline), RAM, VRAM and quality per model.

The report is meant for choosing a model for a given machine: JSON for tools, markdown for people, and a
quality-versus-speed plot.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from lipsynckit.samples import sample_media

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class BenchRow(BaseModel):
    model: str
    device: str
    options: dict[str, Any] = Field(default_factory=dict)  # model options of this row (steps, paste, ...)
    dtype: str = ""  # the dtype asked (--dtype); "" = the model's own
    usable: bool = True
    error: str = ""
    init_seconds: float = 0.0
    face_size: int = 0
    step_fps: float = 0.0  # model.generate alone, on prepared faces, at the chosen batch size
    step_batch: int = 0
    pipeline_fps: float = 0.0  # whole sync (decode, detect, prepare, generate, composite, encode)
    output: str = "mp4"  # what the pipeline run wrote: mp4 (H.264, what users get) or lossless ffv1
    encode_share: float = 0.0  # the encoder's part of the pipeline run's wall time
    realtime_factor: float = 0.0  # pipeline fps / source fps
    peak_rss_mb: float = 0.0
    peak_vram_mb: float = 0.0
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    # of the whole-pipeline run: device_busy_fraction, mean_batch_fill, batches, batch_size, oom_retries
    scheduler: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    metrics_error: str = ""  # why the quality metrics are missing (a clip too short for them, say)
    non_commercial: bool = False

    @property
    def label(self) -> str:
        """The model name, with its options when any (one model may be measured several ways)."""
        parts = [f"{k}={v}" for k, v in sorted(self.options.items())] + ([self.dtype] if self.dtype else [])
        return f"{self.model} ({', '.join(parts)})" if parts else self.model


class BenchReport(BaseModel):
    machine: str
    torch: str
    device: str
    video: str
    audio: str
    frames: int = 0
    rows: list[BenchRow] = Field(default_factory=list)


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _PeakRSS:
    """Samples the resident set size in a thread: the peak of this run, not of the process's life."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self.peak = _rss_mb()
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


def machine_name() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}"


def _step_fps(
    model: Any, frames: np.ndarray, track: Any, features: torch.Tensor, batch: int, repeats: int
) -> float:
    import torch

    from lipsynckit.types import ModelBatch, WorkItem

    face = next(f for f in track.faces if f is not None)
    prepared = model.prepare(frames[0], face)
    items = [WorkItem(0, i % len(features), prepared, features[i % len(features)]) for i in range(batch)]
    model.generate(ModelBatch(items))  # warm-up
    if torch.cuda.is_available() and model.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.generate(ModelBatch(items))
    if torch.cuda.is_available() and model.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - t0)


def bench_model(
    name: str,
    video: Path,
    audio: Path,
    out_dir: Path,
    weights: str | None,
    device: str,
    batch: int,
    model_options: dict[str, Any] | None = None,
    quality: bool = True,
    syncnet: Any | None = None,
    lossless: bool = False,
    dtype: str | None = None,
) -> BenchRow:
    """Measure one model; a failure is recorded in the row, never raised.

    The pipeline run writes H.264 (what a user's run writes) unless ``lossless``: FFV1 costs several
    times more per frame, and the fps would then measure the encoder more than the model.
    """
    import torch

    from lipsynckit.api import detect_faces
    from lipsynckit.errors import LipSyncError
    from lipsynckit.media import load_audio, read_video_frames
    from lipsynckit.options import SyncOptions
    from lipsynckit.pipeline import sync_file
    from lipsynckit.registry import load_model

    row = BenchRow(model=name, device=device, options=dict(model_options or {}), dtype=dtype or "")
    try:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with _PeakRSS() as rss:
            t0 = time.perf_counter()
            model = load_model(
                name,
                weights=weights,
                device=device,
                options=model_options,
                dtype=getattr(torch, dtype) if dtype else None,
            )
            row.init_seconds = time.perf_counter() - t0
            row.face_size = model.info.face_size
            row.non_commercial = model.info.non_commercial
            clip = load_audio(audio)
            frames = read_video_frames(video)
            track = model.adjust_track(detect_faces(frames[:1]), frames.shape[1:3])
            fps_src = 25.0 if len(frames) == 1 else _video_fps(video)
            features = model.audio_features(clip, fps_src)
            row.step_batch = batch
            row.step_fps = _step_fps(model, frames, track, features, batch, repeats=2)
            row.output = "ffv1" if lossless else "mp4"
            out = out_dir / f"{name}.{'mkv' if lossless else 'mp4'}"
            t0 = time.perf_counter()
            result = sync_file(
                video, clip, model, out, SyncOptions(progress=False, batch_size=batch, gate=False)
            )
            wall = time.perf_counter() - t0
            row.pipeline_fps = result.frames / wall
            row.encode_share = result.stage_seconds.get("encode", 0.0) / wall
            row.realtime_factor = row.pipeline_fps / result.fps
            row.stage_seconds = {k: round(v, 3) for k, v in result.stage_seconds.items()}
            row.scheduler = {
                k: float(result.scheduler[k])
                for k in ("device_busy_fraction", "mean_batch_fill", "batches", "batch_size", "oom_retries")
                if k in result.scheduler
            }
            if quality:
                try:
                    row.metrics = _quality(video, out, clip, result.fps, syncnet)
                except Exception as exc:  # noqa: BLE001 - the speed figures stand without the metrics
                    row.metrics_error = (
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    )
                    log.warning("bench of %s: quality metrics not measured: %s", name, row.metrics_error)
        row.peak_rss_mb = rss.peak
        if device.startswith("cuda"):
            row.peak_vram_mb = torch.cuda.max_memory_allocated() / 1024**2
    except LipSyncError as exc:
        row.usable, row.error = False, str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - the bench reports every failure in its table
        log.exception("bench of %s failed", name)
        row.usable, row.error = False, f"{type(exc).__name__}: {exc}"
    return row


def _video_fps(path: Path) -> float:
    from lipsynckit.media import VideoSource

    return float(VideoSource(path).info.fps)


def _quality(
    video: Path, output: Path, clip: Any, fps: float, syncnet: Any | None = None
) -> dict[str, float]:
    """Weight-free metrics of the output against its source, plus LSE-D/LSE-C when a SyncNet is given."""
    from lipsynckit.api import detect_faces
    from lipsynckit.media import read_video_frames
    from lipsynckit.metrics import weightfree_metrics

    gen = read_video_frames(output)
    src = read_video_frames(video)
    src = src[np.arange(len(gen)) % len(src)]
    from lipsynckit.metrics import mouth_box_from_face

    track = detect_faces(src[:1])
    face = next(f for f in track.faces if f is not None)
    mouth = np.asarray(mouth_box_from_face(face.box), dtype=np.float32)
    boxes = np.repeat(mouth[None], len(gen), axis=0)
    m = weightfree_metrics(src, gen, clip, fps, boxes)
    out = {k: float(v) for k, v in m.model_dump().items() if isinstance(v, (int, float))}
    if syncnet is not None:
        lse = syncnet.score_video(gen, clip, fps=fps, face_track=detect_faces(gen))
        out.update({"lse_d": float(lse.lse_d), "lse_c": float(lse.lse_c), "av_offset": float(lse.av_offset)})
    return out


def load_syncnet(path: str | None) -> Any | None:
    """The user's syncnet_v2.model (a path, or the cache); None, with a note, when it is not installed."""
    from lipsynckit.errors import WeightsError
    from lipsynckit.metrics import SyncNetScorer

    try:
        return SyncNetScorer.load(path)
    except WeightsError as exc:
        if path is not None:
            raise
        log.info("LSE-D/LSE-C skipped: %s", str(exc).splitlines()[0])
        return None


def write_report(report: BenchReport, out_dir: Path) -> dict[str, Path]:
    """bench.json, bench.md and bench.png (quality against speed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md", "plot": out_dir / "bench.png"}
    paths["json"].write_text(report.model_dump_json(indent=2))
    lines = [
        f"# lipsynckit bench — {report.machine}",
        "",
        f"torch {report.torch}, device {report.device}; input {Path(report.video).name} + {Path(report.audio).name}",
        "",
        "| model | init s | face px | step fps (batch) | pipeline fps | encoder share | × real time | device busy | peak RSS MB | peak VRAM MB | mouth/audio r | PSNR outside mouth | LSE-D | LSE-C | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        if not r.usable:
            lines.append(f"| {r.label} | – | – | – | – | – | – | – | – | – | – | – | – | – | {r.error} |")
            continue
        busy = r.scheduler.get("device_busy_fraction")
        lines.append(
            f"| {r.label} | {r.init_seconds:.2f} | {r.face_size} | {r.step_fps:.1f} ({r.step_batch}) | "
            f"{r.pipeline_fps:.1f} | {r.encode_share:.0%} ({r.output}) | {r.realtime_factor:.2f} | {'–' if busy is None else f'{busy:.0%}'} | "
            f"{r.peak_rss_mb:.0f} | {r.peak_vram_mb:.0f} | "
            f"{_cell(r.metrics, 'av_correlation', '.2f')} | {_cell(r.metrics, 'identity_psnr', '.1f')} | "
            f"{_cell(r.metrics, 'lse_d', '.2f')} | {_cell(r.metrics, 'lse_c', '.2f')} | "
            f"{'; '.join(n for n in ('non-commercial weights' if r.non_commercial else '', r.metrics_error) if n)} |"
        )
    paths["markdown"].write_text("\n".join(lines) + "\n")
    _plot(report, paths["plot"])
    return paths


def _cell(values: dict[str, float], key: str, fmt: str) -> str:
    """A table cell: the value, or a dash when it was not measured (no SyncNet weights, say)."""
    v = values.get(key)
    return "–" if v is None or v != v else format(v, fmt)


def _plot(report: BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    rows = [r for r in report.rows if r.usable]
    # LSE-C (SyncNet confidence) is the established sync score; without SyncNet weights, the weight-free one
    key = "lse_c" if rows and all("lse_c" in r.metrics for r in rows) else "av_correlation"
    for r in rows:
        x, q = max(r.pipeline_fps, 1e-3), r.metrics.get(key, 0.0)
        ax.scatter([x], [q], s=60)
        ax.annotate(r.label, (x, q), textcoords="offset points", xytext=(5, 5))
    xs = [max(r.pipeline_fps, 1e-3) for r in rows]
    log_scale = bool(xs) and max(xs) / min(xs) >= 10  # speeds spanning a decade or more
    if log_scale:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("whole-pipeline frames per second" + (" (log scale)" if log_scale else ""))
    ax.set_ylabel("LSE-C (SyncNet confidence)" if key == "lse_c" else "mouth-motion / speech correlation")
    ax.set_title(f"lipsynckit bench: {report.device}, {report.machine}", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_bench(
    models: list[str],
    video: Path,
    audio: Path,
    out_dir: Path,
    weights: str | None = None,
    device: str | None = None,
    batch: int = 8,
    syncnet: str | None = None,
    model_options: dict[str, Any] | None = None,
    lossless: bool = False,
    dtype: str | None = None,
) -> BenchReport:
    import torch

    from lipsynckit.media import VideoSource
    from lipsynckit.registry import list_models

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if models == ["all"]:
        models = [r.name for r in list_models(weights) if r.usable]
    report = BenchReport(
        machine=machine_name(), torch=torch.__version__, device=dev, video=str(video), audio=str(audio)
    )
    report.frames = VideoSource(video).info.num_frames
    work = out_dir / "outputs"
    work.mkdir(parents=True, exist_ok=True)
    scorer = load_syncnet(syncnet)
    for name in models:
        log.info("bench: %s on %s", name, dev)
        report.rows.append(
            bench_model(
                name,
                video,
                audio,
                work,
                weights,
                dev,
                batch,
                model_options=model_options,
                syncnet=scorer,
                lossless=lossless,
                dtype=dtype,
            )
        )
    return report


def add_bench_parser(sub: Any) -> None:
    b = sub.add_parser("bench", help="measure init time, FPS, RAM/VRAM and quality per usable model")
    b.add_argument("--models", default="all", help="comma-separated model names, or all usable ones")
    b.add_argument("--video", help="input video or photo (default: a photo shipped with lipsynckit)")
    b.add_argument("--audio", help="input speech (default: 7 s of speech shipped with lipsynckit)")
    b.add_argument(
        "--report",
        help="folder for bench.json, bench.md, bench.png and the outputs (default: a new temp folder)",
    )
    b.add_argument(
        "--lossless",
        action="store_true",
        help="the pipeline run writes lossless FFV1 (default H.264: the encoder should not be what fps measures)",
    )
    b.add_argument("--weights", help="folder with model weights")
    b.add_argument("--device")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument(
        "--syncnet", help="syncnet_v2.model for LSE-D/LSE-C (default: the cache, skipped if absent)"
    )
    b.add_argument(
        "--option",
        "-O",
        action="append",
        metavar="KEY=VALUE",
        help="model option for every model (steps=3)",
    )
    from lipsynckit.cli_options import DTYPE_CHOICES

    b.add_argument("--dtype", choices=DTYPE_CHOICES, help="the dtype every model is asked to run in")
    from lipsynckit.streaming.bench import add_stream_args

    add_stream_args(b)
    b.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "stream", False):
        from lipsynckit.streaming.bench import cmd_stream_bench

        return cmd_stream_bench(args)
    import tempfile

    from lipsynckit.cli_options import model_options_from_args
    from lipsynckit.inputs import check_run

    sample_video, sample_audio = sample_media()
    video = Path(args.video or sample_video).expanduser()
    audio = Path(args.audio or sample_audio).expanduser()
    check_run(video, audio, None)
    out_dir = Path(args.report) if args.report else Path(tempfile.mkdtemp(prefix="lipsynckit-bench-"))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    report = run_bench(
        models,
        video,
        audio,
        out_dir,
        args.weights,
        args.device,
        args.batch,
        args.syncnet,
        model_options=model_options_from_args(args) or None,
        lossless=args.lossless,
        dtype=args.dtype,
    )
    paths = write_report(report, out_dir)
    print(paths["markdown"].read_text())
    for r in report.rows:
        if r.usable:
            print(
                f"{r.label}: model step {r.step_fps:.1f} fps (batch {r.step_batch}); pipeline {r.pipeline_fps:.1f} fps, "
                f"of which the {r.output} encoder took {r.encode_share:.0%}"
            )
    print(f"report written to {out_dir} (bench.json, bench.md, bench.png; outputs/)")
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0
