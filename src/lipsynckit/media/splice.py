"""Smart rendering of H.264 in MP4/MOV: re-encode only the pictures that change, copy every other packet.

A segment job changes 1.5 s of a 30 s template. Decoding and re-encoding all of it costs time and
quality (each re-encode loses a little). Here the template's video packets are read without decoding;
each changed range ``[a, b)`` of display frames grows to a *span* ``[c, d)`` that can be cut out and
replaced on its own:

- ``d`` is the first IDR key frame at or after ``b`` (or the end): pictures from an IDR on never refer
  to anything before it;
- ``c`` is the last *cut* at or before ``a``: a decode position whose packets before it hold exactly the
  display frames ``[0, c)`` (after each B-frame group; every IDR is one).

Only ``[c, d)`` is decoded (from the key frame before ``c``) and encoded again with libx264, starting
on an IDR; every packet outside the spans is written unchanged (same bytes, same pts and dts), so those
pictures decode bit for bit as the template's. The new pictures get the template's pts and the dts of
the decode positions they replace, so timestamps stay monotonic at both joins.

Parameter sets: x264 is run with the template's own x264 settings (read from x264's SEI "options:"
string) so that its SPS/PPS equal the template's; when they cannot (another encoder, scaling matrices),
the new pictures use their own ``sps-id`` (no B-frames) and that SPS/PPS pair is appended to the
template's ``avcC`` record, which may hold several; the template's packets stay byte-identical.

Audio (:func:`plan_audio`): an AAC track on FFmpeg's 1024-sample packet grid is copied packet for packet
too, and only the packets within :data:`AAC_GUARD_FRAMES` frames of a changed range are encoded again
from the spliced track (same pts, so each new packet codes the same MDCT block as the one it replaces);
any other track is encoded whole from the spliced samples, as :class:`VideoSink` does.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from lipsynckit.media.sink import VideoSink, _x264_options
from lipsynckit.media.video import _rgb
from lipsynckit.types import AudioClip

__all__ = [
    "SPLICE_SUFFIXES",
    "PacketIndex",
    "SpliceSink",
    "SpliceUnsupported",
    "decode_span",
    "picture_rgb",
    "splice_video",
]

log = logging.getLogger(__name__)

#: outputs written by smart rendering (the template must be H.264 in MP4/MOV too)
SPLICE_SUFFIXES = (".mp4", ".mov")
_PIX_FMTS = ("yuv420p", "yuvj420p", "yuv444p")
# x264 options (as its SEI writes them) that shape the SPS/PPS, and their x264-params names
_HEADER_KEYS = {
    "cabac": "cabac",
    "ref": "ref",
    "bframes": "bframes",
    "b_pyramid": "b-pyramid",
    "weightb": "weightb",
    "weightp": "weightp",
    "8x8dct": "8x8dct",
    "keyint": "keyint",
    "keyint_min": "min-keyint",
    "scenecut": "scenecut",
    "open_gop": "open-gop",
    "constrained_intra": "constrained-intra",
    "interlaced": None,  # must be 0
    "cqm": None,  # must be 0 (flat matrices)
    "crf": "crf",
}


class SpliceUnsupported(Exception):
    """This template cannot be smart-rendered; the message says why (for a note and a log line)."""


# --------------------------------------------------------------------------- H.264 bitstream helpers
def _unescape(nal: bytes) -> bytes:
    """RBSP bytes of a NAL unit (emulation prevention bytes 00 00 03 removed)."""
    return re.sub(b"\x00\x00\x03", b"\x00\x00", nal)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        v = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        v = 1
        for _ in range(zeros):
            v = (v << 1) | self.bit()
        return v - 1


def sps_id(nal: bytes) -> int:
    """``seq_parameter_set_id`` of an SPS NAL unit (header byte included)."""
    return _Bits(_unescape(nal[4:])).ue()


def pps_id(nal: bytes) -> int:
    """``pic_parameter_set_id`` of a PPS NAL unit (header byte included)."""
    return _Bits(_unescape(nal[1:])).ue()


def length_prefixed_nals(data: bytes, size: int) -> list[bytes]:
    """The NAL units of one MP4 sample (each prefixed by its ``size``-byte length)."""
    out, pos = [], 0
    while pos + size <= len(data):
        n = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        if n == 0 or pos + n > len(data):
            raise SpliceUnsupported("a video packet's NAL lengths do not add up")
        out.append(data[pos : pos + n])
        pos += n
    return out


def annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01), as encoders emit."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    out = []
    for i, s in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        out.append(data[s:end].rstrip(b"\x00") if i + 1 < len(starts) else data[s:end])
    return [n for n in out if n]


@dataclass
class AvcConfig:
    """An ``AVCDecoderConfigurationRecord`` (the ``avcC`` box): NAL length size and parameter sets."""

    head: bytes  # version, profile, compatibility, level
    length_size: int
    sps: list[bytes]
    pps: list[bytes]
    tail: bytes  # High-profile extension, kept verbatim

    @classmethod
    def parse(cls, data: bytes) -> AvcConfig:
        if len(data) < 7 or data[0] != 1:
            raise SpliceUnsupported("the H.264 stream has no avcC record (Annex B in MP4)")
        length_size = (data[4] & 3) + 1
        pos, sps, pps = 6, [], []
        for _ in range(data[5] & 0x1F):
            n = int.from_bytes(data[pos : pos + 2], "big")
            sps.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        count = data[pos]
        pos += 1
        for _ in range(count):
            n = int.from_bytes(data[pos : pos + 2], "big")
            pps.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        return cls(data[:4], length_size, sps, pps, data[pos:])

    def to_bytes(self) -> bytes:
        out = bytearray(self.head)
        out.append(0xFC | (self.length_size - 1))
        out.append(0xE0 | len(self.sps))
        for s in self.sps:
            out += len(s).to_bytes(2, "big") + s
        out.append(len(self.pps))
        for p in self.pps:
            out += len(p).to_bytes(2, "big") + p
        return bytes(out + self.tail)


def x264_settings(first_packet: bytes, length_size: int) -> dict[str, str] | None:
    """x264's own options from its SEI user data (``"cabac=1 ref=3 ..."``), or None (not x264)."""
    for nal in length_prefixed_nals(first_packet, length_size):
        if nal[0] & 0x1F != 6:
            continue
        m = re.search(rb"x264 - core \d+.*? options: ([ -~]*)", nal, re.S)
        if m:
            pairs = (kv.split("=", 1) for kv in m.group(1).decode("ascii").split())
            return {k: v for k, v in pairs}
    return None


