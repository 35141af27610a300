"""A lip-synced avatar in a Pipecat pipeline, offline: no network, no API keys, no weights.

A WAV file stands in for a TTS service: its audio enters the pipeline as ``TTSAudioRawFrame``\\ s (20 ms,
as a streaming TTS sends them), :class:`~lipsynckit.integrations.pipecat.LipSyncVideoService` with the
built-in ``viseme`` model turns them into image frames each followed by the audio it plays, and the
last processor, where a transport's output would be, writes those frames to an mp4.

    pip install "lipsynckit[pipecat]"
    python examples/pipecat_avatar.py --out avatar_pipecat.mp4

In a live agent, put ``LipSyncVideoService(photo, model=..., realtime=True)`` between your TTS service
and ``transport.output()`` (with ``video_out_enabled=True`` and the template's size in the transport
params); everything else stays as in this file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from lipsynckit.integrations.pipecat import LipSyncVideoService
from lipsynckit.media.sink import VideoSink
from lipsynckit.types import AudioClip

HERE = Path(__file__).resolve().parent
log = logging.getLogger("pipecat_avatar")


class Mp4Writer(FrameProcessor):
    """Where the transport's output would be: keeps the images and their audio, writes them at the end."""

    def __init__(self, path: Path, fps: float) -> None:
        super().__init__()
        self.path, self.fps = path, fps
        self.images: list[np.ndarray] = []
        self.audio: list[np.ndarray] = []
        self.rate = 16000

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputImageRawFrame):
            w, h = frame.size
            self.images.append(np.frombuffer(frame.image, np.uint8).reshape(h, w, 3))
        elif isinstance(frame, TTSAudioRawFrame):
            self.audio.append(np.frombuffer(frame.audio, np.int16).reshape(-1, frame.num_channels))
            self.rate = frame.sample_rate
        elif isinstance(frame, EndFrame):
            await asyncio.to_thread(self.write)
        await self.push_frame(frame, direction)

    def write(self) -> None:
        h, w = self.images[0].shape[:2]
        pcm = np.concatenate(self.audio).T.astype(np.float32) / 32768.0  # (channels, samples)
        clip = AudioClip(torch.from_numpy(pcm), self.rate)
        with VideoSink(self.path, fps=self.fps, size=(w, h), audio=clip) as sink:
            for im in self.images:
                sink.write(im)
        log.info(
            "wrote %d frames and %.2f s of audio to %s", len(self.images), pcm.shape[1] / self.rate, self.path
        )


def tts_frames(wav: Path, seconds: float | None) -> list[Frame]:
    """The WAV as a TTS service would send it: started, 20 ms int16 chunks, stopped."""
    x, sr = sf.read(str(wav), dtype="int16")
    if seconds:
        x = x[: int(seconds * sr)]
    n = sr // 50
    chunks = [
        TTSAudioRawFrame(
            audio=x[i : i + n].tobytes(), sample_rate=sr, num_channels=1 if x.ndim == 1 else x.shape[1]
        )
        for i in range(0, len(x), n)
    ]
    return [TTSStartedFrame(), *chunks, TTSStoppedFrame()]


async def run(image: Path, audio: Path, out: Path, fps: float, seconds: float | None) -> None:
    avatar = LipSyncVideoService(image, model="viseme", fps=fps, realtime=False)
    writer = Mp4Writer(out, fps)
    worker = PipelineWorker(Pipeline([avatar, writer]), cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    async def feed() -> None:
        await started.wait()  # processors drop frames that arrive before the StartFrame
        await worker.queue_frames([*tts_frames(audio, seconds), EndFrame()])

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", type=Path, default=HERE / "astronaut.jpg", help="template photo or video")
    p.add_argument("--audio", type=Path, default=HERE / "speech.wav", help="speech standing in for TTS")
    p.add_argument("--out", type=Path, default=Path("avatar_pipecat.mp4"))
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seconds", type=float, default=None, help="use only the first N seconds of --audio")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(run(args.image, args.audio, args.out, args.fps, args.seconds))


if __name__ == "__main__":
    main()
