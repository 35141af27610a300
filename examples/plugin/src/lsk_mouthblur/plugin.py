"""The entry-point module: the plugin object and its data. It imports no torch (``lipsynckit
list-models`` imports every plugin's entry-point module); ``build`` imports the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.model import LipSyncModel, ModelInfo, ModelPlugin, WeightFile, WeightSource


class MouthBlurOptions(BaseModel):
    """Each field becomes a CLI flag (``--strength``); its description is the help, its bounds shown."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    strength: float = Field(0.6, ge=0.0, le=1.0, description="how much of the blur loud speech gets")


INFO = ModelInfo(
    name="mouthblur",  # equals the entry point's name
    display_name="Mouth blur (example plugin)",
    description="blurs the lower face in proportion to the speech's loudness",
    face_size=0,  # works on the face as found
    audio_sample_rate=16000,
    license="Apache-2.0",
    weights_license="CC0-1.0",
    weights=[
        WeightFile(
            key="kernel",  # build() finds the file under this key
            filename="mouthblur_kernel.safetensors",
            sources=[WeightSource(url="https://example.org/lsk-mouthblur/mouthblur_kernel.safetensors")],
            license="CC0-1.0",
            description="a 9x9 Gaussian blur kernel",
        )
    ],
    dtypes=("float32",),  # --dtype float16 is ignored, with one line saying so
    quality=0.0,  # an effect, not lip-sync: the weight-free fallback's place on lipsynckit's scale
    cpu_seconds_per_frame=0.002,
)


class MouthBlurPlugin(ModelPlugin):
    info = INFO
    options_model = MouthBlurOptions

    def build(self, files: dict[str, Path], options: Any, device: Any, dtype: Any) -> LipSyncModel:
        """lipsynckit has parsed the options and found the files; load them and return the runtime."""
        from lsk_mouthblur.runtime import MouthBlurModel, read_kernel  # torch: only when loading

        return MouthBlurModel(self.info, read_kernel(files["kernel"]), options).to(device, dtype)


plugin = MouthBlurPlugin()
