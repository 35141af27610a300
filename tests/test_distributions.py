"""The four distributions as users get them: built (wheel and sdist), checked, installed from the wheels
into a fresh venv, and run there (the contract suite and one golden per plugin).

Everything else in the suite runs on an editable install, where a missing package-data file or an
undeclared dependency cannot show. The fresh venv has no system site-packages; the third-party
dependencies it needs (torch, numpy, ...) come from the running environment through a ``.pth`` of
read-only links that leaves out every lipsynckit distribution, so pip finds them installed and
downloads nothing, while our four come only from the wheels built here (``--no-index``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
PLUGINS = ("wav2lip", "musetalk", "latentsync")
DISTS = {"lipsynckit": REPO, **{f"lipsynckit-{p}": REPO / "plugins" / f"lipsynckit-{p}" for p in PLUGINS}}
OURS = re.compile(r"^(lipsynckit|lsk_|__editable__.*lipsynckit|_?lipsynckit)", re.I)


def _pyproject(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())


def test_the_four_distributions_are_versioned_together_and_pinned() -> None:
    meta = {name: _pyproject(path)["project"] for name, path in DISTS.items()}
    version = meta["lipsynckit"]["version"]
    assert {m["name"]: m["version"] for m in meta.values()} == dict.fromkeys(DISTS, version)
    extras = meta["lipsynckit"]["optional-dependencies"]
    for p in PLUGINS:
        assert extras[p] == [f"lipsynckit-{p}=={version}"]  # `lipsynckit[wav2lip]` pulls the plugin
        assert f"lipsynckit=={version}" in meta[f"lipsynckit-{p}"]["dependencies"]
    # each entry point is declared by the distribution whose package it names, and only there
    for name, m in meta.items():
        package = name.replace("-", "_")
        for group in m["entry-points"].values():
            for value in group.values():
                assert value.split(":")[0].split(".")[0] == package, (name, value)


# ----------------------------------------------------------------------------------------------------------
# built, installed from wheels, run (slow tier; its duration is in docs/benchmarks.md)


def _run(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 900
) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every distribution's sdist, and its wheel built from that sdist (``python -m build`` does so)."""
    out = tmp_path_factory.mktemp("dist")
    for path in DISTS.values():
        # no isolation: the running environment has setuptools and wheel (CI may be offline)
        _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(path)])
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv (no system site-packages) that sees the running environment's third-party packages
    through links, none of ours."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")])
    deps = root / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not OURS.match(entry.name) and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    py = root / "venv" / "bin" / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    Path(purelib, "_lipsynckit_test_deps.pth").write_text(f"{deps}\n")
    yield root / "venv"


