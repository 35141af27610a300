"""Our plugins pass the plugin-meta contract (lipsynckit.testing.meta), as third parties' do; the
contract itself fails where it should: torch at import, an undocumented quality, an off-scale one."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from lipsynckit.model import QUALITY_SCALE, ModelInfo
from lipsynckit.registry import list_models, model_plugins
from lipsynckit.testing.meta import PluginMetaContract, check_imports_no_torch, check_quality

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
