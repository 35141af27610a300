"""One `lipsynckit bench` measurement per process, with model options and the scheduler's statistics.

``lipsynckit bench`` takes no model options (no ``--fp16``, no ``--steps``) and its rows do not keep
the scheduler's statistics; issue 6 needs both (fp16 figures, the device-busy fraction). This driver
calls the same :func:`lipsynckit.bench.bench_model` with options, captures the ``SyncResult`` of its
whole-pipeline run, and writes one JSON record per configuration, so that each configuration can run
in its own process under its own time limit. ``merge`` turns the records into the usual
``bench.json`` / ``bench.md`` / ``bench.png`` plus ``device_bench.md`` / ``device_bench.json`` with the
issue's columns.

Usage:
    python benchmarks/gpu_bench.py run LABEL --model NAME --weights PATH --video V --audio A \\
        --work DIR [--device cuda] [--batch 16] [-O fp16=true ...]
    python benchmarks/gpu_bench.py merge DIR --report OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lipsynckit import pipeline
from lipsynckit.bench import BenchReport, BenchRow, bench_model, machine_name, write_report

log = logging.getLogger("gpu_bench")


def _options(pairs: list[str]) -> dict[str, Any]:
    """``-O key=value`` as the CLI reads them: JSON values where they parse, else strings."""
    out: dict[str, Any] = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"-O expects key=value, got {kv!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cuda_facts() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "total_memory_mb": props.total_memory / 1024**2,
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "peak_reserved_mb": torch.cuda.max_memory_reserved() / 1024**2,
    }


def run(args: argparse.Namespace) -> int:
    from lipsynckit.media import VideoSource

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    record_path = work / f"{args.label}.json"
    options = _options(args.option or [])
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    record: dict[str, Any] = {
        "label": args.label,
        "model": args.model,
        "options": options,
        "batch": args.batch,
        "started": time.time(),
        "report": {
            "machine": machine_name(),
            "torch": torch.__version__,
            "device": device,
            "video": str(args.video),
            "audio": str(args.audio),
            "frames": VideoSource(args.video).info.num_frames,
        },
        # what stays on disk if this process is killed by its time limit before the end
        "row": BenchRow(
            model=args.label, device=device, usable=False, error="did not finish (time limit or crash)"
        ).model_dump(),
        "scheduler": {},
        "sync": {},
    }
    record_path.write_text(json.dumps(record, indent=2))

    captured: dict[str, Any] = {}
    real_sync_file = pipeline.sync_file

    def spy(*a: Any, **k: Any) -> Any:  # bench_model imports sync_file from the module at call time
        result = real_sync_file(*a, **k)
        captured["result"] = result
        return result

    pipeline.sync_file = spy  # type: ignore[assignment]
    t0 = time.perf_counter()
    try:
        row = bench_model(
            args.model,
            args.video,
            args.audio,
            work / f"{args.label}-outputs",
            args.weights,
            device,
            args.batch,
            model_options=options,
            quality=args.quality,
        )
    finally:
        pipeline.sync_file = real_sync_file  # type: ignore[assignment]
    row.model = args.label
    record["row"] = row.model_dump()
    record["elapsed_s"] = time.perf_counter() - t0
    record["cuda"] = _cuda_facts() if device.startswith("cuda") else {}
    res = captured.get("result")
    if res is not None:
        record["scheduler"] = dict(res.scheduler)
        record["sync"] = {
            "frames": res.frames,
            "fps": res.fps,
            "size": [res.width, res.height],
            "frames_with_face": res.frames_with_face,
            "failed_frames": len(res.failed_frames),
            "detector": res.detector,
            "notes": list(res.notes),
        }
    record_path.write_text(json.dumps(record, indent=2, default=str))
    busy = record["scheduler"].get("device_busy_fraction")
    print(
        f"{args.label}: usable={row.usable} step {row.step_fps:.2f} fps (batch {row.step_batch}), "
        f"pipeline {row.pipeline_fps:.2f} fps, x{row.realtime_factor:.2f} real time, "
        f"peak VRAM {row.peak_vram_mb:.0f} MB, busy {busy if busy is None else f'{busy:.2f}'}"
        + (f"; error: {row.error}" if row.error else ""),
        flush=True,
    )
    return 0 if row.usable else 1


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def merge(args: argparse.Namespace) -> int:
    records = [json.loads(p.read_text()) for p in args.work.glob("*.json")]
    records = sorted((r for r in records if "row" in r and "report" in r), key=lambda r: r.get("started", 0))
    if not records:
        print(f"no records in {args.work}", file=sys.stderr)
        return 1
    head = records[0]["report"]
    report = BenchReport(**head, rows=[BenchRow(**r["row"]) for r in records])
    out: Path = args.report
    write_report(report, out)
    (out / "device_bench.json").write_text(json.dumps(records, indent=2, default=str))
    lines = [
        f"# Device bench — {head['machine']}",
        "",
        f"torch {head['torch']}, device {head['device']}; {Path(head['video']).name} ({head['frames']} frames)",
        "",
        "| config | options | init s | face px | step fps (batch) | pipeline fps | × real time | peak VRAM MB "
        "| device busy | batch fill | frames | audio | seconds per stage | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        row, sched = r["row"], r.get("scheduler") or {}
        opts = ", ".join(f"{k}={v}" for k, v in r.get("options", {}).items()) or "defaults"
        if not row["usable"]:
            lines.append(f"| {row['model']} | {opts} | | | | | | | | | | | | {row['error']} |")
            continue
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row.get("stage_seconds", {}).items())
        lines.append(
            f"| {row['model']} | {opts} | {row['init_seconds']:.1f} | {row['face_size']} | "
            f"{row['step_fps']:.1f} ({row['step_batch']}) | {row['pipeline_fps']:.1f} | "
            f"{row['realtime_factor']:.2f} | {row['peak_vram_mb']:.0f} | "
            f"{_fmt(sched.get('device_busy_fraction'), '.2f')} | {_fmt(sched.get('mean_batch_fill'), '.2f')} | "
            f"{r.get('sync', {}).get('frames', '–')} | {Path(r['report']['audio']).name} | {stages} | "
            f"{'; '.join(r.get('sync', {}).get('notes', []))} |"
        )
    (out / "device_bench.md").write_text("\n".join(lines) + "\n")
    print((out / "device_bench.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="bench one model configuration into WORK/LABEL.json")
    r.add_argument("label", help="row name, e.g. 'musetalk-fp16' (also the record's file name)")
    r.add_argument("--model", required=True)
    r.add_argument("--weights", required=True)
    r.add_argument("--video", type=Path, required=True)
    r.add_argument("--audio", type=Path, required=True)
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--device")
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--option", "-O", action="append", metavar="KEY=VALUE", help="any model option")
    r.add_argument(
        "--quality",
        action="store_true",
        help="also the weight-free quality metrics (meaningless with "
        "deterministic weights; off by default to save time)",
    )
    m = sub.add_parser("merge", help="WORK/*.json -> bench.{json,md,png} + device_bench.{md,json}")
    m.add_argument("work", type=Path)
    m.add_argument("--report", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(args) if args.cmd == "run" else merge(args)


if __name__ == "__main__":
    sys.exit(main())
