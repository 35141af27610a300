"""Plugin discovery over entry points, loaded once and checked at discovery. Core never imports a
plugin by name.

Both groups are declared the same way: an entry point names an object that subclasses the group's
base class (``lipsynckit.models`` → :class:`~lipsynckit.model.ModelPlugin`,
``lipsynckit.face_detectors`` → :class:`~lipsynckit.faces.base.FaceDetectorPlugin`), whose ``name``
equals the entry point's name, whose ``requires`` lists the modules it needs and whose ``extra`` names
the pip extra that installs them. Discovery imports every entry point once (cached; :func:`refresh`
forgets) and keeps each as a :class:`PluginEntry`: usable, or unusable with the reason (cannot be
imported, wrong type, a name that differs from its entry point, a name two distributions claim).
"""

from __future__ import annotations

import logging
import threading
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
GROUPS = (MODEL_GROUP, DETECTOR_GROUP)
DEFAULT_MODEL = "viseme"


def _base_class(group: str) -> type:
    if group == MODEL_GROUP:
        return ModelPlugin
    from lipsynckit.faces.base import FaceDetectorPlugin

    return FaceDetectorPlugin


@dataclass(frozen=True)
class PluginEntry:
    """One entry point as discovered: ``plugin`` is None when it cannot be used (``error`` says why)."""

    name: str
    group: str
    ep: EntryPoint
    plugin: Any | None
    error: str = ""

    @property
    def distribution(self) -> str:
        return self.ep.dist.name if self.ep.dist is not None else ""

    @property
    def install_hint(self) -> str:
        """``pip install "<dist>[<extra>]"`` from the entry point's own distribution and extra."""
        extras = list(getattr(self.ep, "extras", []) or [])
        declared = getattr(self.plugin, "extra", None)
        if not extras and declared:
            extras = [declared]
        dist = self.distribution or "lipsynckit"
        return f'pip install "{dist}[{",".join(extras)}]"' if extras else f"pip install {dist}"

    @property
    def fix(self) -> str:
        """What to do about an unusable entry: install what an unimportable one lacks; a misnamed,
        mistyped or doubly registered one is not fixed by installing anything."""
        if self.error.startswith("cannot import"):
            return self.install_hint
        return f"uninstall or fix that plugin ({self.distribution or 'its distribution'})"


_cache: dict[str, dict[str, PluginEntry]] = {}
_lock = threading.Lock()


def refresh() -> None:
    """Forget what was discovered (tests, or after installing a plugin in a running process)."""
    with _lock:
        _cache.clear()


def _check(ep: EntryPoint, group: str) -> PluginEntry:
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - an unimportable plugin is listed, not fatal
        return PluginEntry(ep.name, group, ep, None, f"cannot import {ep.value}: {exc}")
    base = _base_class(group)
    if not isinstance(obj, base):
        return PluginEntry(
            ep.name,
            group,
            ep,
            None,
            f"{ep.value} is a {type(obj).__name__}, not a lipsynckit {base.__name__}",
        )
    declared = getattr(obj, "name", None)
    if declared != ep.name:
        return PluginEntry(
            ep.name,
            group,
            ep,
            None,
            f"{ep.value} declares the name {declared!r} but its entry point is {ep.name!r}",
        )
    if isinstance(obj, ModelPlugin):
        obj.install_hint = PluginEntry(ep.name, group, ep, obj).install_hint
    return PluginEntry(ep.name, group, ep, obj)


def _discover(group: str) -> dict[str, PluginEntry]:
    out: dict[str, PluginEntry] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        entry = _check(ep, group)
        first = out.get(ep.name)
        if first is None:
            out[ep.name] = entry
            continue
        error = (
            f"two distributions register {ep.name!r} in {group}: {first.distribution} ({first.ep.value}) "
            f"and {entry.distribution} ({ep.value})"
        )
        log.warning("%s; neither is used until one is uninstalled", error)
        out[ep.name] = PluginEntry(ep.name, group, first.ep, None, error)
    return out


def discover(group: str) -> dict[str, PluginEntry]:
    """Every entry point of ``group`` by name, discovered once per process (see :func:`refresh`)."""
    with _lock:
        if group not in _cache:
            _cache[group] = _discover(group)
        return _cache[group]


def model_plugins() -> dict[str, PluginEntry]:
    return discover(MODEL_GROUP)


def face_detector_plugins() -> dict[str, PluginEntry]:
    return discover(DETECTOR_GROUP)


def plugin_packages() -> list[str]:
    """Top-level packages of every registered plugin (read from the metadata; nothing is imported)."""
    names = {ep.value.split(":")[0].split(".")[0] for group in GROUPS for ep in entry_points(group=group)}
    return sorted(names)


def list_models(weights: str | Path | None = None) -> ModelList:
    """Every installed model plugin, usable or not; unusable ones carry the reason and the fix.

    A list of :class:`ModelStatus` that prints as a table (the one ``lipsynckit list-models`` shows).
    """
    rows = ModelList()
    for name, entry in model_plugins().items():
        dist = entry.distribution
        plugin = entry.plugin
        if plugin is None:
            rows.append(
                ModelStatus(
                    name=name,
                    usable=False,
                    reason=entry.error,
                    install_hint=entry.fix,
                    distribution=dist,
                )
            )
            continue
        row = {
            "name": name,
            "display_name": plugin.info.display_name,
            "non_commercial": plugin.info.non_commercial,
            "distribution": dist,
            "info": plugin.info,
        }
        missing = plugin.missing_modules()
        if missing:
            reason = f"missing Python packages: {', '.join(missing)}"
            rows.append(ModelStatus(**row, usable=False, reason=reason, install_hint=entry.install_hint))
            continue
        ok, reason = plugin.status(weights)
        hint = "" if ok else f"lipsynckit weights fetch {name}   (or pass --weights PATH)"
        found = ok or not plugin.info.needs_weights
        rows.append(ModelStatus(**row, usable=ok, reason=reason, install_hint=hint, weights_found=found))
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
    if entry.plugin is None:
        raise ModelUnavailableError(
            f"model {name!r} is installed but cannot be used: {entry.error}",
            stage="model",
            remedy=entry.fix,
        )
    plugin: ModelPlugin = entry.plugin
    return plugin


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
    return get_plugin(name).load(
        weights=weights, device=device, dtype=dtype, options=options, download=download
    )
