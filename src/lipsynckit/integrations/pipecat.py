"""A Pipecat video service: TTS audio in, lip-synced image frames out, each with the audio it plays.

Place :class:`LipSyncVideoService` after the TTS service and before ``transport.output()``. It takes
the ``TTSAudioRawFrame``\\ s into a lipsynckit streaming session and, for every frame the session makes,
pushes an ``OutputImageRawFrame`` (RGB, ``sync_with_audio=True``) followed by a ``TTSAudioRawFrame``
holding exactly the samples that play with that image. The TTS audio itself is not forwarded: the
frames' audio replaces it, so sound and picture leave together (the session's one-audio-path invariant).

``TTSStoppedFrame`` flushes the utterance and is passed on after its last frame; ``InterruptionFrame``
interrupts the session (no audio of the cut utterance goes out afterwards) and is passed on;
``EndFrame`` lets the pending speech play out, then closes the session; ``CancelFrame`` closes at once.
With ``realtime=True`` (the default) idle frames (image only) flow at the session's fps between replies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lipsynckit.integrations import from_pcm16, missing_extra, pcm16

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InterruptionFrame,
        OutputImageRawFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise missing_extra("Pipecat", "pipecat", e) from e

if TYPE_CHECKING:
    from lipsynckit.streaming.session import Frame as SessionFrame
    from lipsynckit.streaming.session import StreamSession

log = logging.getLogger(__name__)


def _close_opened(opening: asyncio.Future[Any]) -> None:
    """Close a session whose opening finished after its pipeline was cancelled (off the event loop)."""
    if not opening.cancelled() and opening.exception() is None:
        threading.Thread(target=opening.result().close, name="lipsynckit-close", daemon=True).start()


class LipSyncVideoService(FrameProcessor):
    """A lip-synced avatar for a Pipecat pipeline (see the module docstring).

    ``template``, ``model``, ``fps``, ``realtime`` and ``stream_options`` go to :func:`lipsynckit.stream`
    when the pipeline starts (``model`` may be a loaded model shared by many services).
    ``end_drain_timeout_s`` bounds how long ``EndFrame`` waits for pending speech to play out.
    """

    def __init__(
        self,
        template: str | Path,
        *,
        model: Any = "auto",
        fps: float = 25.0,
        realtime: bool = True,
        end_drain_timeout_s: float = 30.0,
        name: str | None = None,
        **stream_options: Any,
    ) -> None:
        super().__init__(name=name)
        self._template = template
        self._model = model
        self._fps = fps
        self._realtime = realtime
        self._stream_options = stream_options
        self._end_drain_timeout_s = end_drain_timeout_s
        self.session: StreamSession | None = None  # the StreamSession, once the pipeline has started
        self._consumer: asyncio.Task[None] | None = None
        self._open_utt: int | None = None  # the utterance being pushed (not flushed yet)
        self._unfinished: set[int] = set()  # pushed utterances whose last frame has not gone out
        self._stops: dict[int, TTSStoppedFrame] = {}  # held until their utterance's last frame
        self._cut_below = 0  # frames of utterances below this id were interrupted: not sent
        self._drained = asyncio.Event()
        self._drained.set()

    # -- frames in ------------------------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._start()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self._push_audio(frame)
        elif isinstance(frame, TTSStoppedFrame) and self.session and self._open_utt is not None:
            self.session.flush()
            self._stops[self._open_utt] = frame
            self._open_utt = None
        elif isinstance(frame, InterruptionFrame):
            self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._end()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._close()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._close()

    async def _start(self) -> None:
        if self.session is not None:
            return
        from lipsynckit.streaming.api import stream

        # loading the model and preparing the avatar block: keep the event loop free
        opening = asyncio.get_running_loop().run_in_executor(
            None,
            partial(
                stream,
                self._template,
                model=self._model,
                fps=self._fps,
                realtime=self._realtime,
                **self._stream_options,
            ),
        )
        try:
            self.session = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the pipeline was cancelled while loading: close what it opens
            opening.add_done_callback(_close_opened)
            raise
        self._consumer = self.create_task(self._consume(), name="frames")

    def _push_audio(self, frame: TTSAudioRawFrame) -> None:
        if self.session is None:
            log.warning("%s: audio before StartFrame dropped", self.name)
            return
        uid = self.session.push_audio(from_pcm16(frame.audio, frame.num_channels), frame.sample_rate)
        if uid is not None:
            self._open_utt = uid
            self._unfinished.add(uid)
            self._drained.clear()

    def _interrupt(self) -> None:
        if self.session is None:
            return
        self.session.interrupt()
        ids = self._unfinished | set(self._stops) | ({self._open_utt} - {None})
        self._cut_below = max([self._cut_below, *(i + 1 for i in ids if i is not None)])
        self._unfinished.clear()
        self._stops.clear()
        self._open_utt = None
        self._drained.set()

    async def _end(self) -> None:
        if self.session is None:
            return
        if self._open_utt is not None:
            self.session.flush()
            self._open_utt = None
        try:
            await asyncio.wait_for(self._drained.wait(), self._end_drain_timeout_s)
        except asyncio.TimeoutError:
            log.warning(
                "%s: speech still playing after %.1f s at EndFrame", self.name, self._end_drain_timeout_s
            )
        await self._close()

    async def _close(self) -> None:
        if self.session is None:
            return
        await asyncio.to_thread(self.session.close)
        if self._consumer is not None:
            await self._consumer  # frames() ends once the session is closed
            self._consumer = None

    # -- frames out -----------------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Iterate the session's frames on a worker thread and push each one downstream."""
        session = self.session
        assert session is not None
        it = session.frames(stop_when_drained=False)
        loop = asyncio.get_running_loop()
        try:
            while True:
                f = await loop.run_in_executor(None, next, it, None)
                if f is None:
                    return
                await self._emit(f, session.sample_rate)
        except Exception as e:  # a failed frame ends the avatar; say so upstream
            log.exception("%s: the lip-sync session failed", self.name)
            await self.push_error(error_msg=f"lip-sync session failed: {e}", exception=e)

    async def _emit(self, f: SessionFrame, sample_rate: int) -> None:
        u = f.utterance if f.speaking else None
        live = u is not None and u >= self._cut_below
        h, w = f.image.shape[:2]
        image = OutputImageRawFrame(image=f.image.tobytes(), size=(w, h), format="RGB")
        image.sync_with_audio = True  # shown once the audio before it has been sent
        image.pts = int(round(f.pts * 1e9))
        image.metadata["lipsynckit"] = {
            "index": f.index,
            "speaking": bool(live),
            "utterance": u if live else None,
        }
        await self.push_frame(image)
        if u is None or u < self._cut_below:  # idle, cut, or interrupted while the image went out
            return
        channels = 1 if f.audio.ndim == 1 else f.audio.shape[1]
        audio = TTSAudioRawFrame(audio=pcm16(f.audio), sample_rate=sample_rate, num_channels=channels)
        audio.pts = image.pts
        await self.push_frame(audio)
        if f.end_of_speech:
            self._unfinished.discard(u)
            stop = self._stops.pop(u, None)
            if stop is not None:
                await self.push_frame(stop)
            if not self._unfinished:
                self._drained.set()
