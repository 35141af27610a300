"""``sync(..., hook=)``: each numbered stage of the pipeline reports its artefact once, in order.

Real media, the weight-free viseme model. What the hook sees is checked against the inputs (the video's
size and length, the audio's duration) and against the result of the same run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.api import resolve_model, sync
from lipsynckit.gate import GatePlan
from lipsynckit.media import load_audio, read_video_frames
from lipsynckit.media.video import VideoInfo
from lipsynckit.pipeline import STAGES, SyncResult
from lipsynckit.types import AudioClip, FaceTrack

ROOT = Path(__file__).resolve().parents[1]
NINE = ["inputs", "audio", "features", "frame_index", "faces", "gate", "generate", "encode", "result"]


class _Stop(Exception):
    """What the user's hook raises."""


def _speech_file(speech_wav: Path, seconds: float, tmp_path: Path) -> Path:
    """The first ``seconds`` of the LibriVox sentence, as a file of its own."""
    data, sr = sf.read(str(speech_wav), dtype="float32")
    p = tmp_path / f"speech_{seconds:g}s.wav"
    sf.write(str(p), data[: round(seconds * sr)], sr)
    return p


def _recording_model() -> tuple[Any, list[FaceTrack]]:
    """The viseme model, remembering the tracks its box rules return (what the hook must be shown)."""
    model = resolve_model("viseme")
    adjusted: list[FaceTrack] = []
    rules = model.adjust_track

    def adjust_track(track: FaceTrack, frame_size: tuple[int, int]) -> FaceTrack:
        out = FaceTrack(faces=list(rules(track, frame_size).faces), detector=track.detector)
        adjusted.append(out)
        return out

    model.adjust_track = adjust_track  # type: ignore[method-assign]
    return model, adjusted


def test_stage_names_are_the_nine_of_the_architecture_page() -> None:
    assert list(STAGES) == NINE
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```")[1]  # the first code block: the path a video takes
    numbered = re.findall(r"^(\d) (\w+) ", diagram, flags=re.MULTILINE)
    assert numbered == [(str(k), name) for k, name in enumerate(NINE, 1)]


def test_hook_sees_each_stage_once_in_order_with_its_artefact(
    carphone_mp4: Path, speech_wav: Path, tmp_path: Path
) -> None:
    audio = _speech_file(speech_wav, 1.6, tmp_path)  # shorter than the 4 s video: no looping
    out = tmp_path / "out.mp4"
    model, adjusted = _recording_model()
    calls: list[tuple[str, Any]] = []
    out_there: dict[str, bool] = {}

    def hook(stage: str, artefact: Any) -> None:
        calls.append((stage, artefact))
        out_there[stage] = out.exists()

    result = sync(carphone_mp4, audio, model, out, hook=hook, progress=False)
    assert [stage for stage, _ in calls] == NINE
    seen = dict(calls)

    info = seen["inputs"]
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.num_frames) == (176, 144, 120)
    assert info.fps == pytest.approx(29.97, abs=0.01)

    clip = seen["audio"]
    assert isinstance(clip, AudioClip)
    assert clip.duration == pytest.approx(1.6, abs=0.01)

    n = round(1.6 * 29.97)
    features = seen["features"]
    assert isinstance(features, torch.Tensor)
    assert abs(features.shape[0] - n) <= 1
    assert features.shape[0] == result.frames

    index = seen["frame_index"]
    assert isinstance(index, np.ndarray)
    np.testing.assert_array_equal(index, np.arange(result.frames))  # output frame k shows source frame k

    track = seen["faces"]
    assert len(adjusted) == 1 and track is adjusted[0]  # after the model's box rules
    assert len(track) == result.frames  # every source frame used, and no more
    assert track.num_found == result.frames_with_face > 0.9 * result.frames  # the man is always there

    gate = seen["gate"]
    assert isinstance(gate, GatePlan)
    assert gate.weights.shape == (result.frames,)
    assert gate.spans == result.speech_spans and gate.spans

    assert seen["generate"] == result.scheduler and result.scheduler
    assert not out_there["generate"]  # every frame written, nothing committed yet
    assert seen["encode"] == out and out_there["encode"]
    assert seen["result"] is result and isinstance(result, SyncResult)
    assert len(read_video_frames(out)) == result.frames


def test_cut_features_cover_the_audio_while_the_index_stops_with_the_video(
    carphone_mp4: Path, speech_wav: Path, tmp_path: Path
) -> None:
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"boxes": [[56, 18, 128, 104]]}')  # one box for every frame: no detection to wait for
    seen: dict[str, Any] = {}
    result = sync(
        carphone_mp4,
        speech_wav,
        "viseme",
        tmp_path / "cut.mp4",
        hook=seen.__setitem__,
        length_mode="cut",
        face_boxes=boxes,
        gate=False,
        progress=False,
    )
    duration = load_audio(speech_wav).duration  # 7.1 s of speech over a 4 s video
    assert seen["audio"].duration == pytest.approx(duration)
    assert abs(seen["features"].shape[0] - duration * 29.97) <= 1
    assert result.frames == len(seen["frame_index"]) == 120 < seen["features"].shape[0]
    assert result.audio_duration == pytest.approx(120 / 29.97, abs=0.05)  # the audio was cut too
    assert len(seen["faces"]) == seen["faces"].num_found == 120
    assert seen["gate"] is None


@pytest.mark.parametrize("stage", ["inputs", "audio", "faces", "gate", "generate"])
def test_a_hook_that_raises_ends_the_run_and_leaves_no_output(
    stage: str, astronaut_png: Path, speech_wav: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "talk.mp4"
    clip = load_audio(speech_wav).slice(0.0, 1.5)
    calls: list[str] = []

    def hook(name: str, artefact: Any) -> None:
        calls.append(name)
        if name == stage:
            raise _Stop(name)

    with pytest.raises(_Stop, match=stage):
        sync(astronaut_png, clip, "viseme", out, hook=hook, progress=False)
    assert calls == NINE[: NINE.index(stage) + 1]  # no stage ran after the hook raised
    assert list(out_dir.iterdir()) == []  # neither the output nor a temporary file


def test_a_hook_that_raises_at_encode_finds_the_output_complete(
    astronaut_png: Path, speech_wav: Path, tmp_path: Path
) -> None:
    out = tmp_path / "talk.mp4"
    clip = load_audio(speech_wav).slice(0.0, 1.5)

    def hook(name: str, artefact: Any) -> None:
        if name == "encode":
            raise _Stop(name)

    with pytest.raises(_Stop):
        sync(astronaut_png, clip, "viseme", out, hook=hook, progress=False)
    assert len(read_video_frames(out)) == round(1.5 * 25)  # committed before the hook ran: documented
