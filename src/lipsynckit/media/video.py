"""Streaming video (and still image) input on PyAV.

Frames come out as RGB uint8 ``(H, W, 3)`` arrays, one at a time, at a constant frame rate, already
turned upright. Nothing here holds the whole video: a model run over an hour of footage must use as
little memory as one over ten seconds.

Constant frame rate rule (variable frame rate sources, phone recordings):
    the nominal rate is the stream's average rate (``avg_frame_rate``: frames / duration). Decoded
    frame ``f`` with presentation time ``t_f`` goes into output slot ``s_f = floor((t_f - t_0) * fps + 1/2)``
    where ``t_0`` is the time of the first decoded frame. Slots are filled in order: a frame whose
    slot is already filled is dropped, an empty slot repeats the most recent earlier frame (the one
    on screen at that moment). The video has ``s_last + 1`` frames, ``s_last`` being the slot of the
    last packet; a constant-rate video therefore comes out unchanged, frame for frame.

Rotation: a display matrix (side data, what phones write) or an old ``rotate`` tag is applied to every
frame; :attr:`VideoInfo.rotation` is the clockwise angle applied (0, 90, 180, 270) and ``width`` /
``height`` are those of the upright frames. Mirroring flips in the matrix are ignored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from lipsynckit.errors import EmptyInputError, InputNotFoundError, VideoError
from lipsynckit.image_kind import IMAGE_EXTENSIONS, is_image_file, stated_size
from lipsynckit.limits import DEFAULT_MAX_PIXELS, check_pixels
from lipsynckit.types import VideoInfo

__all__ = ["IMAGE_EXTENSIONS", "VideoSource", "is_image_file", "probe", "read_video_frames"]

logger = logging.getLogger(__name__)

_STAGE = "video"
# Memory for one block of frames served backwards (ping-pong); the block length follows from it.
_REVERSE_BLOCK_BYTES = 256 * 1024 * 1024
_MIN_BLOCK, _MAX_BLOCK = 8, 128
# Forward jumps longer than this seek instead of decoding through.
_SEEK_AHEAD = 64


def header_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of a video's first stream or an image, from the header (no full decode): a
    10000x10000 JPEG is sized in microseconds, not decoded into 300 MB. ``(0, 0)`` if none is stated."""
    p = Path(path)
    stated = stated_size(p)
    if stated is not None:
        return stated
    try:
        with av.open(str(p), metadata_errors="ignore") as c:
            if not c.streams.video:
                return 0, 0
            cc = c.streams.video[0].codec_context
            return int(cc.width or 0), int(cc.height or 0)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise _open_error(p, e) from e


def _rgb(frame: av.VideoFrame, rot90_ccw: int, converter: VideoReformatter) -> np.ndarray:
    """RGB uint8 array of a decoded frame, turned upright.

    ``converter`` is one reformatter kept for a whole stream: ``to_ndarray(format=...)`` builds a new
    swscale context for every frame, which cost 3-4 ms of a 720p frame's 5-6 ms (same pixels).
    """
    name = frame.format.name
    if name == "gbrp":
        arr = frame.to_ndarray()  # PyAV returns planar GBR as RGB channels-last: exact, no swscale
    elif name in ("bgr0", "bgra"):  # lossless RGB (our FFV1 output): repack the bytes, no swscale
        plane = frame.planes[0]
        h, w = frame.height, frame.width
        arr = (
            np.frombuffer(memoryview(plane), np.uint8)
            .reshape(h, plane.line_size)[:, : w * 4]
            .reshape(h, w, 4)[..., 2::-1]
        )
    else:
        arr = converter.reformat(frame, format="rgb24", threads=1).to_ndarray()  # repeatable bytes
    if rot90_ccw:
        arr = np.rot90(arr, rot90_ccw)
    return np.ascontiguousarray(arr)


@dataclass
class _Meta:
    """What the decoder needs beyond :class:`VideoInfo`."""

    fps: Fraction
    time_base: Fraction
    first_pts: int | None  # None: the stream has no timestamps, frames are counted instead
    rot90_ccw: int
    regular: bool = True  # every frame has its own slot (constant rate): seeks may land on `start`


