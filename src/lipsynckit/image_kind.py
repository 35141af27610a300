"""Whether a file is a still image, from its first bytes (extensions lie), without importing the
media stack: the CLI checks its inputs before torch loads (:mod:`lipsynckit.inputs`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "is_image_file", "sniff_image", "stated_size"]

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


def stated_size(path: str | Path) -> tuple[int, int] | None:
    """The size a PNG's IHDR or a JPEG's SOF marker states, read here because FFmpeg will not size a
    picture beyond its own limits (a 100000x100000 header): ``None`` for other kinds or broken headers."""
    p = Path(path)
    kind = sniff_image(p)
    try:
        with p.open("rb") as fh:
            if kind == "png":
                head = fh.read(24)
                return (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
            if kind != "jpeg":
                return None
            fh.read(2)
            for _ in range(1000):  # markers before the frame header: APPn, DQT, DHT, ...
                marker = fh.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    return None
                length = int.from_bytes(fh.read(2), "big")
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):  # SOFn
                    sof = fh.read(5)
                    return (int.from_bytes(sof[3:5], "big"), int.from_bytes(sof[1:3], "big"))
                fh.seek(length - 2, 1)
    except OSError:
        return None
    return None
