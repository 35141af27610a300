"""Face detection, tracking and ``--face-boxes`` files.

Detectors are plugins in the entry-point group ``lipsynckit.face_detectors`` (see
:mod:`lipsynckit.faces.base`); this module picks one (``get_face_detector``), lists them
(``list_face_detectors``), follows the chosen face through a video (``track_faces``) and reads
user-given boxes (``load_face_boxes``). Nothing heavy is imported here.
"""

from __future__ import annotations

import logging
from typing import Any

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.faces.boxes_file import load_face_boxes
from lipsynckit.faces.select import select_face
from lipsynckit.faces.tracker import FaceTracker, TrackOptions, TrackStats, track_faces

log = logging.getLogger(__name__)

AUTO_ORDER = ("insightface", "s3fd", "opencv")

__all__ = [
    "AUTO_ORDER",
    "FaceDetector",
    "FaceDetectorPlugin",
    "FaceTracker",
    "TrackOptions",
    "TrackStats",
    "get_face_detector",
    "list_face_detectors",
    "load_face_boxes",
    "select_face",
    "track_faces",
]


def _plugins() -> dict[str, tuple[FaceDetectorPlugin | None, str]]:
    from lipsynckit.registry import face_detector_plugins

    return {name: (entry.plugin, entry.error) for name, entry in face_detector_plugins().items()}


def _install_hint(name: str) -> str:
    from lipsynckit.registry import face_detector_plugins

    return face_detector_plugins()[name].install_hint


def _status(plugin: FaceDetectorPlugin) -> tuple[bool, str]:
    try:
        return plugin.status()
    except Exception as exc:  # noqa: BLE001 - a broken third-party status() must not break listing
        return False, f"status check failed: {type(exc).__name__}: {exc}"


def list_face_detectors() -> list[tuple[str, bool, str]]:
    """Every installed detector plugin as ``(name, usable, reason)``; unusable ones say why."""
    rows: list[tuple[str, bool, str]] = []
    for name, (plugin, error) in sorted(_plugins().items()):
        if plugin is None:
            rows.append((name, False, error))
            continue
        ok, reason = _status(plugin)
        rows.append((name, ok, reason))
    return rows


def get_face_detector(name: str = "auto", **kwargs: Any) -> FaceDetector:
    """Build a detector by plugin name; ``auto`` = insightface if its models are here, else s3fd, else opencv."""
    plugins = _plugins()
    if name == "auto":
        reasons: list[str] = []
        for cand in AUTO_ORDER:
            plugin, error = plugins.get(cand, (None, "not installed"))
            if plugin is None:
                reasons.append(f"{cand}: {error}")
                continue
            ok, reason = _status(plugin)
            if not ok:
                reasons.append(f"{cand}: {reason}")
                continue
            log.info(
                "face detector: auto chose %r (%s); skipped: %s", cand, reason, "; ".join(reasons) or "none"
            )
            return plugin.create(**kwargs)
        raise FaceDetectorError(
            "no usable face detector: " + "; ".join(reasons),
            stage="faces",
            remedy='pip install "opencv-python-headless>=4.8,<5" (built-in Haar detector) or pass --face-boxes',
        )
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        raise FaceDetectorError(
            f"no face detector plugin named {name!r} (installed: {known})",
            stage="faces",
            remedy="run `lipsynckit doctor` to list detectors, or use --detector auto",
        )
    plugin, error = plugins[name]
    if plugin is None:
        raise FaceDetectorError(
            f"face detector {name!r} is installed but cannot be imported: {error}",
            stage="faces",
            remedy="install the plugin's extra (see `lipsynckit doctor`) or use --detector opencv",
        )
    missing = plugin.missing_modules()
    if missing:
        raise FaceDetectorError(
            f"face detector {name!r} needs missing Python packages: {', '.join(missing)}",
            stage="faces",
            remedy=f"{_install_hint(name)} or use --detector opencv",
        )
    log.info("face detector: %r", name)
    return plugin.create(**kwargs)
