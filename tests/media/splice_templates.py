"""Templates for the smart-render tests, and a renderer that changes real pixels inside a span.

Shared by the FFmpeg tests (test_media_splice.py) and the browser test (test_splice_browser.py), so both
check the same media: VideoSink's own output (settings the splicer reproduces) and x264 with scaling
matrices (settings it cannot, so the new pictures carry their own SPS/PPS).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lipsynckit.media import VideoSink, index_map
from lipsynckit.media.splice import PacketIndex, decode_span

FPS = Fraction(30000, 1001)


def x264_template(path: Path, frames: np.ndarray, options: dict[str, str]) -> Path:
    """``frames`` encoded by PyAV's libx264 with ``options`` (not VideoSink's settings)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 176, 144, "yuv420p"
        s.options = options
        for f in frames:
            for pk in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pk)
        for pk in s.encode(None):
            c.mux(pk)
    return path


def sink_template(path: Path, frames: np.ndarray) -> Path:
    """8 s by VideoSink (2 s GOP, B-frames): key frames at 0, 60, 120, 180."""
    with VideoSink(path, fps=FPS, size=(176, 144)) as s:
        for i in index_map(240, len(frames), "pingpong"):
            s.write(frames[int(i)])
    return path


def negative(index: PacketIndex, ranges: list[tuple[int, int]]):  # noqa: ANN201 - a SpanFrames
    """A span renderer: the negative of the template's picture inside ``ranges``, else the picture as
    decoded (a change that cannot be mistaken for codec noise)."""

    def render(c: int, d: int) -> Iterator[object]:
        for k, picture in zip(range(c, d), decode_span(index, c, d), strict=True):
            if any(a <= k < b for a, b in ranges):
                yield 255 - picture.to_ndarray(format="rgb24")
            else:
                yield picture

    return render
