"""Outputs never destroy anything the run did not make: the output's relation to the inputs and to
what is already there is fuzzed (hypothesis), and each named case of issue 18 is checked through the
CLI (in-process) with checksums of everything around it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hostile import one_error_line, partials, sha256_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipsynckit.cli import main
from lipsynckit.errors import OutputError
from lipsynckit.media import VideoSink
from lipsynckit.output_guard import MARKER, check_output_target, claim_output, partial_name

FRAME = np.full((16, 16, 3), 128, np.uint8)


def _sync(image: Path, speech: Path, out: Path | str) -> list[str]:
    return ["-q", "sync", str(image), str(speech), "-m", "viseme", "-o", str(out)]


def test_o_naming_the_inputs_folder_is_refused_and_loses_nothing(
    image_png: Path, speech_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = image_png.parent
    (project / "notes.txt").write_text("mine")
    before = sha256_tree(project)
    assert main(_sync(image_png, speech_copy, project)) == 2
    assert "holds an input" in one_error_line(capsys.readouterr().err)
    assert sha256_tree(project) == before


def test_o_naming_an_input_or_a_foreign_folder_is_refused(
    image_png: Path, speech_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sha256_tree(tmp_path)
    assert main(_sync(image_png, speech_copy, speech_copy)) == 2
    assert "one of the inputs" in one_error_line(capsys.readouterr().err)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    assert main(_sync(image_png, speech_copy, foreign)) == 2
    assert "not made by lipsynckit" in one_error_line(capsys.readouterr().err)
    assert sha256_tree(tmp_path) == {**before, "photos/holiday.jpg": sha256_tree(foreign)["holiday.jpg"]}


def test_device_and_fifo_outputs_are_refused(
    image_png: Path, speech_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    targets = [fifo, tmp_path / "pipe-folder"]
    os.mkfifo(targets[1])
    if os.geteuid() == 0:  # a character device node of our own (the same numbers as /dev/null)
        dev = tmp_path / "dev"
        os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        targets += [dev, tmp_path / "dev.mp4"]
        os.mknod(targets[-1], stat.S_IFCHR | 0o600, os.makedev(1, 3))
    for t in targets:
        assert main(_sync(image_png, speech_copy, t)) == 2, t
        line = one_error_line(capsys.readouterr().err)
        assert "device" in line or "pipe" in line, line
        mode = os.lstat(t).st_mode
        assert stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)  # still what it was


def test_a_second_run_on_a_claimed_output_gets_one_line(
    image_png: Path, speech_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds the output (it says so on stdout): this run is refused at once."""
    out = tmp_path / "out" / "talk.mp4"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from lipsynckit.output_guard import claim_output\n"
            f"with claim_output({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(_sync(image_png, speech_copy, out)) == 2
        assert "another lipsynckit run is writing this output" in one_error_line(capsys.readouterr().err)
    finally:
        holder.communicate("", timeout=60)
    assert not out.exists() and not partials(tmp_path)
    with claim_output(out), claim_output(out):  # free again, and re-entrant in one thread
        pass


def test_a_claim_is_exclusive_between_threads(tmp_path: Path) -> None:
    out = tmp_path / "x.mkv"
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with claim_output(out):
            held.set()
            done.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(60)
        with pytest.raises(OutputError, match="another lipsynckit run"), claim_output(out):
            pass
    finally:
        done.set()
        t.join()


def test_stale_partials_of_dead_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    out = tmp_path / "talk.mkv"
    stale = tmp_path / f".talk.{dead_pid}-0123abcd.partial.mkv"
    stale.write_bytes(b"half a video")
    stale_dir = tmp_path / f".talk.{dead_pid}-0123abce.partial"
    stale_dir.mkdir()
    live = tmp_path / f".talk.{os.getppid()}-0123abcf.partial.mkv"  # our parent: alive
    live.write_bytes(b"someone else's, still running")
    other = tmp_path / f".other.{dead_pid}-0123abcd.partial.mkv"  # another output's: not ours to judge
    other.write_bytes(b"x")
    with VideoSink(out, 25, (16, 16), mode="ffv1") as sink:
        sink.write(FRAME)
    assert out.is_file() and not stale.exists() and not stale_dir.exists()
    assert live.exists() and other.exists()
    assert partial_name(out).name.startswith(f".talk.{os.getpid()}-")


# --------------------------------------------------------------------------------- the property
KINDS = (
    "absent",
    "regular file",
    "empty folder",
    "foreign folder",
    "our folder",
    "input",
    "inputs' folder",
    "link to an input",
)
REFUSED_ALWAYS = ("input", "inputs' folder", "foreign folder", "link to an input")


def _make(kind: str, where: Path, inputs: list[Path]) -> Path:
    if kind == "input":
        return inputs[0]
    if kind == "inputs' folder":
        return inputs[0].parent
    if kind == "link to an input":
        where.symlink_to(inputs[1] if where.suffix else inputs[0].parent)
    elif kind == "regular file":
        where.write_bytes(b"an older result")
    elif kind == "empty folder":
        where.mkdir()
    elif kind == "foreign folder":
        where.mkdir()
        (where / "keep.txt").write_text("the user's")
    elif kind == "our folder":
        where.mkdir()
        (where / MARKER).touch()
        (where / "frame_000000.png").write_bytes(b"an older frame")
    return where


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(["png", "ffv1"]),
    name=st.text(
        st.characters(whitelist_categories=("Ll", "Nd"), whitelist_characters="-_ é"), min_size=1, max_size=12
    ),
)
def test_whatever_is_there_only_what_the_run_may_replace_is_replaced(
    tmp_path_factory: pytest.TempPathFactory, kind: str, mode: str, name: str
) -> None:
    root = tmp_path_factory.mktemp("prop")
    inputs = [root / "in" / "face.png", root / "in" / "speech.wav"]
    inputs[0].parent.mkdir()
    for i in inputs:
        i.write_bytes(i.name.encode() * 3)
    target = _make(
        kind, root / (name.strip() or "o") if mode == "png" else root / f"{name.strip() or 'o'}.mkv", inputs
    )
    before = sha256_tree(root)
    try:
        check_output_target(target, mode, inputs)
        with VideoSink(target, 25, (16, 16), mode=mode) as sink:
            sink.write(FRAME)
    except OutputError:
        assert sha256_tree(root) == before  # refused: nothing changed anywhere
        assert (
            kind in REFUSED_ALWAYS
            or (kind in ("empty folder", "our folder") and mode != "png")
            or (kind == "regular file" and mode == "png")
        )
        return
    assert kind not in REFUSED_ALWAYS
    after = sha256_tree(root)
    rel = str(target.relative_to(root))
    untouched = {k: v for k, v in before.items() if k != rel and not k.startswith(rel + "/")}
    assert {k: v for k, v in after.items() if k in untouched} == untouched  # nothing else changed
    assert not partials(root)
    assert (target / MARKER).is_file() if mode == "png" else target.is_file()
