"""``lipsynckit bench --stream``: real speech pushed in 20-40 ms chunks at real-time pace into
streaming sessions; reports push-to-play latency, sustained fps, late frames, the audio invariant,
interrupt-to-idle time, drift over a soak, and how many concurrent sessions keep the frame rate.

Wall-clock measurement, so it lives here and in ``benchmarks/stream_latency.py``, never in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from lipsynckit.errors import LipSyncError

log = logging.getLogger(__name__)

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


class SessionRun(BaseModel):
    """What one session measured."""

    frames: int
    speech_frames: int
    idle_frames: int
    fps: float
    late_frames: int
    underruns: int
    reanchors: int
    dropped_frames: int = 0
    repeated_frames: int = 0
    latencies_ms: list[float]
    interrupt_to_idle_ms: list[float]
    audio_invariant: bool
    drift_ms: float
    max_lag_ms: float


class StreamBenchRow(BaseModel):
    """One line of the streaming table (all sessions of one configuration together)."""

    model: str
    template: str
    size: str
    sessions: int
    seconds: float
    fps_min: float
    late_frames: int
    frames: int
    underruns: int
    reanchors: int
    dropped_frames: int = 0
    speech_frames: int = 0
    load: int = 0  # busy processes the benchmark ran beside the sessions
    budget_ms: float = 400.0
    p50_ms: float
    p95_ms: float
    max_ms: float
    interrupt_to_idle_ms: float
    audio_invariant: bool
    drift_ms: float
    max_lag_ms: float
    model_fps_b1: float = float("nan")
    model_fps_b8: float = float("nan")

    @property
    def keeps_rate(self) -> bool:
        """Within the latency budget with every sample delivered (dropped pictures are counted apart)."""
        return self.p95_ms <= self.budget_ms and self.audio_invariant


def load_speech(paths: list[Path], sample_rate: int = 16000) -> list[np.ndarray]:
    from lipsynckit.media import load_audio

    return [load_audio(str(p), sample_rate=sample_rate).numpy() for p in paths]


def _run_one(
    session: Any, speech: list[np.ndarray], sr: int, seconds: float, seed: int, interrupt_every_s: float
) -> SessionRun:
    """Push utterances at real-time pace (chunks of 20-40 ms, 0.4 s pauses, an interrupt now and then)
    on one thread while this one consumes frames at the frame rate."""
    rng = np.random.default_rng(seed)
    fps = session.fps
    pushed: dict[int, list[np.ndarray]] = {}  # utterance id -> the chunks it got, in order
    interrupts: list[float] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            t = time.perf_counter()
            start = t
            u = 0
            next_interrupt = start + interrupt_every_s
            while not stop.is_set() and t - start < seconds:
                x = speech[u % len(speech)]
                i = 0
                while i < len(x) and not stop.is_set():
                    n = int(rng.integers(sr // 50, sr // 25 + 1))
                    c = x[i : i + n]
                    delay = t - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    uid = session.push_audio(c, sr)
                    pushed.setdefault(uid, []).append(c)
                    i += n
                    t += len(c) / sr
                    if time.perf_counter() >= next_interrupt and i > sr:
                        interrupts.append(time.perf_counter())
                        session.interrupt()
                        next_interrupt = time.perf_counter() + interrupt_every_s
                        break
                else:
                    session.flush()
                u += 1
                t += 0.4
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    frames: list[tuple[float, int, bool, int | None, np.ndarray]] = []
    t_begin = time.perf_counter()
    producer.start()
    for f in session.frames():
        frames.append((time.perf_counter(), f.index, f.speaking, f.utterance, f.audio))
        if time.perf_counter() - t_begin >= seconds + 1.0:
            break
    stop.set()
    producer.join()
    if errors:
        raise errors[0]
    times = np.array([f[0] for f in frames])
    index = np.array([f[1] for f in frames])
    lag = times - (t_begin + index / fps)
    lag -= lag[: max(1, int(fps))].min()
    w = max(1, int(5 * fps))
    drift = float(np.median(lag[-w:]) - np.median(lag[:w])) * 1000 if len(lag) > 2 * w else 0.0
    # the invariant: each utterance's speech frames carry a prefix of it, sample for sample; idle is silence
    ok = all(not f[4].any() for f in frames if not f[2])
    by_utt: dict[int, list[np.ndarray]] = {}
    for f in frames:
        if f[2] and f[3] is not None:
            by_utt.setdefault(f[3], []).append(f[4])
    for u, parts in by_utt.items():
        heard = np.concatenate(parts)
        x = np.concatenate(pushed.get(u, [np.zeros(0, np.float32)]))
        m = min(len(heard), len(x))
        ok = ok and np.array_equal(heard[:m], x[:m]) and not heard[m:].any()
    to_idle = []
    for ti in interrupts:
        after = [f[0] for f in frames if f[0] >= ti and not f[2]]
        if after:
            to_idle.append((after[0] - ti) * 1000)
    st = session.stats
    span = times[-1] - times[0] if len(times) > 1 else 1.0
    return SessionRun(
        frames=len(frames),
        speech_frames=sum(1 for f in frames if f[2]),
        idle_frames=sum(1 for f in frames if not f[2]),
        fps=(len(frames) - 1) / span,
        late_frames=st.late_frames,
        underruns=st.underruns,
        reanchors=st.reanchors,
        dropped_frames=st.dropped_frames,
        repeated_frames=st.repeated_frames,
        latencies_ms=[v * 1000 for v in st.latencies],
        interrupt_to_idle_ms=to_idle,
        audio_invariant=bool(ok),
        drift_ms=drift,
        max_lag_ms=float(lag.max() * 1000),
    )


def model_step_fps(model: Any, avatar: Any, speech: np.ndarray, batch: int, seconds: float = 2.0) -> float:
    """Baseline measured in the same run: ``model.generate`` alone on the avatar's face, in frames/s."""
    import torch

    from lipsynckit.types import AudioClip, ModelBatch, WorkItem

    face = next(f for f in avatar.faces if f is not None)
    feats = model.audio_features(AudioClip(torch.from_numpy(speech[:48000]), 16000), 25.0)

    def batch_at(k: int) -> ModelBatch:  # every row of 3 s of speech in turn: voiced and silent frames
        return ModelBatch([WorkItem(0, i, face, feats[(k + i) % len(feats)]) for i in range(batch)])

    model.generate(batch_at(0))  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.generate(batch_at(n))
        n += batch
    return n / (time.perf_counter() - t0)


