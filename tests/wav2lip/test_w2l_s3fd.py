"""Issue: S3FD as a lipsynckit face-detector plugin, exact to Wav2Lip's detector (golden_s3fd)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lipsynckit.errors import FaceDetectorError, WeightsError
from lipsynckit.faces.base import FaceDetector
from lipsynckit.registry import face_detector_plugins
from lipsynckit_wav2lip.s3fd import S3FDDetector, S3FDNet, first_box, nms, preprocess
from lipsynckit_wav2lip.s3fd_plugin import S3FDOptions, detector_plugin

from w2l_helpers import golden, manifest, save_s3fd, save_training_checkpoint


@pytest.fixture(scope="module")
def s3fd_file(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_s3fd(tmp_path_factory.mktemp("s3fd") / "s3fd-619a316812.pth")


@pytest.fixture(scope="module")
def detector(s3fd_file: Path) -> S3FDDetector:
    det = detector_plugin.create(S3FDOptions(weights=str(s3fd_file)))
    assert isinstance(det, S3FDDetector)
    return det


@pytest.fixture(scope="module")
def g(reference_dir: Path) -> dict[str, np.ndarray]:
    return golden("golden_s3fd")


def test_registered_as_a_face_detector_plugin() -> None:
    assert detector_plugin.name == "s3fd" and not detector_plugin.info.offline
    entry = face_detector_plugins()["s3fd"]
    assert entry.plugin is detector_plugin, entry.error


def test_network_names_match_the_official_file(reference_dir: Path) -> None:
    net = S3FDNet()
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == list(manifest("s3fd").items())
    assert sum(p.numel() for p in net.parameters()) == 22_459_110


def test_rgb_input_with_the_official_mean_quirk(g: dict[str, np.ndarray]) -> None:
    rgb = g["images_bgr"][..., ::-1]  # our detectors take RGB; Wav2Lip flips its BGR frames the same way
    assert np.array_equal(preprocess(rgb).numpy(), g["net_input"])


def test_heads_and_selected_boxes_match_golden(detector: S3FDDetector, g: dict[str, np.ndarray]) -> None:
    rgb = np.ascontiguousarray(g["images_bgr"][..., ::-1])
    heads = detector.raw_outputs(rgb)
    for i, out in enumerate(heads):
        key = f"{'cls' if i % 2 == 0 else 'reg'}{i // 2 + 1}"
        assert out.shape == g[key].shape, key
        np.testing.assert_allclose(out.numpy(), g[key], atol=1e-5, rtol=0, err_msg=key)
    batch = detector.detect_batch(list(rgb))
    assert [len(f) for f in batch] == g["n_kept"].tolist()
    for i in range(2):
        single = detector.detect(rgb[i])  # one image at a time gives the same selection
        assert isinstance(detector, FaceDetector)
        assert first_box(single) == tuple(g["first_box_x1y1x2y2"][i].tolist())
        assert first_box(batch[i]) == tuple(g["first_box_x1y1x2y2"][i].tolist())
        scores = [f.score for f in single]
        assert scores == sorted(scores, reverse=True) and min(scores) > 0.5


def test_nms_uses_plus_one_areas_and_keeps_the_best() -> None:
    dets = np.array(
        [[0, 0, 9, 9, 0.9], [1, 1, 10, 10, 0.8], [20, 20, 29, 29, 0.7], [0, 0, 9, 9, 0.6]], dtype=np.float32
    )
    # box 1 overlaps box 0 by 81/119 = 0.68 > 0.3 (with +1 areas), box 3 is identical to box 0
    assert nms(dets, 0.3) == [0, 2]
    assert nms(np.zeros((0, 5), dtype=np.float32)) == []


def test_missing_weights_is_a_detector_error_with_where_to_get(tmp_path: Path) -> None:
    ok, reason = detector_plugin.status()
    assert not ok and "none of 's3fd.pth'" in reason and "found" in reason
    with pytest.raises(FaceDetectorError) as err:
        detector_plugin.create(S3FDOptions())
    text = str(err.value)
    assert "s3fd" in text and "adrianbulat.com" in text
    assert str(tmp_path / "lsk_home" / "weights" / "wav2lip" / "s3fd.pth") in text


def test_found_in_the_cache_under_either_name(tmp_path: Path, s3fd_file: Path) -> None:
    d = tmp_path / "lsk_home" / "weights" / "s3fd"
    d.mkdir(parents=True)
    (d / "s3fd-619a316812.pth").write_bytes(s3fd_file.read_bytes())
    # found, then checked against the release's recorded size (before its digest): not the real release
    with pytest.raises(FaceDetectorError, match="bytes, the release is 89843225"):
        detector_plugin.create(S3FDOptions())


def test_a_generator_file_given_as_s3fd_is_refused(tmp_path: Path) -> None:
    ckpt = save_training_checkpoint(tmp_path / "wav2lip.pth")
    with pytest.raises(WeightsError, match=r"missing \(65\): conv1_1.weight"):
        detector_plugin.create(S3FDOptions(weights=str(ckpt)))


def test_blank_image_has_no_face_and_bad_input_is_refused(detector: S3FDDetector) -> None:
    # deterministic weights do not find faces in real photos; a flat grey frame must give a list anyway
    faces = detector.detect(np.full((64, 80, 3), 128, dtype=np.uint8))
    assert isinstance(faces, list)
    with pytest.raises(FaceDetectorError):
        detector.detect(np.zeros((64, 80), dtype=np.uint8))
    with torch.no_grad():
        assert len(detector.raw_outputs(np.zeros((1, 64, 80, 3), dtype=np.uint8))) == 12


def test_built_by_name_through_the_core_factory(s3fd_file: Path, g: dict[str, np.ndarray]) -> None:
    from lipsynckit.faces import get_face_detector

    det = get_face_detector("s3fd", {"weights": str(s3fd_file)})
    assert det.name == "s3fd"
    rgb = np.ascontiguousarray(g["images_bgr"][0, ..., ::-1])
    assert first_box(det.detect(rgb)) == tuple(g["first_box_x1y1x2y2"][0].tolist())
