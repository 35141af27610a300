"""insightface detector: missing models fail at once with a useful error; real detection when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces import get_face_detector
from lipsynckit.faces.insightface_scrfd import (
    DET_FILE,
    LMK_FILE,
    InsightFaceDetector,
    detector_plugin,
    pack_dir,
)


def test_status_reports_missing_models(tmp_path: Path) -> None:
    ok, reason = detector_plugin.status(root=str(tmp_path))
    assert ok is False
    assert str(pack_dir(tmp_path)) in reason and DET_FILE in reason


def test_offline_error_names_folder_source_and_licence(tmp_path: Path) -> None:
    with pytest.raises(FaceDetectorError) as ei:
        InsightFaceDetector(root=str(tmp_path))
    err = ei.value
    assert err.stage == "faces" and err.path == str(pack_dir(tmp_path))
    text = str(err)
    assert "buffalo_l.zip" in text and "non-commercial" in text and DET_FILE in text
    assert not (tmp_path / "models").exists()  # nothing was downloaded or created


@pytest.mark.timeout(120)
def test_failed_download_becomes_detector_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """download=True goes through insightface's own downloader; a dead proxy makes it fail fast."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(FaceDetectorError, match="could not load or download") as ei:
        get_face_detector("insightface", {"root": str(tmp_path), "download": True})
    assert "non-commercial" in str(ei.value)


def test_corrupt_model_files_become_detector_error(tmp_path: Path) -> None:
    folder = pack_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / DET_FILE).write_bytes(b"not an onnx file")
    (folder / LMK_FILE).write_bytes(b"not an onnx file")
    assert detector_plugin.status(root=str(tmp_path))[0] is True  # files are present
    with pytest.raises(FaceDetectorError, match="could not load"):
        InsightFaceDetector(root=str(tmp_path))


def _local_models() -> Path | None:
    import os

    root = Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()
    folder = pack_dir(root)
    return root if (folder / DET_FILE).is_file() and (folder / LMK_FILE).is_file() else None


@pytest.mark.skipif(
    _local_models() is None, reason="buffalo_l models not present locally (non-commercial download)"
)
def test_real_detection_with_local_models(group_photo_jpg: Path) -> None:
    import cv2

    det = InsightFaceDetector(root=str(_local_models()))
    bgr = cv2.imread(str(group_photo_jpg))
    assert bgr is not None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = det.detect(rgb)
    assert len(faces) == 6
    assert all(f.landmarks is not None and f.landmarks.shape == (106, 2) for f in faces)
    assert np.all(np.diff([f.score for f in faces]) <= 0)


def test_detect_converts_insightface_faces(grace_rgb: np.ndarray) -> None:
    """Our side of the boundary: BGR input, boxes, scores, 106 landmarks and score order.

    insightface's own model is stood in for by a recorder returning insightface ``Face`` objects,
    because the buffalo_l files cannot be shipped with the tests (non-commercial licence).
    """
    from insightface.app.common import Face as IFace

    seen: list[np.ndarray] = []

    class Recorder:
        models = {"detection": None, "landmark_2d_106": None}

        def get(self, img: np.ndarray) -> list[IFace]:
            seen.append(img)
            lmk = np.tile(np.array([[200.0, 200.0]], np.float32), (106, 1))
            return [
                IFace(bbox=np.array([10, 20, 60, 80], np.float32), det_score=0.6, landmark_2d_106=lmk),
                IFace(bbox=np.array([150, 100, 380, 330], np.float32), det_score=0.9, landmark_2d_106=lmk),
            ]

    det = InsightFaceDetector.__new__(InsightFaceDetector)
    det._app = Recorder()
    faces = det.detect(grace_rgb)
    assert np.array_equal(seen[0], grace_rgb[:, :, ::-1])  # insightface expects BGR
    assert [round(f.score, 3) for f in faces] == [0.9, 0.6]
    assert faces[0].landmarks is not None and faces[0].landmarks.shape == (106, 2)
    np.testing.assert_array_equal(faces[0].box, [150, 100, 380, 330])
