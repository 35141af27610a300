"""Embedded offline face detector: OpenCV's Haar cascades (no download, no licence strings attached).

Why this design: the cascades shipped inside ``opencv-python-headless<5`` are the only face model
that is always present, so they must be as robust as a 20-year-old detector can be made:

* small images are upscaled (``min_side``) and large ones downscaled (``max_side``) before detection,
  and the grey image is histogram-equalised;
* two frontal cascades (``default`` and ``alt2``) vote; their boxes are clustered by IoU and a face
  found by both scores higher than a face found by one;
* when the upright pass finds nothing, the image is rotated by ``±rotations`` degrees (tilted heads,
  e.g. the carphone video) and then the profile cascade (both directions) is tried;
* a box that contains a higher-scoring face is dropped (a face never contains another face).

The score is ``agreement * (1 - exp(-neighbours / 12))`` where ``agreement`` is the fraction of the
frontal cascades that found the cluster and ``neighbours`` the summed ``numDetections`` of
``detectMultiScale2`` (the number of raw windows merged into the box: OpenCV's own confidence).
Haar ``levelWeights`` (``detectMultiScale3``) were measured on insightface's ``t1.jpg`` and do not
separate faces from false positives, so they are not used. No landmarks are returned.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.model_info import DetectorInfo
from lipsynckit.types import Face

log = logging.getLogger(__name__)

_FRONTAL = {"default": "haarcascade_frontalface_default.xml", "alt2": "haarcascade_frontalface_alt2.xml"}
_PROFILE = "haarcascade_profileface.xml"


class HaarOptions(BaseModel):
    """Tuning of the Haar detector; defaults were chosen on t1.jpg, grace_hopper and carphone."""

    model_config = ConfigDict(extra="forbid")

    cascades: tuple[str, ...] = Field(default=("default", "alt2"), description="frontal cascades that vote")
    profile: bool = Field(
        default=True, description="try the profile cascade (both sides) when frontal finds nothing"
    )
    rotations: tuple[float, ...] = Field(
        default=(20.0, -20.0), description="degrees tried when upright finds nothing"
    )
    min_side: int = Field(default=360, ge=32, description="upscale images whose short side is below this")
    max_side: int = Field(default=1024, ge=64, description="downscale images whose long side is above this")
    scale_factor: float = Field(default=1.1, gt=1.0, description="step between the scanned window sizes")
    min_neighbors: int = Field(
        default=3, ge=0, description="raw windows a box must merge to be kept (OpenCV's minNeighbors)"
    )
    min_face: int = Field(
        default=24, ge=8, description="smallest face side, in pixels of the detection image"
    )
    nms_iou: float = Field(
        default=0.3,
        gt=0.0,
        lt=1.0,
        description="boxes overlapping a better one by more than this are dropped",
    )
    min_score: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="drop faces scoring below this (one cascade alone needs >= 9 neighbours)",
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _contains(outer: np.ndarray, inner: np.ndarray, frac: float = 0.8) -> bool:
    ix = max(0.0, min(outer[2], inner[2]) - max(outer[0], inner[0]))
    iy = max(0.0, min(outer[3], inner[3]) - max(outer[1], inner[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return bool(area > 0 and ix * iy >= frac * area)


class OpenCVHaarDetector:
    """Haar-cascade face detector (RGB uint8 in, :class:`Face` list sorted by score out)."""

    name = "opencv"
    thread_safe = False  # a CascadeClassifier keeps scratch buffers: one per thread

    def __init__(self, options: HaarOptions | None = None, **kwargs: Any) -> None:
        import cv2

        self.options = options or HaarOptions(**kwargs)
        if not hasattr(cv2, "CascadeClassifier"):
            raise FaceDetectorError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 dropped Haar cascades)",
                stage="faces",
                remedy='pip install "opencv-python-headless>=4.8,<5", or use --detector insightface',
            )
        root = getattr(getattr(cv2, "data", None), "haarcascades", "")
        self._frontal = [self._load(cv2, root, _FRONTAL[c]) for c in self.options.cascades]
        self._profile = self._load(cv2, root, _PROFILE) if self.options.profile else None

    @staticmethod
    def _load(cv2: Any, root: str, filename: str) -> Any:
        path = f"{root}{filename}"
        clf = cv2.CascadeClassifier(path)
        if clf.empty():
            raise FaceDetectorError(
                "OpenCV's Haar cascade is missing or unreadable",
                path=path,
                stage="faces",
                remedy='reinstall "opencv-python-headless>=4.8,<5" (its cv2/data folder holds the cascades)',
            )
        return clf

    def _run(self, clf: Any, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        boxes, neighbours = clf.detectMultiScale2(
            grey, scaleFactor=o.scale_factor, minNeighbors=o.min_neighbors, minSize=(o.min_face, o.min_face)
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        return b, np.asarray(neighbours, dtype=np.float32).reshape(-1)

    def _frontal_pass(self, grey: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Cluster the boxes of all frontal cascades; score = agreement x neighbour confidence."""
        per: list[tuple[np.ndarray, np.ndarray]] = [self._run(c, grey) for c in self._frontal]
        clusters: list[dict[str, Any]] = []
        for ci, (boxes, nbs) in enumerate(per):
            for b, n in zip(boxes, nbs, strict=True):
                best, best_iou = None, self.options.nms_iou
                for cl in clusters:
                    iou = _iou(cl["box"], b)
                    if iou > best_iou:
                        best, best_iou = cl, iou
                if best is None:
                    clusters.append({"box": b.copy(), "boxes": [b], "n": float(n), "who": {ci}})
                else:
                    best["boxes"].append(b)
                    best["n"] += float(n)
                    best["who"].add(ci)
                    best["box"] = np.mean(best["boxes"], axis=0)
        k = max(1, len(self._frontal))
        return [(cl["box"], len(cl["who"]) / k * (1.0 - math.exp(-cl["n"] / 12.0))) for cl in clusters]

    def _profile_pass(self, grey: np.ndarray) -> list[tuple[np.ndarray, float]]:
        if self._profile is None:
            return []
        out: list[tuple[np.ndarray, float]] = []
        w = grey.shape[1]
        for flip in (False, True):
            img = grey[:, ::-1].copy() if flip else grey
            boxes, nbs = self._run(self._profile, img)
            for b, n in zip(boxes, nbs, strict=True):
                if flip:
                    b = np.array([w - b[2], b[1], w - b[0], b[3]], np.float32)
                out.append((b, 0.5 * (1.0 - math.exp(-float(n) / 12.0))))
        return out

    def _rotated_pass(self, grey: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Detect on rotated copies; map each box centre back and keep its size (an upright box)."""
        import cv2

        h, w = grey.shape
        centre = (w / 2.0, h / 2.0)
        out: list[tuple[np.ndarray, float]] = []
        for angle in self.options.rotations:
            m = cv2.getRotationMatrix2D(centre, angle, 1.0)
            rot = cv2.warpAffine(grey, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            inv = cv2.invertAffineTransform(m)
            for b, s in self._frontal_pass(rot):
                cx, cy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
                ox, oy = inv @ np.array([cx, cy, 1.0])
                half = (b[2] - b[0]) / 2.0
                out.append((np.array([ox - half, oy - half, ox + half, oy + half], np.float32), 0.9 * s))
        return out

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 image, highest score first (boxes in ``image`` pixels)."""
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        o = self.options
        scale = 1.0
        if min(h, w) < o.min_side:
            scale = o.min_side / min(h, w)
        if max(h, w) * scale > o.max_side:
            scale = o.max_side / max(h, w)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            interp = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=interp)
        grey = cv2.equalizeHist(grey)

        def keep(cands: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
            return [c for c in cands if c[1] >= o.min_score]

        found = keep(self._frontal_pass(grey))
        if not found and o.rotations:
            found = keep(self._rotated_pass(grey))
        if not found:
            found = keep(self._profile_pass(grey))
        out = []
        for box, score in self._suppress(found):
            b = box / scale
            b = np.clip(b, [0, 0, 0, 0], [w, h, w, h])
            if b[2] - b[0] < 2 or b[3] - b[1] < 2:
                continue
            out.append(Face(box=b, score=float(score), landmarks=None))
        return out

    def _suppress(self, found: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
        """Greedy NMS by score, then drop boxes that contain a higher-scoring face."""
        order = sorted(found, key=lambda t: -t[1])
        keep: list[tuple[np.ndarray, float]] = []
        for box, score in order:
            if any(
                _iou(box, k) > self.options.nms_iou or _contains(box, k) or _contains(k, box) for k, _ in keep
            ):
                continue
            keep.append((box, score))
        return keep


class OpenCVHaarPlugin(FaceDetectorPlugin):
    """Entry point ``opencv``: always available with ``opencv-python-headless<5``."""

    info = DetectorInfo(
        name="opencv",
        display_name="OpenCV Haar cascades",
        description="OpenCV Haar cascades (frontal default+alt2, rotated and profile fallbacks); boxes only",
        homepage="https://github.com/opencv/opencv/tree/4.x/data/haarcascades",
        license="Intel License Agreement (BSD-like) cascades; OpenCV Apache-2.0",
        landmarks=0,
        offline=True,
        requires=["cv2"],
    )
    options_model = HaarOptions

    def status(self) -> tuple[bool, str]:
        ok, reason = super().status()
        if not ok:
            return ok, reason
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            return (
                False,
                f'OpenCV {cv2.__version__} has no Haar cascades: pip install "opencv-python-headless<5"',
            )
        return True, "built in (OpenCV Haar cascades)"

    def create(self, options: BaseModel) -> FaceDetector:
        assert isinstance(options, HaarOptions)
        return OpenCVHaarDetector(options)


detector_plugin = OpenCVHaarPlugin()
