"""A frame whose preparation raises ends the run with an error naming it, unless the user keeps going."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lipsynckit as lsk
from lipsynckit.cli import main
from lipsynckit.media import read_video_frames
from lipsynckit.viseme.runtime import VisemeModel

BAD_FRAME = 10


@pytest.fixture
def speech_3s(speech_wavs: list[Path]) -> Path:
    return next(p for p in speech_wavs if p.name.endswith("0880.wav"))  # 3 s: fewer frames than the video


@pytest.fixture
def prepare_fails_on_frame_10(carphone_mp4: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """The viseme model's prepare raises on the carphone's source frame 10 (recognised by its pixels)."""
    bad = read_video_frames(carphone_mp4)[BAD_FRAME]
    original = VisemeModel.prepare

    def prepare(self, frame, face):  # type: ignore[no-untyped-def]
        if np.array_equal(frame, bad):
            raise ValueError("boom on this frame")
        return original(self, frame, face)

    monkeypatch.setattr(VisemeModel, "prepare", prepare)
    return bad


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failing_frame_ends_the_run_with_no_output(
    carphone_mp4: Path,
    speech_3s: Path,
    prepare_fails_on_frame_10: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    out = out_dir / "x.mp4"
    rc = main(["-q", "sync", str(carphone_mp4), str(speech_3s), "-o", str(out), "--model", "viseme"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "frame 10 failed" in err and "ValueError: boom on this frame" in err
    assert str(carphone_mp4) in err and "--keep-going" in err and "Traceback" not in err
    assert _leftovers(out_dir) == []  # neither the output nor the sink's temporary file

    with pytest.raises(lsk.LipSyncError, match="keep_going=True") as info:
        lsk.sync(carphone_mp4, speech_3s, model="viseme", output=out, progress=False)
    assert "frame 10 failed" in str(info.value)
    assert _leftovers(out_dir) == []


def test_keep_going_passes_the_frame_through_and_names_it(
    carphone_mp4: Path,
    speech_3s: Path,
    prepare_fails_on_frame_10: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "x.mkv"
    args = ["sync", str(carphone_mp4), str(speech_3s), "-o", str(out), "--model", "viseme", "--lossless"]
    assert main(["-q", *args, "--keep-going", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "1 frame(s) failed and were passed through unchanged" in err and "frame 10;" in err
    frames = read_video_frames(out)
    assert np.array_equal(frames[BAD_FRAME], prepare_fails_on_frame_10)  # lossless: exactly the source
    src = read_video_frames(carphone_mp4)
    assert not np.array_equal(frames[BAD_FRAME + 1], src[BAD_FRAME + 1])  # its neighbours were lip-synced

    result = lsk.sync(
        carphone_mp4, speech_3s, model="viseme", output=tmp_path / "y.mp4", keep_going=True, progress=False
    )
    assert [i for i, _ in result.failed_frames] == [BAD_FRAME]
    assert "ValueError: boom on this frame" in result.failed_frames[0][1]
