"""Running a whole manifest: plan the pass (skip what verifies), dispatch the jobs to the local
:class:`~lipsynckit.jobs.runner.JobRunner` or to Ray workers, and keep the status manifest.

A module of its own so that the per-job runner and the Ray runner (which builds on it) do not import
each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lipsynckit.jobs.manifest import BadRow, JobSpec, read_manifest
from lipsynckit.jobs.runner import JobRunner, RunDefaults, failed_row, status_path_for
from lipsynckit.jobs.status import JobStatus, StatusLog, verify_output
from lipsynckit.options import SyncOptions

log = logging.getLogger(__name__)


def grouped(jobs: Iterable[JobSpec]) -> list[JobSpec]:
    """Jobs ordered so each template's jobs run together (manifest order kept inside a group)."""
    jobs = list(jobs)
    first: dict[tuple[str, str, str], int] = {}
    for j in jobs:
        first.setdefault(j.group(), j.row)
    return sorted(jobs, key=lambda j: (first[j.group()], j.row))


@dataclass
class ManifestPlan:
    """What a pass over a manifest has to do."""

    todo: list[JobSpec]
    done: list[JobStatus]  # verified from an earlier pass (state "skipped") or rows that cannot parse
    status: StatusLog


def plan_manifest(
    manifest: str | Path, out_dir: str | Path | None = None, status_path: str | Path | None = None
) -> ManifestPlan:
    """Read the manifest and the earlier status; jobs whose output verifies are not run again."""
    rows = read_manifest(manifest, out_dir)
    log_ = StatusLog(status_path or status_path_for(manifest, out_dir))
    previous = log_.read()
    todo: list[JobSpec] = []
    done: list[JobStatus] = []
    for r in rows:
        if isinstance(r, BadRow):
            done.append(failed_row(r))
            continue
        prev = previous.get(str(r.output))
        if prev is not None and prev.key == r.key() and verify_output(prev):
            done.append(prev.model_copy(update={"state": "skipped", "row": r.row, "seconds": 0.0}))
        else:
            todo.append(r)
    return ManifestPlan(grouped(todo), done, log_)


def summarize(rows: Sequence[JobStatus]) -> dict[str, int]:
    out = {"ok": 0, "skipped": 0, "failed": 0}
    for r in rows:
        out[r.state] += 1
    return out


def run_manifest(
    manifest: str | Path,
    out_dir: str | Path | None = None,
    *,
    model: str = "auto",
    weights: str | None = None,
    device: str | None = None,
    model_options: dict[str, Any] | None = None,
    avatar_dir: str | Path | None = None,
    status_path: str | Path | None = None,
    ray: bool | str = False,
    on_status: Callable[[JobStatus], None] | None = None,
    **option_overrides: Any,
) -> list[JobStatus]:
    """Run every job of a manifest (locally, or on Ray with ``ray=True`` / an address) and return one
    status row per manifest row, also written to the status manifest beside the outputs.

    Re-running skips jobs whose output verifies. ``option_overrides`` are :class:`SyncOptions`
    defaults for rows that do not set them.
    """
    from lipsynckit.progress import progress_bar

    plan = plan_manifest(manifest, out_dir, status_path)
    base = Path(out_dir).expanduser().resolve() if out_dir is not None else plan.status.path.parent
    defaults = RunDefaults(
        model=model,
        weights=str(weights) if weights is not None else None,
        device=device,
        model_options=dict(model_options or {}),
        options={k: v for k, v in option_overrides.items() if k != "progress"},
        avatar_dir=str(avatar_dir if avatar_dir is not None else base / ".avatar"),
    )
    progress = bool(option_overrides.get("progress", True))
    SyncOptions(**defaults.options)  # a bad default fails the run before any job
    log.info(
        "manifest %s: %d job(s) to run, %d already done or unreadable",
        manifest,
        len(plan.todo),
        len(plan.done),
    )
    results: list[JobStatus] = list(plan.done)
    bar = progress_bar(total=len(plan.todo), desc="jobs", unit="job", enable=progress)

    def record(st: JobStatus) -> None:
        plan.status.append(st)
        results.append(st)
        bar.update(1)
        if st.state == "failed":
            bar.set_postfix_str(f"{summarize(results)['failed']} failed")
        if on_status is not None:
            on_status(st)

    try:
        if ray is not False and plan.todo:
            from lipsynckit.jobs.ray_runner import run_on_ray

            run_on_ray(plan.todo, defaults, record, address=None if ray is True else str(ray))
        else:
            runner = JobRunner(defaults)
            for spec in plan.todo:
                runner.prepare(spec)
            for spec in plan.todo:
                record(runner.run(spec))
    finally:
        bar.close()
    plan.status.write_all(results)
    counts = summarize(results)
    log.info(
        "manifest %s: %d ok, %d skipped, %d failed; status in %s",
        manifest,
        counts["ok"],
        counts["skipped"],
        counts["failed"],
        plan.status.path,
    )
    return sorted(results, key=lambda s: s.row)
