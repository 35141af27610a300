"""docs/metrics.md cannot rot: its first example runs and says what it prints."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_first_example_runs() -> None:
    text = (REPO / "docs" / "metrics.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    out = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/metrics.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert out.getvalue().split() == ["0.0", "None"]


def test_every_weightfree_field_is_documented() -> None:
    from lipsynckit.metrics import WeightFreeMetrics

    text = (REPO / "docs" / "metrics.md").read_text()
    missing = [
        f for f in WeightFreeMetrics.model_fields if f not in ("num_frames", "fps") and f"`{f}`" not in text
    ]
    assert not missing
