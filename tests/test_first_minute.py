"""The first minute of a new user, through the CLI: bad inputs answered before any model loads, in one
clear line; the output's suffix picks its container; silence has a flag; nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import lipsynckit as lsk
from lipsynckit.cli import main
from lipsynckit.viseme.plugin import VisemePlugin


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the viseme model fails loudly: an input error must come first."""

    def build(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(VisemePlugin, "build", build)


@pytest.fixture
def short_wav(speech_wavs: list[Path]) -> Path:
    return next(p for p in speech_wavs if p.name.endswith("0880.wav"))  # 3 s


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], out_dir: Path) -> str:
    before = sorted(out_dir.iterdir())
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert sorted(out_dir.iterdir()) == before  # nothing written, no temp file, no folder
    return err


@pytest.mark.usefixtures("no_model_load")
def test_bad_inputs_are_refused_before_the_model_loads(
    astronaut_png: Path,
    carphone_mp4: Path,
    short_wav: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "x.mp4"
    empty_wav = tmp_path / "empty.wav"
    empty_wav.write_bytes(b"")
    empty_mp4 = tmp_path / "empty.mp4"
    empty_mp4.write_bytes(b"")
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"these are not samples" * 50)
    run = ["sync", "--model", "viseme", "-o", str(out)]

    err = _refused([*run, str(tmp_path / "nope.png"), str(short_wav)], capsys, tmp_path)
    assert "[video]" in err and "nope.png: video or image not found" in err
    err = _refused([*run, str(astronaut_png), str(tmp_path / "nope.wav")], capsys, tmp_path)
    assert "[audio]" in err and "nope.wav: audio file not found" in err
    err = _refused([*run, str(astronaut_png), str(empty_wav)], capsys, tmp_path)
    assert "empty.wav: audio file is empty (0 bytes)" in err and "again" in err
    err = _refused([*run, str(empty_mp4), str(short_wav)], capsys, tmp_path)
    assert "empty.mp4: video or image is empty (0 bytes)" in err
    err = _refused([*run, str(astronaut_png), str(garbage)], capsys, tmp_path)
    assert "notes.wav: cannot read this file as audio" in err and "re-export" in err
    err = _refused([*run, str(carphone_mp4)], capsys, tmp_path)  # no audio given, and the video has none
    assert "carphone_pristine.mp4: this video has no audio track" in err and "second argument" in err
    err = _refused([*run, str(astronaut_png)], capsys, tmp_path)
    assert "this photo has no sound" in err
    err = _refused([*run, str(short_wav), str(short_wav)], capsys, tmp_path)  # arguments swapped
    assert "[video]" in err and "this is an audio file" in err
    err = _refused(
        ["sync", "--model", "viseme", str(astronaut_png), str(short_wav), "-o", str(tmp_path / "x.avi")],
        capsys,
        tmp_path,
    )
    assert "x.avi: cannot write a .avi file" in err and ".mp4" in err and ".webm" in err and ".mkv" in err

    with pytest.raises(lsk.LipSyncError, match="empty"):  # the API checks first too
        lsk.sync(astronaut_png, empty_wav, model="viseme", output=out)
    with pytest.raises(lsk.LipSyncError, match="empty"):
        lsk.sync_batch(astronaut_png, [short_wav, empty_wav], tmp_path / "batch", model="viseme")
    with pytest.raises(lsk.LipSyncError, match="empty"):
        lsk.load_audio(str(empty_wav))


