"""Fixtures for the face tests: decoded real media, one shared Haar detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lipsynckit.faces.opencv_haar import OpenCVHaarDetector


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def haar() -> OpenCVHaarDetector:
    return OpenCVHaarDetector()


@pytest.fixture(scope="session")
def carphone_frames(carphone_mp4: Path) -> list[np.ndarray]:
    """All 120 RGB frames of the carphone clip, decoded with PyAV (small: 120 x 176 x 144 x 3)."""
    import av

    with av.open(str(carphone_mp4)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 120 and frames[0].shape == (144, 176, 3)
    return frames


@pytest.fixture(scope="session")
def group_rgb(group_photo_jpg: Path) -> np.ndarray:
    return read_rgb(group_photo_jpg)


@pytest.fixture(scope="session")
def grace_rgb(grace_hopper_jpg: Path) -> np.ndarray:
    return read_rgb(grace_hopper_jpg)


@pytest.fixture(scope="session")
def astronaut_rgb(astronaut_png: Path) -> np.ndarray:
    return read_rgb(astronaut_png)


@pytest.fixture(scope="session")
def no_face_rgb(no_face_jpg: Path) -> np.ndarray:
    return read_rgb(no_face_jpg)
