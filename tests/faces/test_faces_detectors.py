"""The built-in Haar detector, face selection and detector discovery, on real photos."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces import get_face_detector, list_face_detectors, select_face
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.faces.opencv_haar import OpenCVHaarDetector
from lipsynckit.faces.select import box_iou
from lipsynckit.types import Face

# Faces in insightface's t1.jpg, labelled by eye on crops (x1, y1, x2, y2); left to right.
T1_FACES = {
    "courteney": (248, 156, 364, 272),
    "david": (448, 272, 585, 409),
    "perry": (729, 356, 842, 469),
    "matt": (874, 64, 1011, 201),
    "lisa": (1115, 278, 1233, 396),
}
GRACE_FACE = (155, 105, 375, 330)
ASTRONAUT_FACE = (178, 68, 270, 160)


def _matched(faces: list[Face], ref: tuple[int, int, int, int]) -> Face | None:
    best = max(faces, key=lambda f: box_iou(f.box, ref), default=None)
    return best if best is not None and box_iou(best.box, ref) > 0.5 else None


@pytest.fixture(scope="module")
def t1_faces(haar: OpenCVHaarDetector, group_rgb: np.ndarray) -> list[Face]:
    return haar.detect(group_rgb)


def test_group_photo_finds_at_least_four_of_the_faces(t1_faces: list[Face]) -> None:
    hits = [name for name, ref in T1_FACES.items() if _matched(t1_faces, ref) is not None]
    assert len(hits) >= 4, (hits, [f.box for f in t1_faces])
    scores = [f.score for f in t1_faces]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s <= 1.0 for s in scores)
    assert all(f.landmarks is None for f in t1_faces)
    assert len(t1_faces) <= 7  # at most a couple of false positives


def test_selection_largest_index_and_box(t1_faces: list[Face]) -> None:
    largest = select_face(t1_faces, "largest")
    assert largest is not None and largest.area == max(f.area for f in t1_faces)
    left = select_face(t1_faces, "index", index=0)
    right = select_face(t1_faces, "index", index=-1)
    assert left is not None and right is not None
    centres = sorted(float(f.box[0] + f.box[2]) for f in t1_faces)
    assert float(left.box[0] + left.box[2]) == centres[0]
    assert box_iou(right.box, T1_FACES["lisa"]) > 0.5  # Lisa is the rightmost face
    assert select_face(t1_faces, "index", index=len(t1_faces)) is None
    near_perry = np.array(T1_FACES["perry"], np.float32) + np.array([10, -8, 12, -5], np.float32)
    picked = select_face(t1_faces, "box", box=near_perry)
    assert picked is not None and box_iou(picked.box, T1_FACES["perry"]) > 0.5
    far = select_face(t1_faces, "box", box=(1200, 0, 1270, 40))  # overlaps nothing: nearest centre
    assert far is not None and box_iou(far.box, T1_FACES["matt"]) > 0.5
    assert select_face([], "largest") is None
    best = select_face(t1_faces, "score")
    assert best is not None and best.score == max(f.score for f in t1_faces)
    with pytest.raises(ValueError, match="unknown face selection mode"):
        select_face(t1_faces, "smallest")  # type: ignore[arg-type]


def test_portraits_have_exactly_one_face(
    haar: OpenCVHaarDetector, grace_rgb: np.ndarray, astronaut_rgb: np.ndarray
) -> None:
    grace = haar.detect(grace_rgb)
    assert len(grace) == 1 and box_iou(grace[0].box, GRACE_FACE) > 0.6, grace
    astro = haar.detect(astronaut_rgb)
    assert len(astro) == 1 and box_iou(astro[0].box, ASTRONAUT_FACE) > 0.6, astro


def test_no_face_photo(haar: OpenCVHaarDetector, no_face_rgb: np.ndarray) -> None:
    assert haar.detect(no_face_rgb) == []


def test_small_video_frames_are_upscaled(haar: OpenCVHaarDetector, carphone_frames: list[np.ndarray]) -> None:
    """176x144 frames: the face (~60 px) is found on frames across the clip, tilted ones included."""
    found = [len(haar.detect(carphone_frames[i])) > 0 for i in (0, 30, 60, 90, 119)]
    assert sum(found) >= 4, found


def test_rejects_non_rgb_input(haar: OpenCVHaarDetector) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        haar.detect(np.zeros((32, 32), np.uint8))


def test_registry_lists_detectors_and_auto_falls_back_to_opencv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "no_insightface"))
    # without the [faces] extra auto must land on Haar; test_faces_offline_cnn checks it with it
    from lipsynckit.faces.mtcnn_cv import MTCNNPlugin
    from lipsynckit.faces.yuface_cnn import YuFacePlugin

    monkeypatch.setattr(MTCNNPlugin, "requires", ("mtcnn_not_installed",))
    monkeypatch.setattr(YuFacePlugin, "requires", ("yuface_not_installed",))
    rows = {name: (usable, reason) for name, usable, reason in list_face_detectors()}
    assert rows["opencv"][0] is True
    assert rows["insightface"][0] is False and "buffalo_l" in rows["insightface"][1]
    with caplog.at_level(logging.INFO, logger="lipsynckit.faces"):
        det = get_face_detector("auto")
    assert isinstance(det, FaceDetector) and det.name == "opencv"
    assert "auto chose 'opencv'" in caplog.text and "insightface" in caplog.text and "yuface" in caplog.text
    assert get_face_detector("opencv").name == "opencv"
    with pytest.raises(FaceDetectorError, match="no face detector plugin named 'nope'") as ei:
        get_face_detector("nope")
    assert ei.value.stage == "faces" and ei.value.remedy


def test_plugin_contract() -> None:
    from lipsynckit.faces.opencv_haar import detector_plugin

    assert isinstance(detector_plugin, FaceDetectorPlugin)
    assert detector_plugin.status()[0] is True
    assert detector_plugin.info.landmarks == 0 and detector_plugin.info.offline
