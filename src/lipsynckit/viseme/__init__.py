"""The built-in, weight-free ``viseme`` model: the default when no network's weights are present."""

from lipsynckit.viseme.options import VisemeOptions
from lipsynckit.viseme.plugin import INFO, VisemePlugin, plugin

__all__ = ["INFO", "VisemeOptions", "VisemePlugin", "plugin"]
