"""The face pass in parallel: fixed-length segments tracked by worker threads, joined in order.

Why: on a GPU machine the model step of Wav2Lip costs well under a millisecond per frame, so the face
pass (decode, detection on keyframes, tracking) is most of the wall time of a 720p run, and one
thread gives it one core. Detection (OpenCV, onnxruntime, torch) and decoding (PyAV) release the GIL,
so threads scale.

The result does not depend on the number of workers: segment boundaries are fixed
(``TrackOptions.segment_frames``, a multiple of ``detect_every`` so keyframes fall where the single
tracker puts them). Each segment starts with a fresh detection; at each join

* a scene cut between the last frame of one segment and the first of the next is detected as the
  single tracker would (histogram distance, frame size);
* when the next segment starts on the face the previous one ended on (IoU >= ``min_iou``), both are
  one identity run, so gap filling and smoothing go across the join;
* when it starts on another face (or none) without a cut, the segment is tracked again seeded with the
  face being followed, exactly as the single tracker keeps identity; this re-run is sequential and
  happens only when several faces compete.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lipsynckit.faces.base import FaceDetector
from lipsynckit.faces.select import box_iou
from lipsynckit.faces.tracker import FaceTracker, TrackOptions
from lipsynckit.types import Face, FaceTrack

log = logging.getLogger(__name__)

FrameOpener = Callable[[int, int], Iterable[np.ndarray]]
"""``open(a, b)`` yields source frames ``a .. b-1`` (RGB uint8); called once per segment, per thread."""


def default_face_workers() -> int:
    """Threads for the face pass: the cores this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


@dataclass
class _Part:
    start: int
    end: int
    tracker: FaceTracker
    first_hist: np.ndarray | None
    first_shape: tuple[int, ...] | None


def _segments(num_frames: int, length: int, detect_every: int) -> list[tuple[int, int]]:
    if length > 0:
        length = -(-length // detect_every) * detect_every  # keyframes where one tracker puts them
    if length <= 0 or num_frames <= length:
        return [(0, num_frames)]
    return [(a, min(a + length, num_frames)) for a in range(0, num_frames, length)]


def track_segments(
    open_frames: FrameOpener,
    num_frames: int,
    detector: FaceDetector,
    options: TrackOptions | None = None,
    workers: int | None = None,
    new_detector: Callable[[], FaceDetector] | None = None,
    progress: bool = False,
) -> FaceTrack:
    """Track one face through ``num_frames`` frames, segments in parallel (see the module docstring).

    ``detector`` serves every thread when it says ``thread_safe = True``; otherwise each extra thread
    gets its own from ``new_detector`` (or, without one, all threads share ``detector`` under a lock).
    """
    from lipsynckit.progress import progress_bar

    opts = options or TrackOptions()
    segs = _segments(num_frames, opts.segment_frames, opts.detect_every)
    n_workers = max(1, min(workers or default_face_workers(), len(segs)))
    bar = progress_bar(total=num_frames, desc="faces", unit="frame", enable=progress)
    bar_lock = threading.Lock()
    local = threading.local()
    shared_lock = threading.Lock()

    def detector_here() -> FaceDetector:
        if n_workers == 1 or getattr(detector, "thread_safe", False):
            return detector
        det = getattr(local, "detector", None)
        if det is None:
            det = new_detector() if new_detector is not None else _Locked(detector, shared_lock)
            local.detector = det
        return det

    def run(a: int, b: int, seed: Face | None = None) -> _Part:
        tracker = FaceTracker(detector_here(), opts)
        if seed is not None:
            tracker.seed(seed)
        first_hist: np.ndarray | None = None
        first_shape: tuple[int, ...] | None = None
        done = 0
        for frame in open_frames(a, b):
            if done >= b - a:
                break
            tracker.update(frame)
            if done == 0:
                first_hist, first_shape = tracker.last_histogram, frame.shape
            done += 1
            if seed is None:
                with bar_lock:
                    bar.update(1)
        if done < b - a:
            log.warning("faces: segment %d-%d: expected %d frames, got %d", a, b, b - a, done)
        return _Part(a, b, tracker, first_hist, first_shape)

    try:
        if n_workers == 1:
            parts = [run(a, b) for a, b in segs]
        else:
            pool = ThreadPoolExecutor(n_workers, thread_name_prefix="lipsynckit-faces")
            try:
                futures = [pool.submit(run, a, b) for a, b in segs]
                parts = [f.result() for f in futures]
            finally:  # a segment that failed (unreadable video, say) stops the ones not yet started
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    if len(parts) > 1:
        log.info("faces: %d segments of %d frames on %d threads", len(parts), opts.segment_frames, n_workers)
    return _join(parts, opts, detector, run).finish()


class _Locked:
    """A detector that is not thread-safe, shared under a lock."""

    def __init__(self, inner: FaceDetector, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock
        self.name = inner.name

    def detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:
            return self._inner.detect(image)


def _join(
    parts: list[_Part], opts: TrackOptions, detector: FaceDetector, run: Callable[..., _Part]
) -> FaceTracker:
    """One tracker holding all segments, with identity runs and cuts joined as the module says."""
    whole = FaceTracker(detector, opts)
    prev: _Part | None = None
    for part in parts:
        a, b = part.start, part.end
        if prev is not None:
            cut = _cut_between(prev, part, opts)
            last = whole.faces_so_far[-1] if whole.faces_so_far else None
            first = part.tracker.faces_so_far[0] if part.tracker.faces_so_far else None
            same = first is not None and last is not None and box_iou(first.box, last.box) >= opts.min_iou
            if not cut and last is not None and not same:
                log.debug("faces: segment %d-%d starts on another face; tracked again from frame %d", a, b, a)
                part = run(a, b, seed=last)
                first = part.tracker.faces_so_far[0] if part.tracker.faces_so_far else None
                same = first is not None and box_iou(first.box, last.box) >= opts.min_iou
            whole.append(part.tracker, a, cut=cut, continues=same and not cut)
        else:
            whole.append(part.tracker, a, cut=False, continues=False)
        prev = part
    return whole


def _cut_between(prev: _Part, part: _Part, opts: TrackOptions) -> bool:
    import cv2

    last_hist, last_shape = prev.tracker.last_histogram, prev.tracker.last_shape
    if last_shape is None or part.first_shape is None:
        return False
    if last_shape != part.first_shape:
        return True
    if last_hist is None or part.first_hist is None:
        return False
    return bool(cv2.compareHist(last_hist, part.first_hist, cv2.HISTCMP_BHATTACHARYYA) > opts.scene_cut)


__all__ = ["FrameOpener", "default_face_workers", "track_segments"]
