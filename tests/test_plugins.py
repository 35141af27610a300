"""Plugin discovery: built-in registrations, an external distribution, and honest unusable rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lipsynckit.registry import get_plugin, list_models

REPO = Path(__file__).resolve().parents[1]


def test_builtin_models_are_listed_with_reasons() -> None:
    rows = {r.name: r for r in list_models()}
    for name in (
        "viseme",
        "wav2lip",
        "wav2lip_gan",
        "musetalk",
        "musetalk_v10",
        "latentsync",
        "latentsync_15",
    ):
        assert name in rows, sorted(rows)
    assert rows["viseme"].usable, rows["viseme"].reason
    for name in ("wav2lip", "musetalk", "latentsync"):
        row = rows[name]
        # no weights on a fresh machine: listed, not usable, and the row says why and what to do
        assert not row.usable
        assert row.reason
        assert row.install_hint


def test_unknown_model_is_a_clear_error() -> None:
    from lipsynckit.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="list-models"):
        get_plugin("no_such_model")


@pytest.fixture(scope="module")
def external_plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the third-party test distribution into its own folder (the venv is left untouched)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO / "tests" / "external_plugin"),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _with_site(site: Path) -> dict[str, str]:
    """The environment with ``site`` first on the path (ahead of any source folders already on it)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }


def _run_cli(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = _with_site(site)
    return subprocess.run(
        [sys.executable, "-m", "lipsynckit.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_external_plugin_is_found_and_usable(external_plugin_path: Path, tmp_path: Path) -> None:
    proc = _run_cli(["list-models", "--json"], external_plugin_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["mirror"]["usable"], rows["mirror"]
    assert rows["mirror"]["distribution"] == "lsk-mirror-plugin"
    fancy = rows["mirror_fancy"]
    assert not fancy["usable"]
    assert "lsk_nonexistent_dependency" in fancy["reason"]
    assert fancy["install_hint"] == 'pip install "lsk-mirror-plugin[fancy]"'


def test_external_plugin_runs_end_to_end(
    external_plugin_path: Path, tmp_path: Path, astronaut_png: Path, speech_wav: Path
) -> None:
    out = tmp_path / "mirror.mkv"
    proc = _run_cli(
        [
            "-q",
            "sync",
            str(astronaut_png),
            str(speech_wav),
            "-o",
            str(out),
            "--model",
            "mirror",
            "--no-progress",
        ],
        external_plugin_path,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    from lipsynckit.media import read_video_frames

    frames = read_video_frames(out)
    assert len(frames) == round(7.1 * 25) or abs(len(frames) - 7.1 * 25) <= 2
    # loud frames are mirrored, so some output frames differ from the photo
    import cv2

    src = cv2.cvtColor(cv2.imread(str(astronaut_png)), cv2.COLOR_BGR2RGB)
    changed = [(f != src).any() for f in frames]
    assert any(changed) and not all(changed)


def test_missing_extra_reports_install_hint(
    external_plugin_path: Path, tmp_path: Path, astronaut_png: Path, speech_wav: Path
) -> None:
    proc = _run_cli(
        [
            "sync",
            str(astronaut_png),
            str(speech_wav),
            "-o",
            str(tmp_path / "x.mp4"),
            "--model",
            "mirror_fancy",
        ],
        external_plugin_path,
        tmp_path,
    )
    assert proc.returncode != 0
    assert 'pip install "lsk-mirror-plugin[fancy]"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("name", ["viseme", "wav2lip", "musetalk", "latentsync"])
def test_a_bad_model_option_is_one_line_naming_it_before_any_weights_are_read(name: str) -> None:
    from lipsynckit.errors import LipSyncError
    from lipsynckit.registry import load_model

    with pytest.raises(LipSyncError) as info:
        load_model(name, options={"bogus": 1})
    err = info.value
    assert err.stage == "options" and "\n" not in err.message
    assert f"invalid {name} options: bogus:" in err.message and err.remedy.startswith("valid options: ")


def test_external_plugin_passes_the_public_contract_suite(external_plugin_path: Path, tmp_path: Path) -> None:
    """A third party's own test module inherits lipsynckit.testing.contract.ModelContract and passes."""
    env = _with_site(external_plugin_path)
    tests = REPO / "tests" / "external_plugin" / "tests"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # 4 meta checks and 7 model checks; the mirror needs no weights: that check is skipped
    assert "10 passed, 1 skipped" in proc.stdout, proc.stdout[-2000:]


def test_external_plugin_adds_its_own_flag_without_touching_core(
    external_plugin_path: Path, tmp_path: Path, astronaut_png: Path, speech_wav: Path
) -> None:
    page = _run_cli(["sync", "--model-help", "mirror"], external_plugin_path, tmp_path)
    assert page.returncode == 0, page.stderr
    assert "--threshold FLOAT" in page.stdout and "RMS loudness above which" in page.stdout
    # the flag reaches the plugin's own options model, which validates it (ge=0)
    bad = _run_cli(
        [
            "sync",
            str(astronaut_png),
            str(speech_wav),
            "-o",
            str(tmp_path / "m.mkv"),
            "--model",
            "mirror",
            "--threshold",
            "-1",
        ],
        external_plugin_path,
        tmp_path,
    )
    assert bad.returncode == 2 and "invalid mirror options: threshold" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "m.mkv").exists()
