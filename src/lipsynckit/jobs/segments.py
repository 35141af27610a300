"""Segment jobs: re-sync only some time ranges of a template and splice them into the untouched rest.

The whole template is decoded and encoded once, but faces and the model run only on the segment
frames; the model's audio windows see a short pad of the spliced track on each side (its look-ahead).
Outside the segments the output frames are the template's decoded frames and the audio is the
template's own track sample for sample; inside, the segment audio replaces it with short linear
cross-fades placed just inside each range, so nothing outside moves and the length never drifts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lipsynckit.errors import AudioError, LipSyncError, NoFaceError
from lipsynckit.jobs.manifest import Segment
from lipsynckit.model import LipSyncModel
from lipsynckit.options import SyncOptions, output_mode_for
from lipsynckit.pipeline import SyncResult, _check_input, generate_frames, track_source
from lipsynckit.timing import StageTimer
from lipsynckit.types import AudioClip, Face, FaceTrack

log = logging.getLogger(__name__)

#: audio cross-fade at each join (seconds; shortened for very short segments)
AUDIO_FADE_S = 0.010
#: frames blended from the template into the re-synced frames at each join
VIDEO_FADE_FRAMES = 2
#: audio context the model sees beyond each segment edge (its look-ahead; 200 ms covers Wav2Lip and
#: MuseTalk windows)
MODEL_PAD_S = 0.2


@dataclass(frozen=True)
class FrameRange:
    """A segment on the template's frame grid: frames ``[start, stop)`` and its source audio."""

    start: int
    stop: int
    audio: Path | None
    offset: float


def frame_ranges(
    segments: Sequence[Segment], fps: float, num_frames: int, template: Path
) -> list[FrameRange]:
    """Segments snapped to whole frames, checked against the template's length."""
    out: list[FrameRange] = []
    duration = num_frames / fps
    for s in sorted(segments, key=lambda s: s.start):
        if s.end > duration + 0.5 / fps:
            raise LipSyncError(
                f"segment {s.start}-{s.end} s ends after the template ({duration:.3f} s)",
                path=template,
                stage="segments",
                remedy="keep every segment within the template's duration",
            )
        a, b = round(s.start * fps), min(num_frames, round(s.end * fps))
        if b <= a:
            raise LipSyncError(
                f"segment {s.start}-{s.end} s is shorter than one frame",
                path=template,
                stage="segments",
                remedy="make the segment at least one frame long",
            )
        out.append(FrameRange(a, b, s.audio, s.offset))
    return out


def template_audio(path: Path, num_frames: int, fps: float) -> AudioClip:
    """The template's own track as stored (all channels), or silence of its length when it has none."""
    from lipsynckit.media import read_audio_track

    try:
        return read_audio_track(path)
    except AudioError as e:
        if "no audio" not in e.message:
            raise
        log.info("%s has no audio track: segments are spliced into silence", path)
        rate = 16000
        return AudioClip(torch.zeros(1, round(num_frames / fps * rate)), rate, str(path))