def _env() -> dict[str, str]:
    """No source folder on the path: what runs is what the wheels installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env


def _pip(venv: Path, *args: str) -> str:
    return _run([str(venv / "bin" / "python"), "-m", "pip", *args], env=_env())


def _models(venv: Path, tmp: Path) -> dict[str, dict]:
    out = _run([str(venv / "bin" / "lipsynckit"), "list-models", "--json"], cwd=tmp, env=_env())
    return {row["name"]: row for row in json.loads(out)}


def _wheel(dist_dir: Path, dist: str) -> Path:
    (wheel,) = dist_dir.glob(f"{dist.replace('-', '_')}-*.whl")
    return wheel


@pytest.mark.slow
def test_wheels_and_sdists_build_and_pass_twine_check(dist_dir: Path) -> None:
    files = sorted(p.name for p in dist_dir.iterdir())
    for dist in DISTS:
        stem = dist.replace("-", "_")
        assert any(f.startswith(f"{stem}-") and f.endswith(".whl") for f in files), files
        assert any(f.startswith(f"{stem}-") and f.endswith(".tar.gz") for f in files), files
    out = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist_dir.iterdir())])
    assert out.count("PASSED") == 2 * len(DISTS), out


@pytest.mark.slow
def test_each_wheel_holds_its_package_and_data_only(dist_dir: Path) -> None:
    expected_data = {
        "lipsynckit": {
            "lipsynckit/py.typed",
            "lipsynckit/data/astronaut.jpg",
            "lipsynckit/data/speech.wav",
            "lipsynckit/data/SOURCES.md",
        },
        "lipsynckit-wav2lip": set(),
        "lipsynckit-musetalk": set(),
        "lipsynckit-latentsync": {"lipsynckit_latentsync/mask.png"},
    }
    for dist, data in expected_data.items():
        package = dist.replace("-", "_")
        names = zipfile.ZipFile(_wheel(dist_dir, dist)).namelist()
        code = [n for n in names if ".dist-info/" not in n]
        assert code and all(n.startswith(f"{package}/") for n in code), [
            n for n in code if not n.startswith(f"{package}/")
        ]
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
        assert data <= set(names), data - set(names)
        # nothing but Python modules and the data named above
        assert {n for n in code if not n.endswith(".py")} == data, {n for n in code if not n.endswith(".py")}
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "lipsynckit.models" in zipfile.ZipFile(_wheel(dist_dir, dist)).read(entry_points).decode()


@pytest.mark.slow
def test_installed_from_wheels_the_plugins_come_and_go(dist_dir: Path, venv: Path, tmp_path: Path) -> None:
    """`pip install lipsynckit` lists viseme alone; adding lipsynckit-wav2lip lists wav2lip; uninstalling
    it leaves the core working."""
    find = ["--no-index", "--find-links", str(dist_dir)]
    _pip(venv, "install", "-q", *find, "lipsynckit")
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import lipsynckit; print(lipsynckit.__file__)"], env=_env()
    )
    assert where.startswith(str(venv)), where  # the wheel, not a source folder
    assert set(_models(venv, tmp_path)) == {"viseme"}

    _pip(venv, "install", "-q", *find, "lipsynckit[wav2lip]")  # the extra pulls the plugin's wheel
    rows = _models(venv, tmp_path)
    assert {"viseme", "wav2lip", "wav2lip_gan"} == set(rows)
    assert rows["wav2lip"]["distribution"] == "lipsynckit-wav2lip"

    _pip(venv, "uninstall", "-y", "lipsynckit-wav2lip")
    assert set(_models(venv, tmp_path)) == {"viseme"}
    out = tmp_path / "out.mp4"
    photo, speech = (  # the sample media packaged in the core wheel, as installed
        _run(
            [str(venv / "bin" / "python"), "-c", "import lipsynckit.samples as s; print(*s.sample_media())"],
            env=_env(),
        ).split()
    )
    assert photo.startswith(str(venv))
    _run([str(venv / "bin" / "lipsynckit"), "sync", photo, speech, "-o", str(out)], cwd=tmp_path, env=_env())
    assert out.stat().st_size > 10_000


CONTRACTS_AND_GOLDENS = [
    "tests/viseme/test_viseme_contract.py",
    "tests/wav2lip/test_w2l_contract.py",
    "tests/test_cli_wav2lip_golden.py",
    "tests/musetalk/test_musetalk_contract.py",
    "tests/musetalk/test_musetalk_step.py::test_step_golden",
    "tests/latentsync/test_latentsync_contract.py",
    "tests/latentsync/test_latentsync_pipeline_golden.py::test_frames_out",
]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four contract suites and three goldens, in a second interpreter
def test_contract_suite_and_one_golden_per_plugin_pass_on_the_wheels(
    dist_dir: Path, venv: Path, tmp_path: Path
) -> None:
    _pip(
        venv,
        "install",
        "-q",
        "--no-index",
        "--find-links",
        str(dist_dir),
        "lipsynckit[wav2lip,musetalk,latentsync]",
    )
    rows = _models(venv, tmp_path)
    assert {rows[m]["distribution"] for m in ("wav2lip", "musetalk", "latentsync")} == {
        f"lipsynckit-{p}" for p in PLUGINS
    }
    probe = "import lipsynckit_wav2lip, lipsynckit_musetalk, lipsynckit_latentsync as m; print(m.__file__)"
    assert _run([str(venv / "bin" / "python"), "-c", probe], env=_env()).startswith(str(venv))
    out = _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not gpu",
            "-c",
            str(REPO / "pyproject.toml"),
            "--rootdir",
            str(REPO),
            *(str(REPO / t) for t in CONTRACTS_AND_GOLDENS),
        ],
        cwd=tmp_path,
        env=_env(),
        timeout=1700,
    )
    passed = re.search(r"(\d+) passed", out)
    # viseme 6 of 7 contract checks (no weights: that one skips), 7 for each plugin, 3 goldens
    assert passed and int(passed.group(1)) >= 6 + 3 * 7 + 3, out[-2000:]
