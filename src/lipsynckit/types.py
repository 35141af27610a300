"""Core data types shared by the pipeline and every model plugin (no plugin imports here).

torch is imported where a tensor is made, not at module level: face detectors' entry-point modules
use :class:`Face` and must import no torch (``lipsynckit detectors`` imports every one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lipsynckit.errors import AudioError

if TYPE_CHECKING:
    import torch


@dataclass
class AudioClip:
    """A float32 waveform ``(channels, samples)`` in [-1, 1] and its sample rate."""

    samples: torch.Tensor
    sample_rate: int
    source: str | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim == 1:
            self.samples = self.samples[None]
        if self.samples.ndim != 2:
            raise AudioError(
                f"AudioClip samples must be (channels, samples), got {tuple(self.samples.shape)}",
                path=self.source,
                stage="audio",
                remedy="pass a 1-D (samples) or 2-D (channels, samples) array.",
            )
        import torch

        self.samples = self.samples.to(torch.float32)

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.num_samples / float(self.sample_rate)

    def mono(self) -> AudioClip:
        """Average the channels (what every model here expects)."""
        if self.channels == 1:
            return self
        return AudioClip(self.samples.mean(dim=0, keepdim=True), self.sample_rate, self.source)

    def resample(self, sample_rate: int, exact: bool = True) -> AudioClip:
        """Band-limited resampling in bounded memory (see :mod:`lipsynckit.media.resample`).

        ``exact``: torchaudio's filter, which the models' front ends were trained on; ``False``: libsoxr,
        for audio no model hears (an output's sound track).
        """
        if sample_rate == self.sample_rate:
            return self
        from lipsynckit.media.resample import resample, resample_soxr

        fn = resample if exact else resample_soxr
        return AudioClip(fn(self.samples, self.sample_rate, sample_rate), sample_rate, self.source)

    def slice(self, start_s: float, end_s: float | None = None) -> AudioClip:
        a = max(0, int(round(start_s * self.sample_rate)))
        b = self.num_samples if end_s is None else min(self.num_samples, int(round(end_s * self.sample_rate)))
        return AudioClip(self.samples[:, a:b], self.sample_rate, self.source)

    def numpy(self) -> np.ndarray:
        """Mono float32 numpy array (averaging channels)."""
        return self.mono().samples[0].numpy()

    def _repr_html_(self) -> str:  # notebooks: an inline audio player
        from lipsynckit.display import audio_html

        return audio_html(self.numpy(), self.sample_rate, self.channels)


@dataclass
class Face:
    """One detected face in one frame (pixel coordinates of that frame)."""

    box: np.ndarray  # (4,) float32: x1, y1, x2, y2
    score: float = 1.0
    landmarks: np.ndarray | None = None  # (K, 2) float32, K = 5, 68, 106, ... (detector-specific)

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 2)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


@dataclass
class FaceTrack:
    """The chosen face per source frame; ``None`` where no face was found."""

    faces: list[Face | None]
    detector: str = ""

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def found(self) -> np.ndarray:
        return np.array([f is not None for f in self.faces], dtype=bool)

    @property
    def num_found(self) -> int:
        return int(self.found.sum())

    def boxes(self) -> np.ndarray:
        """(N, 4) float32 boxes, NaN where no face."""
        out = np.full((len(self.faces), 4), np.nan, dtype=np.float32)
        for i, f in enumerate(self.faces):
            if f is not None:
                out[i] = f.box
        return out


@dataclass
class VideoInfo:
    """What we know about a source before decoding it all."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int
    rotation: int = 0
    is_image: bool = False
    has_audio: bool = False
    duration: float = 0.0


@dataclass
class PreparedFace:
    """A model's input for one frame, made by ``model.prepare`` and consumed by ``generate``/``composite``.

    ``box`` is the region (x1, y1, x2, y2, ints, frame coordinates) the generated face goes back into;
    ``crop`` the model-size input crop (uint8 RGB); ``data`` anything else the model needs (masks,
    affine matrices, cached latents).
    """

    box: tuple[int, int, int, int]
    crop: np.ndarray
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkItem:
    """One output frame of one job, queued for the model."""

    job_id: int
    index: int
    face: PreparedFace
    audio: torch.Tensor


@dataclass
class ModelBatch:
    """A batch handed to ``model.generate``; items may come from several jobs."""

    items: list[WorkItem]

    def __len__(self) -> int:
        return len(self.items)

    def audio(self) -> torch.Tensor:
        import torch

        return torch.stack([it.audio for it in self.items])

    def faces(self) -> list[PreparedFace]:
        return [it.face for it in self.items]
