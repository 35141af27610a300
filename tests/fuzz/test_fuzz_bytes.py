"""Arbitrary bytes under any name: the input checks and the weight reader answer with the library's
own errors (or accept the file), never another exception, and never run anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipsynckit.errors import LipSyncError, WeightsError
from lipsynckit.inputs import check_run
from lipsynckit.weights import describe_file, load_checkpoint

HEADS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"BM",
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"\x00\x00\x00\x18ftypisom",
    b"\x1aE\xdf\xa3",  # Matroska
    b"PK\x03\x04",  # a zip (torch's checkpoint container)
    b"\x80\x02",  # a pickle
    b"\x10\x00\x00\x00\x00\x00\x00\x00{",  # a safetensors header length
]
SUFFIXES = [".png", ".jpg", ".mp4", ".mkv", ".wav", ".mp3", ".pth", ".pt", ".safetensors", ".bin", ""]
fuzz = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(head=st.sampled_from(HEADS), tail=st.binary(max_size=512), suffix=st.sampled_from(SUFFIXES))
def test_any_bytes_as_the_video_or_audio(
    tmp_path_factory: pytest.TempPathFactory, speech_wav: Path, head: bytes, tail: bytes, suffix: str
) -> None:
    d = tmp_path_factory.mktemp("bytes")
    f = d / f"input{suffix}"
    f.write_bytes(head + tail)
    for video, audio in ((f, speech_wav), (speech_wav, f)):
        try:
            check_run(video, audio, d / "out.mp4")
        except LipSyncError:
            pass
    assert sorted(p.name for p in d.iterdir()) == [f.name]  # nothing written beside it


@fuzz
@given(head=st.sampled_from(HEADS), tail=st.binary(max_size=512), suffix=st.sampled_from(SUFFIXES))
def test_any_bytes_as_weights(
    tmp_path_factory: pytest.TempPathFactory, head: bytes, tail: bytes, suffix: str
) -> None:
    d = tmp_path_factory.mktemp("weights")
    f = d / f"w{suffix}"
    f.write_bytes(head + tail)
    kind, verdict, why = describe_file(f)  # never raises
    assert verdict in ("ok", "unsafe", "unreadable", "unknown format") and (verdict == "ok") == (why is None)
    try:
        load_checkpoint(f)
    except WeightsError:
        pass
    assert sorted(p.name for p in d.iterdir()) == [f.name]


def _real_files(d: Path, speech_wav: Path, carphone_mp4: Path) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    from lipsynckit.samples import sample_media

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    files = {"photo.jpg": sample_media()[0], "speech.wav": speech_wav, "carphone.mp4": carphone_mp4}
    torch.save(net.state_dict(), d / "zip.pth")
    torch.save(net.state_dict(), d / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(dict(net.state_dict()), str(d / "st.safetensors"))
    torch.jit.script(net).save(str(d / "script.pt"))
    files.update({n: d / n for n in ("zip.pth", "legacy.pth", "st.safetensors", "script.pt")})
    return files


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(
        ["photo.jpg", "speech.wav", "carphone.mp4", "zip.pth", "legacy.pth", "st.safetensors", "script.pt"]
    ),
    cut=st.floats(0.0, 1.0),
    flip=st.one_of(st.none(), st.tuples(st.floats(0.0, 1.0), st.integers(1, 255))),
)
def test_truncated_or_damaged_real_files(
    tmp_path_factory: pytest.TempPathFactory,
    speech_wav: Path,
    carphone_mp4: Path,
    name: str,
    cut: float,
    flip: tuple[float, int] | None,
) -> None:
    """A real file cut short or with one byte changed: one of our errors, or it is still accepted."""
    src_dir = tmp_path_factory.mktemp("real")
    data = bytearray(_real_files(src_dir, speech_wav, carphone_mp4)[name].read_bytes())
    data = data[: max(0, int(len(data) * cut))] if cut < 1.0 else data
    if flip is not None and data:
        at = min(len(data) - 1, int(len(data) * flip[0]))
        data[at] ^= flip[1]
    d = tmp_path_factory.mktemp("damaged")
    f = d / name
    f.write_bytes(bytes(data))
    if name.endswith((".pth", ".pt", ".safetensors")):
        describe_file(f)
        try:
            load_checkpoint(f)
        except WeightsError:
            pass
    else:
        try:
            if name == "speech.wav":
                check_run(sample_photo(), f, d / "out.mp4")
            else:
                check_run(f, speech_wav, d / "out.mp4")
        except LipSyncError:
            pass
    assert sorted(p.name for p in d.iterdir()) == [f.name]


def sample_photo() -> Path:
    from lipsynckit.samples import sample_media

    return sample_media()[0]
