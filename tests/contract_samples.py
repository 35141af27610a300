"""The real sample every plugin's contract test runs on: Grace Hopper's photo and a LibriVox sentence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lipsynckit.media import load_audio
from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample
from lipsynckit.types import Face, FaceTrack

# the face in matplotlib's grace_hopper.jpg (512x600), as tests/musetalk/test_musetalk_step.py uses it
GRACE_FACE_BOX = (170.0, 120.0, 350.0, 330.0)


def grace_sample(
    model: LipSyncModel, photo: Path, speech: Path, seconds: float = 1.2, landmarks: bool = False
) -> ContractSample:
    """Photo, its face after the model's own box rules (``adjust_track``), and ``seconds`` of speech.

    ``landmarks``: give the face 106 points placed from the box (brows, nose: LatentSync's anchors)."""
    frame = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    x1, y1, x2, y2 = GRACE_FACE_BOX
    w, h = x2 - x1, y2 - y1
    lm = np.tile([x1 + w / 2, y1 + h / 2], (106, 1)).astype(np.float32)
    lm[[43, 48, 49, 51, 50]] = [x1 + 0.3 * w, y1 + 0.3 * h]
    lm[101:106] = [x1 + 0.7 * w, y1 + 0.3 * h]
    lm[[74, 77, 83, 86]] = [x1 + 0.5 * w, y1 + 0.6 * h]
    given = Face(box=np.array(GRACE_FACE_BOX), landmarks=lm if landmarks else None)
    face = model.adjust_track(FaceTrack([given]), frame.shape[:2])
    found = face.faces[0]
    assert found is not None
    return ContractSample(frame=frame, face=found, audio=load_audio(speech).slice(0.0, seconds))