def _open_error(path: Path, e: Exception) -> VideoError:
    return VideoError(
        f"cannot open this file as a video or image ({e})",
        path=path,
        stage=_STAGE,
        remedy="check that the file is a complete, playable video (mp4, mov, mkv, webm, avi) or an image; "
        "re-export it if a player cannot open it either.",
    )


def _corrupt_error(path: Path, e: Exception, where: str) -> VideoError:
    return VideoError(
        f"the video is corrupt or truncated ({where}: {e})",
        path=path,
        stage=_STAGE,
        remedy="re-download or re-export the video; a partial download is the usual cause.",
    )


def _rotation_ccw(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise quarter turns that make the frame upright (display matrix, else 'rotate' tag)."""
    deg: float = 0.0
    try:
        deg = float(frame.rotation)  # ccw angle of the display matrix, [-180, 180]
    except (AttributeError, TypeError, ValueError):
        deg = 0.0
    if not deg:
        tag = stream.metadata.get("rotate")
        if tag:
            try:
                deg = -float(tag)  # the tag is clockwise
            except ValueError:
                logger.warning("ignoring unreadable rotate tag %r", tag)
    return int(round(deg / 90.0)) % 4


class VideoSource:
    """A video or still image as a stream of upright RGB frames at a constant rate.

    Iterating decodes once from the start. :meth:`frames` serves any sequence of indices (loops,
    ping-pong, jumps) reusing one decoder for forward runs and a bounded block of frames for
    backward runs. A still image is a one-frame video at ``fps_for_images``.
    """

    def __init__(
        self, path: str | Path, fps_for_images: float = 25.0, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels  # checked from the header, before any frame is decoded
        if not self.path.exists():
            raise InputNotFoundError(
                "video or image not found",
                path=self.path,
                stage=_STAGE,
                remedy="check the path and the file name.",
            )
        if self.path.is_dir():
            raise VideoError(
                "this is a folder, not a video or image", path=self.path, stage=_STAGE, remedy="pass a file."
            )
        if self.path.stat().st_size == 0:
            raise EmptyInputError(
                "video or image is empty (0 bytes)",
                path=self.path,
                stage=_STAGE,
                remedy="the file was not written completely; export or download it again.",
            )
        if fps_for_images <= 0:
            raise ValueError(f"fps_for_images must be positive, got {fps_for_images}")
        self._image: np.ndarray | None = None
        self._meta: _Meta
        if is_image_file(self.path):
            self.info = self._probe_image(fps_for_images)
        else:
            self.info = self._probe_video()

    # ------------------------------------------------------------------ probing
    def _probe_image(self, fps: float) -> VideoInfo:
        if self.max_pixels is not None:
            w0, h0 = header_size(self.path)
            if w0 and h0:  # a header FFmpeg cannot size is left to the decoder's own error below
                check_pixels(w0, h0, self.max_pixels, self.path)
        data = np.fromfile(str(self.path), dtype=np.uint8)  # imdecode: works with any path encoding
        try:
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # applies EXIF orientation
        except cv2.error:  # OpenCV's own limits (its pixel cap, a broken header)
            bgr = None
        if bgr is None:
            raise VideoError(
                "cannot decode this image",
                path=self.path,
                stage=_STAGE,
                remedy="check that the file is a complete png/jpg/webp/bmp image; re-save it if unsure.",
            )
        self._image = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        fr = Fraction(fps).limit_denominator(1001)
        self._meta = _Meta(fps=fr, time_base=Fraction(1), first_pts=None, rot90_ccw=0)
        h, w = self._image.shape[:2]
        return VideoInfo(
            path=str(self.path),
            width=int(w),
            height=int(h),
            fps=float(fr),
            num_frames=1,
            rotation=0,
            is_image=True,
            has_audio=False,
            duration=1.0 / float(fr),
        )

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(str(self.path), metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError) as e:
            raise _open_error(self.path, e) from e

    def _probe_video(self) -> VideoInfo:
        with self._open() as container:
            if not container.streams.video:
                what = "an audio file" if container.streams.audio else "a file without a video stream"
                raise VideoError(
                    f"this is {what}; no video stream to lip-sync",
                    path=self.path,
                    stage=_STAGE,
                    remedy="pass a video or a photo of a face as the source (the audio goes in the second argument).",
                )
            stream = container.streams.video[0]
            cc = stream.codec_context
            if cc.width and cc.height:  # before the first frame is decoded
                check_pixels(int(cc.width), int(cc.height), self.max_pixels, self.path)
            has_audio = bool(container.streams.audio)
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not fps or fps <= 0:
                logger.warning("%s declares no frame rate; assuming 25 fps", self.path)
                fps = Fraction(25)
            fps = Fraction(fps)
            time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
            try:
                first = next(iter(container.decode(stream)))
            except StopIteration:
                raise VideoError(
                    "the video stream has no decodable frame",
                    path=self.path,
                    stage=_STAGE,
                    remedy="re-export the video; it may be empty or truncated.",
                ) from None
            except (av.FFmpegError, ValueError) as e:
                raise _corrupt_error(self.path, e, "first frame") from e
            rot = _rotation_ccw(first, stream)
            h, w = int(first.height), int(first.width)
            check_pixels(w, h, self.max_pixels, self.path)
            first_pts = first.pts
        if rot % 2:
            w, h = h, w
        # Count frames by their timestamps, demuxing only (no decoding): cheap even for long videos.
        n_packets, n_stored, max_pts, have_pts = 0, 0, None, first_pts is not None
        pts_seen: list[int] = []
        with self._open() as container:
            stream = container.streams.video[0]
            indexed = int(stream.frames or 0)  # mp4/mov: the sample table's count, exact
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    n_stored += 1
                    if packet.is_discard:  # edit list: decoded as a reference, never shown
                        continue
                    n_packets += 1
                    if packet.pts is None:
                        have_pts = False
                    else:
                        pts_seen.append(packet.pts)
                        if max_pts is None or packet.pts > max_pts:
                            max_pts = packet.pts
            except (av.FFmpegError, ValueError) as e:
                raise _corrupt_error(self.path, e, f"after packet {n_stored}") from e
        if indexed and n_stored < indexed:
            raise _corrupt_error(
                self.path,
                EOFError(f"the index lists {indexed} frames, only {n_stored} are present"),
                "end of file",
            )
        regular = True
        if have_pts and max_pts is not None and first_pts is not None:
            num_frames = self._slot(max_pts, first_pts, time_base, fps) + 1
            slots = {self._slot(p, first_pts, time_base, fps) for p in pts_seen if p >= first_pts}
            regular = len(slots) == len(pts_seen) == num_frames
            if not regular:
                logger.info(
                    "%s: variable frame rate (%d frames in %d slots); regularised to %s fps",
                    self.path,
                    len(pts_seen),
                    num_frames,
                    fps,
                )
        else:
            first_pts = None
            num_frames = n_packets
        num_frames = max(1, num_frames)
        self._meta = _Meta(fps=fps, time_base=time_base, first_pts=first_pts, rot90_ccw=rot, regular=regular)
        return VideoInfo(
            path=str(self.path),
            width=w,
            height=h,
            fps=float(fps),
            num_frames=int(num_frames),
            rotation=(-rot * 90) % 360,
            is_image=False,
            has_audio=has_audio,
            duration=float(num_frames / fps),
        )

    @staticmethod
    def _slot(pts: int, first_pts: int, time_base: Fraction, fps: Fraction) -> int:
        """``floor((pts - first_pts) * time_base * fps + 1/2)`` in exact integer arithmetic."""
        num = time_base.numerator * fps.numerator
        den = time_base.denominator * fps.denominator
        return (2 * (pts - first_pts) * num + den) // (2 * den)

    # ------------------------------------------------------------------ properties
    @property
    def fps_fraction(self) -> Fraction:
        """The exact frame rate (e.g. 30000/1001), for writers that must keep it."""
        return self._meta.fps

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    def __len__(self) -> int:
        return self.info.num_frames

    def __repr__(self) -> str:
        i = self.info
        return (
            f"VideoSource({str(self.path)!r}, {i.width}x{i.height}, {i.fps:.3f} fps, {i.num_frames} frames)"
        )

    # ------------------------------------------------------------------ decoding
    def _decode(self, start: int, seek: bool = True) -> Iterator[tuple[int, np.ndarray]]:
        """(slot, frame) for slots ``start, start+1, ..., num_frames-1`` at the constant rate.

        With ``seek`` the decoder starts at the key frame before ``start`` (raising :class:`_SeekMissed`
        if the container lands after it); without, it decodes from the beginning, converting nothing
        before ``start``.
        """
        assert self._image is None
        n = self.info.num_frames
        if start >= n:
            return
        m = self._meta
        container = self._open()
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            seeked = False
            if seek and start > 0 and m.first_pts is not None:
                # Seek to the key frame at or before the earliest frame that can land in `start`
                # (one slot earlier for irregular streams, see `_regularise`).
                t = Fraction(2 * start - (1 if m.regular else 3), 2) / m.fps
                container.seek(m.first_pts + math.floor(t / m.time_base), stream=stream, backward=True)
                seeked = True
            yield from self._regularise(container, stream, start, seeked)
        finally:
            container.close()

    def _regularise(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        start: int,
        seeked: bool,
    ) -> Iterator[tuple[int, np.ndarray]]:
        m, n = self._meta, self.info.num_frames
        nxt = 0  # next slot to emit (slots before `start` are decoded but not converted)
        prev: av.VideoFrame | None = None  # the frame on screen: repeated across gaps
        conv = VideoReformatter()  # one swscale context for the stream (rebuilt only if the format changes)
        counted = 0
        size = (self.info.height, self.info.width)

        def rgb(frame: av.VideoFrame) -> np.ndarray:
            arr = _rgb(frame, m.rot90_ccw, conv)
            if arr.shape[:2] != size:  # a mid-stream size change (concatenated recordings)
                raise VideoError(
                    f"the frame size changes mid-stream: {size[1]}x{size[0]} at the start, "
                    f"{arr.shape[1]}x{arr.shape[0]} at frame {nxt}",
                    path=self.path,
                    stage=_STAGE,
                    remedy=f"re-encode it to one size first, e.g. ffmpeg -i IN -vf scale={size[1]}:{size[0]} OUT.mp4",
                )
            return arr

        try:
            for frame in container.decode(stream):
                if m.first_pts is not None and frame.pts is not None:
                    s = self._slot(frame.pts, m.first_pts, m.time_base, m.fps)
                else:
                    s = counted
                counted += 1
                if seeked and prev is None:
                    # Irregular streams may have given `start` to the frame before this key frame.
                    if s > start or (s == start and not m.regular):
                        raise _SeekMissed
                    nxt = s
                if s < nxt:  # this slot is already filled: drop, but remember it for gap filling
                    prev = frame
                    continue
                while nxt < s and nxt < n:  # gap: repeat the frame on screen (a fresh array each time)
                    if nxt >= start and prev is not None:
                        yield nxt, rgb(prev)
                    nxt += 1
                if nxt >= n:
                    return
                prev = frame
                if nxt >= start:
                    yield nxt, rgb(frame)
                nxt += 1
        except av.FFmpegError as e:
            raise _corrupt_error(self.path, e, f"decoding frame {nxt}") from e
        if nxt < n and prev is not None:
            logger.warning(
                "%s: decoding ended at frame %d of %d; repeating the last frame", self.path, nxt, n
            )
            last = rgb(prev)
            for s in range(max(nxt, start), n):
                yield s, last.copy()

    def _reader(self, start: int) -> _Reader:
        """A forward reader positioned at ``start`` (seeking when the stream allows it)."""
        if start > 0 and self._meta.first_pts is not None:
            gen = self._decode(start)
            try:
                first = next(gen)
            except _SeekMissed:
                logger.debug("%s: seek to frame %d overshot; decoding from the start", self.path, start)
            except StopIteration:
                pass
            else:
                return _Reader(gen, start, first)
        return _Reader(self._decode(start, seek=False), start)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._image is not None:
            yield self._image.copy()
            return
        for _, frame in self._decode(0):
            yield frame

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.info.num_frames:
            raise IndexError(f"frame index {i} out of range for {self.path} ({self.info.num_frames} frames)")
        return i

    def block_size(self) -> int:
        """Frames held when serving a backward run (bounded by a fixed memory budget)."""
        frame_bytes = max(1, self.info.width * self.info.height * 3)
        return int(min(_MAX_BLOCK, max(_MIN_BLOCK, _REVERSE_BLOCK_BYTES // frame_bytes)))

    def frames(self, indices: Iterable[int]) -> Iterator[np.ndarray]:
        """Frames for an arbitrary sequence of source indices, with bounded memory.

        Forward steps reuse the running decoder; a jump back to the start (loop) reopens the file; a
        backward run (ping-pong) decodes a block of :meth:`block_size` frames forward and serves it in
        reverse. At most one block plus one decoder's frames are held. Yielded arrays are fresh or
        private copies: callers may modify them.
        """
        it = iter(indices)
        if self._image is not None:
            for i in it:
                self._check_index(i)
                yield self._image.copy()
            return
        k = self.block_size()
        reader: _Reader | None = None
        block: dict[int, np.ndarray] = {}
        last_i, last_frame = -1, None
        cur = next(it, None)
        while cur is not None:
            nxt = next(it, None)
            i = self._check_index(cur)
            if i == last_i and last_frame is not None:
                frame = last_frame.copy()
            elif i in block:
                frame = block[i].copy()
            elif reader is not None and reader.pos <= i <= reader.pos + _SEEK_AHEAD:
                frame = reader.read(i)
            elif nxt is not None and nxt < i and i - int(nxt) < k:
                # A backward run: decode [i-k+1, i] forward once, then serve it in reverse.
                lo = max(0, i - k + 1)
                block = {}  # release the old block first: never two blocks at once
                if reader is not None:
                    reader.close()
                reader = self._reader(lo)
                block = {j: reader.read(j) for j in range(lo, i + 1)}
                frame = block[i].copy()
            else:
                if reader is not None:
                    reader.close()
                reader = self._reader(i)
                frame = reader.read(i)
            # Keep a private copy only when the next index repeats this one (the caller owns `frame`).
            last_i, last_frame = (i, frame.copy()) if nxt == i else (-1, None)
            yield frame
            cur = nxt
        if reader is not None:
            reader.close()


class _SeekMissed(Exception):
    """A seek landed after the wanted frame (inexact index); the caller decodes from the start."""


class _Reader:
    """A forward-only cursor over ``(slot, frame)`` pairs."""

    def __init__(
        self, gen: Iterator[tuple[int, np.ndarray]], pos: int, first: tuple[int, np.ndarray] | None = None
    ) -> None:
        self._gen = gen
        self._first = first  # an item already taken from `gen` (after a seek)
        self.pos = pos  # the slot the next read returns

    def read(self, i: int) -> np.ndarray:
        if i < self.pos:
            raise RuntimeError(f"reader at frame {self.pos} cannot go back to {i}")
        while True:
            try:
                if self._first is not None:
                    (s, frame), self._first = self._first, None
                else:
                    s, frame = next(self._gen)
            except StopIteration:
                raise IndexError(f"frame {i} is past the end of the video") from None
            self.pos = s + 1
            if s == i:
                return frame

    def close(self) -> None:
        close = getattr(self._gen, "close", None)
        if close is not None:
            close()


def probe(path: str | Path) -> VideoInfo:
    """Size, rate, frame count, rotation and audio presence without decoding the whole file."""
    return VideoSource(path).info


def read_video_frames(path: str | Path) -> np.ndarray:
    """All frames as ``(N, H, W, 3)`` uint8 RGB: for tests and short clips only (holds everything)."""
    src = VideoSource(path)
    out = np.empty((src.info.num_frames, src.info.height, src.info.width, 3), np.uint8)
    for i, frame in enumerate(src):
        out[i] = frame
    return out
