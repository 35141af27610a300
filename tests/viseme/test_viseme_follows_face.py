"""``viseme`` on a real talking, turning, rolling face (carphone): the new mouth follows the face.

The mouth region is defined by landmarks found here with yuface's own API on the *source* frames
(mouth corners: centre, half-width ``a`` and angle), an ellipse of 1.6 ``a`` along the mouth line and
1.4 ``a`` across it. A warp only moves pixels (the jaw at most ``max_jaw_drop`` = 8.5 % of the face
height, about 5 px on these 60 px faces), so outside the mouth region no output pixel may be darker
than the darkest source pixel within ``REACH`` px of it by more than ``MARGIN`` grey levels: a dark
mouth interior drawn on the cheek, or a lip line drawn where the mouth is not, breaks that. Checked
on main before this change (Haar boxes, mouth placed from the box): it fails (10 frames of the rolled
stretch 84-111, 34 pixels); with the landmark default it finds none.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from lipsynckit.pipeline import SyncResult
from lipsynckit.types import Face, ModelBatch, PreparedFace, WorkItem
from lipsynckit.viseme import plugin

yuface = pytest.importorskip("yuface.yuface", reason='the [faces] extra (yuface) is part of "dev"')

REACH = 6  # px: the jaw drop on these faces (5 px) plus one
MARGIN = 20  # grey levels
WIDE_OPEN = (60, 61, 62, 108, 110, 112)  # source frames where the speaker's mouth is wide open


def _landmark_face(rgb: np.ndarray) -> Face:
    """The face and 5 landmarks straight from yuface (BGR in; conf, x, y, w, h, 5 points per row)."""
    rows = yuface.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert len(rows) >= 1
    r = rows[int(np.argmax(rows[:, 0]))].astype(np.float32)
    return Face(np.array([r[1], r[2], r[1] + r[3], r[2] + r[4]]), landmarks=r[5:15].reshape(5, 2))


def _mouth_region(face: Face, shape: tuple[int, int]) -> np.ndarray:
    assert face.landmarks is not None
    left, right = face.landmarks[3], face.landmarks[4]
    c = (left + right) / 2.0
    a = float(np.linalg.norm(right - left)) / 2.0
    th = math.atan2(float(right[1] - left[1]), float(right[0] - left[0]))
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    u = (xs - c[0]) * math.cos(th) + (ys - c[1]) * math.sin(th)
    v = -(xs - c[0]) * math.sin(th) + (ys - c[1]) * math.cos(th)
    return np.asarray((u / (1.6 * a)) ** 2 + (v / (1.4 * a)) ** 2 <= 1.0)


def _new_dark(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Output pixels darker than anything the warp could have moved there."""
    sy = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
    oy = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.int16)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * REACH + 1, 2 * REACH + 1))
    return np.asarray(oy < cv2.erode(sy, disk).astype(np.int16) - MARGIN)


@pytest.fixture(scope="module")
def carphone_frames(carphone_mp4: Path) -> list[np.ndarray]:
    import av

    with av.open(str(carphone_mp4)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def carphone_run(
    carphone_mp4: Path,
    carphone_frames: list[np.ndarray],
    speech_wav: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[np.ndarray], list[np.ndarray], SyncResult]:
    """The default path a user gets: `sync(carphone, speech)` with viseme and --detector auto."""
    import lipsynckit as lsk

    tmp = tmp_path_factory.mktemp("carphone_viseme")
    x, sr = sf.read(str(speech_wav), dtype="float32")
    wav = tmp / "speech4s.wav"
    sf.write(str(wav), x[: int(4.0 * sr)], sr)  # 4.0 s at 29.97 fps = the clip's 120 frames
    result = lsk.sync(str(carphone_mp4), str(wav), "viseme", tmp / "frames", progress=False)
    src = carphone_frames
    files = sorted((tmp / "frames").glob("frame_*.png"))
    out = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    assert len(out) == len(src) == 120
    return src, out, result


@pytest.mark.timeout(300)
def test_no_dark_pixels_outside_the_landmark_mouth(
    carphone_run: tuple[list[np.ndarray], list[np.ndarray], SyncResult],
) -> None:
    src, out, result = carphone_run
    assert result.frames_with_face == 120 and not result.failed_frames
    bad: list[tuple[int, int]] = []
    changed = 0
    for i, (s, o) in enumerate(zip(src, out, strict=True)):
        outside = ~_mouth_region(_landmark_face(s), s.shape[:2])
        n = int((_new_dark(s, o) & outside).sum())
        if n:
            bad.append((i, n))
        changed += int(not np.array_equal(s, o))
    assert changed >= 60  # the speech does move the mouth (the check is not passed by doing nothing)
    assert not bad, f"frames with dark pixels outside the mouth region (frame, pixels): {bad}"
    assert result.detector == "mtcnn"  # the offline default of the [faces] extra (docs/models/faces.md)


def _render(model: object, frame: np.ndarray, face: Face, opening: float) -> np.ndarray:
    pf: PreparedFace = model.prepare(frame, face)  # type: ignore[attr-defined]
    gen = model.generate(ModelBatch([WorkItem(0, 0, pf, torch.tensor([opening, 0.0, 1.0, 1.0]))]))[0]  # type: ignore[attr-defined]
    return np.asarray(model.composite(frame, pf, gen))  # type: ignore[attr-defined]


def test_source_mouth_is_closed_before_the_new_one_is_drawn(carphone_frames: list[np.ndarray]) -> None:
    """Wide-open source mouth, small new opening: the source's dark interior shrinks (it used to grow)."""
    model = plugin.load()
    old_way = plugin.load(options={"follow_source": False})
    for i in WIDE_OPEN:
        frame = carphone_frames[i]
        face = _landmark_face(frame)
        region = _mouth_region(face, frame.shape[:2])

        def dark(img: np.ndarray, region: np.ndarray = region) -> int:
            return int(((cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) < 50) & region).sum())

        before = dark(frame)
        assert before >= 60, (i, before)  # the source mouth really is open
        assert dark(_render(model, frame, face, 0.15)) < 0.85 * before, i  # measured 0.39-0.73
        assert dark(_render(old_way, frame, face, 0.15)) >= before, i  # warping alone adds to it


def test_box_only_faces_keep_the_box_geometry(carphone_frames: list[np.ndarray]) -> None:
    """Haar-style faces (no landmarks): no source fit, the same output as before this change."""
    model = plugin.load()
    old_way = plugin.load(options={"follow_source": False})
    frame = carphone_frames[30]
    lm_face = _landmark_face(frame)
    box_face = Face(lm_face.box)
    pf = model.prepare(frame, box_face)
    assert pf.data["geometry"] == "box" and "source_mouth" not in pf.data
    assert np.array_equal(_render(model, frame, box_face, 0.6), _render(old_way, frame, box_face, 0.6))
    assert "source_mouth" in model.prepare(frame, lm_face).data
    # opening 0 is the source frame, bit for bit, with or without landmarks (silence keeps the source)
    assert np.array_equal(_render(model, frame, lm_face, 0.0), frame)
