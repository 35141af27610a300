"""Issue 19: each voice-agent example runs as a script, offline, and writes a playable lip-synced mp4."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import lipsynckit as lsk

REPO = Path(__file__).resolve().parents[2]
SECONDS = 1.0


@pytest.mark.parametrize(
    ("script", "framework"),
    [("pipecat_avatar.py", "pipecat"), ("livekit_avatar.py", "livekit.agents")],
)
def test_example_runs_offline_and_writes_the_lip_synced_mp4(
    script: str, framework: str, tmp_path: Path
) -> None:
    pytest.importorskip(framework)
    out = tmp_path / "avatar.mp4"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env["HF_HUB_OFFLINE"] = "1"  # nothing may be fetched
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / script), "--out", str(out), "--seconds", str(SECONDS)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        images = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert (v.width, v.height) == (512, 512)
    assert len(images) == int(np.ceil(SECONDS * 25))  # one frame per 40 ms of speech
    assert float(a.duration * a.time_base) == pytest.approx(SECONDS, abs=0.05)
    template = lsk.read_video(str(REPO / "examples" / "astronaut.jpg"))[0].astype(int)
    moved = [np.abs(im.astype(int) - template).max() for im in images]
    # H.264 alone moves pixels by ~35 levels; the open mouth by over 100; the pause before the words rests
    assert max(moved) > 90 and min(moved) < 60
