"""Segment jobs on real media: outside the segments the output IS the template (frames and audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lipsynckit as lsk
from lipsynckit.jobs import Segment, splice_audio, sync_segments
from lipsynckit.media import read_audio_track, read_video_frames
from lipsynckit.options import SyncOptions
from lipsynckit.types import AudioClip

FPS = 30000 / 1001


def test_splice_keeps_base_outside_and_fades_inside() -> None:
    base = AudioClip(torch.linspace(-0.5, 0.5, 1600).repeat(2, 1), 16000)  # stereo template track
    piece = AudioClip(torch.full((1, 8000), 0.25), 8000)  # other rate, mono, 0.25 s longer than needed
    out = splice_audio(base, [(400, 1200, piece)], fade_s=0.005)
    s, b = out.samples, base.samples
    assert s.shape == b.shape and out.sample_rate == 16000  # no drift: same length and rate
    assert torch.equal(s[:, :400], b[:, :400]) and torch.equal(s[:, 1200:], b[:, 1200:])
    assert torch.allclose(s[:, 480:1120], torch.full((2, 640), 0.25), atol=1e-3)  # resampled piece
    ramp = s[0, 400:480]  # 5 ms fade moves from the template towards the piece
    assert abs(float(ramp[0]) - float(b[0, 400])) < 0.02 and abs(float(ramp[-1]) - 0.25) < 0.02


def _run(template: Path, audio: Path, out: Path, **opts: object) -> lsk.SyncResult:
    model = lsk.load_model("viseme")
    segs = [Segment(start=1.0, end=2.5, offset=0.3)]
    return sync_segments(template, audio, segs, model, out, SyncOptions(progress=False, **opts))


def test_lossless_segment_job_is_the_template_outside_the_segment(
    talking_template: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "greeting.mkv"
    result = _run(talking_template, speech_wavs[4], out)
    a, b = round(1.0 * FPS), round(2.5 * FPS)  # frames 30..75 re-synced
    assert result.frames == 120 and result.frames_with_face > 0
    tmpl, got = read_video_frames(talking_template), read_video_frames(out)
    assert got.shape == tmpl.shape
    assert np.array_equal(got[:a], tmpl[:a]) and np.array_equal(got[b:], tmpl[b:])
    changed = [k for k in range(a, b) if not np.array_equal(got[k], tmpl[k])]
    assert len(changed) > (b - a) // 2  # the mouth moved in the segment
    # the audio is the template's own track outside, the row's audio (from 0.3 s) inside
    t_audio, o_audio, speech = (
        read_audio_track(talking_template),
        read_audio_track(out),
        lsk.load_audio(str(speech_wavs[4])),
    )
    assert o_audio.sample_rate == t_audio.sample_rate == 16000
    assert o_audio.num_samples == t_audio.num_samples
    sa, sb = round(a / FPS * 16000), round(b / FPS * 16000)
    assert torch.equal(o_audio.samples[:, :sa], t_audio.samples[:, :sa])
    assert torch.equal(o_audio.samples[:, sb:], t_audio.samples[:, sb:])
    fade = 160  # 10 ms
    inner = o_audio.samples[0, sa + fade : sb - fade]
    src = speech.samples[0, round(0.3 * 16000) + fade :][: inner.numel()]
    assert torch.equal(inner, src)


@pytest.mark.timeout(300)
def test_mp4_segment_job_matches_the_template_to_codec_tolerance(
    talking_template: Path, speech_wavs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "greeting.mp4"
    _run(talking_template, speech_wavs[4], out, crf=12)
    a, b = round(1.0 * FPS), round(2.5 * FPS)
    tmpl, got = read_video_frames(talking_template).astype(np.int16), read_video_frames(out).astype(np.int16)
    outside = np.concatenate([got[:a] - tmpl[:a], got[b:] - tmpl[b:]]).astype(np.float64)
    inside = np.abs(got[a:b] - tmpl[a:b])
    psnr = 10 * np.log10(255.0**2 / np.mean(outside**2))
    assert psnr > 35, psnr  # H.264 at crf 12 and yuv420p chroma: the template, to codec tolerance
    assert inside.mean() > np.abs(outside).mean()  # the segment's mouth moved
    t_audio, o_audio = read_audio_track(talking_template), read_audio_track(out)
    n = min(t_audio.num_samples, o_audio.num_samples)
    sa = round(a / FPS * 16000)
    x, y = t_audio.samples[0, 1000:sa].numpy(), o_audio.samples[0, 1000:sa].numpy()
    assert abs(o_audio.duration - t_audio.duration) < 0.05 and n > 0
    corr = float(np.corrcoef(x, y)[0, 1])
    assert corr > 0.98, corr  # AAC: the same waveform, aligned, to the codec's tolerance
