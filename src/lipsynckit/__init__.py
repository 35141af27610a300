"""lipsynckit: lip-sync a video or a still image to new audio, one API over several models.

>>> import lipsynckit as lsk
>>> result = lsk.sync("talk.mp4", "dub.wav", output="out.mp4")          # doctest: +SKIP
>>> lsk.list_models()                                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lipsynckit.errors import LipSyncError
from lipsynckit.lazy import lazy_getattr

if TYPE_CHECKING:
    from lipsynckit.api import detect_faces, prepare_avatar, sync, sync_batch, sync_frames
    from lipsynckit.jobs.run import run_manifest
    from lipsynckit.model import LipSyncModel, ModelInfo, ModelPlugin, WeightFile
    from lipsynckit.options import SyncOptions
    from lipsynckit.pipeline import SyncResult
    from lipsynckit.registry import get_plugin, list_models, load_model
    from lipsynckit.streaming import stream
    from lipsynckit.types import AudioClip, Face, FaceTrack, PreparedFace

__version__ = "0.1.0"

logging.getLogger("lipsynckit").addHandler(logging.NullHandler())

# Imported on first use (PEP 562), so that `import lipsynckit` and `lipsynckit --help` need no torch.
_LAZY = {
    "detect_faces": "lipsynckit.api",
    "prepare_avatar": "lipsynckit.api",
    "sync": "lipsynckit.api",
    "sync_batch": "lipsynckit.api",
    "sync_frames": "lipsynckit.api",
    "run_manifest": "lipsynckit.jobs.run",
    "stream": "lipsynckit.streaming",
    "LipSyncModel": "lipsynckit.model",
    "ModelInfo": "lipsynckit.model",
    "ModelPlugin": "lipsynckit.model",
    "WeightFile": "lipsynckit.model",
    "SyncOptions": "lipsynckit.options",
    "SyncResult": "lipsynckit.pipeline",
    "get_plugin": "lipsynckit.registry",
    "list_models": "lipsynckit.registry",
    "load_model": "lipsynckit.registry",
    "AudioClip": "lipsynckit.types",
    "Face": "lipsynckit.types",
    "FaceTrack": "lipsynckit.types",
    "PreparedFace": "lipsynckit.types",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_audio(path: str, sample_rate: int | None = None) -> AudioClip:
    """Read any audio file (or a video's audio track) as an :class:`AudioClip`."""
    from lipsynckit.media import load_audio as _load

    return _load(path, sample_rate=sample_rate)


def read_video(path: str):  # type: ignore[no-untyped-def]
    """All frames of a (short) video as an (N, H, W, 3) RGB uint8 array."""
    from lipsynckit.media import read_video_frames

    return read_video_frames(path)


__all__ = [
    "AudioClip",
    "Face",
    "FaceTrack",
    "LipSyncError",
    "LipSyncModel",
    "ModelInfo",
    "ModelPlugin",
    "PreparedFace",
    "SyncOptions",
    "SyncResult",
    "WeightFile",
    "detect_faces",
    "get_plugin",
    "list_models",
    "load_audio",
    "load_model",
    "prepare_avatar",
    "read_video",
    "sync",
    "sync_batch",
    "stream",
    "sync_frames",
    "run_manifest",
    "__version__",
]
