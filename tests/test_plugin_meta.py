"""Our plugins pass the plugin-meta contract (lipsynckit.testing.meta), as third parties' do; the
contract itself fails where it should: torch at import, an undocumented quality, an off-scale one."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import skimage.data
from pydantic import BaseModel, Field

from lipsynckit.faces.base import FaceDetector, FaceDetectorPlugin
from lipsynckit.model import QUALITY_SCALE, DetectorInfo, ModelInfo
from lipsynckit.registry import face_detector_plugins, list_models, model_plugins
from lipsynckit.testing.meta import (
    DetectorMetaContract,
    PluginMetaContract,
    check_detector_info,
    check_detector_options,
    check_imports_no_torch,
    check_quality,
)

OURS = ("viseme", "wav2lip", "wav2lip_gan", "musetalk", "musetalk_v10", "latentsync", "latentsync_15")


def test_every_model_of_ours_is_installed_with_an_info() -> None:
    assert set(OURS) <= {r.name for r in list_models() if r.info is not None}


class TestVisemeMeta(PluginMetaContract):
    plugin = model_plugins()["viseme"].plugin


class TestWav2LipMeta(PluginMetaContract):
    plugin = model_plugins()["wav2lip"].plugin


class TestWav2LipGanMeta(PluginMetaContract):
    plugin = model_plugins()["wav2lip_gan"].plugin


class TestMuseTalkMeta(PluginMetaContract):
    plugin = model_plugins()["musetalk"].plugin


class TestMuseTalkV10Meta(PluginMetaContract):
    plugin = model_plugins()["musetalk_v10"].plugin


class TestLatentSyncMeta(PluginMetaContract):
    plugin = model_plugins()["latentsync"].plugin


class TestLatentSync15Meta(PluginMetaContract):
    plugin = model_plugins()["latentsync_15"].plugin


def test_our_quality_claims_are_the_scale_anchors() -> None:
    """The scale is anchored to our models: each one's quality is an anchor, in the documented order."""
    q = {name: model_plugins()[name].plugin.info.quality for name in OURS}
    assert set(q.values()) <= set(QUALITY_SCALE)
    assert sorted(OURS, key=q.__getitem__) == [
        "viseme", "wav2lip", "wav2lip_gan", "musetalk_v10", "musetalk", "latentsync_15", "latentsync"
    ]  # fmt: skip


