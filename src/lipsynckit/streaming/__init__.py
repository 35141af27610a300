"""Real-time streaming: audio chunks in, lip-synced frames out (``lsk.stream``).

>>> session = lsk.stream("template.mp4", model="wav2lip", fps=25, realtime=True)   # doctest: +SKIP
>>> session.push_audio(pcm, 16000); session.flush()                                # doctest: +SKIP
>>> for frame in session.frames(): ...                                             # doctest: +SKIP
"""

from __future__ import annotations

from lipsynckit.lazy import lazy_getattr

# Imported on first use (PEP 562): `lipsynckit serve --help` reaches this package and must not load torch.
_LAZY = {
    "stream": ".api",
    "Clock": ".clock",
    "ManualClock": ".clock",
    "MonotonicClock": ".clock",
    "StreamFeatures": ".features",
    "StreamingUnsupportedError": ".features",
    "WindowedFeatures": ".features",
    "StreamOptions": ".options",
    "Frame": ".session",
    "StreamClosedError": ".session",
    "StreamSession": ".session",
    "StreamStats": ".stats",
    "set_stream_threads": ".threads",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

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
    "set_stream_threads",
    "stream",
]
