"""Pasting a generated face back into its frame.

Three ways, from the official one to the seamless ones:

* :func:`paste_hard` - resize the face to the box and overwrite the whole box (what official
  Wav2Lip does: ``cv2.resize(p, (x2 - x1, y2 - y1))`` written into ``f[y1:y2, x1:x2]``);
* :func:`paste_feathered` - blend with a soft rounded-rectangle alpha that is exactly 0 on the box
  border (no visible seam), optionally only over the lower part of the face (the mouth);
* :func:`paste_masked` - blend with a caller-given alpha mask in box coordinates (a model's own
  blend mask, e.g. MuseTalk's or LatentSync's).

Boxes are ``(x1, y1, x2, y2)`` in frame pixels, ``x2``/``y2`` exclusive; they may extend past the frame
edges (the part outside is dropped). Every function returns a new frame and never changes a pixel
outside the box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lipsynckit.errors import LipSyncError

BoxLike = Sequence[float] | np.ndarray


def _int_box(box: BoxLike) -> tuple[int, int, int, int]:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape[0] != 4 or not np.isfinite(b).all():
        raise LipSyncError(
            f"a paste box must be 4 finite numbers (x1, y1, x2, y2), got {box!r}",
            stage="composite",
            remedy="check the face track (boxes from the detector or --face-boxes)",
        )
    x1, y1, x2, y2 = (int(round(v)) for v in b)
    if x2 <= x1 or y2 <= y1:
        raise LipSyncError(
            f"empty paste box {(x1, y1, x2, y2)}",
            stage="composite",
            remedy="boxes need x2 > x1 and y2 > y1 (pixel coordinates of the frame)",
        )
    return x1, y1, x2, y2


def _check(frame: np.ndarray, face: np.ndarray) -> None:
    for what, a in (("frame", frame), ("face", face)):
        if not isinstance(a, np.ndarray) or a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise LipSyncError(
                f"{what} must be an RGB uint8 (H, W, 3) array, got "
                f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}",
                stage="composite",
                remedy="pass uint8 RGB images (convert float outputs with np.clip(x * 255, 0, 255).astype(np.uint8))",
            )


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _visible(frame: np.ndarray, box: tuple[int, int, int, int]) -> tuple[slice, slice, slice, slice] | None:
    """Frame slices and box-local slices of the part of ``box`` inside the frame (None if nothing)."""
    fh, fw = frame.shape[:2]
    x1, y1, x2, y2 = box
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(fw, x2), min(fh, y2)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    return (
        slice(cy1, cy2),
        slice(cx1, cx2),
        slice(cy1 - y1, cy2 - y1),
        slice(cx1 - x1, cx2 - x1),
    )


def _blend(
    frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], alpha: np.ndarray
) -> np.ndarray:
    out = frame.copy()
    vis = _visible(frame, box)
    if vis is None:
        return out
    fy, fx, by, bx = vis
    a = alpha[by, bx, None].astype(np.float32)
    src = face[by, bx].astype(np.float32)
    dst = frame[fy, fx].astype(np.float32)
    out[fy, fx] = np.clip(np.rint(a * src + (1.0 - a) * dst), 0, 255).astype(np.uint8)
    return out


def paste_hard(frame: np.ndarray, face: np.ndarray, box: BoxLike) -> np.ndarray:
    """Resize ``face`` to the box (INTER_LINEAR) and overwrite the box: official Wav2Lip compositing."""
    _check(frame, face)
    b = _int_box(box)
    x1, y1, x2, y2 = b
    resized = _resize(face, x2 - x1, y2 - y1)
    out = frame.copy()
    vis = _visible(frame, b)
    if vis is not None:
        fy, fx, by, bx = vis
        out[fy, fx] = resized[by, bx]
    return out


def _ramp(n: int, width: float) -> np.ndarray:
    """1-D weights over ``n`` pixels: 0 at both end pixels, smoothstep up to 1 within ``width`` pixels."""
    if n <= 2:
        return np.zeros(n, np.float32)
    i = np.arange(n, dtype=np.float32)
    d = np.minimum(i, n - 1 - i)
    t = np.clip(d / max(width, 1.0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def feather_mask(
    width: int, height: int, feather: float = 0.15, mask_lower: float | None = None
) -> np.ndarray:
    """Alpha (height, width) float32 in [0, 1]: a rounded rectangle exactly 0 on the border.

    ``feather`` is the ramp length as a fraction of the box side; ``mask_lower`` (e.g. 0.5) keeps only
    the lower fraction of the box (alpha 0 above ``height * (1 - mask_lower)``, ramping up below).
    """
    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5], got {feather}")
    ax = _ramp(width, feather * width)
    ay = _ramp(height, feather * height)
    if mask_lower is not None:
        if not 0.0 < mask_lower <= 1.0:
            raise ValueError(f"mask_lower must be in (0, 1], got {mask_lower}")
        top = height * (1.0 - mask_lower)
        y = np.arange(height, dtype=np.float32)
        t = np.clip((y - top) / max(feather * height, 1.0), 0.0, 1.0)
        ay = ay * (t * t * (3.0 - 2.0 * t))
    return np.outer(ay, ax).astype(np.float32)


def paste_feathered(
    frame: np.ndarray,
    face: np.ndarray,
    box: BoxLike,
    feather: float = 0.15,
    mask_lower: float | None = None,
) -> np.ndarray:
    """Blend ``face`` into the box with :func:`feather_mask` (seamless: alpha is 0 on the box border)."""
    _check(frame, face)
    b = _int_box(box)
    w, h = b[2] - b[0], b[3] - b[1]
    return _blend(frame, _resize(face, w, h), b, feather_mask(w, h, feather, mask_lower))


def paste_masked(frame: np.ndarray, face: np.ndarray, box: BoxLike, mask: np.ndarray) -> np.ndarray:
    """Blend ``face`` into the box with ``mask`` (alpha in box coordinates: float in [0, 1] or uint8 0-255).

    ``mask`` and ``face`` are resized to the box (INTER_LINEAR) when their size differs.
    """
    _check(frame, face)
    b = _int_box(box)
    w, h = b[2] - b[0], b[3] - b[1]
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise LipSyncError(
            f"blend mask must be 2-D (H, W), got shape {m.shape}",
            stage="composite",
            remedy="pass a single-channel alpha mask in box coordinates",
        )
    alpha = m.astype(np.float32) / 255.0 if m.dtype == np.uint8 else m.astype(np.float32)
    if not np.isfinite(alpha).all():
        raise LipSyncError(
            "blend mask has NaN or infinite values", stage="composite", remedy="check the model's mask"
        )
    alpha = np.clip(_resize_mask(alpha, w, h), 0.0, 1.0)
    return _blend(frame, _resize(face, w, h), b, alpha)


def _resize_mask(alpha: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if alpha.shape == (h, w):
        return alpha
    return cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
