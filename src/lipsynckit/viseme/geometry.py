"""Where the mouth is: from detector landmarks when there are any, otherwise from the box shape."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lipsynckit.errors import NoFaceError
from lipsynckit.types import Face
from lipsynckit.viseme.options import VisemeOptions


@dataclass(frozen=True)
class MouthGeometry:
    """Mouth centre (frame pixels), half-width, face roll (radians, image y down) and face height."""

    cx: float
    cy: float
    half_width: float
    roll: float
    face_height: float
    source: str  # "landmarks5", "landmarks68", ..., or "box"


def _angle(p: np.ndarray, q: np.ndarray) -> float:
    d = q - p
    if d[0] < 0:  # order left-to-right in the image so the angle stays within +-90 degrees
        d = -d
    return math.atan2(float(d[1]), float(d[0]))


def _from_landmarks(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None] | None:
    """(left corner, right corner, eye-line angle or None) for the landmark layouts we know."""
    k = lm.shape[0]
    if k == 5:  # insightface / RetinaFace / MTCNN: eyes, nose, mouth corners
        return lm[3], lm[4], _angle(lm[0], lm[1])
    if k == 68:  # iBUG 300-W: mouth 48-67, corners 48 and 54
        return lm[48], lm[54], _angle(lm[36:42].mean(0), lm[42:48].mean(0))
    if k == 98:  # WFLW: mouth 76-95, corners 76 and 82
        return lm[76], lm[82], _angle(lm[60:68].mean(0), lm[68:76].mean(0))
    if k == 106:  # insightface 2d106det: mouth 52-71; take its extreme points as the corners
        mouth = lm[52:72]
        return mouth[int(np.argmin(mouth[:, 0]))], mouth[int(np.argmax(mouth[:, 0]))], None
    if k in (468, 478):  # MediaPipe face mesh: corners 61 and 291
        return lm[61], lm[291], None
    return None


def mouth_geometry(face: Face, opts: VisemeOptions) -> MouthGeometry:
    """Locate the mouth of ``face``; landmarks win over box geometry when they are plausible."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    bw, bh = x2 - x1, y2 - y1
    if not (np.isfinite(face.box).all() and bw > 1.0 and bh > 1.0):
        raise NoFaceError(
            f"face box {face.box.tolist()} is empty or not finite",
            stage="model",
            remedy="check the face detector output or the --face-boxes file for this frame",
        )
    if face.landmarks is not None and np.isfinite(face.landmarks).all():
        found = _from_landmarks(face.landmarks)
        if found is not None:
            left, right, eye_angle = found
            centre = (left + right) / 2.0
            half = float(np.linalg.norm(right - left)) / 2.0
            inside = x1 - 0.2 * bw <= centre[0] <= x2 + 0.2 * bw and y1 <= centre[1] <= y2 + 0.3 * bh
            if inside and 0.05 * bw < half < 0.5 * bw:
                mouth_angle = _angle(left, right)
                roll = mouth_angle if eye_angle is None else (mouth_angle + eye_angle) / 2.0
                return MouthGeometry(
                    float(centre[0]), float(centre[1]), half, roll, bh, f"landmarks{face.landmarks.shape[0]}"
                )
    return MouthGeometry((x1 + x2) / 2.0, y1 + opts.mouth_y * bh, opts.mouth_half_width * bw, 0.0, bh, "box")


def region_box(
    geom: MouthGeometry, frame_hw: tuple[int, int], opts: VisemeOptions
) -> tuple[int, int, int, int]:
    """Square around the lower face (nose base to below the chin), clipped to the frame."""
    side = opts.region_scale * geom.face_height
    # the square sits a little below the mouth (the jaw has more to move than the upper lip)
    ox, oy = -math.sin(geom.roll) * 0.1 * geom.face_height, math.cos(geom.roll) * 0.1 * geom.face_height
    cx, cy = geom.cx + ox, geom.cy + oy
    h, w = frame_hw
    x1 = max(0, int(round(cx - side / 2.0)))
    y1 = max(0, int(round(cy - side / 2.0)))
    x2 = min(w, int(round(cx + side / 2.0)))
    y2 = min(h, int(round(cy + side / 2.0)))
    if x2 - x1 < 4 or y2 - y1 < 4:
        raise NoFaceError(
            f"the lower-face region {[x1, y1, x2, y2]} lies outside the {w}x{h} frame",
            stage="model",
            remedy="the face box is off-frame: check the detector output or the --face-boxes file",
        )
    return x1, y1, x2, y2
