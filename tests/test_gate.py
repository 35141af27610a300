"""Issue 11: the mouth rests when nobody speaks, for every model (the voice-activity gate).

Ground truth for speech and silence is pocketsphinx's forced alignment of the LibriVox sentences to
their transcription (tests/gate_speech.py), independent of lipsynckit's own detector. Silent frames
are those more than 0.35 s from every aligned word (the gate's 0.1 s hangover, its 3-frame fade, a
frame of rounding, and the ~0.15 s by which an energy detector hears a word's tail past its alignment).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from gate_speech import sentences_with_pause, silent_frames, word_spans

from lipsynckit.cli import main
from lipsynckit.errors import LipSyncError
from lipsynckit.gate import frame_weights, plan_gate
from lipsynckit.media import read_video_frames
from lipsynckit.options import SyncOptions
from lipsynckit.types import AudioClip
from lipsynckit.vad import speech_spans

MARGIN_S = 0.35
CARPHONE_BOX = [52, 28, 124, 110]  # the driver's face (176x144); its lower half holds the mouth
MOUTH = (slice(69, 120), slice(52, 124))
# viseme with its own silence detection switched off: a model that moves the mouth on room tone, as
# Wav2Lip, MuseTalk and LatentSync do
RESTLESS_VISEME = ["-O", "vad_threshold_db=0", "-O", "vad_abs_min_db=-120", "-O", "vad_max_flatness=1.0"]
RESTLESS_VISEME += ["-O", "gain=4"]


def _hop_mask(spans: list[tuple[float, float]] | tuple[tuple[float, float], ...], n: int) -> np.ndarray:
    t = (np.arange(n) + 0.5) * 0.01
    m = np.zeros(n, bool)
    for a, b in spans:
        m |= (t >= a) & (t < b)
    return m


@pytest.mark.parametrize("vad", ["energy", "silero"])
def test_speech_spans_agree_with_forced_alignment_on_every_clip(vad: str, speech_wavs: list[Path]) -> None:
    """Measured (10 ms hops, default 0.1 s hangover): energy 0.873–0.992 per clip, 0.960 over the five;
    silero 0.880–0.951, 0.925."""
    agree, total = [], 0
    threads = torch.get_num_threads()
    for wav in speech_wavs:
        x, sr = sf.read(wav, dtype="float32")
        n = int(len(x) / sr / 0.01)
        got = _hop_mask(speech_spans(AudioClip(torch.from_numpy(x), sr), vad), n)  # type: ignore[arg-type]
        want = _hop_mask(word_spans(wav), n)
        agree.append(int((got == want).sum()))
        total += n
        assert (got == want).mean() >= 0.85, (wav.name, (got == want).mean())
        assert got[want].mean() >= 0.95  # speech is (nearly) never taken for silence
    assert sum(agree) / total >= {"energy": 0.95, "silero": 0.91}[vad], sum(agree) / total
    assert torch.get_num_threads() == threads  # silero_vad's import sets one thread; the gate puts it back


def test_no_speech_in_digital_silence_or_steady_noise() -> None:
    rng = np.random.default_rng(0)
    for x in (np.zeros(32000, np.float32), rng.normal(0, 0.01, 32000).astype(np.float32)):
        assert speech_spans(AudioClip(torch.from_numpy(x), 16000)) == []


def test_frame_weights_ramp_on_the_silent_side_and_chunks_skip_whole() -> None:
    # 10 fps: a span over [0.5, 0.75) s covers frames 5..7; 2 fade frames each side, at 2/3 and 1/3
    w = frame_weights([(0.5, 0.75)], 10.0, 12, 2)
    np.testing.assert_allclose(w, [0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1, 2 / 3, 1 / 3, 0, 0], atol=1e-6)
    assert frame_weights([], 10.0, 4, 2).tolist() == [0, 0, 0, 0]
    assert frame_weights([(0.5, 0.75)], 10.0, 12, 0).tolist() == [0] * 5 + [1] * 3 + [0] * 4
    # LatentSync-like chunks of 4: only a chunk silent throughout skips the model
    x, _ = sf.read(
        Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
    )
    clip = AudioClip(torch.from_numpy(np.r_[np.zeros(16000), x].astype(np.float32)), 16000)
    plan = plan_gate(clip, 25.0, 100, SyncOptions(), chunk_frames=4)
    assert plan.skip.reshape(-1, 4).all(axis=1).sum() >= 5  # the second of leading silence: whole chunks
    for chunk_w, chunk_skip in zip(plan.weights.reshape(-1, 4), plan.skip.reshape(-1, 4), strict=True):
        assert chunk_skip.all() == (chunk_w == 0).all() and chunk_skip.all() == chunk_skip.any()


def test_a_clip_cut_out_of_speech_is_speech_to_its_edges(speech_wav: Path) -> None:
    """What the MuseTalk / LatentSync real-size tests feed (0.25 s and 0.64 s from 1.0 s, inside 'dashwood'):
    the gate must leave every frame to the model, though the cut starts on a 'd' closure."""
    x, sr = sf.read(speech_wav, dtype="float32")
    for seconds, n in ((0.25, 6), (0.64, 16)):
        clip = AudioClip(torch.from_numpy(x[sr : sr + int(seconds * sr)]), sr)
        plan = plan_gate(clip, 25.0, n, SyncOptions())
        assert plan.weights.tolist() == [1.0] * n and not plan.skip.any()


def test_silero_needs_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "silero_vad" else real(n, *a))
    with pytest.raises(LipSyncError, match=r"lipsynckit\[vad\]"):
        SyncOptions(vad="silero")


@pytest.fixture(scope="module")
def pause_wav(speech_wavs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """'... young man' + 1.5 s of room tone + 'he might even ...': 3.4 s, a 1.95 s pause in the middle."""
    out = tmp_path_factory.mktemp("gate") / "pause.wav"
    words = sentences_with_pause(speech_wavs[1], speech_wavs[4], speech_wavs * 2, out, 2.0, 0.95)
    return out, words


@pytest.fixture(scope="module")
def carphone_boxes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("gate") / "boxes.json"
    p.write_text(json.dumps({"format": "xyxy", "boxes": [CARPHONE_BOX] * 120}))
    return p


def _sync(tmp: Path, video: Path, wav: Path, *args: str) -> tuple[np.ndarray, dict]:
    out, info = tmp / "out.mkv", tmp / "result.json"
    base = ["-q", "sync", str(video), str(wav), "-o", str(out), "--lossless", "--no-progress"]
    assert main([*base, "--json", str(info), *args]) == 0
    return read_video_frames(out).astype(np.int16), json.loads(info.read_text())


def _motion(frames: np.ndarray, quiet: np.ndarray, region: tuple[slice, slice]) -> float:
    """Mean absolute change of ``region`` between consecutive frames that are both silent."""
    pairs = np.flatnonzero(quiet[1:] & quiet[:-1]) + 1
    assert len(pairs) >= 5
    a, b = frames[pairs][:, region[0], region[1]], frames[pairs - 1][:, region[0], region[1]]
    return float(np.abs(a - b).mean())


def test_video_keeps_the_source_mouth_in_silence_viseme(
    carphone_mp4: Path, carphone_boxes: Path, pause_wav: tuple[Path, list], tmp_path: Path
) -> None:
    wav, words = pause_wav
    src = read_video_frames(carphone_mp4).astype(np.int16)
    boxes = ["--face-boxes", str(carphone_boxes), "--model", "viseme"]
    for opts in ([], RESTLESS_VISEME):
        got, info = _sync(tmp_path, carphone_mp4, wav, *boxes, *opts)
        n = len(got)
        quiet = silent_frames(words, info["fps"], n, MARGIN_S)
        source = src[np.arange(n) % len(src)]
        assert quiet.sum() >= 20
        assert _motion(got, quiet, MOUTH) <= _motion(source, quiet, MOUTH)
        assert np.array_equal(got[quiet], source[quiet])  # the source frame itself
        assert len(info["speech_spans"]) == 2 and info["gated_frames"] >= quiet.sum()
        assert info["model_calls_skipped"] == info["gated_frames"]  # every frame has a face here
        assert info["scheduler"]["items"] == info["frames_with_face"] - info["model_calls_skipped"]
        assert not np.array_equal(got[~quiet], source[~quiet])  # it does lip-sync the speech
    # without the gate, the restless model moves the mouth on the room tone, more than the speaker does
    loose, info = _sync(tmp_path, carphone_mp4, wav, *boxes, *RESTLESS_VISEME, "--no-gate")
    quiet = silent_frames(words, info["fps"], len(loose), MARGIN_S)
    source = src[np.arange(len(loose)) % len(src)]
    assert _motion(loose, quiet, MOUTH) > 1.2 * _motion(source, quiet, MOUTH)
    assert info["speech_spans"] == [] and info["gated_frames"] == info["model_calls_skipped"] == 0


@pytest.fixture(scope="module")
def astronaut_head(astronaut_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The astronaut photo cut to her head and shoulders (288x288): a third of the pixels to encode."""
    p = tmp_path_factory.mktemp("gate") / "astronaut_head.png"
    cv2.imwrite(str(p), cv2.imread(str(astronaut_png))[0:288, 96:384])
    return p


