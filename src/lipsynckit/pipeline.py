"""The path a video takes: audio → faces → prepare → batched generate → composite → encode.

Two streaming passes over the source: one to track faces (boxes only are kept), one to generate.
Nothing holds the whole video: frames flow through bounded queues, so memory stays flat with length.
:func:`sync_file` runs the nine numbered stages of ``docs/architecture.md`` (:data:`STAGES`), each a
small function below, and tells an optional ``hook(stage, artefact)`` what each one made.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch

from lipsynckit.avatar import PreparedCache, open_cache
from lipsynckit.errors import (
    AudioError,
    FrameFailedError,
    InputNotFoundError,
    LipSyncError,
    NoFaceError,
    SilentAudioError,
)
from lipsynckit.inputs import check_output
from lipsynckit.limits import frames_for_bytes
from lipsynckit.model import LipSyncModel
from lipsynckit.options import SyncOptions
from lipsynckit.progress import progress_bar
from lipsynckit.timing import StageTimer
from lipsynckit.types import AudioClip, FaceTrack, PreparedFace, WorkItem

if TYPE_CHECKING:
    from lipsynckit.gate import GatePlan
    from lipsynckit.media import VideoSink
    from lipsynckit.media.video import VideoInfo
    from lipsynckit.scheduler import BatchScheduler, Job

log = logging.getLogger(__name__)

Stage = Literal["inputs", "audio", "features", "frame_index", "faces", "gate", "generate", "encode", "result"]
"""The stages of :func:`sync_file`, in order, and what a hook receives after each (its artefact):

1. ``inputs``: the source's :class:`~lipsynckit.media.video.VideoInfo` (fps, size, frames, still image?)
2. ``audio``: the :class:`~lipsynckit.types.AudioClip` as loaded (cut to the video later with ``cut``)
3. ``features``: the model's audio features, a tensor with one row per output frame
4. ``frame_index``: an int array, the source frame of each output frame (its length is the output's)
5. ``faces``: the :class:`~lipsynckit.types.FaceTrack` of the source frames used, after the model's box rules
6. ``gate``: the :class:`~lipsynckit.gate.GatePlan` (weight per output frame), or ``None`` with the gate off
7. ``generate``: the scheduler's statistics (a dict, as in ``SyncResult.scheduler``; empty when the
   caller brought its own scheduler), once every frame is generated and written, before the commit
8. ``encode``: the output :class:`~pathlib.Path`, committed (the file is there)
9. ``result``: the :class:`SyncResult`

