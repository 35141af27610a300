"""Issue 19: audio is the master clock and latency is bounded, whatever the renderer or consumer does.

Time is a ManualClock and the slow renderer is a model whose ``generate`` blocks on an event the test
holds: a frame stuck behind it cannot be ready, so which frames *must* drop is decided by the test,
never by thread timing. Every assertion holds for any interleaving of the session's threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_helpers import chunks, padded, speech

import lipsynckit as lsk
from lipsynckit.streaming import ManualClock, StreamSession

FPS = 25.0
SR = 16000
BUDGET_MS = 400.0


def _open(model: Any, astronaut_png: Path, avatar_dir: Path, clock: ManualClock) -> StreamSession:
    return lsk.stream(
        astronaut_png,
        model=model,
        avatar_dir=avatar_dir,
        detector="opencv",
        clock=clock,
        max_latency_ms=BUDGET_MS,
        crossfade_frames=0,
    )


class _Live:
    """Pushes chunks at real-time pace by the manual clock and takes the frames due meanwhile."""

    def __init__(self, s: StreamSession, clock: ManualClock) -> None:
        self.s, self.clock, self.it = s, clock, s.frames()
        self.out: list = []
        self.due = clock.now()

    def push(self, c: np.ndarray, read: bool = True) -> None:
        if read:
            while self.clock.now() < self.due - 1e-9:
                self.out.append(next(self.it))
        else:  # nobody reads frames: time passes by the pushes alone
            self.clock.sleep_until(self.due)
        self.s.push_audio(c, SR)
        self.due += len(c) / SR

    def take_until(self, t: float) -> None:
        """Frames whose ticks are at or before ``t`` (no sleeping past it)."""
        while self.s._t0 + self.s._next_emit / FPS <= t + 1e-9:
            self.out.append(next(self.it))


def _check_audio_and_ticks(frames: list, x: np.ndarray) -> None:
    assert [f.index for f in frames] == list(range(len(frames)))  # a frame every tick, none skipped
    spoken = [f for f in frames if f.speaking]
    assert len(spoken) == int(np.ceil(len(x) / (SR / FPS)))  # every speech frame played, dropped or not
    np.testing.assert_array_equal(np.concatenate([f.audio for f in spoken]), padded(x, SR))
    assert all(not f.audio.any() for f in frames if not f.speaking)


def test_a_stalled_renderer_costs_pictures_not_lasting_latency(
    gated_viseme: Any,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,
) -> None:
    x, _ = speech(speech_wav, 5.0)
    cs = list(chunks(x, SR, seed=7))
    clock = ManualClock()
    s = _open(gated_viseme, astronaut_png, avatar_dir, clock)
    try:
        live = _Live(s, clock)
        n1 = len(cs) // 4
        for c in cs[:n1]:  # ~1.2 s at real-time pace
            live.push(c)
        gated_viseme.gate.clear()  # the model stalls: nothing more can be rendered
        stall_start = clock.now()
        k = n1
        while live.due < stall_start + 1.0:  # 1 s of audio keeps arriving; nobody reads, nothing renders
            live.push(cs[k], read=False)
            k += 1
        # frames whose deadline has passed play now with their audio, whatever the renderer does
        live.take_until(clock.now() - BUDGET_MS / 1000.0)
        dropped_in_stall = s.stats.dropped_frames
        gated_viseme.gate.set()
        for c in cs[k:]:
            live.push(c)
        s.flush()
        live.out += [next(live.it) for _ in range(30)]
    finally:
        s.close()
    _check_audio_and_ticks(live.out, x)
    assert dropped_in_stall >= 5  # the stuck frames were not waited for
    assert s.stats.dropped_frames >= dropped_in_stall
    assert s.stats.repeated_frames <= s.stats.dropped_frames
    lat = np.asarray(s.stats.latencies) * 1000.0
    assert len(lat) == s.stats.speech_frames
    assert lat.max() > 1000.0  # the stall did cost latency ...
    assert (lat > BUDGET_MS).sum() <= 35  # ... briefly: about a second's worth of frames
    assert (lat[-60:] <= BUDGET_MS).all()  # and latency returned under the budget
    assert s.stats.reanchors == 0  # no tick was moved during speech


def test_a_stalled_consumer_catches_up_instead_of_shifting_the_utterance(
    gated_viseme: Any,
    astronaut_png: Path,
    avatar_dir: Path,
    speech_wav: Path,
) -> None:
    """The issue's case: one 1 s consumer stall used to add 1 s to the rest of the utterance."""
    x, _ = speech(speech_wav, 5.0)
    cs = list(chunks(x, SR, seed=8))
    clock = ManualClock()
    s = _open(gated_viseme, astronaut_png, avatar_dir, clock)
    try:
        live = _Live(s, clock)
        n1 = len(cs) // 4
        for c in cs[:n1]:
            live.push(c)
        before = len(s.stats.latencies)
        t_stall = clock.now()
        k = n1
        while live.due < t_stall + 1.0:  # the consumer does not read for 1 s; audio keeps coming
            live.push(cs[k], read=False)
            k += 1
        for c in cs[k:]:
            live.push(c)
        s.flush()
        live.out += [next(live.it) for _ in range(30)]
    finally:
        s.close()
    _check_audio_and_ticks(live.out, x)
    lat = np.asarray(s.stats.latencies) * 1000.0
    assert (lat[:before] <= BUDGET_MS).all()
    assert lat.max() > 900.0
    assert (lat > BUDGET_MS).sum() <= 35
    assert (lat[-60:] <= BUDGET_MS).all()  # was +1 s for the rest of the utterance before
    assert s.stats.reanchors == 0


