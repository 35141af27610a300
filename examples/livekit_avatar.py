"""A lip-synced LiveKit Agents avatar, offline: no LiveKit server, no network, no API keys, no weights.

The agent side is LiveKit's in-process ``QueueAudioOutput`` (what an ``AgentSession`` writes its TTS
audio to); a WAV file stands in for the TTS. The avatar side runs ``AvatarRunner``'s two loops
(audio receiver -> ``VideoGenerator.push_audio``; generator -> output), with
:class:`~lipsynckit.integrations.livekit.LipSyncVideoGenerator` and the built-in ``viseme`` model as
the generator, and an mp4 file where the runner's ``AVSynchronizer`` would publish to the room.

    pip install "lipsynckit[livekit]"
    python examples/livekit_avatar.py --out avatar_livekit.mp4

In an avatar worker connected to a room, hand the same generator to
``AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room), video_gen=generator,
options=AvatarOptions(video_width=w, video_height=h, video_fps=25, audio_sample_rate=16000,
audio_channels=1))`` and open the session with ``realtime=True``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, QueueAudioOutput

import lipsynckit as lsk
from lipsynckit.integrations.livekit import LipSyncVideoGenerator
from lipsynckit.media.sink import VideoSink
from lipsynckit.types import AudioClip

HERE = Path(__file__).resolve().parent
log = logging.getLogger("livekit_avatar")


async def run(image: Path, audio: Path, out: Path, fps: float, seconds: float | None, realtime: bool) -> None:
    x, sr = sf.read(str(audio), dtype="int16")
    if seconds:
        x = x[: int(seconds * sr)]
    session = lsk.stream(image, model="viseme", fps=fps, realtime=realtime)
    generator = LipSyncVideoGenerator(session)
    agent_audio = QueueAudioOutput(sample_rate=sr)  # the agent's audio output
    images: list[np.ndarray] = []
    pcm: list[np.ndarray] = []
    position = [0.0]

    async def read_audio() -> None:  # AvatarRunner._read_audio
        async for frame in agent_audio:
            await generator.push_audio(frame)

    async def forward_video() -> None:  # AvatarRunner._forward_video, writing instead of publishing
        last: np.ndarray | None = None
        async for frame in generator:
            if isinstance(frame, rtc.VideoFrame):
                last = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
            elif isinstance(frame, rtc.AudioFrame):  # the audio that plays with the image before it
                assert last is not None
                images.append(last)
                pcm.append(np.frombuffer(frame.data, np.int16).reshape(-1, frame.num_channels))
                position[0] += frame.duration
            elif isinstance(frame, AudioSegmentEnd):
                agent_audio.notify_playback_finished(playback_position=position[0], interrupted=False)
                await generator.aclose()  # one reply in this example: done

    reader = asyncio.create_task(read_audio())
    forwarder = asyncio.create_task(forward_video())
    n = sr // 50
    for i in range(0, len(x), n):  # the agent speaks: 20 ms frames, then the end of the reply
        chunk = x[i : i + n]
        await agent_audio.capture_frame(rtc.AudioFrame(chunk.tobytes(), sr, 1, len(chunk)))
    agent_audio.flush()
    await forwarder
    reader.cancel()

    h, w = images[0].shape[:2]
    samples = np.concatenate(pcm).T.astype(np.float32) / 32768.0
    with VideoSink(out, fps=fps, size=(w, h), audio=AudioClip(torch.from_numpy(samples), sr)) as sink:
        for im in images:
            sink.write(im)
    log.info(
        "wrote %d frames and %.2f s of audio (played %.2f s) to %s",
        len(images),
        samples.shape[1] / sr,
        position[0],
        out,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", type=Path, default=HERE / "astronaut.jpg", help="template photo or video")
    p.add_argument("--audio", type=Path, default=HERE / "speech.wav", help="speech standing in for TTS")
    p.add_argument("--out", type=Path, default=Path("avatar_livekit.mp4"))
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seconds", type=float, default=None, help="use only the first N seconds of --audio")
    p.add_argument("--realtime", action="store_true", help="pace frames at fps, as in a room")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(run(args.image, args.audio, args.out, args.fps, args.seconds, args.realtime))


if __name__ == "__main__":
    main()
