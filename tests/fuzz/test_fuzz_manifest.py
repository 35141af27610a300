"""Property-based tests over manifests: whatever a manifest holds, reading it gives rows or one
``LipSyncError``; running it writes nothing outside the output folder and changes no input."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lipsynckit.errors import LipSyncError
from lipsynckit.jobs import BadRow, JobSpec, read_manifest, run_manifest

_PIECES = ["..", ".", "a", "b", "", "x.mp4", "y.mkv", "t.mp4", "s.wav", "~", "/", "/tmp", "ä", " ", "\x00"]
_NAMES = ["template", "audio", "output", "model", "options", "segments", "notes", ""]


def _paths() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(_PIECES), min_size=1, max_size=5).map("/".join)


def _cells() -> st.SearchStrategy[object]:
    return st.one_of(
        _paths(),
        st.text(max_size=30),
        st.sampled_from(['{"crf": 20}', '{"crf": 99}', "{bad", "[]", '[{"start": 0, "end": 1}]', "null"]),
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.sampled_from(["start", "end", "crf", "audio"]), st.integers(-2, 5), max_size=3),
    )


_ROWS = st.lists(st.dictionaries(st.sampled_from(_NAMES), _cells(), max_size=7), max_size=6)


def _under(p: Path, root: Path) -> bool:
    real = Path(p).resolve()
    return real.is_relative_to(root.resolve()) and real != root.resolve()


def _check_rows(rows: list[JobSpec | BadRow], out: Path) -> None:
    inputs = set()
    for r in rows:
        if isinstance(r, JobSpec):
            inputs |= {r.template.resolve(), *(x.resolve() for x in [r.audio] if x is not None)}
    outputs = [r.output.resolve() for r in rows if isinstance(r, JobSpec)]
    assert all(_under(o, out) for o in outputs)
    assert len(set(outputs)) == len(outputs)  # no two rows write one file
    assert not inputs & set(outputs)  # no row writes onto any row's input


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, as_csv=st.booleans())
def test_any_manifest_reads_as_rows_that_stay_in_the_output_folder(
    tmp_path: Path, rows: list[dict[str, object]], as_csv: bool
) -> None:
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    out = d / "out"
    if as_csv:
        import csv
        import io

        buf = io.StringIO()
        names = sorted({k for r in rows for k in r}) or ["template"]
        w = csv.DictWriter(buf, fieldnames=names)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        (m := d / "jobs.csv").write_text(buf.getvalue())
    else:
        (m := d / "jobs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        got = read_manifest(m, out)
    except LipSyncError as e:
        assert e.stage == "manifest" and "\n" not in e.message
        return
    assert [r.row for r in got] == list(range(1, len(got) + 1))
    for r in got:
        if isinstance(r, BadRow):
            assert "\n" not in r.message and r.remedy
            assert "Input should" not in r.message and "Value error" not in r.message
    _check_rows(got, out)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_any_bytes_are_rows_or_one_manifest_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    m = Path(tempfile.mkdtemp(dir=tmp_path)) / f"jobs{suffix}"
    m.write_bytes(data)
    try:
        got = read_manifest(m, m.parent / "out")
    except LipSyncError as e:
        assert e.stage == "manifest"
        return
    _check_rows(got, m.parent / "out")


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-template cache for the examples (keyed by content: it only saves face passes)."""
    return tmp_path_factory.mktemp("avatar")


@pytest.fixture(scope="module")
def short_speech(speech_wavs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.4 s of a LibriVox sentence: rows that do run stay cheap."""
    import soundfile as sf

    data, rate = sf.read(str(speech_wavs[1]))
    p = tmp_path_factory.mktemp("short") / "s.wav"
    sf.write(str(p), data[int(0.5 * rate) : int(0.9 * rate)], rate)
    return p


#: a row that runs (so the properties are seen to hold for real outputs, not only for failures)
_GOOD = {"template": "t.mp4", "audio": "s.wav", "output": "a/../x.mp4"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "template": st.sampled_from(["t.mp4", "missing.mp4", "s.wav", "face.jpg"]),
                "audio": st.sampled_from(["s.wav", "t.mp4", "nope.wav", ""]),
                "output": _paths(),
            },
            optional={
                "options": st.sampled_from(['{"crf": 30}', '{"crf": 99}', "{bad"]),
                "segments": st.sampled_from(['[{"start": 0.5, "end": 1.0}]', '[{"start": 9, "end": 1}]']),
            },
        ),
        min_size=1,
        max_size=4,
    )
)
@example(
    rows=[
        _GOOD,
        {"template": "t.mp4", "audio": "s.wav", "output": "../../escape.mp4"},
        {"template": "t.mp4", "audio": "s.wav", "output": "/tmp/abs.mp4"},
        {"template": "t.mp4", "audio": "s.wav", "output": "x.mp4"},  # row 1's output, spelled otherwise
    ]
)
def test_any_manifest_run_writes_only_in_the_output_folder_and_keeps_inputs(
    tmp_path: Path,
    rows: list[dict[str, str]],
    carphone_mp4: Path,
    no_face_jpg: Path,
    short_speech: Path,
    avatar_dir: Path,
) -> None:
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    shutil.copy(carphone_mp4, d / "t.mp4")
    shutil.copy(no_face_jpg, d / "face.jpg")
    shutil.copy(short_speech, d / "s.wav")
    manifest = d / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = d / "out"
    before = _tree(d)
    outside_before = _tree(tmp_path)
    try:
        res = run_manifest(
            manifest, out, model="viseme", avatar_dir=avatar_dir, progress=False, summary=False
        )
    except LipSyncError as e:
        assert "\n" not in e.message
    else:
        assert [r.row for r in res] == list(range(1, len(rows) + 1))
        for r in res:
            assert r.state in ("ok", "failed")
            if r.state == "ok":
                assert r.output is not None and _under(Path(r.output), out)
        if rows[0] == _GOOD:
            assert res[0].state == "ok" and (out / "x.mp4").is_file()
    after = _tree(d)
    for name, digest in before.items():  # every input byte-identical
        assert after[name] == digest, name
    for name in set(after) - set(before):  # everything new is under the output folder
        assert (d / name).resolve().is_relative_to(out.resolve()), name
    assert not [n for n in after if ".partial" in n]
    outside_after = _tree(tmp_path)
    assert {k: v for k, v in outside_after.items() if not (tmp_path / k).is_relative_to(d)} == {
        k: v for k, v in outside_before.items() if not (tmp_path / k).is_relative_to(d)
    }
