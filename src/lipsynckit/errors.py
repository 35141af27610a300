"""Errors meant for users: each names the file, the stage and what to do next.

The CLI prints ``str(error)`` without a traceback for every :class:`LipSyncError`.
"""

from __future__ import annotations

from pathlib import Path


class LipSyncError(Exception):
    """Base class: a problem the user can act on.

    ``stage`` is the pipeline stage ("audio", "video", "faces", "weights", "model", "output", ...),
    ``path`` the file concerned (if any) and ``remedy`` one sentence saying what to do. ``cli_remedy``
    is the same advice in command-line spelling (``--allow-silent`` for ``allow_silent_audio=True``);
    the CLI prints :meth:`cli_text`, which uses it when given.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        stage: str | None = None,
        remedy: str | None = None,
        cli_remedy: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.stage = stage
        self.remedy = remedy
        self.cli_remedy = cli_remedy
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return self._text(self.remedy)

    def cli_text(self) -> str:
        """The message with the remedy a command-line user can follow."""
        return self._text(self.cli_remedy or self.remedy)

    def _text(self, remedy: str | None) -> str:
        parts = []
        if self.stage:
            parts.append(f"[{self.stage}]")
        if self.path:
            parts.append(f"{self.path}:")
        parts.append(self.message)
        text = " ".join(parts)
        if remedy:
            text += f"\n  -> {remedy}"
        return text


class InputNotFoundError(LipSyncError):
    """An input file does not exist."""


class AudioError(LipSyncError):
    """Audio that cannot be read, is empty, or is silent."""


class SilentAudioError(AudioError):
    """The audio is silent (refused unless the caller allows it)."""


class EmptyInputError(InputNotFoundError):
    """An input file exists but is empty (0 bytes)."""


class VideoError(LipSyncError):
    """Video or image that cannot be decoded."""


class NoFaceError(LipSyncError):
    """No face was found where one is needed."""


class FaceDetectorError(LipSyncError):
    """A face detector cannot run (missing package, missing model files, offline)."""


class WeightsError(LipSyncError):
    """Weights are missing, corrupt, the wrong file, or fail verification."""


class OfflineError(WeightsError):
    """A download cannot start: the hub cannot be reached."""


class ModelUnavailableError(LipSyncError):
    """A model plugin is installed but cannot run (missing extra, missing weights)."""


class UnknownModelError(LipSyncError):
    """No plugin registered under that name."""


class OutputError(LipSyncError):
    """The output cannot be written (no disk space, unwritable folder, ...)."""


class FrameFailedError(LipSyncError):
    """Frames failed while being prepared, and the user did not ask to pass them through."""


class DeviceOutOfMemoryError(LipSyncError):
    """The accelerator ran out of memory even at batch size 1."""

    exit_code = 3
