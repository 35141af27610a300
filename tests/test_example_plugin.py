"""examples/plugin (the plugin template docs/dev/plugins.md walks through) builds as a distribution,
installs, is listed, and passes lipsynckit's two public contracts from its own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built and installed (not editable) into its own folder; the venv is left untouched."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    return target


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.getenv("PYTHONPATH")]))}


def test_the_example_is_listed_with_where_to_get_its_weights(site: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "lipsynckit.cli", "list-models", "--json"]
    proc = subprocess.run(cmd, env=_env(site), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    row = {r["name"]: r for r in json.loads(proc.stdout)}["mouthblur"]
    assert row["distribution"] == "lsk-mouthblur" and not row["usable"]
    assert "mouthblur_kernel.safetensors" in row["reason"]
    assert row["install_hint"] == "lipsynckit weights fetch mouthblur   (or pass --weights PATH)"


def test_the_example_passes_both_contracts(site: Path, tmp_path: Path) -> None:
    tests = EXAMPLE / "tests"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tests),
        str(tests),
    ]
    proc = subprocess.run(cmd, env=_env(site), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "11 passed" in proc.stdout, proc.stdout[-2000:]  # 4 meta checks + 7 model checks, none skipped
