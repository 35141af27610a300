"""Manifest jobs on a Ray cluster (``pip install "lipsynckit[ray]"``): the same per-job function as the
local runner, spread over stateful Ray Data workers.

Rows carry paths only (a job's spec as JSON), never frames: each worker reads its inputs from shared
storage, writes its output itself (temporary + rename) and returns one small status row. Two stages:
templates are prepared once per (template, model, options) into the shared avatar cache, then jobs
run on an actor pool with one model load per actor. Jobs are ordered by template, so neighbouring
rows, which Ray hands to the same actor, reuse its warm caches. One job is one block: when a worker
dies, Ray restarts the actor and retries exactly that job, whose stale temporary is removed first.
Per-job errors are status rows (never dropped rows); ``max_errored_blocks = 0`` makes anything else fail
loudly. ``num_gpus`` is requested only when the cluster has GPUs (asking for one on a CPU-only
cluster waits forever).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from lipsynckit.errors import LipSyncError
from lipsynckit.jobs.manifest import JobSpec
from lipsynckit.jobs.runner import JobRunner, RunDefaults
from lipsynckit.jobs.status import JobFailure, JobStatus

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise LipSyncError(
            "Ray is not installed",
            stage="ray",
            remedy='pip install "lipsynckit[ray]" (or run without --ray)',
        ) from e
    return ray


class _Preparer:
    """Stage 1 worker: prepares one template group per row; returns its error, if any."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.runner = JobRunner(RunDefaults(**defaults))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = []
        for text in batch["spec"]:
            err = self.runner.prepare(JobSpec.model_validate_json(str(text)))
            errors.append(err.model_dump_json() if err is not None else "")
        return {"spec": batch["spec"], "error": np.array(errors, dtype=object)}


class _SyncWorker:
    """Stage 2 worker: one model load per actor, one status row per job (errors included)."""

    def __init__(self, defaults: dict[str, Any], prepare_errors: list[tuple[list[str], str]]) -> None:
        self.runner = JobRunner(RunDefaults(**defaults))
        for group, err in prepare_errors:
            self.runner.mark_prepared((group[0], group[1], group[2]), JobFailure.model_validate_json(err))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for text in batch["spec"]:
            spec = JobSpec.model_validate_json(str(text))
            try:
                status = self.runner.run(spec)
            except Exception as exc:  # noqa: BLE001 - run() reports inputs; this is a last guard
                from lipsynckit.jobs.runner import error_of

                status = JobStatus(
                    row=spec.row, key=spec.key(), state="failed", output=str(spec.output), error=error_of(exc)
                )
            out.append(status.model_dump_json())
        return {"status": np.array(out, dtype=object)}


def _worker_count(ray: Any, gpus: float, requested: int | None) -> int:
    if requested:
        return max(1, requested)
    if gpus:
        return max(1, int(gpus))
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_on_ray(
    jobs: Sequence[JobSpec],
    defaults: RunDefaults,
    record: Callable[[JobStatus], None],
    address: str | None = None,
    workers: int | None = None,
) -> None:
    """Run ``jobs`` on Ray (an existing connection, ``address``, or a new local cluster); each finished
    job's status is passed to ``record`` in the driver as it arrives."""
    ray = _ray()
    if not ray.is_initialized():
        log.info("connecting to Ray %s", address or "(new local cluster)")
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()  # configured before any dataset is built
    ctx.max_errored_blocks = 0  # per-job errors are rows; anything else is a bug and must not drop rows
    ctx.enable_progress_bars = False  # the driver reports progress per finished job
    gpus = float(ray.cluster_resources().get("GPU", 0))
    n = _worker_count(ray, gpus, workers)
    resources: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    d = asdict(defaults)

    groups: dict[tuple[str, str, str], JobSpec] = {}
    for j in jobs:
        groups.setdefault(j.group(), j)
    log.info("Ray: preparing %d template(s), then %d job(s) on %d worker(s)", len(groups), len(jobs), n)
    prep = ray.data.from_items(
        [{"spec": s.model_dump_json()} for s in groups.values()], override_num_blocks=len(groups)
    ).map_batches(
        _Preparer,
        fn_constructor_kwargs={"defaults": d},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(n, len(groups))),
        **resources,
    )
    errors: list[tuple[list[str], str]] = []
    for row in prep.take_all():
        if row["error"]:
            errors.append((list(JobSpec.model_validate_json(row["spec"]).group()), str(row["error"])))

    ds = ray.data.from_items(
        [{"spec": s.model_dump_json()} for s in jobs], override_num_blocks=len(jobs)
    ).map_batches(
        _SyncWorker,
        fn_constructor_kwargs={"defaults": d, "prepare_errors": errors},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(n, len(jobs))),
        **resources,
    )
    for row in ds.iter_rows():
        record(JobStatus.model_validate(json.loads(row["status"])))
