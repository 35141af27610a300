"""Segment jobs on an H.264 MP4 template: only the GOPs around a segment are re-encoded.

Outside those GOPs the output's video packets are the template's (bytes, pts, dts) and decode to the
template's pictures bit for bit; likewise the AAC packets outside a few frames around each segment.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.logging
import numpy as np
import pytest

import lipsynckit as lsk
from lipsynckit.jobs import Segment, sync_segments
from lipsynckit.media import VideoSink, VideoSource, index_map, read_audio_track, read_video_frames
from lipsynckit.options import SyncOptions

FPS = 30000 / 1001


@pytest.fixture(scope="module")
def mp4_template(talking_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The talking carphone played forwards and backwards (8 s) as VideoSink writes it: key frames every 2 s."""
    src = VideoSource(talking_template)
    frames = read_video_frames(talking_template)
    audio = lsk.load_audio(str(talking_template))
    n = 240
    audio = lsk.AudioClip(audio.samples.repeat(1, 2), audio.sample_rate).slice(0, n / FPS)
    out = tmp_path_factory.mktemp("mp4tpl") / "talking.mp4"
    with VideoSink(out, fps=src.fps_fraction, size=(176, 144), audio=audio) as sink:
        for i in index_map(n, len(frames), "pingpong"):
            sink.write(frames[int(i)])
    return out


def _packets(path: Path) -> list[tuple[int, int, bytes]]:
    with av.open(str(path)) as c:
        return [(int(p.pts), int(p.dts), bytes(p)) for p in c.demux(video=0) if p.size]


def _audio_packets(path: Path) -> list[tuple[int, int, int, bytes]]:
    with av.open(str(path)) as c:
        return [(int(p.pts), int(p.dts), int(p.duration), bytes(p)) for p in c.demux(audio=0) if p.size]


