"""Jobs on worker processes: how a manifest uses every core of a CPU.

Why: on a CPU the Python side of a job (the viseme model's numpy steps, compositing, audio features)
holds the GIL, so jobs on threads of one process hardly overlap: 200 viseme jobs ran 1.18x as many
jobs per hour two at a time as one at a time on 2 quiet cores, with the cores 57 % busy. Worker
processes each load the model once (:class:`JobWorker`, the same worker Ray's actors are) and run
whole jobs; the parent checks the inputs and prepares each template once (the avatar cache on disk
is what the workers read). On a GPU the jobs stay on threads of one process instead: one model in
memory and one scheduler that batches frames across jobs (``jobs.run.run_local``).

A worker is ``python -m lipsynckit.jobs.workers`` talking JSON lines over its stdin and stdout, not a
``multiprocessing`` child: those import the caller's ``__main__`` again, so a user's script without an
``if __name__ == "__main__"`` guard would run its manifest once more inside every worker.

Stops: workers ignore Ctrl-C; when the run stops (Ctrl-C, SIGTERM, an error) the parent sends each
worker SIGTERM, which ends its job through the normal clean-up (the partial output is removed) and
the worker. A job whose worker dies is handed out again once; a second death is a failed row naming
the crash (as on Ray).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from lipsynckit.jobs.concurrency import usable_cores
from lipsynckit.jobs.manifest import JobSpec
from lipsynckit.jobs.runner import JobRunner, RunDefaults, error_of, remove_partials
from lipsynckit.jobs.status import JobFailure, JobStatus

log = logging.getLogger(__name__)


class JobWorker:
    """One worker (a process of the local pool, or a Ray actor): one :class:`JobRunner`, so one model
    load, and jobs given one at a time as JSON."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.runner = JobRunner(RunDefaults(**defaults))

    def ping(self) -> bool:
        return True

    def prepare(self, spec_json: str) -> str:
        err = self.runner.prepare(JobSpec.model_validate_json(spec_json))
        return err.model_dump_json() if err is not None else ""

    def run(self, spec_json: str, prepare_errors: list[tuple[list[str], str]]) -> str:
        for group, err in prepare_errors:
            self.runner.mark_prepared((group[0], group[1], group[2]), JobFailure.model_validate_json(err))
        spec = JobSpec.model_validate_json(spec_json)
        try:
            status = self.runner.run(spec)
        except Exception as exc:  # noqa: BLE001 - run() reports inputs; this is a last guard
            status = JobStatus(
                row=spec.row, key=spec.key(), state="failed", output=str(spec.output), error=error_of(exc)
            )
        return status.model_dump_json()


# ------------------------------------------------------------------ the worker process


def _stop_worker(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds the job: its sink removes the partial output


def serve(threads: int) -> None:
    """A worker process: the run's defaults on the first line of stdin, then one job per line; one
    status line per job on stdout. Ends at the end of stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it stops us with SIGTERM
    signal.signal(signal.SIGTERM, _stop_worker)
    answer = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol; anything printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=logging.ERROR, format="lipsynckit worker %(process)d: %(message)s"
    )  # the parent reports failed rows
    import torch

    torch.set_num_threads(threads)  # the workers share the cores
    worker = JobWorker(json.loads(sys.stdin.readline()))
    for line in sys.stdin:
        job = json.loads(line)
        answer.write(worker.run(job["spec"], job["errors"]) + "\n")


# ------------------------------------------------------------------ the parent


class _Proc:
    """One worker process and the job it runs."""

    def __init__(self, defaults: str, threads: int) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "lipsynckit.jobs.workers", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.p.stdin is not None and self.p.stdout is not None
        self.stdin, self.stdout = self.p.stdin, self.p.stdout
        self.stdin.write(defaults + "\n")
        self.job: JobSpec | None = None

    def give(self, spec: JobSpec, errors: list[tuple[list[str], str]]) -> None:
        self.job = spec
        self.stdin.write(json.dumps({"spec": spec.model_dump_json(), "errors": errors}) + "\n")

    def stop(self, timeout: float = 10.0) -> None:
        if self.p.poll() is None:
            self.p.terminate()  # SIGTERM: the job's clean-up runs, then the worker ends
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def close(self) -> None:
        try:
            self.stdin.close()  # end of jobs: the worker returns
        except OSError:
            pass
        self.p.wait()


def _crashed(spec: JobSpec, code: int | None, model: str) -> JobStatus:
    return JobStatus(
        row=spec.row,
        key=spec.key(),
        state="failed",
        template=str(spec.template),
        audio=str(spec.audio) if spec.audio else None,
        output=str(spec.output),
        model=spec.model or model,
        segments=len(spec.segments),
        error=JobFailure(
            message=f"the worker process running this job died twice (exit status {code})",
            stage="worker",
            file=str(spec.template),
            remedy="run this row alone (--concurrency 1) to see the crash",
        ),
    )


def run_on_processes(
    jobs: Sequence[JobSpec], runner: JobRunner, record: Callable[[JobStatus], None], workers: int
) -> None:
    """Run ``jobs`` (inputs checked and templates prepared by ``runner`` in this process) on
    ``workers`` processes; ``record`` is called in this thread as each job ends. A job whose worker
    dies is handed out again once; a second death is a failed row naming the crash."""
    errors = [(list(g), e.model_dump_json()) for g, e in runner.prepare_errors.items()]
    defaults = json.dumps(asdict(runner.defaults), default=str)
    threads = max(1, usable_cores() // workers)
    pending = list(reversed(jobs))  # popped in manifest (template-grouped) order
    deaths: dict[int, int] = {}
    procs: list[_Proc] = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(min(workers, len(jobs))):
            w = _Proc(defaults, threads)
            procs.append(w)
            sel.register(w.stdout, selectors.EVENT_READ, w)
        for w in procs:
            if pending:
                w.give(pending.pop(), errors)
        while any(w.job is not None for w in procs):
            for key, _ in sel.select():
                w = key.data
                line = w.stdout.readline()
                spec = w.job
                assert spec is not None
                w.job = None
                if line:
                    record(JobStatus.model_validate_json(line))
                else:  # the worker died (killed, out of memory, a crash)
                    code = w.p.wait()
                    sel.unregister(w.stdout)
                    procs.remove(w)
                    deaths[spec.row] = deaths.get(spec.row, 0) + 1
                    if deaths[spec.row] >= 2:
                        remove_partials(spec.output)  # no attempt follows to clean up after the last
                        record(_crashed(spec, code, runner.defaults.model))
                    else:
                        log.warning("job %d: its worker process died (exit %s); once more", spec.row, code)
                        pending.append(spec)
                    w = _Proc(defaults, threads)
                    procs.append(w)
                    sel.register(w.stdout, selectors.EVENT_READ, w)
                if pending:
                    w.give(pending.pop(), errors)
    except BaseException:
        for w in procs:
            w.stop()
        raise
    finally:
        sel.close()
    for w in procs:
        w.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
