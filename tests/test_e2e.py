"""End to end on real media with the built-in weight-free model (what a fresh machine can do)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from lipsynckit.cli import main
from lipsynckit.media import load_audio, read_video_frames


def _streams(path: Path) -> dict[str, float]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out = {"fps": float(v.average_rate), "width": v.codec_context.width, "height": v.codec_context.height}
        out["audio"] = float(len(c.streams.audio))
        out["frames"] = float(sum(1 for _ in c.decode(video=0)))
    return out


def test_photo_and_speech_make_a_talking_video(astronaut_png: Path, speech_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "talk.mp4"
    assert main(["-q", "sync", str(astronaut_png), str(speech_wav), "-o", str(out), "--model", "viseme"]) == 0
    s = _streams(out)
    audio = load_audio(speech_wav)
    assert s["audio"] == 1
    assert s["fps"] == pytest.approx(25.0)
    assert abs(s["frames"] / 25.0 - audio.duration) <= 1 / 25.0
    frames = read_video_frames(out)
    # the mouth moves: frames are not all the same
    assert np.abs(frames.astype(int) - frames[0].astype(int)).max() > 20


def test_carphone_keeps_fps_size_and_follows_audio(
    carphone_mp4: Path, speech_wav: Path, tmp_path: Path
) -> None:
    out = tmp_path / "carphone.mp4"
    assert main(["-q", "sync", str(carphone_mp4), str(speech_wav), "-o", str(out), "--model", "viseme"]) == 0
    s = _streams(out)
    src = _streams(carphone_mp4)
    audio = load_audio(speech_wav)
    assert s["fps"] == pytest.approx(src["fps"], rel=1e-4)
    assert (s["width"], s["height"]) == (src["width"], src["height"])
    assert abs(s["frames"] / s["fps"] - audio.duration) <= 1 / s["fps"]
    assert s["audio"] == 1
    assert b"cabac=1" in out.read_bytes()  # x264 writes its settings into the stream: preset medium
    fast = tmp_path / "fast.mp4"
    args = ["-q", "sync", str(carphone_mp4), str(speech_wav), "-o", str(fast), "--model", "viseme"]
    assert main([*args, "--preset", "ultrafast"]) == 0
    assert b"cabac=0" in fast.read_bytes() and _streams(fast)["frames"] == s["frames"]


def test_lossless_output_keeps_pixels_outside_the_face(
    carphone_mp4: Path, speech_wav: Path, tmp_path: Path
) -> None:
    out = tmp_path / "carphone.mkv"
    stats = tmp_path / "stats.json"
    rc = main(
        [
            "-q",
            "sync",
            str(carphone_mp4),
            str(speech_wav),
            "-o",
            str(out),
            "--model",
            "viseme",
            "--lossless",
            "--length-mode",
            "loop",  # output frame k shows source frame k % 120
            "--json",
            str(stats),
        ]
    )
    assert rc == 0
    src = read_video_frames(carphone_mp4)
    got = read_video_frames(out)
    changed = np.any(got != src[np.arange(len(got)) % len(src)], axis=-1)  # (N, H, W)
    assert changed.any()
    # every changed pixel lies inside the lower-centre part of the frame where the face is
    ys, xs = np.nonzero(changed.any(axis=0))
    h, w = src.shape[1:3]
    assert ys.min() > h * 0.2 and xs.min() > w * 0.1 and xs.max() < w * 0.95
    # a changed region is a small part of the frame
    assert changed.mean() < 0.1
    info = json.loads(stats.read_text())
    assert info["frames_with_face"] >= 0.9 * info["frames"]
    sched = info["scheduler"]  # per-stage report of the batching scheduler
    # the model saw every frame with a face except those the voice-activity gate kept at rest
    assert sched["items"] == info["frames_with_face"] - info["model_calls_skipped"] and sched["batches"] >= 1
    assert 0 < sched["mean_batch_fill"] <= 1 and 0 <= sched["device_busy_fraction"] <= 1
    assert "generate" in sched["stage_s"]
    # per-frame faces, compact columns: the source frame shown, its box and landmarks
    faces = info["faces"]
    assert faces["source"] == [k % len(src) for k in range(len(got))]
    assert len(faces["box"]) == len(faces["landmarks"]) == len(got)
    assert sum(b is not None for b in faces["box"]) == info["frames_with_face"]
    assert sched["frame_queue_frames"] >= 2  # the frame queue's length came from its byte budget
    for k in np.nonzero(changed.any(axis=(1, 2)))[0]:  # where the mouth was drawn, the box is around it
        x1, y1, x2, y2 = faces["box"][k]
        cy, cx = np.argwhere(changed[k]).mean(axis=0)
        assert x1 <= cx <= x2 and y1 <= cy <= y2
        if faces["landmarks"][k] is not None:
            pts = np.reshape(faces["landmarks"][k], (-1, 2))
            assert len(pts) == faces["landmark_points"]
            assert (pts[:, 0] > x1 - 5).all() and (pts[:, 0] < x2 + 5).all()


def test_mouth_motion_follows_speech(astronaut_png: Path, speech_wavs: list[Path], tmp_path: Path) -> None:
    """Two real sentences with a 0.8 s pause: motion tracks the envelope and the mouth is shut in the pause."""
    import cv2
    import soundfile as sf

    import lipsynckit as lsk

    a = load_audio(speech_wavs[0], sample_rate=16000).numpy()
    b = load_audio(speech_wavs[1], sample_rate=16000).numpy()
    pause = np.zeros(int(0.8 * 16000), dtype=np.float32)
    audio = np.concatenate([a, pause, b])
    wav = tmp_path / "speech_pause.wav"
    sf.write(wav, audio, 16000)
    out = tmp_path / "a.mkv"
    r = lsk.sync(astronaut_png, wav, model="viseme", output=out, progress=False)
    frames = read_video_frames(out).astype(np.float32)
    photo = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB).astype(np.float32)
    motion = np.abs(frames - photo[None]).reshape(len(frames), -1).mean(1)
    hop = len(audio) / len(frames)
    env = np.array(
        [np.sqrt(np.mean(audio[int(i * hop) : int((i + 1) * hop)] ** 2)) for i in range(len(frames))]
    )
    r_corr = np.corrcoef(motion, env)[0, 1]
    assert r_corr > 0.4, r_corr
    # inside the pause, once the mouth has had 5 frames to close, the face is exactly the source
    p0 = int(np.ceil(len(a) / 16000 * 25)) + 5
    p1 = int(np.floor((len(a) + len(pause)) / 16000 * 25)) - 1
    assert p1 - p0 >= 8
    assert np.all(motion[p0:p1] == 0), motion[p0:p1]
    assert motion[env > 0.2 * env.max()].mean() > 0.05
    assert r.frames == len(frames)


# --- bad input: one clear error each, non-zero exit, no partial output ------------------------


def _fails(args: list[str], capsys: pytest.CaptureFixture[str], out: Path, needle: str) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0
    assert needle in err.lower(), err
    assert "Traceback" not in err
    assert err.count("error:") == 1
    assert not out.exists()
    assert not any(p.name.startswith(out.name) for p in out.parent.iterdir()), list(out.parent.iterdir())
    return err


def test_photo_without_face(
    no_face_jpg: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o" / "x.mp4"
    out.parent.mkdir()
    err = _fails(
        ["sync", str(no_face_jpg), str(speech_wav), "-o", str(out), "--model", "viseme"],
        capsys,
        out,
        "no face",
    )
    assert str(no_face_jpg) in err


def test_corrupt_video(
    carphone_mp4: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(carphone_mp4.read_bytes()[:3000])
    out = tmp_path / "o" / "x.mp4"
    out.parent.mkdir()
    err = _fails(
        ["sync", str(bad), str(speech_wav), "-o", str(out), "--model", "viseme"], capsys, out, "corrupt.mp4"
    )
    assert "video" in err.lower()


def test_empty_and_silent_audio(
    astronaut_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000)
    out = tmp_path / "o" / "x.mp4"
    out.parent.mkdir()
    _fails(
        ["sync", str(astronaut_png), str(empty), "-o", str(out), "--model", "viseme"],
        capsys,
        out,
        "empty.wav",
    )
    _fails(
        ["sync", str(astronaut_png), str(silent), "-o", str(out), "--model", "viseme"], capsys, out, "silent"
    )


def test_missing_file(astronaut_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o" / "x.mp4"
    out.parent.mkdir()
    _fails(["sync", str(astronaut_png), str(tmp_path / "nope.wav"), "-o", str(out)], capsys, out, "not found")


def test_inputs_are_never_modified(astronaut_png: Path, speech_wav: Path, tmp_path: Path) -> None:
    photo = tmp_path / "in.png"
    wav = tmp_path / "in.wav"
    shutil.copy(astronaut_png, photo)
    shutil.copy(speech_wav, wav)
    before = (photo.read_bytes(), wav.read_bytes())
    assert main(["-q", "sync", str(photo), str(wav), "-o", str(tmp_path / "o.mp4"), "--model", "viseme"]) == 0
    assert (photo.read_bytes(), wav.read_bytes()) == before
    assert main(["-q", "sync", str(photo), str(wav), "-o", str(photo), "--model", "viseme"]) != 0
    assert photo.read_bytes() == before[0]