def run_config(
    model: Any,
    template: str | Path,
    speech: list[np.ndarray],
    sessions: int,
    seconds: float,
    avatar_dir: Path | None = None,
    fps: float = 25.0,
    interrupt_every_s: float = 6.0,
    load: int = 0,
    **stream_options: Any,
) -> StreamBenchRow:
    """``sessions`` concurrent real-time sessions on one loaded model for ``seconds``."""
    from lipsynckit.streaming.api import stream

    opened = [
        stream(template, model=model, fps=fps, realtime=True, avatar_dir=avatar_dir, **stream_options)
        for _ in range(sessions)
    ]
    stack = contextlib.ExitStack()
    base1 = model_step_fps(model, opened[0].avatar, speech[0], 1)
    base8 = model_step_fps(model, opened[0].avatar, speech[0], 8)
    runs: list[SessionRun | None] = [None] * sessions
    errs: list[BaseException] = []

    def go(k: int) -> None:
        try:
            runs[k] = _run_one(opened[k], speech, 16000, seconds, seed=k, interrupt_every_s=interrupt_every_s)
        except BaseException as exc:  # noqa: BLE001
            errs.append(exc)

    threads = [threading.Thread(target=go, args=(k,), daemon=True) for k in range(sessions)]
    try:
        stack.enter_context(busy_load(load))
        for s in opened:  # every session's clock starts now, not when it was opened
            s._t0 = s.clock.now()  # noqa: SLF001
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stack.close()
        for s in opened:
            s.close()
    if errs:
        raise errs[0]
    done = [r for r in runs if r is not None]
    lat = np.concatenate([np.asarray(r.latencies_ms) for r in done]) if done else np.zeros(1)
    lat = lat if lat.size else np.zeros(1)
    idle = [v for r in done for v in r.interrupt_to_idle_ms]
    w, h = opened[0].avatar.size
    return StreamBenchRow(
        model=model.info.name,
        template=Path(template).name,
        size=f"{w}x{h}",
        sessions=sessions,
        seconds=seconds,
        fps_min=min(r.fps for r in done),
        late_frames=sum(r.late_frames for r in done),
        frames=sum(r.frames for r in done),
        underruns=sum(r.underruns for r in done),
        reanchors=sum(r.reanchors for r in done),
        dropped_frames=sum(r.dropped_frames for r in done),
        speech_frames=sum(r.speech_frames for r in done),
        load=load,
        budget_ms=opened[0].options.max_latency_ms,
        p50_ms=float(np.percentile(lat, 50)),
        p95_ms=float(np.percentile(lat, 95)),
        max_ms=float(lat.max()),
        interrupt_to_idle_ms=float(np.median(idle)) if idle else float("nan"),
        audio_invariant=all(r.audio_invariant for r in done),
        drift_ms=max((r.drift_ms for r in done), key=abs),
        max_lag_ms=max(r.max_lag_ms for r in done),
        model_fps_b1=base1,
        model_fps_b8=base8,
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001
        gpu = "no GPU"
    return f"{os.cpu_count()}-core {cpu}, {gpu}, load average {load:.1f}"


def busy_load(k: int) -> contextlib.AbstractContextManager[None]:
    """``k`` busy processes (a pure-Python spin loop each) for the duration of the block."""

    @contextlib.contextmanager
    def run() -> Iterator[None]:
        procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
            for _ in range(max(0, k))
        ]
        try:
            yield
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()

    return run()


