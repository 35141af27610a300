"""``lipsynckit serve`` under load, end to end: a headless Chromium's fake microphone plays LibriVox
speech into the page for N seconds; reports the frames the page decoded, the server session's frames,
speech and dropped frames, push-to-play latency and the process's CPU use, with K busy processes.

Runs against whichever lipsynckit is on the path (before/after pairs in one sitting). Needs chromium.

Usage: python benchmarks/serve_browser_load.py [--seconds 20] [--load 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WAV = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--load", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads where the code can set them")
    p.add_argument("--label", default="this tree")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "streaming"))
    import uvicorn
    from test_serve_browser import CHROMIUM, _DevTools

    import lipsynckit as lsk
    import lipsynckit.streaming as streaming
    from lipsynckit.streaming.serve import create_app

    if CHROMIUM is None:
        print("chromium is not installed", file=sys.stderr)
        return 2
    if hasattr(streaming, "set_stream_threads"):
        streaming.set_stream_threads(args.threads)
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="lsk-serve-load-"))
    app = create_app(
        REPO / "examples" / "astronaut.jpg",
        lsk.load_model("viseme"),
        avatar_dir=tmp / "avatar",
        detector="opencv",
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.1)
    user = tmp / "chrome"
    user.mkdir()
    chrome = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         f"--use-file-for-fake-audio-capture={WAV}", "--autoplay-policy=no-user-gesture-required",
         "--disable-features=WebRtcHideLocalIpsWithMdns", f"--user-data-dir={user}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        cdp = _DevTools(user)
        cdp.call("Page.navigate", url=f"http://127.0.0.1:{port}/?auto=mic")
        while not app.state.peers:
            time.sleep(0.1)
        session = next(iter(app.state.peers.values()))[0].session
        v0, c0, t0 = cdp.status().get("videoFrames", 0), sum(os.times()[:2]), time.perf_counter()
        f0 = session.stats.frames
        time.sleep(args.seconds)
        st, wall = cdp.status(), time.perf_counter() - t0
        cores = (sum(os.times()[:2]) - c0) / wall
        stats = session.stats
        lat = stats.latency_summary()
        print(
            f"| {args.label} | {args.load} | {torch.get_num_threads()} | "
            f"{(st.get('videoFrames', 0) - v0) / wall:.1f} | {(stats.frames - f0) / wall:.1f} | "
            f"{stats.speech_frames} | {getattr(stats, 'dropped_frames', '-')} | "
            f"{lat.get('p50_ms', float('nan')):.0f} / {lat.get('p95_ms', float('nan')):.0f} | "
            f"{cores:.2f} | {os.getloadavg()[0]:.1f} |"
        )
        cdp.close()
    finally:
        for b in busy:
            b.kill()
        chrome.terminate()
        chrome.wait(30)
        srv.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
