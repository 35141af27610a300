"""The source's own mouth: how far it is open, and how to close it before the new mouth is drawn.

Why: on a video the speaker already talks. Warping an open source mouth open again doubles the lower
lip and smears its dark interior. So, when the face has landmarks, ``fit_source_mouth`` reads the
frame in the mouth's own frame ``(u, v)`` (``u`` along the mouth corners, ``v`` towards the chin):
across the central half of the mouth, the dark band between the lips that contains the corner line
(darker than ``BAND_LEVEL`` of the way from its darkest row to the surrounding skin) is the source's
opening; the part wider than a closed lip line (``CLOSED_BAND`` half-widths) is the gap to close.
A smile showing teeth or a closed mouth gives no gap (nothing changes: photos keep their lips).

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

LINE_SLACK = 0.25  # half-widths: the darkest row between the lips lies this close to the corner line
CLOSED_BAND = 0.3  # width of a closed lip line's dark band, in mouth half-widths
BAND_LEVEL = 0.5  # the band is darker than this fraction of the way from its darkest row to the skin
MIN_CONTRAST = 16.0  # grey levels between the band and the skin for an opening to count


@dataclass(frozen=True)
class SourceMouth:
    """The source's opening to close, in mouth-frame pixels (0 = closed: nothing to do)."""

    band_centre: float = 0.0  # centre of the dark band between the lips along v, from the corner line
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
    """Measure the source's opening across the landmark mouth line (centre, half-width, roll in pixels)."""
    a = max(float(half_width), 2.0)
    st = max(0.25, a / 24.0)
    us = np.arange(-0.5 * a, 0.5 * a + 1e-6, st)  # the central half of the mouth
    vs = np.arange(-1.3 * a, 1.3 * a + 1e-6, st)  # an open mouth reaches this far from the corner line
    prof = _sample(frame, cx, cy, roll, us, vs).mean(axis=1)
    prof = cv2.GaussianBlur(prof[:, None], (0, 0), max(0.5, 0.05 * a / st)).ravel()
    near = np.abs(vs) <= LINE_SLACK * a  # the gap between the lips contains the corner line
    i0 = int(np.flatnonzero(near)[np.argmin(prof[near])])
    lo, base = float(prof[i0]), float(np.percentile(prof, 85))
    if base - lo < MIN_CONTRAST:
        return SourceMouth()
    thr = lo + BAND_LEVEL * (base - lo)
    top = i0
    while top > 0 and prof[top - 1] < thr:
        top -= 1
    bot = i0
    while bot < len(vs) - 1 and prof[bot + 1] < thr:
        bot += 1
    half_gap = max(0.0, (bot - top + 1) * st - CLOSED_BAND * a) / 2.0
    if half_gap <= 0.0:
        return SourceMouth()
    return SourceMouth(float((vs[top] + vs[bot]) / 2.0), half_gap)


