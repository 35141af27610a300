"""Errors meant for users: each names the file, the stage and what to do next.

The CLI prints ``str(error)`` without a traceback for every :class:`LipSyncError`.
"""

from __future__ import annotations

from pathlib import Path


class LipSyncError(Exception):
    """Base class: a problem the user can act on.

    ``stage`` is the pipeline stage ("audio", "video", "faces", "weights", "model", "output", ...),
    ``path`` the file concerned (if any) and ``remedy`` one sentence saying what to do.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        stage: str | None = None,
        remedy: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.stage = stage
        self.remedy = remedy
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = []
        if self.stage:
            parts.append(f"[{self.stage}]")
        if self.path:
            parts.append(f"{self.path}:")
        parts.append(self.message)
        text = " ".join(parts)
        if self.remedy:
            text += f"\n  -> {self.remedy}"
        return text


class InputNotFoundError(LipSyncError):
    """An input file does not exist."""


class AudioError(LipSyncError):
    """Audio that cannot be read, is empty, or is silent."""


class VideoError(LipSyncError):
    """Video or image that cannot be decoded."""


class NoFaceError(LipSyncError):
    """No face was found where one is needed."""


class FaceDetectorError(LipSyncError):
    """A face detector cannot run (missing package, missing model files, offline)."""


class WeightsError(LipSyncError):
    """Weights are missing, corrupt, the wrong file, or fail verification."""


class ModelUnavailableError(LipSyncError):
    """A model plugin is installed but cannot run (missing extra, missing weights)."""


class UnknownModelError(LipSyncError):
    """No plugin registered under that name."""


class OutputError(LipSyncError):
    """The output cannot be written (no disk space, unwritable folder, ...)."""


class DeviceOutOfMemoryError(LipSyncError):
    """The accelerator ran out of memory even at batch size 1."""

    exit_code = 3
