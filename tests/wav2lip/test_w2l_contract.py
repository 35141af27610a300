"""Wav2Lip (deterministic weights in the official training container) passes the public plugin contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_samples import grace_sample

from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample, ModelContract
from lipsynckit_wav2lip.plugin import plugin

from w2l_helpers import save_training_checkpoint


class TestWav2LipContract(ModelContract):
    plugin = plugin
    # the official rule stops where a 16-mel-step (0.2 s) window would run past the end: up to 5
    # frames at 25 fps fewer than duration * fps
    frame_count_tolerance = 5

    @pytest.fixture(scope="class")
    @classmethod
    def contract_model(cls, tmp_path_factory: pytest.TempPathFactory) -> LipSyncModel:
        ckpt = save_training_checkpoint(tmp_path_factory.mktemp("w2l_contract") / "wav2lip.pth")
        return plugin.load(weights=ckpt, device="cpu")

    @pytest.fixture
    def contract_sample(
        self, contract_model: LipSyncModel, grace_hopper_jpg: Path, speech_wav: Path
    ) -> ContractSample:
        return grace_sample(contract_model, grace_hopper_jpg, speech_wav)
