"""The face-detector plugin contract (entry-point group ``lipsynckit.face_detectors``)."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lipsynckit.types import Face


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
