"""MuseTalk v1.5 (small stand-in UNet/VAE from the reference folder, official models/ layout) passes the
public plugin contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from contract_samples import grace_sample

from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample, ModelContract
from lipsynckit.types import PreparedFace
from lipsynckit_musetalk.plugin import plugin

from mt_helpers import build_models_dir


class TestMuseTalkContract(ModelContract):
    plugin = plugin
    # bfloat16 convolutions crawl on a CPU (minutes for this check); float64 proves the switch as well
    other_dtype = torch.float64
    dtype_mean_atol = 1.0

    def composite_region(self, prepared: PreparedFace) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = prepared.data["blend_box"]  # the official blend widens the face box
        return int(x1), int(y1), int(x2), int(y2)

    @pytest.fixture(scope="class")
    @classmethod
    def contract_model(cls, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LipSyncModel:
        models = build_models_dir(
            tmp_path_factory.mktemp("mt_contract") / "models", reference_dir, small=True
        )
        return plugin.load(weights=models, device="cpu")

    @pytest.fixture
    def contract_sample(
        self, contract_model: LipSyncModel, grace_hopper_jpg: Path, speech_wav: Path
    ) -> ContractSample:
        return grace_sample(contract_model, grace_hopper_jpg, speech_wav)