def test_photo_mouth_is_still_in_silence_viseme(
    astronaut_head: Path, pause_wav: tuple[Path, list], tmp_path: Path
) -> None:
    astronaut_png = astronaut_head
    wav, words = pause_wav
    photo = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB).astype(np.int16)
    whole = (slice(None), slice(None))
    got, info = _sync(tmp_path, astronaut_png, wav, "--model", "viseme", *RESTLESS_VISEME)
    quiet = silent_frames(words, 25.0, len(got), MARGIN_S)
    assert quiet.sum() >= 15 and _motion(got, quiet, whole) == 0.0
    assert np.array_equal(got[quiet], np.broadcast_to(photo, got[quiet].shape))
    assert np.abs(got[~quiet] - photo).max() > 20  # speech still moves the mouth
    loose, _ = _sync(tmp_path, astronaut_png, wav, "--model", "viseme", *RESTLESS_VISEME, "--no-gate")
    assert _motion(loose, quiet, whole) > 0.0
    # a longer hangover holds the speech spans open longer: fewer frames at rest
    _, held = _sync(tmp_path, astronaut_png, wav, "--model", "viseme", "--gate-hangover", "0.4")
    assert held["gated_frames"] < info["gated_frames"]
    assert held["speech_spans"][0][1] == pytest.approx(info["speech_spans"][0][1] + 0.3, abs=0.011)


