"""Issue 12: the streaming session with the built-in viseme model on a real photo and real speech.

Time is a ManualClock: the frame iterator's sleeps set it, pushes are stamped with it, so every
assertion is about what the session decided, never about thread timing.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import chunks, padded, speech

import lipsynckit as lsk
from lipsynckit.errors import AudioError
from lipsynckit.streaming import ManualClock, StreamClosedError, StreamSession

FPS = 25.0
SPF = 640  # samples per frame at 16 kHz


def _open(viseme, astronaut_png: Path, avatar_dir: Path, **kw) -> StreamSession:  # noqa: ANN001
    return lsk.stream(astronaut_png, model=viseme, avatar_dir=avatar_dir, detector="opencv", **kw)


def test_offline_frames_carry_the_pushed_audio_sample_for_sample(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    a, sr = speech(speech_wavs[0], 2.3)
    b, _ = speech(speech_wavs[1], 1.07)
    with _open(viseme, astronaut_png, avatar_dir, realtime=False) as s:
        for c in chunks(a, sr, seed=1):
            s.push_audio(c, sr)
        s.flush()
        for c in chunks(b, sr, seed=2):
            s.push_audio((c * 32767).astype(np.float32) / 32767, sr)  # float32, any chunk size
        frames = list(s.frames())  # ends when all is played; unflushed audio is flushed
    expected = np.concatenate([padded(a, sr), padded(b, sr)])
    assert len(frames) == int(np.ceil(len(a) / SPF)) + int(np.ceil(len(b) / SPF))
    assert all(f.speaking for f in frames)
    got = np.concatenate([f.audio for f in frames])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[: len(a)], a)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.utterance for f in frames].count(0) == int(np.ceil(len(a) / SPF))
    assert sum(f.end_of_speech for f in frames) == 2
    assert frames[0].image.shape == (512, 512, 3) and frames[0].image.dtype == np.uint8
    # the mouth moves with the speech: voiced frames differ from the template
    template = lsk.read_video(str(astronaut_png))[0]
    moved = [np.abs(f.image.astype(int) - template.astype(int)).max() for f in frames]
    assert max(moved) > 20 and min(moved) == 0  # pauses keep the mouth at rest


def test_int16_and_other_rates_keep_their_samples(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,  # noqa: ANN001
) -> None:
    x, sr = speech(speech_wav, 1.0)
    import torch

    from lipsynckit.media.resample import resample

    x24 = (resample(torch.from_numpy(x)[None], sr, 24000)[0].numpy() * 20000).astype(np.int16)
    with _open(viseme, astronaut_png, avatar_dir, realtime=False) as s:
        for c in chunks(x24, 24000, seed=3):
            s.push_audio(c.tobytes(), 24000)  # int16 bytes, as a TTS engine sends them
        s.flush()
        frames = list(s.frames())
        with pytest.raises(AudioError, match="one format per session"):
            s.push_audio(x[:100], sr)
    got = np.concatenate([f.audio for f in frames])
    assert got.dtype == np.int16 and len(frames[0].audio) == 960
    np.testing.assert_array_equal(got[: len(x24)], x24)
    assert not got[len(x24) :].any()


def test_realtime_idle_frames_flow_without_audio(viseme, astronaut_png: Path, avatar_dir: Path) -> None:  # noqa: ANN001
    clock = ManualClock(100.0)
    template = lsk.read_video(str(astronaut_png))[0]
    with _open(viseme, astronaut_png, avatar_dir, clock=clock) as s:
        it = s.frames()
        frames = [next(it) for _ in range(30)]
    assert [f.index for f in frames] == list(range(30))
    assert [f.pts for f in frames] == pytest.approx([k / FPS for k in range(30)])
    assert not any(f.speaking for f in frames)
    assert all(f.audio.shape == (SPF,) and not f.audio.any() for f in frames)
    assert all(np.array_equal(f.image, template) for f in frames)
    assert clock.now() == pytest.approx(100.0 + 29 / FPS)


def _realtime_run(s: StreamSession, script: list[tuple[str, object]]):  # noqa: ANN202
    """Play a script against the frame clock: ('push', chunk) pushes a chunk and then takes the frames
    due while it plays (real-time pace); ('idle', n) takes n frames; ('flush'|'interrupt', None)."""
    it = s.frames()
    out: list = []
    played: list[float] = []
    due: float | None = None  # clock time of the next push, at real-time pace
    for op, arg in script:
        if op == "push":
            due = s.clock.now() if due is None else due
            while s.clock.now() < due - 1e-9:  # the frames that play while this chunk arrives
                out.append(next(it))
            s.push_audio(arg, 16000)
            due += len(arg) / 16000  # type: ignore[arg-type]
        elif op == "idle":
            out += [next(it) for _ in range(int(arg))]  # type: ignore[call-overload]
            due = None
        elif op == "flush":
            s.flush()
        elif op == "interrupt":
            played.append(s.interrupt())
    return out, played


def test_realtime_speech_idle_flush_and_interrupt_keep_the_audio_invariant(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    a, sr = speech(speech_wavs[0], 1.5)
    b, _ = speech(speech_wavs[2], 2.0)
    clock = ManualClock()
    s = _open(viseme, astronaut_png, avatar_dir, clock=clock)
    try:
        script: list[tuple[str, object]] = [("idle", 5)]
        script += [("push", c) for c in chunks(a, sr, seed=4)]
        script += [("flush", None), ("idle", 20)]
        b_chunks = list(chunks(b, sr, seed=5))
        script += [("push", c) for c in b_chunks[: len(b_chunks) // 2]]
        script += [("interrupt", None), ("idle", 10)]
        frames, played = _realtime_run(s, script)
    finally:
        s.close()
    idx = [f.index for f in frames]
    assert idx == list(range(len(frames)))  # a frame every tick, speaking or not
    first = next(i for i, f in enumerate(frames) if f.speaking)
    assert first >= 5
    # utterance 0 plays whole and in order, then idle; utterance 1 is cut by the interrupt
    u0 = [f for f in frames if f.utterance == 0]
    u1 = [f for f in frames if f.utterance == 1]
    assert len(u0) == int(np.ceil(len(a) / SPF)) and u0[-1].end_of_speech
    assert [f.index for f in u0] == list(range(u0[0].index, u0[0].index + len(u0)))  # no underrun
    np.testing.assert_array_equal(np.concatenate([f.audio for f in u0]), padded(a, sr))
    assert 0 < len(u1) < np.ceil(len(b) / SPF)
    heard = np.concatenate([f.audio for f in u1])
    np.testing.assert_array_equal(heard, b[: len(heard)])
    assert played == [pytest.approx(len(heard) / sr)]
    assert all(not f.audio.any() for f in frames if not f.speaking)
    assert sum(len(f.audio) for f in frames) == SPF * len(frames)
    # latency is bounded by the look-ahead plus the render budget (frames, by the session's clock)
    assert s.stats.latency_summary()["max_ms"] < 600


def test_interrupt_returns_to_idle_within_two_frames(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,  # noqa: ANN001
) -> None:
    x, sr = speech(speech_wav, 3.0)
    clock = ManualClock()
    with _open(viseme, astronaut_png, avatar_dir, clock=clock) as s:
        it = s.frames()
        s.push_audio(x, sr)  # a TTS engine that is faster than real time
        frames = [next(it) for _ in range(20)]
        assert frames[-1].speaking
        played = s.interrupt()
        after = [next(it) for _ in range(4)]
    assert not after[1].speaking and not after[2].speaking and not after[3].speaking
    spoken = sum(len(f.audio) for f in frames + after if f.speaking)
    assert played == pytest.approx(spoken / sr, abs=1 / FPS + 1e-9)
    assert s.stats.interrupts == 1


def test_auto_flush_plays_the_tail_when_audio_stops(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,  # noqa: ANN001
) -> None:
    x, sr = speech(speech_wav, 0.93)
    clock = ManualClock()
    with _open(viseme, astronaut_png, avatar_dir, clock=clock, auto_flush_s=0.3) as s:
        it = s.frames()
        s.push_audio(x, sr)  # no flush: the look-ahead of the last frames never comes
        frames = [next(it) for _ in range(50)]
    speaking = [f for f in frames if f.speaking]
    assert len(speaking) == int(np.ceil(len(x) / SPF)) and speaking[-1].end_of_speech
    assert s.stats.auto_flushes == 1


def test_async_iteration_and_closed_session(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,  # noqa: ANN001
) -> None:
    x, sr = speech(speech_wav, 0.6)
    s = _open(viseme, astronaut_png, avatar_dir, realtime=False)
    s.push_audio(x, sr)
    s.flush()

    async def collect() -> list:
        return [f async for f in s]

    frames = asyncio.run(collect())
    assert len(frames) == int(np.ceil(len(x) / SPF))
    s.close()
    with pytest.raises(StreamClosedError):
        s.push_audio(x, sr)


def test_prepared_avatar_folder_is_accepted_directly(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    _open(viseme, astronaut_png, avatar_dir, realtime=False).close()  # prepared (or already was)
    import lipsynckit.pipeline as pipeline
    import lipsynckit.streaming.avatar as stream_avatar

    def no_face_pass(*a: object, **k: object) -> None:
        raise AssertionError("the face pass ran again")

    monkeypatch.setattr(pipeline, "track_source", no_face_pass)
    monkeypatch.setattr(stream_avatar, "_LOADED", {})  # not from this process's memory either
    x, sr = speech(speech_wav, 0.5)
    with lsk.stream(avatar_dir, model=viseme, realtime=False, detector="opencv") as s:
        s.push_audio(x, sr)
        assert len(list(s.frames())) == 13
    with pytest.raises(lsk.LipSyncError, match="not a prepared avatar"):
        lsk.stream(avatar_dir.parent, model=viseme)


def test_sessions_share_the_model_scheduler_and_an_unread_one_stalls_nobody(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wavs: list[Path],  # noqa: ANN001
) -> None:
    from lipsynckit.pipeline import _SHARED

    x, sr = speech(speech_wavs[0], 1.5)
    y, _ = speech(speech_wavs[1], 1.5)
    with _open(viseme, astronaut_png, avatar_dir, realtime=False) as ref:
        ref.push_audio(y, sr)
        alone = [f.image for f in ref.frames()]
    stalled = _open(viseme, astronaut_png, avatar_dir, realtime=False)
    busy = _open(viseme, astronaut_png, avatar_dir, realtime=False)
    try:
        assert len([k for k in _SHARED if k[0] == id(viseme)]) == 1  # one scheduler for both
        stalled.push_audio(x, sr)  # rendered, never read
        stalled.flush()
        result: list = []
        done = threading.Event()

        def consume() -> None:
            busy.push_audio(y, sr)
            result.extend(f.image for f in busy.frames())
            done.set()

        t = threading.Thread(target=consume)
        t.start()
        assert done.wait(120)
        t.join()
    finally:
        stalled.close()
        busy.close()
    assert len(result) == len(alone)
    assert all(np.array_equal(p, q) for p, q in zip(result, alone, strict=True))


def test_realtime_refuses_audio_queued_beyond_its_bound(
    viseme,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,  # noqa: ANN001
) -> None:
    x, sr = speech(speech_wav, 1.5)
    with _open(viseme, astronaut_png, avatar_dir, clock=ManualClock(), max_queued_s=1.0) as s:
        s.push_audio(x[: sr // 2], sr)
        with pytest.raises(AudioError, match="more than 1.0 s of audio queued"):
            s.push_audio(x[sr // 2 :], sr)
    with _open(viseme, astronaut_png, avatar_dir, realtime=False, max_queued_s=1.0) as s:
        s.push_audio(x, sr)  # offline sessions take any amount
        assert len(list(s.frames())) == 38
