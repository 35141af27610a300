"""Whether a file is a still image, from its first bytes (extensions lie), without importing the
media stack: the CLI checks its inputs before torch loads (:mod:`lipsynckit.inputs`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "is_image_file", "sniff_image"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})


def sniff_image(path: Path) -> str | None:
    """The image type from the file's first bytes (content first: extensions lie)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 14:
        return "bmp"
    return None


def is_image_file(path: str | Path) -> bool:
    """True for still images: png/jpeg/webp/bmp by content, or by extension when the content is unknown."""
    p = Path(path)
    return sniff_image(p) is not None or p.suffix.lower() in IMAGE_EXTENSIONS
