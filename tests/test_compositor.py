"""Compositor invariants on real photos: exact official paste, no seams, nothing changed outside the box."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lipsynckit.compositor import feather_mask, paste_feathered, paste_hard, paste_masked
from lipsynckit.errors import LipSyncError


@pytest.fixture(scope="module")
def frame(astronaut_png: Path) -> np.ndarray:
    bgr = cv2.imread(str(astronaut_png))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def face(grace_hopper_jpg: Path) -> np.ndarray:
    """A 'generated' face: Grace Hopper's face crop (96x96, like Wav2Lip's output size)."""
    bgr = cv2.imread(str(grace_hopper_jpg))
    assert bgr is not None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(rgb[105:330, 155:375], (96, 96), interpolation=cv2.INTER_AREA))


def _outside_unchanged(before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int]) -> None:
    h, w = before.shape[:2]
    x1, y1, x2, y2 = box
    mask = np.ones((h, w), bool)
    mask[max(0, y1) : max(0, min(h, y2)), max(0, x1) : max(0, min(w, x2))] = False
    assert np.array_equal(before[mask], after[mask])


BOXES = [
    (178, 68, 270, 160),  # inside (the astronaut's face)
    (-30, 40, 60, 150),  # past the left edge
    (450, -20, 540, 70),  # past the top-right corner
    (200, 470, 300, 560),  # past the bottom
    (-50, -50, 600, 600),  # larger than the frame
]


@pytest.mark.parametrize("box", BOXES)
def test_paste_hard_is_official_resize_and_clips(frame: np.ndarray, face: np.ndarray, box: tuple) -> None:
    keep = frame.copy()
    out = paste_hard(frame, face, box)
    assert np.array_equal(frame, keep)  # input untouched
    assert out is not frame and out.dtype == np.uint8 and out.shape == frame.shape
    _outside_unchanged(frame, out, box)
    x1, y1, x2, y2 = box
    resized = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    h, w = frame.shape[:2]
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    assert np.array_equal(out[cy1:cy2, cx1:cx2], resized[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1])


def test_box_fully_outside_changes_nothing(frame: np.ndarray, face: np.ndarray) -> None:
    for fn in (paste_hard, paste_feathered):
        out = fn(frame, face, (600, 600, 700, 700))
        assert np.array_equal(out, frame) and out is not frame


@pytest.mark.parametrize("box", BOXES)
def test_paste_feathered_has_no_seam(frame: np.ndarray, face: np.ndarray, box: tuple) -> None:
    out = paste_feathered(frame, face, box, feather=0.15)
    _outside_unchanged(frame, out, box)
    x1, y1, x2, y2 = box
    h, w = frame.shape[:2]
    # the box border itself is untouched wherever it is visible: alpha is exactly 0 there
    checked = 0
    for row in (y1, y2 - 1):
        if 0 <= row < h:
            xs = slice(max(0, x1), min(w, x2))
            assert np.array_equal(out[row, xs], frame[row, xs])
            checked += 1
    for col in (x1, x2 - 1):
        if 0 <= col < w:
            ys = slice(max(0, y1), min(h, y2))
            assert np.array_equal(out[ys, col], frame[ys, col])
            checked += 1
    assert checked >= 1 or box == (-50, -50, 600, 600)
    # the centre is the pasted face
    cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
    if 0 <= cy < h and 0 <= cx < w:
        resized = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(out[cy, cx], resized[cy - y1, cx - x1])


def test_feather_mask_shape_and_lower_mask(frame: np.ndarray, face: np.ndarray) -> None:
    m = feather_mask(90, 100, 0.15)
    assert m.shape == (100, 90) and m.dtype == np.float32
    assert m[0].max() == 0 and m[-1].max() == 0 and m[:, 0].max() == 0 and m[:, -1].max() == 0
    assert m[50, 45] == 1.0 and np.all((m >= 0) & (m <= 1))
    box = (178, 68, 270, 160)
    out = paste_feathered(frame, face, box, mask_lower=0.5)
    top = slice(68, 68 + 46)  # the upper half of the box keeps the original face
    assert np.array_equal(out[top, 178:270], frame[top, 178:270])
    assert not np.array_equal(out[130:150, 200:250], frame[130:150, 200:250])
    with pytest.raises(ValueError):
        feather_mask(10, 10, 0.7)


def test_paste_masked(frame: np.ndarray, face: np.ndarray) -> None:
    box = (178, 68, 270, 160)
    ones = np.ones((92, 92), np.float32)
    assert np.array_equal(paste_masked(frame, face, box, ones), paste_hard(frame, face, box))
    assert np.array_equal(paste_masked(frame, face, box, np.zeros((92, 92), np.uint8)), frame)
    # a uint8 mask at the face's own size (96x96) is resized to the box, like a model's blend mask
    m8 = np.zeros((96, 96), np.uint8)
    m8[48:, :] = 255
    out = paste_masked(frame, face, box, m8)
    _outside_unchanged(frame, out, box)
    assert np.array_equal(out[68:100, 178:270], frame[68:100, 178:270])
    hard = paste_hard(frame, face, box)
    assert np.array_equal(out[120:160, 178:270], hard[120:160, 178:270])
    half = paste_masked(frame, face, (-20, -20, 72, 72), np.full((92, 92), 0.5, np.float32))
    expect = np.rint(
        0.5 * cv2.resize(face, (92, 92)).astype(np.float32)[20:, 20:]
        + 0.5 * frame[:72, :72].astype(np.float32)
    )
    assert np.abs(half[:72, :72].astype(np.float32) - expect).max() <= 1.0
    _outside_unchanged(frame, half, (-20, -20, 72, 72))


def test_float_boxes_round_and_bad_inputs_raise(frame: np.ndarray, face: np.ndarray) -> None:
    a = paste_hard(frame, face, np.array([178.4, 67.6, 269.6, 160.2], np.float32))
    assert np.array_equal(a, paste_hard(frame, face, (178, 68, 270, 160)))
    with pytest.raises(LipSyncError, match="empty paste box"):
        paste_hard(frame, face, (10, 10, 10, 40))
    with pytest.raises(LipSyncError, match="RGB uint8"):
        paste_feathered(frame, face.astype(np.float32), (10, 10, 50, 50))
    with pytest.raises(LipSyncError, match="4 finite numbers"):
        paste_hard(frame, face, (0, 0, float("nan"), 5))
    with pytest.raises(LipSyncError, match="2-D"):
        paste_masked(frame, face, (10, 10, 50, 50), np.ones((4, 4, 3)))
