"""Fixtures for manifest jobs: a template video WITH its own audio track, built from real media."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def talking_template(
    carphone_mp4: Path, speech_wavs: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """carphone (real talking man, no audio) muxed losslessly with a LibriVox sentence cut to its length."""
    import lipsynckit as lsk
    from lipsynckit.media import VideoSink, VideoSource

    src = VideoSource(carphone_mp4)
    audio = lsk.load_audio(str(speech_wavs[0])).slice(0, src.info.num_frames / src.info.fps)
    out = tmp_path_factory.mktemp("templates") / "talking.mkv"
    with VideoSink(
        out, fps=src.fps_fraction, size=(src.info.width, src.info.height), audio=audio, mode="ffv1"
    ) as sink:
        for frame in src.frames(range(src.info.num_frames)):
            sink.write(frame)
    return out


@pytest.fixture(scope="session")
def corrupt_wav(tmp_path_factory: pytest.TempPathFactory, speech_wavs: list[Path]) -> Path:
    """A real WAV's bytes with its header destroyed: neither libsndfile nor FFmpeg can read it."""
    data = bytearray(speech_wavs[1].read_bytes()[:20000])
    data[:64] = b"\x00" * 64
    p = tmp_path_factory.mktemp("bad") / "corrupt.wav"
    p.write_bytes(bytes(data))
    return p


@pytest.fixture(scope="session")
def shared_avatar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-template cache for the session: entries are keyed by the template's content, the
    model and the face options, so sharing it only saves the face pass of later tests."""
    return tmp_path_factory.mktemp("avatar")
