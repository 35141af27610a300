"""Model flags made from each plugin's options model; --fp16 is dtype, so --model auto can fall back."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lipsynckit.cli import build_parser, main
from lipsynckit.cli_options import add_flags_for_argv, model_help, model_options_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    add_flags_for_argv(parser, argv)
    return parser.parse_args(argv)


def test_flags_come_from_the_options_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # argparse wraps help at the terminal width
    with pytest.raises(SystemExit) as done:
        main(["sync", "--model", "wav2lip", "--help"])
    assert done.value.code == 0
    page = capsys.readouterr().out
    assert "wav2lip options (from Wav2LipOptions)" in page
    assert "--paste {official,feathered}" in page  # Literal -> choices
    assert "--smooth, --no-smooth" in page  # bool -> a pair
    assert (
        "feathered = lipsynckit's soft-edged" in page and "(default: 'official')" in page
    )  # description, default
    assert "--feather FLOAT" in page and "(default: 0.15; >= 0.0, <= 0.5)" in page  # bounds shown
    assert "--fp16" not in page.split("wav2lip options")[1]  # precision is the command's --dtype only
    with pytest.raises(SystemExit):
        _parse(["sync", "v.mp4", "--model", "wav2lip", "--paste", "blurry"])  # not a choice


def test_only_the_flags_given_become_options_so_defaults_live_in_the_model() -> None:
    args = _parse(
        [
            "-q",
            "sync",
            "v.mp4",
            "a.wav",
            "-m",
            "latentsync_15",
            "--steps",
            "3",
            "--no-deepcache",
            "-O",
            "eta=0.5",
        ]
    )
    assert model_options_from_args(args) == {"steps": 3, "deepcache": False, "eta": 0.5}
    assert model_options_from_args(_parse(["sync", "v.mp4", "--model", "auto"])) == {}
    with pytest.raises(SystemExit):  # without --model NAME there are no model flags
        _parse(["sync", "v.mp4", "--steps", "3"])


def test_model_help_page_and_removed_symmetry_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    page = model_help("latentsync_15")
    assert "--steps INT" in page and "DDIM steps" in page and "(default: 20; >= 1)" in page
    assert "(default: 0.0; >= 0.0, <= 1.0)" in page  # eta's bounds
    assert "--paste" not in page and "--version" not in page  # no fields "accepted for CLI symmetry"
    assert "--fp16" not in page and "dtypes (--dtype): float32, float16;" in page


def test_dtype_flag_and_its_fp16_alias() -> None:
    from lipsynckit.cli_options import dtype_from_args

    assert _parse(["sync", "v.mp4", "a.wav", "--fp16"]).dtype == "float16"
    assert _parse(["sync", "v.mp4", "a.wav", "--dtype", "bfloat16"]).dtype == "bfloat16"
    assert dtype_from_args(_parse(["sync", "v.mp4", "a.wav"])) is None
    import torch

    assert dtype_from_args(_parse(["sync", "v.mp4", "a.wav", "--dtype", "int8"])) is torch.int8
    with pytest.raises(SystemExit):
        _parse(["sync", "v.mp4", "a.wav", "--dtype", "float64"])


def test_old_precision_spellings_are_one_line_naming_dtype() -> None:
    from lipsynckit.errors import LipSyncError
    from lipsynckit.registry import get_plugin

    for name, old in (
        ("wav2lip", "fp16"),
        ("wav2lip", "precision"),
        ("musetalk", "fp16"),
        ("latentsync", "fp16"),
    ):
        with pytest.raises(LipSyncError) as info:
            get_plugin(name).parse_options({old: True})
        assert info.value.stage == "options" and "\n" not in info.value.message
        assert f"option {old!r} is gone: precision is the dtype" in info.value.message
        assert "--dtype float16" in (info.value.remedy or "")


def test_fp16_with_model_auto_and_no_weights_falls_back_to_viseme(
    tmp_path: Path, astronaut_png: Path, speech_wav: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "auto_fp16.mkv"
    rc = main(
        [
            "-q",
            "sync",
            str(astronaut_png),
            str(speech_wav),
            "-o",
            str(out),
            "--model",
            "auto",
            "--fp16",
            "--no-progress",
        ]
    )
    assert rc == 0 and out.is_file()
    # viseme cannot honour float16 and says so in one line
    said = [r.getMessage() for r in caplog.records if "dtype float16 is ignored" in r.getMessage()]
    assert said == ["viseme runs in float32 only: dtype float16 is ignored"], said


def test_official_is_what_the_model_declares_and_given_flags_win() -> None:
    from lipsynckit.cli_options import official_settings, sync_options_from_args
    from lipsynckit.errors import LipSyncError

    def settings(argv: list[str]) -> tuple[dict, dict]:
        args = _parse(argv)
        return official_settings(args, sync_options_from_args(args), model_options_from_args(args))

    # Wav2Lip's inference.py: the whole box pasted, the mouth moving in pauses, the video looped
    sync, opts = settings(["sync", "v.mp4", "a.wav", "--model", "wav2lip", "--official"])
    assert (sync, opts) == ({"gate": False, "length_mode": "loop"}, {"paste": "official"})
    sync, opts = settings(
        ["sync", "v.mp4", "a.wav", "-m", "wav2lip", "--official", "--gate", "--paste", "feathered"]
    )
    assert (sync["gate"], sync["length_mode"], opts["paste"]) == (True, "loop", "feathered")
    assert (
        settings(["sync", "v.mp4", "a.wav", "-m", "latentsync", "--official"])[0]["length_mode"] == "pingpong"
    )
    assert settings(["sync", "v.mp4", "a.wav", "-m", "wav2lip"]) == ({}, {})  # without --official: nothing
    with pytest.raises(LipSyncError, match="--official needs a model"):
        settings(["sync", "v.mp4", "a.wav", "--official"])
    with pytest.raises(LipSyncError, match="declares no official pipeline"):
        settings(["sync", "v.mp4", "a.wav", "-m", "viseme", "--official"])
