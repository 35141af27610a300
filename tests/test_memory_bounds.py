"""Memory bounded in bytes (issue 18) and outputs of exactly the input's size (issue 21).

Pictures above ``max_pixels`` are refused from their header, in one line that names the file, its size
and the option, before anything is decoded or any model loads; the frame queue's length follows from
its byte budget; an odd-sized photo comes out at its own size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile import png_with_header

import lipsynckit as lsk
from lipsynckit.cli import main
from lipsynckit.errors import VideoError
from lipsynckit.limits import DEFAULT_MAX_PIXELS, frames_for_bytes
from lipsynckit.media import VideoSource, read_video_frames
from lipsynckit.viseme.plugin import VisemePlugin


@pytest.fixture
def short_wav(speech_wavs: list[Path]) -> Path:
    return next(p for p in speech_wavs if p.name.endswith("0880.wav"))  # 3 s


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(VisemePlugin, "build", build)


@pytest.fixture
def no_image_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding a whole image fails loudly: the size must be read from the header first."""

    def _imdecode(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the image was decoded before its size was checked")

    monkeypatch.setattr(cv2, "imdecode", _imdecode)


def test_default_fits_4k_video_and_a_12_mp_photo() -> None:
    assert 3840 * 2160 <= DEFAULT_MAX_PIXELS and 4032 * 3024 <= DEFAULT_MAX_PIXELS < 10000 * 10000


@pytest.mark.usefixtures("no_model_load")
def test_a_big_photo_is_refused_in_one_line_before_decode_and_model(
    astronaut_png: Path, short_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    big = tmp_path / "scan.jpg"
    photo = cv2.imread(str(astronaut_png))
    cv2.imwrite(str(big), cv2.resize(photo, (5000, 4000), interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "out.mp4"
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded before the size check"))
    rc = main(["sync", "--model", "viseme", str(big), str(short_wav), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"{big}: the picture is 5000x4000 (20.0 MP), above max_pixels 16777216" in err
    assert "--max-pixels" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.jpg"]
    # the API says the same, with the option's API spelling
    with pytest.raises(VideoError, match="5000x4000") as e:
        lsk.sync(big, short_wav, model="viseme", output=out)
    assert "max_pixels=N" in str(e.value)


@pytest.mark.usefixtures("no_image_decode")
@pytest.mark.parametrize(("w", "h", "color"), [(100_000, 100_000, 2), (70_000, 300, 6), (1, 20_000_000, 0)])
def test_a_bomb_header_is_refused_without_decoding(tmp_path: Path, w: int, h: int, color: int) -> None:
    bomb = png_with_header(tmp_path / "bomb.png", w, h, color)
    with pytest.raises(VideoError, match=f"the picture is {w}x{h}"):
        VideoSource(bomb)


@pytest.mark.usefixtures("no_model_load")
def test_a_video_above_the_budget_is_refused_from_its_header(
    carphone_mp4: Path, short_wav: Path, tmp_path: Path
) -> None:
    with pytest.raises(VideoError, match="the picture is 176x144 .* above max_pixels 25343"):
        lsk.sync(carphone_mp4, short_wav, model="viseme", output=tmp_path / "o.mp4", max_pixels=176 * 144 - 1)
    assert VideoSource(carphone_mp4, max_pixels=176 * 144).info.width == 176  # at the limit: accepted
    assert VideoSource(carphone_mp4, max_pixels=None).info.height == 144  # None: no limit


def test_a_1x1_image_gets_one_line(short_wav: Path, tmp_path: Path) -> None:
    """Was a cv2.error traceback from the input check (issue 18)."""
    dot = tmp_path / "dot.png"
    cv2.imwrite(str(dot), np.full((1, 1, 3), 128, np.uint8))
    assert VideoSource(dot).info.width == 1
    with pytest.raises(VideoError, match="too small to hold a face"):  # before any model loads
        lsk.sync(dot, short_wav, model="viseme", output=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_frames_for_bytes() -> None:
    assert frames_for_bytes(4000 * 4000 * 3, 512 * 2**20, 48) == 11  # 48 would hold 2.3 GB
    assert frames_for_bytes(1920 * 1080 * 3, 512 * 2**20, 48) == 48  # 1080p: the usual depth
    assert frames_for_bytes(10**9, 1, 48) == 2  # never below two: the producer can run ahead
    assert frames_for_bytes(0, 1, 48) == 48


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_odd_sized_photo_comes_out_at_its_size_with_a_byte_bounded_queue(
    astronaut_png: Path, short_wav: Path, tmp_path: Path, suffix: str
) -> None:
    """254x263 in gave 254x264 out (issue 21); the queue holds what its byte budget allows."""
    photo = cv2.imread(str(astronaut_png))[20:283, 130:384]  # 254 x 263, the face inside
    src = tmp_path / "odd.png"
    cv2.imwrite(str(src), photo)
    out = tmp_path / f"odd{suffix}"
    frame_bytes = 254 * 263 * 3
    result = lsk.sync(src, short_wav, model="viseme", output=out, frame_queue_bytes=5 * frame_bytes + 7)
    assert (result.width, result.height) == (254, 263)
    frames = read_video_frames(out)
    assert frames.shape[1:] == (263, 254, 3)
    # five frames fit: four wait in the queue, one is prepared ahead of it
    assert (result.scheduler["frame_queue_frames"], result.scheduler["prepare_ahead_frames"]) == (4, 1)
    assert result.scheduler["frame_queue_bytes"] == 5 * frame_bytes
    # outside the face the picture is the source's (codec noise only)
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB).astype(float)
    assert np.abs(frames[0, :40].astype(float) - rgb[:40]).mean() < 6.0
