"""Issue 19: the LiveKit Agents ``VideoGenerator`` with LiveKit's real ``rtc`` frames and real speech.

No server: the first test drives the generator directly on a ManualClock (each pull is one tick, so
every assertion is about what the session decided); the second runs AvatarRunner's two loops over
LiveKit's in-process ``QueueAudioOutput`` on the real clock, waiting on events.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from avatar_helpers import padded, speech_int16, tts_chunks

pytest.importorskip("livekit.agents")

from livekit import rtc  # noqa: E402
from livekit.agents.voice.avatar import AudioSegmentEnd, QueueAudioOutput  # noqa: E402

import lipsynckit as lsk  # noqa: E402
from lipsynckit.integrations.livekit import LipSyncVideoGenerator  # noqa: E402
from lipsynckit.streaming import ManualClock  # noqa: E402

FPS = 25.0
SPF = 640  # samples per frame at 16 kHz


def _generator(viseme, astronaut_png: Path, avatar_dir: Path, **kw) -> LipSyncVideoGenerator:  # noqa: ANN001
    fmt = kw.pop("video_format", "rgb24")
    s = lsk.stream(astronaut_png, model=viseme, fps=FPS, avatar_dir=avatar_dir, detector="opencv", **kw)
    return LipSyncVideoGenerator(s, video_format=fmt)


def _frames(x: np.ndarray, sr: int) -> list[rtc.AudioFrame]:
    return [rtc.AudioFrame(c.tobytes(), sr, 1, len(c)) for c in tts_chunks(x, sr)]


def _pcm(frames: list[object]) -> np.ndarray:
    return np.concatenate(
        [np.frombuffer(f.data, np.int16) for f in frames if isinstance(f, rtc.AudioFrame)]
        or [np.zeros(0, np.int16)]
    )


def test_generator_yields_rtc_frames_sample_exact_and_clears_on_interruption(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    a, sr = speech_int16(speech_wavs[0], 1.5)
    b, _ = speech_int16(speech_wavs[1], 3.0)
    c, _ = speech_int16(speech_wavs[2], 0.9)
    template = lsk.read_video(str(astronaut_png))[0]
    gen = _generator(viseme, astronaut_png, avatar_dir, clock=ManualClock(), realtime=True)
    assert gen.video_size == (512, 512)

    async def scenario() -> dict[str, list[object]]:
        it = gen.__aiter__()

        async def until(pred) -> list[object]:  # noqa: ANN001
            out: list[object] = []
            while not pred(out):
                out.append(await it.__anext__())
            return out

        got: dict[str, list[object]] = {}
        got["idle"] = await until(lambda o: len(o) == 3)
        for f in _frames(a, sr):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        got["a"] = await until(lambda o: o and isinstance(o[-1], AudioSegmentEnd))
        for f in _frames(b, sr):
            await gen.push_audio(f)
        got["b"] = await until(lambda o: sum(isinstance(f, rtc.AudioFrame) for f in o) == 5)
        gen.clear_buffer()  # the runner's clear_buffer on barge-in
        got["cleared"] = await until(lambda o: len(o) == 4)
        for f in _frames(c, sr):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        got["c"] = await until(lambda o: o and isinstance(o[-1], AudioSegmentEnd))
        await gen.aclose()
        with pytest.raises(StopAsyncIteration):
            while True:  # at most the frame being made when it closed, then the end
                await it.__anext__()
        return got

    got = asyncio.run(scenario())
    # idle: the template, video only
    assert all(isinstance(f, rtc.VideoFrame) for f in got["idle"])
    v = got["idle"][0]
    assert (v.width, v.height, v.type) == (512, 512, rtc.VideoBufferType.RGB24)
    np.testing.assert_array_equal(np.frombuffer(v.data, np.uint8).reshape(512, 512, 3), template)
    # speech: each audio frame follows its video frame and holds one frame of the pushed samples
    for seg in (got["a"], got["c"]):
        for i, f in enumerate(seg):
            if isinstance(f, rtc.AudioFrame):
                assert isinstance(seg[i - 1], rtc.VideoFrame)
                assert (f.sample_rate, f.num_channels, f.samples_per_channel) == (sr, 1, SPF)
        assert sum(isinstance(f, AudioSegmentEnd) for f in seg) == 1
    np.testing.assert_array_equal(_pcm(got["a"]), padded(a, sr))
    np.testing.assert_array_equal(_pcm(got["c"]), padded(c, sr))
    assert sum(isinstance(f, rtc.AudioFrame) for f in got["a"]) == int(np.ceil(len(a) / SPF))
    # the mouth moves while speaking
    moved = [
        np.abs(np.frombuffer(f.data, np.uint8).reshape(512, 512, 3).astype(int) - template).max()
        for f in got["a"]
        if isinstance(f, rtc.VideoFrame)
    ]
    assert max(moved) > 20
    # interrupted: what played is B's beginning; after clear_buffer, video only (idle), no segment end
    np.testing.assert_array_equal(_pcm(got["b"]), b[: 5 * SPF])
    assert all(isinstance(f, rtc.VideoFrame) for f in got["cleared"])
    idle = [np.frombuffer(f.data, np.uint8).reshape(512, 512, 3) for f in got["cleared"][1:]]
    assert all(np.abs(im.astype(int) - template).max() == 0 for im in idle[-1:])


def test_a_pause_inside_a_segment_ends_it_once(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    """A TTS pause longer than auto_flush_s splits the session's utterance; LiveKit's segment still ends
    once, after its last audio."""
    a, sr = speech_int16(speech_wavs[0], 1.0)
    b, _ = speech_int16(speech_wavs[1], 0.7)
    gen = _generator(viseme, astronaut_png, avatar_dir, clock=ManualClock(), realtime=True)

    async def scenario() -> list[object]:
        it = gen.__aiter__()
        out: list[object] = []
        for f in _frames(a, sr):
            await gen.push_audio(f)
        n_a = int(np.ceil(len(a) / SPF))
        while sum(isinstance(f, rtc.AudioFrame) for f in out) < n_a:  # plays out only once auto-flushed
            out.append(await it.__anext__())
        for f in _frames(b, sr):  # the same segment goes on after the pause
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        while not out or not isinstance(out[-1], AudioSegmentEnd):
            out.append(await it.__anext__())
        await gen.aclose()
        return out

    out = asyncio.run(scenario())
    assert sum(isinstance(f, AudioSegmentEnd) for f in out) == 1
    np.testing.assert_array_equal(_pcm(out), np.concatenate([padded(a, sr), padded(b, sr)]))
    assert gen.session.stats.auto_flushes == 1


def test_avatar_runner_loop_over_queue_audio_output(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    """AvatarRunner's ``_read_audio`` and ``_forward_video`` loops, with the AVSynchronizer replaced by a
    list: playback is reported finished at the utterance's length, and ``clear_buffer`` interrupts."""
    a, sr = speech_int16(speech_wavs[3], 1.2)
    b, _ = speech_int16(speech_wavs[4], 4.0)
    gen = _generator(viseme, astronaut_png, avatar_dir, realtime=True, video_format="rgba")

    async def scenario() -> tuple[list[object], list[dict]]:
        audio_out = QueueAudioOutput(sample_rate=sr)
        finished: list[dict] = []
        done = asyncio.Event()
        out: list[object] = []
        speaking = asyncio.Event()
        position = [0.0]

        audio_out.on("playback_finished", lambda ev: (finished.append(vars(ev)), done.set()))

        def on_clear() -> None:
            gen.clear_buffer()
            audio_out.notify_playback_finished(playback_position=position[0], interrupted=True)
            position[0] = 0.0

        audio_out.on("clear_buffer", on_clear)

        async def read_audio() -> None:
            async for f in audio_out:
                await gen.push_audio(f)

        async def forward_video() -> None:
            async for f in gen:
                if isinstance(f, AudioSegmentEnd):
                    audio_out.notify_playback_finished(playback_position=position[0], interrupted=False)
                    position[0] = 0.0
                    out.append(f)
                elif isinstance(f, rtc.AudioFrame):
                    position[0] += f.duration
                    out.append(f)
                    if position[0] >= 0.2:
                        speaking.set()
                elif any(isinstance(x, rtc.AudioFrame) for x in out[-1:]) or not out:
                    out.append(f)  # keep the frames around speech, not the whole idle stream

        tasks = [asyncio.create_task(read_audio()), asyncio.create_task(forward_video())]
        for f in _frames(a, sr):
            await audio_out.capture_frame(f)
        audio_out.flush()  # AudioSegmentEnd
        await asyncio.wait_for(done.wait(), 60)
        done.clear()
        speaking.clear()
        for f in _frames(b, sr):
            await audio_out.capture_frame(f)
        await asyncio.wait_for(speaking.wait(), 60)
        audio_out.clear_buffer()
        await asyncio.wait_for(done.wait(), 60)
        await gen.aclose()
        await asyncio.wait_for(tasks[1], 60)  # the generator ends with its session
        tasks[0].cancel()
        return out, finished

    out, finished = asyncio.run(scenario())
    first = padded(a, sr)
    assert finished[0]["interrupted"] is False
    assert finished[0]["playback_position"] == pytest.approx(len(first) / sr)
    assert finished[1]["interrupted"] is True
    assert 0.2 <= finished[1]["playback_position"] < len(b) / sr
    heard = _pcm(out)
    np.testing.assert_array_equal(heard[: len(first)], first)
    rest = heard[len(first) :]
    np.testing.assert_array_equal(rest, b[: len(rest)])  # the interrupted reply's beginning, no more
    assert len(rest) / sr == pytest.approx(finished[1]["playback_position"], abs=1 / FPS + 1e-9)
    assert sum(isinstance(f, AudioSegmentEnd) for f in out) == 1
    v = next(f for f in out if isinstance(f, rtc.VideoFrame))
    assert v.type == rtc.VideoBufferType.RGBA and len(v.data) == 512 * 512 * 4


