"""`sync` / `batch` flags made from SyncOptions' fields, the way plugin flags are made from options models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest

from lipsynckit.cli import _sync_overrides, build_parser
from lipsynckit.cli_options import (
    SYNC_API_ONLY,
    SYNC_GROUPS,
    SYNC_SHORTHANDS,
    _unwrap_optional,
    sync_flag,
)
from lipsynckit.options import SyncOptions


def _sub(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]  # type: ignore[no-any-return]


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("command", ["sync", "batch"])
def test_every_field_is_a_flag_or_marked_api_only(command: str) -> None:
    shown = [f for names in SYNC_GROUPS.values() for f in names]
    assert len(shown) == len(set(shown))
    assert set(shown) | set(SYNC_API_ONLY) == set(SyncOptions.model_fields)
    assert not set(shown) & set(SYNC_API_ONLY)
    flags = _actions(_sub(command))
    for field in shown:
        assert sync_flag(field) in flags, field


def test_a_flag_says_what_its_field_says() -> None:
    flags = _actions(_sub("sync"))
    for names in SYNC_GROUPS.values():
        for field in names:
            info = SyncOptions.model_fields[field]
            assert info.description, f"{field} has no description to show"
            action = flags[sync_flag(field)]
            default = info.get_default(call_default_factory=True)
            expected = info.description.replace("%", "%%")
            limits = ", ".join(  # a bounded field shows its bounds (issue 20): ge=1 -> ">= 1"
                f"{sign} {getattr(m, attr)}"
                for m in info.metadata
                for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                if getattr(m, attr, None) is not None
            )
            if default is not None and action.dest.startswith("sync_option__"):
                expected += f" (default: {default!r}{'; ' + limits if limits else ''})"
            elif limits:
                expected += f" ({limits})"
            assert action.help == expected, field
            assert action.default is argparse.SUPPRESS  # the one default lives in SyncOptions
            ann = _unwrap_optional(info.annotation)
            if get_origin(ann) is Literal:
                assert list(action.choices or []) == list(get_args(ann)), field
            if ann is bool:
                assert f"--no-{sync_flag(field)[2:]}" in flags, field


def test_todays_flags_set_the_same_options() -> None:
    argv = [
        "sync", "v.mp4", "a.wav", "-o", "o.mkv",
        "--lossless", "--face-boxes", "boxes.json", "--length-mode", "cut", "--no-gate", "--keep-going",
        "--allow-silent", "--crf", "20", "--preset", "fast", "--detector", "haar", "--face-index", "2",
        "--gate-hangover", "0.3", "--vad", "energy", "--fps", "30", "--batch-size", "4",
        "--detect-every", "4", "--exact-detection", "--no-progress", "--face-workers", "3",
        "--avatar-dir", "av",
    ]  # fmt: skip
    got = _sync_overrides(build_parser().parse_args(argv))
    assert got == {
        "output_mode": "ffv1",
        "face_boxes": "boxes.json",
        "length_mode": "cut",
        "gate": False,
        "keep_going": True,
        "allow_silent_audio": True,
        "crf": 20,
        "preset": "fast",
        "detector": "haar",
        "face_index": 2,
        "face_select": "index",
        "gate_hangover_s": 0.3,
        "vad": "energy",
        "fps": 30.0,
        "batch_size": 4,
        "detect_every": 4,
        "exact_detection": True,
        "progress": False,
        "face_workers": 3,
        "avatar_dir": "av",
    }
    opts = SyncOptions(**got)
    assert opts.face_boxes == Path("boxes.json") and opts.output_mode == "ffv1"
    # nothing given, nothing set: every default is SyncOptions' own
    assert _sync_overrides(build_parser().parse_args(["sync", "v.mp4"])) == {}
    box = _sync_overrides(build_parser().parse_args(["sync", "v.mp4", "--face-box", "1,2,30,40"]))
    assert SyncOptions(**box).face_box == (1.0, 2.0, 30.0, 40.0) and box["face_select"] == "box"
    assert set(SYNC_SHORTHANDS) == {"--lossless"}


def test_sync_help_shows_the_flags_grouped(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sync", "--help"])
    out = capsys.readouterr().out
    sections = [out.index(f"\n{title}:\n") for title in ("model", *SYNC_GROUPS)]
    assert sections == sorted(sections)
    faces = out[sections[1] : sections[2]]
    assert "--face-boxes PATH" in faces and "--detector" in faces and "--crf" not in faces
    assert "--no-gate" in out[sections[2] : sections[3]]
    assert "--lossless" in out[sections[3] :] and "H.264 quality for mp4 output" in out
