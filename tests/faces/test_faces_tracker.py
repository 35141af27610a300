"""Face tracking on the real carphone video, scene cuts, selection, gap filling and smoothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from lipsynckit.errors import VideoError
from lipsynckit.faces import FaceTracker, TrackOptions, track_faces
from lipsynckit.faces.opencv_haar import OpenCVHaarDetector
from lipsynckit.faces.select import box_iou
from lipsynckit.types import Face, FaceTrack

LISA = (1115, 278, 1233, 396)  # rightmost face of t1.jpg, labelled by eye
PERRY = (729, 356, 842, 469)


class CachedDetector:
    """The real Haar detector, memoised per image content (the same frames recur across tests)."""

    name = "opencv"

    def __init__(self, inner: OpenCVHaarDetector) -> None:
        self.inner = inner
        self.cache: dict[tuple[tuple[int, ...], int], list[Face]] = {}
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        key = (image.shape, hash(image.tobytes()))
        if key not in self.cache:
            self.cache[key] = self.inner.detect(image)
        return [
            Face(f.box.copy(), f.score, None if f.landmarks is None else f.landmarks.copy())
            for f in self.cache[key]
        ]


class HidingDetector(CachedDetector):
    """Misses the face on chosen calls (as a real detector does on blurred frames)."""

    def __init__(self, inner: CachedDetector, hide_calls: set[int]) -> None:
        super().__init__(inner.inner)
        self.cache = inner.cache
        self.hide = hide_calls

    def detect(self, image: np.ndarray) -> list[Face]:
        faces = super().detect(image)
        return [] if self.calls - 1 in self.hide else faces


class JitterDetector(CachedDetector):
    """Adds deterministic +-3 px jitter to every box (detector noise on a static face)."""

    def __init__(self, inner: CachedDetector) -> None:
        super().__init__(inner.inner)
        self.cache = inner.cache
        self.rng = np.random.default_rng(7)

    def detect(self, image: np.ndarray) -> list[Face]:
        out = super().detect(image)
        for f in out:
            f.box = f.box + self.rng.uniform(-3, 3, size=4).astype(np.float32)
        return out


@pytest.fixture(scope="module")
def cached(haar: OpenCVHaarDetector) -> CachedDetector:
    return CachedDetector(haar)


@pytest.fixture(scope="module")
def carphone_track(
    carphone_frames: list[np.ndarray], cached: CachedDetector
) -> tuple[FaceTrack, FaceTracker]:
    tracker = FaceTracker(cached, TrackOptions())
    for f in carphone_frames:
        tracker.update(f)
    return tracker.finish(), tracker


def _centres(track: FaceTrack) -> np.ndarray:
    b = track.boxes()
    return (b[:, :2] + b[:, 2:]) / 2.0


def test_carphone_track_covers_the_clip_with_smooth_boxes(
    carphone_track: tuple[FaceTrack, FaceTracker], carphone_frames: list[np.ndarray], cached: CachedDetector
) -> None:
    track, tracker = carphone_track
    assert len(track) == 120
    assert track.num_found >= 108  # >= 90 % of the frames
    assert track.detector == "opencv"
    stats = tracker.stats
    assert stats.cut_frames == []  # one continuous shot
    assert 15 <= stats.detections <= 25  # keyframes every 8 frames (the default), plus re-detections
    assert stats.tracked_frames >= 60
    found = track.found
    c = _centres(track)
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)[found[1:] & found[:-1]]
    assert np.max(steps) < 4.0, np.max(steps)  # the face moves slowly; no jumps
    w = track.boxes()[:, 2] - track.boxes()[:, 0]
    ratio = w[1:][found[1:] & found[:-1]] / w[:-1][found[1:] & found[:-1]]
    assert np.max(np.abs(ratio - 1.0)) < 0.05
    # tracked (non-key) frames agree with what the detector itself finds there
    ious = []
    for i in (2, 22, 42, 62, 82, 102):
        dets = cached.detect(carphone_frames[i])
        assert dets, i
        f = track.faces[i]
        assert f is not None
        ious.append(max(box_iou(f.box, d.box) for d in dets))
    assert np.median(ious) > 0.7 and min(ious) > 0.5, ious


def _grace_as_frame(grace_rgb: np.ndarray) -> np.ndarray:
    """Grace Hopper cropped to the carphone aspect ratio and size (176x144)."""
    h = round(grace_rgb.shape[1] * 144 / 176)
    return cv2.resize(grace_rgb[:h], (176, 144), interpolation=cv2.INTER_AREA)


def test_scene_cut_triggers_immediate_redetection(
    carphone_frames: list[np.ndarray], grace_rgb: np.ndarray, cached: CachedDetector
) -> None:
    grace = _grace_as_frame(grace_rgb)
    frames = carphone_frames[:22] + [grace] * 8  # cut at frame 22 (not a keyframe: 22 % 4 != 0)
    tracker = FaceTracker(cached, TrackOptions(detect_every=4))
    for f in frames:
        tracker.update(f)
    track = tracker.finish()
    assert tracker.stats.cut_frames == [22]
    assert 22 in tracker.stats.detect_frames and 21 not in tracker.stats.detect_frames
    assert 24 not in tracker.stats.detect_frames and 26 in tracker.stats.detect_frames  # cadence restarts
    grace_face = cached.detect(grace)
    assert len(grace_face) == 1
    after, before = track.faces[22], track.faces[21]
    assert after is not None and before is not None
    np.testing.assert_allclose(after.box, grace_face[0].box, atol=1e-3)  # detected on the cut frame itself
    assert box_iou(before.box, grace_face[0].box) < 0.7  # a different face in the same place
    assert all(f is not None and box_iou(f.box, grace_face[0].box) > 0.8 for f in track.faces[22:])
    # the same stream with the cut test disabled: frame 22 gets the box tracked from the old shot
    blind = FaceTracker(cached, TrackOptions(scene_cut=1.0, detect_every=4))
    for f in frames:
        blind.update(f)
    assert blind.stats.cut_frames == [] and 22 not in blind.stats.detect_frames
    carried = blind.finish().faces[22]
    assert carried is not None and not np.allclose(carried.box, grace_face[0].box, atol=1.0)


def test_exact_mode_detects_every_frame_without_smoothing(
    carphone_frames: list[np.ndarray], cached: CachedDetector
) -> None:
    frames = carphone_frames[:8]
    tracker = FaceTracker(cached, TrackOptions(exact=True))
    for f in frames:
        tracker.update(f)
    track = tracker.finish()
    assert tracker.stats.detect_frames == list(range(8))
    for f, face in zip(frames, track.faces, strict=True):
        dets = cached.detect(f)
        assert face is not None and any(np.array_equal(face.box, d.box) for d in dets)


def test_short_gaps_are_filled_between_sightings(
    carphone_frames: list[np.ndarray], cached: CachedDetector
) -> None:
    frames = carphone_frames[40:52]
    # hiding is by detector call, so the whole-frame search alone (no window confirmation) keeps calls = frames
    base: dict[str, Any] = {
        "detect_every": 1,
        "max_track_frames": 0,
        "smooth_window": 1,
        "detect_near": False,
    }
    gappy = track_faces(frames, HidingDetector(cached, {5, 6}), TrackOptions(**base, fill_gaps=0))
    assert gappy.faces[5] is None and gappy.faces[6] is None and gappy.num_found == 10
    filled = track_faces(frames, HidingDetector(cached, {5, 6}), TrackOptions(**base, fill_gaps=3))
    assert filled.num_found == 12
    a, b, m = filled.faces[4], filled.faces[7], filled.faces[5]
    assert a is not None and b is not None and m is not None
    np.testing.assert_allclose(m.box, a.box + (b.box - a.box) / 3.0, atol=1e-3)
    too_long = track_faces(frames, HidingDetector(cached, {4, 5, 6, 7}), TrackOptions(**base, fill_gaps=3))
    assert too_long.num_found == 8


def test_smoothing_reduces_detector_jitter(grace_rgb: np.ndarray, cached: CachedDetector) -> None:
    frames = [_grace_as_frame(grace_rgb)] * 15
    raw = track_faces(frames, JitterDetector(cached), TrackOptions(detect_every=1, smooth_window=1))
    smooth = track_faces(frames, JitterDetector(cached), TrackOptions(detect_every=1, smooth_window=5))
    assert raw.num_found == smooth.num_found == 15
    jr = np.std(np.diff(_centres(raw)[2:-2], axis=0))
    js = np.std(np.diff(_centres(smooth)[2:-2], axis=0))
    assert js < 0.6 * jr, (js, jr)


def test_selection_by_index_and_box_on_the_group_photo(group_rgb: np.ndarray, cached: CachedDetector) -> None:
    frames = [group_rgb] * 3
    right = track_faces(frames, cached, TrackOptions(select="index", index=-1))
    assert right.num_found == 3
    assert all(f is not None and box_iou(f.box, LISA) > 0.5 for f in right.faces)
    boxed = track_faces(frames, cached, TrackOptions(select="box", box=PERRY))
    assert all(f is not None and box_iou(f.box, PERRY) > 0.5 for f in boxed.faces)
    with pytest.raises(ValueError, match="needs box"):
        FaceTracker(cached, TrackOptions(select="box"))


def test_no_face_video_searches_on_keyframes(no_face_rgb: np.ndarray, cached: CachedDetector) -> None:
    tracker = FaceTracker(cached, TrackOptions(detect_every=4))
    for f in [no_face_rgb] * 9:
        assert tracker.update(f) is None
    assert tracker.finish().num_found == 0
    assert tracker.stats.detect_frames == [0, 4, 8]


def test_streaming_reads_only_what_it_needs(
    carphone_frames: list[np.ndarray], cached: CachedDetector
) -> None:
    pulled = 0

    def endless() -> Iterator[np.ndarray]:
        nonlocal pulled
        while True:
            pulled += 1
            yield carphone_frames[pulled % 8]

    track = track_faces(endless(), cached, TrackOptions(), num_frames=10, progress=True)
    assert len(track) == 10 and pulled == 10


def test_bad_frames_are_rejected(cached: CachedDetector) -> None:
    with pytest.raises(VideoError, match="frame 0"):
        FaceTracker(cached).update(np.zeros((10, 10, 3), np.float32))