def markdown(rows: list[StreamBenchRow], header: bool = True) -> str:
    head = (
        "| model | avatar | load | sessions | s | fps (min) | model alone fps (batch 1 / 8) | late frames "
        "| dropped / speech frames | underruns | idle skips | latency p50 / p95 / max ms | interrupt→idle ms "
        "| audio invariant | drift ms | within budget |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.model} | {r.template} {r.size} | {r.load} | {r.sessions} | {r.seconds:.0f} | {r.fps_min:.2f} | "
        f"{r.model_fps_b1:.1f} / {r.model_fps_b8:.1f} | {r.late_frames}/{r.frames} | "
        f"{r.dropped_frames}/{r.speech_frames} | {r.underruns} | {r.reanchors} | "
        f"{r.p50_ms:.0f} / {r.p95_ms:.0f} / {r.max_ms:.0f} | "
        f"{'-' if math.isnan(r.interrupt_to_idle_ms) else f'{r.interrupt_to_idle_ms:.0f}'} | "
        f"{'yes' if r.audio_invariant else 'NO'} | {r.drift_ms:+.0f} | "
        f"{'yes' if r.keeps_rate else f'no (p95 > {r.budget_ms:.0f} ms)'} |\n"
        for r in rows
    )
    return (head if header else "") + body


