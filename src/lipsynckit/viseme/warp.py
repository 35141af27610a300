"""The lower-face warp: a smooth displacement field that opens the lips and drops the jaw.

Geometry lives in face coordinates ``(u, v)``: origin at the mouth centre, ``u`` along the mouth
line, ``v`` towards the chin (so a tilted head opens its mouth along its own axis). Displacement is
along ``v`` only (plus a small lip spread along ``u``), so the forward map is a monotonic 1-D function
per ``u`` column and its exact inverse (what ``cv2.remap`` needs) is a single ``np.interp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from lipsynckit.viseme.options import VisemeOptions

_TEETH_RGB = np.array([200.0, 192.0, 180.0], dtype=np.float32)  # in the mouth's shade
_CAVITY_RGB = np.array([46.0, 18.0, 18.0], dtype=np.float32)  # dark red-brown of the mouth interior
_TONGUE_RGB = np.array([128.0, 56.0, 58.0], dtype=np.float32)  # in shadow


@dataclass(frozen=True)
class MouthInCrop:
    """Mouth centre (crop pixels), half-width, roll and face height: what the warp needs."""

    cx: float
    cy: float
    half_width: float
    roll: float
    face_height: float
    upper_lip: float = 0.0  # lip line to the top of the upper lip (68-point contour); 0 = unknown


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic ease from 0 (t <= 0) to 1 (t >= 1) with zero slope at both ends."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _Field:
    """Forward vertical displacement ``d(u, v)`` for one opening (all lengths in crop pixels)."""

    def __init__(self, m: MouthInCrop, crop_hw: tuple[int, int], opening: float, opts: VisemeOptions) -> None:
        self.m, self.opts = m, opts
        self.h, self.w = crop_hw
        big_h = m.face_height
        self.drop = opening * opts.max_jaw_drop * big_h
        self.lift = opts.upper_lip_lift * self.drop
        self.a = max(m.half_width, 2.0)
        self.eps = max(1.0, 0.006 * big_h)  # source band on the lip line that stretches into the gap
        self.c, self.s = (1.0, 0.0) if abs(m.roll) < 1e-6 else (math.cos(m.roll), math.sin(m.roll))

    def lens(self, u: np.ndarray) -> np.ndarray:
        """1 at the mouth centre, 0 beyond the corners (elliptic lip opening)."""
        return np.clip(1.0 - (u / self.a) ** 2, 0.0, 1.0) ** 0.75

    def window(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Fades the warp to exactly 0 at the crop border."""
        if self.s == 0.0:  # upright face: separable, so each factor is computed on one axis only
            x, y = self.m.cx + u * self.c, self.m.cy + v * self.c
        else:
            x = self.m.cx + u * self.c - v * self.s
            y = self.m.cy + u * self.s + v * self.c
        ef = self.opts.edge_falloff
        wx = smoothstep(np.minimum(x, self.w - 1 - x) / max(ef * self.w, 1.0))
        wy = smoothstep(np.minimum(y, self.h - 1 - y) / max(ef * self.h, 1.0))
        return wx * wy

    def keep_above(self, v: np.ndarray) -> np.ndarray:
        """0 above the upper lip's outer contour (when known): the moustache and nose stay as they are."""
        top = self.m.upper_lip
        if top <= 0.0:
            return np.ones_like(v)
        return smoothstep((v + top) / (0.5 * top))

    def transition(self, u: np.ndarray) -> np.ndarray:
        """Width of the step at the lip line: sharp between the lips, a soft stretch beyond the corners."""
        return self.eps + (1.0 - self.lens(u)) * 0.12 * self.m.face_height

    def d(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        big_h = self.m.face_height
        a1, a2 = 1.1 * self.a, max(2.4 * self.a, 0.42 * big_h)
        jaw_x = 1.0 - smoothstep((np.abs(u) - a1) / (a2 - a1))
        lens = self.lens(u)
        # the lips part along an ellipse (sharp step, weight lens); the rest of the jaw, and the skin
        # beside the corners, stretches smoothly over 12% of the face height
        sharp = smoothstep(v / self.eps + 0.5)
        soft = smoothstep(v / (0.12 * big_h) + 0.5)
        step = lens * sharp + (1.0 - lens) * soft
        below_chin = 1.0 - smoothstep((v - 0.24 * big_h) / (0.26 * big_h))
        above_nose = smoothstep((v + 0.14 * big_h) / (0.14 * big_h))
        down = self.drop * jaw_x * step * below_chin
        up = self.lift * lens * (1.0 - sharp) * above_nose
        return self.window(u, v) * self.keep_above(v) * (down - up)


@lru_cache(maxsize=16)
def _crop_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs.setflags(write=False)  # shared between threads through the cache
    ys.setflags(write=False)
    return xs, ys


def render(
    crop: np.ndarray,
    m: MouthInCrop,
    opening: float,
    width: float,
    opts: VisemeOptions,
    palette: dict[str, list[float]] | None = None,
) -> np.ndarray:
    """Warp ``crop`` (RGB uint8) to an opening in [0, 1]; opening 0 returns an identical copy.

    ``palette`` (``cavity``, ``tongue``, ``teeth`` RGB, from the face's own lips and lighting:
    ``source_mouth.mouth_palette``) colours the interior; without it, fixed mid-tone colours."""
    opening = float(np.clip(opening, 0.0, 1.0))
    if opening <= 0.0:
        return crop.copy()
    h, w = crop.shape[:2]
    f = _Field(m, (h, w), opening, opts)
    axis_aligned = f.s == 0.0
    step = max(1.0, max(h, w) / float(opts.field_max_side))
    if axis_aligned and step == 1.0:
        u = np.arange(w, dtype=np.float64) - m.cx
        v = np.arange(h, dtype=np.float64) - m.cy
    else:
        cu = [(x - m.cx) * f.c + (y - m.cy) * f.s for x in (0, w - 1) for y in (0, h - 1)]
        cv = [-(x - m.cx) * f.s + (y - m.cy) * f.c for x in (0, w - 1) for y in (0, h - 1)]
        u = np.arange(min(cu) - step, max(cu) + 2 * step, step)
        v = np.arange(min(cv) - step, max(cv) + 2 * step, step)
    uu, vv = u[None, :], v[:, None]  # broadcast to (Nv, Nu): 1-D factors stay cheap
    # forward map of each column, forced monotonic, then inverted exactly by interpolation
    vo = vv + f.d(uu, vv)
    vo = np.maximum.accumulate(vo, axis=0) + np.arange(v.size)[:, None] * 1e-7
    span = (vo.max() - vo.min()) + (v[-1] - v[0]) + 10.0
    off = np.arange(u.size) * 2.0 * span
    xp = (vo + off[None, :]).T.ravel()
    xq = (v[None, :] + off[:, None]).ravel()
    vs = np.interp(xq, xp, np.tile(v, u.size)).reshape(u.size, v.size).T
    # lip spread (width > 0) or rounding (width < 0) near the mouth, and the opened lips' cavity
    window = f.window(uu, vv)
    big_h = m.face_height
    spread = (
        width
        * opts.width_gain
        * min(1.0, 3.0 * opening)
        * uu
        * np.exp(-((uu / (1.5 * f.a)) ** 2) - (vv / (0.12 * big_h)) ** 2)
    )
    us = uu - window * f.keep_above(vv) * spread
    stretch = np.gradient(vs, axis=0) / step
    lens = f.lens(uu)
    cavity = np.clip((0.55 - stretch) / 0.35, 0.0, 1.0) * smoothstep(lens / 0.15)
    # where the gap lies in each column (output coordinates): teeth hang from its top, the tongue
    # shows in its lower part
    tw = f.transition(u)
    top = -tw / 2.0 + f.d(u, -tw / 2.0)
    gap = np.maximum((tw / 2.0 + f.d(u, tw / 2.0)) - top, 1e-3)
    below_top = vv - top[None, :]  # (Nv, Nu)
    tongue = 0.55 * cavity * smoothstep((below_top / gap[None, :] - 0.55) / 0.45)
    teeth = np.zeros_like(cavity)
    if opts.teeth > 0.0:
        teeth_h = np.minimum(0.3 * gap, 0.03 * big_h)
        band = smoothstep(below_top / 1.0 + 0.5) * (
            1.0 - smoothstep((below_top - teeth_h) / np.maximum(1.0, 0.3 * teeth_h))
        )
        teeth = opts.teeth * cavity * band * smoothstep((1.0 - np.abs(uu) / (0.6 * f.a)) / 0.3)
    layers: np.ndarray = np.stack([us, vs, cavity, teeth, tongue], axis=-1).astype(np.float32)
    if not (axis_aligned and step == 1.0):
        xs, ys = _crop_grid(h, w)
        gu = ((xs - m.cx) * f.c + (ys - m.cy) * f.s - u[0]) / step
        gv = (-(xs - m.cx) * f.s + (ys - m.cy) * f.c - v[0]) / step
        layers = cv2.remap(
            layers,
            gu.astype(np.float32),
            gv.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    us_, vs_, cav, tee, ton = (layers[..., i] for i in range(5))
    map_x = (m.cx + us_ * f.c - vs_ * f.s).astype(np.float32)
    map_y = (m.cy + us_ * f.s + vs_ * f.c).astype(np.float32)
    out = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    sigma = max(0.5, 0.003 * big_h)
    cav = cv2.GaussianBlur(cav, (0, 0), sigma)
    k = (cav * (1.0 - opts.cavity_shade))[..., None]
    cavity_rgb, tongue_rgb, teeth_rgb = _CAVITY_RGB, _TONGUE_RGB, _TEETH_RGB
    if palette is not None:
        cavity_rgb, tongue_rgb, teeth_rgb = (
            np.asarray(palette[k], np.float32) for k in ("cavity", "tongue", "teeth")
        )
    interior = cavity_rgb + ton[..., None] * (tongue_rgb - cavity_rgb)
    outf = out.astype(np.float32) * (1.0 - k) + k * interior
    if opts.teeth > 0.0:
        tee = cv2.GaussianBlur(tee, (0, 0), sigma)
        outf += tee[..., None] * (teeth_rgb - outf)
    result = np.clip(np.rint(outf), 0, 255).astype(np.uint8)
    xs, ys = _crop_grid(h, w)
    still = (np.abs(map_x - xs) < 1e-3) & (np.abs(map_y - ys) < 1e-3) & (cav <= 0.0) & (tee <= 0.0)
    result[still] = crop[still]
    return result
