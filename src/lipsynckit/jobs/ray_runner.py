"""Manifest jobs on a Ray cluster (``pip install "lipsynckit[ray]"``): the same per-job function as the
local runner, spread over Ray actors.

Rows carry paths only (a job's spec as JSON), never frames: each worker reads its inputs from shared
storage, writes its output itself (temporary + rename) and returns one small status row. Each worker
is an actor with one model load; templates are first prepared once per (template, model, options)
into the shared avatar cache, then the driver hands each idle worker the next job (jobs ordered by
template, so a worker's warm caches are reused). A worker that dies (its process or its node) is
restarted by Ray and the driver retries that job, whose stale temporary is removed first, but only
once: a job that kills its worker :data:`MAX_CRASHES` times is a failed row naming the crash, so one
poisonous row cannot hang the run. Worker count and GPUs per worker are the caller's to set;
``num_gpus`` is requested only when the cluster has GPUs (asking for one on a CPU-only cluster waits
forever).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from lipsynckit.errors import LipSyncError
from lipsynckit.jobs.manifest import JobSpec
from lipsynckit.jobs.runner import RunDefaults, remove_partials
from lipsynckit.jobs.status import JobFailure, JobStatus
from lipsynckit.jobs.workers import JobWorker

log = logging.getLogger(__name__)

#: a job whose worker dies this many times fails (instead of being retried without end)
MAX_CRASHES = 2


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise LipSyncError(
            "Ray is not installed",
            stage="ray",
            remedy='pip install "lipsynckit[ray]" (or run without --ray)',
        ) from e
    return ray


def worker_resources(ray: Any, gpus_per_worker: float | None) -> dict[str, float]:
    """What each worker reserves: GPUs where the cluster has them (or as told), else one CPU."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per = (1.0 if gpus else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if per > 0 and not gpus:
        raise LipSyncError(
            f"--ray-gpus-per-worker {per:g} asked for, but the cluster has no GPU",
            stage="ray",
            remedy="leave --ray-gpus-per-worker out (or 0) on a CPU-only cluster",
        )
    return {"num_cpus": 1.0, "num_gpus": per}


def _worker_count(ray: Any, resources: dict[str, float], requested: int | None, jobs: int) -> int:
    if requested is not None:
        if requested < 1:
            raise LipSyncError(
                f"--ray-workers must be at least 1, got {requested}", stage="ray", remedy="use 1 or more"
            )
        n = requested
    elif resources["num_gpus"]:
        n = int(float(ray.cluster_resources().get("GPU", 1)) // resources["num_gpus"])
    else:
        n = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(n, jobs))


