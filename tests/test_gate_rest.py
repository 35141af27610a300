"""Issue 21: "at rest" for a speaking source (a dubbing source speaks in its own audio track).

The source is the carphone clip (a real man talking: his mouth moves) with a LibriVox sentence muxed
in as its own track; the new audio has a ~2 s pause in the middle. Where the new audio pauses and the
source frame shown is speech in its own track, the model draws a closed mouth (viseme on silence)
instead of showing the old speech; a source with no track, or a silent one, keeps its own frames
bit for bit. Ground truth for both tracks' speech is pocketsphinx's forced alignment
(tests/gate_speech.py), not lipsynckit's detector.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from gate_speech import sentences_with_pause, silent_frames, word_spans

from lipsynckit import api
from lipsynckit.cli import main
from lipsynckit.media import VideoSink, read_video_frames
from lipsynckit.types import AudioClip

CARPHONE_FPS = Fraction(30000, 1001)
MARGIN_S = 0.35  # as tests/test_gate.py: silent frames are this far from every aligned word


@pytest.fixture(scope="module")
def pause_wav(speech_wavs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The new audio: '... young man' + 1.5 s of room tone + 'he might even ...' (3.4 s)."""
    out = tmp_path_factory.mktemp("rest") / "pause.wav"
    words = sentences_with_pause(speech_wavs[1], speech_wavs[4], speech_wavs * 2, out, 2.0, 0.95)
    return out, words


def _carphone_with_track(carphone_mp4: Path, out: Path, track: np.ndarray | None) -> Path:
    """The carphone frames, lossless, with ``track`` (16 kHz mono) as the video's own audio."""
    frames = read_video_frames(carphone_mp4)
    clip = None if track is None else AudioClip(torch.from_numpy(track), 16000)
    with VideoSink(
        out, fps=CARPHONE_FPS, size=(frames.shape[2], frames.shape[1]), audio=clip, mode="ffv1"
    ) as s:
        for f in frames:
            s.write(f)
    return out


@pytest.fixture(scope="module")
def sources(
    carphone_mp4: Path, speech_wavs: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, tuple]]:
    """``speaking``: the sentence 0870 (speech from 0.2 s to past 4 s) as the source's own track;
    ``silent``: a track of digital silence; ``none``: no audio track. All the same 120 frames."""
    tmp = tmp_path_factory.mktemp("rest_src")
    x, sr = sf.read(speech_wavs[0], dtype="float32")
    assert sr == 16000
    seconds = 120 / float(CARPHONE_FPS)
    words = word_spans(speech_wavs[0])
    assert words[0][0] <= 0.25 and words[-1][1] >= seconds  # he speaks through every frame used
    speech = x[: int(seconds * sr)]
    return {
        "speaking": (_carphone_with_track(carphone_mp4, tmp / "speaking.mkv", speech), words),
        "silent": (_carphone_with_track(carphone_mp4, tmp / "silent.mkv", np.zeros_like(speech)), ()),
        "none": (_carphone_with_track(carphone_mp4, tmp / "none.mkv", None), ()),
    }


def _sync(tmp: Path, video: Path, wav: Path, *args: str) -> tuple[np.ndarray, dict]:
    out, info = tmp / "out.mkv", tmp / "result.json"
    base = ["-q", "sync", str(video), str(wav), "-o", str(out), "--lossless", "--no-progress"]
    assert main([*base, "--json", str(info), "--model", "viseme", *args]) == 0
    return read_video_frames(out).astype(np.int16), json.loads(info.read_text())


def _opening(frames: np.ndarray, marks: list) -> np.ndarray:
    """Per frame, the dark pixels (luma < 70: an open mouth's interior) between the mouth corners
    (the face detector's 5 points on the source), from a third of the mouth width above them to half
    of it below."""
    out = np.zeros(len(frames))
    for k, (f, lm) in enumerate(zip(frames, marks, strict=True)):
        (lx, ly), (rx, ry) = lm[3], lm[4]
        w, cy = rx - lx, (ly + ry) / 2
        region = f[int(cy - w / 3) : int(cy + w / 2), int(lx) : int(rx) + 1]
        out[k] = (region.mean(axis=-1) < 70).sum()
    return out


