"""Fixtures of the fuzz suite; the hostile-file makers live in tests/hostile.py (imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def image_png(tmp_path: Path) -> Path:
    """A real photo (scikit-image's astronaut, the packaged sample) as a PNG the user owns."""
    import cv2

    from lipsynckit.samples import sample_media

    img = cv2.imread(str(sample_media()[0]))
    p = tmp_path / "inputs" / "face.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(p), cv2.resize(img, (256, 256)))
    return p


@pytest.fixture
def speech_copy(tmp_path: Path, speech_wav: Path) -> Path:
    p = tmp_path / "inputs" / "speech.wav"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(speech_wav.read_bytes())
    return p
