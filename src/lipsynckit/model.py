"""The plugin contract: what a model says about itself (data) and what it does (the protocol).

A plugin package exposes a :class:`ModelPlugin` instance through the ``lipsynckit.models`` entry-point
group. The plugin object must import nothing heavy: the registry imports it to list models even when
the plugin's extra is not installed. ``ModelPlugin.load`` builds the runtime :class:`LipSyncModel`.
"""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

from lipsynckit.errors import LipSyncError
from lipsynckit.model_info import ModelInfo, WeightFile, WeightSource
from lipsynckit.types import AudioClip, Face, FaceTrack, ModelBatch, PreparedFace

log = logging.getLogger(__name__)

__all__ = [
    "BaseLipSyncModel",
    "LipSyncModel",
    "ModelInfo",
    "ModelPlugin",
    "ModelStatus",
    "StagedLipSyncModel",
    "WeightFile",
    "WeightSource",
    "parse_model_options",
]


@runtime_checkable
class LipSyncModel(Protocol):
    """The runtime model the pipeline drives.

    Frames are RGB uint8 ``(H, W, 3)``. The pipeline calls, in order:
    ``audio_features`` once per job (its length fixes the number of output frames),
    ``adjust_track`` once per source video (model box rules: pads, smoothing),
    ``prepare`` per output frame (CPU worker threads), ``generate`` on batches (the scheduler),
    ``composite`` per frame (CPU worker threads).
    """

    info: ModelInfo
    device: torch.device

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> LipSyncModel: ...

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor: ...

    def adjust_track(self, track: FaceTrack, frame_size: tuple[int, int]) -> FaceTrack: ...

    def prepare(self, frame: np.ndarray, face: Face) -> PreparedFace: ...

    def generate(self, batch: ModelBatch) -> list[np.ndarray]: ...

    def composite(self, frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray: ...


class BaseLipSyncModel:
    """Defaults for the optional parts of the protocol; plugins subclass it."""

    info: ModelInfo
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    def modules(self) -> Sequence[torch.nn.Module]:
        """The torch modules to move with :meth:`to` (override)."""
        return []

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> BaseLipSyncModel:
        self.device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype
        for m in self.modules():
            m.to(self.device)
        return self

    def adjust_track(self, track: FaceTrack, frame_size: tuple[int, int]) -> FaceTrack:
        return track

    def composite(self, frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
        from lipsynckit.compositor import paste_feathered

        return paste_feathered(frame, generated, face.box)


class StagedLipSyncModel(BaseLipSyncModel, ABC):
    """A model whose ``generate`` is three stages, so the scheduler can overlap them on CUDA streams:
    ``to_device`` (host arrays to the device, through pinned memory), ``compute`` (device only: no host
    copies, which would stall the streams), ``to_host`` (results back, through pinned memory).

    Off CUDA the scheduler calls ``generate``: the three stages in a row. Subclasses write the first two;
    ``to_host`` takes a device tensor with one result per item along its first axis.
    """

    @abstractmethod
    def to_device(self, batch: ModelBatch, stream: Any | None) -> Any: ...

    @abstractmethod
    def compute(self, handle: Any) -> torch.Tensor: ...

    def to_host(self, device_out: torch.Tensor, stream: Any | None) -> list[np.ndarray]:
        from lipsynckit.scheduler import device_to_host

        return list(device_to_host(device_out).numpy())

    def generate(self, batch: ModelBatch) -> list[np.ndarray]:
        if len(batch) == 0:
            return []
        return self.to_host(self.compute(self.to_device(batch, None)), None)


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_model_options(
    options: dict[str, Any] | BaseModel | None, cls: type[OptionsT], model: str, **defaults: Any
) -> OptionsT:
    """A plugin's options from a dict, an instance of ``cls`` or any pydantic model with its fields.

    ``defaults`` fill fields the caller left out (a plugin variant's version, say). A bad option is one
    :class:`LipSyncError` line naming it, with the valid names as the remedy.
    """
    if isinstance(options, cls) and not defaults:
        return options
    raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
    for key, value in defaults.items():
        raw.setdefault(key, value)
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise LipSyncError(
            f"invalid {model} options: {problems}",
            stage="options",
            remedy=f"valid options: {', '.join(sorted(cls.model_fields))}",
        ) from exc


class ModelStatus(BaseModel):
    """One row of ``list_models()``."""

    name: str
    display_name: str = ""
    usable: bool
    reason: str = ""
    install_hint: str = ""
    weights_found: bool = False
    non_commercial: bool = False
    distribution: str = ""
    info: ModelInfo | None = None


class ModelPlugin(ABC):
    """Base class for the object a ``lipsynckit.models`` entry point names.

    Subclasses set :attr:`info` and implement :meth:`_load`. Heavy imports belong in ``_load``.
    """

    info: ModelInfo
    #: ``pip install "<dist>[<extra>]"`` of the distribution that registered it (set by the registry)
    install_hint: str = ""
    #: the pydantic model of its options: the CLI makes its flags and ``--model-help`` page from it
    options_model: type[BaseModel] | None = None

    @property
    def name(self) -> str:
        """The registered name (the registry checks that it equals the entry point's)."""
        return self.info.name

    @property
    def extra(self) -> str | None:
        return self.info.extra

    @property
    def requires(self) -> list[str]:
        return self.info.requires

    def missing_modules(self) -> list[str]:
        return [m for m in self.info.requires if importlib.util.find_spec(m) is None]

    def find_weights(self, weights: str | Path | None = None) -> dict[str, Path]:
        """Resolve the weight files locally (no download). Missing required files raise WeightsError."""
        from lipsynckit.weights import resolve_all

        return resolve_all(self.info, weights, download=False)

    def status(self, weights: str | Path | None = None) -> tuple[bool, str]:
        missing = self.missing_modules()
        if missing:
            return False, f"missing Python packages: {', '.join(missing)}"
        if self.info.needs_weights:
            try:
                self.find_weights(weights)
            except Exception as exc:  # noqa: BLE001 - reported to the user as a reason
                return False, f"weights not found ({str(exc).splitlines()[0]})"
        return True, ""

    def load(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        options: dict[str, Any] | BaseModel | None = None,
        download: bool = False,
    ) -> LipSyncModel:
        from lipsynckit.errors import ModelUnavailableError
        from lipsynckit.weights import announce_licences

        missing = self.missing_modules()
        if missing:
            hint = self.install_hint or "pip install " + " ".join(missing)
            raise ModelUnavailableError(
                f"model {self.info.name!r} needs Python packages that are not installed: {', '.join(missing)}",
                stage="model",
                remedy=hint,
            )
        model = self._load(
            weights=weights, device=torch.device(device), dtype=dtype, options=options, download=download
        )
        announce_licences(self.info)
        return model

    @abstractmethod
    def _load(
        self,
        weights: str | Path | None,
        device: torch.device,
        dtype: torch.dtype | None,
        options: dict[str, Any] | BaseModel | None,
        download: bool,
    ) -> LipSyncModel:
        """Build the runtime model: resolve and verify weights, load them strictly, move to device."""
