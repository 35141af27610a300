"""Issue 21: the metric's mouth openness does not depend on the drawn interior being darker than the
skin (a bright teeth bar on a dim, bearded face flipped the sync score's sign).

The openings are known (a slow syllable rhythm, set here, not measured by the metric); the frames are
``viseme``'s real warp of matplotlib's Grace Hopper photo. A second clip draws the same change
brighter instead of darker (``source + |output - source|``): the openness read back (from 32 x 32 patches of the
warped region, as the metric reads them) must follow the known openings in both.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from lipsynckit.faces import get_face_detector
from lipsynckit.metrics.weightfree import mouth_openness
from lipsynckit.types import ModelBatch, WorkItem
from lipsynckit.viseme import plugin


def test_openness_follows_the_opening_whether_the_interior_is_darker_or_brighter(
    grace_hopper_jpg: Path,
) -> None:
    bgr = cv2.resize(cv2.imread(str(grace_hopper_jpg)), (256, 300), interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    face = get_face_detector("opencv").detect(img)[0]
    model = plugin.load(options={"dense_landmarks": False})  # the same warp with or without dlib
    pf = model.prepare(img, face)
    t = np.arange(38)
    openings = np.clip(np.sin(2 * np.pi * t / 12.5), 0.0, 1.0) ** 0.8  # two syllables a second at 25 fps
    x1, y1, x2, y2 = pf.box
    dark, bright, rest = [], [], []
    for op in openings:
        gen = model.generate(ModelBatch([WorkItem(0, 0, pf, torch.tensor([op, 0.0, 1.0, 1.0]))]))[0]
        out = np.asarray(model.composite(img, pf, gen))
        src = img.astype(np.int16)
        lighter = np.clip(src + np.abs(out.astype(np.int16) - src), 0, 255).astype(np.uint8)
        for frames, f in ((dark, out), (bright, lighter), (rest, img)):
            grey = cv2.cvtColor(f[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY)
            frames.append(cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64))
    d, b, r = np.array(dark), np.array(bright), np.array(rest)
    assert np.corrcoef(mouth_openness(d, r), openings)[0, 1] > 0.8
    assert np.corrcoef(mouth_openness(b, r), openings)[0, 1] > 0.8
    # without the source as reference, "darker = open" reads the brighter drawing backwards
    assert np.corrcoef(mouth_openness(b), openings)[0, 1] < -0.5
