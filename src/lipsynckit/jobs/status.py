"""The status manifest: one JSON line per job, appended as jobs finish and compacted at the end.

Appending (one ``write`` + ``fsync`` per job) survives a killed run: the next pass reads every line,
the last one per row wins, and a torn last line is ignored. Rows are keyed by their content (the row
id, :meth:`JobSpec.key <lipsynckit.jobs.manifest.JobSpec.key>`), not by output path, so a failed row
that names another row's output cannot hide that row's result. A finished job is skipped on a re-run
only when its output still exists and matches the recorded size, frame count and sha256.

The file's first line names the manifest it belongs to; a status file of another manifest found where
this one's would go is refused (two manifests run into one folder keep separate status).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lipsynckit.avatar import file_digest
from lipsynckit.errors import LipSyncError

log = logging.getLogger(__name__)

State = Literal["ok", "skipped", "failed"]


class JobFailure(BaseModel):
    """Why a job failed: the message, the stage (audio, video, faces, model, segments, manifest...) and
    the file concerned."""

    message: str
    stage: str | None = None
    file: str | None = None
    remedy: str | None = None


class JobStatus(BaseModel):
    """One row of the status manifest."""

    row: int
    key: str | None = Field(None, description="hash of the row's spec; a changed row runs again")
    state: State
    template: str | None = None
    audio: str | None = None
    output: str | None = None
    model: str | None = None
    seconds: float = 0.0
    frames: int = 0
    faces_found: int = 0
    segments: int = 0
    size: int | None = None
    sha256: str | None = None
    error: JobFailure | None = None

    def comparable(self) -> dict[str, object]:
        """The fields two runs of the same job must agree on (timing excluded)."""
        return self.model_dump(exclude={"seconds", "state"})


def count_frames(path: str | Path) -> int:
    from lipsynckit.media import probe

    return int(probe(path).num_frames)


def verify_output(status: JobStatus) -> bool:
    """Whether a recorded successful job's output is still there, whole and unchanged."""
    if status.state not in ("ok", "skipped") or not status.output or status.sha256 is None:
        return False
    p = Path(status.output)
    try:
        if not p.is_file() or p.stat().st_size != status.size:
            return False
        if file_digest(p) != status.sha256:
            return False
        return count_frames(p) == status.frames
    except Exception as e:  # noqa: BLE001 - an unreadable output is simply not verified
        log.info("output %s does not verify (%s); running the job again", p, e)
        return False


class StatusLog:
    """The status manifest file of one manifest run (``manifest``: the manifest it belongs to)."""

    def __init__(self, path: str | Path, manifest: str | Path | None = None) -> None:
        self.path = Path(path)
        self.manifest = str(Path(manifest).expanduser().resolve()) if manifest is not None else None

    def owner(self) -> str | None:
        """The manifest named by the file's first line (None: no file, or a file without one)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                first = f.readline()
            head = json.loads(first)
        except (OSError, ValueError):
            return None
        return str(head["manifest"]) if isinstance(head, dict) and "manifest" in head else None

    def claim(self) -> None:
        """Refuse a status file that belongs to another manifest (before any job runs)."""
        if self.path.exists() and not self.path.is_file():
            raise LipSyncError(
                "the status manifest's path is not a file",
                path=self.path,
                stage="manifest",
                remedy="move it away, or give another status path (--status)",
            )
        owner = self.owner()
        if owner is not None and self.manifest is not None and owner != self.manifest:
            raise LipSyncError(
                f"this status file belongs to another manifest ({owner})",
                path=self.path,
                stage="manifest",
                remedy="give this manifest its own output folder (-o) or status path (--status), "
                "or delete the file to start over",
            )

    def read(self) -> dict[str, JobStatus]:
        """The last status per row id (``JobStatus.key``); rows without one, torn or foreign lines are
        ignored."""
        found: dict[str, JobStatus] = {}
        if not self.path.is_file():
            return found
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    st = JobStatus.model_validate_json(line)
                except ValueError:
                    continue
                if st.key:
                    found[st.key] = st
        return found

    def rows(self) -> list[JobStatus]:
        """Every status line in the file, in order (the header skipped)."""
        out: list[JobStatus] = []
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        out.append(JobStatus.model_validate_json(line))
                    except ValueError:
                        continue
        return out

    def _header(self) -> str:
        return json.dumps({"manifest": self.manifest}) + "\n" if self.manifest is not None else ""

    def append(self, status: JobStatus) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = status.model_dump_json() + "\n"
        new = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write((self._header() if new else "") + line)
            f.flush()
            os.fsync(f.fileno())

    def write_all(self, rows: list[JobStatus]) -> None:
        """Replace the file with the header and exactly these rows (manifest order), atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self._header())
            for st in sorted(rows, key=lambda s: s.row):
                f.write(json.dumps(st.model_dump(mode="json")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
