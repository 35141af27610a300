"""Issue 12: ``lipsynckit bench --stream`` runs a real-time session on real speech and writes its table.
Speed is reported, not asserted; what is asserted is that the run happened and kept the invariant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lipsynckit.cli import main


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_stream_writes_a_streaming_table(astronaut_png: Path, tmp_path: Path) -> None:
    argv = ["-q", "bench", "--stream", "--models", "viseme", "--video", str(astronaut_png)]
    assert main(argv + ["--seconds", "3", "--report", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "stream.json").read_text())
    assert len(rows) == 1 and rows[0]["model"] == "viseme" and rows[0]["sessions"] == 1
    assert rows[0]["audio_invariant"] is True
    assert rows[0]["frames"] >= 50 and rows[0]["p95_ms"] > 0
    md = (tmp_path / "stream.md").read_text()
    assert "latency p50 / p95 / max ms" in md and "core" in md
