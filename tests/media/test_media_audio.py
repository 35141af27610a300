"""load_audio(): real speech through soundfile and through PyAV (mp3, m4a, a video's track), and errors."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.errors import AudioError, InputNotFoundError
from lipsynckit.media import load_audio, read_audio_track


def _encode(src: Path, dst: Path, codec: str, fmt: str, rate: int | None = None) -> Path:
    """Compress a WAV with FFmpeg's own encoders (the way users' mp3/m4a files are made)."""
    x, sr = sf.read(str(src), dtype="float32", always_2d=True)
    rate = rate or sr
    with av.open(str(dst), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(s, av.audio.stream.AudioStream)
        s.codec_context.time_base = Fraction(1, rate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        resampler = av.AudioResampler(
            format=s.format.name, layout="mono", rate=rate, frame_size=s.frame_size or None
        )
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return dst


def _aligned_corr(ref: np.ndarray, x: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Best lag (x later than ref by lag samples) and the correlation there."""
    best = (0, -1.0)
    n = min(len(ref), len(x)) - max_lag
    for lag in range(-max_lag, max_lag + 1):
        a = ref[max_lag : max_lag + n - max_lag]
        b = x[max_lag + lag : max_lag + lag + n - max_lag]
        c = float(np.corrcoef(a, b)[0, 1])
        if c > best[1]:
            best = (lag, c)
    return best


def test_wav_through_soundfile(speech_wav: Path) -> None:
    clip = load_audio(speech_wav)
    ref, sr = sf.read(str(speech_wav), dtype="float32")
    assert clip.sample_rate == sr == 16000
    assert clip.samples.shape == (1, len(ref)) and clip.samples.dtype == torch.float32
    assert np.array_equal(clip.samples[0].numpy(), ref)
    assert clip.source == str(speech_wav)


@pytest.mark.parametrize(("codec", "fmt", "suffix"), [("libmp3lame", "mp3", ".mp3"), ("aac", "ipod", ".m4a")])
def test_compressed_speech_loads_back_close(
    speech_wav: Path, tmp_path: Path, codec: str, fmt: str, suffix: str
) -> None:
    path = _encode(speech_wav, tmp_path / f"speech{suffix}", codec, fmt)
    ref = load_audio(speech_wav).samples[0].numpy()
    clip = load_audio(path)
    assert clip.sample_rate == 16000 and clip.channels == 1
    x = clip.samples[0].numpy()
    assert abs(len(x) - len(ref)) <= 2048  # at most the encoder's padding
    lag, corr = _aligned_corr(ref, x, 64)
    assert abs(lag) <= 2, lag  # FFmpeg drops the encoder delay: no shift
    assert corr > 0.98, corr
    # and resampled on the way
    assert load_audio(path, sample_rate=22050).sample_rate == 22050


def test_stereo_kept_or_mixed(speech_wav: Path, tmp_path: Path) -> None:
    x, sr = sf.read(str(speech_wav), dtype="float32")
    stereo = tmp_path / "stereo.flac"
    sf.write(str(stereo), np.stack([x, 0.5 * x], axis=1), sr)
    both = load_audio(stereo, mono=False)
    assert both.samples.shape == (2, len(x))
    mixed = load_audio(stereo)
    assert mixed.channels == 1
    np.testing.assert_allclose(mixed.samples[0].numpy(), 0.75 * x, atol=1e-4)  # flac is 16-bit


def test_video_without_audio_track(carphone_mp4: Path) -> None:
    with pytest.raises(AudioError, match="this video has no audio track; pass an audio file") as e:
        load_audio(carphone_mp4)
    assert e.value.stage == "audio" and e.value.path == str(carphone_mp4) and e.value.remedy


def test_audio_track_of_a_video(speech_wav: Path, carphone_mp4: Path, tmp_path: Path) -> None:
    from lipsynckit.media import VideoSink, VideoSource

    speech = load_audio(speech_wav)
    out = tmp_path / "talk.mp4"
    src = VideoSource(carphone_mp4)
    with VideoSink(out, src.fps_fraction, (176, 144), audio=speech) as sink:
        for f in src:
            sink.write(f)
    track = read_audio_track(out)
    assert track.sample_rate == 16000
    lag, corr = _aligned_corr(speech.samples[0].numpy(), track.samples[0].numpy(), 64)
    assert abs(lag) <= 2 and corr > 0.98


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError) as e:
        load_audio(tmp_path / "nope.wav")
    assert e.value.stage == "audio" and "nope.wav" in str(e.value)


def test_empty_wav(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioError, match="empty") as e:
        load_audio(p)
    assert e.value.path == str(p) and e.value.remedy


def test_silent_wav_refused_unless_allowed(tmp_path: Path) -> None:
    p = tmp_path / "silent.wav"
    sf.write(str(p), np.full(16000, 2e-5, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="silent"):
        load_audio(p)
    assert load_audio(p, allow_silent=True).num_samples == 16000
    quiet = tmp_path / "quiet.wav"  # -60 dBFS is quiet, not silent
    sf.write(str(quiet), np.full(16000, 1e-3, np.float32), 16000, subtype="FLOAT")
    assert load_audio(quiet).num_samples == 16000


def test_corrupt_audio(speech_wav: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(b"RIFF\x00\x10\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    with pytest.raises(AudioError) as e:
        load_audio(garbage)
    assert e.value.stage == "audio" and e.value.path == str(garbage)
    mp3 = tmp_path / "not_really.mp3"
    mp3.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError):
        load_audio(mp3)
    copy = tmp_path / "folder"
    copy.mkdir()
    with pytest.raises(AudioError, match="folder"):
        load_audio(copy)
    shutil.copy(speech_wav, tmp_path / "ok.wav")
    assert load_audio(tmp_path / "ok.wav").num_samples > 0
