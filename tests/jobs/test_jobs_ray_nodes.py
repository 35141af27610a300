"""A real two-node Ray cluster on one machine (a head and a second node joined with
``ray start --address``): the second node is killed while it runs a job, and the manifest still ends
with every row right, outputs identical to the local runner's and no temporary left."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsynckit.jobs import StatusLog, run_manifest

pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, str]]]:
    """Head (1 CPU) and a second node (1 CPU) in its own process group, so it can be killed whole."""
    import ray

    if ray.is_initialized():  # `ray stop --force` below would take this process down with its cluster
        ray.shutdown()
    port = _free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",  # one trusted machine; see docs/user-guide.md for real clusters
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    head = subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert head.returncode == 0, head.stderr.decode()[-2000:]
    address = f"127.0.0.1:{port}"
    node = subprocess.Popen(
        [RAY, "start", f"--address={address}", "--block", *common],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # until the cluster has both nodes' CPUs
            out = subprocess.run(
                [RAY, "status", f"--address={address}"], env=env, capture_output=True, timeout=60
            )
            if b"2.0 CPU" in out.stdout or b"0.0/2.0 CPU" in out.stdout:
                break
            time.sleep(1)
        else:
            pytest.fail("the second node did not join")
        yield address, node, env
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_a_killed_node_loses_no_job(
    two_nodes: tuple[str, subprocess.Popen[bytes], dict[str, str]],
    tmp_path: Path,
    talking_template: Path,
    speech_wavs: list[Path],
    shared_avatar_dir: Path,
) -> None:
    address, node, env = two_nodes
    rows = [
        {"template": str(talking_template), "audio": str(speech_wavs[k]), "output": f"job{k}.mkv"}
        for k in (1, 2, 3, 4)
    ]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--model", "viseme", "--avatar-dir", str(shared_avatar_dir), "--no-progress"]
    out = tmp_path / "ray"
    driver = subprocess.Popen(
        [sys.executable, "-m", "lipsynckit.cli", "-q", "batch", "--manifest", str(manifest), "-o", str(out)]
        + ["--ray", address, "--ray-workers", "2", *common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # both workers hold a job once two temporaries exist (one per node): then the second node dies
    deadline = time.monotonic() + 300
    while len(list(out.glob(".*.partial*"))) < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.poll() is None, driver.communicate()[1].decode()[-3000:]
    os.killpg(node.pid, signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=400)
    assert driver.returncode == 0, stderr.decode()[-3000:]
    assert "4 jobs: 4 ok" in stdout.decode()
    on_ray = StatusLog(out / "jobs.status.jsonl").rows()
    local = run_manifest(
        manifest, tmp_path / "local", model="viseme", avatar_dir=shared_avatar_dir, progress=False
    )
    assert [r.sha256 for r in on_ray] == [r.sha256 for r in local]  # the same bytes as without Ray
    assert not list(out.glob(".*partial*"))