def test_dubbing_source_rests_on_a_closed_mouth_idle_source_on_its_frames(
    sources: dict, pause_wav: tuple[Path, list], tmp_path: Path
) -> None:
    wav, words = pause_wav
    speaking, source_words = sources["speaking"]
    src = read_video_frames(speaking).astype(np.int16)

    result = api.sync(speaking, wav, "viseme", tmp_path / "dub.mkv", progress=False)
    got = read_video_frames(tmp_path / "dub.mkv").astype(np.int16)
    info = asdict(replace(result, face_track=None))
    n = len(got)
    fps = info["fps"]
    quiet = silent_frames(words, fps, n, MARGIN_S)
    source = src[np.arange(n) % len(src)]
    # the source frames shown in the pause are speech in the source's own track (forced alignment)
    assert quiet.sum() >= 20 and not silent_frames(list(source_words), fps, n, 0.0)[quiet].any()
    assert info["rest_mode"] == "model_closed"
    assert info["closed_frames"] >= quiet.sum() and info["gated_frames"] == 0
    assert (
        info["source_speech_spans"]
        and f"{result.closed_frames} frames closed by the model" in result.summary()
    )
    # in the pause: not the old speech, a still, closed mouth
    assert all(not np.array_equal(g, s) for g, s in zip(got[quiet], source[quiet], strict=True))
    marks = [result.face_track.faces[int(k)].landmarks for k in result.frame_index]
    shut, spoken = _opening(got, marks)[quiet], _opening(source, marks)[quiet]
    assert spoken.min() >= 30  # he speaks there: dark mouth interior in every source frame
    assert np.all(shut <= 0.3 * spoken) and shut.mean() < 0.1 * spoken.mean()
    # only the mouth is redrawn: everything from the eyes up is the source's, bit for bit
    for k in np.flatnonzero(quiet):
        eyes = int(min(marks[k][0][1], marks[k][1][1]))
        assert np.array_equal(got[k, :eyes], source[k, :eyes])

    # forced back to the source (today's rest): the pause shows the source's own frames
    kept, info_src = _sync(tmp_path, speaking, wav, "--rest", "source")
    assert info_src["rest_mode"] == "source" and info_src["closed_frames"] == 0
    assert np.array_equal(kept[quiet], source[quiet])

    # an idle source (no track; a silent track) keeps its own frames bit for bit
    for name in ("none", "silent"):
        video, _ = sources[name]
        idle, info_idle = _sync(tmp_path, video, wav)
        assert info_idle["rest_mode"] == "source" and info_idle["closed_frames"] == 0, name
        assert np.array_equal(idle[quiet], source[quiet]), name
        assert info_idle["gated_frames"] >= quiet.sum()
    # ... unless told to close it anyway
    closed, info_closed = _sync(tmp_path, sources["none"][0], wav, "--rest", "closed")
    assert info_closed["rest_mode"] == "model_closed" and info_closed["closed_frames"] >= quiet.sum()
    assert _opening(closed, marks)[quiet].mean() < 0.1 * spoken.mean()


def test_rest_plan_and_features_follow_the_source_speech(pause_wav: tuple[Path, list]) -> None:
    """The plan: rest frames of a speaking source are model calls (never skipped, not blended), an
    idle one's are the source; the features: silence's (marked by viseme) at weight 0, real at 1."""
    from lipsynckit.gate import plan_gate, rest_features
    from lipsynckit.media import load_audio
    from lipsynckit.options import SyncOptions
    from lipsynckit.registry import load_model

    wav, _ = pause_wav
    clip = load_audio(wav)
    n = round(clip.duration * 25.0)
    opts = SyncOptions(vad="energy", progress=False)
    idle = plan_gate(clip, 25.0, n, opts, speaking=np.zeros(n, bool))
    assert idle.rest_mode == "source" and idle.closed_frames == 0 and idle.gated_frames >= 25
    speaking = np.ones(n, bool)
    speaking[: n // 4] = False  # the source is silent in its first quarter only
    for chunk in (1, 16):
        plan = plan_gate(clip, 25.0, n, opts, chunk, speaking=speaking)
        rest = plan.weights < 1
        assert plan.rest_mode == "model_closed"
        assert np.array_equal(plan.model_rest, rest & speaking)
        assert not plan.skip[plan.model_rest].any()  # the model draws them
        assert plan.closed_frames == int((plan.model_rest & (plan.weights == 0)).sum()) >= 25
        assert plan.gated_frames == int(((plan.weights == 0) & ~speaking).sum())
    frame = np.full((4, 4, 3), 10, np.uint8)
    k = int(np.flatnonzero(plan.model_rest & (plan.weights == 0))[0])
    assert plan.blend(k, frame, frame + 1) is not frame  # the model's frame, not the source's
    assert (
        plan_gate(clip, 25.0, n, SyncOptions(vad="energy", rest="source"), speaking=speaking).model_rest
        is None
    )
    every = plan_gate(clip, 25.0, n, SyncOptions(vad="energy", rest="closed"))
    assert np.array_equal(every.model_rest, every.weights < 1)

    model = load_model("viseme")
    feats = model.audio_features(clip, 25.0)
    got = rest_features(model, clip, 25.0, feats, plan)
    keep = ~plan.model_rest
    assert torch.equal(got[keep], feats[keep])  # speech and idle rest frames untouched
    zero = plan.model_rest & (plan.weights == 0)
    assert torch.all(got[zero][:, 0] == 0) and torch.all(got[zero][:, 2] == -1)  # closed, marked rest
    fade = plan.model_rest & (plan.weights > 0)
    assert (
        fade.any()
        and torch.all(got[fade][:, 2] > -1)
        and torch.all(got[fade][:, 2] < feats[fade][:, 2] + 1e-6)
    )
