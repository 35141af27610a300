"""The face-detector plugin contract (entry-point group ``lipsynckit.face_detectors``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel

from lipsynckit.model_info import DeclaredPlugin, DetectorInfo
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


class FaceDetectorPlugin(DeclaredPlugin, ABC):
    """What a ``lipsynckit.face_detectors`` entry point names, declared as a model plugin is: an
    :attr:`info` record (:class:`~lipsynckit.model_info.DetectorInfo`) and an :attr:`options_model`
    (pydantic; an empty model where the detector takes none). Its module must import nothing heavy
    (``lipsynckit detectors`` imports every one); the detector itself is built in :meth:`create`."""

    info: DetectorInfo
    options_model: type[BaseModel]

    def status(self) -> tuple[bool, str]:
        """(usable, reason); override to check model files."""
        missing = self.missing_modules()
        if missing:
            return False, f"missing Python packages: {', '.join(missing)}"
        return True, ""

    def parse_options(self, options: dict[str, Any] | BaseModel | None) -> BaseModel:
        """The detector's options as :attr:`options_model`; a bad one is one :class:`LipSyncError` line
        naming it, raised before anything loads."""
        from lipsynckit.model import parse_model_options

        return parse_model_options(options, self.options_model, f"face detector {self.info.name!r}")

    @abstractmethod
    def create(self, options: BaseModel) -> FaceDetector:
        """Build the detector from parsed options (may raise FaceDetectorError with a remedy)."""
