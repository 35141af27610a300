"""MuseTalk's crop box per version, derived from whatever landmarks our detectors give.

Official boxes come from DWPose's 68 face points (SPEC 6.4): ``yc = lm[29].y + bbox_shift``,
``y1 = max(0, yc - (max_y - yc))``, box = (min x, y1, max x, max y); v1.5 then adds
``extra_margin`` to y2. DWPose (mmpose) is not a dependency here, so:

* 68 points (any 68-point landmarker): the official rule exactly.
* a face with no landmarks (``--face-boxes`` or a box-only detector): the box *is* the official
  crop box (the upstream S3FD fallback does the same), so passing the official ``coord_list``
  reproduces the official crop exactly.
* 106 points (insightface 2d106det) or other dense sets including the face contour: x range and
  chin from the points; the nose point's height is placed at the fraction it has in the mean
  68-point face (``_NOSE29_FRAC`` of brow-top..chin). Boxes differ from DWPose by a few pixels.
* 5 points (SCRFD/RetinaFace keypoints): x range and chin from the detector box, the nose point
  at ``_NOSE29_EYE_NOSE`` between the eye line and the nose tip.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from lipsynckit.errors import NoFaceError
from lipsynckit.types import Face

# Mean 68-point face (normalised template used for face alignment): brow top y 0.182,
# point 29 y 0.474, chin y 1.061, eye line y 0.339, nose tip y 0.553.
_NOSE29_FRAC = (0.4738 - 0.1824) / (1.0608 - 0.1824)
_NOSE29_EYE_NOSE = (0.4738 - 0.339) / (0.5532 - 0.339)


def crop_box_from_68(lm: np.ndarray, bbox_shift: int = 0) -> tuple[int, int, int, int] | None:
    """Official landmark box from 68 points (truncated to int as mmpose output is cast upstream)."""
    pts = np.asarray(lm, dtype=np.float32).astype(np.int32)
    yc = int(pts[29, 1]) + int(bbox_shift)
    y2 = int(pts[:, 1].max())
    d = y2 - yc
    y1 = max(0, yc - d)
    x1, x2 = int(pts[:, 0].min()), int(pts[:, 0].max())
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return None
    return x1, y1, x2, y2


def _box_ints(box: np.ndarray) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(math.floor(float(v) + 0.5)) for v in box)
    return x1, y1, x2, y2


def landmark_box(face: Face, bbox_shift: int = 0) -> tuple[int, int, int, int]:
    """The version-independent crop box (before the v1.5 margin) for one face."""
    box = _box_ints(face.box)
    lm = face.landmarks
    if lm is None or len(lm) == 0:
        return box
    if len(lm) == 68:
        got = crop_box_from_68(lm, bbox_shift)
        return got if got is not None else box
    pts = np.asarray(lm, dtype=np.float32)
    if len(lm) == 5:
        eye_y = float(pts[:2, 1].mean())
        yc = eye_y + _NOSE29_EYE_NOSE * (float(pts[2, 1]) - eye_y) + bbox_shift
        x1, _, x2, y2 = box
    else:
        top, chin = float(pts[:, 1].min()), float(pts[:, 1].max())
        yc = top + _NOSE29_FRAC * (chin - top) + bbox_shift
        x1, x2, y2 = int(pts[:, 0].min()), int(pts[:, 0].max()), int(chin)
    y1 = max(0, int(yc) - (y2 - int(yc)))
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return box
    return x1, y1, x2, y2


def crop_box(
    face: Face, frame_hw: tuple[int, int], version: str, bbox_shift: int = 0, extra_margin: int = 10
) -> tuple[int, int, int, int]:
    """The box MuseTalk crops and pastes back (v1.5: bbox_shift forced to 0, margin added)."""
    h, w = frame_hw
    if version == "v1.5":
        x1, y1, x2, y2 = landmark_box(face, 0)
        y2 = min(y2 + extra_margin, h)
    else:
        x1, y1, x2, y2 = landmark_box(face, bbox_shift)
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise NoFaceError(
            f"face box {tuple(float(v) for v in face.box)} leaves no usable crop in a {w}x{h} frame",
            stage="faces",
            remedy="check the face boxes (x1, y1, x2, y2 in pixels) or use another face detector",
        )
    return x1, y1, x2, y2


def crop_face(frame: np.ndarray, box: tuple[int, int, int, int], size: int = 256) -> np.ndarray:
    """``frame[y1:y2, x1:x2]`` resized to size x size with Lanczos-4 (aspect not preserved)."""
    x1, y1, x2, y2 = box
    return cv2.resize(frame[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_LANCZOS4)
