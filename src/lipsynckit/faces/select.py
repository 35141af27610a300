"""Choosing one face among several: the largest, the n-th from the left, or the one under a given box."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from lipsynckit.types import Face

SelectMode = Literal["largest", "index", "box", "score"]


def box_iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two x1y1x2y2 boxes (0 when either is empty)."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def _centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2.0, (a[1] + a[3] - b[1] - b[3]) / 2.0))


def select_face(
    faces: Sequence[Face],
    mode: SelectMode = "largest",
    index: int = 0,
    box: Sequence[float] | np.ndarray | None = None,
) -> Face | None:
    """Pick one face: ``largest`` area, ``index`` (0 = leftmost by box centre, negative counts from
    the right), ``box`` (highest IoU with ``box``; the nearest centre when none overlaps) or ``score``
    (the detector's most confident face: what official Wav2Lip takes from S3FD).

    Returns None when ``faces`` is empty or ``index`` is out of range (that face is not in view).
    """
    if not faces:
        return None
    if mode == "largest":
        return max(faces, key=lambda f: f.area)
    if mode == "score":
        return max(faces, key=lambda f: f.score)
    if mode == "index":
        ordered = sorted(faces, key=lambda f: float(f.box[0] + f.box[2]))
        if -len(ordered) <= index < len(ordered):
            return ordered[index]
        return None
    if mode == "box":
        if box is None:
            raise ValueError("select mode 'box' needs a box (x1, y1, x2, y2)")
        ref = np.asarray(box, dtype=np.float32).reshape(4)
        ious = [box_iou(f.box, ref) for f in faces]
        best = int(np.argmax(ious))
        if ious[best] > 0.0:
            return faces[best]
        return min(faces, key=lambda f: _centre_distance(f.box, ref))
    raise ValueError(f"unknown face selection mode {mode!r} (use largest, index, box or score)")


def match_face(faces: Sequence[Face], ref: np.ndarray, min_iou: float = 0.3) -> Face | None:
    """The face that continues ``ref`` (highest IoU above ``min_iou``), or None: identity across frames."""
    best, best_iou = None, min_iou
    for f in faces:
        iou = box_iou(f.box, ref)
        if iou >= best_iou:
            best, best_iou = f, iou
    return best
