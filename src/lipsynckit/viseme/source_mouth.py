"""The source's own mouth: where its lip line really runs, how far it is open, and how to close it.

Why: on a video the speaker already talks. Warping an open source mouth open again doubles the lower
lip and smears its dark interior; placing the new mouth from landmarks that are a pixel or two off
(5-point landmarks on a 176x144 frame) draws the cavity beside the lips. So, when the face has
landmarks, ``fit_source_mouth`` looks at the frame around the landmark mouth, in the mouth's own
frame ``(u, v)`` (``u`` along the corners, ``v`` towards the chin):

* the lip line is the darkest row of each column; a weighted line fit through those minima corrects
  the landmark roll (at most ``MAX_ROLL_FIX``) and the line's offset (at most ``MAX_SHIFT`` half-widths);
* along that line, the dark band between the lips (darker than ``BAND_LEVEL`` of the way from its
  darkest point to the surrounding skin) is the source's opening; the part wider than a closed lip
  line (``CLOSED_BAND`` half-widths) is the gap to close.

``close_mouth`` then pulls the upper lip down and the lower lip up by half the gap each, with a
displacement that fades to zero over the surrounding skin (monotonic, so nothing folds), leaving a
closed mouth that the opening warp can open to the audio's shape. With box geometry (no landmarks)
nothing here runs: that path is today's geometry estimated from the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lipsynckit.viseme.warp import MouthInCrop, smoothstep

MAX_ROLL_FIX = math.radians(20.0)
MAX_SHIFT = 0.35  # half-widths
CLOSED_BAND = 0.3  # width of a closed lip line's dark band, in mouth half-widths
BAND_LEVEL = 0.5
MIN_DEPTH = 8.0  # grey levels: a column's minimum must be this much below its median to count


@dataclass(frozen=True)
class SourceMouth:
    """Correction of the landmark mouth line, and the source's opening to close (mouth-frame pixels)."""

    roll_fix: float = 0.0  # radians added to the landmark roll
    shift: float = 0.0  # lip line offset along v at the mouth centre
    band_centre: float = 0.0  # centre of the dark band along v, relative to the corrected line
    half_gap: float = 0.0  # each lip moves this far towards the band centre to close the mouth


def _sample(img: np.ndarray, cx: float, cy: float, roll: float, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Grey image sampled on the ``(v, u)`` grid of the mouth frame."""
    c, s = math.cos(roll), math.sin(roll)
    uu, vv = np.meshgrid(us, vs)
    mx = (cx + uu * c - vv * s).astype(np.float32)
    my = (cy + uu * s + vv * c).astype(np.float32)
    patch = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)


def fit_source_mouth(frame: np.ndarray, cx: float, cy: float, half_width: float, roll: float) -> SourceMouth:
    """Measure the source mouth around the landmark mouth (centre, half-width, roll in frame pixels)."""
    a = max(float(half_width), 2.0)
    st = max(0.25, a / 24.0)
    us = np.arange(-0.9 * a, 0.9 * a + 1e-6, st)
    vs = np.arange(-0.7 * a, 0.7 * a + 1e-6, st)
    grey = cv2.GaussianBlur(_sample(frame, cx, cy, roll, us, vs), (0, 0), max(0.5, 0.05 * a / st))
    # 1) lip line: the darkest row of each column, fitted by a line weighted by its depth
    idx = np.argmin(grey, axis=0)
    depth = np.median(grey, axis=0) - grey[idx, np.arange(grey.shape[1])]
    ok = depth > MIN_DEPTH
    roll_fix, shift = 0.0, 0.0
    if ok.sum() >= 0.5 * len(us):
        k, b = np.polyfit(us[ok], vs[idx[ok]], 1, w=np.sqrt(depth[ok]))
        roll_fix = float(np.clip(math.atan(k), -MAX_ROLL_FIX, MAX_ROLL_FIX))
        shift = float(np.clip(b, -MAX_SHIFT * a, MAX_SHIFT * a))
    # 2) the dark band along the corrected line, in the central half of the mouth
    c, s = math.cos(roll), math.sin(roll)
    lx, ly = cx - shift * s, cy + shift * c
    central = us[np.abs(us) <= 0.5 * a]
    vs = np.arange(-1.3 * a, 1.3 * a + 1e-6, st)  # an open mouth reaches further than the lip line
    prof = _sample(frame, lx, ly, roll + roll_fix, central, vs).mean(axis=1)
    prof = cv2.GaussianBlur(prof[:, None], (0, 0), max(0.5, 0.05 * a / st)).ravel()
    near = np.abs(vs) <= MAX_SHIFT * a
    i0 = int(np.flatnonzero(near)[np.argmin(prof[near])])
    lo, base = float(prof[i0]), float(np.percentile(prof, 85))
    if base - lo < 2.0 * MIN_DEPTH:
        return SourceMouth(roll_fix, shift)
    thr = lo + BAND_LEVEL * (base - lo)
    top = i0
    while top > 0 and prof[top - 1] < thr:
        top -= 1
    bot = i0
    while bot < len(vs) - 1 and prof[bot + 1] < thr:
        bot += 1
    width = (bot - top + 1) * st
    half_gap = max(0.0, width - CLOSED_BAND * a) / 2.0
    return SourceMouth(roll_fix, shift, float((vs[top] + vs[bot]) / 2.0), half_gap)


def close_mouth(crop: np.ndarray, m: MouthInCrop, band_centre: float, half_gap: float) -> np.ndarray:
    """Pull the lips of ``crop`` together across the band at ``band_centre`` (``m`` = corrected line)."""
    if half_gap <= 0.0:
        return crop
    h, w = crop.shape[:2]
    a = max(m.half_width, 2.0)
    c, s = math.cos(m.roll), math.sin(m.roll)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs - m.cx) * c + (ys - m.cy) * s
    d = -(xs - m.cx) * s + (ys - m.cy) * c - band_centre
    lens = np.clip(1.0 - (u / (1.15 * a)) ** 2, 0.0, 1.0) ** 0.5
    reach = max(0.7 * a, 2.0 * half_gap)  # slope of the shift <= 0.75: the map stays monotonic
    shift = np.sign(d) * half_gap * lens * (1.0 - smoothstep(np.abs(d) / reach))
    map_x = (xs - shift * s).astype(np.float32)
    map_y = (ys + shift * c).astype(np.float32)
    out = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    still = shift == 0.0
    out[still] = crop[still]
    return out
