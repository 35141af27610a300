"""Tools for testing lipsynckit and its plugins, ours or a third party's.

``detweights`` builds deterministic checkpoints from a manifest of parameter names and shapes, so a
plugin can prove that it loads the official container and reproduces the official numbers without
shipping (or downloading) a real checkpoint.
"""

from lipsynckit.testing.detweights import deterministic_state_dict, deterministic_tensor, load_manifest

__all__ = ["deterministic_state_dict", "deterministic_tensor", "load_manifest"]
