"""A tiny third-party model: it mirrors the lower half of the face left-right while the audio is loud.

It exists to prove that a distribution lipsynckit has never heard of plugs in through entry points. As
lipsynckit's plugin guide asks, this entry-point module imports no torch: the runtime (``runtime.py``)
is imported by ``build`` when the model is loaded, so ``lipsynckit list-models`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.model import LipSyncModel, ModelInfo, ModelPlugin


class MirrorOptions(BaseModel):
    """The mirror's one knob (a third-party option: the CLI makes a flag of it)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.01, ge=0.0, description="RMS loudness above which the lower face is mirrored")


class MirrorPlugin(ModelPlugin):
    options_model = MirrorOptions

    def __init__(self, name: str, requires: list[str], extra: str | None) -> None:
        self.info = ModelInfo(
            name=name,
            display_name=f"Mirror ({name}, test plugin)",
            description="mirrors the lower half of the face left-right while the audio is loud",
            face_size=0,
            needs_weights=False,
            license="MIT",
            weights_license="none",
            requires=requires,
            extra=extra,
        )

    def build(self, files: dict[str, Path], options: Any, device: Any, dtype: Any) -> LipSyncModel:
        from lsk_mirror_plugin.runtime import MirrorModel  # torch and numpy only when it is loaded

        return MirrorModel(self.info, options)


plugin = MirrorPlugin("mirror", [], None)
fancy_plugin = MirrorPlugin("mirror_fancy", ["lsk_nonexistent_dependency"], "fancy")
