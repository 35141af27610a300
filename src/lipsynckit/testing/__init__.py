"""Tools for testing lipsynckit and its plugins, ours or a third party's.

- ``detweights`` builds deterministic checkpoints from a manifest of parameter names and shapes, so a
  plugin can prove that it loads the official container and reproduces the official numbers without
  shipping (or downloading) a real checkpoint.
- ``contract`` (:class:`ModelContract`, :class:`ContractSample`) is the model contract as a pytest mixin
  that any plugin's tests inherit (see docs/dev/contracts.md). It imports pytest, so it is loaded on
  first use rather than with this package.
- ``meta`` (:class:`PluginMetaContract`) checks what a plugin says about itself (``ModelInfo`` against
  reality, the ``quality`` scale, no torch in the entry-point module, options described with bounds),
  without loading it; :class:`DetectorMetaContract` is its twin for face detectors (``DetectorInfo``,
  no torch in the module, options described with bounds).
"""

from __future__ import annotations

from typing import Any

from lipsynckit.testing.detweights import deterministic_state_dict, deterministic_tensor, load_manifest

__all__ = [
    "ContractSample",
    "DetectorMetaContract",
    "ModelContract",
    "PluginMetaContract",
    "deterministic_state_dict",
    "deterministic_tensor",
    "load_manifest",
]


def __getattr__(name: str) -> Any:
    if name in ("ModelContract", "ContractSample"):
        from lipsynckit.testing import contract

        return getattr(contract, name)
    if name in ("PluginMetaContract", "DetectorMetaContract"):
        from lipsynckit.testing import meta

        return getattr(meta, name)
    raise AttributeError(name)
