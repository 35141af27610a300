"""Memory limits in bytes and pixels, and the one-line refusal of a picture above them.

Light on purpose (no media libraries): :class:`~lipsynckit.options.SyncOptions` takes its defaults
from here, and the CLI's ``--help`` must not import torch or FFmpeg.
"""

from __future__ import annotations

from pathlib import Path

from lipsynckit.errors import AudioError, VideoError

__all__ = [
    "DEFAULT_FRAME_QUEUE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "check_pixels",
    "check_sample_rate",
    "frames_for_bytes",
]

#: Pixels per picture accepted by default: 4096 x 4096 (16.8 MP) takes 4K video (8.3 MP) and a
#: 12-MP phone photo; a 100-MP scan is refused before it is decoded.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Speech needs a few kHz; below this rate audio is refused (resampling 1 Hz audio to 16 kHz makes
#: 16000 samples of each one: a small file would fill the memory).
MIN_SAMPLE_RATE = 4000
#: Above the highest rate audio interfaces record at, a rate is a broken header.
MAX_SAMPLE_RATE = 768_000
#: Bytes of decoded frames waiting for their faces in one run (the pipeline's frame queue).
DEFAULT_FRAME_QUEUE_BYTES = 512 * 2**20


def check_pixels(width: int, height: int, max_pixels: int | None, path: str | Path | None) -> None:
    """A :class:`VideoError` naming the file, its size and the option when ``width x height`` is over
    ``max_pixels`` (``None``: no limit), or when the header gives no size at all."""
    if width <= 0 or height <= 0:
        raise VideoError(
            f"the picture has no size ({width}x{height})",
            path=path,
            stage="video",
            remedy="re-export the video or re-save the image.",
        )
    if max_pixels is not None and width * height > max_pixels:
        raise VideoError(
            f"the picture is {width}x{height} ({width * height / 1e6:.1f} MP), above max_pixels "
            f"{max_pixels} ({max_pixels / 1e6:.1f} MP)",
            path=path,
            stage="video",
            remedy="downscale it (e.g. to 3840 pixels wide), or raise max_pixels=N if the memory is there.",
            cli_remedy="downscale it (e.g. to 3840 pixels wide), or pass --max-pixels N if the memory is there.",
        )


def frames_for_bytes(frame_bytes: int, budget_bytes: int, most: int, least: int = 2) -> int:
    """How many frames of ``frame_bytes`` a queue of ``budget_bytes`` holds, within ``[least, most]``:
    a byte budget turned into the frame count a :class:`queue.Queue` bounds."""
    if frame_bytes <= 0:
        return most
    return max(least, min(most, budget_bytes // frame_bytes))


def check_sample_rate(rate: float, path: str | Path | None) -> None:
    """An :class:`AudioError` for a rate outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] Hz."""
    if not (MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE) or int(rate) != rate:
        raise AudioError(
            f"the audio's sample rate {rate:.10g} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
            path=path,
            stage="audio",
            remedy="re-export the audio at a usual rate (16000, 44100 or 48000 Hz).",
        )
