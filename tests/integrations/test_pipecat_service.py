"""Issue 19: the Pipecat video service in real Pipecat pipelines, fed TTS frames of real speech.

The offline test runs Pipecat's own ``run_test`` (a Pipeline on a PipelineWorker); the real-time test
builds the same pipeline and waits on the frames that reach its end (events, never sleeps).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soxr
from avatar_helpers import padded, speech_int16, tts_chunks

pytest.importorskip("pipecat")

from pipecat.frames.frames import (  # noqa: E402
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.tests.utils import run_test  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

import lipsynckit as lsk  # noqa: E402
from lipsynckit.integrations.pipecat import LipSyncVideoService  # noqa: E402
from lipsynckit.streaming import StreamClosedError  # noqa: E402

FPS = 25.0
SPF = 640  # samples per frame at 16 kHz


def _service(viseme, astronaut_png: Path, avatar_dir: Path, **kw) -> LipSyncVideoService:  # noqa: ANN001
    return LipSyncVideoService(
        astronaut_png, model=viseme, fps=FPS, avatar_dir=avatar_dir, detector="opencv", **kw
    )


def _tts(x: np.ndarray, sr: int) -> list[Frame]:
    return [
        TTSStartedFrame(),
        *(TTSAudioRawFrame(audio=c.tobytes(), sample_rate=sr, num_channels=1) for c in tts_chunks(x, sr)),
        TTSStoppedFrame(),
    ]


def _audio(frames: list[Frame]) -> np.ndarray:
    return np.concatenate(
        [np.frombuffer(f.audio, np.int16) for f in frames if isinstance(f, TTSAudioRawFrame)]
        or [np.zeros(0, np.int16)]
    )


def _at(x: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """Real speech at the rate a TTS service sends (24 kHz is common), still int16."""
    if rate == sr:
        return x
    y = soxr.resample(x.astype(np.float32) / 32768.0, sr, rate)
    return np.clip(np.rint(y * 32768.0), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("rate", [16000, 24000])
def test_pipeline_emits_image_frames_at_the_session_fps_with_their_audio_sample_exact(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
    rate: int,
) -> None:
    a, sr = speech_int16(speech_wavs[0], 2.3)
    b, _ = speech_int16(speech_wavs[1], 1.07)
    a, b, sr = _at(a, sr, rate), _at(b, sr, rate), rate
    spf = int(sr / FPS)
    svc = _service(viseme, astronaut_png, avatar_dir, realtime=False)
    down, _ = asyncio.run(run_test(svc, frames_to_send=_tts(a, sr) + _tts(b, sr), start_timeout=300))

    images = [f for f in down if isinstance(f, OutputImageRawFrame)]
    n_a, n_b = int(np.ceil(len(a) / spf)), int(np.ceil(len(b) / spf))
    assert len(images) == n_a + n_b
    assert all(
        im.size == (512, 512) and im.format == "RGB" and len(im.image) == 512 * 512 * 3 for im in images
    )
    assert all(im.sync_with_audio for im in images)
    meta = [im.metadata["lipsynckit"] for im in images]
    assert [m["index"] for m in meta] == list(range(n_a + n_b))
    assert [m["utterance"] for m in meta] == [0] * n_a + [1] * n_b
    assert np.diff([im.pts for im in images]).tolist() == pytest.approx([1e9 / FPS] * (n_a + n_b - 1), abs=1)
    # each image is followed by exactly the audio that plays with it: one frame's worth, same pts
    for i, f in enumerate(down):
        if isinstance(f, OutputImageRawFrame):
            nxt = down[i + 1]
            assert isinstance(nxt, TTSAudioRawFrame) and nxt.pts == f.pts and nxt.num_frames == spf
            assert nxt.sample_rate == sr and nxt.num_channels == 1
    # the re-timed audio is the TTS audio, sample for sample (silence only to the end of a last frame)
    np.testing.assert_array_equal(_audio(down), np.concatenate([padded(a, sr), padded(b, sr)]))
    # TTSStoppedFrame passes on after its utterance's last frame, the TTS audio itself does not
    kinds = [type(f) for f in down]
    stops = [i for i, k in enumerate(kinds) if k is TTSStoppedFrame]
    audios = [i for i, k in enumerate(kinds) if k is TTSAudioRawFrame]
    assert len(stops) == 2 and stops[0] > audios[n_a - 1] and stops[1] > audios[-1]
    assert len(audios) == n_a + n_b
    # the mouth moves with the speech
    template = lsk.read_video(str(astronaut_png))[0]
    moved = [
        np.abs(np.frombuffer(im.image, np.uint8).reshape(template.shape) - template.astype(int)).max()
        for im in images
    ]
    assert max(moved) > 20
    # EndFrame closed the session
    with pytest.raises(StreamClosedError):
        svc.session.push_audio(a[:spf], sr)


def test_cancel_frame_closes_the_session_without_waiting_for_speech(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    a, sr = speech_int16(speech_wavs[0], 3.0)
    svc = _service(viseme, astronaut_png, avatar_dir, realtime=True)
    frames = _tts(a, sr)[:-1] + [CancelFrame()]  # a reply still streaming when the call is dropped
    asyncio.run(run_test(svc, frames_to_send=frames, send_end_frame=False, start_timeout=300))
    with pytest.raises(StreamClosedError):
        svc.session.push_audio(a[:SPF], sr)


class _Collector(FrameProcessor):
    """The end of the pipeline: keeps every downstream frame and wakes whoever waits on them."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM and not isinstance(frame, StartFrame):
            self.frames.append(frame)
            self._changed.set()
        await self.push_frame(frame, direction)

    async def wait_for(self, pred, timeout: float = 120.0) -> None:  # noqa: ANN001
        async def _wait() -> None:
            while not pred(self.frames):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)


