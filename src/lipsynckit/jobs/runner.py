"""Running manifest jobs: one function per job (errors become status rows), and the local runner.

The same :class:`JobRunner` serves the local loop and each Ray worker, so both give the same outputs
and status rows: templates are prepared first (one avatar cache per template, model and options),
then jobs run on the process's one loaded model per (name, options). :meth:`JobRunner.run` is
thread-safe: the local runner keeps several jobs in flight on threads, and because ``sync_file``
without a scheduler uses the model's shared scheduler, their frames are batched together on one device
thread while each job's decode and encode run on its own. A job writes its output through a temporary
file renamed into place; stale temporaries of a killed earlier attempt are removed first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipsynckit.avatar import file_digest
from lipsynckit.errors import LipSyncError
from lipsynckit.jobs.manifest import BadRow, JobSpec
from lipsynckit.jobs.status import JobFailure, JobStatus
from lipsynckit.model import LipSyncModel
from lipsynckit.options import SyncOptions

log = logging.getLogger(__name__)

#: fault injection for resilience tests: when this environment variable names an existing file whose
#: text is a job's output file name, the process running that job deletes the file and exits hard
#: (``os._exit``) after writing a few frames, as a crashed worker would; with `` always`` after the
#: name the file is kept, so every attempt at that job crashes
FAULT_ENV = "LIPSYNCKIT_JOBS_FAULT_MARKER"
_FAULT_FRAME = 3


def status_path_for(manifest: str | Path, out_dir: str | Path | None = None) -> Path:
    """Where the status manifest goes: ``<out_dir or manifest folder>/<manifest stem>.status.jsonl``."""
    m = Path(manifest).expanduser().resolve()
    folder = Path(out_dir).expanduser().resolve() if out_dir is not None else m.parent
    return folder / f"{m.stem}.status.jsonl"


def remove_partials(output: Path) -> int:
    """Delete the temporaries that killed attempts (dead processes) left beside ``output``; a live run's
    partial (another manifest run on the same folder) is left alone: :func:`~lipsynckit.output_guard.remove_stale_partials`."""
    from lipsynckit.output_guard import remove_stale_partials

    return len(remove_stale_partials(output))


def _fault_point(output: Path, frame: int) -> None:
    marker = os.environ.get(FAULT_ENV)
    if not marker or frame != _FAULT_FRAME:
        return
    m = Path(marker)
    try:
        target = m.read_text().strip()
    except OSError:
        return
    name, _, mode = target.partition(" ")
    if name == output.name:
        if mode != "always":
            m.unlink()
        log.error("fault injection: exiting hard in the middle of %s", output)
        os._exit(17)


def error_of(exc: BaseException) -> JobFailure:
    if isinstance(exc, LipSyncError):
        return JobFailure(message=exc.message, stage=exc.stage, file=exc.path, remedy=exc.remedy)
    return JobFailure(message=f"{type(exc).__name__}: {exc}", stage="internal")


def failed_row(row: BadRow) -> JobStatus:
    """The status of a row that could not be read: the column and the fix are in its error."""
    where = f"column {row.column}: " if row.column and row.column != "row" else ""
    return JobStatus(
        row=row.row,
        state="failed",
        output=row.output,
        error=JobFailure(message=f"{where}{row.message}", stage="manifest", remedy=row.remedy),
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
        self._lock = threading.Lock()  # model loads: one per key even when jobs start at once
        self.prepare_errors: dict[tuple[str, str, str], JobFailure] = {}
        self._prepared: set[tuple[str, str, str]] = set()

    def model_for(self, spec: JobSpec) -> LipSyncModel:
        from lipsynckit.api import resolve_model

        name = spec.model or self.defaults.model
        mopts = {**self.defaults.model_options, **spec.model_options}
        key = f"{name}|{sorted(mopts.items())!r}"
        with self._lock:
            if key not in self._models:
                self._models[key] = resolve_model(
                    name, self.defaults.weights, self.defaults.device, None, mopts or None
                )
            return self._models[key]

    def options_for(self, spec: JobSpec) -> SyncOptions:
        # one encoder thread per job unless told: jobs run side by side (locally and on Ray), and
        # x264's threads made a row's H.264 bytes depend on the concurrency and the machine's load
        opts = {"encode_threads": 1, **self.defaults.options, **spec.options, "progress": False}
        if self.defaults.avatar_dir is not None:
            opts["avatar_dir"] = Path(self.defaults.avatar_dir)
        return SyncOptions(**opts)

    def mark_prepared(self, group: tuple[str, str, str], error: JobFailure | None) -> None:
        """Record a template group prepared elsewhere (a first Ray stage), with its error if it failed."""
        self._prepared.add(group)
        if error is not None:
            self.prepare_errors[group] = error

    def prepare(self, spec: JobSpec) -> JobFailure | None:
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

    def _status(self, spec: JobSpec) -> JobStatus:
        return JobStatus(
            row=spec.row,
            key=spec.key(),
            state="failed",
            template=str(spec.template),
            audio=str(spec.audio) if spec.audio else None,
            output=str(spec.output),
            model=spec.model or self.defaults.model,
            segments=len(spec.segments),
        )

    def check(self, spec: JobSpec) -> JobStatus | None:
        """The failed status of a job whose input files are missing, empty or of the wrong kind (found
        without a model or the template's face pass), else None."""
        from lipsynckit.inputs import check_run

        audios: list[Path | None] = [spec.audio] if spec.audio else []
        audios += [s.audio for s in spec.segments if s.audio is not None]
        try:
            for a in audios or [None]:
                check_run(spec.template, a, None)
            return None
        except LipSyncError as exc:
            status = self._status(spec)
            status.error = error_of(exc)
            return status

    def run(self, spec: JobSpec) -> JobStatus:
        """One job, start to finish; never raises for a bad input (the status row says what failed)."""
        from lipsynckit.jobs.segments import sync_segments
        from lipsynckit.pipeline import sync_file

        t0 = time.perf_counter()
        early = self.check(spec)  # the same first check (and error) locally and on Ray workers
        if early is not None:
            return early
        status = self._status(spec)
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
