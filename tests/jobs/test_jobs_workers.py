"""Manifests on a CPU run their jobs on worker processes (``jobs.workers``): the same bytes as one at a
time, a worker that dies costs its job one more try (two deaths: a failed row naming the crash), a
stopped run leaves no partial and no worker behind, and a user's script without a main guard runs its
manifest once. Waits are on what the test can see (files, exit), never on a sleep-and-assert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hostile import partials

from lipsynckit.jobs import run_manifest
from lipsynckit.jobs.runner import FAULT_ENV


def _manifest(path: Path, template: Path, audios: list[Path], suffix: str = ".mkv") -> Path:
    rows = [
        {"template": str(template), "audio": str(a), "output": f"r{i}{suffix}"} for i, a in enumerate(audios)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _worker_pids() -> set[int]:
    found = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except OSError:
                continue
            if b"lipsynckit.jobs.workers" in cmd and int(d) != os.getpid():
                found.add(int(d))
    return found


@pytest.mark.timeout(600)
def test_worker_processes_give_the_same_bytes_and_survive_a_hard_exit(
    tmp_path: Path,
    carphone_mp4: Path,
    speech_wavs: list[Path],
    shared_avatar_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = _manifest(tmp_path / "jobs.jsonl", carphone_mp4, speech_wavs[1:5])
    common = {"model": "viseme", "avatar_dir": shared_avatar_dir, "progress": False}
    one = run_manifest(manifest, tmp_path / "seq", concurrency=1, **common)
    marker = tmp_path / "crash-on"
    marker.write_text("r2.mkv")  # the process running this job exits hard mid-way, once
    monkeypatch.setenv(FAULT_ENV, str(marker))
    two = run_manifest(manifest, tmp_path / "par", concurrency=2, **common)
    assert not marker.exists(), "the fault was injected: a worker died in job r2"
    # on threads the hard exit would have ended this very process; here the job ran once more
    assert [r.state for r in two] == ["ok"] * 4
    assert [(r.row, r.sha256) for r in one] == [(r.row, r.sha256) for r in two]
    assert not partials(tmp_path / "par")
    assert not _worker_pids()


@pytest.mark.timeout(600)
def test_a_job_that_kills_its_worker_twice_is_a_failed_row(
    tmp_path: Path,
    carphone_mp4: Path,
    speech_wavs: list[Path],
    shared_avatar_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = _manifest(tmp_path / "jobs.jsonl", carphone_mp4, speech_wavs[1:4])
    marker = tmp_path / "crash-on"
    marker.write_text("r1.mkv always")
    monkeypatch.setenv(FAULT_ENV, str(marker))
    rows = run_manifest(
        manifest, tmp_path / "o", model="viseme", avatar_dir=shared_avatar_dir, concurrency=2, progress=False
    )
    assert [r.state for r in rows] == ["ok", "failed", "ok"]
    err = rows[1].error
    assert err is not None and err.stage == "worker" and "died twice" in err.message and "17" in err.message
    assert not (tmp_path / "o" / "r1.mkv").exists() and not partials(tmp_path / "o")


@pytest.mark.timeout(600)
def test_a_script_without_a_main_guard_runs_its_manifest_once(
    tmp_path: Path, carphone_mp4: Path, speech_wavs: list[Path], shared_avatar_dir: Path
) -> None:
    """multiprocessing's workers import the caller's __main__ again; ours are not multiprocessing's."""
    manifest = _manifest(tmp_path / "jobs.jsonl", carphone_mp4, speech_wavs[1:4])
    runs = tmp_path / "runs.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import lipsynckit as lsk\n"
        f"open({str(runs)!r}, 'a').write('run\\n')\n"
        f"lsk.run_manifest({str(manifest)!r}, {str(tmp_path / 'o')!r}, model='viseme', "
        f"avatar_dir={str(shared_avatar_dir)!r}, concurrency=2, progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]
    assert runs.read_text() == "run\n"
    statuses = [json.loads(x) for x in (tmp_path / "o" / "jobs.status.jsonl").read_text().splitlines()[1:]]
    assert sorted(s["state"] for s in statuses) == ["ok", "ok", "ok"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_stops_the_workers_and_leaves_no_partial(
    tmp_path: Path, astronaut_png: Path, speech_wav: Path
) -> None:
    data, sr = sf.read(str(speech_wav))
    long = tmp_path / "inputs" / "long.wav"
    long.parent.mkdir()
    sf.write(str(long), np.tile(data, int(40 * sr / len(data)) + 1), sr)  # jobs long enough to stop
    manifest = _manifest(tmp_path / "jobs.jsonl", astronaut_png, [long] * 4, suffix=".mp4")
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "lipsynckit.cli", "batch", "--manifest", str(manifest), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "-m", "viseme", "--concurrency", "2"], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 500
    while len(partials(out)) < 2:  # the event: both workers are writing
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = _worker_pids()
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert not partials(out)
    assert not list(out.glob("r*.mp4"))
    assert not (_worker_pids() & workers)
