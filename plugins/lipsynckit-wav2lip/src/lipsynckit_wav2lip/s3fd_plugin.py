"""Entry point ``s3fd`` (group ``lipsynckit.face_detectors``): Wav2Lip's official face detector.

Imports nothing heavy; the network is built in :meth:`S3FDPlugin.create`. Usable by every model.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.errors import FaceDetectorError, WeightsError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.model_info import DetectorInfo
from lipsynckit_wav2lip.plugin import S3FD_WEIGHTS

#: the name the file has at its original home; Wav2Lip renames it to ``s3fd.pth``
ORIGINAL_FILENAME = "s3fd-619a316812.pth"


#: either file name, in the wav2lip folder (where `weights fetch wav2lip` puts it) or the s3fd one
S3FD_RECORDS = [
    S3FD_WEIGHTS.model_copy(update={"any_of": "s3fd", "also_in": ["s3fd", "wav2lip_gan"]}),
    S3FD_WEIGHTS.model_copy(
        update={
            "key": "detector_original",
            "filename": ORIGINAL_FILENAME,
            "any_of": "s3fd",
            "also_in": ["s3fd", "wav2lip_gan"],
        }
    ),
]


def find_s3fd_weights(weights: str | Path | None = None, download: bool = False) -> Path:
    """Locate the S3FD file: an explicit path, else either file name in the wav2lip, s3fd or
    wav2lip_gan caches (through the core resolver)."""
    from lipsynckit.weights import resolve_files

    found = resolve_files("wav2lip", S3FD_RECORDS, weights, download, owner="face detector 's3fd'")
    return next(iter(found.values()))


class S3FDOptions(BaseModel):
    """Options of the S3FD detector (official Wav2Lip runs it on full frames, 16 at a time)."""

    model_config = ConfigDict(extra="forbid")

    weights: str | None = Field(
        default=None, description="s3fd.pth (or a folder holding it); default: the weights cache"
    )
    device: str = Field(default="cpu", description="torch device the network runs on")
    batch_size: int = Field(default=16, ge=1, description="frames per forward pass")
    download: bool = Field(default=False, description="download s3fd.pth when it is missing")


class S3FDPlugin(FaceDetectorPlugin):
    """S3FD as official Wav2Lip runs it (full-resolution frames, first box after NMS)."""

    info = DetectorInfo(
        name="s3fd",
        display_name="S3FD (face-alignment)",
        description="S3FD (face-alignment weights), the detector of official Wav2Lip inference; boxes only",
        homepage="https://github.com/1adrianb/face-alignment",
        license="BSD-3-Clause (face-alignment code and weights)",
        landmarks=0,
        offline=False,  # needs s3fd.pth
        requires=["torch", "cv2"],
        weights=S3FD_RECORDS,
    )
    options_model = S3FDOptions

    def status(self) -> tuple[bool, str]:
        ok, reason = super().status()
        if not ok:
            return ok, reason
        try:
            find_s3fd_weights()
        except WeightsError as exc:
            return False, exc.message
        return True, ""

    def create(self, options: BaseModel) -> FaceDetector:
        from lipsynckit_wav2lip.s3fd import S3FDDetector, load_s3fd

        assert isinstance(options, S3FDOptions)
        try:
            path = find_s3fd_weights(options.weights, download=options.download)
        except WeightsError as exc:
            raise FaceDetectorError(
                f"s3fd: {exc.message}",
                stage="faces",
                remedy=exc.remedy or "pass weights=PATH to s3fd.pth",
            ) from exc
        return S3FDDetector(load_s3fd(path), device=options.device, batch_size=options.batch_size)


detector_plugin = S3FDPlugin()
