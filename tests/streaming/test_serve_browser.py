"""Issue 12: ``lipsynckit serve`` in a real headless Chromium. The browser's (fake) microphone plays
real speech from a WAV; the page must receive the avatar's video frames and audio over WebRTC, and the
server's session must have been driven by that microphone. An uploaded file drives a second session.

Waits are on events observed through the DevTools protocol (polled state with a generous deadline),
never assertions about speed. Skips only when no Chromium is installed (CI installs it).
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from chromium_devtools import CHROMIUM, DevTools, free_port, launch_chromium, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (scripts/dev-install.sh installs it)"
    ),
]


@pytest.fixture
def server(astronaut_png: Path, tmp_path: Path):  # noqa: ANN201
    import uvicorn

    import lipsynckit as lsk
    from lipsynckit.streaming.serve import create_app

    app = create_app(
        astronaut_png, lsk.load_model("viseme"), avatar_dir=tmp_path / "avatar", detector="opencv"
    )
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    wait_for("the server", lambda: srv.started, 60)
    yield app, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(30)


def _chromium(tmp_path: Path, wav: Path, name: str) -> tuple[subprocess.Popen, Path]:
    user_dir = tmp_path / f"chrome-{name}"
    proc = launch_chromium(
        user_dir,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    )
    return proc, user_dir


def _session(app: Any, before: set[str]) -> Any:
    new = [p for k, (p, _pc) in app.state.peers.items() if k not in before]
    return new[0].session if new else None


def test_microphone_drives_the_avatar_and_the_page_gets_video_and_audio(
    server: tuple[Any, str], speech_wav: Path, tmp_path: Path
) -> None:
    app, url = server
    proc, user_dir = _chromium(tmp_path, speech_wav, "mic")
    try:
        cdp = DevTools(user_dir)
        cdp.call("Page.navigate", url=f"{url}/?auto=mic")
        st = wait_for(
            "video frames and audio in the page",
            lambda: (
                (s := cdp.status())
                and s.get("videoFrames", 0) >= 25
                and s.get("audioSamples", 0) > 16000
                and s
            ),
        )
        assert st["state"] == "connected", st
        session = wait_for("the server's session", lambda: _session(app, set()))
        # the fake microphone's speech reached the session and the avatar spoke it
        wait_for("speech frames", lambda: session.stats.speech_frames >= 10)
        assert session.stats.pushed_samples > 48000 * 0.5
        cdp.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_uploaded_file_drives_a_session(server: tuple[Any, str], speech_wav: Path, tmp_path: Path) -> None:
    app, url = server
    proc, user_dir = _chromium(tmp_path, speech_wav, "file")
    try:
        cdp = DevTools(user_dir)
        cdp.call("Page.navigate", url=f"{url}/?auto=file")
        wait_for("video frames in the page", lambda: cdp.status().get("videoFrames", 0) >= 10)
        session = wait_for("the server's session", lambda: _session(app, set()))
        peer_id = next(iter(app.state.peers))
        req = urllib.request.Request(
            f"{url}/upload?id={peer_id}&name=speech.wav", data=speech_wav.read_bytes(), method="POST"
        )
        assert json.loads(urllib.request.urlopen(req, timeout=60).read()) == {"ok": True}
        wait_for("speech frames from the file", lambda: session.stats.speech_frames >= 10)
        wait_for("audio in the page", lambda: cdp.status().get("audioSamples", 0) > 16000)
        cdp.close()
    finally:
        proc.terminate()
        proc.wait(30)
