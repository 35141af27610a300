"""The example plugin's own tests: both of lipsynckit's public contracts, on a real photo and speech."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from lsk_mouthblur.plugin import plugin

from lipsynckit.media import load_audio
from lipsynckit.model import LipSyncModel
from lipsynckit.testing.contract import ContractSample, ModelContract
from lipsynckit.testing.meta import PluginMetaContract
from lipsynckit.types import Face

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")


class TestMouthBlurMeta(PluginMetaContract):
    """What the plugin says about itself: info, quality, a light entry-point module, described options."""

    plugin = plugin


class TestMouthBlurContract(ModelContract):
    """What the model does: frame counts, face-size outputs, batching, composite inside the face, dtype,
    a bad option in one line, missing weights saying where to get them."""

    plugin = plugin

    @pytest.fixture(scope="class")
    @classmethod
    def contract_model(cls, tmp_path_factory: pytest.TempPathFactory) -> LipSyncModel:
        from lsk_mouthblur.runtime import write_kernel

        kernel = write_kernel(tmp_path_factory.mktemp("weights") / "mouthblur_kernel.safetensors")
        return plugin.load(weights=kernel, device="cpu")

    @pytest.fixture
    def contract_sample(self) -> ContractSample:
        frame = skimage.data.astronaut()  # a real photo, RGB uint8
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        found = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(60, 60))
        x, y, w, h = max(found, key=lambda b: b[2] * b[3])
        face = Face(box=np.array([x, y, x + w, y + h], dtype=np.float32))
        return ContractSample(frame=frame, face=face, audio=load_audio(SPEECH).slice(0.0, 1.2))