def test_segments_re_encode_only_their_gops(
    mp4_template: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "greeting.mp4"
    segs = [Segment(start=0.0, end=0.5, offset=0.2), Segment(start=5.8, end=6.3, offset=1.0)]
    model = lsk.load_model("viseme")
    result = sync_segments(mp4_template, speech_wavs[4], segs, model, out, SyncOptions(progress=False))
    assert any("H.264 smart render" in n for n in result.notes), result.notes
    assert result.frames == 240 and result.frames_with_face > 0
    # frames 0..14 lie in the GOP [0, 60); 174..188 span the key frame at 180, so [c, 240) is re-encoded
    # with c at most one B-frame group (4 pictures) before 174
    a, b = round(5.8 * FPS), round(6.3 * FPS)
    src, got = _packets(mp4_template), _packets(out)
    assert len(got) == len(src) == 240
    differ = [k for k in range(240) if got[k] != src[k]]
    assert differ and set(differ) <= set(range(60)) | set(range(a - 4, 240))
    assert 0 in differ and a in differ and 239 in differ
    assert got[60 : a - 4] == src[60 : a - 4]
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture() as logs:
            frames = read_video_frames(out)
    finally:
        av.logging.set_level(None)
    assert not logs, logs[:3]
    tmpl = read_video_frames(mp4_template)
    assert frames.shape == tmpl.shape
    assert np.array_equal(frames[60 : a - 4], tmpl[60 : a - 4])
    moved = [k for k in range(a, b) if np.abs(frames[k].astype(int) - tmpl[k]).mean() > 1.0]
    assert len(moved) > (b - a) // 2  # the mouth moved in the segment
    outside = np.concatenate([frames[20:60], frames[b:]]).astype(np.float64)
    ref = np.concatenate([tmpl[20:60], tmpl[b:]])
    psnr = 10 * np.log10(255.0**2 / np.mean((outside - ref) ** 2))
    assert psnr > 35, psnr  # re-encoded but unchanged pictures: the template to codec tolerance
    # audio: the template's AAC packets, but those within 3 AAC frames of a segment (re-encoded)
    ta, oa = _audio_packets(mp4_template), _audio_packets(out)
    assert [p[:3] for p in oa] == [p[:3] for p in ta]  # pts, dts, duration
    near = [(0, round(0.5 * 16000)), (round(a / FPS * 16000), round(b / FPS * 16000))]
    differ_a = [p[0] for p, q in zip(ta, oa, strict=True) if p != q]
    assert differ_a and all(any(s0 - 3 * 1024 <= t <= s1 + 3 * 1024 for s0, s1 in near) for t in differ_a)
    t_audio, o_audio = read_audio_track(mp4_template), read_audio_track(out)
    assert o_audio.num_samples == t_audio.num_samples and o_audio.sample_rate == 16000
    x, y = t_audio.samples[0].numpy(), o_audio.samples[0].numpy()
    far = np.ones(x.shape[0], bool)
    for s0, s1 in near:
        far[max(0, s0 - 5 * 1024) : s1 + 5 * 1024] = False
    assert np.abs(x[far] - y[far]).max() < 1e-3  # the same packets decode alike (AAC noise fill aside)
    assert np.mean(x[far] == y[far]) > 0.99
    sa, sb = near[1]
    speech = lsk.load_audio(str(speech_wavs[4])).samples[0].numpy()[16000 + 160 :][: sb - sa - 320]
    corr = float(np.corrcoef(y[sa + 160 : sb - 160], speech)[0, 1])
    assert corr > 0.95, corr  # the segment says the row's audio (from 1.0 s), to AAC tolerance


@pytest.mark.parametrize("kind", ["FFV1", "VP9"])
def test_other_templates_fall_back_to_a_whole_re_encode_with_a_note(
    kind: str, talking_template: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    template = talking_template
    if kind == "VP9":
        src = VideoSource(talking_template)
        template = tmp_path / "talking.webm"
        with VideoSink(
            template,
            fps=src.fps_fraction,
            size=(176, 144),
            audio=lsk.load_audio(str(talking_template)),
            mode="webm",
        ) as sink:
            for f in read_video_frames(talking_template):
                sink.write(f)
    out = tmp_path / "greeting.mp4"
    result = sync_segments(
        template,
        speech_wavs[4],
        [Segment(start=1.0, end=1.5)],
        lsk.load_model("viseme"),
        out,
        SyncOptions(progress=False),
    )
    assert f"template is {kind}: whole template re-encoded" in result.notes
    assert read_video_frames(out).shape == (120, 144, 176, 3)


def test_a_splice_that_fails_midway_leaves_no_partial_and_re_encodes_whole(
    mp4_template: Path, speech_wavs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A span the encoder cannot place (found only while writing) aborts the spliced file, then the
    job takes the whole re-encode path and says why."""
    import lipsynckit.media.splice as splice

    def refuse(*args: object, **kwargs: object) -> None:
        raise splice.SpliceUnsupported("span 60-120: the encoder reorders more than the template")

    monkeypatch.setattr(splice, "_write_span", refuse)
    out = tmp_path / "greeting.mp4"
    result = sync_segments(
        mp4_template,
        speech_wavs[4],
        [Segment(start=2.5, end=3.0)],
        lsk.load_model("viseme"),
        out,
        SyncOptions(progress=False),
    )
    assert any("reorders more than the template: whole template re-encoded" in n for n in result.notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greeting.mp4"]  # no partial file left
    got, src = _packets(out), _packets(mp4_template)
    assert len(got) == 240 and got[:60] != src[:60]  # re-encoded whole: not even the first GOP copied
    a, b = round(2.5 * FPS), round(3.0 * FPS)
    frames, tmpl = read_video_frames(out), read_video_frames(mp4_template)
    assert (
        np.abs(frames[a:b].astype(int) - tmpl[a:b]).mean() > np.abs(frames[:a].astype(int) - tmpl[:a]).mean()
    )


def test_a_cold_job_tracks_faces_only_around_its_segment(
    mp4_template: Path, speech_wavs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lipsynckit.jobs.segments as segments

    seen: list[tuple[int, int]] = []
    real = segments.track_source

    def spy(video: Path, num_frames: int, *args: object, first_frame: int = 0, **kw: object):  # noqa: ANN202
        seen.append((first_frame, first_frame + num_frames))
        return real(video, num_frames, *args, first_frame=first_frame, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(segments, "track_source", spy)
    result = sync_segments(
        mp4_template,
        speech_wavs[4],
        [Segment(start=4.0, end=5.0)],
        lsk.load_model("viseme"),
        tmp_path / "cold.mp4",
        SyncOptions(progress=False),
    )
    a, b = round(4.0 * FPS), round(5.0 * FPS)
    assert seen == [(a - 2, b + 2)]  # the segment and the smoother's half window, not the template
    assert result.frames_with_face == b - a
