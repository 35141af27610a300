"""Face detection, tracking and ``--face-boxes`` files.

Detectors are plugins in the entry-point group ``lipsynckit.face_detectors`` (see
:mod:`lipsynckit.faces.base`); this module picks one (``get_face_detector``), lists them
(``list_face_detectors``), follows the chosen face through a video (``track_faces``) and reads
user-given boxes (``load_face_boxes``). Nothing heavy is imported here.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.faces.boxes_file import load_face_boxes
from lipsynckit.faces.select import select_face
from lipsynckit.faces.tracker import FaceTracker, TrackOptions, TrackStats, track_faces

log = logging.getLogger(__name__)

# insightface only when its (downloaded, non-commercial) pack is present; with the [faces] extra the
# offline default is MTCNN (5 landmarks that follow head roll), then yuface; Haar always works
AUTO_ORDER = ("insightface", "mtcnn", "yuface", "s3fd", "opencv")

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


_announced: set[str] = set()


def _create(plugin: FaceDetectorPlugin, options: dict[str, Any] | BaseModel | None) -> FaceDetector:
    """Parse the options (one line on a bad one, before anything loads), then build the detector; say
    once per process when its model forbids commercial use."""
    parsed = plugin.parse_options(options)
    info = plugin.info
    if info.non_commercial and info.name not in _announced:
        _announced.add(info.name)
        log.warning(
            "face detector %r is licensed %s: NON-COMMERCIAL use only. Check the licence before using "
            "outputs commercially (--detector yuface or opencv are licence-clean).",
            info.name,
            info.license,
        )
    return plugin.create(parsed)


def get_face_detector(name: str = "auto", options: dict[str, Any] | BaseModel | None = None) -> FaceDetector:
    """Build a detector by plugin name; ``auto`` tries ``AUTO_ORDER`` and takes the first usable one.

    ``options`` are parsed by the chosen detector's ``options_model`` (with ``auto``: the one chosen);
    a bad one is one :class:`~lipsynckit.errors.LipSyncError` line naming it and the valid names."""
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
            skipped = [r.split(":", 1)[0] for r in reasons]
            log.info(
                "face detector: auto chose %r%s",
                cand,
                f" ({' and '.join(skipped)} not usable here; -v says why)" if skipped else "",
            )
            if reasons:
                log.debug("face detector auto, not chosen: %s", "; ".join(reasons))
            return _create(plugin, options)
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
    return _create(plugin, options)
