"""VideoSink: lossless round trip, mp4 with audio, png folders, atomic writes and failures."""

from __future__ import annotations

import errno
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import OutputError
from lipsynckit.media import (
    VideoSink,
    VideoSource,
    index_map,
    load_audio,
    read_audio_track,
    read_video_frames,
)
from lipsynckit.types import AudioClip


@pytest.fixture(scope="module")
def carphone_frames(carphone_mp4: Path) -> np.ndarray:
    return read_video_frames(carphone_mp4)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_ffv1_round_trip_is_bit_exact(carphone_frames: np.ndarray, speech_wav: Path, tmp_path: Path) -> None:
    speech = load_audio(speech_wav)
    out = tmp_path / "out.mkv"
    with VideoSink(out, Fraction(30000, 1001), (176, 144), audio=speech, mode="ffv1") as sink:
        for f in carphone_frames:
            sink.write(f)
    assert np.array_equal(read_video_frames(out), carphone_frames)
    src = VideoSource(out)
    assert src.fps_fraction == Fraction(30000, 1001) and src.info.has_audio
    track = read_audio_track(out)
    assert track.sample_rate == 16000 and torch.equal(track.samples, speech.samples)  # float PCM: exact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]  # no temp left behind


def test_mp4_has_audio_and_follows_its_length(
    carphone_frames: np.ndarray, speech_wav: Path, tmp_path: Path
) -> None:
    speech = load_audio(speech_wav)  # 7.1 s: the 4 s video is ping-ponged to cover it
    fps = Fraction(30000, 1001)
    n = int(np.ceil(speech.duration * fps))
    out = tmp_path / "out.mp4"
    with VideoSink(out, 29.97002997002997, (176, 144), audio=speech) as sink:  # float fps kept exact
        for i in index_map(n, 120, "pingpong"):
            sink.write(carphone_frames[i])
    assert sink.frames_written == n
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert a.codec_context.name == "aac" and a.codec_context.sample_rate == 16000
        assert v.average_rate == fps
        assert v.duration is not None and v.time_base is not None
        assert a.duration is not None and a.time_base is not None
        video_s = float(v.duration * v.time_base)
        audio_s = float(a.duration * a.time_base)
    assert abs(video_s - n / fps) < 1e-6
    assert abs(audio_s - speech.duration) < 1 / float(fps)
    assert abs(video_s - speech.duration) < 1 / float(fps)
    head = out.read_bytes()[:4096]
    assert b"moov" in head  # faststart: the index comes first
    decoded = read_video_frames(out)
    assert decoded.shape == (n, 144, 176, 3)
    assert _psnr(decoded[:120], carphone_frames) > 32.0  # crf 18


@pytest.mark.parametrize(
    ("name", "mode", "min_psnr"),
    [
        ("odd.mp4", "mp4", 40.0),
        ("odd.mov", "mp4", 40.0),
        ("odd.webm", "webm", 30.0),
        ("odd.mkv", "ffv1", None),
    ],
)
def test_odd_sizes_are_kept_exactly_in_every_container(
    carphone_frames: np.ndarray, tmp_path: Path, name: str, mode: str, min_psnr: float | None
) -> None:
    """175x143 in, 175x143 out (issue 21: 254x263 came out 254x264): H.264 as 4:4:4, VP9 and FFV1 as is."""
    src = np.ascontiguousarray(carphone_frames[:25, :143, :175])
    out = tmp_path / name
    with VideoSink(out, 25, (175, 143), mode=mode, crf=0) as sink:  # type: ignore[arg-type]
        for f in src:
            sink.write(f)
    decoded = read_video_frames(out)
    assert decoded.shape == (25, 143, 175, 3)
    if min_psnr is None:
        assert np.array_equal(decoded, src)  # FFV1 is lossless
    else:
        assert _psnr(decoded, src) > min_psnr
    with av.open(str(out)) as c:  # the stream itself says the size: no player-side crop is needed
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == (175, 143)
        if mode == "mp4":
            assert cc.pix_fmt == "yuv444p"


def test_png_folder_keeps_odd_sizes(carphone_frames: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    with VideoSink(out, 25, (175, 143), mode="png") as sink:
        sink.write(np.ascontiguousarray(carphone_frames[0, :143, :175]))
    bgr = cv2.imread(str(out / "frame_000000.png"))
    assert bgr.shape == (143, 175, 3)
    assert np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), carphone_frames[0, :143, :175])


def test_even_mp4_stays_yuv420p_and_odd_audio_rates_are_resampled(
    carphone_frames: np.ndarray, tmp_path: Path
) -> None:
    t = torch.arange(11000) / 11000.0
    tone = AudioClip((0.5 * torch.sin(2 * torch.pi * 440 * t))[None], 11000)  # AAC has no 11 kHz
    out = tmp_path / "even.mp4"
    with VideoSink(out, 25, (176, 144), audio=tone, crf=0) as sink:
        for f in carphone_frames[:25]:
            sink.write(f)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"  # plays everywhere
    track = read_audio_track(out)
    assert track.sample_rate == 11025  # resampled by libsoxr: the tone keeps its pitch and level
    assert abs(track.duration - 1.0) < 0.04
    x = track.numpy()[2000:9000]
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert abs(np.fft.rfftfreq(len(x), 1 / 11025)[np.argmax(spec)] - 440.0) < 3.0
    assert abs(np.abs(x).max() - 0.5) < 0.05


