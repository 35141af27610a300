"""Running a whole manifest: plan the pass (skip what verifies), check that every output folder can
be written, dispatch the jobs to the local :class:`~lipsynckit.jobs.runner.JobRunner` (several in
flight on one loaded model) or to Ray workers, and keep the status manifest.

A module of its own so that the per-job runner and the Ray runner (which builds on it) do not import
each other.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lipsynckit.jobs.concurrency import default_concurrency, on_gpu
from lipsynckit.jobs.manifest import BadRow, JobSpec, read_manifest
from lipsynckit.jobs.results import ManifestResult, announce
from lipsynckit.jobs.runner import JobRunner, RunDefaults, failed_row, status_path_for
from lipsynckit.jobs.status import JobFailure, JobStatus, StatusLog, verify_output
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
    manifest: str | Path,
    out_dir: str | Path | None = None,
    status_path: str | Path | None = None,
    *,
    allow_outside: bool = False,
) -> ManifestPlan:
    """Read the manifest and its own earlier status; rows whose output verifies are not run again.

    Earlier results are found by row id (the hash of the row's content), so a row that failed, even
    one naming another row's output, never hides another row's result.
    """
    rows = read_manifest(manifest, out_dir, allow_outside=allow_outside)
    log_ = StatusLog(status_path or status_path_for(manifest, out_dir), manifest=manifest)
    log_.claim()
    previous = log_.read()
    todo: list[JobSpec] = []
    done: list[JobStatus] = []
    for r in rows:
        if isinstance(r, BadRow):
            done.append(failed_row(r))
            continue
        prev = previous.get(r.key())
        if prev is not None and prev.output == str(r.output) and verify_output(prev):
            done.append(prev.model_copy(update={"state": "skipped", "row": r.row, "seconds": 0.0}))
        else:
            todo.append(r)
    return ManifestPlan(grouped(todo), done, log_)


def summarize(rows: Sequence[JobStatus]) -> dict[str, int]:
    out = {"ok": 0, "skipped": 0, "failed": 0}
    for r in rows:
        out[r.state] += 1
    return out


def _unwritable(folder: Path, created: list[Path]) -> str | None:
    """Why ``folder`` cannot take outputs (None: it can). Missing folders are made (and listed in
    ``created``, parents first) and a probe file is written and removed."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for m in reversed(missing):
        try:
            m.mkdir()
            created.append(m)
        except FileExistsError:
            if not m.is_dir():
                return f"{m} is a file, not a folder"
        except OSError as e:
            return f"cannot create the folder {m} ({e.strerror or e})"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".lipsynckit-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot write into {folder} ({e.strerror or e})"
    return None


def check_output_folders(jobs: Sequence[JobSpec]) -> tuple[list[JobSpec], list[JobStatus], list[Path]]:
    """Before any job: make and probe every output folder. Returns the jobs that can run, failed rows
    for the others (one line each, nothing computed), and the folders made (to remove if left empty)."""
    created: list[Path] = []
    why: dict[Path, str | None] = {}
    for folder in sorted({j.output.parent for j in jobs}):
        why[folder] = _unwritable(folder, created)
    ok: list[JobSpec] = []
    failed: list[JobStatus] = []
    for j in jobs:
        reason = why[j.output.parent]
        if reason is None:
            ok.append(j)
            continue
        failed.append(
            JobStatus(
                row=j.row,
                key=j.key(),
                state="failed",
                template=str(j.template),
                audio=str(j.audio) if j.audio else None,
                output=str(j.output),
                error=JobFailure(
                    message=f"output folder not writable: {reason}",
                    stage="output",
                    file=str(j.output.parent),
                    remedy="make the folder writable, or choose another output folder (-o)",
                ),
            )
        )
    return ok, failed, created


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this run made that hold nothing (deepest first): a failed job leaves none."""
    for f in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            f.rmdir()
        except OSError:
            pass


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
    concurrency: int | None = None,
    allow_outside: bool = False,
    ray: bool | str = False,
    ray_workers: int | None = None,
    ray_gpus_per_worker: float | None = None,
    on_status: Callable[[JobStatus], None] | None = None,
    summary: bool = True,
    **option_overrides: Any,
) -> ManifestResult:
    """Run every job of a manifest (locally, or on Ray with ``ray=True`` / an address) and return one
    status row per manifest row, also written to the manifest's own status file beside the outputs.

    Locally, ``concurrency`` jobs (default :func:`default_concurrency`) are kept in flight on one
    loaded model, their frames batched together. Re-running skips rows whose output verifies. Outputs
    stay inside ``out_dir`` unless ``allow_outside``. ``option_overrides`` are :class:`SyncOptions`
    defaults for rows that do not set them. A progress bar (a widget in notebooks) and, with
    ``summary``, a closing line per failure are shown even when logging is not set up.
    """
    from lipsynckit.progress import progress_bar

    if concurrency is not None and concurrency < 1:
        from lipsynckit.errors import LipSyncError

        raise LipSyncError(
            f"concurrency must be at least 1, got {concurrency}", stage="options", remedy="use 1 or more"
        )
    plan = plan_manifest(manifest, out_dir, status_path, allow_outside=allow_outside)
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
    todo, unwritable, created = check_output_folders(plan.todo)
    log.info(
        "manifest %s: %d job(s) to run, %d already done or unreadable",
        manifest,
        len(todo),
        len(plan.done) + len(unwritable),
    )
    results: list[JobStatus] = [*plan.done, *unwritable]
    for st in unwritable:
        plan.status.append(st)
    bar = progress_bar(total=len(todo), desc="jobs", unit="job", enable=progress, respect_logging=False)

    def record(st: JobStatus) -> None:
        plan.status.append(st)
        results.append(st)
        bar.update(1)
        if st.state == "failed":
            bar.set_postfix_str(f"{summarize(results)['failed']} failed")
        if on_status is not None:
            on_status(st)

    try:
        if ray is not False and todo:
            from lipsynckit.jobs.ray_runner import run_on_ray

            run_on_ray(
                todo,
                defaults,
                record,
                address=None if ray is True else str(ray),
                workers=ray_workers,
                gpus_per_worker=ray_gpus_per_worker,
            )
        elif todo:
            run_local(todo, JobRunner(defaults), record, concurrency or default_concurrency(device))
    finally:
        bar.close()
        remove_empty(created)
    plan.status.write_all(results)
    result = ManifestResult(results, status_path=plan.status.path)
    if summary:
        announce(result)
    log.info("manifest %s: status in %s", manifest, plan.status.path)
    return result


def run_local(
    jobs: Sequence[JobSpec], runner: JobRunner, record: Callable[[JobStatus], None], concurrency: int
) -> None:
    """Check every job's inputs, prepare each template once, then keep ``concurrency`` jobs in flight;
    ``record`` is called in this thread as each job ends. On a GPU the jobs run on threads: they share
    the runner's loaded model and, through ``sync_file``, its shared scheduler, so their frames are
    batched together. On a CPU they run on as many worker processes (``jobs.workers``): their Python
    work holds the GIL, so threads hardly overlapped."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    runnable = []
    for spec in jobs:  # missing or unreadable inputs fail at once: no face pass, no model load
        failed = runner.check(spec)
        if failed is not None:
            record(failed)
        else:
            runnable.append(spec)
    jobs = runnable
    for spec in jobs:
        runner.prepare(spec)
    if not jobs:
        return
    if concurrency <= 1 or len(jobs) == 1:
        for spec in jobs:
            record(runner.run(spec))
        return
    if not on_gpu(runner.defaults.device):  # the GIL would serialise jobs on threads: processes
        from lipsynckit.jobs.workers import run_on_processes

        run_on_processes(jobs, runner, record, min(concurrency, len(jobs)))
        return
    pending = list(reversed(jobs))  # popped in manifest (template-grouped) order
    running: set[Future[JobStatus]] = set()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lipsynckit-job")
    try:
        while pending or running:
            while pending and len(running) < concurrency:
                running.add(pool.submit(runner.run, pending.pop()))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=lambda f: f.result().row):
                record(f.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
