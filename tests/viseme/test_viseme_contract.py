"""The built-in viseme model passes the public plugin contract (lipsynckit.testing.contract)."""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_samples import grace_sample

from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample, ModelContract
from lipsynckit.viseme.plugin import plugin


class TestVisemeContract(ModelContract):
    plugin = plugin

    @pytest.fixture(scope="class")
    @classmethod
    def contract_model(cls) -> LipSyncModel:
        return plugin.load(device="cpu")

    @pytest.fixture
    def contract_sample(
        self, contract_model: LipSyncModel, grace_hopper_jpg: Path, speech_wav: Path
    ) -> ContractSample:
        return grace_sample(contract_model, grace_hopper_jpg, speech_wav)
