"""The face path on a real photo: alignment to the official template, the official mask, and the
restoration (inverse warp + eroded, blurred mask) leaving everything outside the face untouched."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipsynckit.errors import NoFaceError
from lipsynckit.faces.boxes_file import load_face_boxes
from lipsynckit.types import Face
from lipsynckit_latentsync.face import Aligner, anchor_points, face_anchors, load_mask, smooth_track

from ls_testutil import haar_face, landmarks_from_box


def test_mask_is_the_official_one() -> None:
    m = load_mask(256)
    assert m.shape == (256, 256, 3) and m.dtype == np.uint8
    assert (m[..., 0] == m[..., 1]).all() and (m[..., 0] == m[..., 2]).all()
    rows = np.where((m[..., 0] == 0).any(axis=1))[0]
    cols = np.where((m[..., 0] == 0).any(axis=0))[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (95, 242, 9, 247)
    assert (m[:90] == 255).all()  # eyes and above are always kept
    assert load_mask(512).shape == (512, 512, 3)


def test_align_and_restore_round_trip_on_a_photo(astronaut_png: Path) -> None:
    img = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB)
    lm = landmarks_from_box(*haar_face(img))
    al = Aligner(256)
    (face,) = smooth_track([Face(box=[0, 0, 1, 1], landmarks=lm)], al)
    affine = face.affine  # type: ignore[union-attr]
    crop = al.align(img, affine)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    # the template puts the brows at the top third and the nose in the middle of the crop
    assert 0.3 < crop.std() / img.std() < 3
    back = al.restore(img, torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1, affine)
    assert back.shape == img.shape and back.dtype == np.uint8
    x1, y1, x2, y2 = al.region(affine, img.shape[:2])
    outside = np.ones(img.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    np.testing.assert_array_equal(back[outside], img[outside])
    inside = np.abs(back[y1:y2, x1:x2].astype(int) - img[y1:y2, x1:x2].astype(int))
    assert inside.mean() < 3.0  # bilinear there and back, Lanczos, bicubic: a little blur only
    # a different face pasted in does change the face region
    grey = torch.zeros(3, 256, 256)
    changed = al.restore(img, grey, affine)
    assert np.abs(changed[y1:y2, x1:x2].astype(int) - img[y1:y2, x1:x2].astype(int)).mean() > 10


def test_smoothing_carries_from_frame_to_frame() -> None:
    al = Aligner(256)
    base = landmarks_from_box(100, 100, 200, 200)
    moved = base.copy()
    moved[[74, 77, 83, 86]] += np.array([0.0, 12.0], np.float32)  # the nose moves relative to the brows
    track = smooth_track(
        [Face(box=[0, 0, 1, 1], landmarks=base), None, Face(box=[0, 0, 1, 1], landmarks=moved)], al
    )
    assert track[1] is None
    alone, _ = al.transform(anchor_points(moved), None)
    carried = track[2].affine  # type: ignore[union-attr]
    assert not np.allclose(alone, carried)  # 0.2 of the previous bias is carried over
    np.testing.assert_allclose(alone[:, :2], carried[:, :2])  # only the translation is smoothed


def test_landmarks_via_face_boxes_json(tmp_path: Path) -> None:
    lm = landmarks_from_box(50, 40, 120, 150)
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps({"boxes": [[50, 40, 170, 190]], "landmarks": [lm.tolist()]}))
    track = load_face_boxes(p, 3)
    assert all(
        f is not None and f.landmarks is not None and f.landmarks.shape == (106, 2) for f in track.faces
    )
    faces = smooth_track(track.faces, Aligner(256))
    assert all(getattr(f, "affine", None) is not None for f in faces)


def test_wrong_landmarks_are_a_clear_error() -> None:
    with pytest.raises(NoFaceError, match="106"):
        anchor_points(np.zeros((68, 2)))


def test_without_106_landmarks_the_anchors_are_estimated_loudly(caplog: pytest.LogCaptureFixture) -> None:
    import lipsynckit_latentsync.face as face_mod

    face_mod._warned_approx = False
    box_only = Face(box=[100, 100, 300, 300])
    with caplog.at_level("WARNING"):
        (f,) = smooth_track([box_only], Aligner(256))
    assert f is not None and getattr(f, "affine", None) is not None
    assert "NOT the official alignment" in caplog.text
    np.testing.assert_array_equal(face_anchors(box_only), [[160, 160], [240, 160], [200, 220]])
    pts68 = np.zeros((68, 2), np.float32)
    pts68[17:22], pts68[22:27], pts68[31:36] = (150, 170), (250, 170), (200, 230)
    np.testing.assert_array_equal(
        face_anchors(Face(box=[0, 0, 1, 1], landmarks=pts68)), [[150, 170], [250, 170], [200, 230]]
    )
    with pytest.raises(NoFaceError, match="106"):
        face_anchors(box_only, approximate=False)
    # 106 points always follow the official rule
    lm = landmarks_from_box(100, 100, 200, 200)
    np.testing.assert_array_equal(face_anchors(Face(box=[0, 0, 1, 1], landmarks=lm)), anchor_points(lm))
