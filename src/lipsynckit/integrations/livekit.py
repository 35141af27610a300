"""A LiveKit Agents avatar: a ``VideoGenerator`` over a lipsynckit streaming session.

Hand :class:`LipSyncVideoGenerator` to an ``AvatarRunner`` (``livekit.agents.voice.avatar``) with the
agent's audio receiver (``QueueAudioOutput`` in process, ``DataStreamAudioReceiver`` in an avatar
worker). ``push_audio`` takes ``rtc.AudioFrame``\\ s and ``AudioSegmentEnd`` (flush);
``clear_buffer`` interrupts; iterating yields, per session frame, an ``rtc.VideoFrame`` (RGB24 or RGBA)
and, while speaking, the ``rtc.AudioFrame`` holding exactly the samples that play with it, then
``AudioSegmentEnd`` after an utterance's last frame. The runner's ``AVSynchronizer`` publishes both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

import numpy as np

from lipsynckit.integrations import from_pcm16, missing_extra, pcm16

try:
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise missing_extra("LiveKit Agents", "livekit", e) from e

if TYPE_CHECKING:
    from lipsynckit.streaming.session import StreamSession

log = logging.getLogger(__name__)


class LipSyncVideoGenerator(VideoGenerator):
    """LiveKit's ``VideoGenerator`` driven by ``session`` (from :func:`lipsynckit.stream`, real time).

    The generator owns the session from here on: :meth:`aclose` closes it and iteration then ends.
    ``video_format`` is the pixel layout of the yielded frames: ``"rgb24"`` (the session's own bytes)
    or ``"rgba"`` (what ``rtc.VideoSource`` converts from without a copy in native code).
    """

    def __init__(self, session: StreamSession, *, video_format: Literal["rgb24", "rgba"] = "rgb24") -> None:
        if video_format not in ("rgb24", "rgba"):
            raise ValueError(f"video_format must be 'rgb24' or 'rgba', not {video_format!r}")
        self.session = session
        self._rgba = video_format == "rgba"
        self._open_utt: int | None = None
        self._pushed: set[int] = set()
        # utterances that end a LiveKit segment: the one open at AudioSegmentEnd (a pause longer than
        # the session's auto_flush_s splits a segment into several utterances, but it ends once)
        self._segment_ends: set[int] = set()
        self._cut_below = 0  # frames of utterances below this id were cleared: no audio, no segment end

    @property
    def video_size(self) -> tuple[int, int]:
        """(width, height) of the frames, for ``AvatarOptions``."""
        h, w = self.session.avatar.frames[0].shape[:2]
        return w, h

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            if self._open_utt is not None:
                self._segment_ends.add(self._open_utt)
                self.session.flush()
                self._open_utt = None
            return
        uid = self.session.push_audio(from_pcm16(frame.data, frame.num_channels), frame.sample_rate)
        if uid is not None:
            self._open_utt = uid
            self._pushed.add(uid)

    def clear_buffer(self) -> None:
        """Interrupt: queued audio and unplayed frames are dropped; back to idle."""
        self.session.interrupt()
        self._cut_below = max([self._cut_below, *(i + 1 for i in self._pushed)])
        self._pushed.clear()
        self._segment_ends.clear()
        self._open_utt = None

    async def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        it = self.session.frames(stop_when_drained=False)
        loop = asyncio.get_running_loop()
        while True:
            f = await loop.run_in_executor(None, next, it, None)
            if f is None:
                return
            yield self._video(f.image)
            if not f.speaking or f.utterance is None or f.utterance < self._cut_below:
                continue
            channels = 1 if f.audio.ndim == 1 else f.audio.shape[1]
            yield rtc.AudioFrame(
                data=pcm16(f.audio),
                sample_rate=self.session.sample_rate,
                num_channels=channels,
                samples_per_channel=len(f.audio),
            )
            if f.end_of_speech:
                self._pushed.discard(f.utterance)
                if f.utterance in self._segment_ends:
                    self._segment_ends.discard(f.utterance)
                    yield AudioSegmentEnd()

    async def aclose(self) -> None:
        """Close the session (iteration ends)."""
        await asyncio.to_thread(self.session.close)

    def _video(self, image: np.ndarray) -> rtc.VideoFrame:
        h, w = image.shape[:2]
        if self._rgba:
            rgba = np.empty((h, w, 4), np.uint8)
            rgba[..., :3] = image
            rgba[..., 3] = 255
            return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, rgba.tobytes())
        return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGB24, image.tobytes())
