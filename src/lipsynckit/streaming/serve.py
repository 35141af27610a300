"""``lipsynckit serve``: a local web page where a microphone or an uploaded audio file drives the avatar.

An ASGI app (starlette, run by uvicorn) with one page and two endpoints: ``POST /offer`` takes the
browser's WebRTC offer and answers it (aiortc): each connection is one real-time streaming session,
whose frames go out as a video track and their own audio as an audio track (the same frame's samples,
so picture and sound stay together); the browser's microphone track, when sent, is pushed into the
session. ``POST /upload?id=...`` takes an audio file and pushes it at real-time pace; the page pings
``POST /ping?id=...`` every second and a connection that stops is closed within ``peer_timeout_s``.
Binds to the loopback address by default: it is a local tool. Bound elsewhere it requires a token
(made up and printed in the URL unless ``--token`` is given) and checks each POST's Origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import hmac
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
from pydantic import BaseModel, ConfigDict, Field

from lipsynckit.errors import LipSyncError

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
AUDIO_PTIME = 0.02  # seconds per outgoing audio frame (what WebRTC Opus encoders expect)


# A microphone cannot pause: audio that reaches the session in a burst (after the event loop stalled)
# would stay queued for the rest of the connection. So, while more than MIC_QUIET_QUEUE_S is queued,
# quiet packets are not pushed (pauses get shorter), and beyond MIC_HARD_QUEUE_S none are. The session
# itself still plays every sample it is given; this is the transport's choice of what to give it.
MIC_QUIET_QUEUE_S = 0.4
MIC_HARD_QUEUE_S = 1.0
MIC_QUIET_RMS = 0.01 * 32768  # about -40 dBFS in int16


def _quiet(pcm: np.ndarray) -> bool:
    return bool(pcm.size == 0 or np.sqrt(np.mean(pcm.astype(np.float32) ** 2)) < MIC_QUIET_RMS)


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
        self.last_seen = time.monotonic()  # the page's last /ping (or the offer)
        self.uploading = False  # one uploaded file at a time
        self.mic_trimmed_s = 0.0  # microphone audio not pushed to catch up after a burst
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
        """Push the browser's microphone into the session (int16 mono at the session's rate)."""
        resampler: Any = None
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
            if frame.sample_rate != self.rate:  # one stream resampler per track (soxr, no torch)
                if resampler is None or resampler.orig_sr != frame.sample_rate:
                    from lipsynckit.streaming.audio import StreamResampler

                    resampler = StreamResampler(frame.sample_rate, self.rate)
                y = resampler.push(pcm.astype(np.float32) / 32768.0)
                pcm = (np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)
            queued = self.session.queued_seconds
            if queued > MIC_HARD_QUEUE_S or (queued > MIC_QUIET_QUEUE_S and _quiet(pcm)):
                self.mic_trimmed_s += len(pcm) / self.rate  # a burst after a stall: catch up
                continue
            try:
                self.session.push_audio(pcm, self.rate)
            except LipSyncError as exc:
                if not self.session.closed:  # closed: the connection is going away (not news)
                    log.warning("serve: session %s: the microphone stopped: %s", self.id, exc)
                return

    def push_file(self, path: Path) -> None:
        """Push an audio file at real-time pace (20 ms chunks), then flush (a thread of its own)."""
        from lipsynckit.media import load_audio

        x = _int16(load_audio(str(path), sample_rate=self.rate).numpy())
        self.uploading = True

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
            finally:
                self.uploading = False

        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        self.session.close()


class ServeOptions(BaseModel):
    """What ``serve`` accepts from the network (bounded, so one client cannot exhaust the server)."""

    model_config = ConfigDict(extra="forbid")

    max_offer_bytes: int = Field(
        default=64 * 1024, gt=0, description="largest /offer body (an SDP is a few KB)"
    )
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0, description="largest uploaded audio file")
    peer_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        description="a connection whose page has not pinged for this long is closed with its session",
    )
    token: str | None = Field(
        default=None, description="required on every request when set (made up for non-loopback binds)"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="extra Origins allowed to POST (the page's own origin, the Host it was served from, "
        "always is)",
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(message: str, status: int) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


async def _read_bounded(request: Any, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    parts: list[bytes] = []
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _public(exc: BaseException, *hide: str) -> str:
    """An error's first line for a client: the library's message without the server's paths."""
    text = exc.message if isinstance(exc, LipSyncError) else str(exc)
    text = text.splitlines()[0] if text else type(exc).__name__
    for h in hide:
        if h:
            text = text.replace(h, "<upload>")
    return text