@pytest.fixture(scope="module")
def w2l_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "wav2lip"))
    from w2l_helpers import save_training_checkpoint

    return save_training_checkpoint(tmp_path_factory.mktemp("gate_w2l") / "wav2lip.pth")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_wav2lip_rests_in_silence_video_and_photo(
    carphone_mp4: Path,
    carphone_boxes: Path,
    astronaut_png: Path,
    pause_wav: tuple[Path, list],
    w2l_checkpoint: Path,
    tmp_path: Path,
) -> None:
    """Wav2Lip with deterministic weights (the official network on the official container): in silence
    the video keeps its own mouth and the photo stays still; with --no-gate the model draws there."""
    from lipsynckit.api import detect_faces

    wav, words = pause_wav
    w2l = ["--model", "wav2lip", "--weights", str(w2l_checkpoint), "--device", "cpu"]
    src = read_video_frames(carphone_mp4).astype(np.int16)
    runs = {}
    for gate in ([], ["--no-gate"]):
        got, info = _sync(tmp_path, carphone_mp4, wav, *w2l, "--face-boxes", str(carphone_boxes), *gate)
        quiet = silent_frames(words, info["fps"], len(got), MARGIN_S)
        runs[bool(gate)] = (got, info, quiet, src[np.arange(len(got)) % len(src)])
    got, info, quiet, source = runs[False]
    assert quiet.sum() >= 20
    assert _motion(got, quiet, MOUTH) <= _motion(source, quiet, MOUTH)
    assert np.array_equal(got[quiet], source[quiet])
    assert info["model_calls_skipped"] >= quiet.sum()
    assert info["scheduler"]["items"] == info["frames_with_face"] - info["model_calls_skipped"]
    loose, loose_info, quiet, source = runs[True]
    assert loose_info["scheduler"]["items"] == loose_info["frames_with_face"]
    assert np.abs(loose[quiet][:, MOUTH[0], MOUTH[1]] - source[quiet][:, MOUTH[0], MOUTH[1]]).mean() > 5

    photo_rgb = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB)
    face = detect_faces(photo_rgb, "opencv").faces[0]
    assert face is not None
    boxes = tmp_path / "astronaut_box.json"
    boxes.write_text(json.dumps({"format": "xyxy", "boxes": [face.box.tolist()]}))
    photo = photo_rgb.astype(np.int16)
    whole = (slice(None), slice(None))
    got, _ = _sync(tmp_path, astronaut_png, wav, *w2l, "--face-boxes", str(boxes))
    quiet = silent_frames(words, 25.0, len(got), MARGIN_S)
    assert _motion(got, quiet, whole) == 0.0 and np.array_equal(got[quiet][0], photo)
    loose, _ = _sync(tmp_path, astronaut_png, wav, *w2l, "--face-boxes", str(boxes), "--no-gate")
    assert _motion(loose, quiet, whole) > 0.0


def test_blend_in_bands_of_rows_equals_the_whole_frame_mix(
    carphone_mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big frames are mixed a band of rows at a time (bounded float32 temporaries); the pixels are the
    whole-frame mix's, including the last, shorter band."""
    import lipsynckit.gate as gate_module
    from lipsynckit.gate import GatePlan
    from lipsynckit.media import read_video_frames

    frames = read_video_frames(carphone_mp4)
    source, output = frames[0], frames[40]  # two real frames, different everywhere the driver moved
    plan = GatePlan(spans=[], weights=np.array([0.3], np.float32), skip=np.array([False]), vad="energy")
    s, o = source.astype(np.float32), output.astype(np.float32)
    expected = np.clip(np.rint(s + np.float32(0.3) * (o - s)), 0, 255).astype(np.uint8)
    monkeypatch.setattr(gate_module, "BLEND_BLOCK_BYTES", 4 * source[0].size * 7)  # 7 rows: 144 = 20 x 7 + 4
    banded = plan.blend(0, source, output)
    assert banded.dtype == np.uint8 and banded.shape == source.shape
    np.testing.assert_array_equal(banded, expected)
    assert not np.array_equal(banded, source) and not np.array_equal(banded, output)
