"""One line for every failure, from the CLI and as the library's own error types from the API: the
hostile corpus (size-changing videos, a 1x1 PNG, zero-byte and wrong-extension files, a full disk
under PNG output, a bad streaming template). Each case: one line, exit 2, inputs unchanged, no file
outside the output, no partial left."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile import (
    make_faststart_truncated,
    make_size_changing_video,
    make_truncated,
    one_error_line,
    partials,
    sha256_tree,
)

import lipsynckit as lsk
from lipsynckit.cli import main
from lipsynckit.errors import LipSyncError, OutputError, VideoError


def _face_rgb(image_png: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(image_png)), cv2.COLOR_BGR2RGB)


def _hostile(kind: str, folder: Path, image_png: Path, carphone_mp4: Path) -> Path:
    if kind in ("size-change.mkv", "size-change.ts"):
        return make_size_changing_video(folder / kind, face=_face_rgb(image_png))
    if kind == "1x1.png":
        p = folder / kind
        cv2.imwrite(str(p), np.zeros((1, 1, 3), np.uint8))
        return p
    if kind == "zero-byte.mp4":
        p = folder / kind
        p.write_bytes(b"")
        return p
    if kind == "speech-named.mp4":  # the wrong extension: speech where a video should be
        p = folder / kind
        p.write_bytes((folder / "speech.wav").read_bytes())
        return p
    if kind == "truncated.mp4":
        return make_truncated(carphone_mp4, folder / kind, keep=0.3)
    if kind == "truncated-index-first.mp4":
        return make_faststart_truncated(carphone_mp4, folder / kind)
    raise AssertionError(kind)


CASES = {
    "size-change.mkv": "frame size changes mid-stream",
    "size-change.ts": "frame size changes mid-stream",
    "1x1.png": "too small to hold a face",
    "zero-byte.mp4": "empty (0 bytes)",
    "truncated.mp4": "[video]",
    "truncated-index-first.mp4": "cut short: its index lists video past the end",
    "speech-named.mp4": "no picture to lip-sync",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_hostile_video_gets_one_line_and_the_api_the_same_error_type(
    kind: str,
    image_png: Path,
    speech_copy: Path,
    carphone_mp4: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = _hostile(kind, image_png.parent, image_png, carphone_mp4)
    before = sha256_tree(tmp_path / "inputs")
    out = tmp_path / "out" / "talk.mp4"
    code = main(["-q", "sync", str(bad), str(speech_copy), "-m", "viseme", "-o", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and CASES[kind] in line and str(bad) in line, line
    with pytest.raises(LipSyncError) as e:  # the API raises the library's own type, naming the file
        lsk.sync(bad, speech_copy, model="viseme", output=out, progress=False)
    assert isinstance(e.value, (VideoError, LipSyncError)) and str(bad) in str(e.value)
    assert sha256_tree(tmp_path / "inputs") == before
    assert not out.exists() and not partials(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} <= {"inputs", "out", "lsk_home"}  # nothing elsewhere


def test_a_full_disk_under_png_output_leaves_no_partial(
    image_png: Path,
    speech_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The fourth frame meets ENOSPC (as on a full tmpfs): one line, no `.frames.*.partial` folder."""
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if self.name == "frame_000003.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "out" / "frames"
    code = main(["-q", "sync", str(image_png), str(speech_copy), "-m", "viseme", "-o", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "no space left on the device while writing frame 3" in line, line
    assert not out.exists() and not partials(tmp_path)


def test_stream_on_a_bad_template_names_the_users_file_and_keeps_no_copy(
    tmp_path: Path, no_face_jpg: Path
) -> None:
    from lipsynckit.weights import cache_dir

    junk = tmp_path / "inputs" / "template.mp4"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    faceless = tmp_path / "inputs" / "mask.jpg"
    faceless.write_bytes(no_face_jpg.read_bytes())
    for bad in (junk, faceless):
        with pytest.raises(LipSyncError) as e:
            lsk.stream(bad, model="viseme")
        assert e.value.path == str(bad), str(e.value)
        avatars = cache_dir() / "avatars"
        assert not avatars.exists() or not any(avatars.iterdir())  # no copy left in the cache


def test_input_errors_are_found_before_torch_is_imported(tmp_path: Path, carphone_mp4: Path) -> None:
    cut = make_faststart_truncated(carphone_mp4, tmp_path / "cut.mp4")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 200, np.uint8))
    script = (
        "import json, sys\nfrom lipsynckit.cli import main\n"
        "codes = [main(a) for a in json.loads(sys.argv[1])]\n"
        "print(json.dumps([codes, 'torch' in sys.modules]))"
    )
    runs = [
        ["sync", str(tmp_path / "nope.png"), str(empty)],
        ["sync", str(photo), str(empty)],
        ["sync", str(photo), str(tmp_path / "nope.wav")],
        ["sync", str(photo), str(photo), "-o", str(photo.with_suffix(".avi"))],
        ["batch", str(photo), str(empty), "-o", str(tmp_path / "out")],
        ["sync", str(cut)],  # its index first, its data cut short: found from the index, in ms
    ]
    got = subprocess.run(
        [sys.executable, "-c", script, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    codes, torch_loaded = json.loads(got.stdout.strip().splitlines()[-1])
    assert codes == [2] * len(runs), got.stderr
    assert not torch_loaded
    assert got.stderr.count("error:") == len(runs) and "Traceback" not in got.stderr


def test_output_errors_are_the_librarys_type(image_png: Path, speech_copy: Path) -> None:
    with pytest.raises(OutputError):
        lsk.sync(image_png, speech_copy, model="viseme", output=image_png.parent, progress=False)