def test_the_contract_fails_on_torch_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin guide's old example imported torch in its entry-point module: the contract says so."""
    (tmp_path / "lskt_torchy.py").write_text(
        textwrap.dedent(
            """
            import torch  # at module level: every `lipsynckit list-models` pays for it
            from lipsynckit.model import ModelPlugin
            """
        )
    )
    (tmp_path / "lskt_light.py").write_text("from lipsynckit.model import ModelPlugin\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.getenv("PYTHONPATH")])))
    with pytest.raises(AssertionError, match=r"imports torch .* inside build\(\)"):
        check_imports_no_torch("lskt_torchy")
    check_imports_no_torch("lskt_light")


def _info(**kw: object) -> ModelInfo:
    base = {"name": "toy", "display_name": "Toy", "face_size": 0, "needs_weights": False}
    return ModelInfo.model_validate({**base, **kw})


def test_the_contract_fails_on_an_undocumented_or_off_scale_quality() -> None:
    with pytest.raises(AssertionError, match="without a quality_basis"):
        check_quality(_info(quality=0.05))  # the toy that took `auto` over from viseme, unexplained
    with pytest.raises(AssertionError, match="off the 0..1 scale"):
        check_quality(_info(quality=7.0, quality_basis="seven stars"))
    check_quality(_info(quality=0.05, quality_basis="mouth blur only: barely above viseme"))
    check_quality(_info())  # 0: the weight-free fallback's place, nothing to explain


# ---- face detectors: declared like models, checked by the same contract's twin ----

DETECTORS = ("opencv", "mtcnn", "yuface", "insightface", "s3fd")


def test_every_detector_of_ours_is_installed_with_an_info() -> None:
    entries = face_detector_plugins()
    assert set(DETECTORS) <= set(entries)
    for name in DETECTORS:
        assert isinstance(entries[name].plugin.info, DetectorInfo), entries[name].error


class TestOpenCVHaarMeta(DetectorMetaContract):
    plugin = face_detector_plugins()["opencv"].plugin


class TestMTCNNMeta(DetectorMetaContract):
    plugin = face_detector_plugins()["mtcnn"].plugin


class TestYuFaceMeta(DetectorMetaContract):
    plugin = face_detector_plugins()["yuface"].plugin


class TestInsightFaceMeta(DetectorMetaContract):
    plugin = face_detector_plugins()["insightface"].plugin


class TestS3FDMeta(DetectorMetaContract):
    plugin = face_detector_plugins()["s3fd"].plugin


def test_detector_records_say_what_users_must_know() -> None:
    """The facts the run and `lipsynckit detectors` act on: insightface's buffalo_l pack is
    non-commercial (announced once per run), the others are not; landmark counts; S3FD's weight file."""
    info = {name: face_detector_plugins()[name].plugin.info for name in DETECTORS}
    assert [n for n in DETECTORS if info[n].non_commercial] == ["insightface"]
    assert {n: info[n].landmarks for n in DETECTORS} == {
        "opencv": 0, "mtcnn": 5, "yuface": 5, "insightface": 106, "s3fd": 0
    }  # fmt: skip
    assert {wf.filename for wf in info["s3fd"].weights} == {"s3fd.pth", "s3fd-619a316812.pth"}
    assert not any(info[n].weights for n in DETECTORS if n != "s3fd")


def _toy_detector(**info: object) -> type:
    class Toy(FaceDetectorPlugin):
        options_model = _ToyOptions

        def __init__(self) -> None:
            self.info = DetectorInfo.model_validate({"name": "toy", "display_name": "Toy", **info})

        def create(self, options: BaseModel) -> FaceDetector:
            raise NotImplementedError

    return Toy


class _ToyOptions(BaseModel):
    conf: float = Field(0.5, gt=0.0, lt=1.0, description="minimum score")


def test_the_detector_contract_fails_where_it_should() -> None:
    good = _toy_detector(description="toy", license="MIT")()
    check_detector_info(good.info, "toy")
    check_detector_options(good)
    with pytest.raises(AssertionError, match="must equal the entry-point name 'other'"):
        check_detector_info(good.info, "other")
    with pytest.raises(AssertionError, match="license not stated"):
        check_detector_info(_toy_detector(description="toy")().info, "toy")

    class Undescribed(BaseModel):
        conf: float = Field(0.5, gt=0.0)

    bad = _toy_detector(description="toy", license="MIT")()
    bad.options_model = Undescribed
    with pytest.raises(AssertionError, match="option 'conf' has no description"):
        check_detector_options(bad)


def test_detector_options_reach_the_detector_one_way() -> None:
    """SyncOptions.detector_options (JSON on the command line) are parsed by the named detector's model
    before anything loads: a bad one is one line naming it; a good one changes what the detector does."""
    from lipsynckit.errors import LipSyncError
    from lipsynckit.faces import get_face_detector
    from lipsynckit.options import SyncOptions

    astronaut_rgb = skimage.data.astronaut()
    opts = SyncOptions(detector="opencv", detector_options='{"min_score": 0.4}')
    assert opts.detector_options == {"min_score": 0.4}
    with pytest.raises(
        LipSyncError, match=r"invalid face detector 'opencv' options: min_score: .*less than or equal to 1"
    ) as err:
        SyncOptions(detector="opencv", detector_options={"min_score": 7})
    assert "min_face" in err.value.remedy  # the valid names
    with pytest.raises(LipSyncError, match="invalid face detector 'mtcnn' options: conff: Extra inputs"):
        get_face_detector("mtcnn", {"conff": 0.5})
    found = get_face_detector("opencv", opts.detector_options).detect(astronaut_rgb)
    assert found and all(f.score >= 0.4 for f in found)
    # a threshold above every face's score leaves none: the option reached the detector
    best = max(f.score for f in found)
    assert best < 1.0
    assert get_face_detector("opencv", {"min_score": min(1.0, best + 1e-3)}).detect(astronaut_rgb) == []


def test_detectors_lists_licence_landmarks_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    from lipsynckit.cli import main

    assert main(["detectors"]) == 0
    out = capsys.readouterr().out
    assert "non-commercial research only  [NON-COMMERCIAL]" in out  # insightface
    assert "landmarks: 106 points" in out and "landmarks: 5 points" in out
    assert "min_score: drop faces scoring below this" in out and ">= 0.0, <= 1.0" in out
    assert "batch_size: frames per forward pass (default: 16; >= 1)" in out  # s3fd, from its plugin


def test_detector_options_on_the_command_line(
    capsys: pytest.CaptureFixture[str], astronaut_png: Path, speech_wav: Path, tmp_path: Path
) -> None:
    """`--detector-options JSON` is the flag of SyncOptions.detector_options: a misspelt option or bad JSON
    is one line before anything runs, and no output is left."""
    from lipsynckit.cli import main

    out = tmp_path / "x.mp4"
    base = ["sync", str(astronaut_png), str(speech_wav), "-o", str(out), "--model", "viseme"]
    assert main([*base, "--detector", "opencv", "--detector-options", '{"min_scor": 0.4}']) != 0
    err = capsys.readouterr().err
    assert "invalid face detector 'opencv' options: min_scor: Extra inputs are not permitted" in err
    assert "valid options: cascades, max_side, min_face" in err
    assert main([*base, "--detector-options", "{bad"]) != 0
    err = capsys.readouterr().err
    assert "detector_options (--detector-options) is not a JSON object: Expecting property name" in err
    assert "Traceback" not in err and not out.exists()
