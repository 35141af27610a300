"""The sample photo and speech shipped inside the package (``lipsynckit/data``): the benchmarks run
from any folder with no input of the user's."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def sample_media() -> tuple[Path, Path]:
    """``(photo, speech)``: skimage's astronaut (public domain) and a LibriVox sentence (public domain)."""
    data = Path(str(files("lipsynckit") / "data"))
    return data / "astronaut.jpg", data / "speech.wav"
