"""Inline display in Jupyter: results play as videos, audio as players, tracks as overlays."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lipsynckit.pipeline import SyncResult
    from lipsynckit.types import AudioClip, FaceTrack

MAX_INLINE_BYTES = 40 * 1024 * 1024


def _video_tag(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_INLINE_BYTES:
        return f"<p>{html.escape(str(path))} ({len(data) / 1e6:.1f} MB, too large to embed)</p>"
    b64 = base64.b64encode(data).decode()
    return f'<video controls style="max-width:100%" src="data:video/mp4;base64,{b64}"></video>'


def result_html(result: SyncResult) -> str:
    out = result.output
    body = ""
    if out is not None and out.is_file() and out.suffix.lower() == ".mp4":
        body = _video_tag(out)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.2f} s</td></tr>" for k, v in result.stage_seconds.items()
    )
    return (
        f"<div><b>lipsynckit</b> {html.escape(result.model)}: {result.frames} frames, "
        f"faces in {result.frames_with_face}, {result.width}x{result.height} @ {result.fps:.3f} fps"
        f"{body}<table>{rows}</table></div>"
    )


def audio_html(clip: AudioClip) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, clip.numpy(), clip.sample_rate, format="WAV", subtype="PCM_16")
    b64 = base64.b64encode(buf.getvalue()).decode()
    return (
        f"<div>AudioClip {clip.duration:.2f} s @ {clip.sample_rate} Hz, {clip.channels} ch"
        f'<br><audio controls src="data:audio/wav;base64,{b64}"></audio></div>'
    )


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
