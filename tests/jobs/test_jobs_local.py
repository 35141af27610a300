"""The local manifest runner: bad rows fail alone, outputs verify, re-runs skip, a killed job re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lipsynckit.avatar import file_digest
from lipsynckit.cli import main
from lipsynckit.jobs import StatusLog, run_manifest
from lipsynckit.jobs.runner import FAULT_ENV
from lipsynckit.media import probe


def _write_manifest(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def mixed_manifest(
    tmp_path: Path,
    talking_template: Path,
    carphone_mp4: Path,
    speech_wavs: list[Path],
    no_face_jpg: Path,
    corrupt_wav: Path,
) -> Path:
    return _write_manifest(
        tmp_path / "jobs.jsonl",
        [
            {"template": str(talking_template), "audio": str(speech_wavs[1]), "output": "out/whole.mp4"},
            {
                "template": str(talking_template),
                "audio": str(speech_wavs[4]),
                "output": "out/greeting.mkv",
                "segments": [{"start": 1.0, "end": 2.5, "offset": 0.3}],
            },
            {
                "template": str(carphone_mp4),
                "audio": str(tmp_path / "missing.wav"),
                "output": "out/missing.mp4",
            },
            {"template": str(carphone_mp4), "audio": str(corrupt_wav), "output": "out/corrupt.mp4"},
            {"template": str(no_face_jpg), "audio": str(speech_wavs[1]), "output": "out/noface.mp4"},
        ],
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_manifest_runs_every_row_reports_failures_and_skips_on_rerun(
    mixed_manifest: Path,
    tmp_path: Path,
    speech_wavs: list[Path],
    corrupt_wav: Path,
    no_face_jpg: Path,
    shared_avatar_dir: Path,
) -> None:
    res = tmp_path / "res"
    avatar = ["--avatar-dir", str(shared_avatar_dir)]
    rc = main(
        ["-q", "batch", "--manifest", str(mixed_manifest), "-o", str(res), "--model", "viseme", *avatar]
    )
    assert rc == 1  # some jobs failed
    status = StatusLog(res / "jobs.status.jsonl")
    rows = status.rows()
    assert [r.state for r in rows] == ["ok", "ok", "failed", "failed", "failed"]
    whole, greeting, missing, corrupt, noface = rows
    assert whole.output == str(res / "out" / "whole.mp4")
    # the whole-template job follows its audio's length; the segment job keeps the template's
    assert probe(whole.output).num_frames == whole.frames == round(2.99 * 30000 / 1001)
    assert greeting.frames == 120 and greeting.segments == 1
    assert 0 < greeting.faces_found <= 45  # only the 45 segment frames are searched
    for r in (whole, greeting):
        assert r.sha256 == file_digest(r.output) and r.size == Path(r.output).stat().st_size
    assert (missing.error.stage, missing.error.file) == ("audio", str(tmp_path / "missing.wav"))
    assert (corrupt.error.stage, corrupt.error.file) == ("audio", str(corrupt_wav))
    assert (noface.error.stage, noface.error.file) == ("faces", str(no_face_jpg))
    assert not any(p.name.startswith(".") for p in (res / "out").iterdir())  # no temporaries left

    # a re-run skips both finished jobs (outputs untouched) and retries the failed ones
    mtime = Path(whole.output).stat().st_mtime_ns
    again = run_manifest(mixed_manifest, res, model="viseme", avatar_dir=shared_avatar_dir, progress=False)
    assert [r.state for r in again] == ["skipped", "skipped", "failed", "failed", "failed"]
    assert Path(whole.output).stat().st_mtime_ns == mtime
    assert [r.sha256 for r in again[:2]] == [whole.sha256, greeting.sha256]

    # an output changed on disk no longer verifies and is made again, identically (deterministic)
    Path(greeting.output).write_bytes(b"damaged")
    os.remove(whole.output)
    third = run_manifest(mixed_manifest, res, model="viseme", avatar_dir=shared_avatar_dir, progress=False)
    assert [r.state for r in third[:2]] == ["ok", "ok"]
    assert [r.sha256 for r in third[:2]] == [whole.sha256, greeting.sha256]
    # the status manifest holds one row per job, in manifest order
    lines = (res / "jobs.status.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"manifest": str(mixed_manifest.resolve())}  # whose status this is
    assert [json.loads(x)["row"] for x in lines[1:]] == [1, 2, 3, 4, 5]


def test_positional_batch_form_still_works(
    carphone_mp4: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    rc = main(
        [
            "-q",
            "batch",
            str(carphone_mp4),
            str(speech_wavs[1]),
            "-o",
            str(tmp_path / "o"),
            "--model",
            "viseme",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert (tmp_path / "o" / f"{speech_wavs[1].stem}.mp4").is_file()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_job_killed_midway_leaves_no_output_and_runs_on_the_next_pass(
    talking_template: Path, speech_wavs: list[Path], tmp_path: Path, shared_avatar_dir: Path
) -> None:
    manifest = _write_manifest(
        tmp_path / "jobs.jsonl",
        [
            {"template": str(talking_template), "audio": str(speech_wavs[1]), "output": "a.mkv"},
            {"template": str(talking_template), "audio": str(speech_wavs[3]), "output": "b.mkv"},
        ],
    )
    marker = tmp_path / "crash-on"
    marker.write_text("b.mkv")
    env = {**os.environ, FAULT_ENV: str(marker), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "lipsynckit.cli",
        "-q",
        "batch",
        "--manifest",
        str(manifest),
        "--model",
        "viseme",
        "--avatar-dir",
        str(shared_avatar_dir),
        "--concurrency",
        "1",  # job a finishes before job b kills the process
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 17, first.stderr  # the process died in the middle of job b
    assert not marker.exists()
    assert (tmp_path / "a.mkv").is_file() and not (tmp_path / "b.mkv").exists()
    partial = list(tmp_path.glob(".b.*.partial.mkv"))
    assert partial, "the killed job was writing a temporary"  # never under the output's name
    done = StatusLog(tmp_path / "jobs.status.jsonl").rows()
    assert [r.output for r in done] == [str(tmp_path / "a.mkv")]  # the status log kept the finished job

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    rows = StatusLog(tmp_path / "jobs.status.jsonl").rows()
    assert [r.state for r in rows] == ["skipped", "ok"]
    assert rows[1].sha256 == file_digest(tmp_path / "b.mkv")
    assert not list(tmp_path.glob(".*.partial*"))
