"""The runtime base classes a plugin's model subclasses (torch); :mod:`lipsynckit.model` stays light."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lipsynckit.model_info import ModelInfo
from lipsynckit.types import FaceTrack, ModelBatch, PreparedFace

__all__ = ["BaseLipSyncModel", "StagedLipSyncModel"]


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

    def rest_features(self, silent: torch.Tensor) -> torch.Tensor:
        """The features of a closed mouth at rest, from ``audio_features`` on silence (the gate's rest
        for a speaking source): silence itself for a model that closes the mouth on it (override to mark
        them when silence alone keeps the source's mouth)."""
        return silent

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
