"""Segment jobs: re-sync only some time ranges of a template and splice them into the untouched rest.

Faces and the model run only on the segment frames (faces tracked on the segment plus a 2-frame margin
when no prepared track exists); the model's audio windows see a short pad of the spliced track on each
side (its look-ahead). Outside the segments the output frames are the template's decoded frames and the
audio is the template's own track sample for sample; inside, the segment audio replaces it with short
linear cross-fades placed just inside each range, so nothing outside moves and the length never drifts.

An H.264 MP4/MOV template written to an .mp4/.mov output is smart-rendered (:mod:`lipsynckit.media.splice`):
only the groups of pictures around each segment are decoded and encoded again, every other video packet
(and AAC packet, where the track allows) is copied. Anything else decodes and encodes the whole template
once, and the result's notes say why.
"""

from __future__ import annotations

import functools
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
from lipsynckit.faces import TrackOptions
from lipsynckit.jobs.manifest import Segment
from lipsynckit.media.splice import (
    SPLICE_SUFFIXES,
    PacketIndex,
    SpliceUnsupported,
    decode_span,
    picture_rgb,
    splice_video,
)
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
#: frames tracked beyond each segment edge when no prepared track exists (half the tracker's smoothing
#: window: what the moving average reads across the edge)
TRACK_MARGIN = TrackOptions().smooth_window // 2
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
    num_frames: int,
) -> FaceTrack:
    """The face as found in the segment's frames: a slice of the template's cached track, or tracked.

    Tracked, only the segment and :data:`TRACK_MARGIN` frames either side are read and searched, so the
    moving-average smoothing sees the same neighbours at the segment's edges as inside it.
    """
    if cached is not None and len(cached) >= fr.stop:
        return FaceTrack(faces=cached.faces[fr.start : fr.stop], detector=cached.detector)
    lo, hi = max(0, fr.start - TRACK_MARGIN), min(num_frames, fr.stop + TRACK_MARGIN)
    track = track_source(video, hi - lo, options, model, timer, size, first_frame=lo)
    return FaceTrack(faces=track.faces[fr.start - lo : fr.stop - lo], detector=track.detector)


def _blend(generated: np.ndarray, original: np.ndarray, weight: float) -> np.ndarray:
    mix = weight * generated.astype(np.float32) + (1 - weight) * original.astype(np.float32)
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


_Plan = tuple[FrameRange, FaceTrack, torch.Tensor]
_SegmentFrames = Callable[[FrameRange, FaceTrack, torch.Tensor], Iterator[np.ndarray]]


class _Resync:
    """The re-synced frames of every segment, asked for frame by frame in display order."""

    def __init__(self, plans: Sequence[_Plan], segment_frames: _SegmentFrames) -> None:
        self.plans, self.segment_frames = plans, segment_frames
        self.i = 0
        self.gen: Iterator[np.ndarray] | None = None

    def at(self, k: int, original: Callable[[], np.ndarray]) -> np.ndarray | None:
        """Frame ``k`` re-synced (blended into ``original()`` at the joins), or None outside segments."""
        while self.i < len(self.plans) and self.gen is None and self.plans[self.i][0].stop <= k:
            self.i += 1  # a segment skipped by the caller (smart rendering copies it)
        if self.i < len(self.plans) and k == self.plans[self.i][0].start:
            self.gen = self.segment_frames(*self.plans[self.i])
        if self.gen is None:
            return None
        fr = self.plans[self.i][0]
        out = next(self.gen)
        pos, length = k - fr.start, fr.stop - fr.start
        edge = min(pos, length - 1 - pos)
        if edge < VIDEO_FADE_FRAMES and length > 2 * VIDEO_FADE_FRAMES:
            out = _blend(out, original(), (edge + 1) / (VIDEO_FADE_FRAMES + 1))
        if k == fr.stop - 1:
            for _ in self.gen:  # let the generator finish and release its scheduler
                pass
            self.gen, self.i = None, self.i + 1
        return out

    def close(self) -> None:
        if self.gen is not None:
            close = getattr(self.gen, "close", None)
            if close is not None:
                close()
            self.gen = None


