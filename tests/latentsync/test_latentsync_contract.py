"""LatentSync (the reference folder's shrunken UNet and VAE, official checkpoints/ layout, 64 px faces,
2 DDIM steps) passes the public plugin contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from contract_samples import grace_sample

from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample, ModelContract
from lipsynckit_latentsync.plugin import plugin_15

from ls_testutil import make_small_checkpoints


class TestLatentSyncContract(ModelContract):
    plugin = plugin_15
    # bfloat16 convolutions crawl on a CPU; float64 proves the switch as well. The DDIM noise is drawn
    # in the model's dtype (as official), so another dtype is another sample: only the revert is compared
    other_dtype = torch.float64
    output_dtypes = (np.float32,)  # exact restoration: the unrounded faces go to composite
    dtype_mean_atol = None

    @pytest.fixture(scope="class")
    @classmethod
    def contract_model(
        cls, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[LipSyncModel]:
        # the official layout carrying the reference's small architectures (unet_config.yaml, config.json)
        root = make_small_checkpoints(tmp_path_factory.mktemp("ls_contract") / "checkpoints", reference_dir)
        model = plugin_15.load(weights=root, device="cpu", options={"steps": 2, "seed": 5})
        yield model

    @pytest.fixture
    def contract_sample(
        self, contract_model: LipSyncModel, grace_hopper_jpg: Path, speech_wav: Path
    ) -> ContractSample:
        return grace_sample(contract_model, grace_hopper_jpg, speech_wav, landmarks=True)