class _Published:
    async def wait_for_subscription(self) -> None:
        return None


class _LocalParticipant:
    def __init__(self) -> None:
        self.tracks: list[object] = []

    async def publish_track(self, track: object, options: object) -> _Published:
        self.tracks.append(track)
        return _Published()


class _Room(rtc.EventEmitter):
    """Stands in for a connected ``rtc.Room``: only publishing a track is faked, not the media path."""

    def __init__(self) -> None:
        super().__init__()
        self.local_participant = _LocalParticipant()

    def isconnected(self) -> bool:
        return True


class _Counting(LipSyncVideoGenerator):
    """The generator, with an event once ``n`` audio frames have gone to the runner."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.audio_frames = 0
        self.reached: asyncio.Event | None = None
        self.n = 0

    async def __aiter__(self):  # noqa: ANN204
        async for f in super().__aiter__():
            if isinstance(f, rtc.AudioFrame):
                self.audio_frames += 1
                if self.reached is not None and self.audio_frames >= self.n:
                    self.reached.set()
            yield f


def test_real_avatar_runner_reports_playback_and_interruption(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    """LiveKit's own AvatarRunner, AVSynchronizer, AudioSource and VideoSource, with a room that only
    pretends to publish: the agent's QueueAudioOutput hears when playback finished, and where."""
    from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner

    a, sr = speech_int16(speech_wavs[2], 1.3)
    b, _ = speech_int16(speech_wavs[3], 4.0)
    s = lsk.stream(astronaut_png, model=viseme, fps=FPS, avatar_dir=avatar_dir, detector="opencv")
    gen = _Counting(s)

    async def scenario() -> tuple[list[object], int, _Room]:
        room = _Room()
        audio_out = QueueAudioOutput(sample_rate=sr)
        finished: list[object] = []
        done = asyncio.Event()
        audio_out.on("playback_finished", lambda ev: (finished.append(ev), done.set()))
        w, h = gen.video_size
        opts = AvatarOptions(
            video_width=w, video_height=h, video_fps=FPS, audio_sample_rate=sr, audio_channels=1
        )
        runner = AvatarRunner(room, audio_recv=audio_out, video_gen=gen, options=opts)
        await runner.start()
        for f in _frames(a, sr):
            await audio_out.capture_frame(f)
        audio_out.flush()
        await asyncio.wait_for(done.wait(), 120)
        done.clear()
        gen.reached, gen.n = asyncio.Event(), gen.audio_frames + 10
        for f in _frames(b, sr):
            await audio_out.capture_frame(f)
        await asyncio.wait_for(gen.reached.wait(), 120)
        audio_out.clear_buffer()  # barge-in: the runner clears the generator and reports the position
        await asyncio.wait_for(done.wait(), 120)
        heard_b = gen.audio_frames - int(np.ceil(len(a) / SPF))
        await gen.aclose()
        await runner.aclose()
        return finished, heard_b, room

    finished, heard_b, room = asyncio.run(scenario())
    assert len(room.local_participant.tracks) == 2  # audio and video tracks were published
    assert finished[0].interrupted is False
    assert finished[0].playback_position == pytest.approx(len(padded(a, sr)) / sr)
    assert finished[1].interrupted is True
    # the position the runner reports is the audio it pushed of the cut reply: whole frames of B (the
    # last one yielded may reach the synchronizer after the runner reported)
    frames_reported = finished[1].playback_position * sr / SPF
    assert frames_reported == pytest.approx(round(frames_reported), abs=1e-6)
    assert heard_b - 1 <= round(frames_reported) <= heard_b
    assert 9 * SPF / sr - 1e-9 <= finished[1].playback_position < len(b) / sr  # 10 yielded, 1 in flight