Artefacts are the objects the run goes on with: look, do not change them. There is no call per frame
(a Python call per frame costs time on long videos); the frames are in the output.
"""
STAGES: tuple[Stage, ...] = get_args(Stage)
StageHook = Callable[[Stage, Any], None]
"""``hook(stage, artefact)``: called once after each stage of :data:`STAGES`."""


@dataclass
class SyncResult:
    """What a run produced and how it went (per-stage seconds, faces found, frames that failed)."""

    output: Path | None
    model: str
    fps: float
    width: int
    height: int
    frames: int
    frames_with_face: int
    frames_without_face: int
    source_frames: int
    audio_duration: float
    detector: str
    failed_frames: list[tuple[int, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    avatar_hits: int = 0
    speech_spans: list[tuple[float, float]] = field(default_factory=list)  # voice-activity gate, seconds
    gated_frames: int = 0  # frames shown as the source: nobody speaks
    model_calls_skipped: int = 0  # frames with a face the model never saw (compute saved by the gate)
    face_track: FaceTrack | None = field(default=None, repr=False)  # the faces used, per source frame
    frame_index: list[int] = field(default_factory=list, repr=False)  # source frame of each output frame
    vad: str = ""  # the voice-activity detector the gate ran ("energy" or "silero"; "" with the gate off)
    # what the pauses showed: "source" (the source's own frames) or "model_closed" (the model's closed
    # mouth, where the source frame speaks in its own audio: a dubbing source); "" with the gate off
    rest_mode: str = ""
    closed_frames: int = 0  # frames at rest drawn by the model with a closed mouth
    source_speech_spans: list[tuple[float, float]] = field(default_factory=list)  # the source's own speech

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    def face_frames(self, decimals: int = 1) -> dict[str, Any]:
        """The face of every output frame as compact columns (what ``--json`` writes under ``faces``).

        ``source``: the source frame shown; ``box``: ``[x1, y1, x2, y2]``; ``score``; ``landmarks``:
        ``[x0, y0, x1, y1, ...]`` (``landmark_points`` pairs). ``None`` where that frame has no face.
        Pixel values are rounded to ``decimals`` places: a tenth of a pixel is below what a box means.
        """
        faces = self.face_track.faces if self.face_track is not None else []
        boxes: list[list[float] | None] = []
        scores: list[float | None] = []
        marks: list[list[float] | None] = []
        points = 0
        for s in self.frame_index:
            f = faces[s] if 0 <= s < len(faces) else None
            if f is None:
                boxes.append(None)
                scores.append(None)
                marks.append(None)
                continue
            boxes.append([round(float(v), decimals) for v in f.box])
            scores.append(round(float(f.score), 3))
            if f.landmarks is None:
                marks.append(None)
            else:
                points = max(points, len(f.landmarks))
                marks.append([round(float(v), decimals) for v in f.landmarks.reshape(-1)])
        return {
            "detector": self.detector,
            "landmark_points": points,
            "source": list(self.frame_index),
            "box": boxes,
            "score": scores,
            "landmarks": marks,
        }

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        return (
            f"{self.output}: {self.frames} frames at {self.fps:.3f} fps ({self.width}x{self.height}), "
            f"model {self.model}, faces in {self.frames_with_face}/{self.frames} frames"
            + (f", {len(self.failed_frames)} failed" if self.failed_frames else "")
            + (
                f", speech {sum(b - a for a, b in self.speech_spans):.1f}s in {len(self.speech_spans)} span(s), "
                f"{self.gated_frames} frames at rest ({self.model_calls_skipped} model calls skipped)"
                if self.gated_frames or self.speech_spans
                else ""
            )
            + (
                f", {self.closed_frames} frames closed by the model (the source speaks there)"
                if self.rest_mode == "model_closed"
                else ""
            )
            + f"; {stages}"
        )

    def _repr_html_(self) -> str:
        from lipsynckit.display import result_html

        return result_html(self)


def _check_input(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputNotFoundError(f"{what} file not found", path=p, stage=what, remedy="check the path")
    if p.is_dir():
        raise InputNotFoundError(
            f"{what} path is a folder, not a file", path=p, stage=what, remedy="pass a file"
        )
    return p


def frame_list(frames: list[int], limit: int = 10) -> str:
    """``frames 3, 17, 18`` (the first ``limit``, then how many more)."""
    shown = ", ".join(str(i) for i in frames[:limit])
    more = f" and {len(frames) - limit} more" if len(frames) > limit else ""
    return f"frame{'s' if len(frames) > 1 else ''} {shown}{more}"


def frame_failed_error(failed: list[tuple[int, str]], path: str | Path | None = None) -> FrameFailedError:
    """The error ending a run at a failed frame (the user did not ask to keep going)."""
    return FrameFailedError(
        f"{frame_list([i for i, _ in failed])} failed ({failed[0][1]}); the run stopped and no output was written",
        path=path,
        stage="prepare",
        remedy="pass keep_going=True to pass failing frames through unchanged (listed in result.failed_frames)",
        cli_remedy="pass --keep-going to pass failing frames through unchanged (they are listed at the end)",
    )


def track_source(
    video: Path,
    num_frames: int,
    options: SyncOptions,
    model: LipSyncModel,
    timer: StageTimer,
    frame_size: tuple[int, int] | None = None,
    first_frame: int = 0,
) -> FaceTrack:
    """Find the face in ``num_frames`` source frames from ``first_frame`` (or read them from --face-boxes).

    ``first_frame`` lets a segment job track only the frames it re-syncs; the track is indexed from it.
    """
    from lipsynckit.faces import TrackOptions, get_face_detector, load_face_boxes
    from lipsynckit.faces.segments import track_segments
    from lipsynckit.media import VideoSource

    if options.face_boxes is not None:
        _check_input(options.face_boxes, "faces")
        with timer.stage("detect"):
            # the file may describe the whole video while the audio needs fewer of its frames
            boxes = load_face_boxes(
                options.face_boxes, first_frame + num_frames, frame_size=frame_size, allow_more=True
            )
            return FaceTrack(faces=boxes.faces[first_frame:], detector=boxes.detector)
    name = options.detector
    if name == "auto" and model.info.default_detector not in ("auto", ""):
        name = _usable_detector(model.info.default_detector)
    detector = get_face_detector(name, options.detector_options)
    topts: dict[str, Any] = {"select": options.face_select, "exact": options.exact_detection}
    if options.face_select == "index":
        topts["index"] = options.face_index
    if options.face_select == "box" and options.face_box is not None:
        topts["box"] = options.face_box
    if options.detect_every is not None:
        topts["detect_every"] = options.detect_every
    track_opts = TrackOptions(**topts)

    # probed once; frames() keeps no shared state
    src = VideoSource(video, fps_for_images=options.fps, max_pixels=options.max_pixels)

    def open_frames(a: int, b: int) -> Iterator[np.ndarray]:
        # one decoder per segment and thread: it seeks to the key frame before `a`
        return src.frames(range(first_frame + a, first_frame + b))

    with timer.stage("detect"):
        return track_segments(
            open_frames,
            num_frames,
            detector,
            track_opts,
            workers=options.face_workers,
            new_detector=lambda: get_face_detector(detector.name, options.detector_options),
            progress=options.progress,
        )


def _usable_detector(preferred: str) -> str:
    from lipsynckit.faces import list_face_detectors

    for name, usable, _reason in list_face_detectors():
        if name == preferred and usable:
            return preferred
    return "auto"


def scheduler_options(model: LipSyncModel, batch_size: int | None) -> Any:
    """Scheduler settings for a model: a fixed batch when asked, else on CUDA a memory budget (80 % of
    the free device memory) from which the scheduler probes and remembers the batch size."""
    from lipsynckit.scheduler import SchedulerOptions

    opts: dict[str, Any] = {
        "chunk_frames": max(1, model.info.chunk_frames),
        "device": str(model.device),
        "model_name": model.info.name,
    }
    if batch_size is not None:
        opts["max_batch"] = batch_size
    elif model.device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(model.device)
        opts["max_batch"] = 64
        opts["memory_budget_bytes"] = int(free * 0.8)
    return SchedulerOptions(**opts)


def scheduler_target(model: LipSyncModel) -> Any:
    """What the scheduler calls: the model itself when it splits generate into ``to_device`` /
    ``compute`` / ``to_host`` (copies and compute then overlap on CUDA streams), else ``generate``."""
    from lipsynckit.scheduler import StagedGenerate

    return model if isinstance(model, StagedGenerate) else model.generate


_SHARED_LOCK = threading.Lock()
_SHARED: dict[tuple[int, int | None], list[Any]] = {}  # (id(model), batch) -> [scheduler, users]


@contextmanager
def shared_scheduler(model: LipSyncModel, batch_size: int | None) -> Iterator[Any]:
    """The scheduler of one model instance, shared by the ``sync`` calls that run on it at once.

    Concurrent calls (threads of a server, a notebook's executor) then batch their frames together on
    one device thread instead of each calling the model on its own; the last one out closes it.
    """
    from lipsynckit.scheduler import BatchScheduler

    key = (id(model), batch_size)  # the scheduler holds the model, so its id is not reused meanwhile
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            sched = BatchScheduler(scheduler_target(model), scheduler_options(model, batch_size))
            sched.__enter__()
            entry = _SHARED[key] = [sched, 0]
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _SHARED_LOCK:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _SHARED[key]
        if last:
            entry[0].__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------------
# 7. generate: prepare → scheduler (batched model calls) → composite → gate blend, streamed in order
# ---------------------------------------------------------------------------------------------------

_DONE = object()  # the producer's last entry in the queue of frames


@contextmanager
def _job_scheduler(
    model: LipSyncModel,
    options: SyncOptions,
    scheduler: BatchScheduler | None,
    timer: StageTimer,
    stats_out: dict[str, Any] | None,
) -> Iterator[BatchScheduler]:
    """The caller's scheduler, or the model's shared one (its statistics go to ``stats_out`` when done)."""
    if scheduler is not None:
        yield scheduler
        return
    with shared_scheduler(model, options.batch_size) as sched:
        try:
            yield sched
        finally:
            stats = sched.stats()
            timer.add("generate", stats.stage_s.get("generate", 0.0))
            if stats_out is not None:
                stats_out.update(stats.model_dump())


class _FrameFlow:
    """One call's frames in three named steps, on three kinds of thread.

    ``prepare`` (worker threads) crops the face of a frame; ``produce`` (one producer thread) hands the
    crops to the scheduler and queues every frame in output order; ``consume`` (the caller's thread)
    takes the generated faces in that order, pastes them back and blends them by the gate.
    """

    def __init__(
        self,
        model: LipSyncModel,
        index: np.ndarray,
        track: FaceTrack,
        features: torch.Tensor,
        options: SyncOptions,
        timer: StageTimer,
        failed: list[tuple[int, str]],
        cache: PreparedCache | None,
        gate: GatePlan | None,
        job: Job,
        depth: int,
        ahead: int = 8,
    ) -> None:
        self.model, self.index, self.track, self.features = model, index, track, features
        self.options, self.timer, self.failed = options, timer, failed
        self.cache, self.gate, self.job = cache, gate, job
        # frames wait here for their faces; bounded so memory stays flat with length
        self.pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.ahead = ahead  # frames prepared ahead of the queue (part of the byte budget when it is tight)
        self.error: list[BaseException] = []  # the producer's exception, raised in the consumer
        self.stopped = threading.Event()  # the consumer has gone (Ctrl-C, an error): stop producing
        self.memo: dict[int, PreparedFace] = {}  # per source frame: loops and still images prepare once

    def prepare(self, arg: tuple[int, np.ndarray]) -> tuple[int, np.ndarray, PreparedFace | None, str]:
        """Step 1: output frame ``i``'s face crop, or ``None`` (no face, or at rest under the gate),
        with the reason when its preparation failed."""
        i, frame = arg
        s = int(self.index[i])
        face = self.track.faces[s] if s < len(self.track.faces) else None
        if face is None or (self.gate is not None and self.gate.skip[i]):
            return i, frame, None, ""
        t0 = time.perf_counter()
        try:
            pf = self.memo.get(s)
            if pf is None and self.cache is not None:
                pf = self.cache.get(s)
            if pf is None:
                pf = self.model.prepare(frame, face)
                if self.cache is not None:
                    self.cache.put(s, pf)
            if len(self.memo) < 64:
                self.memo[s] = pf
            return i, frame, pf, ""
        except LipSyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad frame is reported and passed through
            return i, frame, None, f"prepare failed: {type(exc).__name__}: {exc}"
        finally:
            self.timer.add("prepare", time.perf_counter() - t0)

    def produce(self, frames: Iterable[np.ndarray]) -> None:
        """Step 2 (producer thread): prepare frames on workers, submit their crops, queue them in order."""
        from lipsynckit.scheduler import map_ordered

        prepared = map_ordered(
            self.prepare,
            enumerate(frames),
            workers=self.options.prepare_workers,
            max_pending=self.ahead,
        )
        try:
            for i, frame, pf, err in prepared:
                if err:
                    self.failed.append((i, err))
                    if not self.options.keep_going:
                        raise frame_failed_error(self.failed)
                    log.debug("frame %d: %s (passed through unchanged)", i, err)
                if not self._put((i, frame, pf)):
                    return
                if pf is not None:
                    self.job.submit(WorkItem(job_id=self.job.id, index=i, face=pf, audio=self.features[i]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            self.error.append(exc)
        finally:
            prepared.close()  # a failed frame stops the run: the prepare workers stop now, not at GC
            try:
                self.job.close()
            finally:
                self._put(_DONE)

    def _put(self, entry: Any) -> bool:
        """Queue ``entry`` unless the consumer has stopped (then the queue may never drain)."""
        while not self.stopped.is_set():
            try:
                self.pending.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        """The consumer is leaving early: let the producer see it and unblock any waiting put."""
        self.stopped.set()
        while True:
            try:
                self.pending.get_nowait()
            except queue.Empty:
                return

    def consume(self) -> Iterator[np.ndarray]:
        """Step 3 (caller's thread): each queued frame as output, its generated face pasted and blended."""
        results = self.job.results()
        while True:
            entry = self.pending.get()
            if entry is _DONE:
                break
            i, frame, pf = entry
            if pf is None:
                yield frame
                continue
            try:
                _idx, generated = next(results)
            except StopIteration:
                if self.error:
                    raise self.error[0] from None
                raise LipSyncError(f"model returned no output for frame {i}", stage="model") from None
            t0 = time.perf_counter()
            out = self.model.composite(frame, pf, generated)
            if self.gate is not None:
                out = self.gate.blend(i, frame, out)
            self.timer.add("composite", time.perf_counter() - t0)
            yield out
        if self.error:
            raise self.error[0]


def generate_frames(
    model: LipSyncModel,
    frames: Iterable[np.ndarray],
    index: np.ndarray,
    track: FaceTrack,
    features: torch.Tensor,
    options: SyncOptions,
    timer: StageTimer,
    failed: list[tuple[int, str]],
    cache: PreparedCache | None = None,
    scheduler: BatchScheduler | None = None,
    stats_out: dict[str, Any] | None = None,
    gate: GatePlan | None = None,
) -> Iterator[np.ndarray]:
    """Yield the output frames in order. ``frames`` yields the source frame for each output index.

    Without a ``scheduler``, the model's shared scheduler is used (concurrent calls on one model batch
    together) and its statistics (batch fill, device busy fraction, queue depths, seconds per stage;
    all jobs it ran so far) are written into ``stats_out`` when done. With a ``gate``, frames where
    nobody speaks skip the model and the others are blended toward the source by their weight.
    The steps are :class:`_FrameFlow`'s: prepare → produce (a thread) → consume (here).
    """
    with _job_scheduler(model, options, scheduler, timer, stats_out) as sched:
        chunk = max(1, model.info.chunk_frames)
        most = max(48, 3 * max(min(sched.options.max_batch, 32), chunk))  # a few batches of frames
        # ... as many as fit the byte budget: 48 frames of 4000x4000 would hold 2.3 GB
        frames = iter(frames)
        first = next(frames, None)
        nbytes = int(first.nbytes) if first is not None else 0
        depth = frames_for_bytes(nbytes, options.frame_queue_bytes, most)
        ahead = 8  # frames the prepare workers may take ahead of the queue
        if depth < most:  # a tight budget: the look-ahead shares it
            ahead = max(1, depth // 4)
            depth = max(2, depth - ahead)
        frames = itertools.chain([first], frames) if first is not None else iter(())
        if stats_out is not None:  # what the byte budget gave: SyncResult.scheduler shows it
            stats_out.update(
                frame_queue_frames=depth,
                prepare_ahead_frames=ahead,
                frame_queue_bytes=(depth + ahead) * nbytes,
            )
        flow = _FrameFlow(
            model, index, track, features, options, timer, failed, cache, gate, sched.open_job(), depth, ahead
        )
        producer = threading.Thread(
            target=flow.produce, args=(frames,), name="lipsynckit-producer", daemon=True
        )
        producer.start()
        try:
            yield from flow.consume()
        finally:
            # on an early exit (Ctrl-C, an error, a consumer that stopped reading) the producer is told
            # to stop and not waited for long: it is a daemon, and a frame in a worker cannot be cut
            if producer.is_alive():
                flow.stop()
            producer.join(timeout=1.0)


# ---------------------------------------------------------------------------------------------------
# sync_file: stages 1-9 of docs/architecture.md, one small function each
# ---------------------------------------------------------------------------------------------------


def _emit(hook: StageHook | None, stage: Stage, artefact: Any) -> None:
    if hook is not None:
        hook(stage, artefact)  # the user's code: whatever it raises ends the run


def _check_paths(
    video: str | Path, audio: str | Path | AudioClip | None, output: str | Path, output_mode: str
) -> tuple[Path, Path]:
    """1. inputs: the video exists, the output is something this run may replace (never an input, a
    folder holding one, a device, or a folder we did not make), the output's folder exists."""
    from lipsynckit.output_guard import check_output_target

    video_path = _check_input(video, "video")
    out_path = check_output_target(output, check_output(output, output_mode), [video_path, audio])
    if not out_path.parent.exists():
        out_path.parent.mkdir(parents=True, exist_ok=True)
    return video_path, out_path


def _load_clip(
    audio: str | Path | AudioClip | None, video_path: Path, options: SyncOptions, timer: StageTimer
) -> AudioClip:
    """2. audio: the clip in memory, the file given, or the video's own track."""
    from lipsynckit.media import load_audio
    from lipsynckit.media.audio import check_clip

    with timer.stage("audio"):
        try:
            if isinstance(audio, AudioClip):  # the same checks as a file's: rate, samples, silence
                return check_clip(audio, allow_silent=options.allow_silent_audio)
            audio_path = video_path if audio is None else _check_input(audio, "audio")
            return load_audio(audio_path, allow_silent=options.allow_silent_audio)
        except SilentAudioError as exc:  # the remedy in the caller's spelling
            exc.remedy = "check the track; pass allow_silent_audio=True to accept silence"
            exc.cli_remedy = "check the track; pass --allow-silent to accept silence"
            raise


def _audio_features(model: LipSyncModel, clip: AudioClip, fps: float, timer: StageTimer) -> torch.Tensor:
    """3. features: one audio window per output frame; their count fixes the output's length."""
    with timer.stage("features"):
        features = model.audio_features(clip, fps)
    if int(features.shape[0]) <= 0:
        raise AudioError(
            "audio is too short for a single video frame", path=getattr(clip, "source", None), stage="audio"
        )
    return features


def _frame_index(
    n_out: int, info: VideoInfo, fps: float, options: SyncOptions, notes: list[str]
) -> np.ndarray:
    """4. frame index: the source frame shown at each output frame (``length_mode`` when audio outlasts
    the video; with ``cut`` the index is shorter than the features)."""
    from lipsynckit.media import index_map

    n_src = max(1, int(info.num_frames))
    index = index_map(n_out, n_src, options.length_mode)
    if n_out > n_src and not info.is_image:
        how = {"pingpong": "ping-pong playback", "loop": "looped from frame 0", "cut": "output cut"}
        others = "|".join(m for m in ("pingpong", "loop", "cut") if m != options.length_mode)
        line = (
            f"audio {n_out / fps:.1f} s outlasts the video {n_src / fps:.1f} s: "
            f"{how[options.length_mode]} (--length-mode {others} to change)"
        )
        log.info("%s", line)
        notes.append(line)
    return index


def _face_track(
    video_path: Path,
    info: VideoInfo,
    n_needed: int,
    model: LipSyncModel,
    options: SyncOptions,
    timer: StageTimer,
    notes: list[str],
) -> tuple[FaceTrack, PreparedCache | None]:
    """5. faces: the track of the first ``n_needed`` source frames (from the avatar cache, or tracked,
    or read from ``face_boxes``), then the model's box rules; no face anywhere is an error."""
    cache: PreparedCache | None = None
    track: FaceTrack | None = None
    if options.avatar_dir is not None:
        cache = open_cache(options.avatar_dir, video_path, model, options)
        track = cache.load_track()
        if track is not None and len(track) >= n_needed:
            notes.append(f"avatar cache {cache.dir}: face track reused")
        else:
            track = None
    if track is None:
        track = track_source(video_path, n_needed, options, model, timer, (info.width, info.height))
        if cache is not None:
            cache.save_track(track)  # as found: the model's box rules run on every use (they may add state)
    track = model.adjust_track(track, (info.height, info.width))
    if track.num_found == 0:
        raise NoFaceError(
            f"no face found in {'the image' if info.is_image else f'any of {n_needed} frames'}",
            path=video_path,
            stage="faces",
            remedy="use a clearer frontal face, another --detector, or give the box with --face-boxes",
        )
    return track, cache


def _gate_plan(
    clip: AudioClip,
    fps: float,
    index: np.ndarray,
    model: LipSyncModel,
    options: SyncOptions,
    timer: StageTimer,
    source: tuple[Path, VideoInfo, bool],
) -> GatePlan | None:
    """6. gate plan: a weight per output frame, 0 where nobody speaks (no model call); None when off.

    With ``rest="auto"`` the source video's own audio track says which source frames speak (``source``
    = its path, its info, and whether ``clip`` is that track); those rest on the model's closed mouth."""
    if not options.gate:
        return None
    from lipsynckit.gate import plan_gate, source_speaking, with_rest

    with timer.stage("vad"):
        plan = plan_gate(clip, fps, len(index), options, model.info.chunk_frames)
        if options.rest == "auto" and bool((plan.weights < 1).any()):  # a pause: is the source speaking?
            speaking, plan.source_spans = source_speaking(_source_track(*source, clip), fps, index, options)
            plan = with_rest(plan, options, model.info.chunk_frames, speaking)
        return plan


def _source_track(video_path: Path, info: VideoInfo, is_clip: bool, clip: AudioClip) -> AudioClip | None:
    """The source video's own audio track (``clip`` itself when that is what is spoken), or None: a
    still image, a video without a track, or a track that cannot be read (the source is then idle)."""
    from lipsynckit.errors import AudioError
    from lipsynckit.media import load_audio

    if info.is_image:
        return None
    if is_clip:
        return clip
    try:
        return load_audio(video_path, allow_silent=True)
    except AudioError as exc:
        log.debug("source %s: no audio track to tell its speech (%s): idle at rest", video_path, exc)
        return None


def _encode(
    frames: Iterator[np.ndarray],
    sink: VideoSink,
    n_out: int,
    model: LipSyncModel,
    options: SyncOptions,
    timer: StageTimer,
    on_frame: Callable[[int], None] | None,
    video_path: Path,
) -> None:
    """8. encode: write each generated frame to the sink as it comes (progress bar, ``on_frame``)."""
    bar = progress_bar(total=n_out, desc=f"lipsync {model.info.name}", unit="frame", enable=options.progress)
    try:
        for k, frame in enumerate(frames):
            t0 = time.perf_counter()
            sink.write(frame)
            timer.add("encode", time.perf_counter() - t0)
            bar.update(1)
            if on_frame is not None:
                on_frame(k)
    except FrameFailedError as exc:
        exc.path = exc.path or str(video_path)
        raise
    finally:
        bar.close()


def sync_file(
    video: str | Path,
    audio: str | Path | AudioClip | None,
    model: LipSyncModel,
    output: str | Path,
    options: SyncOptions,
    scheduler: Any | None = None,
    on_frame: Callable[[int], None] | None = None,
    hook: StageHook | None = None,
) -> SyncResult:
    """Run the whole path for one (video, audio) pair and write ``output`` atomically.

    The numbered stages are those of ``docs/architecture.md``. ``hook(stage, artefact)``, when given, is
    called once after each stage, in order (see :data:`STAGES` for what each artefact is); what it
    raises ends the run, and before ``encode`` leaves no output behind.
    """
    from lipsynckit.output_guard import claim_output

    timer = StageTimer()
    notes: list[str] = []

    # 1. inputs: the paths are checked and the source probed (frame rate, size, frame count)
    video_path, out_path = _check_paths(video, audio, output, options.output_mode)
    with claim_output(out_path):  # one run at a time per output: a second gets one line, at once
        return _run(video_path, audio, model, out_path, options, scheduler, on_frame, hook, timer, notes)


def _run(
    video_path: Path,
    audio: str | Path | AudioClip | None,
    model: LipSyncModel,
    out_path: Path,
    options: SyncOptions,
    scheduler: Any | None,
    on_frame: Callable[[int], None] | None,
    hook: StageHook | None,
    timer: StageTimer,
    notes: list[str],
) -> SyncResult:
    """Stages 1 (probe) to 9 of :func:`sync_file`, with the output claimed."""
    from lipsynckit.media import VideoSink, VideoSource

    src = VideoSource(video_path, fps_for_images=options.fps, max_pixels=options.max_pixels)
    info = src.info
    fps = float(info.fps)
    _emit(hook, "inputs", info)

    # 2. audio: the clip to speak
    clip = _load_clip(audio, video_path, options, timer)
    _emit(hook, "audio", clip)

    # 3. features: one window per output frame
    features = _audio_features(model, clip, fps, timer)
    _emit(hook, "features", features)

    # 4. frame index: which source frame each output frame shows
    index = _frame_index(int(features.shape[0]), info, fps, options, notes)
    if len(index) < features.shape[0]:  # "cut": the output stops with the video, and so does its audio
        clip = clip.slice(0, len(index) / fps)
    n_out = len(index)
    _emit(hook, "frame_index", index)

    # 5. faces: the face track of every source frame used, after the model's box rules
    track, cache = _face_track(video_path, info, int(index.max()) + 1, model, options, timer, notes)
    _emit(hook, "faces", track)

    # 6. gate plan: where nobody speaks, the source frame is shown and the model is not called (or,
    # where the source frame speaks in its own audio, the model draws a closed mouth on silence)
    gate = _gate_plan(clip, fps, index, model, options, timer, (video_path, info, audio is None))
    _emit(hook, "gate", gate)
    from lipsynckit.gate import rest_features

    features = rest_features(model, clip, fps, features, gate)

    # 7. generate (prepare → batched model → composite → gate blend) streams into 8. encode (the sink)
    mode = check_output(out_path, options.output_mode)
    failed: list[tuple[int, str]] = []
    sched_stats: dict[str, Any] = {}
    t_gen = time.perf_counter()
    sink = VideoSink(
        out_path,
        fps=fps,
        size=(info.width, info.height),
        audio=clip,
        mode=mode,
        crf=options.crf,
        preset=options.preset,
        threads=options.encode_threads,
    )
    with sink:  # atomic: a temporary file renamed on success, removed on any exception in this block
        frames = src.frames(int(s) for s in index)
        args = (model, frames, index, track, features, options, timer, failed, cache, scheduler, sched_stats)
        _encode(generate_frames(*args, gate=gate), sink, n_out, model, options, timer, on_frame, video_path)
        _emit(hook, "generate", sched_stats)
    timer.seconds["pipeline"] = time.perf_counter() - t_gen
    _emit(hook, "encode", out_path)

    # 9. result: what the run made and how it went
    result = _result(
        out_path, model, info, clip, index, track, gate, failed, timer, notes, cache, sched_stats
    )
    _emit(hook, "result", result)
    return result


def _result(
    out_path: Path,
    model: LipSyncModel,
    info: VideoInfo,
    clip: AudioClip,
    index: np.ndarray,
    track: FaceTrack,
    gate: GatePlan | None,
    failed: list[tuple[int, str]],
    timer: StageTimer,
    notes: list[str],
    cache: PreparedCache | None,
    sched_stats: dict[str, Any],
) -> SyncResult:
    """9. result: the SyncResult (failed frames passed through are warned about once, here)."""
    if failed:
        log.warning(
            "%d frame(s) failed and were passed through unchanged (keep going): %s; first: %s",
            len(failed),
            frame_list([i for i, _ in failed]),
            failed[0][1],
        )
    n_out = len(index)
    with_face = int(sum(1 for s in index if track.faces[int(s)] is not None))
    skipped = 0 if gate is None else sum(track.faces[int(s)] is not None for s in index[gate.skip])
    return SyncResult(
        output=out_path,
        model=model.info.name,
        fps=float(info.fps),
        width=info.width,
        height=info.height,
        frames=n_out,
        frames_with_face=with_face,
        frames_without_face=n_out - with_face,
        source_frames=info.num_frames,
        audio_duration=clip.duration,
        detector=track.detector,
        failed_frames=failed,
        stage_seconds=dict(timer.seconds),
        notes=notes,
        avatar_hits=cache.hits if cache is not None else 0,
        scheduler=sched_stats,
        speech_spans=[] if gate is None else gate.spans,
        gated_frames=0 if gate is None else gate.gated_frames,
        model_calls_skipped=skipped,
        face_track=track,
        frame_index=[int(s) for s in index],
        vad="" if gate is None else gate.vad,
        rest_mode="" if gate is None else gate.rest_mode,
        closed_frames=0 if gate is None else gate.closed_frames,
        source_speech_spans=[] if gate is None else gate.source_spans,
    )
