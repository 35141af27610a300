"""The face-detector plugin contract (entry-point group ``lipsynckit.face_detectors``)."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lipsynckit.types import Face


def face_from_xywh(
    xywh: Any, score: float, landmarks: np.ndarray, scale: float, size: tuple[int, int]
) -> Face | None:
    """A detector's ``(x, y, w, h)`` box on a frame resized by ``scale``, back on the ``size = (w, h)``
    frame and clipped to it, with its landmarks; ``None`` for a box under 2 px after clipping."""
    w, h = size
    x, y, bw, bh = (float(v) / scale for v in xywh)
    box = np.clip(np.array([x, y, x + bw, y + bh], np.float32), [0, 0, 0, 0], [w, h, w, h])
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    return Face(box=box, score=min(1.0, float(score)), landmarks=np.asarray(landmarks, np.float32) / scale)


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in one RGB uint8 image; returns them sorted by score, highest first."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


class FaceDetectorPlugin(ABC):
    """What a ``lipsynckit.face_detectors`` entry point names. Must import nothing heavy."""

    name: str
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None  # pip extra of its distribution that installs ``requires``
    landmarks: int = 0  # number of landmark points it returns (0 = boxes only)
    offline: bool = True  # works without any download
    license: str = "unknown"
    non_commercial: bool = False

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def status(self) -> tuple[bool, str]:
        """(usable, reason); override to check model files."""
        missing = self.missing_modules()
        if missing:
            return False, f"missing Python packages: {', '.join(missing)}"
        return True, ""

    @abstractmethod
    def create(self, **kwargs: Any) -> FaceDetector:
        """Build the detector (may raise FaceDetectorError with a remedy)."""
