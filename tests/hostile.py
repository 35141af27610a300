"""The hostile corpus: files a careless or hostile user could hand lipsynckit, made by the tests.

One factory for the fuzz suite and the memory-bound tests. Each maker writes one file under the
test's ``tmp_path``. The payload checkpoints write a marker file
when their code runs, so a test proves that nothing ran by the marker's absence. The helpers
(:func:`sha256_tree`, :func:`one_error_line`) are what every fuzz case asserts with.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


class _PayloadModule(torch.nn.Module):
    """A scripted module whose ``__setstate__`` creates a file (``torch.from_file(shared=True)``):
    ``torch.jit.load`` runs it."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.register_buffer("b", torch.arange(4.0))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.b

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.b, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        t = torch.from_file(state[1], shared=True, size=8)  # creates the marker file
        self.b = state[0] + t[0] * 0
        self.marker = state[1]
        self.training = state[2]


class _Reduce:
    """A pickle payload: unpickling it opens (creates) the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def make_torchscript_payload(path: Path, marker: Path) -> Path:
    torch.jit.script(_PayloadModule(str(marker))).save(str(path))
    assert not marker.exists()
    return path


def make_pickle_payload(path: Path, marker: Path, legacy: bool = False) -> Path:
    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "x": _Reduce(str(marker))},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    assert not marker.exists()
    return path


#: a pickle that calls a storage class to allocate 4 GB (``torch.FloatStorage(10**9)``)
STORAGE_BOMB = b"\x80\x02ctorch\nFloatStorage\nJ" + (10**9).to_bytes(4, "little") + b"\x85R."


def make_pickle_in_torchscript_zip(path: Path, marker: Path, data_pkl: bytes | None = None) -> Path:
    """A real TorchScript archive whose ``data.pkl`` is replaced by a pickle that opens the marker
    (or by ``data_pkl``)."""
    import pickle

    src = path.with_suffix(".orig.pt")
    torch.jit.script(torch.nn.Linear(2, 3)).save(str(src))
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("/data.pkl"):
                data = data_pkl if data_pkl is not None else pickle.dumps(_Reduce(str(marker)), protocol=2)
            zout.writestr(item, data)
    src.unlink()
    return path


def make_size_changing_video(
    path: Path, sizes: tuple[tuple[int, int], ...] = ((192, 192), (256, 224)), face: np.ndarray | None = None
) -> Path:
    """A video whose frame size changes mid-stream (mkv or ts, by suffix): MPEG-2 packets of one
    encoder per size, muxed into one stream (what concatenated broadcast recordings look like). The
    frames show ``face`` (RGB) resized to each size, or noise."""
    import cv2

    fmt = {".mkv": "matroska", ".ts": "mpegts"}[path.suffix]
    rng = np.random.default_rng(0)
    tb = Fraction(1, 25)
    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream("mpeg2video", rate=25)
        stream.width, stream.height = sizes[0]
        stream.pix_fmt = "yuv420p"
        pts = 0
        for w, h in sizes:
            enc = av.CodecContext.create("mpeg2video", "w")
            enc.width, enc.height, enc.pix_fmt, enc.time_base = w, h, "yuv420p", tb
            enc.framerate = Fraction(25)
            enc.gop_size = 5
            packets = []
            for _ in range(5):
                img = (
                    rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                    if face is None
                    else cv2.resize(face, (w, h))
                )
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = pts, tb
                pts += 1
                packets += enc.encode(frame)
            packets += enc.encode(None)
            for packet in packets:
                packet.stream = stream
                packet.time_base = tb
                c.mux(packet)
    return path


def make_faststart_truncated(src: Path, path: Path, keep: float = 0.6) -> Path:
    """``src``'s video remuxed with its index first (``+faststart``), then cut short: the header
    still opens, the last frames are gone."""
    full = path.with_name(path.stem + ".full.mp4")
    with (
        av.open(str(src)) as i,
        av.open(str(full), "w", format="mp4", options={"movflags": "+faststart"}) as o,
    ):
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = out
            o.mux(packet)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_truncated(src: Path, path: Path, keep: float = 0.4) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def sha256_tree(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (or ``root`` itself) by relative path -> sha256."""
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_error_line(err: str) -> str:
    """The CLI's stderr holds exactly one ``error:`` message (its remedy on the ``->`` line under it)
    and no traceback; returns that message."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.lstrip().startswith("->")]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".partial" in p.name or p.name.endswith(".old")]


def png_with_header(path: Path, width: int, height: int, color_type: int = 2) -> Path:
    """A PNG whose IHDR claims ``width x height`` but whose data is a few bytes (a "decompression bomb"
    header); ``color_type`` 0 grey, 2 RGB, 6 RGBA."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path
