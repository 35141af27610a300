"""``--face-boxes`` JSON: user-given face boxes that replace detection (Wav2Lip's ``--box``, per frame).

Accepted layout::

    {"format": "xyxy",                 # or "xywh", or "y1y2x1x2" (Wav2Lip's --box order); default xyxy
     "boxes": [[x1, y1, x2, y2], null, ...],   # one per frame (null = no face), or a single box for all
     "landmarks": [[[x, y], ...], null, ...]}  # optional, one per frame (or one for all)

A bare JSON list is read as ``{"boxes": list}``; a single box may also be given as a flat list of
four numbers. Errors name the file, the frame and what to fix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lipsynckit.errors import FaceBoxesError, InputNotFoundError
from lipsynckit.types import Face, FaceTrack

FORMATS = ("xyxy", "xywh", "y1y2x1x2")
_EXAMPLE = 'write {"format": "xyxy", "boxes": [[x1, y1, x2, y2], ...]} with one box (or null) per frame'


def _fail(path: Path, message: str, remedy: str = _EXAMPLE) -> FaceBoxesError:
    return FaceBoxesError(message, path=path, stage="faces", remedy=remedy)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _to_xyxy(raw: Any, fmt: str, path: Path, frame: int) -> np.ndarray:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4 or not all(_is_number(v) for v in raw):
        raise _fail(path, f"frame {frame}: a box must be 4 finite numbers or null, got {raw!r}")
    a, b, c, d = (float(v) for v in raw)
    if fmt == "xyxy":
        box = [a, b, c, d]
    elif fmt == "xywh":
        box = [a, b, a + c, b + d]
    else:  # y1y2x1x2
        box = [c, a, d, b]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise _fail(
            path,
            f"frame {frame}: empty box {raw!r} read as {fmt} (x2 must exceed x1 and y2 exceed y1)",
            remedy=f'check the "format" field (one of {", ".join(FORMATS)}) and the coordinate order',
        )
    return np.asarray(box, dtype=np.float32)


def _check_inside(box: np.ndarray, size: tuple[int, int], path: Path, frame: int) -> None:
    """A box may stick out of the frame a little (the compositor clips) but not mostly lie outside."""
    w, h = size
    iw = max(0.0, min(float(box[2]), w) - max(float(box[0]), 0.0))
    ih = max(0.0, min(float(box[3]), h) - max(float(box[1]), 0.0))
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    if iw * ih < 0.5 * area:
        raise _fail(
            path,
            f"frame {frame}: box {box.tolist()} lies mostly outside the {w}x{h} frame",
            remedy="give boxes in pixels of the source video (after rotation), x from 0 to width, y from 0 to height",
        )


def _per_frame(
    value: Any, num_frames: int, what: str, path: Path, single: bool, allow_more: bool = False
) -> list[Any]:
    if single:
        return [value] * num_frames
    if not isinstance(value, list):
        raise _fail(path, f'"{what}" must be a list, got {type(value).__name__}')
    if len(value) == 1:
        return value * num_frames
    if allow_more and len(value) > num_frames:
        return value[:num_frames]
    if len(value) != num_frames:
        raise _fail(
            path,
            f'"{what}" has {len(value)} entries but the video has {num_frames} frames',
            remedy=f"give one entry per frame ({num_frames}, null where there is no face) or a single one for all",
        )
    return value


def load_face_boxes(
    path: str | Path,
    num_frames: int,
    frame_size: tuple[int, int] | None = None,
    allow_more: bool = False,
) -> FaceTrack:
    """Read a ``--face-boxes`` JSON file into a :class:`FaceTrack` of ``num_frames`` frames.

    ``frame_size`` (width, height), when given, rejects boxes that lie mostly outside the frame.
    ``allow_more``: a file with more entries than ``num_frames`` (boxes for the whole video when the
    audio needs only its start) gives its first ``num_frames``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(
            "face boxes file not found", path=p, stage="faces", remedy="check the --face-boxes path"
        )
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(p, f"not valid JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"boxes": data}
    if not isinstance(data, dict) or "boxes" not in data:
        raise _fail(p, 'expected a JSON object with a "boxes" list')
    unknown = set(data) - {"format", "boxes", "landmarks"}
    if unknown:
        raise _fail(p, f"unknown keys {sorted(unknown)}", remedy='use only "format", "boxes" and "landmarks"')
    fmt = data.get("format", "xyxy")
    if fmt not in FORMATS:
        raise _fail(p, f"unknown box format {fmt!r}", remedy=f'set "format" to one of {", ".join(FORMATS)}')

    raw_boxes = data["boxes"]
    single = isinstance(raw_boxes, list) and len(raw_boxes) == 4 and all(_is_number(v) for v in raw_boxes)
    boxes = _per_frame(raw_boxes, num_frames, "boxes", p, single, allow_more)

    lmks: list[Any] = [None] * num_frames
    if data.get("landmarks") is not None:
        raw_l = data["landmarks"]
        one = (
            isinstance(raw_l, list)
            and len(raw_l) > 0
            and isinstance(raw_l[0], list)
            and len(raw_l[0]) == 2
            and all(_is_number(v) for v in raw_l[0])
        )
        lmks = _per_frame(raw_l, num_frames, "landmarks", p, one, allow_more)

    faces: list[Face | None] = []
    for i, (raw, lm) in enumerate(zip(boxes, lmks, strict=True)):
        if raw is None:
            faces.append(None)
            continue
        box = _to_xyxy(raw, fmt, p, i)
        if frame_size is not None:
            _check_inside(box, frame_size, p, i)
        elif box[2] <= 0 or box[3] <= 0:  # left of or above any frame, whatever its size
            raise _fail(
                p,
                f"frame {i}: box {box.tolist()} lies outside the frame (negative coordinates)",
                remedy="give boxes in pixels of the source video, x from 0 to width, y from 0 to height",
            )
        landmarks = None
        if lm is not None:
            try:
                landmarks = np.asarray(lm, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise _fail(p, f"frame {i}: landmarks must be a list of [x, y] pairs") from exc
            if landmarks.ndim != 2 or landmarks.shape[1] != 2 or not np.isfinite(landmarks).all():
                raise _fail(
                    p, f"frame {i}: landmarks must be a list of [x, y] pairs, got shape {landmarks.shape}"
                )
        faces.append(Face(box=box, score=1.0, landmarks=landmarks))
    return FaceTrack(faces=faces, detector="face-boxes")
