"""Reading audio: any audio file, or the audio track of a video, as an :class:`AudioClip`.

soundfile (libsndfile) reads the formats it knows exactly and fast; PyAV (FFmpeg) reads everything
else (mp3, m4a/aac, opus, the track of an mp4/mkv/mov). Every failure is an :class:`AudioError` that
names the file and says what to do, because bad audio is the most common user mistake.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch

from lipsynckit.errors import AudioError, EmptyInputError, InputNotFoundError, SilentAudioError
from lipsynckit.limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_sample_rate
from lipsynckit.types import AudioClip

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SILENCE_PEAK",
    "check_clip",
    "check_sample_rate",
    "load_audio",
    "read_audio_track",
]

logger = logging.getLogger(__name__)

#: A clip whose absolute peak stays below this (about -80 dBFS) is treated as silent.
SILENCE_PEAK = 1e-4

# Containers libsndfile reads natively; anything else goes to FFmpeg.
_SOUNDFILE_EXTS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".w64", ".caf"}
)
_STAGE = "audio"


def _check_input(path: Path) -> None:
    if not path.exists():
        raise InputNotFoundError(
            "audio file not found", path=path, stage=_STAGE, remedy="check the path and the file name."
        )
    if path.is_dir():
        raise AudioError(
            "this is a folder, not an audio file", path=path, stage=_STAGE, remedy="pass an audio file."
        )
    if path.stat().st_size == 0:
        raise EmptyInputError(
            "audio file is empty (0 bytes)",
            path=path,
            stage=_STAGE,
            remedy="the file was not written completely; export or download it again.",
        )


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    return np.ascontiguousarray(data.T), int(sr)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to float32 ``(C, N)`` at its own rate."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise AudioError(
            f"cannot open this file as audio ({e})",
            path=path,
            stage=_STAGE,
            remedy="check that the file is a complete, playable audio or video file; re-export it as WAV if unsure.",
        ) from e
    with container:
        if not container.streams.audio:
            if container.streams.video:
                raise AudioError(
                    "this video has no audio track; pass an audio file",
                    path=path,
                    stage=_STAGE,
                    remedy="give the speech as a separate audio file (wav, mp3, m4a, ...).",
                )
            raise AudioError(
                "this file has no audio stream",
                path=path,
                stage=_STAGE,
                remedy="pass an audio file with sound in it.",
            )
        stream = container.streams.audio[0]
        # Planar float32 at the stream's own rate and layout: no precision lost before our resampler.
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate = int(stream.rate or 0)
        try:
            for frame in container.decode(stream):
                rate = rate or int(frame.sample_rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except (av.FFmpegError, ValueError) as e:
            raise AudioError(
                f"the audio stream is corrupt and cannot be decoded ({e})",
                path=path,
                stage=_STAGE,
                remedy="re-export or re-download the file; a truncated download is the usual cause.",
            ) from e
    channels = stream.codec_context.channels or 1
    if not chunks:
        return np.zeros((channels, 0), np.float32), rate
    return np.concatenate([c.reshape(c.shape[0], -1) for c in chunks], axis=1).astype(
        np.float32, copy=False
    ), rate


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    allow_silent: bool = False,
) -> AudioClip:
    """Read any audio file (or a video's own track) as float32 ``(C, N)``, optionally mono and resampled.

    ``sample_rate`` resamples with the torchaudio-equivalent sinc filter (:func:`~lipsynckit.media.resample`).
    Silent audio (peak below :data:`SILENCE_PEAK`) is refused unless ``allow_silent``: lip sync on
    silence produces a closed mouth, which is almost always a mistake (wrong track, muted export).
    """
    p = Path(path)
    _check_input(p)
    data: np.ndarray | None = None
    rate = 0
    sf_error: Exception | None = None
    if p.suffix.lower() in _SOUNDFILE_EXTS:
        try:
            data, rate = _read_soundfile(p)
            logger.debug("read %s with soundfile: %d Hz, %s", p, rate, data.shape)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:  # unknown subtype, corrupt header, ...
            sf_error = e
            logger.debug("soundfile cannot read %s (%s); trying FFmpeg", p, e)
    if data is None:
        try:
            data, rate = _read_pyav(p)
        except AudioError as e:
            if sf_error is not None:
                e.message += f"; libsndfile also failed: {sf_error}"
            raise
        logger.debug("read %s with PyAV: %d Hz, %s", p, rate, data.shape)
    clip = check_clip(AudioClip(torch.from_numpy(data), rate, str(p)), p, allow_silent)
    if mono:
        clip = clip.mono()
    if sample_rate is not None and sample_rate != clip.sample_rate:
        logger.debug("resampling %s from %d to %d Hz", p, clip.sample_rate, sample_rate)
        clip = clip.resample(int(sample_rate))
    return clip


def check_clip(clip: AudioClip, path: str | Path | None = None, allow_silent: bool = False) -> AudioClip:
    """The clip, if lip sync can use it: a usual rate, samples, all finite, not silent (unless allowed).

    Files (:func:`load_audio`) and in-memory clips given to the API pass the same checks.
    """
    path = path if path is not None else clip.source
    check_sample_rate(clip.sample_rate, path)
    if clip.num_samples == 0 or clip.samples.numel() == 0:  # (0, n): no channel holds a sample
        raise AudioError(
            "the audio is empty (0 samples)",
            path=path,
            stage=_STAGE,
            remedy="pass a file that contains speech.",
        )
    if not bool(torch.isfinite(clip.samples).all()):
        raise AudioError(
            "the audio contains NaN or infinite samples",
            path=path,
            stage=_STAGE,
            remedy="re-export the audio as 16-bit PCM WAV.",
        )
    peak = float(clip.samples.abs().max())
    if peak < SILENCE_PEAK and not allow_silent:
        level = 20 * math.log10(peak) if peak > 0 else float("-inf")
        raise SilentAudioError(
            f"the audio is silent (peak {level:.1f} dBFS)",
            path=path,
            stage=_STAGE,
            remedy="check that this is the right track and that it is not muted (pass allow_silent=True to accept it).",
        )
    return clip


def read_audio_track(path: str | Path, sample_rate: int | None = None) -> AudioClip:
    """The audio of a file as stored (all channels, silence allowed): for checking outputs and tests."""
    return load_audio(path, sample_rate=sample_rate, mono=False, allow_silent=True)
