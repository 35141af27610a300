"""Issue 19: the frameworks are optional: core imports without them, and a missing one is one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_core_and_the_integrations_package_import_no_framework() -> None:
    proc = _run(
        "import sys, lipsynckit, lipsynckit.integrations, lipsynckit.streaming\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipecat', 'livekit')))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "hidden", "extra"),
    [("pipecat", "pipecat", "pipecat"), ("livekit", "livekit", "livekit")],
)
def test_a_missing_framework_is_one_error_naming_the_extra(module: str, hidden: str, extra: str) -> None:
    proc = _run(
        f"import sys; sys.modules[{hidden!r}] = None\n"  # as if it were not installed
        "from lipsynckit.errors import LipSyncError\n"
        "try:\n"
        f"    import lipsynckit.integrations.{module}\n"
        "except LipSyncError as e:\n"
        "    print(e)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "[integration]" in proc.stdout and f'pip install "lipsynckit[{extra}]"' in proc.stdout
