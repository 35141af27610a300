"""Manifest parsing: every row becomes a job or a row error that names the problem (nothing raises)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lipsynckit.errors import LipSyncError
from lipsynckit.jobs import BadRow, JobSpec, read_manifest


def test_csv_rows_become_jobs_or_row_errors(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text(
        "template,audio,output,model,options,segments\n"
        "t.mp4,a.wav,out/a.mp4,viseme,,\n"
        't.mp4,b.wav,out/b.mkv,,"{""crf"": 20}","[{""start"": 1, ""end"": 2.5, ""offset"": 0.5}]"\n'
        't.mp4,c.wav,out/c.mp4,,"{""crf"": 99}",\n'  # invalid option value
        "t.mp4,d.wav,out/d.mp4,,{not json,\n"
        "t.mp4,,out/e.mp4,,,\n"  # no audio and no segment audio
        't.mp4,f.wav,out/f.mp4,,,"[{""start"": 1, ""end"": 2}, {""start"": 1.5, ""end"": 3}]"\n'
        "t.mp4,g.wav,out/a.mp4,,,\n"  # same output as row 1
        "t.mp4,h.wav,out/h.png,,,\n"  # not a single video file
    )
    rows = read_manifest(tmp_path / "jobs.csv", out_dir=tmp_path / "res")
    assert [r.row for r in rows] == list(range(1, 9))
    a, b = rows[0], rows[1]
    assert isinstance(a, JobSpec) and isinstance(b, JobSpec)
    assert a.template == tmp_path / "t.mp4" and a.audio == tmp_path / "a.wav"
    assert a.output == tmp_path / "res" / "out" / "a.mp4" and a.model == "viseme"
    assert b.options == {"crf": 20} and b.model is None
    assert (b.segments[0].start, b.segments[0].end, b.segments[0].offset) == (1, 2.5, 0.5)
    errors = {r.row: r.message for r in rows if isinstance(r, BadRow)}
    columns = {r.row: r.column for r in rows if isinstance(r, BadRow)}
    assert set(errors) == {3, 4, 5, 6, 7, 8}
    assert columns == {3: "options", 4: "options", 5: "audio", 6: "segments", 7: "output", 8: "output"}
    assert "crf" in errors[3] and "51" in errors[3]  # the bound it broke
    assert "JSON" in errors[4]
    assert "audio is required" in errors[5]
    assert "overlap" in errors[6]
    assert "row 1" in errors[7]
    assert ".mp4" in errors[8]
    for r in rows:  # plain words: no pydantic phrasing, and a remedy that is not the generic one
        if isinstance(r, BadRow):
            assert "Value error" not in r.message and "Input should" not in r.message
            assert "pydantic" not in r.message and r.remedy != "fix this row of the manifest"
    assert rows[6].output == str(tmp_path / "res" / "out" / "a.mp4")  # type: ignore[union-attr]


def test_jsonl_rows_and_job_keys(tmp_path: Path) -> None:
    lines = [
        {
            "template": "t.mp4",
            "audio": "a.wav",
            "output": "a.mp4",
            "segments": [{"start": 0, "end": 1, "audio": "x.wav"}],
        },
        {"template": "t.mp4", "audio": "a.wav", "output": "b.mp4", "options": {"length_mode": "cut"}},
        "[1, 2]",
    ]
    (tmp_path / "jobs.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n{broken\n"
    )
    rows = read_manifest(tmp_path / "jobs.jsonl")
    assert [type(r).__name__ for r in rows] == ["JobSpec", "JobSpec", "BadRow", "BadRow"]
    a, b = rows[0], rows[1]
    assert isinstance(a, JobSpec) and isinstance(b, JobSpec)
    assert a.segments[0].audio == tmp_path / "x.wav"
    # the key follows the row's content: another audio is another job, the row number is not
    assert a.key() != a.model_copy(update={"audio": tmp_path / "z.wav"}).key()
    assert a.key() == a.model_copy(update={"row": 9}).key()
    assert a.group() != b.group()  # other options prepare the template differently


def test_manifest_without_required_columns_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text("video,audio\nt.mp4,a.wav\n")
    with pytest.raises(LipSyncError, match="no column output, template"):
        read_manifest(tmp_path / "jobs.csv")
