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


def test_csv_with_bom_and_crlf_reads_like_plain_csv(tmp_path: Path) -> None:
    text = "template,audio,output\nt.mp4,a.wav,a.mp4\nt.mp4,b.wav,b.mp4\n"
    (tmp_path / "plain.csv").write_text(text)
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    plain = read_manifest(tmp_path / "plain.csv")
    excel = read_manifest(tmp_path / "excel.csv")
    assert [r.model_dump() for r in plain] == [r.model_dump() for r in excel]
    assert all(isinstance(r, JobSpec) for r in excel) and excel[1].audio == tmp_path / "b.wav"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            b"template,audio,output\nt.mp4,a.wav," + b"x" * (100 << 20) + b".mp4\n",
            "row 1 \\(from line 2\\): not readable as CSV",
        ),
        (b'template,audio,output\nt.mp4,"a.wav,out.mp4\n' + b"y" * (2 << 20), "unclosed quote"),
        (b"template,audio,output\nt.mp4,\xff\xfea.wav,a.mp4\n", "not UTF-8"),
        (b"template,audio,output,notes\nt.mp4,a.wav,a.mp4,hi\n", "unknown column 'notes'"),
    ],
    ids=["100MB-field", "unclosed-quote", "not-utf8", "unknown-column"],
)
def test_unreadable_csv_is_one_line_naming_the_line(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "jobs.csv"
    p.write_bytes(content)
    with pytest.raises(LipSyncError, match=match) as e:
        read_manifest(p)
    assert e.value.stage == "manifest" and len(e.value.message.splitlines()) == 1 and e.value.remedy


def test_outputs_stay_under_the_output_folder_and_never_overwrite_inputs(tmp_path: Path) -> None:
    (tmp_path / "t.mp4").write_bytes(b"")
    rows = [
        {"template": "t.mp4", "audio": "a.wav", "output": "../escape.mp4"},
        {"template": "t.mp4", "audio": "a.wav", "output": str(tmp_path / "elsewhere.mp4")},
        {"template": "t.mp4", "audio": "a.wav", "output": "d/x/../ok.mp4"},
        {"template": "t.mp4", "audio": "a.wav", "output": "d/ok.mp4"},  # same file as row 3
        {"template": "t.mp4", "audio": "b.wav", "output": str(tmp_path / "res" / "in.mp4")},
        {"template": str(tmp_path / "res" / "in.mp4"), "audio": "c.wav", "output": "fine.mp4"},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "res"
    got = read_manifest(tmp_path / "jobs.jsonl", out)
    kinds = [type(r).__name__ for r in got]
    assert kinds == ["BadRow", "BadRow", "JobSpec", "BadRow", "BadRow", "JobSpec"]
    esc, absolute, ok, dup, clash = got[0], got[1], got[2], got[3], got[4]
    assert isinstance(esc, BadRow) and esc.column == "output" and "outside the output folder" in esc.message
    assert "--allow-outside" in esc.remedy
    assert isinstance(absolute, BadRow) and "outside" in absolute.message
    assert isinstance(ok, JobSpec) and ok.output == out / "d" / "ok.mp4"  # normalised
    assert isinstance(dup, BadRow) and "row 3" in dup.message
    assert isinstance(clash, BadRow) and "row 6's template" in clash.message
    # the explicit flag lets the first two through (still never onto an input)
    free = read_manifest(tmp_path / "jobs.jsonl", out, allow_outside=True)
    assert isinstance(free[0], JobSpec) and free[0].output == tmp_path / "escape.mp4"
    assert isinstance(free[1], JobSpec) and isinstance(free[4], BadRow)


def test_output_through_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "res"
    out.mkdir()
    (tmp_path / "outside").mkdir()
    (out / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "jobs.csv").write_text("template,audio,output\nt.mp4,a.wav,link/x.mp4\n")
    (row,) = read_manifest(tmp_path / "jobs.csv", out)
    assert isinstance(row, BadRow) and "outside" in row.message
