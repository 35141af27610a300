"""The plugin contract: what a model says about itself (data) and what it does (the protocol).

A plugin package exposes a :class:`ModelPlugin` instance through the ``lipsynckit.models`` entry-point
group. The plugin object must import nothing heavy: the registry imports it to list models even when
the plugin's extra is not installed. ``ModelPlugin.load`` builds the runtime :class:`LipSyncModel`.
This module imports no torch (``lipsynckit list-models`` answers in a fraction of a second); the runtime
base classes live in :mod:`lipsynckit.model_base` and are importable from here too.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from lipsynckit.errors import LipSyncError
from lipsynckit.model_info import (
    QUALITY_SCALE,
    DeclaredPlugin,
    DetectorInfo,
    ModelInfo,
    WeightFile,
    WeightSource,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from lipsynckit.types import AudioClip, Face, FaceTrack, ModelBatch, PreparedFace

log = logging.getLogger(__name__)

__all__ = [
    "DetectorInfo",
    "LipSyncModel",
    "ModelInfo",
    "ModelPlugin",
    "ModelStatus",
    "QUALITY_SCALE",
    "WeightFile",
    "WeightSource",
    "dtype_name",
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


OptionsT = TypeVar("OptionsT", bound=BaseModel)
#: option names plugins once used for precision; ``dtype`` replaced them (one line says so)
RETIRED_PRECISION_OPTIONS = ("fp16", "precision")


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

    def __repr__(self) -> str:  # the full ModelInfo is in .info; at the REPL one line is enough
        why = f", reason={self.reason!r}" if self.reason else ""
        return f"ModelStatus({self.name!r}, usable={self.usable}{why})"

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """This model as rows of the ``lipsynckit list-models`` table."""
        state = "usable" if self.usable else "not usable"
        nc = "  [non-commercial weights]" if self.non_commercial else ""
        out = [f"{self.name:16s} {state:10s} {self.display_name}{nc}"]
        if not self.usable:
            out.append(f"{'':16s}   reason: {self.reason}")
            if self.install_hint:
                out.append(f"{'':16s}   fix:    {self.install_hint}")
        return out


class ModelList(list[ModelStatus]):
    """What :func:`list_models` returns: a plain list of :class:`ModelStatus` that prints as a table."""

    def __repr__(self) -> str:
        return "\n".join(line for row in self for line in row.lines()) or "(no model plugins installed)"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        import html

        def cell(text: str) -> str:
            return f"<td>{html.escape(text)}</td>"

        rows = "".join(
            "<tr>"
            + cell(r.name)
            + cell("usable" if r.usable else "not usable")
            + cell(r.display_name + (" [non-commercial weights]" if r.non_commercial else ""))
            + cell("" if r.usable else f"{r.reason} (fix: {r.install_hint})" if r.install_hint else r.reason)
            + "</tr>"
            for r in self
        )
        head = "<tr><th>model</th><th>state</th><th>name</th><th>why not / fix</th></tr>"
        return f"<table>{head}{rows}</table>"


class ModelPlugin(DeclaredPlugin, ABC):
    """Base class for the object a ``lipsynckit.models`` entry point names.

    Subclasses set :attr:`info` (and :attr:`options_model`) and implement :meth:`build`; :meth:`load` is
    the same for every plugin. Heavy imports belong in ``build``.
    """

    info: ModelInfo
    #: ``pip install "<dist>[<extra>]"`` of the distribution that registered it (set by the registry)
    install_hint: str = ""
    #: the pydantic model of its options: the CLI makes its flags and ``--model-help`` page from it
    options_model: type[BaseModel] | None = None
    #: what ``--official`` means for this model: the run's settings (SyncOptions fields: gate,
    #: length_mode, ...) and the model options (paste, ...) that reproduce its official pipeline
    official_sync: dict[str, Any] = {}
    official_options: dict[str, Any] = {}

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

    def parse_options(self, options: dict[str, Any] | BaseModel | None) -> BaseModel | None:
        """The run's options as :attr:`options_model` (one :class:`LipSyncError` line for a bad one);
        ``None`` for a plugin without options. :meth:`option_defaults` fills fields the caller left out."""
        if self.options_model is None:
            if options:
                raise LipSyncError(
                    f"model {self.info.name!r} takes no options (got {options!r})",
                    stage="options",
                    remedy="leave the model options out",
                )
            return None
        given = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
        for old in RETIRED_PRECISION_OPTIONS:
            if old in given and old not in self.options_model.model_fields:
                raise LipSyncError(
                    f"{self.info.name} option {old!r} is gone: precision is the dtype everywhere",
                    stage="options",
                    remedy="pass dtype=torch.float16 (CLI: --dtype float16); "
                    f"{self.info.name} honours {', '.join(self.info.dtypes)}",
                )
        return parse_model_options(options, self.options_model, self.info.name, **self.option_defaults())

    def option_defaults(self) -> dict[str, Any]:
        """Option values this plugin object implies (a variant's version, say); none by default."""
        return {}

    def load(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        options: dict[str, Any] | BaseModel | None = None,
        download: bool = False,
    ) -> LipSyncModel:
        """The one load path: check the modules, parse the options (a bad one fails before any file is
        read), resolve the weights through :func:`lipsynckit.weights.resolve_all`, announce their
        licence, then :meth:`build` the runtime from the resolved files. A ``dtype`` the model does not
        list in ``info.dtypes`` is dropped with one line saying so; :meth:`check_precision` may refuse
        the pair of options and dtype, before any file is read."""
        from lipsynckit.errors import ModelUnavailableError
        from lipsynckit.weights import announce_licences, resolve_all

        missing = self.missing_modules()
        if missing:
            hint = self.install_hint or "pip install " + " ".join(missing)
            raise ModelUnavailableError(
                f"model {self.info.name!r} needs Python packages that are not installed: {', '.join(missing)}",
                stage="model",
                remedy=hint,
            )
        opts = self.parse_options(options)
        asked = dtype_name(dtype)
        if asked is not None and asked not in self.info.dtypes:
            log.warning(
                "%s runs in %s only: dtype %s is ignored", self.info.name, "/".join(self.info.dtypes), asked
            )
            dtype = None
        self.check_precision(opts, dtype)  # a bad options/dtype pair fails before any file is read
        if not self.info.weights and weights is not None:
            log.info("%s needs no weights; ignoring %s", self.info.name, weights)
        files = resolve_all(self.info, weights, download=download) if self.info.weights else {}
        announce_licences(self.info)
        import torch

        return self.build(files, opts, torch.device(device), dtype)

    def check_precision(self, options: Any, dtype: torch.dtype | None) -> None:
        """Refuse, in one line, a dtype these options cannot honour (e.g. int8 on a runtime without it).
        Every listed dtype is fine by default."""
        return None

    @abstractmethod
    def build(
        self,
        files: dict[str, Path],
        options: Any,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> LipSyncModel:
        """The runtime from the resolved weight files (keyed by ``WeightFile.key``) and the parsed options
        (an instance of :attr:`options_model`, or None): load the state dicts (the plugin's remap), move
        to ``device`` and ``dtype`` (already checked against ``info.dtypes``). Heavy imports belong here."""


def dtype_name(dtype: Any) -> str | None:
    """``torch.float16`` (or ``"float16"``) → ``"float16"``: the spelling ``ModelInfo.dtypes`` uses."""
    if dtype is None:
        return None
    return str(dtype).removeprefix("torch.")


def __getattr__(name: str) -> object:  # PEP 562: the torch-based runtime bases, imported on first use
    if name in ("BaseLipSyncModel", "StagedLipSyncModel"):
        from lipsynckit import model_base

        return getattr(model_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
