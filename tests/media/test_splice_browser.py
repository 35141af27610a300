"""Issue 22: smart-rendered MP4s play in a real browser (headless Chromium), not only in FFmpeg.

Real splices made by the project's own code, each with a negative inside its span: of a VideoSink
template (x264 reproduces its SPS/PPS; as .mp4 and as .mov) and of an x264 template with scaling
matrices (not reproducible: the new pictures use a second SPS/PPS appended to ``avcC``, which a player
that reads only the first pair cannot decode). Each is served over loopback HTTP (with ``Range``) to a
page holding a muted ``<video>``, played to the end, then sought to a frame before, inside and after the
re-encoded span; the frame drawn on a canvas must match FFmpeg's decode of the same frame.

Waits are on DOM events (``loadeddata``, ``ended``, ``seeked``) awaited through the DevTools protocol,
never on time. Skips only when no Chromium is installed (CI installs it).
"""

from __future__ import annotations

import base64
import http.server
import re
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from chromium_devtools import CHROMIUM, DevTools, launch_chromium
from splice_templates import negative, sink_template, x264_template

from lipsynckit.media import read_video_frames
from lipsynckit.media.splice import AvcConfig, PacketIndex, splice_video

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (scripts/dev-install.sh installs it)"
    ),
]

PAGE = b"""<!doctype html><html><body>
<video muted playsinline preload="auto"></video><canvas></canvas>
<script>
const v = document.querySelector("video"), cv = document.querySelector("canvas");
const ctx = cv.getContext("2d", {willReadFrequently: true});
function state(extra) {
  const q = v.getVideoPlaybackQuality();
  return Object.assign({
    error: v.error ? {code: v.error.code, message: v.error.message} : null,
    ended: v.ended, duration: v.duration, width: v.videoWidth, height: v.videoHeight,
    total: q.totalVideoFrames, dropped: q.droppedVideoFrames, corrupted: q.corruptedVideoFrames,
  }, extra || {});
}
function once(names) {  // the first of these events, then the state
  return new Promise(ok => {
    const done = e => { for (const n of names) v.removeEventListener(n, done); ok(state({event: e.type})); };
    for (const n of names) v.addEventListener(n, done);
  });
}
window.lsk = {
  load(src) { const p = once(["loadeddata", "error"]); v.src = src; return p; },
  play() { const p = once(["ended", "error"]); v.play().catch(e => {}); return p; },
  grab(t) {
    const p = once(["seeked", "error"]).then(s => {
      cv.width = v.videoWidth; cv.height = v.videoHeight;
      ctx.drawImage(v, 0, 0);
      const d = ctx.getImageData(0, 0, cv.width, cv.height).data;
      let bin = "";
      for (let i = 0; i < d.length; i += 0x8000) bin += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
      s.rgba = btoa(bin);
      return s;
    });
    v.currentTime = t;
    return p;
  },
};
</script></body></html>"""


class _Files(http.server.BaseHTTPRequestHandler):
    """GET of in-memory files, with single byte ranges (Chromium seeks MP4s by range requests)."""

    files: dict[str, tuple[bytes, str]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body, kind = self.files.get(self.path.split("?")[0], (b"", ""))
        if not kind:
            self.send_error(404)
            return
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        start, end = 0, len(body) - 1
        if m and (m[1] or m[2]):
            if m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else end, end)
            else:
                start = max(0, len(body) - int(m[2]))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        try:
            self.wfile.write(body[start : end + 1])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser cancelled a range it no longer needs

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def spliced(
    carphone_mp4: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path, tuple, tuple]]:
    """name -> (spliced MP4, its template, span (c, d), changed frames (a, b))."""
    frames = read_video_frames(carphone_mp4)
    d = tmp_path_factory.mktemp("splice-browser")
    cases = {
        "sink": (sink_template(d / "sink.mp4", frames), (70, 80)),
        "sink-mov": (d / "sink.mp4", (130, 140)),  # a .mov output (segment jobs write both)
        "scaling-matrices": (
            x264_template(d / "cqm.mp4", frames, {"x264-params": "cqm=jvt:keyint=40"}),
            (50, 60),
        ),
    }
    out = {}
    for name, (template, changed) in cases.items():
        index = PacketIndex.read(template)
        (span,) = index.spans([changed])
        path = d / f"{name}-spliced.{'mov' if name.endswith('mov') else 'mp4'}"
        notes = splice_video(index, path, [span], negative(index, [changed]), None)
        with av.open(str(path)) as c:
            n_sps = len(AvcConfig.parse(bytes(c.streams.video[0].codec_context.extradata)).sps)
        # the two paths this test is about: template's parameter sets reused / a second pair added
        assert n_sps == (2 if name == "scaling-matrices" else 1), notes
        assert any("own SPS/PPS" in n for n in notes) == (name == "scaling-matrices"), notes
        out[name] = (path, template, span, changed)
    path, template, span, changed = out["scaling-matrices"]
    out["first-pair-only"] = (_first_pair_only(path, d / "first-pair-only.mp4"), template, span, changed)
    return out


