"""Real-time streaming: audio chunks in, lip-synced frames out (``lsk.stream``).

>>> session = lsk.stream("template.mp4", model="wav2lip", fps=25, realtime=True)   # doctest: +SKIP
>>> session.push_audio(pcm, 16000); session.flush()                                # doctest: +SKIP
>>> for frame in session.frames(): ...                                             # doctest: +SKIP
"""

from __future__ import annotations

from lipsynckit.streaming.api import stream
from lipsynckit.streaming.clock import Clock, ManualClock, MonotonicClock
from lipsynckit.streaming.features import StreamFeatures, StreamingUnsupportedError, WindowedFeatures
from lipsynckit.streaming.options import StreamOptions
from lipsynckit.streaming.session import Frame, StreamClosedError, StreamSession
from lipsynckit.streaming.stats import StreamStats

__all__ = [
    "Clock",
    "Frame",
    "ManualClock",
    "MonotonicClock",
    "StreamClosedError",
    "StreamFeatures",
    "StreamOptions",
    "StreamSession",
    "StreamStats",
    "StreamingUnsupportedError",
    "WindowedFeatures",
    "stream",
]
