"""HTML for notebooks (an audio player, a sync result with its video). Imports nothing of lipsynckit,
so the data types can render themselves without a cycle through the notebook helpers."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

MAX_INLINE_BYTES = 40 * 1024 * 1024


def video_tag(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_INLINE_BYTES:
        return f"<p>{html.escape(str(path))} ({len(data) / 1e6:.1f} MB, too large to embed)</p>"
    b64 = base64.b64encode(data).decode()
    return f'<video controls style="max-width:100%" src="data:video/mp4;base64,{b64}"></video>'


def result_html(result: Any) -> str:
    """A ``SyncResult`` (duck-typed) as a summary table with the video embedded when it is an mp4."""
    out = result.output
    body = ""
    if out is not None and out.is_file() and out.suffix.lower() == ".mp4":
        body = video_tag(out)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.2f} s</td></tr>" for k, v in result.stage_seconds.items()
    )
    return (
        f"<div><b>lipsynckit</b> {html.escape(result.model)}: {result.frames} frames, "
        f"faces in {result.frames_with_face}, {result.width}x{result.height} @ {result.fps:.3f} fps"
        f"{body}<table>{rows}</table></div>"
    )


def audio_html(mono: np.ndarray, sample_rate: int, channels: int = 1) -> str:
    """An inline WAV player for a mono float waveform."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, mono, sample_rate, format="WAV", subtype="PCM_16")
    b64 = base64.b64encode(buf.getvalue()).decode()
    return (
        f"<div>AudioClip {len(mono) / sample_rate:.2f} s @ {sample_rate} Hz, {channels} ch"
        f'<br><audio controls src="data:audio/wav;base64,{b64}"></audio></div>'
    )
