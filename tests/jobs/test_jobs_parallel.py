"""Manifest runs at scale: jobs in flight together give the same bytes as one at a time; resume is
keyed by row; each manifest keeps its own status; output folders are checked before any work."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from lipsynckit.avatar import file_digest
from lipsynckit.errors import LipSyncError
from lipsynckit.jobs import StatusLog, run_manifest
from lipsynckit.jobs.results import ManifestResult


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_concurrent_jobs_write_the_same_bytes_as_sequential_ones(
    tmp_path: Path,
    talking_template: Path,
    carphone_mp4: Path,
    speech_wavs: list[Path],
    shared_avatar_dir: Path,
) -> None:
    rows = [
        # FFV1 outputs: their bytes depend on the frames alone (x264 gave another file for the same
        # frames about once in a hundred encodes, even on one thread; see docs/benchmarks.md)
        {"template": str(carphone_mp4), "audio": str(speech_wavs[1]), "output": "a.mkv"},
        {"template": str(talking_template), "audio": str(speech_wavs[2]), "output": "b.mkv"},
        {"template": str(carphone_mp4), "audio": str(speech_wavs[3]), "output": "c.mkv"},
        {
            "template": str(talking_template),
            "audio": str(speech_wavs[4]),
            "output": "d.mkv",
            "segments": [{"start": 1.0, "end": 2.0}],
        },
        {"template": str(carphone_mp4), "audio": str(tmp_path / "missing.wav"), "output": "e.mp4"},
    ]
    manifest = _jsonl(tmp_path / "jobs.jsonl", rows)
    common = {"model": "viseme", "avatar_dir": shared_avatar_dir, "progress": False}
    one = run_manifest(manifest, tmp_path / "seq", concurrency=1, **common)
    three = run_manifest(manifest, tmp_path / "par", concurrency=3, **common)
    assert [r.state for r in one] == [r.state for r in three] == ["ok", "ok", "ok", "ok", "failed"]
    for a, b in zip(one, three, strict=True):
        assert (a.row, a.sha256, a.size, a.frames, a.faces_found) == (
            b.row,
            b.sha256,
            b.size,
            b.frames,
            b.faces_found,
        )
        if a.sha256:
            assert file_digest(Path(str(b.output))) == a.sha256  # the file on disk, not only the record
    assert three[4].error is not None and three[4].error.stage == "audio"
    # statuses in manifest order on disk too, whatever order the jobs ended in
    assert [r.row for r in StatusLog(tmp_path / "par" / "jobs.status.jsonl").rows()] == [1, 2, 3, 4, 5]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_duplicate_output_row_does_not_hide_the_finished_row_on_rerun(
    tmp_path: Path, carphone_mp4: Path, speech_wavs: list[Path], shared_avatar_dir: Path
) -> None:
    manifest = _jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"template": str(carphone_mp4), "audio": str(speech_wavs[1]), "output": "x/../a.mp4"},
            {"template": str(carphone_mp4), "audio": str(speech_wavs[2]), "output": "a.mp4"},  # same file
        ],
    )
    common = {"model": "viseme", "avatar_dir": shared_avatar_dir, "progress": False}
    first = run_manifest(manifest, tmp_path / "o", **common)
    assert [r.state for r in first] == ["ok", "failed"]
    assert first[1].error is not None and "row 1" in first[1].error.message
    assert not (tmp_path / "o" / "x").exists()  # normalised: no stray folder from "x/.."
    mtime = (tmp_path / "o" / "a.mp4").stat().st_mtime_ns
    again = run_manifest(manifest, tmp_path / "o", **common)
    assert [r.state for r in again] == ["skipped", "failed"]  # nothing rendered again
    assert (tmp_path / "o" / "a.mp4").stat().st_mtime_ns == mtime


def test_two_manifests_into_one_folder_keep_their_own_status(
    tmp_path: Path, carphone_mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # rows that fail before any model work: the run still writes its status file
    row = {"template": str(carphone_mp4), "output": "x.mp4"}  # no audio
    first = _jsonl(tmp_path / "a" / "jobs.jsonl", [row])
    second = _jsonl(tmp_path / "b" / "jobs.jsonl", [row])
    out = tmp_path / "out"
    res = run_manifest(first, out, model="viseme", progress=False, summary=False)
    assert [r.state for r in res] == ["failed"]
    before = (out / "jobs.status.jsonl").read_bytes()
    with pytest.raises(LipSyncError, match="belongs to another manifest") as e:
        run_manifest(second, out, model="viseme", progress=False, summary=False)
    assert str(first.resolve()) in str(e.value) and "--status" in str(e.value)
    assert (out / "jobs.status.jsonl").read_bytes() == before  # the first manifest's status untouched
    # its own status path (or folder) works
    res2 = run_manifest(
        second, out, model="viseme", progress=False, summary=False, status_path=out / "b.status.jsonl"
    )
    assert [r.state for r in res2] == ["failed"] and (out / "b.status.jsonl").is_file()


def test_unwritable_output_folders_fail_their_rows_before_any_job_and_nothing_is_left(
    tmp_path: Path, carphone_mp4: Path, speech_wavs: list[Path]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocker").write_text("a file where a folder is needed")
    manifest = _jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"template": str(carphone_mp4), "audio": str(speech_wavs[1]), "output": "blocker/a.mp4"},
            {"template": str(carphone_mp4), "audio": str(tmp_path / "nope.wav"), "output": "new/deep/b.mp4"},
        ],
    )
    seen: list[int] = []
    res = run_manifest(
        manifest, out, model="viseme", progress=False, summary=False, on_status=lambda s: seen.append(s.row)
    )
    assert [r.state for r in res] == ["failed", "failed"]
    a, b = res
    assert a.error is not None and a.error.stage == "output" and "blocker" in a.error.message
    assert a.seconds == 0.0 and seen == [2]  # never dispatched: failed in the folder check
    assert b.error is not None and b.error.stage == "audio"
    assert not (out / "new").exists()  # the failed job's folders were removed
    assert sorted(p.name for p in out.iterdir()) == ["blocker", "jobs.status.jsonl"]


def test_run_manifest_shows_failures_without_logging_set_up(
    tmp_path: Path, carphone_mp4: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("", "lipsynckit"):  # as in a fresh notebook: no handler anywhere, no level set
        lg = logging.getLogger(name)
        monkeypatch.setattr(lg, "handlers", [logging.NullHandler()] if name else [])
        monkeypatch.setattr(lg, "level", logging.NOTSET if name else logging.WARNING)
    manifest = _jsonl(
        tmp_path / "jobs.jsonl",
        [
            {"template": str(carphone_mp4), "output": "a.mp4"},
            {"template": str(carphone_mp4), "output": "b.gif"},
        ],
    )
    res = run_manifest(manifest, tmp_path / "o", model="viseme")
    err = capsys.readouterr().err
    assert "2 jobs: 0 ok, 0 skipped (already done), 2 failed" in err
    assert "row 1 failed: [manifest] column audio: audio is required" in err
    assert "row 2 failed: [manifest] column output:" in err and ".mp4" in err
    assert isinstance(res, ManifestResult) and not res.ok


def test_manifest_result_reads_as_a_table() -> None:
    from lipsynckit.jobs.status import JobFailure, JobStatus

    res = ManifestResult(
        [
            JobStatus(
                row=2, state="failed", output="/o/b.mp4", error=JobFailure(message="no face", stage="faces")
            ),
            JobStatus(row=1, state="ok", output="/o/a.mp4", seconds=1.5, frames=90),
        ]
    )
    text = repr(res).splitlines()
    assert text[0] == "ManifestResult(2 jobs: 1 ok, 0 skipped (already done), 1 failed)"
    assert text[1].split() == ["row", "state", "output", "seconds", "frames", "error"]
    assert text[2].split() == ["1", "ok", "a.mp4", "1.5", "90"]
    assert text[3].split() == ["2", "failed", "b.mp4", "0.0", "0", "[faces]", "no", "face"]
    html = res._repr_html_()
    assert html.count("<tr>") == 3 and "<td>[faces] no face</td>" in html
    pd = pytest.importorskip("pandas")
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df["row"]) == [1, 2] and list(df["state"]) == ["ok", "failed"]
    assert df["error"].iloc[1] == "[faces] no face" and df["error"].isna().iloc[0]


def test_positional_batch_derives_distinct_names_for_same_named_audio(tmp_path: Path) -> None:
    from lipsynckit.errors import OutputError
    from lipsynckit.jobs.manifest import distinct_output_names

    assert distinct_output_names(["d1/a.wav", "d2/a.wav", "b.wav"]) == ["d1_a.mp4", "d2_a.mp4", "b.mp4"]
    assert distinct_output_names(["x/d/a.wav", "y/d/a.wav"]) == ["x_d_a.mp4", "y_d_a.mp4"]
    assert distinct_output_names(["a.wav", "a.flac"]) != ["a.mp4", "a.mp4"]
    with pytest.raises(OutputError, match="given twice"):
        distinct_output_names(["d1/a.wav", "d1/../d1/a.wav"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_positional_batch_writes_both_same_named_audio(
    tmp_path: Path, carphone_mp4: Path, speech_wavs: list[Path]
) -> None:
    from lipsynckit.cli import main

    for d, src in (("d1", speech_wavs[1]), ("d2", speech_wavs[2])):
        (tmp_path / d).mkdir()
        shutil.copy(src, tmp_path / d / "a.wav")
    rc = main(
        ["-q", "batch", str(carphone_mp4), str(tmp_path / "d1" / "a.wav"), str(tmp_path / "d2" / "a.wav")]
        + ["-o", str(tmp_path / "out"), "--model", "viseme", "--no-progress"]
    )
    assert rc == 0
    outs = sorted((tmp_path / "out").glob("*.mp4"))
    assert [p.name for p in outs] == ["d1_a.mp4", "d2_a.mp4"]
    assert file_digest(outs[0]) != file_digest(outs[1])  # two different audios, two results


def test_cli_refuses_an_escaping_row_unless_allowed(
    tmp_path: Path, carphone_mp4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lipsynckit.cli import main

    manifest = _jsonl(tmp_path / "jobs.jsonl", [{"template": str(carphone_mp4), "output": "../../x.mp4"}])
    rc = main(["-q", "batch", "--manifest", str(manifest), "-o", str(tmp_path / "o"), "--model", "viseme"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "row 1 failed: [manifest] column output: output ../../x.mp4 is outside the output folder" in out
    assert "--allow-outside" in out and "1 jobs: 0 ok, 0 skipped (already done), 1 failed" in out
    rc = main(
        ["-q", "batch", "--manifest", str(manifest), "-o", str(tmp_path / "o"), "--model", "viseme"]
        + ["--allow-outside", "--concurrency", "3", "--ray-workers", "2"]
    )
    out = capsys.readouterr().out
    assert rc == 1 and "outside" not in out and "audio" in out  # now it fails for its missing audio
    assert not (tmp_path.parent / "x.mp4").exists()
