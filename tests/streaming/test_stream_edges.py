"""Issue 19: the streaming API's edges, each one line or one clear behaviour (ManualClock; a model whose
generate waits on an event stands for frames backed up behind a slow renderer)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_helpers import speech

import lipsynckit as lsk
from lipsynckit.errors import AudioError, LipSyncError
from lipsynckit.streaming import ManualClock, StreamSession

SR = 16000


def _open(model: Any, astronaut_png: Path, avatar_dir: Path, **kw: Any) -> StreamSession:
    return lsk.stream(astronaut_png, model=model, avatar_dir=avatar_dir, detector="opencv", **kw)


def _one_line(exc: BaseException) -> str:
    head = str(exc).splitlines()[0]
    assert isinstance(exc, LipSyncError) and "Traceback" not in str(exc)
    return head


def test_bad_pushes_are_refused_in_one_line(
    gated_viseme: Any, astronaut_png: Path, avatar_dir: Path, speech_wav: Path
) -> None:
    x, _ = speech(speech_wav, 0.5)
    with _open(gated_viseme, astronaut_png, avatar_dir, clock=ManualClock()) as s:
        stereo = np.stack([x, x], axis=1)
        with pytest.raises(AudioError) as planar:
            s.push_audio(stereo.T.copy(), SR)  # (2, 8000): planar, not 8000 channels
        assert "planar (2 channels, 8000 samples)" in _one_line(planar.value)
        assert "chunk.T" in str(planar.value)
        for rate in (1, 10_000_000):
            with pytest.raises(AudioError, match=f"sample_rate {rate} Hz is outside 8000-192000 Hz"):
                s.push_audio(x, rate)
        with pytest.raises(AudioError, match="peaks at 5, far beyond") as loud:
            s.push_audio(x * 0 + np.float32(5.0), SR)
        _one_line(loud.value)
        with pytest.raises(AudioError, match="peaks at 3.28e[+]04"):
            s.push_audio(x * np.float32(32767 / np.abs(x).max()), SR)  # int16 values as float
        assert s.stats.pushed_samples == 0  # nothing refused got in
        over = np.clip(x * 3, -1.5, 1.5).astype(np.float32)  # a TTS overshoot: taken, played as pushed
        assert s.push_audio(over, SR) == 0
        with pytest.raises(AudioError, match="one format per session"):
            s.push_audio(stereo, SR)
    with _open(gated_viseme, astronaut_png, avatar_dir, clock=ManualClock()) as s:
        assert s.push_audio(stereo, SR) == 0  # interleaved (samples, channels) is the format


def test_bad_options_are_one_lipsyncerror_line_before_the_model_loads(astronaut_png: Path) -> None:
    for kw, what in [
        ({"fps": 0}, "fps: Input should be greater than 0"),
        ({"bogus": 1}, "bogus: Extra inputs"),
    ]:
        with pytest.raises(LipSyncError) as err:
            lsk.stream(astronaut_png, model="wav2lip", weights="/nonexistent/wav2lip.pth", **kw)
        assert what in _one_line(err.value)
        assert "pydantic" not in str(err.value) and "validation error" not in str(err.value)


def test_interrupt_returns_the_current_utterances_seconds_when_frames_are_backed_up(
    gated_viseme: Any, astronaut_png: Path, avatar_dir: Path, speech_wavs: list[Path]
) -> None:
    """The issue: 5.96 s came back (the utterance still playing) for an utterance with 1.48 s pushed."""
    a, _ = speech(speech_wavs[0], 5.96)
    b, _ = speech(speech_wavs[1], 1.48)
    clock = ManualClock()
    with _open(gated_viseme, astronaut_png, avatar_dir, clock=clock) as s:
        it = s.frames()
        s.push_audio(a, SR)  # a fast TTS: the whole first answer at once
        s.flush()
        frames = [next(it) for _ in range(40)]
        assert frames[-1].speaking and frames[-1].utterance == 0
        s.push_audio(b, SR)  # the next answer is queued behind it
        assert s.interrupt() == 0.0  # the current answer (1) had not started playing
        # an utterance cut while it plays reports what played of it
        s.push_audio(b, SR)
        more = [next(it) for _ in range(30)]
        played_frames = [f for f in more if f.speaking]
        assert played_frames and all(f.utterance == 2 for f in played_frames)
        played = s.interrupt()
    heard = sum(len(f.audio) for f in played_frames)
    assert played == pytest.approx(heard / SR)
    assert 0 < played < 1.48


@pytest.mark.timeout(120)
def test_close_returns_at_once_with_frames_backed_up_and_frees_a_waiting_reader(
    gated_viseme: Any, astronaut_png: Path, avatar_dir: Path, speech_wav: Path
) -> None:
    from lipsynckit.pipeline import _SHARED

    x, _ = speech(speech_wav, 3.0)
    s = _open(gated_viseme, astronaut_png, avatar_dir, clock=ManualClock())
    gated_viseme.gate.clear()  # the renderer is stuck: every frame is backed up
    s.push_audio(x, SR)
    s.flush()
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(s.frames()))
    reader.start()  # reaches the first speech frame and waits for its render
    s.close()  # returns while the model is still blocked (it used to join the renderer)
    reader.join(timeout=60)
    assert not reader.is_alive()  # the reader's iteration ended
    assert not any(f.speaking for f in got)
    gated_viseme.gate.set()  # the frames already with the scheduler come back, then it is released
    for t in [t for t in threading.enumerate() if t.name == "lsk-stream-close"]:
        t.join(timeout=60)
    assert not any(k[0] == id(gated_viseme) for k in _SHARED)


def test_a_session_dropped_without_close_stops_rendering(
    gated_viseme: Any, astronaut_png: Path, avatar_dir: Path, speech_wav: Path
) -> None:
    from lipsynckit.pipeline import _SHARED

    x, _ = speech(speech_wav, 2.0)
    s = _open(gated_viseme, astronaut_png, avatar_dir, clock=ManualClock())
    s.push_audio(x, SR)
    renderer = s._renderer
    del s
    gc.collect()
    assert renderer._stop  # the renderer's threads never held the session
    for t in [t for t in threading.enumerate() if t.name == "lsk-stream-close"]:
        t.join(timeout=60)
    assert not renderer._submit_t.is_alive() and not renderer._collect_t.is_alive()
    assert not any(k[0] == id(gated_viseme) for k in _SHARED)


def test_a_cancelled_job_is_not_generated(astronaut_png: Path) -> None:
    """What a closed session relies on: frames still queued in the shared scheduler are withdrawn."""
    import cv2
    import torch

    from lipsynckit.errors import SchedulerClosedError
    from lipsynckit.scheduler import BatchScheduler, SchedulerOptions
    from lipsynckit.types import PreparedFace, WorkItem

    crop = cv2.resize(cv2.imread(str(astronaut_png))[100:260, 180:340], (96, 96))
    entered, gate, generated = threading.Event(), threading.Event(), []

    def generate(batch: Any) -> list:
        entered.set()
        gate.wait()
        generated.extend(it.index for it in batch.items)
        return [it.face.crop for it in batch.items]

    with BatchScheduler(generate, SchedulerOptions(max_batch=1, max_wait_ms=0)) as sched:
        job = sched.open_job()
        for i in range(5):
            face = PreparedFace(box=(0, 0, 96, 96), crop=crop)
            job.submit(WorkItem(job_id=job.id, index=i, face=face, audio=torch.zeros(1, 80, 16)))
        assert entered.wait(60)  # frame 0 is in generate; 1-4 wait in the queue
        assert job.cancel() == 4
        gate.set()
        got = []
        with pytest.raises(SchedulerClosedError, match="cancelled"):
            for index, _out in job.results():
                got.append(index)
    assert generated == [0]  # the frame in flight ran; the four withdrawn never reached the model
    assert got == []  # a cancelled job reports its error from then on (the frame in flight included)