def test_png_folder(carphone_frames: np.ndarray, speech_wav: Path, tmp_path: Path) -> None:
    speech = load_audio(speech_wav)
    out = tmp_path / "frames"
    with VideoSink(out, 25, (176, 144), audio=speech, mode="png") as sink:
        for f in carphone_frames[:10]:
            sink.write(f)
    names = sorted(p.name for p in out.iterdir())
    # the marker says lipsynckit made this folder: a later run may replace it (docs/reliability.md)
    assert names == [".lipsynckit-output", "audio.wav"] + [f"frame_{i:06d}.png" for i in range(10)]
    for i in (0, 9):
        bgr = cv2.imread(str(out / f"frame_{i:06d}.png"))
        assert bgr is not None
        png = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        assert np.array_equal(png, carphone_frames[i])
    wav, sr = sf.read(str(out / "audio.wav"), dtype="float32")
    assert sr == 16000 and np.array_equal(wav, speech.samples[0].numpy())
    # Writing again replaces the folder as a whole.
    with VideoSink(out, 25, (176, 144), mode="png") as sink:
        sink.write(carphone_frames[0])
    assert sorted(p.name for p in out.iterdir()) == [".lipsynckit-output", "frame_000000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


@pytest.mark.parametrize(("mode", "name"), [("mp4", "out.mp4"), ("ffv1", "out.mkv"), ("png", "out")])
def test_a_failing_write_leaves_nothing(
    carphone_frames: np.ndarray, tmp_path: Path, mode: str, name: str
) -> None:
    out = tmp_path / name
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoSink(out, 25, (176, 144), mode=mode) as sink:
            for i, f in enumerate(carphone_frames):
                if i == 5:
                    raise RuntimeError("model crashed")
                sink.write(f)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="shape"):
        with VideoSink(out, 25, (176, 144), mode=mode) as sink:
            sink.write(carphone_frames[0])
            sink.write(carphone_frames[0][:100])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="no frames"):
        with VideoSink(out, 25, (176, 144), mode=mode):
            pass
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_output(carphone_frames: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with VideoSink(out, 25, (176, 144)) as sink:
        for f in carphone_frames[:5]:
            sink.write(f)
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with VideoSink(out, 25, (176, 144)) as sink:
            sink.write(carphone_frames[0])
            raise KeyboardInterrupt
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_disk_full_is_an_output_error(
    carphone_frames: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = VideoSink._encode_video

    def filling_disk(self: VideoSink, frame: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, frame)

    monkeypatch.setattr(VideoSink, "_encode_video", filling_disk)
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="no space left") as e:
        with VideoSink(out, 25, (176, 144)) as sink:
            for f in carphone_frames[:10]:
                sink.write(f)
    assert (
        e.value.stage == "output" and e.value.path == str(out) and "free disk space" in (e.value.remedy or "")
    )
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_an_output_error(carphone_frames: np.ndarray, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as e:
        with VideoSink(blocker / "out.mp4", 25, (176, 144)) as sink:
            sink.write(carphone_frames[0])
    assert e.value.stage == "output"


def test_x264_look_ahead_is_bounded_in_bytes(
    carphone_frames: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x264 keeps the preset's look-ahead (40 at medium) unless the pictures would pass the byte bound."""
    from lipsynckit.media import sink as sink_module

    def encode(name: str) -> bytes:
        with VideoSink(tmp_path / name, 25, (176, 144)) as sink:
            for f in carphone_frames[:10]:
                sink.write(f)
        return (tmp_path / name).read_bytes()  # x264 writes its settings into the stream

    assert b"rc_lookahead=40" in encode("usual.mp4")
    monkeypatch.setattr(sink_module, "X264_LOOKAHEAD_BYTES", int(176 * 144 * 1.5 * 5))  # five pictures
    assert b"rc_lookahead=5" in encode("bounded.mp4")


def test_encoder_threads_reach_x264(carphone_frames: np.ndarray, tmp_path: Path) -> None:
    """``threads`` is what x264 runs with (its own SEI says so); None leaves x264 its automatic count."""

    def x264_settings(out: Path) -> str:
        with av.open(str(out)) as c:
            first = bytes(next(iter(c.demux(video=0))))
        return first[first.index(b"options: ") :].split(b"\x00")[0].decode("ascii", "replace")

    one, auto = tmp_path / "one.mp4", tmp_path / "auto.mp4"
    for out, threads in ((one, 1), (auto, None)):
        with VideoSink(out, 25, (176, 144), threads=threads) as sink:
            for f in carphone_frames[:5]:
                sink.write(f)
    assert " threads=1 " in x264_settings(one)
    assert " threads=1 " not in x264_settings(auto)


def test_manifest_jobs_encode_on_one_thread_unless_told(tmp_path: Path) -> None:
    from lipsynckit.jobs.manifest import JobSpec
    from lipsynckit.jobs.runner import JobRunner, RunDefaults

    spec = JobSpec(row=1, template=tmp_path / "t.mp4", audio=tmp_path / "a.wav", output=tmp_path / "o.mp4")
    assert JobRunner(RunDefaults()).options_for(spec).encode_threads == 1
    told = JobRunner(RunDefaults(options={"encode_threads": 3})).options_for(spec)
    assert told.encode_threads == 3