def _first_pair_only(src: Path, dst: Path) -> Path:
    """``src`` with only the template's SPS/PPS in ``avcC``: what a player that reads only the first
    pair would decode the span with (its slices name a parameter set it does not have)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4") as o:
        vin = i.streams.video[0]
        cfg = AvcConfig.parse(bytes(vin.codec_context.extradata))
        vs = o.add_stream_from_template(vin)
        vs.time_base = vin.time_base
        vs.codec_context.extradata = AvcConfig(
            cfg.head, cfg.length_size, cfg.sps[:1], cfg.pps[:1], cfg.tail
        ).to_bytes()
        for p in i.demux(vin):
            if p.size:
                p.stream = vs
                o.mux(p)
    return dst


@pytest.fixture(scope="module")
def browser(
    spliced: dict[str, tuple[Path, Path, tuple, tuple]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevTools]:
    files = {"/": (PAGE, "text/html")}
    kinds = {".mp4": "video/mp4", ".mov": "video/quicktime"}
    files |= {f"/{name}": (p.read_bytes(), kinds[p.suffix]) for name, (p, *_) in spliced.items()}
    handler = type("Files", (_Files,), {"files": files})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    user_dir = tmp_path_factory.mktemp("chrome-splice")
    proc = launch_chromium(user_dir)
    try:
        cdp = DevTools(user_dir)
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.server_address[1]}/")
        cdp.evaluate("new Promise(ok => { const f = () => window.lsk ? ok(true) : setTimeout(f, 50); f(); })")
        h264 = "document.querySelector('video').canPlayType('video/mp4; codecs=\"avc1.640015\"')"
        assert cdp.evaluate(h264), "this Chromium plays no H.264 (a build without proprietary codecs)"
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        proc.wait(30)
        srv.shutdown()
        srv.server_close()


def _frame_times(path: Path) -> tuple[list[float], Fraction]:
    """Each display frame's presentation time in seconds, as FFmpeg reports it, and the frame rate."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = sorted(float(f.time) for f in c.decode(s))
        return times, Fraction(s.average_rate)


@pytest.mark.parametrize("name", ["sink", "scaling-matrices", "sink-mov"])
def test_spliced_mp4_plays_in_chromium_and_shows_ffmpegs_pictures(
    browser: DevTools, spliced: dict[str, tuple[Path, Path, tuple, tuple]], name: str
) -> None:
    cdp = browser
    path, template_path, (c, d), (a, b) = spliced[name]
    ffmpeg, template = read_video_frames(path), read_video_frames(template_path)
    n, h, w, _ = ffmpeg.shape
    times, fps = _frame_times(path)

    st = cdp.evaluate(f"lsk.load('/{name}')", timeout_s=120)
    assert st["error"] is None and st["event"] == "loadeddata", st
    assert (st["width"], st["height"]) == (w, h), st
    st = cdp.evaluate("lsk.play()", timeout_s=240)
    assert st["error"] is None and st["event"] == "ended" and st["ended"], st
    assert st["corrupted"] == 0, st
    # every frame went through the decoder (dropped ones are counted in the total too)
    assert 0.9 * n <= st["total"] <= n + 2, (st, n)

    # a copied frame before the span, a new (negative) one inside, a copied one after the join
    for k in (max(0, c - 10), (a + b) // 2, min(n - 1, d + 5)):
        t = times[k] - times[0] + 0.5 / float(fps)  # the middle of frame k's display interval
        st = cdp.evaluate(f"lsk.grab({t})", timeout_s=120)
        assert st["error"] is None and st["event"] == "seeked", {x: st[x] for x in st if x != "rgba"}
        rgba = np.frombuffer(base64.b64decode(st.pop("rgba")), np.uint8).reshape(h, w, 4)
        got = rgba[..., :3].astype(int)
        # the browser's YUV->RGB differs from FFmpeg's by about a level; a wrong SPS/PPS gives garbage
        # (tens of levels)
        assert np.abs(got - ffmpeg[k]).mean() < 4, (name, k)
        # and it is the picture the splice meant: the negative inside the change, else the template's
        # (to codec tolerance: the span's pictures were encoded again)
        want = 255 - template[k].astype(int) if a <= k < b else template[k]
        assert np.abs(got - want).mean() < 6, (name, k)
        assert np.abs(got - (template[k] if a <= k < b else 255 - template[k].astype(int))).mean() > 50


def test_the_check_fails_on_a_splice_without_its_own_parameter_sets(
    browser: DevTools, spliced: dict[str, tuple[Path, Path, tuple, tuple]]
) -> None:
    """The same splice with the second SPS/PPS left out of ``avcC``: Chromium stops with a decode error
    at the span (so the test above would fail on it); the template's frames before it still load."""
    path, *_ = spliced["first-pair-only"]
    with av.open(str(path)) as c:
        assert len(AvcConfig.parse(bytes(c.streams.video[0].codec_context.extradata)).sps) == 1
    st = browser.evaluate("lsk.load('/first-pair-only')", timeout_s=120)
    assert st["error"] is None and st["event"] == "loadeddata", st
    st = browser.evaluate("lsk.play()", timeout_s=240)
    assert st["event"] == "error" and st["error"]["code"] == 3, st  # MEDIA_ERR_DECODE
