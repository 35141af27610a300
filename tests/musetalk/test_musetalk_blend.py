"""Official paste-back and blending (golden_blend), BiSeNet strict loading and parsing on a real photo,
and crop-box rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lipsynckit.errors import WeightsError
from lipsynckit.types import Face
from lipsynckit_musetalk import blending as B
from lipsynckit_musetalk.bisenet import BiSeNet, FaceParser, load_bisenet
from lipsynckit_musetalk.face import crop_box, crop_box_from_68, landmark_box

from mt_helpers import write_bisenet
from refdata import load_npz


def _box(arr: np.ndarray) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(v) for v in arr)
    return x1, y1, x2, y2


@pytest.fixture(scope="module")
def g(reference_dir: Path) -> dict[str, np.ndarray]:
    return load_npz(reference_dir / "musetalk" / "golden_blend.npz")


@pytest.mark.parametrize("mode", ["jaw", "raw", "neck"])
def test_parsing_masks_exact(g: dict[str, np.ndarray], mode: str) -> None:
    np.testing.assert_array_equal(
        B.labels_to_mask(g["label_map_512"], mode, 90), g[f"v15_parsing_mask512_{mode}"]
    )


CASES = [
    # box key, parsing mode, expand, blur ratio, golden image, golden resized face
    ("bbox_v15", "jaw", 1.5, 0.05, "v15_normal_jaw", "v15_face_resized"),
    ("bbox_v15", "raw", 1.5, 0.05, "v15_normal_raw", "v15_face_resized"),
    ("bbox_v15", "jaw", 1.5, 0.1, "v15_realtime_jaw", "v15_face_resized"),
    ("bbox", "raw", 1.5, 0.05, "v10cur_normal_raw", "v10cur_face_resized"),
    ("bbox", "legacy", 1.2, 0.1, "v10legacy_normal", "v10legacy_face_resized"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[4] for c in CASES])
def test_blend_golden_exact(g: dict[str, np.ndarray], case: tuple) -> None:
    box_key, mode, expand, ratio, key, face_key = case
    labels = g["label_map_512"]
    frame = g["frame_bgr"][..., ::-1]  # core frames are RGB
    box = _box(g[box_key])
    face = B.resize_face(g["face256_bgr"][..., ::-1], box)
    np.testing.assert_array_equal(face[..., ::-1], g[face_key])
    mask, crop = B.blend_material(frame, box, lambda _img: labels, mode, expand, ratio)
    out = B.paste_with_mask(frame, face, box, mask, crop)
    np.testing.assert_array_equal(out[..., ::-1], g[key])


def test_realtime_masks_and_boxes(g: dict[str, np.ndarray]) -> None:
    labels = g["label_map_512"]
    frame = g["frame_bgr"][..., ::-1]
    mask, crop = B.blend_material(frame, _box(g["bbox_v15"]), lambda _i: labels, "jaw", 1.5, 0.1)
    np.testing.assert_array_equal(mask, g["v15_realtime_mask"])
    assert list(crop) == list(g["v15_realtime_crop_box"]) == list(g["v15_crop_box_expand1p5"])
    mask, crop = B.blend_material(frame, _box(g["bbox"]), lambda _i: labels, "legacy", 1.2, 0.1)
    np.testing.assert_array_equal(mask, g["v10legacy_realtime_mask"])
    assert list(crop) == list(g["v10legacy_crop_box_expand1p2"])


def test_bisenet_strict_load_and_parse_real_photo(tmp_path: Path, astronaut_png: Path) -> None:
    path = write_bisenet(tmp_path / "face-parse-bisent" / "79999_iter.pth")
    net = load_bisenet(path)
    assert sum(p.numel() for p in net.parameters()) == 13_300_416  # SPEC section 12
    parser = FaceParser(net)
    img = Image.open(astronaut_png).convert("RGB").crop((150, 20, 330, 200))
    labels = parser(img)
    assert labels.shape == (512, 512) and labels.min() >= 0 and labels.max() < 19
    # a wrong checkpoint is refused with a readable diff
    sd = torch.load(path, weights_only=True)
    sd["extra.weight"] = sd.pop("conv_out.conv_out.weight")
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(WeightsError, match="conv_out.conv_out.weight"):
        load_bisenet(bad)
    # DataParallel-saved files load too
    torch.save({f"module.{k}": v for k, v in BiSeNet().state_dict().items()}, tmp_path / "dp.pth")
    load_bisenet(tmp_path / "dp.pth")


def _lm68_from_box(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """A plausible 68-point layout: jaw 0..16 along the lower contour, nose 27..35, rest inside."""
    lm = np.zeros((68, 2), dtype=np.float32)
    t = np.linspace(0, np.pi, 17)
    cx, w = (x1 + x2) / 2, (x2 - x1) / 2
    lm[:17, 0] = cx - w * np.cos(t)
    lm[:17, 1] = y1 + (y2 - y1) * (0.35 + 0.65 * np.sin(t))
    lm[17:] = [cx, y1 + 0.45 * (y2 - y1)]
    lm[27:31, 1] = y1 + (y2 - y1) * np.array([0.30, 0.38, 0.46, 0.54])
    return lm


def test_crop_rules() -> None:
    lm = _lm68_from_box(100.7, 50.2, 200.9, 250.8)
    box = crop_box_from_68(lm)
    assert box is not None
    x1, y1, x2, y2 = box
    yc = int(lm[29, 1])
    assert (x1, x2, y2) == (100, 200, 250) and y1 == yc - (y2 - yc)
    face = Face(box=np.array([90, 40, 210, 260]), landmarks=lm)
    assert crop_box(face, (400, 400), "v1.5", bbox_shift=7) == (
        x1,
        y1,
        x2,
        y2 + 10,
    )  # shift ignored, margin added
    shifted = crop_box(face, (400, 400), "v1.0", bbox_shift=7)
    assert shifted[1] == yc + 7 - (y2 - yc - 7) and shifted[3] == y2
    assert crop_box(face, (255, 400), "v1.5")[3] == 255  # margin clamped to the frame
    # --face-boxes: a box without landmarks is the official crop box itself
    assert landmark_box(Face(box=np.array([12, 34, 156, 178]))) == (12, 34, 156, 178)
    # 106 / 5 point sets give a box of the same shape (nose anchor above the mouth, chin at the bottom)
    dense = Face(box=np.array([90, 40, 210, 260]), landmarks=np.concatenate([lm, lm[:38]]))
    b = landmark_box(dense)
    assert b[0] == 100 and b[2] == 200 and b[3] == 250 and 0 <= b[1] < yc
    five = np.array([[130, 120], [170, 120], [150, 160], [135, 200], [165, 200]], dtype=np.float32)
    b5 = landmark_box(Face(box=np.array([100, 50, 200, 250]), landmarks=five))
    assert b5[0] == 100 and b5[2] == 200 and b5[3] == 250 and b5[1] < 120


def test_float_blend_matches_pil_paste_within_one(g: dict[str, np.ndarray]) -> None:
    frame = np.ascontiguousarray(g["frame_bgr"][..., ::-1])
    x1, y1, x2, y2 = (int(v) for v in g["bbox"])
    box = (x1, y1, x2, y2)
    face = B.resize_face(g["face256_bgr"][..., ::-1], box)
    mask, crop = B.blend_material(frame, box, lambda _i: g["label_map_512"], "legacy", 1.2, 0.1)
    a = B.paste_with_mask(frame, face, box, mask, crop).astype(np.int16)
    b = B.blend_float(frame, face, box, mask, crop).astype(np.int16)
    assert np.abs(a - b).max() <= 1
    assert cv2.absdiff(a.astype(np.uint8), frame).max() > 0
