"""Issue 12: ``lipsynckit bench --stream`` runs a real-time session on real speech and writes its table.
Speed is reported, not asserted; what is asserted is that the run happened and kept the invariant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lipsynckit.cli import main


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_stream_writes_a_streaming_table(
    astronaut_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19: ``--sessions 2`` prints a row per count and says why it stopped; ``--load`` is shown."""
    argv = ["-q", "bench", "--stream", "--models", "viseme", "--video", str(astronaut_png)]
    assert main(argv + ["--seconds", "3", "--sessions", "2", "--load", "1", "--report", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "stream.json").read_text())
    assert [r["sessions"] for r in rows] == [1, 2] and {r["model"] for r in rows} == {"viseme"}
    assert all(r["audio_invariant"] is True and r["load"] == 1 for r in rows)
    assert rows[0]["frames"] >= 50 and rows[0]["p95_ms"] > 0
    assert rows[1]["speech_frames"] > rows[0]["speech_frames"] // 2  # both sessions spoke
    md = (tmp_path / "stream.md").read_text()
    assert "latency p50 / p95 / max ms" in md and "dropped / speech frames" in md and "core" in md
    out = capsys.readouterr().out
    assert out.count("| viseme |") == 2 and "1 busy process(es)" in out
    assert "stopped: " in out  # the reason the table ends
