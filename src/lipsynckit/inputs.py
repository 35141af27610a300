"""Checking the inputs and the output name before any model loads.

A wrong path, an empty file, a photo given as the audio or an ``.avi`` output should cost the user a
fraction of a second, not a model load: :func:`check_run` opens each file's header only (PyAV, or
libsndfile for plain audio), never decodes the whole file, and raises one :class:`LipSyncError` that
names the file, the stage and the remedy.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from lipsynckit.errors import AudioError, EmptyInputError, InputNotFoundError, OutputError, VideoError
from lipsynckit.limits import DEFAULT_MAX_PIXELS, check_pixels, check_sample_rate
from lipsynckit.options import OUTPUT_SUFFIXES, output_mode_for

__all__ = ["check_file", "check_output", "check_run", "check_template"]

_SOUNDFILE_EXTS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au"})


def check_file(path: str | Path, what: str, stage: str) -> Path:
    """``path`` exists, is a file and is not empty (``what`` names it in the message: "audio file")."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputNotFoundError(
            f"{what} not found", path=p, stage=stage, remedy="check the path and the file name."
        )
    if p.is_dir():
        raise InputNotFoundError(
            f"{what} is a folder, not a file", path=p, stage=stage, remedy="pass a file."
        )
    if p.stat().st_size == 0:
        raise EmptyInputError(
            f"{what} is empty (0 bytes)",
            path=p,
            stage=stage,
            remedy="the file was not written completely (an interrupted copy, export or download); "
            "export or download it again.",
        )
    return p