# --------------------------------------------------------------------------- the template's packets
@dataclass
class PacketIndex:
    """The template's video packets in decode order, and where they may be cut."""

    path: Path
    time_base: Fraction
    fps: Fraction
    pts: list[int]  # per decode position
    dts: list[int]
    display: list[int]  # display index of each decode position
    sorted_pts: list[int]  # pts of each display index
    cuts: list[int]  # decode positions p with packets [0, p) == display frames [0, p) (0 and n included)
    idr_cuts: list[int]  # cuts whose packet is an IDR (and n)
    avcc: AvcConfig
    x264: dict[str, str] | None
    width: int
    height: int
    pix_fmt: str
    color: tuple[int, int, int, int]  # colorspace, primaries, trc, range of the stream

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @classmethod
    def read(cls, path: Path) -> PacketIndex:
        """Demux (no decoding) and check everything smart rendering relies on; SpliceUnsupported if not."""
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                raise SpliceUnsupported("template has no video stream")
            vs = c.streams.video[0]
            cc = vs.codec_context
            if cc.name != "h264":
                raise SpliceUnsupported(f"template is {cc.name.upper()}")
            if not {"mp4", "mov"} & set(c.format.name.split(",")):
                raise SpliceUnsupported(f"template is H.264 in {c.format.name}, not MP4/MOV")
            if cc.pix_fmt not in _PIX_FMTS:
                raise SpliceUnsupported(f"template's pixel format is {cc.pix_fmt}")
            avcc = AvcConfig.parse(bytes(cc.extradata or b""))
            tb = Fraction(vs.time_base or 0)
            rate = vs.average_rate
            if not rate or not tb:
                raise SpliceUnsupported("template states no frame rate or time base")
            fps = Fraction(rate)
            pts: list[int] = []
            dts: list[int] = []
            key: list[bool] = []
            first: bytes | None = None
            idr: list[bool] = []
            for pk in c.demux(vs):
                if pk.size == 0:
                    continue
                if pk.pts is None or pk.dts is None or pk.is_discard:
                    raise SpliceUnsupported("template's video packets lack timestamps or have an edit list")
                is_key = bool(pk.is_keyframe)
                data = bytes(pk) if is_key or first is None else b""  # only key frames are parsed
                if first is None:
                    first = data
                pts.append(int(pk.pts))
                dts.append(int(pk.dts))
                key.append(is_key)
                idr.append(
                    is_key and any(n[0] & 0x1F == 5 for n in length_prefixed_nals(data, avcc.length_size))
                )
            width, height, pix_fmt = int(cc.width), int(cc.height), str(cc.pix_fmt)
            color = (int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc), int(cc.color_range))
        if not pts or first is None:
            raise SpliceUnsupported("template has no video packets")
        if any(k and not i for k, i in zip(key, idr, strict=True)):
            raise SpliceUnsupported("template's key frames are not all IDR (open GOPs)")
        if any(b <= a for a, b in zip(dts, dts[1:], strict=False)):
            raise SpliceUnsupported("template's decode timestamps are not increasing")
        sorted_pts = sorted(pts)
        steps = {b - a for a, b in zip(sorted_pts, sorted_pts[1:], strict=False)}
        if len(steps) > 1 or 0 in steps:
            raise SpliceUnsupported("template has a variable frame rate")
        if steps:  # the rate the timestamps keep (a stated average may be rounded)
            fps = 1 / (steps.pop() * tb)
        order = {p: i for i, p in enumerate(sorted_pts)}
        display = [order[p] for p in pts]
        cuts, idr_cuts, high = [0], [], -1
        for k, s in enumerate(display):
            if k == high + 1 and idr[k]:
                idr_cuts.append(k)
            high = max(high, s)
            if high == k:
                cuts.append(k + 1)
        idr_cuts.append(len(pts))
        if not idr_cuts or idr_cuts[0] != 0:
            raise SpliceUnsupported("template does not start with an IDR key frame")
        return cls(
            path=path,
            time_base=tb,
            fps=fps,
            pts=pts,
            dts=dts,
            display=display,
            sorted_pts=sorted_pts,
            cuts=cuts,
            idr_cuts=idr_cuts,
            avcc=avcc,
            x264=x264_settings(first, avcc.length_size),
            width=width,
            height=height,
            pix_fmt=pix_fmt,
            color=color,
        )

    def span(self, a: int, b: int) -> tuple[int, int]:
        """The smallest re-encodable span ``[c, d)`` holding display frames ``[a, b)``."""
        c = self.cuts[bisect.bisect_right(self.cuts, a) - 1]
        d = self.idr_cuts[bisect.bisect_left(self.idr_cuts, b)]
        return c, d

    def spans(self, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Spans of all ``ranges`` (display frames), merged where they touch or overlap."""
        out: list[tuple[int, int]] = []
        for c, d in sorted(self.span(a, b) for a, b in ranges):
            if out and c <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], d))
            else:
                out.append((c, d))
        return out

    def gop_start(self, c: int) -> int:
        """The IDR at or before display frame ``c`` (where decoding of a span starts)."""
        return self.idr_cuts[bisect.bisect_right(self.idr_cuts, c) - 1]


# --------------------------------------------------------------------------- decoding a span
def decode_span(index: PacketIndex, c: int, d: int) -> Iterator[av.VideoFrame]:
    """The template's decoded pictures ``c .. d-1`` (display order), decoding from the IDR before ``c``."""
    g = index.gop_start(c)
    with av.open(str(index.path), metadata_errors="ignore") as cont:
        vs = cont.streams.video[0]
        vs.thread_type = "AUTO"
        if g > 0:
            cont.seek(index.sorted_pts[g], stream=vs, backward=True)
        want = c
        order = {p: i for i, p in enumerate(index.sorted_pts)}
        for frame in cont.decode(vs):
            k = order.get(int(frame.pts)) if frame.pts is not None else None
            if k is None:
                raise SpliceUnsupported("a decoded picture's timestamp is not in the template's index")
            if k < want:
                continue
            if k != want:
                raise SpliceUnsupported(f"decoding from the key frame missed picture {want}")
            yield frame
            want += 1
            if want >= d:
                return
    if want < d:
        raise SpliceUnsupported(f"the template ended at picture {want} of {d}")


def picture_rgb(frame: av.VideoFrame, converter: VideoReformatter) -> np.ndarray:
    """A decoded template picture as RGB, converted exactly as :class:`VideoSource` converts it."""
    return _rgb(frame, 0, converter)


# --------------------------------------------------------------------------- encoding a span
@dataclass
class EncoderPlan:
    """How the new pictures are encoded: x264 options and what to add to the ``avcC`` record."""

    options: dict[str, str]
    sps: bytes | None = None  # new parameter sets appended to avcC (None: the template's are reused)
    pps: bytes | None = None
    note: str = ""


class SpanEncoder:
    """libx264 on one span: frames in, length-prefixed packets out (parameter sets removed)."""

    def __init__(self, index: PacketIndex, options: dict[str, str]) -> None:
        self.index = index
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height = index.width, index.height
        cc.pix_fmt = "yuv420p" if index.pix_fmt == "yuvj420p" else index.pix_fmt
        cc.time_base = 1 / index.fps
        cc.framerate = index.fps
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = index.color
        cc.options = options
        self.cc = cc
        self.count = 0
        self._conv = VideoReformatter()
        space = Colorspace.ITU709 if index.color[0] == 1 else Colorspace.ITU601
        rng = ColorRange.JPEG if index.color[3] == 2 or index.pix_fmt == "yuvj420p" else ColorRange.MPEG
        self._space, self._range = space, rng

    def picture(self, frame: av.VideoFrame | np.ndarray) -> av.VideoFrame:
        """A template picture as decoded, or new RGB pixels in the template's YUV format and matrix."""
        if isinstance(frame, np.ndarray):
            return self._conv.reformat(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"),
                format=self.cc.pix_fmt,
                dst_colorspace=self._space,
                dst_color_range=self._range,
                threads=1,
            )
        return frame

    def encode(self, frame: av.VideoFrame | np.ndarray | None) -> list[tuple[bytes, int, bool]]:
        """Packets as (annex B bytes, pts in frames from the span start, key frame)."""
        if frame is None:
            packets = self.cc.encode(None)
        else:
            vf = self.picture(frame)
            vf.pts = self.count
            vf.time_base = self.cc.time_base
            vf.pict_type = av.video.frame.PictureType.NONE  # the decoder's type would steer x264
            self.count += 1
            packets = self.cc.encode(vf)
        return [(bytes(p), int(p.pts or 0), bool(p.is_keyframe)) for p in packets]


def _headers(index: PacketIndex, options: dict[str, str]) -> tuple[bytes, bytes]:
    """The SPS and PPS that x264 writes with ``options`` (one grey picture encoded)."""
    enc = SpanEncoder(index, options)
    vf = av.VideoFrame(index.width, index.height, str(enc.cc.pix_fmt))
    for plane in vf.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    packets = enc.encode(vf) + enc.encode(None)
    nals = annexb_nals(packets[0][0])
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    pps = next(n for n in nals if n[0] & 0x1F == 8)
    return sps, pps


def plan_encoder(index: PacketIndex, crf: int, preset: str, threads: int | None = None) -> EncoderPlan:
    """x264 options whose SPS/PPS equal the template's, else a new pair under a free id (no B-frames)."""
    pixels = index.width * index.height * 1.5
    base = {k: str(v) for k, v in _x264_options(crf, preset, pixels, index.fps, threads).items()}
    base.pop("g", None)
    base.pop("keyint_min", None)
    t = index.x264
    if t is not None and t.get("interlaced", "0") == "0" and t.get("cqm", "0") == "0":
        params = [f"{name}={t[k]}" for k, name in _HEADER_KEYS.items() if name and k in t]
        # x264 writes its effective chroma QP offset (psy-rd lowers the asked one by up to 2): try the
        # preset's own first, then the offsets that give the written one
        offsets: list[str | None] = [None]
        if "chroma_qp_offset" in t:
            written = int(t["chroma_qp_offset"])
            offsets += [str(written + 2), str(written + 1), str(written)]
        for off in offsets:
            extra = [] if off is None else [f"chroma-qp-offset={off}"]
            opts = {**base, "x264-params": ":".join(params + extra)}
            opts.pop("crf", None)  # the template's own crf, in the params: its quality and its PPS
            try:
                sps, pps = _headers(index, opts)
            except (av.FFmpegError, StopIteration, ValueError) as e:
                log.debug("x264 with the template's settings failed: %s", e)
                break
            if sps in index.avcc.sps and pps in index.avcc.pps:
                return EncoderPlan(opts)
    used = {sps_id(s) for s in index.avcc.sps} | {pps_id(p) for p in index.avcc.pps}
    free = next((i for i in range(32) if i not in used), None)
    if free is None:
        raise SpliceUnsupported("template's avcC has no free parameter set id")
    opts = {**base, "x264-params": f"sps-id={free}:bframes=0"}
    sps, pps = _headers(index, opts)
    return EncoderPlan(
        opts,
        sps,
        pps,
        note="template's H.264 settings not reproducible: new pictures carry their own SPS/PPS",
    )


# --------------------------------------------------------------------------- audio
#: AAC frames re-encoded beyond each changed range (the MDCT overlaps one frame on each side; the
#: second is margin), and frames the new encoder runs before the first one kept
AAC_GUARD_FRAMES = 2
_AAC_FRAME = 1024


@dataclass
class AudioPackets:
    """The template's AAC packets with those around the changed sample ranges encoded again."""

    replaced: dict[int, bytes]  # pts -> new packet bytes (same pts, dts and duration as the template's)
    count: int  # template packets


def _aac_encoder(rate: int, layout: str) -> av.audio.codeccontext.AudioCodecContext:
    enc = cast(av.audio.codeccontext.AudioCodecContext, av.CodecContext.create("aac", "w"))
    enc.sample_rate, enc.layout, enc.format = rate, layout, "fltp"
    enc.time_base = Fraction(1, rate)
    return enc


def plan_audio(template: Path, audio: AudioClip, ranges: Iterable[tuple[int, int]]) -> AudioPackets:
    """New AAC packets for ``ranges`` (samples of ``audio``, the template's track with pieces spliced in).

    Only for an AAC track as FFmpeg's encoder writes it (packets every 1024 samples from -1024, one
    decoder configuration): our encoder's packet at pts P then codes the same MDCT block as the
    template's, so the two join without a seam. Anything else raises :class:`SpliceUnsupported`.
    """
    with av.open(str(template), metadata_errors="ignore") as c:
        if len(c.streams.audio) != 1:
            raise SpliceUnsupported("template has no single audio track")
        st = c.streams.audio[0]
        tcc = st.codec_context
        if tcc.name != "aac" or Fraction(st.time_base or 0) != Fraction(1, tcc.sample_rate or 1):
            raise SpliceUnsupported(f"template's audio is {tcc.name}")
        pts = [int(p.pts) for p in c.demux(st) if p.size and p.pts is not None]
        extradata = bytes(tcc.extradata or b"")
        rate, layout, channels = int(tcc.sample_rate), str(tcc.layout.name), int(tcc.channels)
    if audio.sample_rate != rate or audio.channels != channels or channels > 2:
        raise SpliceUnsupported("the spliced audio's rate or channels differ from the template's track")
    if pts != [(k - 1) * _AAC_FRAME for k in range(len(pts))]:
        raise SpliceUnsupported("template's AAC packets are not FFmpeg's 1024-sample grid")
    probe = _aac_encoder(rate, layout)
    probe.open()
    if bytes(probe.extradata or b"") != extradata:
        raise SpliceUnsupported("template's AAC configuration differs from the encoder's")
    data = np.ascontiguousarray(audio.samples.detach().cpu().numpy().clip(-1.0, 1.0), dtype=np.float32)
    windows: list[tuple[int, int]] = []  # first and last pts of the packets to replace
    for s0, s1 in sorted(ranges):
        p0 = max(pts[0], (s0 // _AAC_FRAME - AAC_GUARD_FRAMES) * _AAC_FRAME)
        p1 = min(pts[-1], (-(-s1 // _AAC_FRAME) + AAC_GUARD_FRAMES) * _AAC_FRAME)
        if windows and p0 <= windows[-1][1] + _AAC_FRAME:
            windows[-1] = (windows[-1][0], max(windows[-1][1], p1))
        else:
            windows.append((p0, p1))
    replaced: dict[int, bytes] = {}
    for p0, p1 in windows:
        enc = _aac_encoder(rate, layout)
        got: dict[int, bytes] = {}
        # from warm-up frames before p0 (dropped) to two frames after p1 (the encoder's delay)
        for t in range(p0 - AAC_GUARD_FRAMES * _AAC_FRAME, p1 + 3 * _AAC_FRAME, _AAC_FRAME):
            piece = np.zeros((data.shape[0], _AAC_FRAME), np.float32)
            lo, hi = max(0, t), min(data.shape[1], t + _AAC_FRAME)
            if hi > lo:
                piece[:, lo - t : hi - t] = data[:, lo:hi]
            af = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
            af.sample_rate, af.pts, af.time_base = rate, t, Fraction(1, rate)
            got.update({int(p.pts or 0): bytes(p) for p in enc.encode(af)})
        got.update({int(p.pts or 0): bytes(p) for p in enc.encode(None)})
        for p in range(p0, p1 + 1, _AAC_FRAME):
            if p not in got:
                raise SpliceUnsupported(f"the AAC encoder gave no packet at {p}")
            replaced[p] = got[p]
    return AudioPackets(replaced, len(pts))


# --------------------------------------------------------------------------- writing
class SpliceSink(VideoSink):
    """An MP4/MOV output whose video track is the template's stream, written packet by packet.

    The audio track, the temporary name and the atomic rename are :class:`VideoSink`'s.
    """

    def __init__(
        self,
        path: Path,
        index: PacketIndex,
        audio: AudioClip | None,
        avcc: bytes | None,
        audio_packets: AudioPackets | None = None,
    ) -> None:
        super().__init__(
            path,
            fps=index.fps,
            size=(index.width, index.height),
            audio=None if audio_packets is not None else audio,
            mode="mp4",
        )
        self.index = index
        self._avcc = avcc
        self._audio_packets = audio_packets
        self._acopy: av.audio.stream.AudioStream | None = None
        self._ademux: Iterator[av.Packet] | None = None
        self._ainput: av.container.InputContainer | None = None
        self._apending: av.Packet | None = None

    def __enter__(self) -> SpliceSink:
        self.open()
        return self

    def _open_container(self) -> None:
        assert self._tmp is not None
        fmt = "mov" if self.path.suffix.lower() == ".mov" else "mp4"
        c = av.open(str(self._tmp), "w", format=fmt, options={"movflags": "+faststart"})
        with av.open(str(self.index.path), metadata_errors="ignore") as t:
            vs = c.add_stream_from_template(t.streams.video[0])
            if self._audio_packets is not None:
                self._acopy = c.add_stream_from_template(t.streams.audio[0])
                self._acopy.time_base = t.streams.audio[0].time_base
        vs.time_base = self.index.time_base
        if self._avcc is not None:
            vs.codec_context.extradata = self._avcc
        self._container, self._vstream = c, vs
        if self._acopy is not None:
            self._ainput = av.open(str(self.index.path), metadata_errors="ignore")
            self._ademux = self._ainput.demux(self._ainput.streams.audio[0])
        elif self.audio is not None:
            self._add_audio(c)

    def _copy_audio_until(self, seconds: float | None) -> None:
        """The template's audio packets (or their replacements) up to ``seconds`` (None: all)."""
        if self._ademux is None or self._acopy is None or self._audio_packets is None:
            return
        c = self._container
        assert c is not None
        while True:
            p = self._apending if self._apending is not None else next(self._ademux, None)
            self._apending = None
            if p is None:
                self._ademux = None
                return
            if not p.size or p.pts is None or p.time_base is None:
                continue
            if seconds is not None and float(p.pts * p.time_base) > seconds:
                self._apending = p
                return
            new = self._audio_packets.replaced.get(int(p.pts))
            if new is not None:
                q = av.Packet(new)
                q.pts, q.dts, q.duration, q.time_base = p.pts, p.dts, p.duration, p.time_base
                p = q
            p.stream = self._acopy
            c.mux(p)

    def _flush_video(self) -> None:
        """Nothing to encode (packets are written as they come); the rest of a copied audio track."""
        self._copy_audio_until(None)

    def abort(self) -> None:
        self._close_audio_input()
        super().abort()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._close_audio_input()

    def _close_audio_input(self) -> None:
        if self._ainput is not None:
            self._ainput.close()
            self._ainput, self._ademux = None, None

    def write_packet(self, packet: av.Packet) -> None:
        """One video packet (length-prefixed NAL units, pts and dts in the template's time base), in
        decode order: a template packet as demuxed, or a new one."""
        c, vs = self._container, self._vstream
        if c is None:
            self.open()
            c, vs = self._container, self._vstream
        assert c is not None and vs is not None
        try:
            packet.stream = vs
            dts = packet.dts
            c.mux(packet)
            self.frames_written += 1
            if self._acopy is not None and dts is not None:
                self._copy_audio_until(float(dts * self.index.time_base) + 0.1)
            else:
                self._encode_audio_until(self.frames_written)
        except (OSError, av.FFmpegError) as e:
            raise self._fail(e, f"writing packet {self.frames_written}") from e


#: what a span renderer yields for each display frame: the template's picture as decoded, or new RGB
SpanFrames = Callable[[int, int], Iterator[av.VideoFrame | np.ndarray]]


def splice_video(
    index: PacketIndex,
    output: Path,
    spans: list[tuple[int, int]],
    render: SpanFrames,
    audio: AudioClip | None,
    crf: int = 18,
    preset: str = "medium",
    on_packet: Callable[[int], None] | None = None,
    audio_ranges: list[tuple[int, int]] | None = None,
    threads: int | None = None,
) -> list[str]:
    """Write ``output``: the template's packets outside ``spans``, ``render(c, d)`` encoded inside.

    ``on_packet(position)`` is called after each copied packet (progress; the rendered frames are the
    renderer's to report). With ``audio_ranges`` (samples of ``audio`` that differ from the template's
    track) the template's AAC packets are copied too and only those around the ranges encoded again;
    without, or when the track does not allow it, all of ``audio`` is encoded.

    Returns notes (what was re-encoded). Raises :class:`SpliceUnsupported` before writing anything if the
    template's settings cannot be matched; an inconsistency found while writing aborts the output.
    """
    plan = plan_encoder(index, crf, preset, threads)
    avcc = None
    if plan.sps is not None and plan.pps is not None:
        cfg = index.avcc
        avcc = AvcConfig(cfg.head, cfg.length_size, [*cfg.sps, plan.sps], [*cfg.pps, plan.pps], cfg.tail)
        avcc_bytes: bytes | None = avcc.to_bytes()
    else:
        avcc_bytes = None
    audio_packets = None
    audio_note = "audio re-encoded whole"
    if audio is not None and audio_ranges is not None:
        try:
            audio_packets = plan_audio(index.path, audio, audio_ranges)
        except SpliceUnsupported as e:
            audio_note = f"audio re-encoded whole ({e})"
            log.info("%s: %s", index.path, audio_note)
        else:
            audio_note = (
                f"audio: {len(audio_packets.replaced)} of {audio_packets.count} AAC packets re-encoded, "
                "the rest copied"
            )
    starts = dict(spans)
    size = index.avcc.length_size
    drop = {7, 8}  # parameter sets live in avcC
    with (
        SpliceSink(output, index, audio, avcc_bytes, audio_packets) as sink,
        av.open(str(index.path), metadata_errors="ignore") as src,
    ):
        vs = src.streams.video[0]
        pos = 0  # decode position == display frames written so far, at every cut
        skip_until = 0
        for pk in src.demux(vs):
            if pk.size == 0:
                continue
            if pos in starts:
                skip_until = starts[pos]
                _write_span(sink, index, plan, render, pos, skip_until, size, drop)
            if pos >= skip_until:
                sink.write_packet(pk)  # as demuxed: the same bytes, pts and dts
                if on_packet is not None:
                    on_packet(pos)
            pos += 1
    frames = sum(d - c for c, d in spans)
    notes = [f"H.264 smart render: {frames} of {index.num_frames} frames re-encoded, the rest copied"]
    if audio is not None:
        notes.append(audio_note)
    if plan.note:
        notes.append(plan.note)
    return notes


def _write_span(
    sink: SpliceSink,
    index: PacketIndex,
    plan: EncoderPlan,
    render: SpanFrames,
    c: int,
    d: int,
    size: int,
    drop: set[int],
) -> None:
    enc = SpanEncoder(index, plan.options)
    packets: list[tuple[bytes, int, bool]] = []
    n = 0
    for frame in render(c, d):
        packets += enc.encode(frame)
        n += 1
    packets += enc.encode(None)
    if n != d - c or len(packets) != d - c:
        raise SpliceUnsupported(f"span {c}-{d}: {n} pictures rendered, {len(packets)} packets encoded")
    if not packets[0][2]:
        raise SpliceUnsupported(f"span {c}-{d} does not start on a key frame")
    for k, (data, rel, key) in enumerate(packets):
        pts = index.sorted_pts[c + rel]
        dts = index.dts[c + k]  # the replaced decode position's dts: monotonic at both joins
        if dts > pts:
            raise SpliceUnsupported(f"span {c}-{d}: the encoder reorders more than the template")
        body = b"".join(
            len(nal).to_bytes(size, "big") + nal for nal in annexb_nals(data) if nal[0] & 0x1F not in drop
        )
        packet = av.Packet(body)
        packet.pts, packet.dts, packet.time_base, packet.is_keyframe = pts, dts, index.time_base, key
        sink.write_packet(packet)
