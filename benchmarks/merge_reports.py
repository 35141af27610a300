"""Merge several ``lipsynckit bench`` reports (one per configuration) into one report and one table.

The device check runs ``lipsynckit bench`` once per configuration (model x precision), each in its own
process under its own time limit, into ``REPORTS/<label>/``. This script joins their ``bench.json``:

- ``bench.json`` / ``bench.md`` / ``bench.png``: the usual report, all rows together;
- ``device_bench.md``: the table issue 6 asks for (model-step FPS, end-to-end FPS, peak VRAM, device-busy
  fraction, batch fill, seconds per stage), one row per configuration, its input named.

A ``<label>/`` folder without ``bench.json`` (the run was skipped, stopped by its time limit, or crashed)
becomes a row that says so, from its ``status`` file when there is one. Folders are taken in name order (the device check numbers them in running order).

Usage: python benchmarks/merge_reports.py REPORTS --out OUT_DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lipsynckit.bench import BenchReport, BenchRow, write_report


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def load(reports: Path) -> list[tuple[str, BenchReport | str]]:
    """(label, report, or why there is none) per sub-folder, in name order."""
    out: list[tuple[str, BenchReport | str]] = []
    for d in sorted(p for p in reports.iterdir() if p.is_dir()):
        f, status = d / "bench.json", d / "status"
        if f.is_file():
            out.append((d.name, BenchReport.model_validate_json(f.read_text())))
        else:
            why = status.read_text().strip() if status.is_file() else ""
            out.append((d.name, f"did not finish ({why or 'time limit or crash'})"))
    return out


def table(items: list[tuple[str, BenchReport | str]]) -> list[str]:
    lines = [
        "| config | model (options) | init s | face px | step fps (batch) | pipeline fps | × real time "
        "| peak VRAM MB | device busy | batch fill | input | seconds per stage | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rep in items:
        if isinstance(rep, str):
            lines.append(f"| {label} | | | | | | | | | | | | {rep} |")
            continue
        for r in rep.rows:
            inp = f"{Path(rep.video).name} + {Path(rep.audio).name}"
            if not r.usable:
                lines.append(f"| {label} | {r.label} | | | | | | | | | {inp} | | {r.error} |")
                continue
            s = r.scheduler
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r.stage_seconds.items())
            lines.append(
                f"| {label} | {r.label} | {r.init_seconds:.1f} | {r.face_size} | {r.step_fps:.3g} ({r.step_batch}) "
                f"| {r.pipeline_fps:.3g} | {r.realtime_factor:.2f} | {r.peak_vram_mb:.0f} "
                f"| {_fmt(s.get('device_busy_fraction'), '.0%')} | {_fmt(s.get('mean_batch_fill'), '.2f')} "
                f"| {inp} | {stages} | {'non-commercial weights' if r.non_commercial else ''} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", type=Path, help="folder of <label>/bench.json")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    items = load(args.reports)
    done = [rep for _, rep in items if isinstance(rep, BenchReport)]
    if not done:
        print(f"no finished report under {args.reports}", file=sys.stderr)
        return 1
    head = done[0]
    rows: list[BenchRow] = []
    for label, rep in items:
        if isinstance(rep, str):
            rows.append(BenchRow(model=label, device=head.device, usable=False, error=rep))
        else:
            rows.extend(rep.rows)
    merged = head.model_copy(update={"rows": rows, "audio": "per row, see device_bench.md"})
    write_report(merged, args.out)
    md = [
        f"# Device bench — {head.machine}",
        "",
        f"torch {head.torch}, device {head.device}; one `lipsynckit bench` process per configuration",
        "",
        *table(items),
    ]
    (args.out / "device_bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
