"""The informational commands a user runs first: list-models, detectors, doctor."""

from __future__ import annotations

import pytest

from lipsynckit.cli import main


def test_list_models_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-models"]) == 0
    out = capsys.readouterr().out
    assert "viseme" in out and "usable" in out
    assert "wav2lip" in out and "not usable" in out and "fix:" in out
    assert "[non-commercial weights]" in out


def test_detectors_and_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detectors"]) == 0
    out = capsys.readouterr().out
    assert "opencv" in out and "usable" in out
    assert "insightface" in out and "not usable" in out  # no buffalo_l models on this machine
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "CUDA available" in out and "--model auto would use: viseme" in out


def test_unknown_option_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], astronaut_png, speech_wav, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    rc = main(
        [
            "sync",
            str(astronaut_png),
            str(speech_wav),
            "-o",
            str(tmp_path / "x.mp4"),
            "--model",
            "viseme",
            "-O",
            "no_such_option=1",
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0 and "no_such_option" in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()
