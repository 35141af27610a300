"""insightface detector: SCRFD ``det_10g`` boxes + ``2d106det`` 106-point landmarks (buffalo_l pack).

Why: SCRFD is what LatentSync (and many MuseTalk forks) use to find and align faces; it is far more
robust than Haar cascades and gives landmarks for mouth masks and affine alignment.

The model pack is *not* inside the insightface wheel: insightface downloads ``buffalo_l.zip`` into
``<root>/models/buffalo_l`` (``root`` defaults to ``$INSIGHTFACE_HOME``, else ``~/.insightface``). We look for the files first and
only ask insightface to download when ``download=True``, so an offline machine fails at once with a
:class:`~lipsynckit.errors.FaceDetectorError` instead of hanging on a network call. The buffalo_l
models are released for non-commercial research use only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.errors import FaceDetectorError
from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.model_info import DetectorInfo
from lipsynckit.types import Face

log = logging.getLogger(__name__)

PACK = "buffalo_l"
DET_FILE = "det_10g.onnx"
LMK_FILE = "2d106det.onnx"
PACK_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo/buffalo_l.zip"
LICENCE_NOTE = "the insightface buffalo_l models are licensed for non-commercial research use only"


class InsightFaceOptions(BaseModel):
    """Options of the insightface detector; defaults follow insightface's FaceAnalysis usage."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        default_factory=lambda: os.environ.get("INSIGHTFACE_HOME", "~/.insightface"),
        description="insightface's model root (models live in <root>/models/<pack>)",
    )
    pack: str = Field(default=PACK, description="model pack name")
    det_size: int = Field(default=640, ge=32, description="SCRFD input size (LatentSync uses 512)")
    det_thresh: float = Field(default=0.5, gt=0.0, lt=1.0, description="minimum SCRFD face score")
    landmarks: bool = Field(default=True, description="run the 2d106det landmark model (needs its file)")
    download: bool = Field(default=False, description="let insightface download the pack when it is missing")
    providers: list[str] | None = Field(
        default=None, description="onnxruntime providers (default: CUDA if present, CPU)"
    )


def pack_dir(root: str | Path = "~/.insightface", pack: str = PACK) -> Path:
    """Folder insightface reads the pack from."""
    return Path(root).expanduser() / "models" / pack


def _missing_files(folder: Path, landmarks: bool) -> list[str]:
    need = [DET_FILE] + ([LMK_FILE] if landmarks else [])
    return [f for f in need if not (folder / f).is_file()]


def _remedy(folder: Path) -> str:
    return (
        f"download {PACK_URL} and unzip it so that {folder / DET_FILE} and {folder / LMK_FILE} exist "
        f"(or pass download=True when online, or use --detector opencv); note: {LICENCE_NOTE}"
    )


class InsightFaceDetector:
    """SCRFD boxes + 106 landmarks; ``Face.landmarks`` is (106, 2), the 5 SCRFD points are not kept."""

    name = "insightface"
    thread_safe = True  # onnxruntime sessions may be run from several threads

    def __init__(self, options: InsightFaceOptions | None = None, **kwargs: Any) -> None:
        self.options = o = options or InsightFaceOptions(**kwargs)
        folder = pack_dir(o.root, o.pack)
        missing = _missing_files(folder, o.landmarks)
        if missing and not o.download:
            raise FaceDetectorError(
                f"insightface model files missing: {', '.join(missing)}",
                path=folder,
                stage="faces",
                remedy=_remedy(folder),
            )
        try:
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise FaceDetectorError(
                f"insightface is not importable: {exc}",
                stage="faces",
                remedy='pip install "lipsynckit[insightface]" && pip install --no-deps insightface==2.1',
            ) from exc
        modules = ["detection"] + (["landmark_2d_106"] if o.landmarks else [])
        kw: dict[str, Any] = {"allowed_modules": modules}
        if o.providers is not None:
            kw["providers"] = o.providers
        try:
            if missing:
                log.info("insightface: downloading the %s pack into %s", o.pack, folder)
                self._app = FaceAnalysis(name=o.pack, root=o.root, **kw)
            else:  # a folder path makes insightface load it as is, never touching the network
                self._app = FaceAnalysis(name=str(folder), root=o.root, **kw)
            ctx = 0 if o.providers is None or "CUDAExecutionProvider" in o.providers else -1
            self._app.prepare(ctx_id=ctx, det_thresh=o.det_thresh, det_size=(o.det_size, o.det_size))
        except FaceDetectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, zip and onnxruntime errors all mean "cannot run"
            raise FaceDetectorError(
                f"insightface could not load or download the {o.pack} pack: {type(exc).__name__}: {exc}",
                path=folder,
                stage="faces",
                remedy=_remedy(folder),
            ) from exc
        if o.landmarks and "landmark_2d_106" not in self._app.models:
            raise FaceDetectorError(
                f"{LMK_FILE} was not recognised as a 106-point landmark model",
                path=folder,
                stage="faces",
                remedy=_remedy(folder),
            )

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 image, highest score first; landmarks (106, 2) when enabled."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        out: list[Face] = []
        for f in self._app.get(bgr):
            lmk = getattr(f, "landmark_2d_106", None)
            out.append(Face(box=np.asarray(f.bbox, np.float32), score=float(f.det_score), landmarks=lmk))
        out.sort(key=lambda f: -f.score)
        return out


class InsightFacePlugin(FaceDetectorPlugin):
    """Entry point ``insightface`` (extra ``[insightface]``)."""

    info = DetectorInfo(
        name="insightface",
        display_name="insightface SCRFD + 2d106det",
        description="insightface SCRFD det_10g + 2d106det (buffalo_l pack): boxes, scores, 106 landmarks",
        homepage="https://github.com/deepinsight/insightface",
        license="insightface code MIT; buffalo_l models non-commercial research only",
        non_commercial=True,
        landmarks=106,
        offline=False,
        requires=["insightface", "onnxruntime"],
        extra="insightface",
    )
    options_model = InsightFaceOptions

    def status(self, root: str | None = None) -> tuple[bool, str]:
        ok, reason = super().status()
        if not ok:
            return ok, reason
        o = InsightFaceOptions() if root is None else InsightFaceOptions(root=root)
        folder = pack_dir(o.root, o.pack)
        missing = _missing_files(folder, True)
        if missing:
            return False, f"model files missing in {folder}: {', '.join(missing)} ({PACK_URL})"
        return True, f"models found in {folder} ({LICENCE_NOTE})"

    def create(self, options: BaseModel) -> FaceDetector:
        assert isinstance(options, InsightFaceOptions)
        return InsightFaceDetector(options)


detector_plugin = InsightFacePlugin()
