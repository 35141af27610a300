"""The parallel face pass: segments tracked by threads and joined give one track, whatever the thread
count, that keeps identity and continuity across joins (real carphone video, real face photos)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import cv2
import numpy as np
import pytest

from lipsynckit.faces import FaceTracker, TrackOptions, track_faces
from lipsynckit.faces.opencv_haar import OpenCVHaarDetector
from lipsynckit.faces.segments import track_segments
from lipsynckit.faces.select import box_iou
from lipsynckit.types import FaceTrack


def opener(frames: list[np.ndarray]):  # noqa: ANN201 - a FrameOpener
    def open_frames(a: int, b: int) -> Iterable[np.ndarray]:
        return iter(frames[a:b])

    return open_frames


def boxes_equal(a: FaceTrack, b: FaceTrack) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x.box, y.box))
        for x, y in zip(a.faces, b.faces, strict=True)
    )


def test_segments_give_the_same_track_on_any_number_of_threads(
    carphone_frames: list[np.ndarray], haar: OpenCVHaarDetector
) -> None:
    opts = TrackOptions(segment_frames=32)  # 120 frames: four segments, three joins
    one = track_segments(opener(carphone_frames), 120, haar, opts, workers=1)
    three = track_segments(
        opener(carphone_frames), 120, haar, opts, workers=3, new_detector=OpenCVHaarDetector
    )
    assert boxes_equal(one, three)
    assert all(f is not None for f in three.faces)
    # close to the single tracker (which never re-detects at 32/64/96), and continuous across joins
    single = track_faces(carphone_frames, haar, TrackOptions())
    ious = np.array([box_iou(a.box, b.box) for a, b in zip(single.faces, three.faces, strict=True)])  # type: ignore[union-attr]
    assert ious.min() > 0.6 and ious.mean() > 0.85, (ious.min(), ious.mean())
    b = three.boxes()
    centre = (b[:, :2] + b[:, 2:]) / 2.0
    step = np.linalg.norm(np.diff(centre, axis=0), axis=1) / (b[:-1, 2] - b[:-1, 0])
    joins = [31, 63, 95]  # the step from the last frame of a segment into the next one
    assert step[joins].max() < 0.12, step[joins]  # smoothing runs across the joins: no jump


class ContentJitter:
    """The real detector plus a +-3 px jitter that is a function of the image bytes (the same image
    gives the same box on any thread, in any order)."""

    name = "opencv"

    def __init__(self, inner: OpenCVHaarDetector) -> None:
        self.inner = inner

    def detect(self, image: np.ndarray):  # noqa: ANN201
        faces = self.inner.detect(image)
        rng = np.random.default_rng(zlib.crc32(image.tobytes()))
        for f in faces:
            f.box = f.box + rng.uniform(-3, 3, size=4).astype(np.float32)
        return faces


def test_smoothing_runs_across_a_join_on_the_same_face(
    grace_rgb: np.ndarray, haar: OpenCVHaarDetector
) -> None:
    """A still face: frame 32 opens the second segment with its own detection. Being the same face,
    it is smoothed with the frames before it, as one tracker would; it is not left raw."""
    still = cv2.resize(grace_rgb, (176, 144))
    det = ContentJitter(haar)
    raw32 = det.detect(still)[0].box  # what segment two's first detection returns
    track = track_segments(opener([still] * 64), 64, det, TrackOptions(segment_frames=32), workers=1)
    box32 = track.faces[32].box  # type: ignore[union-attr]
    assert not np.array_equal(box32, raw32)
    assert np.abs(box32 - raw32).max() < 6.0  # averaged with jittered boxes of the same face


def _two_faces(grace: np.ndarray, astronaut: np.ndarray, n: int) -> list[np.ndarray]:
    """Grace Hopper (left, fixed size) and the astronaut (right) growing until the larger face."""
    a = cv2.resize(grace[60:380, 110:420], (200, 206))
    face_b = astronaut[30:200, 140:310]
    frames = []
    for k in range(n):
        canvas = np.full((360, 720, 3), 90, np.uint8)
        canvas[20:226, 30:230] = a
        s = int(200 + 120 * k / (n - 1))
        y = (360 - s) // 2
        canvas[y : y + s, 380 : 380 + s] = cv2.resize(face_b, (s, s))
        frames.append(canvas)
    return frames


def test_a_segment_that_starts_on_another_face_is_tracked_again_on_the_followed_one(
    grace_rgb: np.ndarray, astronaut_rgb: np.ndarray, haar: OpenCVHaarDetector
) -> None:
    frames = _two_faces(grace_rgb, astronaut_rgb, 80)
    opts = TrackOptions(segment_frames=40)
    # the scene: a fresh tracker at frame 40 would choose the astronaut (now the largest face) ...
    fresh = FaceTracker(haar, opts)
    assert fresh.update(frames[40]) is not None and fresh.faces_so_far[0].box[0] > 360  # type: ignore[union-attr]
    # ... while one tracker over the whole clip keeps following Grace Hopper, the face it chose first
    single = track_faces(frames, haar, TrackOptions())
    assert all(f is not None and f.box[2] < 360 for f in single.faces)
    for workers in (1, 2):
        track = track_segments(
            opener(frames), 80, haar, opts, workers=workers, new_detector=OpenCVHaarDetector
        )
        assert all(f is not None and f.box[2] < 360 for f in track.faces), workers


def test_a_scene_cut_at_a_join_is_not_smoothed_over(
    carphone_frames: list[np.ndarray], grace_rgb: np.ndarray, haar: OpenCVHaarDetector
) -> None:
    """Frames 0-31 carphone, 32-63 a still of Grace Hopper at the same size: the join is a cut, so the
    first Grace frames are not averaged with carphone boxes."""
    still = cv2.resize(grace_rgb, (176, 144))
    frames = list(carphone_frames[:32]) + [still] * 32
    track = track_segments(opener(frames), 64, haar, TrackOptions(segment_frames=32), workers=2)
    alone = haar.detect(still)[0].box
    assert box_iou(track.faces[32].box, alone) > 0.9  # type: ignore[union-attr]
    assert box_iou(track.faces[31].box, alone) < 0.9  # type: ignore[union-attr]


def test_face_workers_option_reaches_the_cli(tmp_path: object) -> None:
    from lipsynckit.cli import build_parser

    args = build_parser().parse_args(["sync", "v.mp4", "a.wav", "-o", "o.mp4", "--face-workers", "3"])
    from lipsynckit.cli import _sync_overrides

    assert _sync_overrides(args)["face_workers"] == 3


@pytest.mark.parametrize("n, length, expect", [(120, 32, 4), (100, 30, 4), (10, 256, 1), (300, 0, 1)])
def test_segment_boundaries_fall_on_keyframes(n: int, length: int, expect: int) -> None:
    from lipsynckit.faces.segments import _segments

    segs = _segments(n, length, 8)
    assert len(segs) == expect and segs[0][0] == 0 and segs[-1][1] == n
    assert all(a % 8 == 0 for a, _ in segs) and all(
        b == c for (_, b), (c, _) in zip(segs, segs[1:], strict=False)
    )


def test_exact_detection_runs_in_segments_too(
    carphone_frames: list[np.ndarray], haar: OpenCVHaarDetector
) -> None:
    """--exact-detection (the detector on every frame, no smoothing) goes through the same segments:
    every frame is a detection, and the result does not depend on the thread count."""
    opts = TrackOptions(exact=True, segment_frames=16)
    frames = carphone_frames[:48]
    one = track_segments(opener(frames), 48, haar, opts, workers=1)
    two = track_segments(opener(frames), 48, haar, opts, workers=2, new_detector=OpenCVHaarDetector)
    assert boxes_equal(one, two) and one.num_found >= 46
    for i in (0, 16, 17, 40):  # each found face is the detector's own box on that frame
        if one.faces[i] is not None:
            assert np.array_equal(one.faces[i].box, haar.detect(frames[i])[0].box)  # type: ignore[union-attr]


def test_a_failing_segment_raises_and_stops_the_rest(
    carphone_frames: list[np.ndarray], haar: OpenCVHaarDetector
) -> None:
    from lipsynckit.errors import VideoError

    started: list[int] = []

    def open_frames(a: int, b: int) -> Iterable[np.ndarray]:
        started.append(a)
        if a == 0:
            raise VideoError("broken at the start (test)", stage="faces")
        return iter(carphone_frames[a:b])

    with pytest.raises(VideoError, match="broken"):
        track_segments(open_frames, 120, haar, TrackOptions(segment_frames=8), workers=1)
    assert started == [0]  # one thread: the failure came first and nothing else ran
    started.clear()
    with pytest.raises(VideoError, match="broken"):
        track_segments(open_frames, 120, haar, TrackOptions(segment_frames=8), workers=2)
    assert 0 in started and len(started) <= 6  # the segments not yet started (of 15) were cancelled
