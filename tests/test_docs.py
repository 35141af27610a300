"""Docs cannot rot: the quick-start notebook runs, and the README starts with its two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_executes() -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "docs" / "quickstart.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "docs")}}
    ).execute()
    html_outputs = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]
    # the AudioClip and the SyncResult render themselves inline
    assert any("<audio" in o["data"]["text/html"] for o in html_outputs)
    assert any("<video" in o["data"]["text/html"] for o in html_outputs)


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no shell block"
    first = blocks[0]
    assert "lipsynckit sync examples/astronaut.jpg examples/speech.wav" in first
    assert "scripts/dev-install.sh" in first and "pytest" in first
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/dev-install.sh" in ci and "pytest" in ci
    for p in ("examples/astronaut.jpg", "examples/speech.wav"):
        assert (REPO / p).is_file()
