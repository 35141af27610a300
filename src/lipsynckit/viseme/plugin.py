"""The ``viseme`` plugin object (light: the runtime is imported only when the model is loaded)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from lipsynckit.model import LipSyncModel, ModelInfo, ModelPlugin
from lipsynckit.viseme.options import VisemeOptions

log = logging.getLogger(__name__)

INFO = ModelInfo(
    name="viseme",
    display_name="Viseme (built-in, weight-free)",
    version="1",
    description=(
        "Weight-free default: audio energy, voice activity and spectral shape give a mouth opening per "
        "frame, which drives a smooth warp of the jaw and lips. Always available, CPU, faster than real time."
    ),
    face_size=0,  # native resolution: the warp works on the face region as found, never resized
    audio_sample_rate=16000,
    chunk_frames=1,
    supports_cpu=True,
    license="Apache-2.0",
    weights_license="none (no weights)",
    non_commercial=False,
    weights=[],
    requires=["cv2", "scipy"],
    default_detector="auto",
    needs_weights=False,
    quality=0.0,
    # measured: 720p frame, 250 px face, prepare+generate+composite on one thread (~94 frames/s)
    cpu_seconds_per_frame=0.011,
)


class VisemePlugin(ModelPlugin):
    """The built-in model: needs no weights, so it is always usable."""

    info = INFO
    options_model = VisemeOptions

    def build(
        self,
        files: dict[str, Path],
        options: VisemeOptions,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> LipSyncModel:
        from lipsynckit.viseme.runtime import VisemeModel

        if device.type != "cpu":
            log.info("viseme runs on the CPU (image warps); ignoring device %s", device)
        return VisemeModel(self.info, options)


plugin = VisemePlugin()
