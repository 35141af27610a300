"""Writing the result: frames + audio into one file (or folder), atomically.

Everything is written to a hidden temporary sibling of the output and renamed into place only when
complete, so a crash, Ctrl-C or a full disk never leaves a half-written video that looks finished.

Modes:
- ``"mp4"``: H.264 (libx264, yuv420p, ``crf``, BT.709 tagged, an IDR key frame every 2 s) + AAC,
  ``+faststart`` (plays while downloading; the short GOP lets a segment job copy all but ~2 s). Every output keeps the input's size exactly: yuv420p needs even sizes, and H.264
  crops 4:2:0 pictures only in steps of two pixels, so an odd width or height is encoded as yuv444p
  (High 4:4:4: FFmpeg-based players play it; browsers and hardware decoders may not, a line says so).
- ``"webm"``: VP9 (libvpx, constant quality ``crf + 13`` on VP9's 0..63 scale) + Opus at 48 kHz;
  VP9 codes odd sizes in yuv420p directly.
- ``"ffv1"``: lossless FFV1 in Matroska with packed RGB (``bgr0``): decoding gives back the exact RGB
  written; audio as 32-bit float PCM (lossless too). For metrics and intermediate files.
- ``"png"``: a folder with ``frame_000000.png``, ... and ``audio.wav`` (float PCM).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import cv2
import numpy as np
import soundfile as sf
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from lipsynckit.errors import OutputError
from lipsynckit.output_guard import MARKER, check_output_target, partial_name, remove_stale_partials
from lipsynckit.types import AudioClip

__all__ = ["AAC_SAMPLE_RATES", "SinkMode", "VideoSink", "as_fraction"]

logger = logging.getLogger(__name__)

SinkMode = Literal["mp4", "ffv1", "png", "webm"]
_MODES = ("mp4", "ffv1", "png", "webm")
_STAGE = "output"
#: Rates the AAC encoder accepts; other rates are resampled to the next one up (48 kHz at most).
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def as_fraction(fps: float | Fraction) -> Fraction:
    """The exact rate meant by a float: 29.97002997 -> 30000/1001, 25.0 -> 25."""
    if isinstance(fps, Fraction):
        return fps
    if fps <= 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    fr = Fraction(fps).limit_denominator(1001)
    if abs(float(fr) - fps) > 1e-6 * fps:
        fr = Fraction(fps).limit_denominator(1_000_000)
    return fr


#: Bytes of pictures x264 may hold for its rate-control look-ahead. The preset's own depth (40 frames at
#: medium) is kept unless the pictures are so large that it would pass this: 4000x4000 holds 10.
X264_LOOKAHEAD_BYTES = 256 * 2**20
_X264_LOOKAHEAD = {  # x264's rc-lookahead of each preset
    "ultrafast": 0,
    "superfast": 0,
    "veryfast": 10,
    "faster": 20,
    "fast": 30,
    "medium": 40,
    "slow": 50,
    "slower": 60,
    "veryslow": 60,
}


#: Seconds between H.264 key frames (IDR): short groups of pictures seek and stream well, and let a segment
#: job re-encode only the ~2 s around a segment of a template made here (x264's own default is 250 frames).
GOP_SECONDS = 2.0


def gop_frames(fps: float | Fraction) -> tuple[int, int]:
    """``(keyint, keyint_min)`` for ``fps``: a key frame every :data:`GOP_SECONDS`, scene cuts >= 1 s apart."""
    g = max(1, round(GOP_SECONDS * float(fps)))
    return g, max(1, min(g, round(float(fps))))


def _x264_options(
    crf: int, preset: str, picture_bytes: float, fps: float | Fraction, threads: int | None = None
) -> dict[str, object]:
    """libx264's options: quality, preset, a 2 s GOP, threads, and a look-ahead bounded in bytes for
    large pictures."""
    g, g_min = gop_frames(fps)
    opts: dict[str, object] = {"crf": str(crf), "preset": preset, "g": str(g), "keyint_min": str(g_min)}
    if threads is not None:
        opts["threads"] = str(threads)
    depth = int(X264_LOOKAHEAD_BYTES // max(1.0, picture_bytes))
    if depth < _X264_LOOKAHEAD.get(preset, 0):
        opts["rc-lookahead"] = str(max(1, depth))
    return opts


def _aac_rate(rate: int) -> int:
    if rate in AAC_SAMPLE_RATES:
        return rate
    return next((r for r in AAC_SAMPLE_RATES if r >= rate and r <= 48000), 48000)


def _is_no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def _bgr0_frame(rgb: np.ndarray) -> av.VideoFrame:
    """A ``bgr0`` frame holding exactly these RGB bytes (PyAV's from_ndarray lacks bgr0; no swscale)."""
    h, w = rgb.shape[:2]
    vf = av.VideoFrame(w, h, "bgr0")
    plane = vf.planes[0]
    buf = np.zeros((h, plane.line_size), np.uint8)
    px = buf[:, : w * 4].reshape(h, w, 4)
    px[..., 2::-1] = rgb
    plane.update(buf.tobytes())
    return vf


class VideoSink:
    """Context manager writing RGB uint8 frames of ``size`` = (W, H) at ``fps`` plus ``audio``.

    ``fps`` may be a :class:`~fractions.Fraction` (or a float close to one, e.g. 29.97002997) and is
    stored exactly. The whole ``audio`` clip is written, however many frames there are.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        size: tuple[int, int],
        audio: AudioClip | None = None,
        mode: str = "mp4",
        crf: int = 18,
        preset: str = "medium",
        threads: int | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"unknown output mode {mode!r}; use one of {', '.join(_MODES)}")
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise ValueError(f"size must be positive (W, H), got {size}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        self.path = Path(path)
        self.fps = as_fraction(fps)
        self.size = (w, h)
        self.audio = audio
        self.mode = mode
        self.crf = int(crf)
        self.preset = preset
        # x264's own threads (None: one per core and then some) gave other bytes for the same frames
        # when several encodes ran at once; 1 is what a runner of many jobs side by side wants
        self.threads = threads
        self.frames_written = 0
        self._tmp: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._vstream: av.video.stream.VideoStream | None = None
        self._converter = VideoReformatter()  # one swscale context for the stream, not one per frame
        self._astream: av.audio.stream.AudioStream | None = None
        self._audio_np: np.ndarray | None = None  # (C, N) float32 at the encoder rate
        self._audio_pos = 0
        self._closed = False
        # H.264 4:2:0 has no odd sizes (and crops only in 2-pixel steps): 4:4:4 keeps them exactly
        self._pix_fmt = "yuv444p" if mode == "mp4" and (w % 2 or h % 2) else "yuv420p"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> VideoSink:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        self.close()

    def _fail(self, e: BaseException, action: str) -> OutputError:
        self.abort()
        if _is_no_space(e):
            return OutputError(
                f"no space left on the device while {action}",
                path=self.path,
                stage=_STAGE,
                remedy="free disk space or write the output to another disk.",
            )
        return OutputError(
            f"cannot write the output while {action} ({e})",
            path=self.path,
            stage=_STAGE,
            remedy="check that the folder exists, is writable and that the disk is not full.",
        )

    def open(self) -> None:
        """Create the temporary output (called by ``with``)."""
        if self._tmp is not None:
            raise RuntimeError("VideoSink is already open")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._fail(e, "creating the output folder") from e
        remove_stale_partials(self.path)  # what runs that died (SIGKILL, power loss) left here
        self._tmp = partial_name(self.path, keep_suffix=self.mode != "png")
        try:
            if self.mode == "png":
                self._tmp.mkdir()
                (self._tmp / MARKER).touch()  # a later run may replace this folder: we made it
                if self.audio is not None:
                    self._write_wav(self._tmp / "audio.wav")
            else:
                self._open_container()
        except (OSError, av.FFmpegError) as e:
            raise self._fail(e, "opening it") from e
        logger.debug(
            "writing %s (%s, %s fps, %dx%d) via %s", self.path, self.mode, self.fps, *self.size, self._tmp
        )

    def _open_container(self) -> None:
        assert self._tmp is not None
        w, h = self.size
        if self.mode == "mp4":
            fmt = "mov" if self.path.suffix.lower() == ".mov" else "mp4"
            c = av.open(str(self._tmp), "w", format=fmt, options={"movflags": "+faststart"})
            vs = c.add_stream("libx264", rate=self.fps)
            vs.pix_fmt = self._pix_fmt
            vs.options = _x264_options(
                self.crf,
                self.preset,
                w * h * (3 if self._pix_fmt == "yuv444p" else 1.5),
                self.fps,
                self.threads,
            )
            if self._pix_fmt != "yuv420p":
                logger.info(
                    "%s: odd size %dx%d kept exactly with H.264 4:4:4 (browsers and hardware players may "
                    "not play it; a .webm output plays everywhere at this size)",
                    self.path,
                    w,
                    h,
                )
            cc = vs.codec_context
            cc.colorspace = 1  # BT.709, tagged so that players convert back as we converted
            cc.color_primaries = 1
            cc.color_trc = 1
            cc.color_range = 1  # limited ("tv") range, what players expect from H.264
        elif self.mode == "webm":
            c = av.open(str(self._tmp), "w", format="webm")
            vs = c.add_stream("libvpx-vp9", rate=self.fps)
            vs.pix_fmt = "yuv420p"
            vp9_crf = min(63, self.crf + 13)  # x264's default 18 ~ VP9's recommended 31
            vs.options = {"crf": str(vp9_crf), "b": "0", "row-mt": "1", "cpu-used": "4", "deadline": "good"}
            if self.threads is not None:
                vs.options = {**vs.options, "threads": str(self.threads)}
            cc = vs.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, tv range
        else:
            if self.path.suffix.lower() != ".mkv":
                logger.warning("ffv1 output %s: Matroska is written; name it .mkv", self.path)
            # bitexact: no random segment UID or date, so the same frames give the same file bytes
            c = av.open(str(self._tmp), "w", format="matroska", options={"fflags": "+bitexact"})
            vs = c.add_stream("ffv1", rate=self.fps)
            vs.pix_fmt = "bgr0"  # FFV1 has no 8-bit planar RGB; bgr0 is RGB-exact
        vs.width, vs.height = w, h
        vs.codec_context.time_base = 1 / self.fps
        self._container, self._vstream = c, vs
        if self.audio is not None:
            self._add_audio(c)

    def _audio_clip(self, rate: int | None) -> AudioClip:
        assert self.audio is not None
        clip = self.audio
        if clip.channels > 2:
            logger.info("downmixing %d audio channels to mono for %s", clip.channels, self.path)
            clip = clip.mono()
        if rate is not None and rate != clip.sample_rate:
            logger.debug("resampling output audio %d -> %d Hz", clip.sample_rate, rate)
            clip = clip.resample(rate, exact=False)  # no model hears it: libsoxr
        return clip

    def _add_audio(self, c: av.container.OutputContainer) -> None:
        assert self.audio is not None
        if self.mode == "mp4":
            clip = self._audio_clip(_aac_rate(self.audio.sample_rate))
            codec, fmt = "aac", "fltp"
        elif self.mode == "webm":
            clip = self._audio_clip(48000)  # Opus runs at 48 kHz
            codec, fmt = "libopus", "flt"
        else:
            clip = self._audio_clip(None)
            codec, fmt = "pcm_f32le", "flt"
        layout = "mono" if clip.channels == 1 else "stereo"
        a = c.add_stream(codec, rate=clip.sample_rate, layout=layout)
        assert isinstance(a, av.audio.stream.AudioStream)
        a.format = fmt
        a.codec_context.time_base = Fraction(1, clip.sample_rate)
        self._astream = a
        self._audio_np = np.ascontiguousarray(
            clip.samples.detach().cpu().numpy().clip(-1.0, 1.0), dtype=np.float32
        )
        self._audio_pos = 0

    def _write_wav(self, target: Path) -> None:
        clip = self._audio_clip(None)
        data = clip.samples.detach().cpu().numpy().T
        buf = io.BytesIO()  # libsndfile reports a full disk as "System error": write the bytes ourselves
        sf.write(buf, data, clip.sample_rate, subtype="FLOAT", format="WAV")
        target.write_bytes(buf.getbuffer())

    # ------------------------------------------------------------------ writing
    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 ``(H, W, 3)`` frame of the declared size."""
        if self._closed:
            raise RuntimeError("this VideoSink is closed")
        if self._tmp is None:
            self.open()
        w, h = self.size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 of shape {(h, w, 3)} (size={self.size}); got {frame.dtype} {frame.shape}"
            )
        try:
            if self.mode == "png":
                assert self._tmp is not None
                ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise OSError(errno.EIO, "PNG encoding failed")
                (self._tmp / f"frame_{self.frames_written:06d}.png").write_bytes(
                    buf.tobytes()
                )  # ENOSPC, not a short count
            else:
                self._encode_video(frame)
                # Keep audio interleaved with the video so that the muxer buffers little.
                self._encode_audio_until(self.frames_written + 1)
        except (OSError, av.FFmpegError) as e:
            raise self._fail(e, f"writing frame {self.frames_written}") from e
        self.frames_written += 1

    def _encode_video(self, frame: np.ndarray) -> None:
        c, vs = self._container, self._vstream
        assert c is not None and vs is not None
        if self.mode == "ffv1":
            vf = _bgr0_frame(frame)
        else:
            vf = self._converter.reformat(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"),
                format=self._pix_fmt,
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                threads=1,  # swscale's automatic slice threads gave other bytes under load (not repeatable)
            )
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        for packet in vs.encode(vf):
            c.mux(packet)

    def _flush_video(self) -> None:
        """Drain the video encoder into the container (before the audio's end and the trailer)."""
        c, vs = self._container, self._vstream
        assert c is not None and vs is not None
        for packet in vs.encode(None):
            c.mux(packet)

    def _encode_audio_until(self, n_frames: int | None) -> None:
        """Encode audio up to the end of video frame ``n_frames`` (``None``: all of it)."""
        c, a, data = self._container, self._astream, self._audio_np
        if c is None or a is None or data is None:
            return
        total = data.shape[1]
        rate = a.codec_context.sample_rate
        end = total if n_frames is None else min(total, int(n_frames / self.fps * rate))
        chunk = a.codec_context.frame_size or 4096
        while self._audio_pos < end:
            if n_frames is not None and self._audio_pos + chunk > end:
                break  # while interleaving, only whole encoder frames (the last one may be short)
            n = min(chunk, total - self._audio_pos)
            piece = data[:, self._audio_pos : self._audio_pos + n]
            if a.format.name == "flt":  # packed (interleaved) samples
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(piece.T).reshape(1, -1),
                    format="flt",
                    layout=a.codec_context.layout.name,
                )
            else:
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(piece), format="fltp", layout=a.codec_context.layout.name
                )
            af.sample_rate = rate
            af.pts = self._audio_pos
            af.time_base = Fraction(1, rate)
            for packet in a.encode(af):
                c.mux(packet)
            self._audio_pos += n

    def close(self) -> None:
        """Finish the file and move it into place (called by ``with`` on success)."""
        if self._closed:
            return
        if self._tmp is None:
            self.open()
        if self.frames_written == 0:
            self.abort()
            raise OutputError(
                "no frames were written",
                path=self.path,
                stage=_STAGE,
                remedy="check the input video and the face track.",
            )
        try:
            if self.mode != "png":
                self._flush_video()
                self._encode_audio_until(None)
                c = self._container
                assert c is not None
                if self._astream is not None:
                    for packet in self._astream.encode(None):
                        c.mux(packet)
                c.close()
                self._container = None
            self._commit()
        except OutputError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as e:
            raise self._fail(e, "finishing the file") from e
        self._closed = True
        logger.info("wrote %s: %d frames at %s fps", self.path, self.frames_written, self.fps)

    def _commit(self) -> None:
        assert self._tmp is not None
        check_output_target(self.path, self.mode)  # still something we may replace (not a device...)
        if self.mode != "png":
            os.replace(self._tmp, self.path)
            return
        old: Path | None = None
        if self.path.is_dir() and not self.path.is_symlink():  # empty, or made by lipsynckit
            old = partial_name(self.path, "old", keep_suffix=False)
            os.replace(self.path, old)
        try:
            os.replace(self._tmp, self.path)
        except OSError:
            if old is not None:
                os.replace(old, self.path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written so far (called by ``with`` when its block raises)."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort: the file is deleted next
                logger.debug("error closing %s during abort", self._tmp, exc_info=True)
            self._container = None
        if self._tmp is not None and self._tmp.exists():
            if self._tmp.is_dir():
                shutil.rmtree(self._tmp, ignore_errors=True)
            else:
                try:
                    self._tmp.unlink()
                except OSError:
                    logger.warning("could not delete the partial output %s", self._tmp)
