"""Running manifest jobs: one function per job (errors become status rows), and the local runner.

The same :class:`JobRunner` serves the local loop and each Ray worker, so both give the same outputs
and status rows: templates are prepared first (one avatar cache per template, model and options),
then each job runs alone on its process's one loaded model. A job writes its output through a
temporary file renamed into place; stale temporaries of a killed earlier attempt are removed first.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipsynckit.avatar import file_digest
from lipsynckit.errors import LipSyncError
from lipsynckit.jobs.manifest import JobSpec, RowError, read_manifest
from lipsynckit.jobs.status import JobError, JobStatus, StatusLog, verify_output
from lipsynckit.model import LipSyncModel
from lipsynckit.options import SyncOptions

log = logging.getLogger(__name__)

#: fault injection for resilience tests: when this environment variable names an existing file whose
#: text is a job's output file name, the process running that job deletes the file and exits hard
#: (``os._exit``) after writing a few frames, as a crashed worker would
FAULT_ENV = "LIPSYNCKIT_JOBS_FAULT_MARKER"
_FAULT_FRAME = 3


def status_path_for(manifest: str | Path, out_dir: str | Path | None = None) -> Path:
    """Where the status manifest goes: ``<out_dir or manifest folder>/<manifest stem>.status.jsonl``."""
    m = Path(manifest).expanduser().resolve()
    folder = Path(out_dir).expanduser().resolve() if out_dir is not None else m.parent
    return folder / f"{m.stem}.status.jsonl"


def remove_partials(output: Path) -> int:
    """Delete temporaries a killed attempt left beside ``output`` (VideoSink's hidden ``.partial``)."""
    n = 0
    if output.parent.is_dir():
        for p in output.parent.glob(f".{output.stem}.*.partial{output.suffix}"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def _fault_point(output: Path, frame: int) -> None:
    marker = os.environ.get(FAULT_ENV)
    if not marker or frame != _FAULT_FRAME:
        return
    m = Path(marker)
    try:
        target = m.read_text().strip()
    except OSError:
        return
    if target == output.name:
        m.unlink()
        log.error("fault injection: exiting hard in the middle of %s", output)
        os._exit(17)


def error_of(exc: BaseException) -> JobError:
    if isinstance(exc, LipSyncError):
        return JobError(message=exc.message, stage=exc.stage, file=exc.path, remedy=exc.remedy)
    return JobError(message=f"{type(exc).__name__}: {exc}", stage="internal")


def failed_row(row: RowError) -> JobStatus:
    return JobStatus(
        row=row.row,
        state="failed",
        output=row.output,
        error=JobError(message=row.message, stage="manifest", remedy="fix this row of the manifest"),
    )


@dataclass
class RunDefaults:
    """What a row does not say: the model, its options and the run options (CLI flags)."""

    model: str = "auto"
    weights: str | None = None
    device: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    avatar_dir: str | None = None


class JobRunner:
    """Runs jobs in one process: models loaded once per (name, options), templates prepared once."""

    def __init__(self, defaults: RunDefaults) -> None:
        self.defaults = defaults
        self._models: dict[str, LipSyncModel] = {}
        self.prepare_errors: dict[tuple[str, str, str], JobError] = {}
        self._prepared: set[tuple[str, str, str]] = set()

    def model_for(self, spec: JobSpec) -> LipSyncModel:
        from lipsynckit.api import resolve_model

        name = spec.model or self.defaults.model
        mopts = {**self.defaults.model_options, **spec.model_options}
        key = f"{name}|{sorted(mopts.items())!r}"
        if key not in self._models:
            self._models[key] = resolve_model(
                name, self.defaults.weights, self.defaults.device, None, mopts or None
            )
        return self._models[key]

    def options_for(self, spec: JobSpec) -> SyncOptions:
        opts = {**self.defaults.options, **spec.options, "progress": False}
        if self.defaults.avatar_dir is not None:
            opts["avatar_dir"] = Path(self.defaults.avatar_dir)
        return SyncOptions(**opts)

    def mark_prepared(self, group: tuple[str, str, str], error: JobError | None) -> None:
        """Record a template group prepared elsewhere (a first Ray stage), with its error if it failed."""
        self._prepared.add(group)
        if error is not None:
            self.prepare_errors[group] = error

    def prepare(self, spec: JobSpec) -> JobError | None:
        """Prepare the template of ``spec``'s group once (faces, crops); its error, if any, is kept
        and fails every job of the group without trying again."""
        from lipsynckit.api import prepare_avatar
        from lipsynckit.pipeline import _check_input

        group = spec.group()
        if group in self._prepared:
            return self.prepare_errors.get(group)
        self._prepared.add(group)
        try:
            opts = self.options_for(spec)
            if opts.avatar_dir is None:
                return None
            _check_input(spec.template, "video")
            prepare_avatar(spec.template, self.model_for(spec), opts.avatar_dir, options=opts)
            return None
        except Exception as exc:  # noqa: BLE001 - becomes the status of the group's jobs
            err = error_of(exc)
            log.warning("template %s cannot be prepared: %s", spec.template, err.message)
            self.prepare_errors[group] = err
            return err

    def run(self, spec: JobSpec) -> JobStatus:
        """One job, start to finish; never raises for a bad input (the status row says what failed)."""
        from lipsynckit.jobs.segments import sync_segments
        from lipsynckit.pipeline import sync_file

        t0 = time.perf_counter()
        status = JobStatus(
            row=spec.row,
            key=spec.key(),
            state="failed",
            template=str(spec.template),
            audio=str(spec.audio) if spec.audio else None,
            output=str(spec.output),
            model=spec.model or self.defaults.model,
            segments=len(spec.segments),
        )
        out = spec.output
        try:
            remove_partials(out)
            err = self.prepare_errors.get(spec.group())
            if err is not None:
                status.error = err
                return status
            model = self.model_for(spec)
            status.model = model.info.name
            opts = self.options_for(spec)

            def on_frame(k: int) -> None:
                _fault_point(out, k)

            if spec.segments:
                result = sync_segments(
                    spec.template, spec.audio, spec.segments, model, out, opts, on_frame=on_frame
                )
            else:
                result = sync_file(spec.template, spec.audio, model, out, opts, on_frame=on_frame)
            status.frames = result.frames
            status.faces_found = result.frames_with_face
            status.size = out.stat().st_size
            status.sha256 = file_digest(out)
            status.state = "ok"
        except Exception as exc:  # noqa: BLE001 - one bad job fails alone
            status.error = error_of(exc)
            log.warning("job %d (%s) failed: %s", spec.row, out.name, status.error.message)
        finally:
            status.seconds = round(time.perf_counter() - t0, 3)
        return status


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
        if isinstance(r, RowError):
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
