"""Headless Chromium driven through the DevTools protocol, for the browser tests (serve, smart render).

The smallest client that does the job: start Chromium on a free debugging port, attach to its page,
navigate and evaluate JavaScript (optionally awaiting a promise, so a test waits on a DOM event rather
than on time). Skips are the tests' business: :data:`CHROMIUM` is None when no Chromium is installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = 120.0) -> Any:
    """Poll ``check`` until it returns something true; fail after a generous deadline (not a speed test)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def launch_chromium(user_dir: Path, *extra_args: str) -> subprocess.Popen:
    """Headless Chromium with its own profile in ``user_dir`` and a DevTools port of its choosing."""
    assert CHROMIUM is not None
    user_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
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
            "--autoplay-policy=no-user-gesture-required",
            *extra_args,
            f"--user-data-dir={user_dir}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class DevTools:
    """Navigate and evaluate on the one page of a Chromium started by :func:`launch_chromium`."""

    def __init__(self, user_dir: Path) -> None:
        from websockets.sync.client import connect

        port_file = user_dir / "DevToolsActivePort"
        # Chromium writes the file in two steps: wait for its first line (the port), not just the file
        lines = wait_for(
            "DevToolsActivePort", lambda: port_file.is_file() and port_file.read_text().split(), 60
        )
        port = int(lines[0])
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read())
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = connect(url, max_size=None, open_timeout=30, legacy=True)
        self.n = 0

    def call(self, method: str, timeout_s: float = 60.0, **params: Any) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=timeout_s))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str, timeout_s: float = 60.0) -> Any:
        """The JSON value of ``expression`` in the page; a promise is awaited (up to ``timeout_s``)."""
        r = self.call(
            "Runtime.evaluate",
            timeout_s=timeout_s,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def status(self) -> dict:
        r = self.call(
            "Runtime.evaluate", expression="JSON.stringify(window.lskStatus || null)", returnByValue=True
        )
        return json.loads(r["result"].get("value") or "null") or {}

    def close(self) -> None:
        self.ws.close()
