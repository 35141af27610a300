"""Stops: Ctrl-C (once or twice) and SIGTERM end a real `lipsynckit sync` process quickly, with one
line, the conventional exit code, no traceback and no partial file. The test waits on what it can
see (the partial file appearing), never on a sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hostile import partials, sha256_tree


def _long_speech(src: Path, dest: Path, seconds: float = 40.0) -> Path:
    data, sr = sf.read(str(src))
    sf.write(str(dest), np.tile(data, int(seconds * sr / len(data)) + 1), sr)
    return dest


def _stop_a_run(image: Path, speech: Path, out_dir: Path, signals: list[int]) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "lipsynckit.cli", "sync", str(image), str(speech), "-m", "viseme"]
    proc = subprocess.Popen(
        [*cmd, "-o", str(out_dir / "talk.mp4")], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 600
    while not list(out_dir.glob(".talk.*.partial.mp4")):  # the event: the sink is writing
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    for sig in signals:
        proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)  # bounded: the old 30 s producer join would show
    return proc.returncode, err, time.monotonic() - t0


@pytest.mark.parametrize(
    "signals",
    [
        pytest.param([signal.SIGINT], id="ctrl-c"),
        pytest.param([signal.SIGINT, signal.SIGINT], id="ctrl-c-twice", marks=pytest.mark.slow),
        pytest.param([signal.SIGTERM], id="sigterm", marks=pytest.mark.slow),
    ],
)
def test_a_stopped_run_ends_with_one_line_and_leaves_nothing(
    image_png: Path, speech_wav: Path, tmp_path: Path, signals: list[int]
) -> None:
    speech = _long_speech(speech_wav, tmp_path / "inputs" / "long.wav")
    before = sha256_tree(tmp_path / "inputs")
    out_dir = tmp_path / "out"
    code, err, seconds = _stop_a_run(image_png, speech, out_dir, signals)
    assert code == (143 if signals[0] == signal.SIGTERM else 130), err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last in ("interrupted", "terminated", "interrupted again: stopping now"), err
    assert not (out_dir / "talk.mp4").exists()
    if len(signals) == 1:  # a second signal may land before the clean-up: the next run removes it
        assert not partials(out_dir)
    assert sha256_tree(tmp_path / "inputs") == before
    print(f"stopped {seconds:.2f} s after the signal")  # the figure in docs/reliability.md