def test_latency_summary_reports_a_session_pushed_in_one_piece(
    gated_viseme: Any, astronaut_png: Path, avatar_dir: Path, speech_wav: Path
) -> None:
    """One push of 1.5 s (38 frames) used to leave one latency sample at most; every speech frame
    now has one, so the summary is never empty for a session that spoke."""
    x, _ = speech(speech_wav, 1.5)
    clock = ManualClock()
    with _open(gated_viseme, astronaut_png, avatar_dir, clock) as s:
        s.push_audio(x, SR)
        s.flush()
        frames = list(s.frames(stop_when_drained=True))  # real time, ends once all has played
    spoken = [f for f in frames if f.speaking]
    assert len(spoken) == 38 and spoken[-1].end_of_speech and frames[-1].end_of_speech
    summary = s.stats.latency_summary()
    assert set(summary) == {"p50_ms", "p95_ms", "max_ms"}
    # frame j plays at its tick, about j frames after the one push
    assert summary["max_ms"] == pytest.approx(1000 * (spoken[-1].index + 0) / FPS, abs=1000 / FPS + 1)
    assert len(s.stats.latencies) == 38


def test_latency_summary_reports_a_session_cut_by_an_interrupt(
    gated_viseme: Any, astronaut_png: Path, avatar_dir: Path, speech_wav: Path
) -> None:
    """The issue's ``{}`` after 38 speaking frames: latency was kept per pushed chunk and recorded only
    when the chunk's last sample played, so one 3 s push cut by ``interrupt()`` recorded nothing."""
    x, _ = speech(speech_wav, 3.0)
    clock = ManualClock()
    with _open(gated_viseme, astronaut_png, avatar_dir, clock) as s:
        s.push_audio(x, SR)
        it = s.frames()
        frames: list = []
        while sum(f.speaking for f in frames) < 38:
            frames.append(next(it))
        s.interrupt()
    assert len(s.stats.latencies) == 38
    lat = np.asarray(s.stats.latencies)
    ticks = np.asarray([f.index for f in frames if f.speaking]) / FPS
    np.testing.assert_allclose(
        lat, ticks - ticks[0] + lat[0], atol=1e-9
    )  # one push: latency grows with the tick
    assert s.stats.latency_summary()["max_ms"] == pytest.approx(1000 * lat.max())
