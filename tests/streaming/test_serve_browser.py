"""Issue 12: ``lipsynckit serve`` in a real headless Chromium. The browser's (fake) microphone plays
real speech from a WAV; the page must receive the avatar's video frames and audio over WebRTC, and the
server's session must have been driven by that microphone. An uploaded file drives a second session.

Waits are on events observed through the DevTools protocol (polled state with a generous deadline),
never assertions about speed. Skips only when no Chromium is installed (CI installs it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (scripts/dev-install.sh installs it)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Any, deadline_s: float = 120.0) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class _DevTools:
    """The smallest Chrome DevTools protocol client: navigate and evaluate on one page."""

    def __init__(self, user_dir: Path) -> None:
        from websockets.sync.client import connect

        port_file = user_dir / "DevToolsActivePort"
        # Chromium writes the file in two steps: wait for its first line (the port), not just the file
        lines = _wait("DevToolsActivePort", lambda: port_file.is_file() and port_file.read_text().split(), 60)
        port = int(lines[0])
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read())
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = connect(url, max_size=None, open_timeout=30, legacy=True)
        self.n = 0

    def call(self, method: str, **params: Any) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    def status(self) -> dict:
        r = self.call(
            "Runtime.evaluate", expression="JSON.stringify(window.lskStatus || null)", returnByValue=True
        )
        return json.loads(r["result"].get("value") or "null") or {}

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def server(astronaut_png: Path, tmp_path: Path):  # noqa: ANN201
    import uvicorn

    import lipsynckit as lsk
    from lipsynckit.streaming.serve import create_app

    app = create_app(
        astronaut_png, lsk.load_model("viseme"), avatar_dir=tmp_path / "avatar", detector="opencv"
    )
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    _wait("the server", lambda: srv.started, 60)
    yield app, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(30)


def _chromium(tmp_path: Path, wav: Path, name: str) -> tuple[subprocess.Popen, Path]:
    user_dir = tmp_path / f"chrome-{name}"
    user_dir.mkdir()
    assert CHROMIUM is not None
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            f"--user-data-dir={user_dir}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        cdp = _DevTools(user_dir)
        cdp.call("Page.navigate", url=f"{url}/?auto=mic")
        st = _wait(
            "video frames and audio in the page",
            lambda: (
                (s := cdp.status())
                and s.get("videoFrames", 0) >= 25
                and s.get("audioSamples", 0) > 16000
                and s
            ),
        )
        assert st["state"] == "connected", st
        session = _wait("the server's session", lambda: _session(app, set()))
        # the fake microphone's speech reached the session and the avatar spoke it
        _wait("speech frames", lambda: session.stats.speech_frames >= 10)
        assert session.stats.pushed_samples > 48000 * 0.5
        cdp.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_uploaded_file_drives_a_session(server: tuple[Any, str], speech_wav: Path, tmp_path: Path) -> None:
    app, url = server
    proc, user_dir = _chromium(tmp_path, speech_wav, "file")
    try:
        cdp = _DevTools(user_dir)
        cdp.call("Page.navigate", url=f"{url}/?auto=file")
        _wait("video frames in the page", lambda: cdp.status().get("videoFrames", 0) >= 10)
        session = _wait("the server's session", lambda: _session(app, set()))
        peer_id = next(iter(app.state.peers))
        req = urllib.request.Request(
            f"{url}/upload?id={peer_id}&name=speech.wav", data=speech_wav.read_bytes(), method="POST"
        )
        assert json.loads(urllib.request.urlopen(req, timeout=60).read()) == {"ok": True}
        _wait("speech frames from the file", lambda: session.stats.speech_frames >= 10)
        _wait("audio in the page", lambda: cdp.status().get("audioSamples", 0) > 16000)
        cdp.close()
    finally:
        proc.terminate()
        proc.wait(30)