def _splice_index(
    template: Path, output: Path, mode: str, rotation: int, num_frames: int
) -> tuple[PacketIndex | None, str]:
    """The template's packet index when its untouched pictures can be copied, else why not."""
    if mode != "mp4" or output.suffix.lower() not in SPLICE_SUFFIXES:
        return None, f"output is {output.suffix or 'a folder'} ({mode})"
    if rotation:
        return None, f"template is rotated {rotation} degrees"
    try:
        index = PacketIndex.read(template)
    except SpliceUnsupported as e:
        return None, str(e)
    if index.num_frames != num_frames:
        return None, f"template has {index.num_frames} pictures for {num_frames} frames"
    return index, ""


def _smart_render(
    index: PacketIndex,
    out_path: Path,
    plans: Sequence[_Plan],
    segment_frames: _SegmentFrames,
    audio: AudioClip,
    audio_ranges: list[tuple[int, int]],
    options: SyncOptions,
    on_frame: Callable[[int], None] | None,
) -> list[str]:
    """Copy the template's packets; decode, re-sync and encode only the spans around the segments."""
    from av.video.reformatter import VideoReformatter

    resync = _Resync(plans, segment_frames)
    conv = VideoReformatter()

    def render(c: int, d: int) -> Iterator[Any]:
        for k, picture in zip(range(c, d), decode_span(index, c, d), strict=False):

            def original(p: Any = picture) -> np.ndarray:
                return picture_rgb(p, conv)

            out = resync.at(k, original)
            yield picture if out is None else out
            if on_frame is not None:
                on_frame(k)

    spans = index.spans((fr.start, fr.stop) for fr, _, _ in plans)
    try:
        return splice_video(
            index,
            out_path,
            spans,
            render,
            audio,
            crf=options.crf,
            preset=options.preset,
            on_packet=on_frame,
            audio_ranges=audio_ranges,
            threads=options.encode_threads,
        )
    finally:
        resync.close()


def _whole_render(
    src: Any,
    out_path: Path,
    mode: str,
    plans: Sequence[_Plan],
    segment_frames: _SegmentFrames,
    audio: AudioClip,
    options: SyncOptions,
    timer: StageTimer,
    on_frame: Callable[[int], None] | None,
) -> None:
    """Decode and encode every frame of the template (any format in, any output)."""
    from lipsynckit.media import VideoSink

    info = src.info
    resync = _Resync(plans, segment_frames)
    try:
        with VideoSink(
            out_path,
            fps=float(info.fps),
            size=(info.width, info.height),
            audio=audio,
            mode=mode,
            crf=options.crf,
            preset=options.preset,
            threads=options.encode_threads,
        ) as sink:
            for k, frame in enumerate(src.frames(range(info.num_frames))):
                out = resync.at(k, functools.partial(np.asarray, frame))
                t0 = time.perf_counter()
                sink.write(frame if out is None else out)
                timer.add("encode", time.perf_counter() - t0)
                if on_frame is not None:
                    on_frame(k)
    finally:
        resync.close()


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
    from lipsynckit.media import VideoSource, load_audio

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
        track = _segment_track(video_path, fr, cached, options, model, timer, (info.width, info.height), n)
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
    notes: list[str] = []
    t_gen = time.perf_counter()
    packets, why = _splice_index(video_path, out_path, mode, info.rotation, n)
    if packets is not None:
        try:
            notes += _smart_render(
                packets,
                out_path,
                plans,
                segment_frames,
                spliced,
                [(a, b) for a, b, _ in pieces],
                options,
                on_frame,
            )
        except SpliceUnsupported as e:  # found while writing: the spliced file was dropped
            packets, why = None, str(e)
            failed.clear()
            stats.clear()
    if packets is None:
        log.info("%s: %s; the whole template is decoded and re-encoded", video_path, why)
        notes.append(f"{why}: whole template re-encoded")
        _whole_render(src, out_path, mode, plans, segment_frames, spliced, options, timer, on_frame)
    timer.seconds["pipeline"] = time.perf_counter() - t_gen
    seg_frames = sum(fr.stop - fr.start for fr in ranges)
    return SyncResult(
        output=out_path,
        model=model.info.name,
        fps=fps,
        width=info.width,
        height=info.height,
        frames=n,
        frames_with_face=found,
        frames_without_face=seg_frames - found,
        source_frames=n,
        audio_duration=spliced.duration,
        detector=plans[0][1].detector if plans else "",
        failed_frames=failed,
        stage_seconds=dict(timer.seconds),
        notes=[f"{len(ranges)} segment(s), {seg_frames} of {n} frames re-synced", *notes],
        avatar_hits=cache.hits if cache is not None else 0,
        scheduler=stats,
    )
