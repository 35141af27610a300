"""What a model and its weight files are, as data (a leaf module: the weights code and the plugin
contract both read it; :mod:`lipsynckit.model` re-exports these names)."""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WeightSource(BaseModel):
    """One place a weight file can be fetched from."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None  # direct link (official release, Google Drive, SharePoint, ...)
    hf_repo: str | None = None  # Hugging Face hub repository id
    hf_filename: str | None = None  # path of the file inside that repository
    note: str = ""  # "official", "mirror", ...


class WeightFile(BaseModel):
    """A weight file a model needs: where it comes from, how to check it, under what licence."""

    model_config = ConfigDict(frozen=True)

    key: str  # logical name used by the model ("generator", "unet", "vae", ...)
    filename: str  # file name as released
    relpath: str | None = None  # path inside the official download folder layout, if any
    # other places the file has held in the official layout (older releases' folder or file names);
    # looked for after ``relpath``, in order
    alt_relpaths: list[str] = Field(default_factory=list)
    sha256: str | None = None  # known digest of the released file (None where unknown)
    size_bytes: int | None = None
    sources: list[WeightSource] = Field(default_factory=list)
    license: str = "unknown"
    non_commercial: bool = False
    description: str = ""
    optional: bool = False  # the model runs without it (with a documented fallback)
    # alternatives: the model needs ONE file of each any-of group (e.g. a .pth generator or its
    # TorchScript archive; a safetensors VAE or its .bin twin), found in record order; ``optional`` is
    # then ignored. A download fetches the group's first member that has a hub source.
    any_of: str | None = None
    also_in: list[str] = Field(default_factory=list)  # other models' cache folders that may hold it


#: ``ModelInfo.quality``: lip-sync and visual quality on 0..1, anchored to named models. A plugin places
#: itself among the anchors (and says why in ``quality_basis``); ``--model auto`` picks the highest usable.
QUALITY_SCALE: dict[float, str] = {
    0.0: "viseme: the weight-free fallback (mouth shapes from audio energy, no learned sync)",
    0.5: "Wav2Lip: strong sync, blurry 96 px mouth",
    0.6: "Wav2Lip + GAN: the same sync, sharper mouth",
    0.7: "MuseTalk v1.0: 256 px latent inpainting",
    0.8: "MuseTalk v1.5: sharper, better sync than v1.0",
    0.85: "LatentSync 1.5: 256 px latent diffusion",
    0.9: "LatentSync 1.6: 512 px latent diffusion",
}


class ModelInfo(BaseModel):
    """What a model is, in data (the role of torchvision's ``Weights`` meta / timm's ``PretrainedCfg``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    display_name: str
    version: str = ""
    description: str = ""
    homepage: str = ""
    face_size: int  # side of the square face crop the network sees (0: native, the region as found)
    audio_sample_rate: int = 16000
    chunk_frames: int = 1  # frames that must be generated together (LatentSync: 16)
    min_vram_gb: float = 0.0
    supports_cpu: bool = True
    license: str = "unknown"  # licence of the code the model follows
    weights_license: str = "unknown"
    non_commercial: bool = False  # True when the released weights forbid commercial use
    weights: list[WeightFile] = Field(default_factory=list)
    extra: str | None = None  # pip extra that installs its dependencies
    requires: list[str] = Field(default_factory=list)  # importable modules it needs
    default_detector: str = "auto"
    # the dtypes ``load(dtype=...)`` / ``--dtype`` it honours; any other is ignored with one line saying so
    dtypes: tuple[str, ...] = ("float32",)
    needs_weights: bool = True
    # data for `--model auto`: higher quality wins among the models the hardware can run. The scale is
    # QUALITY_SCALE below (0..1, anchored to named models); a claim above 0 says what it rests on in
    # ``quality_basis`` (lipsynckit.testing.meta checks both)
    quality: float = 0.0
    quality_basis: str = ""
    cpu_seconds_per_frame: float | None = (
        None  # measured on a 2-core CPU at default settings (None = unknown)
    )


class DetectorInfo(BaseModel):
    """What a face detector is, in data: the detectors' twin of :class:`ModelInfo` (a
    :class:`~lipsynckit.faces.base.FaceDetectorPlugin` declares one as ``info``)."""

    model_config = ConfigDict(frozen=True)

    name: str  # the entry-point name (the registry checks it)
    display_name: str
    description: str = ""
    homepage: str = ""
    license: str = "unknown"  # of the code and of the weights it runs (both, where they differ)
    non_commercial: bool = False  # True when its weights forbid commercial use (announced once per run)
    landmarks: int = 0  # points it gives per face: 0 (boxes only), 5, 68, 106, ...
    offline: bool = True  # runs without any download (weights inside a wheel, or none)
    requires: list[str] = Field(default_factory=list)  # importable modules it needs
    extra: str | None = None  # pip extra of its distribution that installs ``requires``
    weights: list[WeightFile] = Field(default_factory=list)  # files it reads, where it has any


class DeclaredPlugin:
    """What model and detector plugins share: their name, extra and required modules come from their
    :attr:`info` record (a :class:`ModelInfo` or :class:`DetectorInfo`), so the record is the one place."""

    info: Any

    @property
    def name(self) -> str:
        """The registered name (the registry checks that it equals the entry point's)."""
        return str(self.info.name)

    @property
    def extra(self) -> str | None:
        return self.info.extra  # type: ignore[no-any-return]

    @property
    def requires(self) -> list[str]:
        return list(self.info.requires)

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]
