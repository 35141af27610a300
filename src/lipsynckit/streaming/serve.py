"""``lipsynckit serve``: a local web page where a microphone or an uploaded audio file drives the avatar.

An ASGI app (starlette, run by uvicorn) with one page and two endpoints: ``POST /offer`` takes the
browser's WebRTC offer and answers it (aiortc): each connection is one real-time streaming session,
whose frames go out as a video track and their own audio as an audio track (the same frame's samples,
so picture and sound stay together); the browser's microphone track, when sent, is pushed into the
session. ``POST /upload?id=...`` takes an audio file and pushes it at real-time pace. Binds to the
loopback address by default: it is a local tool, not a public service.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from lipsynckit.errors import LipSyncError

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
AUDIO_PTIME = 0.02  # seconds per outgoing audio frame (what WebRTC Opus encoders expect)


def _int16(audio: np.ndarray) -> np.ndarray:
    x = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


class _Peer:
    """One browser connection: a real-time session, its consumer thread and the two outgoing tracks."""

    def __init__(self, session: Any, loop: asyncio.AbstractEventLoop) -> None:
        from aiortc import MediaStreamTrack

        self.id = uuid.uuid4().hex[:12]
        self.session = session
        self.loop = loop
        self.video_q: asyncio.Queue[Any] = asyncio.Queue(maxsize=50)
        self.audio_q: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=100)
        self.rate = session.sample_rate
        peer = self

        class VideoTrack(MediaStreamTrack):
            kind = "video"

            async def recv(self) -> Any:
                import av

                f = await peer.video_q.get()
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f.image), format="rgb24")
                vf.pts = int(round(f.index * VIDEO_CLOCK / peer.session.fps))
                vf.time_base = fractions.Fraction(1, VIDEO_CLOCK)
                return vf

        class AudioTrack(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self.pts = 0

            async def recv(self) -> Any:
                import av

                samples = await peer.audio_q.get()
                af = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
                af.sample_rate = peer.rate
                af.pts = self.pts
                af.time_base = fractions.Fraction(1, peer.rate)
                self.pts += len(samples)
                return af

        self.video = VideoTrack()
        self.audio = AudioTrack()
        self._thread = threading.Thread(target=self._consume, name=f"lsk-serve-{self.id}", daemon=True)
        self._thread.start()

    def _put(self, frame: Any) -> None:
        for q, item in [(self.video_q, frame)] + [
            (self.audio_q, part) for part in self._split(_int16(frame.audio))
        ]:
            if q.full():  # a stalled browser: drop the oldest, never grow without bound
                q.get_nowait()
            q.put_nowait(item)

    def _split(self, pcm: np.ndarray) -> list[np.ndarray]:
        n = max(1, int(round(self.rate * AUDIO_PTIME)))
        return [pcm[i : i + n] for i in range(0, len(pcm), n)]

    def _consume(self) -> None:
        try:
            for frame in self.session.frames():
                self.loop.call_soon_threadsafe(self._put, frame)
        except Exception as exc:  # noqa: BLE001 - the connection ends; the server goes on
            log.error("serve: session %s failed: %s", self.id, exc)

    async def pump_microphone(self, track: Any) -> None:
        """Push the browser's microphone into the session (int16 mono at the track's rate)."""
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - the track ended
                return
            arr = frame.to_ndarray()
            channels = len(frame.layout.channels)
            pcm = (
                arr.reshape(-1, channels).mean(axis=1)
                if arr.dtype != np.int16 or channels > 1
                else arr.reshape(-1)
            )
            pcm = pcm.astype(np.int16) if pcm.dtype != np.int16 else pcm
            if frame.sample_rate != self.rate:
                import torch

                from lipsynckit.media.resample import resample

                x = torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None]
                pcm = (resample(x, frame.sample_rate, self.rate)[0].numpy() * 32767).astype(np.int16)
            try:
                self.session.push_audio(pcm, self.rate)
            except LipSyncError:  # closed: the connection is going away
                return

    def push_file(self, path: Path) -> None:
        """Push an audio file at real-time pace (20 ms chunks), then flush (a thread of its own)."""
        from lipsynckit.media import load_audio

        x = _int16(load_audio(str(path), sample_rate=self.rate).numpy())

        def run() -> None:
            from lipsynckit.streaming.session import StreamClosedError

            n = int(self.rate * AUDIO_PTIME)
            t = time.perf_counter()
            try:
                for i in range(0, len(x), n):
                    delay = t - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    self.session.push_audio(x[i : i + n], self.rate)
                    t += n / self.rate
                self.session.flush()
            except StreamClosedError:  # the browser went away while the file played
                log.debug("serve: session %s closed during an upload", self.id)

        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        self.session.close()


def create_app(template: str | Path, model: Any, **stream_options: Any) -> Any:
    """The ASGI app: one loaded ``model`` shared by every connection's session on ``template``."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from lipsynckit.streaming.api import stream

    peers: dict[str, tuple[_Peer, Any]] = {}
    stream_options.setdefault("sample_rate", 48000)  # what browsers send and Opus carries
    stream(template, model=model, realtime=True, **stream_options).close()  # prepare the avatar now

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def offer(request: Request) -> JSONResponse:
        params = json.loads(await request.body())
        pc = RTCPeerConnection()
        session = stream(template, model=model, realtime=True, **stream_options)
        peer = _Peer(session, asyncio.get_running_loop())
        peers[peer.id] = (peer, pc)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                asyncio.ensure_future(peer.pump_microphone(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                peer.close()
                peers.pop(peer.id, None)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type=params["type"]))
        pc.addTrack(peer.audio)
        pc.addTrack(peer.video)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return JSONResponse({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "id": peer.id})

    async def upload(request: Request) -> JSONResponse:
        got = peers.get(request.query_params.get("id", ""))
        if got is None:
            return JSONResponse({"error": "unknown session id; connect first"}, status_code=404)
        body = await request.body()
        suffix = Path(request.query_params.get("name", "audio.wav")).suffix or ".wav"
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
            f.write(body)
        try:
            got[0].push_file(Path(f.name))
        except Exception as exc:  # noqa: BLE001 - a bad file is the user's to fix
            return JSONResponse({"error": str(exc)}, status_code=400)
        finally:
            Path(f.name).unlink(missing_ok=True)
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        for peer, pc in list(peers.values()):  # shutdown: every connection and its session
            await pc.close()
            peer.close()
        peers.clear()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/offer", offer, methods=["POST"]),
            Route("/upload", upload, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.peers = peers  # id -> (peer, connection): what a test or an admin page can inspect
    return app


def add_serve_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="local web page: a microphone or an audio file drives the avatar live")
    s.add_argument(
        "--video", default="examples/astronaut.jpg", help="template video or photo (or avatar folder)"
    )
    s.add_argument("--model", default="viseme")
    s.add_argument("--weights")
    s.add_argument("--device")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)


