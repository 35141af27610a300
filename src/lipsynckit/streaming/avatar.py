"""The streaming avatar: template frames and their prepared faces, in memory, prepared once.

Preparation reuses the file path's pieces: the face pass (``pipeline.track_source``) and the on-disk
prepared-face cache (``lipsynckit.avatar``) through ``api.prepare_avatar``. The avatar folder holds a
copy of the template, so a prepared folder can be passed to ``lsk.stream`` on its own. Loaded
avatars are kept per (folder, model) in this process: many sessions on one template share them.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lipsynckit.errors import InputNotFoundError, LipSyncError, NoFaceError
from lipsynckit.types import PreparedFace

log = logging.getLogger(__name__)

TEMPLATE_NAME = "template"  # <avatar folder>/template.<ext>: the copy the folder was prepared from


@dataclass(frozen=True)
class StreamAvatar:
    """Template frames (RGB uint8) and the prepared face of each (``None`` where no face was found)."""

    frames: list[np.ndarray]
    faces: list[PreparedFace | None]
    folder: Path

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        h, w = self.frames[0].shape[:2]
        return w, h

    def index(self, tick: int) -> int:
        """Template frame shown at output frame ``tick``: forward then backward (no jump at the ends),
        the same order as ``sync(..., length_mode="pingpong")``."""
        n = len(self.frames)
        p = tick % (2 * n)
        return p if p < n else 2 * n - 1 - p


def _template_in(folder: Path) -> Path | None:
    found = sorted(
        p for p in folder.glob(f"{TEMPLATE_NAME}.*") if p.is_file() and not p.name.endswith(".partial")
    )
    return found[0] if found else None


def _folder_for(src: Path, avatar_dir: str | Path | None) -> Path:
    """The avatar folder of a template file: ``avatar_dir``, or one per file content in the cache."""
    from lipsynckit.avatar import file_digest
    from lipsynckit.weights import cache_dir

    if avatar_dir is not None:
        return Path(avatar_dir).expanduser()
    return cache_dir() / "avatars" / f"{src.stem}-{file_digest(src)[:12]}"


def avatar_folder(template: str | Path, avatar_dir: str | Path | None) -> tuple[Path, Path, bool]:
    """(folder, template copy inside it, whether this call made the folder) for a template file or an
    already prepared folder."""
    src = Path(template).expanduser()
    if src.is_dir():
        video = _template_in(src)
        if video is None:
            raise InputNotFoundError(
                f"{src} is a folder but not a prepared avatar (no {TEMPLATE_NAME}.* inside)",
                path=src,
                stage="avatar",
                remedy="pass the template video or photo, or a folder made by lsk.stream / prepare_stream_avatar",
            )
        return src, video, False
    if not src.is_file():
        raise InputNotFoundError("template not found", path=src, stage="avatar", remedy="check the path")
    from lipsynckit.inputs import check_template

    check_template(src)  # a bad file is named as the user's, before anything is copied
    folder = _folder_for(src, avatar_dir)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"{TEMPLATE_NAME}{src.suffix.lower()}"
    if not video.is_file():
        tmp = video.with_name(video.name + ".partial")
        shutil.copyfile(src, tmp)
        tmp.replace(video)
    return folder, video, made


# the model is kept with its avatar so that its id cannot be reused by another model meanwhile
_LOADED: dict[tuple[str, int, str], tuple[Any, StreamAvatar]] = {}
_LOADED_LOCK = threading.Lock()


def load_avatar(
    template: str | Path, model: Any, options: Any, avatar_dir: str | Path | None = None
) -> StreamAvatar:
    """Prepare (once, on disk) and load (once per process) the avatar of ``template`` for ``model``.
    A failure names the user's template (not the copy in the avatar folder) and leaves no new folder."""
    user_file = Path(template).expanduser()
    folder, video, made = avatar_folder(template, avatar_dir)
    key = (str(folder.resolve()), id(model), repr(options.model_dump(exclude={"progress"})))
    with _LOADED_LOCK:
        got = _LOADED.get(key)
    if got is not None:
        return got[1]
    try:
        avatar = _prepare_and_load(folder, video, model, options)
    except BaseException as exc:
        if made:  # the folder is ours and holds nothing usable: no copy stays in the cache
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, LipSyncError) and exc.path == str(video) and not user_file.is_dir():
            exc.path = str(user_file)  # the user's file, not our copy of it
            exc.args = (str(exc),)
        raise
    with _LOADED_LOCK:
        _LOADED[key] = (model, avatar)
    return avatar


def _prepare_and_load(folder: Path, video: Path, model: Any, options: Any) -> StreamAvatar:
    """Prepare (the face pass, cached on disk) and load the frames and prepared faces of ``video``."""
    from lipsynckit.api import prepare_avatar
    from lipsynckit.avatar import open_cache
    from lipsynckit.media import VideoSource

    opts = options.model_copy(update={"avatar_dir": folder})
    prepare_avatar(video, model, folder, options=opts)  # the face pass and prepare, skipped when cached
    cache = open_cache(folder, video, model, opts)
    src = VideoSource(video, fps_for_images=opts.fps)
    track = cache.load_track()
    frames = list(src.frames(range(src.info.num_frames)))
    for f in frames:  # shared by every session and handed out as idle frames: nobody may write them
        f.setflags(write=False)
    if track is None or not frames:
        raise NoFaceError("the avatar has no face track", path=video, stage="avatar")
    track = model.adjust_track(track, (src.info.height, src.info.width))
    if track.num_found == 0:
        raise NoFaceError(
            f"no face found in the template ({len(frames)} frame(s))",
            path=video,
            stage="avatar",
            remedy="use a clearer frontal face, another detector, or give the box with face_boxes",
        )
    faces: list[PreparedFace | None] = []
    for s, frame in enumerate(frames):
        pf = None
        if s < len(track.faces) and track.faces[s] is not None:
            pf = cache.get(s)
            if pf is None:  # prepared by an older run without this frame: make it now
                face = track.faces[s]
                assert face is not None
                pf = model.prepare(frame, face)
                cache.put(s, pf)
        faces.append(pf)
    avatar = StreamAvatar(frames=frames, faces=faces, folder=folder)
    log.info(
        "avatar %s: %d frame(s) %dx%d, %d with a face", folder, len(frames), *avatar.size, track.num_found
    )
    return avatar
