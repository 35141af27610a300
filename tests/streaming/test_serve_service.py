"""Issues 18/19: ``lipsynckit serve`` as a service: bounded bodies, malformed offers refused without a
leak, one upload at a time, lost peers reaped, Origin and token checks, port errors before loading.

starlette's TestClient drives the app in-process (loopback only); real offers come from an aiortc
client. Reaping is tested by calling the reaper with a later time, never by waiting.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

import lipsynckit as lsk
from lipsynckit.cli import main
from lipsynckit.streaming.serve import ServeOptions, create_app

pytest.importorskip("aiortc")
from starlette.testclient import TestClient  # noqa: E402


def _app(viseme: Any, astronaut_png: Path, tmp_path: Path, **service: Any) -> Any:
    return create_app(
        astronaut_png,
        viseme,
        service=ServeOptions(**service),
        avatar_dir=tmp_path / "avatar",
        detector="opencv",
    )


def _offer() -> dict:
    """A real browser-like offer (receive video and audio) from an aiortc client."""
    from aiortc import RTCPeerConnection

    async def make() -> dict:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        d = {"sdp": pc.localDescription.sdp, "type": "offer"}
        await pc.close()
        return d

    return asyncio.run(make())


def _stream_threads() -> int:
    for t in [t for t in threading.enumerate() if t.name == "lsk-stream-close"]:
        t.join(timeout=60)  # sessions closed earlier finish releasing
    return sum(
        t.name.startswith("lsk-stream") or t.name.startswith("lsk-serve") for t in threading.enumerate()
    )


def test_malformed_offers_get_400_and_leave_nothing_running(
    viseme: Any, astronaut_png: Path, tmp_path: Path
) -> None:
    app = _app(viseme, astronaut_png, tmp_path)
    before = _stream_threads()
    bad = [
        b"not json",
        b"{}",
        b'{"sdp": "v=0", "type": "answer"}',
        b'{"sdp": 5, "type": "offer"}',
        b'{"sdp": "v=0\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96\\r\\n", "type": "offer"}',  # no ICE, no DTLS
    ]
    with TestClient(app) as client:
        for body in bad:
            r = client.post("/offer", content=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"].startswith("malformed offer")
        assert app.state.peers == {}
    assert _stream_threads() == before


def test_bodies_are_bounded(viseme: Any, astronaut_png: Path, tmp_path: Path) -> None:
    app = _app(viseme, astronaut_png, tmp_path, max_offer_bytes=4096, max_upload_bytes=1000)
    with TestClient(app) as client:
        r = client.post("/offer", content=b"x" * 5000)
        assert r.status_code == 413 and "larger than 4096 bytes" in r.json()["error"]
        pid = client.post("/offer", json=_offer()).json()["id"]
        r = client.post(f"/upload?id={pid}", content=b"\0" * 2000)
        assert r.status_code == 413 and "larger than 1000 bytes" in r.json()["error"]
        assert not app.state.peers[pid][0].uploading


def test_one_upload_at_a_time_and_errors_name_no_server_path(
    viseme: Any, astronaut_png: Path, tmp_path: Path, speech_wav: Path
) -> None:
    app = _app(viseme, astronaut_png, tmp_path)
    with TestClient(app) as client:
        pid = client.post("/offer", json=_offer()).json()["id"]
        r = client.post(f"/upload?id={pid}&name=talk.wav", content=b"RIFF....WAVEnot really audio")
        assert r.status_code == 400
        err = r.json()["error"]
        assert err.startswith("could not play the upload") and "\n" not in err
        assert tempfile.gettempdir() not in err and "/tmp" not in err
        assert client.post("/upload?id=nope", content=b"").status_code == 404
        # a 7 s sentence plays at real-time pace; a second file meanwhile is refused, not interleaved
        r = client.post(f"/upload?id={pid}&name=a.wav", content=speech_wav.read_bytes())
        assert r.status_code == 200
        r = client.post(f"/upload?id={pid}&name=b.wav", content=speech_wav.read_bytes())
        assert r.status_code == 409 and "still playing" in r.json()["error"]


def test_a_lost_peer_is_reaped_with_its_session(viseme: Any, astronaut_png: Path, tmp_path: Path) -> None:
    app = _app(viseme, astronaut_png, tmp_path, peer_timeout_s=3.0)
    with TestClient(app) as client:
        pid = client.post("/offer", json=_offer()).json()["id"]
        peer = app.state.peers[pid][0]
        assert client.post(f"/ping?id={pid}").json() == {"ok": True}
        assert app.state.reap(peer.last_seen + 2.0) == []  # it pinged: kept
        assert app.state.reap(peer.last_seen + 3.5) == [pid]  # the page went quiet: closed
        assert app.state.peers == {} and peer.session.closed
        assert client.post(f"/ping?id={pid}").status_code == 404


def test_origin_and_token_are_checked(viseme: Any, astronaut_png: Path, tmp_path: Path) -> None:
    app = _app(viseme, astronaut_png, tmp_path, token="s3cret")
    with TestClient(app) as client:
        assert client.get("/").status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        assert client.get("/?token=s3cret").status_code == 200
        r = client.post("/offer?token=s3cret", content=b"{}", headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and "origin http://evil.example is not allowed" in r.json()["error"]
        r = client.post(
            "/offer", content=b"{}", headers={"x-lsk-token": "s3cret", "origin": "http://testserver"}
        )
        assert r.status_code == 400  # past both checks: the page's own origin with the token
    app = _app(viseme, astronaut_png, tmp_path)  # loopback default: no token, Origin still checked
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        r = client.post("/offer", content=b"{}", headers={"origin": "http://evil.example"})
        assert r.status_code == 403


def test_serve_refuses_what_it_cannot_do_before_loading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], astronaut_png: Path
) -> None:
    import lipsynckit.api

    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(lipsynckit.api, "resolve_model", no_load)
    assert main(["serve", "--model", "latentsync"]) == 2
    assert "cannot stream" in capsys.readouterr().err.lower()
    assert main(["serve", "--port", "99999"]) == 2
    assert "--port 99999 is not a port" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_port_0_prints_the_real_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], astronaut_png: Path
) -> None:
    import uvicorn

    import lipsynckit.streaming.serve as serve

    seen: list[int] = []
    monkeypatch.setattr(serve, "create_app", lambda *a, **k: object())
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self, sockets=None: seen.append(sockets[0].getsockname()[1])
    )
    assert main(["serve", "--port", "0", "--video", str(astronaut_png)]) == 0
    out = capsys.readouterr().out
    assert seen and seen[0] > 0 and f"open http://127.0.0.1:{seen[0]}/\n" in out
    # bound beyond loopback, the URL carries a made-up token
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--video", str(astronaut_png)]) == 0
    out = capsys.readouterr().out
    assert f"open http://0.0.0.0:{seen[1]}/?token=" in out and len(out.split("token=")[1].strip()) >= 16


def test_a_microphone_burst_is_trimmed_so_latency_cannot_stay_high(
    viseme: Any, astronaut_png: Path, tmp_path: Path, speech_wav: Path
) -> None:
    """Microphone audio that arrives in a burst (the event loop stalled) would stay queued for the rest
    of the connection: past 0.4 s queued, quiet packets are not pushed; past 1 s, none are."""
    import types

    import av
    import numpy as np
    from stream_helpers import speech

    from lipsynckit.streaming import ManualClock
    from lipsynckit.streaming.serve import MIC_HARD_QUEUE_S, MIC_QUIET_QUEUE_S, _Peer, _quiet

    x, _ = speech(speech_wav, 3.0)
    x48 = np.repeat((x * 20000).astype(np.int16), 3)  # 48 kHz int16 (a browser's rate; exactness not needed)
    packets = [x48[i : i + 960] for i in range(0, len(x48) - 959, 960)]

    class Track:  # every packet at once: the burst after a stall (nobody reads frames meanwhile)
        def __init__(self) -> None:
            self.left = list(packets)

        async def recv(self) -> Any:
            if not self.left:
                raise EOFError
            f = av.AudioFrame.from_ndarray(self.left.pop(0)[None], format="s16", layout="mono")
            f.sample_rate = 48000
            return f

    s = lsk.stream(
        astronaut_png, model=viseme, avatar_dir=tmp_path / "av", detector="opencv", clock=ManualClock()
    )
    peer = types.SimpleNamespace(session=s, rate=48000, mic_trimmed_s=0.0, id="t")
    try:
        asyncio.run(_Peer.pump_microphone(peer, Track()))  # type: ignore[arg-type]
        pushed = s.stats.pushed_samples / 48000
    finally:
        s.close()
    assert pushed + peer.mic_trimmed_s == pytest.approx(len(packets) * 960 / 48000)
    assert MIC_HARD_QUEUE_S <= pushed <= MIC_HARD_QUEUE_S + 960 / 48000  # bounded
    # nobody plays anything meanwhile, so the queue is what was pushed: the rule, packet by packet
    expected, quiet_trimmed = 0, 0
    for p in packets:
        queued = expected / 48000
        if queued > MIC_HARD_QUEUE_S or (queued > MIC_QUIET_QUEUE_S and _quiet(p)):
            quiet_trimmed += queued <= MIC_HARD_QUEUE_S
            continue
        expected += len(p)
    assert s.stats.pushed_samples == expected
    assert quiet_trimmed > 0  # pauses were shortened before the hard bound was reached