def close_mouth(crop: np.ndarray, m: MouthInCrop, band_centre: float, half_gap: float) -> np.ndarray:
    """Pull the lips of ``crop`` together across the band at ``band_centre`` (``m`` = corrected line).
    With a known upper lip (``m.upper_lip``) the pull reaches no further than the lips themselves
    (at least twice the gap, so the map stays monotonic): a moustache above them stays."""
    if half_gap <= 0.0:
        return crop
    h, w = crop.shape[:2]
    a = max(m.half_width, 2.0)
    c, s = math.cos(m.roll), math.sin(m.roll)
    reach = max(
        0.7 * a if m.upper_lip <= 0.0 else m.upper_lip, 2.0 * half_gap
    )  # slope of the shift <= 0.75: the map stays monotonic
    # only the rectangle around the moving lips is computed (the rest of the crop stays as it is)
    ext_u, ext_v = 1.15 * a, reach + 1.0
    corners = [(su * ext_u, band_centre + sv * ext_v) for su in (-1, 1) for sv in (-1, 1)]
    xs_c = [m.cx + u * c - v * s for u, v in corners]
    ys_c = [m.cy + u * s + v * c for u, v in corners]
    x0, x1 = max(0, int(math.floor(min(xs_c)))), min(w, int(math.ceil(max(xs_c))) + 1)
    y0, y1 = max(0, int(math.floor(min(ys_c)))), min(h, int(math.ceil(max(ys_c))) + 1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return crop
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u = (xs - m.cx) * c + (ys - m.cy) * s
    d = -(xs - m.cx) * s + (ys - m.cy) * c - band_centre
    lens = np.clip(1.0 - (u / (1.15 * a)) ** 2, 0.0, 1.0) ** 0.5
    shift = np.sign(d) * half_gap * lens * (1.0 - smoothstep(np.abs(d) / reach))
    map_x = (xs - shift * s).astype(np.float32)
    map_y = (ys + shift * c).astype(np.float32)
    patch = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    still = shift == 0.0
    patch[still] = crop[y0:y1, x0:x1][still]
    out = crop.copy()
    out[y0:y1, x0:x1] = patch
    return out


# iBUG 300-W inner lip: upper 61-63 over lower 67-65 (60 and 64 are the inner corners)
_INNER_UPPER = (61, 62, 63)
_INNER_LOWER = (67, 66, 65)
LIPS_CLOSED_SLACK = 0.06  # inner-lip gap (half-widths) still read as closed: the predictor's own jitter


def lips_source_mouth(lm: np.ndarray, cx: float, cy: float, roll: float, half_width: float) -> SourceMouth:
    """The source's opening from the 68-point inner lip contour (no image measurement: a moustache,
    a beard or a dark lip cannot pass for an opening), and where the lips meet (``band_centre``,
    also for a closed mouth: a smile's centre sits below its corners). Centre pair weighted double."""
    c, s = math.cos(roll), math.sin(roll)
    v = -(lm[:, 0] - cx) * s + (lm[:, 1] - cy) * c
    up, low = v[list(_INNER_UPPER)], v[list(_INNER_LOWER)]
    w = np.array([1.0, 2.0, 1.0])
    gap = float(np.dot(w, low - up) / w.sum())
    centre = float(np.dot(w, (low + up) / 2.0) / w.sum())
    half_gap = max(0.0, gap - LIPS_CLOSED_SLACK * max(half_width, 2.0)) / 2.0
    return SourceMouth(centre, half_gap)  # a closed mouth still says where the lips meet


def upper_lip_extent(lm: np.ndarray, cx: float, cy: float, roll: float, band_centre: float) -> float:
    """How far above the lips' meeting line (``band_centre`` from the corner line) the outer upper
    lip (points 49-53, cupid's bow included) reaches, in pixels."""
    c, s = math.cos(roll), math.sin(roll)
    v = -(lm[49:54, 0] - cx) * s + (lm[49:54, 1] - cy) * c
    return float(max(1.0, band_centre - v.min()))


def lip_region_mask(lm: np.ndarray, hw: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``(h, w)`` bool: inside the outer lip contour (points 48-59), shifted by ``-offset`` (x, y)."""
    mask = np.zeros(hw, np.uint8)
    pts = np.rint(lm[48:60] - np.asarray(offset, np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def mouth_palette(crop: np.ndarray, lm: np.ndarray | None, offset: tuple[int, int]) -> dict[str, list[float]]:
    """Interior colours from the face's own: cavity and tongue from the lips' colour (darkened), the
    teeth a warm white scaled to the face's lighting, so a dim photo gets dim teeth, not a grey bar."""
    pix = crop.reshape(-1, 3).astype(np.float32)
    luma = pix @ np.array([0.299, 0.587, 0.114], np.float32)
    light = float(np.percentile(luma, 75))
    lip = None
    if lm is not None and lm.shape[0] == 68:
        mask = lip_region_mask(lm, crop.shape[:2], offset)
        inner = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillPoly(inner, [np.rint(lm[60:68] - np.asarray(offset, np.float32)).astype(np.int32)], 1)
        ring = mask & ~inner.astype(bool)
        if ring.sum() >= 8:
            lip = np.median(crop[ring].astype(np.float32), axis=0)
    if lip is None:
        lip = np.median(pix, axis=0) * np.array([1.0, 0.8, 0.8], np.float32)
    teeth = np.array([222.0, 214.0, 200.0], np.float32) * float(np.clip(light / 190.0, 0.35, 1.0))
    return {
        "cavity": (lip * 0.28).tolist(),
        "tongue": (lip * 0.7).tolist(),
        "teeth": teeth.tolist(),
    }


def fill_inner_mouth(crop: np.ndarray, inner: np.ndarray, amount: float) -> np.ndarray:
    """The source's own opening (teeth, dark interior: inside the inner lip contour ``inner``, crop
    pixels) painted over from the surrounding lips, blended in by ``amount`` in [0, 1]: the new
    mouth is then drawn on closed lips, so the source's teeth never show beside or above it."""
    if amount <= 0.0:
        return crop
    h, w = crop.shape[:2]
    poly = np.zeros((h, w), np.uint8)
    cv2.fillPoly(poly, [np.rint(inner).astype(np.int32)], 255)
    mask = np.asarray(cv2.dilate(poly, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))), np.uint8)
    if not mask.any():
        return crop
    filled = cv2.inpaint(crop, mask, 3, cv2.INPAINT_TELEA)
    if amount >= 1.0:
        return filled
    sel = mask > 0
    out = crop.copy()
    mixed = crop[sel].astype(np.float32) + amount * (filled[sel].astype(np.float32) - crop[sel])
    out[sel] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out