def _speaking(f: Frame) -> bool:
    return isinstance(f, OutputImageRawFrame) and f.metadata["lipsynckit"]["speaking"]


def _idle(f: Frame) -> bool:
    return isinstance(f, OutputImageRawFrame) and not f.metadata["lipsynckit"]["speaking"]


def test_realtime_interruption_returns_to_idle_and_end_closes_the_session(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    a, sr = speech_int16(speech_wavs[2], 5.0)
    b, _ = speech_int16(speech_wavs[3], 1.2)
    svc = _service(viseme, astronaut_png, avatar_dir, realtime=True)

    async def scenario() -> list[Frame]:
        sink = _Collector()
        worker = PipelineWorker(Pipeline([svc, sink]), cancel_on_idle_timeout=False)
        started = asyncio.Event()

        @worker.event_handler("on_pipeline_started")
        async def _on_started(_worker, _frame) -> None:  # noqa: ANN001
            started.set()

        runner = WorkerRunner()
        await runner.add_workers(worker)
        run = asyncio.create_task(runner.run())
        await asyncio.wait_for(started.wait(), 120)
        await sink.wait_for(lambda fs: sum(map(_idle, fs)) >= 2)  # idle frames flow before any speech
        await worker.queue_frames(_tts(a, sr)[:-1])  # a long reply, still streaming
        await sink.wait_for(lambda fs: sum(map(_speaking, fs)) >= 5)
        await worker.queue_frame(InterruptionFrame())  # barge-in
        await sink.wait_for(lambda fs: any(isinstance(f, InterruptionFrame) for f in fs))
        cut = next(i for i, f in enumerate(sink.frames) if isinstance(f, InterruptionFrame))
        await sink.wait_for(lambda fs: sum(map(_idle, fs[cut:])) >= 3)
        await worker.queue_frames(_tts(b, sr))  # the next reply plays in full
        await sink.wait_for(lambda fs: any(isinstance(f, TTSStoppedFrame) for f in fs[cut:]))
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(run, 120)
        return sink.frames

    frames = asyncio.run(scenario())
    cut = next(i for i, f in enumerate(frames) if isinstance(f, InterruptionFrame))
    before, after = frames[:cut], frames[cut:]
    # what played of the interrupted reply is its beginning, sample for sample, and not all of it
    heard = _audio(before)
    assert SPF * 5 <= len(heard) < len(a)
    np.testing.assert_array_equal(heard, a[: len(heard)])
    # after the barge-in nothing of it goes out: idle frames, then the next reply, whole
    first_b = next(i for i, f in enumerate(after) if _speaking(f))
    assert sum(map(_idle, after[:first_b])) >= 3
    assert not any(isinstance(f, TTSAudioRawFrame) for f in after[:first_b])
    assert {f.metadata["lipsynckit"]["utterance"] for f in after if _speaking(f)} == {1}
    np.testing.assert_array_equal(_audio(after), padded(b, sr))
    indices = [f.metadata["lipsynckit"]["index"] for f in frames if isinstance(f, OutputImageRawFrame)]
    assert indices == sorted(set(indices))  # images leave in tick order, each once
    with pytest.raises(StreamClosedError):
        svc.session.push_audio(b[:SPF], sr)
