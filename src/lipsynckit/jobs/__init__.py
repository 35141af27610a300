"""Jobs at scale: manifests of (template, audio, output) rows run locally or on a Ray cluster.

``run_manifest("jobs.csv")`` runs every row, writes a status manifest beside the outputs and skips, on
a re-run, the jobs whose outputs still verify. Ray is optional (``pip install "lipsynckit[ray]"``).
"""

from __future__ import annotations

from lipsynckit.jobs.manifest import JobSpec, RowError, Segment, read_manifest
from lipsynckit.jobs.runner import JobRunner, RunDefaults, run_manifest, status_path_for
from lipsynckit.jobs.segments import splice_audio, sync_segments
from lipsynckit.jobs.status import JobError, JobStatus, StatusLog, verify_output

__all__ = [
    "JobError",
    "JobRunner",
    "JobSpec",
    "JobStatus",
    "RowError",
    "RunDefaults",
    "Segment",
    "StatusLog",
    "read_manifest",
    "run_manifest",
    "splice_audio",
    "status_path_for",
    "sync_segments",
    "verify_output",
]
