"""Manifests on a local Ray cluster: the same outputs and status rows as the local runner, a worker
killed in the middle of a job leaves no partial file and its job completes on retry, re-runs skip."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsynckit.avatar import file_digest
from lipsynckit.jobs import run_manifest
from lipsynckit.jobs.runner import FAULT_ENV

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def fault_marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault") / "crash-on"


@pytest.fixture(scope="module")
def local_ray(fault_marker: Path) -> Iterator[None]:
    """One 2-CPU local cluster for this module (shut down after it: test_jobs_ray_nodes stops every Ray
    on the machine, and a driver whose raylet dies ends its own process); its workers see the
    fault-injection marker path."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {FAULT_ENV: str(fault_marker), "OMP_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def test_ray_matches_local_survives_a_killed_worker_and_skips_on_rerun(
    local_ray: None,
    fault_marker: Path,
    tmp_path: Path,
    talking_template: Path,
    carphone_mp4: Path,
    speech_wavs: list[Path],
    no_face_jpg: Path,
    shared_avatar_dir: Path,
) -> None:
    rows = [
        {"template": str(talking_template), "audio": str(speech_wavs[1]), "output": "talk-a.mkv"},
        {"template": str(carphone_mp4), "audio": str(speech_wavs[4]), "output": "car-a.mp4"},
        {
            "template": str(talking_template),
            "audio": str(speech_wavs[3]),
            "output": "talk-greeting.mkv",
            "segments": [{"start": 0.5, "end": 2.0}, {"start": 2.5, "end": 3.5, "offset": 1.0}],
        },
        {"template": str(carphone_mp4), "audio": str(tmp_path / "nowhere.wav"), "output": "car-missing.mp4"},
        {"template": str(no_face_jpg), "audio": str(speech_wavs[1]), "output": "noface.mp4"},
        {"template": str(talking_template), "audio": str(speech_wavs[2]), "output": "talk-b.mkv"},
    ]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = {"model": "viseme", "avatar_dir": shared_avatar_dir, "progress": False}

    local = run_manifest(manifest, tmp_path / "local", **common)
    fault_marker.write_text("talk-greeting.mkv")  # the worker running this job exits hard mid-way
    on_ray = run_manifest(manifest, tmp_path / "ray", ray=True, **common)
    assert not fault_marker.exists(), "the fault was injected (a worker died in the segment job)"

    assert [r.state for r in on_ray] == ["ok", "ok", "ok", "failed", "failed", "ok"]
    for a, b in zip(local, on_ray, strict=True):
        la, rb = a.comparable(), b.comparable()
        for d in (la, rb):  # the two runs write to different folders (and so have other job keys)
            d["output"] = Path(str(d["output"])).name
            d.pop("key")
        assert la == rb  # same checksums, frames, faces and errors (stage and file)
    assert on_ray[3].error is not None and on_ray[3].error.stage == "audio"
    assert on_ray[4].error is not None and on_ray[4].error.stage == "faces"
    out = tmp_path / "ray"
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".mkv", ".mp4")) == sorted(
        r["output"] for r in rows if r["output"] not in ("car-missing.mp4", "noface.mp4")
    )
    assert not list(out.glob(".*partial*"))  # the killed attempt's temporary was removed on retry
    assert on_ray[2].sha256 == file_digest(out / "talk-greeting.mkv")
    lines = (out / "jobs.status.jsonl").read_text().splitlines()[1:]  # after the manifest's name
    assert [json.loads(x)["row"] for x in lines] == [1, 2, 3, 4, 5, 6]  # one row per job, no duplicate

    again = run_manifest(manifest, out, ray=True, **common)
    assert [r.state for r in again] == ["skipped", "skipped", "skipped", "failed", "failed", "skipped"]


def test_a_job_that_always_kills_its_worker_is_a_failed_row(
    local_ray: None,
    fault_marker: Path,
    tmp_path: Path,
    talking_template: Path,
    speech_wavs: list[Path],
    shared_avatar_dir: Path,
) -> None:
    rows = [
        {"template": str(talking_template), "audio": str(speech_wavs[1]), "output": "fine.mkv"},
        {"template": str(talking_template), "audio": str(speech_wavs[2]), "output": "poison.mkv"},
    ]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fault_marker.write_text("poison.mkv always")  # every attempt at this job kills its worker
    try:
        res = run_manifest(
            manifest,
            tmp_path / "o",
            ray=True,
            ray_workers=1,
            model="viseme",
            avatar_dir=shared_avatar_dir,
            progress=False,
            summary=False,
        )
    finally:
        fault_marker.unlink(missing_ok=True)
    assert [r.state for r in res] == ["ok", "failed"]
    err = res[1].error
    assert err is not None and err.stage == "worker" and "died 2 times" in err.message
    assert not (tmp_path / "o" / "poison.mkv").exists()
    assert not list((tmp_path / "o").glob(".*partial*"))  # the last attempt's temporary removed
