"""LatentSync (the reference folder's shrunken UNet and VAE, official checkpoints/ layout, 64 px faces,
2 DDIM steps) passes the public plugin contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from contract_samples import grace_sample

from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample, ModelContract
from lipsynckit_latentsync import loader
from lipsynckit_latentsync.plugin import LatentSyncPlugin, plugin_15
from lipsynckit_latentsync.unet import UNet3DConfig

from ls_testutil import (
    golden_unet_config,
    golden_unet_state,
    golden_vae,
    ref,
    save_diffusers_vae,
    save_official_unet,
    save_openai_whisper_tiny,
)


class TestLatentSyncContract(ModelContract):
    plugin = plugin_15
    # bfloat16 convolutions crawl on a CPU; float64 proves the switch as well. The DDIM noise is drawn
    # in the model's dtype (as official), so another dtype is another sample: only the revert is compared
    other_dtype = torch.float64
    dtype_mean_atol = None

    @pytest.fixture(scope="class")
    @classmethod
    def contract_model(
        cls, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[LipSyncModel]:
        root = tmp_path_factory.mktemp("ls_contract") / "checkpoints"
        save_official_unet(root / "latentsync_unet.pt", golden_unet_state(reference_dir))
        save_openai_whisper_tiny(root / "whisper" / "tiny.pt")
        save_diffusers_vae(
            root / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors", golden_vae(reference_dir)
        )
        with pytest.MonkeyPatch.context() as mp:  # the small architectures stand in for the released ones
            mp.setattr(loader, "UNET_CONFIG", UNet3DConfig.model_validate(golden_unet_config(reference_dir)))
            vae_cfg = json.loads(ref(reference_dir, "golden_pipeline_vae_config.json").read_text())
            mp.setattr(loader, "VAE_ARCH", vae_cfg)
            small = LatentSyncPlugin("latentsync_15", "1.5", 64, 0.0)
            model = small.load(weights=root, device="cpu", options={"steps": 2, "seed": 5})
        yield model

    @pytest.fixture
    def contract_sample(
        self, contract_model: LipSyncModel, grace_hopper_jpg: Path, speech_wav: Path
    ) -> ContractSample:
        return grace_sample(contract_model, grace_hopper_jpg, speech_wav, landmarks=True)