def run_stream_bench(
    models: list[str],
    template: str | Path,
    audio: list[Path],
    seconds: float = 20.0,
    max_sessions: int = 1,
    soak: float | None = None,
    weights: str | None = None,
    device: str | None = None,
    avatar_dir: Path | None = None,
    model_options: dict[str, Any] | None = None,
    load: int = 0,
    on_row: Callable[[StreamBenchRow, str | None], None] | None = None,
    **stream_options: Any,
) -> list[StreamBenchRow]:
    """One row per model and session count (1, 2, 4, ... up to ``max_sessions``; every count is run
    unless a row's p95 passes four times the latency budget or an audio sample is lost, and the reason
    is passed to ``on_row``), plus a soak row when ``soak`` seconds are asked."""
    from lipsynckit.api import resolve_model

    speech = load_speech(audio)
    rows: list[StreamBenchRow] = []
    for name in models:
        model = resolve_model(name, weights, device, None, model_options)
        counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n < max_sessions] + [max_sessions]
        for n in counts:
            row = run_config(model, template, speech, n, seconds, avatar_dir, load=load, **stream_options)
            log.info("stream bench: %s", row)
            rows.append(row)
            stop = None
            if not row.audio_invariant:
                stop = f"{n} session(s) lost audio samples"
            elif row.p95_ms > 4 * row.budget_ms:
                stop = f"{n} session(s): p95 {row.p95_ms:.0f} ms, over 4x the {row.budget_ms:.0f} ms budget"
            elif n == counts[-1]:
                stop = f"reached --sessions {max_sessions}"
            if on_row is not None:
                on_row(row, stop)
            if stop is not None:
                break
        if soak:
            rows.append(
                run_config(
                    model,
                    template,
                    speech,
                    1,
                    soak,
                    avatar_dir,
                    interrupt_every_s=1e9,
                    load=load,
                    **stream_options,
                )
            )
            if on_row is not None:
                on_row(rows[-1], "soak done")
    return rows


def add_stream_args(b: argparse.ArgumentParser) -> None:
    """The ``--stream`` options of ``lipsynckit bench`` (the model, video and weights flags are shared)."""
    g = b.add_argument_group("streaming (--stream)")
    g.add_argument("--stream", action="store_true", help="measure real-time streaming sessions instead")
    g.add_argument("--seconds", type=float, default=20.0, help="length of each streaming run")
    g.add_argument(
        "--sessions", type=int, default=1, help="run 1, 2, 4, ... concurrent sessions up to this (a row each)"
    )
    g.add_argument(
        "--load", type=int, default=0, metavar="K", help="run K busy processes beside the sessions"
    )
    g.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for the process (default 1, as serve)"
    )
    g.add_argument("--soak", type=float, metavar="SECONDS", help="also one long session, for drift")
    g.add_argument("--speech", nargs="*", help="speech files pushed in turn (default: the LibriVox test set)")


def cmd_stream_bench(args: argparse.Namespace) -> int:
    from lipsynckit.cli_options import model_options_from_args
    from lipsynckit.samples import sample_media
    from lipsynckit.streaming.threads import set_stream_threads

    set_stream_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip() and m.strip() != "all"] or ["viseme"]
    if args.sessions < 1 or args.load < 0:
        raise LipSyncError(
            f"--sessions {args.sessions} / --load {args.load}: need at least 1 session and 0 or more load",
            stage="bench",
        )
    print(f"Machine: {machine()}; torch threads {args.threads}; {args.load} busy process(es) beside\n")
    print(markdown([]), end="", flush=True)

    def show(row: StreamBenchRow, stop: str | None) -> None:
        print(markdown([row], header=False), end="", flush=True)
        if stop:
            print(f"stopped: {stop}", flush=True)

    # default: the LibriVox sentences where Debian's pocketsphinx-testdata is installed, else the sample
    speech = [Path(p) for p in args.speech] if args.speech else sorted(LIBRIVOX.glob("*.wav"))
    speech = speech or [sample_media()[1]]
    rows = run_stream_bench(
        models,
        args.video or sample_media()[0],
        speech,
        seconds=args.seconds,
        max_sessions=args.sessions,
        soak=args.soak,
        weights=args.weights,
        device=args.device,
        model_options=model_options_from_args(args) or None,
        load=args.load,
        on_row=show,
    )
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    md = f"Machine: {machine()}; torch threads {args.threads}; load {args.load}\n\n" + markdown(rows)
    (report / "stream.md").write_text(md)
    (report / "stream.json").write_text(json.dumps([r.model_dump() for r in rows], indent=1))
    return 0