def splice_audio(
    base: AudioClip, pieces: Sequence[tuple[int, int, AudioClip]], fade_s: float = AUDIO_FADE_S
) -> AudioClip:
    """``base`` with ``pieces`` = (first sample, end sample, clip) written over it.

    Each piece is resampled to ``base``'s rate, mixed to its channel count, cut or zero-padded to fit
    the range, and cross-faded over ``fade_s`` just inside the range's edges.
    """
    out = base.samples.clone()
    for a, b, clip in pieces:
        n = b - a
        src = clip.mono().resample(base.sample_rate).samples[0]
        seg = torch.zeros(n, dtype=out.dtype)
        take = min(n, int(src.shape[0]))
        seg[:take] = src[:take]
        fade = min(int(round(fade_s * base.sample_rate)), n // 4)
        w = torch.ones(n, dtype=out.dtype)
        if fade > 0:
            ramp = (torch.arange(fade, dtype=out.dtype) + 1) / (fade + 1)
            w[:fade] = ramp
            w[n - fade :] = ramp.flip(0)
        out[:, a:b] = w * seg[None] + (1 - w) * out[:, a:b]
    return AudioClip(out, base.sample_rate, base.source)


def _segment_track(
    video: Path,
    fr: FrameRange,
    cached: FaceTrack | None,
    options: SyncOptions,
    model: LipSyncModel,
    timer: StageTimer,
    size: tuple[int, int],
) -> FaceTrack:
    """The face as found in the segment's frames: a slice of the template's cached track, or tracked."""
    if cached is not None and len(cached) >= fr.stop:
        return FaceTrack(faces=cached.faces[fr.start : fr.stop], detector=cached.detector)
    return track_source(video, fr.stop - fr.start, options, model, timer, size, first_frame=fr.start)


def _blend(generated: np.ndarray, original: np.ndarray, weight: float) -> np.ndarray:
    mix = weight * generated.astype(np.float32) + (1 - weight) * original.astype(np.float32)
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def sync_segments(
    video: str | Path,
    audio: str | Path | None,
    segments: Sequence[Segment],
    model: LipSyncModel,
    output: str | Path,
    options: SyncOptions,
    on_frame: Callable[[int], None] | None = None,
) -> SyncResult:
    """Re-sync only ``segments`` of ``video``; everything else is the template as decoded."""
    from lipsynckit.avatar import PreparedCache, open_cache
    from lipsynckit.media import VideoSink, VideoSource, load_audio

    timer = StageTimer()
    video_path = _check_input(video, "video")
    out_path = Path(output).expanduser()
    src = VideoSource(video_path, fps_for_images=options.fps)
    info = src.info
    if info.is_image:
        raise LipSyncError(
            "segments need a video template, not a still image",
            path=video_path,
            stage="segments",
            remedy="drop the segments, or use a video template",
        )
    fps = float(info.fps)
    n = int(info.num_frames)
    ranges = frame_ranges(segments, fps, n, video_path)

    with timer.stage("audio"):
        base = template_audio(video_path, n, fps)
        sr = base.sample_rate
        clips: dict[Path, AudioClip] = {}
        pieces = []
        for fr in ranges:
            path = fr.audio if fr.audio is not None else audio
            if path is None:
                raise AudioError("segment has no audio", stage="audio", remedy="give the row an audio")
            p = _check_input(path, "audio")
            if p not in clips:
                clips[p] = load_audio(p, allow_silent=options.allow_silent_audio)
            clip = clips[p]
            a, b = round(fr.start / fps * sr), round(fr.stop / fps * sr)
            first = round(fr.offset * clip.sample_rate)
            if first >= clip.num_samples:
                raise AudioError(
                    f"offset {fr.offset} s is past the end of the audio ({clip.duration:.2f} s)",
                    path=p,
                    stage="audio",
                    remedy="use an offset inside the audio",
                )
            want = math.ceil((fr.stop - fr.start) / fps * clip.sample_rate)
            pieces.append((a, b, clip.slice(first / clip.sample_rate, (first + want) / clip.sample_rate)))
        spliced = splice_audio(base, pieces)

    cache: PreparedCache | None = None
    cached: FaceTrack | None = None
    if options.avatar_dir is not None:
        cache = open_cache(options.avatar_dir, video_path, model, options)
        cached = cache.load_track()

    pad = max(1, math.ceil(MODEL_PAD_S * fps))
    mono = spliced.mono()
    plans: list[tuple[FrameRange, FaceTrack, torch.Tensor]] = []
    found = 0
    for fr in ranges:
        track = _segment_track(video_path, fr, cached, options, model, timer, (info.width, info.height))
        track = model.adjust_track(track, (info.height, info.width))
        found += track.num_found
        p0, p1 = max(0, fr.start - pad), min(n, fr.stop + pad)
        with timer.stage("features"):
            window = mono.slice(p0 / fps, p1 / fps)
            feats = model.audio_features(window, fps)
        first, count = fr.start - p0, fr.stop - fr.start
        if feats.shape[0] < first + count:  # rounding at the very end: repeat the last window
            extra = first + count - feats.shape[0]
            feats = torch.cat([feats, feats[-1:].expand(extra, *feats.shape[1:])])
        plans.append((fr, track, feats[first : first + count]))
    if found == 0:
        raise NoFaceError(
            f"no face found in the {sum(fr.stop - fr.start for fr in ranges)} segment frames",
            path=video_path,
            stage="faces",
            remedy="use a template with a visible face in the segments, or give --face-boxes",
        )

    failed: list[tuple[int, str]] = []
    stats: dict[str, Any] = {}

    def segment_frames(fr: FrameRange, track: FaceTrack, feats: torch.Tensor) -> Iterator[np.ndarray]:
        faces: list[Face | None] = [None] * fr.start
        full = FaceTrack(faces=faces + list(track.faces), detector=track.detector)
        index = np.arange(fr.start, fr.stop)
        return generate_frames(
            model,
            src.frames(range(fr.start, fr.stop)),
            index,
            full,
            feats,
            options,
            timer,
            failed,
            cache,
            None,
            stats,
        )

    mode = output_mode_for(out_path, options.output_mode)
    t_gen = time.perf_counter()
    with VideoSink(
        out_path,
        fps=fps,
        size=(info.width, info.height),
        audio=spliced,
        mode=mode,
        crf=options.crf,
        preset=options.preset,
        threads=options.encode_threads,
    ) as sink:
        k = 0
        plan_i = 0
        gen: Iterator[np.ndarray] | None = None
        for frame in src.frames(range(n)):
            if plan_i < len(plans) and k == plans[plan_i][0].start:
                gen = segment_frames(*plans[plan_i])
            if gen is not None:
                fr = plans[plan_i][0]
                out = next(gen)
                pos, length = k - fr.start, fr.stop - fr.start
                edge = min(pos, length - 1 - pos)
                if edge < VIDEO_FADE_FRAMES and length > 2 * VIDEO_FADE_FRAMES:
                    out = _blend(out, frame, (edge + 1) / (VIDEO_FADE_FRAMES + 1))
                if k == fr.stop - 1:
                    for _ in gen:  # let the generator finish and release its scheduler
                        pass
                    gen, plan_i = None, plan_i + 1
                frame = out
            t0 = time.perf_counter()
            sink.write(frame)
            timer.add("encode", time.perf_counter() - t0)
            if on_frame is not None:
                on_frame(k)
            k += 1
    timer.seconds["pipeline"] = time.perf_counter() - t_gen
    seg_frames = sum(fr.stop - fr.start for fr in ranges)
    return SyncResult(
        output=out_path,
        model=model.info.name,
        fps=fps,
        width=info.width,
        height=info.height,
        frames=k,
        frames_with_face=found,
        frames_without_face=seg_frames - found,
        source_frames=n,
        audio_duration=spliced.duration,
        detector=plans[0][1].detector if plans else "",
        failed_frames=failed,
        stage_seconds=dict(timer.seconds),
        notes=[f"{len(ranges)} segment(s), {seg_frames} of {n} frames re-synced"],
        avatar_hits=cache.hits if cache is not None else 0,
        scheduler=stats,
    )