def test_silent_audio_names_the_flag_for_the_cli_and_the_argument_for_the_api(
    astronaut_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    out = out_dir / "x.mp4"
    run = ["sync", str(astronaut_png), str(silent), "-o", str(out), "--model", "viseme", "--no-progress"]
    err = _refused(run, capsys, out_dir)
    assert "the audio is silent" in err and "--allow-silent" in err and "allow_silent_audio" not in err
    with pytest.raises(lsk.LipSyncError, match="allow_silent_audio=True") as info:
        lsk.sync(astronaut_png, silent, model="viseme", output=out, progress=False)
    assert "--allow-silent" not in str(info.value)
    assert main(["-q", *run, "--allow-silent"]) == 0
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 25  # 1 s at 25 fps
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.mp4"]


@pytest.mark.parametrize(
    ("name", "video_codec", "audio_codec"),
    [
        ("out.mp4", "h264", "aac"),
        ("out.mov", "h264", "aac"),
        ("out.mkv", "ffv1", "pcm_f32le"),
        ("out.webm", "vp9", "opus"),
    ],
)
def test_the_output_suffix_picks_the_container(
    name: str, video_codec: str, audio_codec: str, astronaut_png: Path, short_wav: Path, tmp_path: Path
) -> None:
    if video_codec == "vp9" and "libvpx-vp9" not in av.codecs_available:
        pytest.skip("this FFmpeg has no libvpx-vp9")
    out = tmp_path / name
    argv = ["-q", "sync", str(astronaut_png), str(short_wav), "-o", str(out), "--model", "viseme"]
    assert main([*argv, "--no-progress"]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name.startswith(video_codec)
        assert c.streams.audio[0].codec_context.name.endswith(audio_codec)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == round(sf.info(str(short_wav)).duration * 25)  # 25 fps for a photo
    assert frames[0].shape == (512, 512, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("photos")) == [name]


def test_a_folder_output_holds_png_frames_and_lossless_needs_mkv(
    astronaut_png: Path, short_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    run = ["-q", "sync", str(astronaut_png), str(short_wav), "--model", "viseme", "--no-progress"]
    assert main([*run, "-o", f"{folder}/"]) == 0
    assert (
        len(list(folder.glob("frame_*.png"))) == round(sf.info(str(short_wav)).duration * 25)
        and (folder / "audio.wav").is_file()
    )
    err = _refused([*run, "-o", str(tmp_path / "x.mp4"), "--lossless"], capsys, tmp_path)
    assert "lossless output is written as .mkv or a PNG folder" in err


def test_audio_longer_than_the_video_is_one_line_and_ping_pongs(
    carphone_mp4: Path, short_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lipsynckit.media import VideoSink, read_video_frames

    src = read_video_frames(carphone_mp4)[:40]  # 1.3 s of the real video, stored losslessly
    video = tmp_path / "short.mkv"
    with VideoSink(video, fps=30.0, size=(176, 144), mode="ffv1") as sink:
        for f in src:
            sink.write(f)
    out = tmp_path / "x.mkv"
    run = ["sync", str(video), str(short_wav), "--model", "viseme", "--no-progress"]
    assert main([*run, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    line = "audio 3.0 s outlasts the video 1.3 s: ping-pong playback (--length-mode loop|cut to change)"
    assert [ln for ln in err.splitlines() if "outlasts" in ln] == [line]
    got = read_video_frames(out)
    top = slice(0, 25)  # rows above the face: untouched by the model, lossless
    assert len(got) == 90
    assert np.array_equal(got[39, top], src[39, top]) and np.array_equal(got[40, top], src[39, top])
    assert np.array_equal(got[41, top], src[38, top])  # backwards, not a jump to frame 0
    assert not np.array_equal(got[41, top], src[1, top])

    assert main([*run, "-o", str(tmp_path / "cut.mp4"), "--length-mode", "cut"]) == 0
    err = capsys.readouterr().err
    assert "audio 3.0 s outlasts the video 1.3 s: output cut (--length-mode pingpong|loop to change)" in err


def test_help_and_list_models_import_no_torch() -> None:
    import subprocess
    import sys

    code = """
import sys
from lipsynckit.cli import main
for argv in (["--help"], ["sync", "--help"], ["bench", "--help"], ["list-models"]):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    print("RC", argv[0], rc)
print("TORCH", "torch" in sys.modules)
import lipsynckit as lsk
assert callable(lsk.sync) and callable(lsk.list_models) and lsk.SyncOptions().length_mode == "pingpong"
assert set(lsk.__all__) <= set(dir(lsk)), set(lsk.__all__) - set(dir(lsk))
print("TORCH", "torch" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("RC")] == [
        "RC --help 0",
        "RC sync 0",
        "RC bench 0",
        "RC list-models 0",
    ]
    assert [ln for ln in lines if ln.startswith("TORCH")] == [
        "TORCH False",
        "TORCH True",
    ]  # torch on first use
    assert "usage: lipsynckit sync" in r.stdout and "--keep-going" in r.stdout and "viseme" in r.stdout


def test_offline_fetch_fails_at_once_in_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lipsynckit.weights as weights

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # port 9 (discard) refuses connections
    monkeypatch.setattr(weights, "_UNREACHABLE", {})
    home = tmp_path / "lsk_home"  # LIPSYNCKIT_HOME (tests/conftest.py): does not exist yet
    assert main(["weights", "fetch", "wav2lip"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "cannot reach http://127.0.0.1:9 (ConnectionRefusedError" in err and "offline" in err
    assert "--weights PATH" in err and "Retrying" not in err
    assert not home.exists()  # no empty cache folder, no partial file

    # reachable, but the download breaks half-way: its partial file and new folders are removed
    home.mkdir()
    monkeypatch.setattr(weights, "check_reachable", lambda endpoint: None)

    def broken_download(repo_id: str, filename: str, cache_dir: str, **kw: object) -> str:
        part = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "blobs" / "x.incomplete"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"half a file")
        raise ConnectionError("connection reset")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken_download)
    assert main(["weights", "fetch", "wav2lip"]) == 2
    assert "connection reset" in capsys.readouterr().out
    assert sorted(home.iterdir()) == []


def test_model_auto_says_one_line_and_details_under_verbose(
    astronaut_png: Path, short_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.mp4"
    assert main(["sync", str(astronaut_png), str(short_wav), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    auto = [ln for ln in err.splitlines() if "model auto" in ln]
    assert len(auto) == 1, err
    assert auto[0].startswith("model auto: viseme (no weights installed for ")
    assert "wav2lip" in auto[0] and auto[0].endswith("`lipsynckit weights list` says where to get them)")
    assert "weight file" not in auto[0]  # the per-file reasons are for -v

    assert main(["-v", "sync", str(astronaut_png), str(short_wav), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    details = [ln for ln in err.splitlines() if "model auto, not chosen:" in ln]
    assert len(details) == 1 and "wav2lip: weights not found" in details[0]


def test_detector_messages_name_the_detector(capsys: pytest.CaptureFixture[str]) -> None:
    from lipsynckit.errors import FaceDetectorError
    from lipsynckit.faces import get_face_detector

    assert main(["detectors"]) == 0
    s3fd = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("s3fd"))
    assert "not usable" in s3fd and "'s3fd.pth'" in s3fd and "for face detector 's3fd' found" in s3fd
    assert "model" not in s3fd
    with pytest.raises(FaceDetectorError) as info:
        get_face_detector("s3fd")
    assert str(info.value).startswith("[faces] s3fd: none of 's3fd.pth', ")
    assert "for face detector 's3fd' found" in str(info.value)
    assert "lipsynckit weights fetch wav2lip" in str(info.value)  # where the file comes from


def test_list_models_prints_as_a_table_and_stays_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    rows = lsk.list_models()
    assert isinstance(rows, list) and rows[0] is list(rows)[0]
    table = repr(rows)
    assert "ModelInfo" not in table and "WeightFile" not in table and len(table) < 3000
    viseme = next(ln for ln in table.splitlines() if ln.startswith("viseme"))
    assert "usable" in viseme and "not usable" not in viseme
    w2l = next(r for r in rows if r.name == "wav2lip")
    assert "\n" not in repr(w2l) and repr(w2l).startswith("ModelStatus('wav2lip', usable=False, reason=")
    assert str(w2l).splitlines()[0].startswith("wav2lip") and "fix:" in str(w2l)
    assert w2l.info is not None and w2l.info.weights  # the data is all still there
    assert "<table>" in rows._repr_html_() and "wav2lip" in rows._repr_html_()
    assert main(["list-models"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == table


def test_the_bench_sample_media_ship_inside_the_package() -> None:
    from lipsynckit.inputs import check_run
    from lipsynckit.samples import sample_media

    photo, speech = sample_media()
    assert "site-packages" in str(photo) or photo.parent.parent.name == "lipsynckit"
    check_run(photo, speech, None)  # a readable photo and a readable sound track
    assert sf.info(str(speech)).duration > 5


@pytest.mark.slow  # the bench measures the whole 7 s sample: about 20 s of CPU
@pytest.mark.timeout(900)
def test_bench_with_no_arguments_runs_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import tempfile

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.chdir(elsewhere)  # not the repository: the sample media ship inside the package
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["-q", "bench", "--models", "viseme", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert list(elsewhere.iterdir()) == []  # nothing written where it was run
    (report,) = [p for p in temp.iterdir() if not p.name.startswith("lipsynckit-locks")]  # + the output locks
    assert report.name.startswith("lipsynckit-bench-") and f"report written to {report}" in out
    assert {"bench.json", "bench.md", "bench.png"} <= {p.name for p in report.iterdir()}
    row = json.loads((report / "bench.json").read_text())["rows"][0]
    assert row["usable"] and row["output"] == "mp4" and row["step_fps"] > 0 and row["pipeline_fps"] > 0
    assert 0 < row["encode_share"] < 1
    assert (report / "outputs" / "viseme.mp4").is_file()
    line = next(ln for ln in out.splitlines() if ln.startswith("viseme: model step "))
    assert f"pipeline {row['pipeline_fps']:.1f} fps, of which the mp4 encoder took" in line
    assert "encoder share" in (report / "bench.md").read_text()