def _crash_text(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _not_started(exc: BaseException) -> bool:
    """Whether the call never reached the worker (it was restarting after another job's crash)."""
    return "actor is restarting" in str(exc)


def _back(ray: Any, worker: Any, timeout_s: float = 120.0) -> bool:
    """Wait until a worker Ray is restarting answers again (False: it did not within the timeout)."""
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            return bool(ray.get(worker.ping.remote(), timeout=max(1.0, end - time.monotonic())))
        except ray.exceptions.GetTimeoutError:
            return False
        except ray.exceptions.RayActorError as e:
            if isinstance(e, ray.exceptions.ActorDiedError) and "restart" not in str(e):
                return False
            time.sleep(0.2)
    return False


def crash_status(spec: JobSpec, crashes: int, exc: BaseException) -> JobStatus:
    """The failed row of a job whose worker died ``crashes`` times."""
    return JobStatus(
        row=spec.row,
        key=spec.key(),
        state="failed",
        template=str(spec.template),
        audio=str(spec.audio) if spec.audio else None,
        output=str(spec.output),
        error=JobFailure(
            message=f"the Ray worker running this job died {crashes} times ({type(exc).__name__}: "
            f"{_crash_text(exc)})",
            stage="worker",
            file=str(spec.template),
            remedy="run this row alone without --ray to see the crash; check the worker's memory",
        ),
    )


def run_on_ray(
    jobs: Sequence[JobSpec],
    defaults: RunDefaults,
    record: Callable[[JobStatus], None],
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
) -> None:
    """Run ``jobs`` on Ray (an existing connection, ``address``, or a new local cluster); each finished
    job's status is passed to ``record`` in the driver as it arrives."""
    ray = _ray()
    if not ray.is_initialized():
        log.info("connecting to Ray %s", address or "(new local cluster)")
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except ray.exceptions.AuthenticationError:
            raise LipSyncError(
                f"the Ray cluster at {address} refused this driver's token",
                stage="ray",
                remedy="set RAY_AUTH_MODE alike on every node and here: 'disabled' on a private network, "
                "or 'token' with the cluster's token in RAY_AUTH_TOKEN (see docs/user-guide.md)",
            ) from None
        except ConnectionError as e:
            raise LipSyncError(
                f"cannot reach the Ray cluster at {address} ({e})",
                stage="ray",
                remedy="check the address (ray status on the head prints it), or use --ray alone",
            ) from None
    resources = worker_resources(ray, gpus_per_worker)
    n = _worker_count(ray, resources, workers, len(jobs))
    actor = ray.remote(max_restarts=-1, max_task_retries=0)(JobWorker)
    d = asdict(defaults)
    pool = [actor.options(**resources).remote(d) for _ in range(n)]

    groups: dict[tuple[str, str, str], JobSpec] = {}
    for j in jobs:
        groups.setdefault(j.group(), j)
    log.info("Ray: preparing %d template(s), then %d job(s) on %d worker(s)", len(groups), len(jobs), n)
    prep = [pool[k % n].prepare.remote(s.model_dump_json()) for k, s in enumerate(groups.values())]
    errors: list[tuple[list[str], str]] = []
    for (group, _spec), ref in zip(groups.items(), prep, strict=True):
        try:
            err = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # the worker died preparing: its jobs will say so
            err = JobFailure(
                message=f"the Ray worker died preparing the template ({_crash_text(exc)})", stage="worker"
            ).model_dump_json()
        if err:
            errors.append((list(group), err))

    queue: deque[JobSpec] = deque(jobs)
    crashes: dict[int, int] = {}
    idle = list(range(n))
    running: dict[Any, tuple[int, JobSpec]] = {}
    try:
        while queue or running:
            while queue and idle:
                k, spec = idle.pop(), queue.popleft()
                running[pool[k].run.remote(spec.model_dump_json(), errors)] = (k, spec)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                k, spec = running.pop(ref)
                idle.append(k)
                try:
                    status = JobStatus.model_validate_json(ray.get(ref))
                except ray.exceptions.RayActorError as exc:
                    if not _back(ray, pool[k]):
                        idle.remove(k)  # this worker is gone for good; the others go on
                        if not idle and not running:
                            raise LipSyncError(
                                "every Ray worker is gone", stage="ray", remedy="check the cluster's nodes"
                            ) from exc
                    if _not_started(exc):  # handed to a worker that was restarting: not this job's fault
                        queue.appendleft(spec)
                        continue
                    crashes[spec.row] = crashes.get(spec.row, 0) + 1
                    if crashes[spec.row] < MAX_CRASHES:
                        log.warning(
                            "job %d: its worker died; running it again (%s)", spec.row, _crash_text(exc)
                        )
                        queue.appendleft(spec)
                        continue
                    status = crash_status(spec, crashes[spec.row], exc)
                    remove_partials(spec.output)  # no attempt follows to clean up after the last
                except ray.exceptions.RayError as exc:
                    status = JobStatus(
                        row=spec.row,
                        key=spec.key(),
                        state="failed",
                        output=str(spec.output),
                        error=JobFailure(message=_crash_text(exc), stage="worker"),
                    )
                record(status)
    finally:
        for a in pool:
            ray.kill(a, no_restart=True)