def create_app(
    template: str | Path, model: Any, *, service: ServeOptions | None = None, **stream_options: Any
) -> Any:
    """The ASGI app: one loaded ``model`` shared by every connection's session on ``template``.

    Service rules (``service``): bodies are bounded (413); a malformed ``/offer`` is a 400 and leaves
    no session; one uploaded file plays at a time per connection (409 while one plays: interrupt or
    wait); connections whose page stops pinging ``/ping`` are closed within ``peer_timeout_s`` (plus the
    reaper's one-second beat); a POST from another Origin is refused (403); with a token every
    request must carry it (``?token=`` or the ``X-LSK-Token`` header, 401 without).
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from lipsynckit.streaming.api import stream

    opts = service or ServeOptions()
    peers: dict[str, tuple[_Peer, Any]] = {}
    stream_options.setdefault("sample_rate", 48000)  # what browsers send and Opus carries
    stream(template, model=model, realtime=True, **stream_options).close()  # prepare the avatar now

    def refused(request: Request) -> Response | None:
        if opts.token is not None:
            given = request.query_params.get("token") or request.headers.get("x-lsk-token")
            if not given or not hmac.compare_digest(given, opts.token):
                return _error("a token is required: open the URL the server printed", 401)
        origin = request.headers.get("origin")
        if request.method == "POST" and origin is not None:
            host = request.headers.get("host", "")
            allowed = {f"http://{host}", f"https://{host}", *opts.allowed_origins}
            if origin not in allowed:
                return _error(f"origin {origin} is not allowed", 403)
        return None

    def drop_peer(pid: str) -> None:
        """Close a connection's session now and its WebRTC connection on the server's loop."""
        got = peers.pop(pid, None)
        if got is None:
            return
        peer, pc = got
        peer.close()

        async def close_pc() -> None:
            with contextlib.suppress(Exception):
                await pc.close()

        peer.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(close_pc()))

    async def close_peer(pid: str) -> None:
        got = peers.get(pid)
        drop_peer(pid)
        if got is not None:
            with contextlib.suppress(Exception):
                await got[1].close()

    def reap(now: float | None = None) -> list[str]:
        """Close connections whose page has not pinged within ``peer_timeout_s``; their ids."""
        now = time.monotonic() if now is None else now
        stale = [pid for pid, (peer, _pc) in peers.items() if now - peer.last_seen > opts.peer_timeout_s]
        for pid in stale:
            log.info("serve: connection %s lost (no ping for %.1f s): closed", pid, opts.peer_timeout_s)
            drop_peer(pid)
        return stale

    async def index(request: Request) -> Response:
        return refused(request) or HTMLResponse(PAGE)

    async def offer(request: Request) -> Response:
        bad = refused(request)
        if bad is not None:
            return bad
        body = await _read_bounded(request, opts.max_offer_bytes)
        if body is None:
            return _error(f"offer larger than {opts.max_offer_bytes} bytes", 413)
        try:
            params = json.loads(body)
            sdp, kind = params["sdp"], params["type"]
            if not isinstance(sdp, str) or kind != "offer" or "m=" not in sdp:
                raise ValueError("not a WebRTC offer")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(f"malformed offer: {_public(exc)}", 400)
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection()
        microphones: list[Any] = []  # tracks arrive during setRemoteDescription, before the session

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                microphones.append(track)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:  # noqa: BLE001 - the client's SDP: a 400, and nothing left running
            await pc.close()
            return _error(f"malformed offer: {_public(exc)}", 400)
        session = stream(template, model=model, realtime=True, **stream_options)
        peer = _Peer(session, asyncio.get_running_loop())
        peers[peer.id] = (peer, pc)
        for track in microphones:
            asyncio.ensure_future(peer.pump_microphone(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await close_peer(peer.id)

        try:
            pc.addTrack(peer.audio)
            pc.addTrack(peer.video)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # noqa: BLE001
            await close_peer(peer.id)
            return _error(f"could not answer the offer: {_public(exc)}", 400)
        return JSONResponse({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "id": peer.id})

    async def ping(request: Request) -> Response:
        bad = refused(request)
        if bad is not None:
            return bad
        got = peers.get(request.query_params.get("id", ""))
        if got is None:
            return _error("unknown session id; connect first", 404)
        got[0].last_seen = time.monotonic()
        return JSONResponse({"ok": True})

    async def upload(request: Request) -> Response:
        bad = refused(request)
        if bad is not None:
            return bad
        got = peers.get(request.query_params.get("id", ""))
        if got is None:
            return _error("unknown session id; connect first", 404)
        peer = got[0]
        if peer.uploading:
            return _error("an uploaded file is still playing on this connection; wait for it to end", 409)
        body = await _read_bounded(request, opts.max_upload_bytes)
        if body is None:
            return _error(f"upload larger than {opts.max_upload_bytes} bytes", 413)
        suffix = Path(request.query_params.get("name", "audio.wav")).suffix[:8] or ".wav"
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
            f.write(body)
        try:
            peer.push_file(Path(f.name))
        except Exception as exc:  # noqa: BLE001 - a bad file is the user's to fix
            return _error(f"could not play the upload: {_public(exc, f.name, str(Path(f.name).parent))}", 400)
        finally:
            Path(f.name).unlink(missing_ok=True)
        return JSONResponse({"ok": True})

    async def reaper() -> None:
        while True:
            await asyncio.sleep(1.0)
            reap()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.ensure_future(reaper())
        yield
        task.cancel()
        for pid in list(peers):  # shutdown: every connection and its session
            await close_peer(pid)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/offer", offer, methods=["POST"]),
            Route("/ping", ping, methods=["POST"]),
            Route("/upload", upload, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.peers = peers  # id -> (peer, connection): what a test or an admin page can inspect
    app.state.reap = reap
    app.state.service = opts
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
    s.add_argument("--port", type=int, default=8000, help="port (0: any free one; the real one is printed)")
    s.add_argument("--max-upload-mb", type=float, default=20.0, help="largest uploaded audio file")
    s.add_argument("--peer-timeout", type=float, default=5.0, help="seconds without a ping before a reap")
    s.add_argument("--token", help="require this token (one is made up when --host is not loopback)")
    s.add_argument("--allow-origin", action="append", default=[], help="another Origin allowed to POST")
    s.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    s.set_defaults(func=cmd_serve)


def bind(host: str, port: int) -> Any:
    """A listening socket on ``host:port``, or one LipSyncError line (before anything loads)."""
    import socket

    if not 0 <= port <= 65535:
        raise LipSyncError(f"--port {port} is not a port (0-65535)", stage="serve", remedy="e.g. --port 8000")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise LipSyncError(f"--host {host}: {exc.strerror or exc}", stage="serve") from exc
    family, _t, _p, _c, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise LipSyncError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            stage="serve",
            remedy="pick another --port (0 picks a free one)",
        ) from exc
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: Any) -> int:
    import secrets

    import uvicorn

    from lipsynckit.api import resolve_model
    from lipsynckit.registry import get_plugin
    from lipsynckit.streaming.features import check_streamable
    from lipsynckit.streaming.threads import set_stream_threads

    if args.model != "auto":
        check_streamable(args.model, get_plugin(args.model))  # latentsync: refused before any weight loads
    token = args.token
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(16)
    service = ServeOptions(
        max_upload_bytes=max(1, int(args.max_upload_mb * 1024 * 1024)),
        peer_timeout_s=args.peer_timeout,
        token=token,
        allowed_origins=args.allow_origin,
    )
    sock = bind(args.host, args.port)  # port errors before the model loads
    try:
        set_stream_threads(args.threads)
        model = resolve_model(args.model, args.weights, args.device)
        app = create_app(args.video, model, service=service)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        query = f"?token={token}" if token else ""
        print(f"lipsynckit serve: open http://{shown}:{port}/{query}", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        server.run(sockets=[sock])
    finally:
        sock.close()
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
const token = new URLSearchParams(location.search).get("token");
const q = token ? "&token=" + encodeURIComponent(token) : "";
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
  const r = await fetch("/offer?" + q.slice(1), {method: "POST", body: JSON.stringify(
    {sdp: pc.localDescription.sdp, type: pc.localDescription.type, mode})});
  const answer = await r.json();
  sessionId = answer.id;
  await pc.setRemoteDescription(answer);
  document.getElementById("file").disabled = mode !== "file";
  setInterval(poll, 250);
  setInterval(() => fetch("/ping?id=" + sessionId + q, {method: "POST"}).catch(() => {}), 1000);
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
  const r = await fetch("/upload?id=" + sessionId + "&name=" + encodeURIComponent(file.name) + q,
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
