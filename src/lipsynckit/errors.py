"""Errors meant for users: each names the file, the stage and what to do next. Every error class of
lipsynckit lives here.

The CLI prints ``str(error)`` without a traceback for every :class:`LipSyncError`. The hierarchy::

    LipSyncError                    exit code 2
    ├── InputNotFoundError          an input file does not exist
    │   └── EmptyInputError         ... or is empty (0 bytes)
    ├── AudioError                  audio unreadable, empty or silent
    │   └── SilentAudioError        ... silent, and silence was not allowed
    ├── VideoError                  video or image that cannot be decoded
    ├── NoFaceError                 no face where one is needed
    ├── FaceDetectorError           a detector cannot run
    ├── FaceBoxesError              a --face-boxes file that cannot be used
    ├── WeightsError                weights missing, corrupt, wrong, or failing verification
    │   └── OfflineError            ... and the hub cannot be reached to fetch them
    ├── ModelUnavailableError       a model is installed but cannot run
    ├── UnknownModelError           no plugin registered under that name
    ├── StreamingUnsupportedError   a model that cannot run on a stream (lsk.stream)
    ├── StreamClosedError           audio pushed to, or frames read from, a closed stream
    ├── OutputError                 the output cannot be written
    ├── FrameFailedError            a frame's preparation failed (without --keep-going)
    ├── FrameGenerationError        generate failed on a batch (names job and frames)
    ├── SchedulerClosedError        work given to a scheduler that has stopped
    └── DeviceOutOfMemoryError      exit code 3: out of memory even at batch size 1
        └── FrameOutOfMemoryError   ... at the smallest batch, naming job and frames

``RowError`` (a ``ValueError``) is not a user error of its own: the manifest reader raises it inside one
row's checks and turns it into a failed status row naming the row and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
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


class StreamingUnsupportedError(LipSyncError):
    """The model cannot run on a stream (it needs whole chunks of video or many steps per frame)."""


class StreamClosedError(LipSyncError):
    """The streaming session was closed."""


class OutputError(LipSyncError):
    """The output cannot be written (no disk space, unwritable folder, ...)."""


class FrameFailedError(LipSyncError):
    """Frames failed while being prepared, and the user did not ask to pass them through."""


class DeviceOutOfMemoryError(LipSyncError):
    """The accelerator ran out of memory even at batch size 1."""

    exit_code = 3


class FaceBoxesError(LipSyncError):
    """A ``--face-boxes`` file that cannot be used."""


OOM_REMEDY = (
    "free device memory (close other programs using the GPU), use a smaller input resolution or a "
    "half-precision dtype, or run on CPU with --device cpu"
)


class FrameGenerationError(LipSyncError):
    """``generate`` failed on a batch; names the job and the frames that were in it."""

    def __init__(
        self, message: str, *, job_id: int, indices: Sequence[int], remedy: str | None = None
    ) -> None:
        self.job_id = job_id
        self.indices = list(indices)
        super().__init__(message, stage="model", remedy=remedy)


class FrameOutOfMemoryError(DeviceOutOfMemoryError):
    """Out of device memory at the smallest batch (one frame or one chunk); names job and frames."""

    def __init__(self, message: str, *, job_id: int, indices: Sequence[int]) -> None:
        self.job_id = job_id
        self.indices = list(indices)
        super().__init__(message, stage="model", remedy=OOM_REMEDY)


class SchedulerClosedError(LipSyncError):
    """Work submitted to, or left in, a scheduler that has stopped."""


class RowError(ValueError):
    """A problem with one manifest cell: the column it is in, what is wrong, and (when the column's
    usual advice does not fit) what to write there instead."""

    def __init__(self, column: str, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.message = message
        self.remedy = remedy
