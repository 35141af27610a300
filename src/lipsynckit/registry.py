"""Plugin discovery over entry points. Core never imports a plugin by name."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

try:  # Python 3.10+ has importlib.metadata.entry_points(group=...), the backport keeps parity
    from importlib_metadata import EntryPoint, entry_points
except ImportError:  # pragma: no cover
    from importlib.metadata import EntryPoint, entry_points  # type: ignore[assignment]

from lipsynckit.errors import ModelUnavailableError, UnknownModelError
from lipsynckit.model import LipSyncModel, ModelList, ModelPlugin, ModelStatus

log = logging.getLogger(__name__)

MODEL_GROUP = "lipsynckit.models"
DETECTOR_GROUP = "lipsynckit.face_detectors"
DEFAULT_MODEL = "viseme"


def _install_hint(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "lipsynckit"
    extras = list(getattr(ep, "extras", []) or [])
    return f'pip install "{dist}[{",".join(extras)}]"' if extras else f"pip install {dist}"


@dataclass
class _Entry:
    ep: EntryPoint
    plugin: Any | None
    error: str


def _entries(group: str) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in out:
            log.warning("two plugins register %r in %s; keeping the first", ep.name, group)
            continue
        try:
            obj = ep.load()
            out[ep.name] = _Entry(ep, obj, "")
        except Exception as exc:  # noqa: BLE001 - an unimportable plugin is listed, not fatal
            out[ep.name] = _Entry(ep, None, f"cannot import {ep.value}: {exc}")
    return out


def model_plugins() -> dict[str, _Entry]:
    return _entries(MODEL_GROUP)


def list_models(weights: str | Path | None = None) -> ModelList:
    """Every installed model plugin, usable or not; unusable ones carry the reason and the fix.

    A list of :class:`ModelStatus` that prints as a table (the one ``lipsynckit list-models`` shows).
    """
    rows = ModelList()
    for name, entry in model_plugins().items():
        dist = entry.ep.dist.name if entry.ep.dist is not None else ""
        hint = _install_hint(entry.ep)
        if entry.plugin is None or not isinstance(entry.plugin, ModelPlugin):
            reason = entry.error or f"{entry.ep.value} is not a lipsynckit ModelPlugin"
            rows.append(
                ModelStatus(name=name, usable=False, reason=reason, install_hint=hint, distribution=dist)
            )
            continue
        plugin = entry.plugin
        missing = plugin.missing_modules()
        if missing:
            rows.append(
                ModelStatus(
                    name=name,
                    display_name=plugin.info.display_name,
                    usable=False,
                    reason=f"missing Python packages: {', '.join(missing)}",
                    install_hint=hint,
                    non_commercial=plugin.info.non_commercial,
                    distribution=dist,
                    info=plugin.info,
                )
            )
            continue
        ok, reason = plugin.status(weights)
        rows.append(
            ModelStatus(
                name=name,
                display_name=plugin.info.display_name,
                usable=ok,
                reason=reason,
                install_hint="" if ok else f"lipsynckit weights fetch {name}   (or pass --weights PATH)",
                weights_found=ok or not plugin.info.needs_weights,
                non_commercial=plugin.info.non_commercial,
                distribution=dist,
                info=plugin.info,
            )
        )
    return rows


def get_plugin(name: str) -> ModelPlugin:
    entries = model_plugins()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise UnknownModelError(
            f"no model plugin named {name!r} (installed: {known})",
            stage="model",
            remedy="run `lipsynckit list-models` to see installed models",
        )
    entry = entries[name]
    if entry.plugin is None or not isinstance(entry.plugin, ModelPlugin):
        raise ModelUnavailableError(
            f"model {name!r} is installed but cannot be used: {entry.error}",
            stage="model",
            remedy=_install_hint(entry.ep),
        )
    return entry.plugin


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    options: dict[str, Any] | None = None,
    download: bool = False,
) -> LipSyncModel:
    """Load a model by its registered name; ``device`` defaults to CUDA when available."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    plugin = get_plugin(name)
    missing = plugin.missing_modules()
    if missing:
        raise ModelUnavailableError(
            f"model {name!r} needs Python packages that are not installed: {', '.join(missing)}",
            stage="model",
            remedy=_install_hint(model_plugins()[name].ep),
        )
    return plugin.load(weights=weights, device=device, dtype=dtype, options=options, download=download)


def face_detector_plugins() -> dict[str, _Entry]:
    return _entries(DETECTOR_GROUP)
