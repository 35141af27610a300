"""An example lipsynckit model plugin (docs/dev/plugins.md): ``plugin`` is in ``plugin.py``."""