def cmd_serve(args: Any) -> int:
    import uvicorn

    from lipsynckit.api import resolve_model

    model = resolve_model(args.model, args.weights, args.device)
    app = create_app(args.video, model)
    print(f"lipsynckit serve: open http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>lipsynckit live</title>
<style>body{font-family:sans-serif;margin:2em}video{max-width:640px;background:#222}</style></head>
<body>
<h1>lipsynckit live</h1>
<p><button id="mic">Speak (microphone)</button>
<button id="connect">Connect for a file</button>
<input type="file" id="file" accept="audio/*" disabled></p>
<video id="video" autoplay playsinline></video>
<pre id="status">not connected</pre>
<script>
window.lskStatus = {state: "new", videoFrames: 0, audioPackets: 0, audioSamples: 0};
let pc = null, sessionId = null;
async function start(mode) {
  pc = new RTCPeerConnection();
  pc.addTransceiver("video", {direction: "recvonly"});
  if (mode === "mic") {
    const mic = await navigator.mediaDevices.getUserMedia({audio: true});
    mic.getAudioTracks().forEach(t => pc.addTrack(t, mic));
  } else {
    pc.addTransceiver("audio", {direction: "recvonly"});
  }
  const remote = new MediaStream();
  const video = document.getElementById("video");
  pc.ontrack = e => { remote.addTrack(e.track); video.srcObject = remote; video.play().catch(() => {}); };
  pc.onconnectionstatechange = () => { window.lskStatus.state = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(done => {
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") done(); };
  });
  const r = await fetch("/offer", {method: "POST", body: JSON.stringify(
    {sdp: pc.localDescription.sdp, type: pc.localDescription.type, mode})});
  const answer = await r.json();
  sessionId = answer.id;
  await pc.setRemoteDescription(answer);
  document.getElementById("file").disabled = mode !== "file";
  setInterval(poll, 250);
}
async function poll() {
  const stats = await pc.getStats();
  stats.forEach(s => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") window.lskStatus.videoFrames = s.framesDecoded || 0;
    if (s.kind === "audio") { window.lskStatus.audioPackets = s.packetsReceived || 0;
                              window.lskStatus.audioSamples = s.totalSamplesReceived || 0; }
  });
  document.getElementById("status").textContent = JSON.stringify(window.lskStatus);
}
async function upload(file) {
  const r = await fetch("/upload?id=" + sessionId + "&name=" + encodeURIComponent(file.name),
                        {method: "POST", body: file});
  window.lskStatus.upload = (await r.json());
}
document.getElementById("mic").onclick = () => start("mic");
document.getElementById("connect").onclick = () => start("file");
document.getElementById("file").onchange = e => upload(e.target.files[0]);
const auto = new URLSearchParams(location.search).get("auto");
if (auto) start(auto).catch(e => { window.lskStatus.error = String(e); });
</script>
</body></html>
"""
