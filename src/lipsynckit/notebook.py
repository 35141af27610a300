"""Inline display in Jupyter: results play as videos, audio as players, tracks as overlays."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lipsynckit.types import AudioClip, FaceTrack

from lipsynckit.display import MAX_INLINE_BYTES, result_html, video_tag

_video_tag = video_tag


def audio_html(clip: AudioClip) -> str:
    from lipsynckit.display import audio_html as player

    return player(clip.numpy(), clip.sample_rate, clip.channels)


__all__ = ["MAX_INLINE_BYTES", "audio_html", "overlay_track", "result_html", "show_frames"]


def overlay_track(
    frames: np.ndarray, track: FaceTrack, color: tuple[int, int, int] = (0, 255, 0)
) -> np.ndarray:
    """Frames with the tracked box (and landmarks) drawn, for a quick look at detection."""
    import cv2

    out = np.array(frames, copy=True)
    for i, face in enumerate(track.faces[: len(out)]):
        if face is None:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out[i], (x1, y1), (x2, y2), color, 2)
        if face.landmarks is not None:
            for x, y in face.landmarks.astype(int):
                cv2.circle(out[i], (int(x), int(y)), 1, color, -1)
    return out


def show_frames(frames: np.ndarray, fps: float = 25.0) -> Any:
    """An IPython HTML video of in-memory frames (encoded to H.264 in memory)."""
    import tempfile

    from IPython.display import HTML

    from lipsynckit.media import VideoSink

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "clip.mp4"
        h, w = frames.shape[1:3]
        with VideoSink(p, fps=fps, size=(w, h), audio=None, mode="mp4") as sink:
            for f in frames:
                sink.write(f)
        return HTML(_video_tag(p))
