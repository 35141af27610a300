"""Wav2Lip's generator on torch fp32, ONNX Runtime fp32/int8 and OpenVINO fp32/int8, in ONE run.

Generator fps at batch 1 and 8 (rounds interleaved across runtimes, median per runtime, so a shared
machine's load falls on all alike and the same-run ratios hold), the file pipeline's fps per runtime
(``lipsynckit.sync`` on a 640x360 talking-face clip with given face boxes, FFV1 out, interleaved), and
optionally the 360p real-time stream (``--stream-seconds``). Deterministic weights in the official
container: real cost, meaningless pixels. Each runtime uses ``--threads`` intra-op threads.

Usage: python benchmarks/wav2lip_runtime.py OUT_DIR [--rounds 5] [--threads 2] [--stream-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from official_layouts import wav2lip_checkpoint
from stream_latency import talk360

import lipsynckit as lsk
from lipsynckit.streaming.bench import LIBRIVOX, load_speech, machine, run_config
from lipsynckit_wav2lip.onnx_quantize import calibration_inputs
from lipsynckit_wav2lip.onnx_runtime import Wav2LipOnnxModel
from lipsynckit_wav2lip.runtime import Wav2LipModel

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("wav2lip_runtime")
TALK360_FACE = (230.0, 70.0, 410.0, 275.0)  # the carphone driver's box, scaled onto the 640x360 canvas

Runner = Callable[[np.ndarray, np.ndarray], object]


def load_runtimes(ckpt: Path, threads: int) -> dict[str, Wav2LipModel]:
    torch.set_num_threads(threads)
    return {
        "torch fp32": lsk.load_model("wav2lip", weights=ckpt),
        "onnxruntime fp32": lsk.load_model(
            "wav2lip", weights=ckpt, options={"runtime": "onnx", "onnx_threads": threads}
        ),
        "onnxruntime int8": lsk.load_model(
            "wav2lip",
            weights=ckpt,
            dtype=torch.int8,
            options={"runtime": "onnx", "onnx_threads": threads},
        ),
    }  # type: ignore[return-value]


def generator_runners(models: dict[str, Wav2LipModel], threads: int) -> dict[str, Runner]:
    """One callable per runtime on (audio, face) float32 arrays; OpenVINO compiles the same files."""
    import openvino as ov

    net = models["torch fp32"].net

    def torch_run(a: np.ndarray, f: np.ndarray) -> object:
        with torch.inference_mode():
            return net(torch.from_numpy(a), torch.from_numpy(f))

    runners: dict[str, Runner] = {"torch fp32": torch_run}
    core = ov.Core()
    for name in ("onnxruntime fp32", "onnxruntime int8"):
        m = models[name]
        assert isinstance(m, Wav2LipOnnxModel)
        runners[name] = m.generator
        compiled = core.compile_model(
            str(m.generator.path),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )

        def ov_run(a: np.ndarray, f: np.ndarray, c: object = compiled) -> object:
            return c({"audio": a, "face": f})  # type: ignore[operator]

        runners[name.replace("onnxruntime", "openvino")] = ov_run
    return runners


def generator_fps(runners: dict[str, Runner], rounds: int) -> dict[str, dict[int, float]]:
    cal = calibration_inputs(8)
    inputs = {
        b: (
            np.concatenate([c["audio"] for c in cal[:b]]),
            np.concatenate([c["face"] for c in cal[:b]]),
        )
        for b in (1, 8)
    }
    for run in runners.values():  # warm-up: first calls allocate and pick kernels
        for a, f in inputs.values():
            run(a, f)
    times: dict[str, dict[int, list[float]]] = {n: {1: [], 8: []} for n in runners}
    for r in range(rounds):
        for name, run in runners.items():
            for b, (a, f) in inputs.items():
                reps = 8 if b == 1 else 1
                t = time.perf_counter()
                for _ in range(reps):
                    run(a, f)
                times[name][b].append((time.perf_counter() - t) / (reps * b))
        log.info("generator round %d/%d done", r + 1, rounds)
    return {n: {b: 1.0 / statistics.median(ts) for b, ts in d.items()} for n, d in times.items()}


def pipeline_fps(
    models: dict[str, Wav2LipModel], video: Path, wav: Path, out: Path, rounds: int
) -> dict[str, float]:
    n_src = 100
    boxes = out / "talk360_boxes.json"
    boxes.write_text(json.dumps({"format": "xyxy", "boxes": [list(TALK360_FACE)] * n_src}))
    times: dict[str, list[float]] = {n: [] for n in models}
    frames: dict[str, int] = {}
    for _ in range(rounds):
        for name, model in models.items():
            t = time.perf_counter()
            res = lsk.sync(
                video,
                wav,
                model=model,
                output=out / f"pipe_{name.replace(' ', '_')}.mkv",
                face_boxes=str(boxes),
                batch_size=16,
                output_mode="ffv1",
                progress=False,
                gate=False,
            )
            times[name].append(time.perf_counter() - t)
            frames[name] = res.frames
    return {n: frames[n] / min(ts) for n, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pipeline-rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stream-seconds", type=float, default=0.0)
    p.add_argument("--stream-runtimes", default="onnxruntime int8")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "wav2lip.pth"
    if not ckpt.is_file():
        wav2lip_checkpoint(ckpt, REPO / "tests" / "reference")
    lines = [f"Machine at start: {machine()}", ""]
    models = load_runtimes(ckpt, args.threads)
    gen = generator_fps(generator_runners(models, args.threads), args.rounds)
    base = gen["torch fp32"]
    lines += [
        f"Generator alone, {args.threads} threads, median of {args.rounds} interleaved rounds:",
        "",
        "| runtime | batch 1 fps | batch 8 fps | × torch (1 / 8) |",
        "|---|---|---|---|",
    ]
    for name, d in gen.items():
        lines.append(f"| {name} | {d[1]:.1f} | {d[8]:.1f} | {d[1] / base[1]:.2f} / {d[8] / base[8]:.2f} |")
    lines += ["", f"Machine after the generator rows: {machine()}", ""]

    video = talk360(args.out)
    wav = args.out / "speech4.wav"
    data, sr = sf.read(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0890.wav", dtype="float32")
    sf.write(wav, data[: 4 * sr], sr)
    pipe = pipeline_fps(models, video, wav, args.out, args.pipeline_rounds)
    lines += [
        "File pipeline (`lsk.sync`, 640x360, 4 s speech, 100 frames, given face boxes, FFV1, batch 16):",
        "",
        "| runtime | fps | × torch |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {f:.1f} | {f / pipe['torch fp32']:.2f} |" for n, f in pipe.items()]
    lines += ["", f"Machine after the pipeline rows: {machine()}", ""]

    if args.stream_seconds > 0:
        speech = load_speech(sorted(LIBRIVOX.glob("*.wav")))
        lines += [
            f"360p real-time stream, 1 session, {args.stream_seconds:.0f} s:",
            "",
            "| runtime | fps | model alone b1 / b8 | late | latency p50 / p95 / max ms | keeps 25 fps |",
            "|---|---|---|---|---|---|",
        ]
        for name in [s.strip() for s in args.stream_runtimes.split(",") if s.strip()]:
            row = run_config(models[name], video, speech, 1, args.stream_seconds, args.out / "avatar")
            d = row.model_dump()
            log.info("stream %s: %s", name, d)
            lines.append(
                f"| {name} | {row.fps_min:.2f} | {row.model_fps_b1:.1f} / {row.model_fps_b8:.1f} | "
                f"{row.late_frames}/{row.frames} | {row.p50_ms:.0f} / {row.p95_ms:.0f} / {row.max_ms:.0f} "
                f"| {'yes' if row.keeps_rate else 'no'} |"
            )
            (args.out / f"stream_{name.replace(' ', '_')}.json").write_text(json.dumps(d, indent=1))
        lines += ["", f"Machine after the stream rows: {machine()}"]
    md = "\n".join(lines) + "\n"
    (args.out / "wav2lip_runtime.md").write_text(md)
    (args.out / "wav2lip_runtime.json").write_text(json.dumps({"generator": gen, "pipeline": pipe}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
