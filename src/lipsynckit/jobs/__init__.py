"""Jobs at scale: manifests of (template, audio, output) rows run locally or on a Ray cluster.

``run_manifest("jobs.csv")`` runs every row (several in flight on one loaded model), writes the
manifest's own status file beside the outputs and skips, on a re-run, the rows whose outputs still
verify; it returns a :class:`ManifestResult` (a table in notebooks). Ray is optional
(``pip install "lipsynckit[ray]"``).
"""

from __future__ import annotations

from lipsynckit.lazy import lazy_getattr

# Imported on first use (PEP 562): `lipsynckit batch --help` reaches this package and must not load torch.
_LAZY = {
    "JobSpec": ".manifest",
    "BadRow": ".manifest",
    "Segment": ".manifest",
    "read_manifest": ".manifest",
    "JobRunner": ".runner",
    "RunDefaults": ".runner",
    "status_path_for": ".runner",
    "run_manifest": ".run",
    "ManifestResult": ".results",
    "default_concurrency": ".concurrency",
    "splice_audio": ".segments",
    "sync_segments": ".segments",
    "JobFailure": ".status",
    "JobStatus": ".status",
    "StatusLog": ".status",
    "verify_output": ".status",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

__all__ = [
    "JobFailure",
    "JobRunner",
    "JobSpec",
    "JobStatus",
    "BadRow",
    "ManifestResult",
    "RunDefaults",
    "Segment",
    "StatusLog",
    "default_concurrency",
    "read_manifest",
    "run_manifest",
    "splice_audio",
    "status_path_for",
    "sync_segments",
    "verify_output",
]
