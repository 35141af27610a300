"""VideoSource on real media: carphone decode, index sequences, rotation, VFR, images, errors, memory."""

from __future__ import annotations

import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from lipsynckit.errors import InputNotFoundError, VideoError
from lipsynckit.media import VideoSource, index_map, is_image_file, probe, read_video_frames


@pytest.fixture(scope="module")
def carphone_frames(carphone_mp4: Path) -> np.ndarray:
    return read_video_frames(carphone_mp4)


def _pyav_frames(path: Path) -> np.ndarray:
    """Independent reference: plain PyAV decode, no regularisation, no rotation."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_carphone_decode(carphone_mp4: Path, carphone_frames: np.ndarray) -> None:
    src = VideoSource(carphone_mp4)
    info = src.info
    assert (info.width, info.height, info.num_frames) == (176, 144, 120)
    assert src.fps_fraction == Fraction(30000, 1001) and info.fps == pytest.approx(29.97, abs=0.01)
    assert info.rotation == 0 and not info.is_image and not info.has_audio
    assert info.duration == pytest.approx(120 * 1001 / 30000)
    assert probe(carphone_mp4) == info
    assert carphone_frames.shape == (120, 144, 176, 3) and carphone_frames.dtype == np.uint8
    assert np.array_equal(carphone_frames, _pyav_frames(carphone_mp4))
    assert carphone_frames.std(axis=0).mean() > 5  # a moving video, not one frame repeated


@pytest.mark.parametrize("mode", ["loop", "pingpong"])
def test_frames_for_loop_and_pingpong(carphone_mp4: Path, carphone_frames: np.ndarray, mode: str) -> None:
    idx = index_map(300, 120, mode)
    got = np.stack(list(VideoSource(carphone_mp4).frames(idx)))
    assert np.array_equal(got, carphone_frames[idx])


def test_frames_for_arbitrary_jumps(carphone_mp4: Path, carphone_frames: np.ndarray) -> None:
    idx = [5, 6, 6, 100, 3, 119, 0, 7, 6, 5, 4, 90, 89, 88, 30, 31, 119, 118]
    got = list(VideoSource(carphone_mp4).frames(idx))
    for i, g in zip(idx, got, strict=True):
        assert np.array_equal(g, carphone_frames[i]), i
    # Yielded frames belong to the caller: scribbling on one does not change a repeat or a reread.
    gen = VideoSource(carphone_mp4).frames([6, 6, 5, 4, 5, 6, 6])
    for i in [6, 6, 5, 4, 5, 6, 6]:
        f = next(gen)
        assert np.array_equal(f, carphone_frames[i]), i
        f[:] = 0
    with pytest.raises(IndexError):
        list(VideoSource(carphone_mp4).frames([0, 120]))


def _write_rotated(src: Path, dst: Path, degrees_ccw: int, n: int = 8) -> None:
    """A phone-style file: upright pixels stored sideways plus a display matrix saying how to turn them."""
    with av.open(str(src)) as c_in, av.open(str(dst), "w") as c_out:
        s = c_out.add_stream("libx264", rate=Fraction(30000, 1001))
        s.width, s.height, s.pix_fmt = 176, 144, "yuv420p"
        s.options = {"crf": "10", "preset": "ultrafast"}
        s.set_display_rotation(degrees_ccw)
        for i, f in enumerate(c_in.decode(video=0)):
            if i == n:
                break
            f.pts, f.time_base = i, Fraction(1001, 30000)
            f.pict_type = av.video.frame.PictureType.NONE
            for p in s.encode(f):
                c_out.mux(p)
        for p in s.encode(None):
            c_out.mux(p)


@pytest.mark.parametrize(("ccw", "expected_cw"), [(90, 270), (-90, 90), (180, 180)])
def test_rotation_metadata_is_applied(carphone_mp4: Path, tmp_path: Path, ccw: int, expected_cw: int) -> None:
    path = tmp_path / f"rot{ccw}.mp4"
    _write_rotated(carphone_mp4, path, ccw)
    raw = _pyav_frames(path)  # as stored: 144 x 176
    src = VideoSource(path)
    assert src.info.rotation == expected_cw
    turned = (ccw // 90) % 4
    w, h = (144, 176) if turned % 2 else (176, 144)
    assert (src.info.width, src.info.height, src.info.num_frames) == (w, h, 8)
    got = np.stack(list(src))
    assert got.shape == (8, h, w, 3)
    assert np.array_equal(got, np.rot90(raw, turned, axes=(1, 2)))
    if ccw == -90:  # a phone recording held upright: turn clockwise
        assert np.array_equal(got[0], cv2.rotate(raw[0], cv2.ROTATE_90_CLOCKWISE))
    assert np.array_equal(np.stack(list(src.frames([7, 6, 5]))), got[[7, 6, 5]])


def test_variable_frame_rate_is_regularised(tmp_path: Path) -> None:
    """Frames at irregular times come out at 25 fps: dropped where two share a slot, held across gaps."""
    times_ms = [0, 40, 80, 100, 110, 200, 240, 250, 400, 440]
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "bgr0"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    src = VideoSource(path)
    assert src.fps_fraction == 25 and src.info.num_frames == 12
    shown = [int(f[0, 0, 0]) // 20 for f in src]
    # slot (40 ms each): 0 1 2 3 4 5 6 7 8 9 10 11; frame 4 (110 ms) loses slot 3 to frame 3 but is on
    # screen at 160 ms; frame 7 (250 ms) stays on screen until frame 8 at 400 ms.
    assert shown == [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 8, 9]
    rev = [int(f[0, 0, 0]) // 20 for f in src.frames(range(11, -1, -1))]
    assert rev == shown[::-1]
    for j in range(12):  # every start reached by a seek (all FFV1 frames are key frames)
        assert [int(f[0, 0, 0]) // 20 for f in src.frames([j, j + 1] if j < 11 else [j])][0] == shown[j], j


def test_still_images(grace_hopper_jpg: Path, astronaut_png: Path, tmp_path: Path) -> None:
    for path in (grace_hopper_jpg, astronaut_png):
        bgr = cv2.imread(str(path))
        assert bgr is not None
        ref = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        src = VideoSource(path, fps_for_images=30.0)
        assert src.info.is_image and src.info.num_frames == 1 and src.info.fps == 30.0
        assert (src.info.height, src.info.width) == ref.shape[:2]
        frames = list(src)
        assert len(frames) == 1 and np.array_equal(frames[0], ref)
        looped = list(src.frames(index_map(5, 1, "pingpong")))
        assert len(looped) == 5 and all(np.array_equal(f, ref) for f in looped)
        with pytest.raises(IndexError):
            list(src.frames([1]))
    disguised = tmp_path / "photo.bin"  # decided by content, not by the name
    shutil.copy(astronaut_png, disguised)
    assert is_image_file(disguised) and VideoSource(disguised).info.is_image
    assert VideoSource(grace_hopper_jpg).info.fps == 25.0

    # A phone photo stored sideways with an EXIF orientation tag comes out upright.
    from PIL import Image, ImageOps

    with Image.open(grace_hopper_jpg) as im:
        exif = im.getexif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        sideways = tmp_path / "sideways.jpg"
        im.save(sideways, exif=exif.tobytes(), quality=95)
    with Image.open(sideways) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    src = VideoSource(sideways)
    assert (src.info.width, src.info.height) == (upright.shape[1], upright.shape[0]) == (600, 512)
    assert np.abs(next(iter(src)).astype(int) - upright).mean() < 2.0


def test_missing_corrupt_and_wrong_files(carphone_mp4: Path, speech_wav: Path, tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError) as nf:
        VideoSource(tmp_path / "nope.mp4")
    assert nf.value.stage == "video"

    truncated = tmp_path / "truncated.mp4"
    data = carphone_mp4.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as e:
        VideoSource(truncated)
    assert e.value.path == str(truncated) and e.value.stage == "video" and e.value.remedy

    # Index first (faststart, as we write mp4s), data cut off: the index promises frames that are gone.
    whole = tmp_path / "whole.mp4"
    with (
        av.open(str(carphone_mp4)) as c_in,
        av.open(str(whole), "w", options={"movflags": "+faststart"}) as c_out,
    ):
        s = c_out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 176, 144, "yuv420p", {"preset": "ultrafast"}
        for i, f in enumerate(c_in.decode(video=0)):
            f.pts, f.time_base, f.pict_type = i, Fraction(1, 25), av.video.frame.PictureType.NONE
            for p in s.encode(f):
                c_out.mux(p)
        for p in s.encode(None):
            c_out.mux(p)
    assert VideoSource(whole).info.num_frames == 120
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(VideoError, match="truncated"):
        VideoSource(cut)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError):
        VideoSource(garbage)

    with pytest.raises(VideoError, match="audio file"):
        VideoSource(speech_wav)

    bad_jpg = tmp_path / "bad.jpg"
    bad_jpg.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    with pytest.raises(VideoError, match="image"):
        VideoSource(bad_jpg)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _frame_id(frame: np.ndarray) -> int:
    lo, hi = (int(round((frame[8:24, x : x + 16].mean() - 8) / 16)) for x in (8, 40))
    return hi * 16 + lo


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memory_stays_flat_on_a_long_video(tmp_path: Path) -> None:
    """Two minutes of video (110 MB as raw RGB) decode with a few MB of resident memory growth."""
    w, h, n = 128, 96, 3000
    path = tmp_path / "long.mp4"
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "30"}
        img = np.empty((h, w, 3), np.uint8)
        for i in range(n):
            img[..., 0], img[..., 1], img[..., 2] = (xx + i) % 256, (2 * yy + i) % 256, i % 256
            img[:32, :32], img[:32, 32:64] = (i % 16) * 16 + 8, (i // 16 % 16) * 16 + 8  # frame id
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    raw_bytes = n * w * h * 3
    src = VideoSource(path)
    assert src.info.num_frames == n and src.info.duration == 120.0

    base = _rss_bytes()
    peak, ids = base, []
    for i, frame in enumerate(src):
        ids.append(_frame_id(frame))
        if i % 50 == 0:
            peak = max(peak, _rss_bytes())
    assert ids == [i % 256 for i in range(n)]
    assert peak - base < raw_bytes // 4, (peak - base) / 2**20

    # A backward run over 1500 frames holds one block, not the run.
    base = _rss_bytes()
    peak = base
    ids = []
    for j, frame in enumerate(src.frames(range(1499, -1, -1))):
        ids.append(_frame_id(frame))
        if j % 50 == 0:
            peak = max(peak, _rss_bytes())
    assert ids == [i % 256 for i in range(1499, -1, -1)]
    assert peak - base < raw_bytes // 4, (peak - base) / 2**20


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "yuv444p", "yuv422p10le", "gray"])
def test_stream_converter_gives_plain_pyav_pixels(
    carphone_frames: np.ndarray, tmp_path: Path, pix_fmt: str
) -> None:
    """Frames are converted with one swscale context per stream (3-4 ms saved per 720p frame); the
    pixels equal PyAV's per-frame conversion for every pixel format a camera or editor may give."""
    path = tmp_path / f"{pix_fmt}.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg" if pix_fmt == "yuvj420p" else "ffv1", rate=25)  # full-range JPEG: mjpeg
        s.width, s.height, s.pix_fmt = 176, 144, pix_fmt
        for rgb in carphone_frames[:12]:
            for pkt in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    got = np.stack(list(VideoSource(path)))
    assert got.shape == (12, 144, 176, 3)
    assert np.array_equal(got, _pyav_frames(path))


def test_stream_converter_honours_the_bt709_tag(carphone_frames: np.ndarray, tmp_path: Path) -> None:
    """Our mp4 output is BT.709-tagged H.264 (as HD cameras write): the stream converter reads the tag
    exactly as PyAV's per-frame conversion does, and a flat colour survives the round trip."""
    from lipsynckit.media import VideoSink

    path = tmp_path / "bt709.mp4"
    flat = np.zeros((144, 176, 3), np.uint8)
    flat[:, :88] = (200, 30, 30)
    flat[:, 88:] = (30, 30, 200)
    with VideoSink(path, fps=25, size=(176, 144), crf=0) as sink:
        for rgb in [flat, *carphone_frames[:6]]:
            sink.write(rgb)
    with av.open(str(path)) as c:
        assert next(c.decode(video=0)).colorspace == 1  # AVCOL_SPC_BT709
    got = np.stack(list(VideoSource(path)))
    assert np.array_equal(got, _pyav_frames(path))
    assert np.abs(got[0, 40:100, 20:60].astype(int) - (200, 30, 30)).max() <= 2