def _open_container(p: Path, what: str, stage: str, error: type[AudioError] | type[VideoError]):  # type: ignore[no-untyped-def]
    import av

    try:
        return av.open(str(p), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise error(
            f"cannot read this file as {what} ({e})",
            path=p,
            stage=stage,
            remedy="check that a player can open it; re-export or re-download it if not.",
        ) from e


#: Smaller than this on either side, a picture cannot hold a face any detector finds.
MIN_IMAGE_SIDE = 16


def _check_image(p: Path, max_pixels: int | None) -> None:
    """The image is within ``max_pixels`` (from its header, before any decode), decodes (a reduced
    decode: a fraction of the pixels) and is not too small for a face."""
    import cv2
    import numpy as np

    from lipsynckit.image_kind import stated_size

    stated = stated_size(p)
    if stated is not None and stated[0] and stated[1]:
        check_pixels(stated[0], stated[1], max_pixels, p)

    data = np.fromfile(str(p), dtype=np.uint8)
    img = None
    for flag in (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_GRAYSCALE):  # the reduced decode fails on
        try:  # images smaller than its factor (1x1) with a cv2.error, not None
            img = cv2.imdecode(data, flag)
        except cv2.error:
            img = None
        if img is not None:
            break
    if img is None:
        raise VideoError(
            "cannot decode this image",
            path=p,
            stage="video",
            remedy="check that it is a complete png/jpg/webp/bmp image; re-save it if unsure.",
        )
    h, w = img.shape[:2]
    if flag == cv2.IMREAD_GRAYSCALE and min(h, w) < MIN_IMAGE_SIDE:
        raise VideoError(
            f"this image is {w}x{h} pixels, too small to hold a face",
            path=p,
            stage="video",
            remedy=f"pass a photo at least {MIN_IMAGE_SIDE} pixels on each side (a face of 100 or more works best).",
        )


def _check_video(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Path, bool, bool]:
    """The source is a readable image or a container with a video stream, its pictures within
    ``max_pixels`` (from the header): (path, is_image, has_audio)."""
    from lipsynckit.image_kind import is_image_file  # not lipsynckit.media: that imports torch

    p = check_file(path, "video or image", "video")
    if is_image_file(p):
        _check_image(p, max_pixels)
        return p, True, False
    with _open_container(p, "a video or image", "video", VideoError) as c:
        if not c.streams.video:
            kind = "an audio file" if c.streams.audio else "a file without a video stream"
            raise VideoError(
                f"this is {kind}; there is no picture to lip-sync",
                path=p,
                stage="video",
                remedy="pass a video or a photo of a face first, and the audio second.",
            )
        cc = c.streams.video[0].codec_context
        if cc.width and cc.height:
            check_pixels(int(cc.width), int(cc.height), max_pixels, p)
        _check_not_cut_short(c, p)
        return p, False, bool(c.streams.audio)


def _check_not_cut_short(
    c: object, p: Path, error: type[AudioError] | type[VideoError] = VideoError, stage: str = "video"
) -> None:
    """An mp4/mov whose index comes first (``+faststart``) opens fine when the data after it is cut
    short; its last frames are then missing. One seek per stream to its last packet (any frame, no
    decode) finds it in milliseconds instead of after the model loads. Other containers, and any
    doubt, pass."""
    import av

    fmt = getattr(getattr(c, "format", None), "name", "") or ""
    if not ("mp4" in fmt or "mov" in fmt):
        return
    size = p.stat().st_size
    streams = c.streams  # type: ignore[attr-defined]
    for st in [*streams.video[:1], *streams.audio[:1]]:
        if not st.duration:
            continue
        try:
            c.seek((st.start_time or 0) + st.duration - 1, stream=st, backward=True, any_frame=True)  # type: ignore[attr-defined]
            packets = [pk for pk in islice(c.demux(st), 4) if pk.size]  # type: ignore[attr-defined]
        except (av.FFmpegError, OSError, ValueError):
            continue
        if not packets or any(pk.pos is not None and pk.pos + pk.size > size for pk in packets):
            raise error(
                f"the file is cut short: its index lists {st.type} past the end of the file",
                path=p,
                stage=stage,
                remedy="re-download or re-export it; a partial download or copy is the usual cause.",
            )


def check_template(path: str | Path) -> Path:
    """A template (video or photo) is readable, header only; the errors name ``path``."""
    return _check_video(path)[0]


def _check_audio(path: str | Path) -> Path:
    """The audio file is readable and has an audio stream (header only)."""
    p = check_file(path, "audio file", "audio")
    if p.suffix.lower() in _SOUNDFILE_EXTS:
        import soundfile as sf

        try:
            rate = sf.info(str(p)).samplerate
        except (sf.LibsndfileError, RuntimeError, TypeError):
            pass  # FFmpeg reads more (odd WAV subtypes, mislabelled files); it decides below
        else:
            check_sample_rate(rate, p)
            return p
    with _open_container(p, "audio", "audio", AudioError) as c:
        if not c.streams.audio:
            raise AudioError(
                "this file has no audio stream",
                path=p,
                stage="audio",
                remedy="pass an audio file (wav, mp3, m4a, ...) or a video with sound as the audio.",
            )
        rate = int(c.streams.audio[0].rate or 0)
        if rate:  # a stream that states no rate is left to the decoder
            check_sample_rate(rate, p)
        _check_not_cut_short(c, p, AudioError, "audio")
    return p


def check_output(path: str | Path, output_mode: str = "auto") -> str:
    """The sink mode for ``path`` (from its suffix), or an :class:`OutputError` listing the suffixes."""
    p = Path(path).expanduser()
    try:
        return output_mode_for(p, output_mode)
    except ValueError as e:
        raise OutputError(
            str(e),
            path=p,
            stage="output",
            remedy=f"name the output {', '.join(OUTPUT_SUFFIXES)}, or a folder (no suffix) for PNG frames.",
            cli_remedy=f"name -o {', '.join(OUTPUT_SUFFIXES)}, or a folder (no suffix) for PNG frames "
            "(--lossless: .mkv or a folder).",
        ) from None


def check_run(
    video: str | Path,
    audio: object,
    output: str | Path | None,
    output_mode: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> None:
    """Everything about a run's files that can be known before a model loads.

    ``audio`` may be a path, ``None`` (the video's own track) or an in-memory clip (its rate, samples
    and values are checked here; its silence later, where ``allow_silent_audio`` is known).
    The output must be something the run may replace (:func:`~lipsynckit.output_guard.check_output_target`).
    """
    v, is_image, has_audio = _check_video(video, max_pixels)
    if isinstance(audio, (str, Path)):
        _check_audio(audio)
    elif audio is not None:  # an AudioClip: torch is loaded already
        from lipsynckit.media.audio import check_clip

        check_clip(audio, allow_silent=True)  # type: ignore[arg-type]
    elif audio is None and not has_audio:
        raise AudioError(
            "this photo has no sound" if is_image else "this video has no audio track",
            path=v,
            stage="audio",
            remedy="pass the speech as a second argument (an audio file, or a video with sound).",
        )
    if output is not None:
        from lipsynckit.output_guard import check_not_an_input, check_output_target

        check_not_an_input(output, [video, audio])
        check_output_target(output, check_output(output, output_mode), [video, audio])
